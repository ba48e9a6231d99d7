package codec

// Property blocks outside a packet, for the store: the same bytes that a PUBLISH or a CONNECT's
// will carries (§2.2.2: the property length, then the properties), so that what is stored is
// checked by the same rules as what arrives.

// AppendPublishProperties appends p as a PUBLISH carries it: the property length, then the
// properties a PUBLISH may carry, as Properties says. A nil p appends the one byte 0.
func AppendPublishProperties(dst []byte, p *Properties) []byte {
	return p.appendTo(dst, TypePublish, p.size(TypePublish))
}

// ReadPublishProperties reads a property block that AppendPublishProperties wrote at the start
// of b, with the checks a received PUBLISH gets, and returns it (nil when empty) and its length
// in bytes. Correlation Data aliases b.
func ReadPublishProperties(b []byte) (*Properties, int, error) {
	return readProperties(b, TypePublish, TypePublish)
}

// AppendWillProperties appends p as a CONNECT carries the will properties (§3.1.3.2).
func AppendWillProperties(dst []byte, p *Properties) []byte {
	return p.appendTo(dst, willProps, p.size(willProps))
}

// ReadWillProperties reads a block that AppendWillProperties wrote, like ReadPublishProperties.
func ReadWillProperties(b []byte) (*Properties, int, error) {
	return readProperties(b, TypeConnect, willProps)
}

func readProperties(b []byte, t, where Type) (*Properties, int, error) {
	c := cursor{t: t, buf: b, v5: true}
	p, err := c.properties(where)
	if err != nil {
		return nil, 0, err
	}
	return p, c.off, nil
}
