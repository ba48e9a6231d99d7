package codec

import (
	"encoding/binary"
	"fmt"
	"strconv"
)

// PropertyID identifies an MQTT 5 property (§2.2.2.2, table 2-4).
type PropertyID byte

// The properties of MQTT 5.0, by identifier.
const (
	PropPayloadFormatIndicator          PropertyID = 0x01
	PropMessageExpiryInterval           PropertyID = 0x02
	PropContentType                     PropertyID = 0x03
	PropResponseTopic                   PropertyID = 0x08
	PropCorrelationData                 PropertyID = 0x09
	PropSubscriptionIdentifier          PropertyID = 0x0B
	PropSessionExpiryInterval           PropertyID = 0x11
	PropAssignedClientIdentifier        PropertyID = 0x12
	PropServerKeepAlive                 PropertyID = 0x13
	PropAuthenticationMethod            PropertyID = 0x15
	PropAuthenticationData              PropertyID = 0x16
	PropRequestProblemInformation       PropertyID = 0x17
	PropWillDelayInterval               PropertyID = 0x18
	PropRequestResponseInformation      PropertyID = 0x19
	PropResponseInformation             PropertyID = 0x1A
	PropServerReference                 PropertyID = 0x1C
	PropReasonString                    PropertyID = 0x1F
	PropReceiveMaximum                  PropertyID = 0x21
	PropTopicAliasMaximum               PropertyID = 0x22
	PropTopicAlias                      PropertyID = 0x23
	PropMaximumQoS                      PropertyID = 0x24
	PropRetainAvailable                 PropertyID = 0x25
	PropUserProperty                    PropertyID = 0x26
	PropMaximumPacketSize               PropertyID = 0x27
	PropWildcardSubscriptionAvailable   PropertyID = 0x28
	PropSubscriptionIdentifierAvailable PropertyID = 0x29
	PropSharedSubscriptionAvailable     PropertyID = 0x2A
)

// Properties holds the properties of one level-5 packet (§2.2.2), each in the
// field named after it. A packet without properties has a nil *Properties.
//
// A property whose value is the zero value of its field is absent, unless
// Include marked it: that is how a DISCONNECT says Session Expiry Interval 0
// or a CONNACK Maximum QoS 0. Decoding marks exactly the properties that
// arrived with a zero value, so a decoded Properties equals one built by
// hand with Include called for those. Has tells whether a property is
// present; where the specification gives an absent property a default
// (Receive Maximum 65,535, Maximum QoS 2, Retain Available 1, Request Problem
// Information 1 ...) that is the caller's to apply.
//
// Encoding writes, in identifier order, the properties present that the
// packet type may carry, and leaves out the others; it checks no value, as
// Append checks no field.
type Properties struct {
	PayloadFormat        byte           // 0: unspecified bytes, 1: UTF-8 (PUBLISH, will)
	MessageExpiry        uint32         // seconds (PUBLISH, will)
	ContentType          string         // (PUBLISH, will)
	ResponseTopic        string         // a topic name (PUBLISH, will)
	CorrelationData      []byte         // (PUBLISH, will)
	SubscriptionIDs      []uint32       // 1 to 268,435,455 (PUBLISH: any number; SUBSCRIBE: one)
	SessionExpiry        uint32         // seconds (CONNECT, CONNACK, DISCONNECT)
	AssignedClientID     string         // (CONNACK)
	ServerKeepAlive      uint16         // seconds (CONNACK)
	AuthMethod           string         // (CONNECT, CONNACK, AUTH)
	AuthData             []byte         // (CONNECT, CONNACK, AUTH)
	RequestProblemInfo   bool           // (CONNECT)
	WillDelay            uint32         // seconds (will)
	RequestResponseInfo  bool           // (CONNECT)
	ResponseInfo         string         // (CONNACK)
	ServerReference      string         // (CONNACK, DISCONNECT)
	ReasonString         string         // (every packet with a reason code)
	ReceiveMaximum       uint16         // (CONNECT, CONNACK)
	TopicAliasMaximum    uint16         // (CONNECT, CONNACK)
	TopicAlias           uint16         // (PUBLISH)
	MaximumQoS           byte           // 0 or 1 (CONNACK)
	RetainAvailable      bool           // (CONNACK)
	User                 []UserProperty // in order (every packet but PINGREQ and PINGRESP)
	MaximumPacketSize    uint32         // (CONNECT, CONNACK)
	WildcardSubAvailable bool           // (CONNACK)
	SubIDAvailable       bool           // (CONNACK)
	SharedSubAvailable   bool           // (CONNACK)

	zero uint64 // bit id: property id present with the zero value
}

// UserProperty is one name-value pair. A packet may carry any number, names
// may repeat, and their order is kept [MQTT-3.3.2-18].
type UserProperty struct {
	Name, Value string
}

// Has reports whether property id is present: a non-zero value, a non-empty
// list, or a zero value marked by Include. p may be nil.
func (p *Properties) Has(id PropertyID) bool {
	if p == nil || !id.known() {
		return false
	}
	return p.zero&(1<<id) != 0 || !isZero(p.ref(id))
}

// Include marks property id as present although its field holds the zero
// value. Marking a repeatable property (User Property, Subscription
// Identifier) has no effect: their lists say how many there are.
func (p *Properties) Include(id PropertyID) {
	if id.known() && id != PropUserProperty && id != PropSubscriptionIdentifier {
		p.zero |= 1 << id
	}
}

// willProps stands for the will properties of a CONNECT in the packet masks
// of propInfos; 0 is no packet type.
const willProps Type = 0

type propRule byte

const (
	ruleNone    propRule = iota
	ruleZeroOne          // a Byte that may only be 0 or 1
	ruleNonZero          // 0 is a Protocol Error
	ruleAlias            // 0 is a Protocol Error answered with Topic Alias invalid
	ruleTopic            // a topic name
)

type propInfo struct {
	name string
	in   uint32 // bit t: packet type t may carry it; bit 0: will properties
	rule propRule
}

func carriedBy(ts ...Type) uint32 {
	var m uint32
	for _, t := range ts {
		m |= 1 << t
	}
	return m
}

// propInfos is table 2-4 of §2.2.2.2.
var propInfos = [...]propInfo{
	PropPayloadFormatIndicator:     {"Payload Format Indicator", carriedBy(TypePublish, willProps), ruleZeroOne},
	PropMessageExpiryInterval:      {"Message Expiry Interval", carriedBy(TypePublish, willProps), ruleNone},
	PropContentType:                {"Content Type", carriedBy(TypePublish, willProps), ruleNone},
	PropResponseTopic:              {"Response Topic", carriedBy(TypePublish, willProps), ruleTopic},
	PropCorrelationData:            {"Correlation Data", carriedBy(TypePublish, willProps), ruleNone},
	PropSubscriptionIdentifier:     {"Subscription Identifier", carriedBy(TypePublish, TypeSubscribe), ruleNonZero},
	PropSessionExpiryInterval:      {"Session Expiry Interval", carriedBy(TypeConnect, TypeConnack, TypeDisconnect), ruleNone},
	PropAssignedClientIdentifier:   {"Assigned Client Identifier", carriedBy(TypeConnack), ruleNone},
	PropServerKeepAlive:            {"Server Keep Alive", carriedBy(TypeConnack), ruleNone},
	PropAuthenticationMethod:       {"Authentication Method", carriedBy(TypeConnect, TypeConnack, TypeAuth), ruleNone},
	PropAuthenticationData:         {"Authentication Data", carriedBy(TypeConnect, TypeConnack, TypeAuth), ruleNone},
	PropRequestProblemInformation:  {"Request Problem Information", carriedBy(TypeConnect), ruleZeroOne},
	PropWillDelayInterval:          {"Will Delay Interval", carriedBy(willProps), ruleNone},
	PropRequestResponseInformation: {"Request Response Information", carriedBy(TypeConnect), ruleZeroOne},
	PropResponseInformation:        {"Response Information", carriedBy(TypeConnack), ruleNone},
	PropServerReference:            {"Server Reference", carriedBy(TypeConnack, TypeDisconnect), ruleNone},
	PropReasonString: {"Reason String", carriedBy(TypeConnack, TypePuback, TypePubrec, TypePubrel, TypePubcomp,
		TypeSuback, TypeUnsuback, TypeDisconnect, TypeAuth), ruleNone},
	PropReceiveMaximum:    {"Receive Maximum", carriedBy(TypeConnect, TypeConnack), ruleNonZero},
	PropTopicAliasMaximum: {"Topic Alias Maximum", carriedBy(TypeConnect, TypeConnack), ruleNone},
	PropTopicAlias:        {"Topic Alias", carriedBy(TypePublish), ruleAlias},
	PropMaximumQoS:        {"Maximum QoS", carriedBy(TypeConnack), ruleZeroOne},
	PropRetainAvailable:   {"Retain Available", carriedBy(TypeConnack), ruleZeroOne},
	PropUserProperty: {"User Property", carriedBy(willProps, TypeConnect, TypeConnack, TypePublish, TypePuback,
		TypePubrec, TypePubrel, TypePubcomp, TypeSubscribe, TypeSuback, TypeUnsubscribe, TypeUnsuback,
		TypeDisconnect, TypeAuth), ruleNone},
	PropMaximumPacketSize:               {"Maximum Packet Size", carriedBy(TypeConnect, TypeConnack), ruleNonZero},
	PropWildcardSubscriptionAvailable:   {"Wildcard Subscription Available", carriedBy(TypeConnack), ruleZeroOne},
	PropSubscriptionIdentifierAvailable: {"Subscription Identifier Available", carriedBy(TypeConnack), ruleZeroOne},
	PropSharedSubscriptionAvailable:     {"Shared Subscription Available", carriedBy(TypeConnack), ruleZeroOne},
}

// carried lists, for each packet type (and willProps), the properties it may
// carry in identifier order, so that encoding visits only those.
var carried = func() (c [TypeAuth + 1][]PropertyID) {
	for id, info := range propInfos {
		for t := range c {
			if info.in&(1<<t) != 0 {
				c[t] = append(c[t], PropertyID(id))
			}
		}
	}
	return c
}()

func (id PropertyID) known() bool { return int(id) < len(propInfos) && propInfos[id].name != "" }

// String returns the name the specification gives the property.
func (id PropertyID) String() string {
	if id.known() {
		return propInfos[id].name
	}
	return "PropertyID(" + strconv.Itoa(int(id)) + ")"
}

// CarriedBy reports whether a packet of type t may carry the property;
// the will properties of a CONNECT are not a packet type and not covered.
func (id PropertyID) CarriedBy(t Type) bool {
	return id.known() && t != willProps && propInfos[id].in&(1<<t) != 0
}

// ref returns a pointer to the field that holds property id; its type says
// how the property is encoded: *byte and *bool a Byte, *uint16 a Two Byte
// Integer, *uint32 a Four Byte Integer, *[]uint32 Variable Byte Integers,
// *string a UTF-8 string, *[]byte Binary Data, *[]UserProperty string pairs.
func (p *Properties) ref(id PropertyID) any {
	switch id {
	case PropPayloadFormatIndicator:
		return &p.PayloadFormat
	case PropMessageExpiryInterval:
		return &p.MessageExpiry
	case PropContentType:
		return &p.ContentType
	case PropResponseTopic:
		return &p.ResponseTopic
	case PropCorrelationData:
		return &p.CorrelationData
	case PropSubscriptionIdentifier:
		return &p.SubscriptionIDs
	case PropSessionExpiryInterval:
		return &p.SessionExpiry
	case PropAssignedClientIdentifier:
		return &p.AssignedClientID
	case PropServerKeepAlive:
		return &p.ServerKeepAlive
	case PropAuthenticationMethod:
		return &p.AuthMethod
	case PropAuthenticationData:
		return &p.AuthData
	case PropRequestProblemInformation:
		return &p.RequestProblemInfo
	case PropWillDelayInterval:
		return &p.WillDelay
	case PropRequestResponseInformation:
		return &p.RequestResponseInfo
	case PropResponseInformation:
		return &p.ResponseInfo
	case PropServerReference:
		return &p.ServerReference
	case PropReasonString:
		return &p.ReasonString
	case PropReceiveMaximum:
		return &p.ReceiveMaximum
	case PropTopicAliasMaximum:
		return &p.TopicAliasMaximum
	case PropTopicAlias:
		return &p.TopicAlias
	case PropMaximumQoS:
		return &p.MaximumQoS
	case PropRetainAvailable:
		return &p.RetainAvailable
	case PropUserProperty:
		return &p.User
	case PropMaximumPacketSize:
		return &p.MaximumPacketSize
	case PropWildcardSubscriptionAvailable:
		return &p.WildcardSubAvailable
	case PropSubscriptionIdentifierAvailable:
		return &p.SubIDAvailable
	case PropSharedSubscriptionAvailable:
		return &p.SharedSubAvailable
	}
	return nil
}

func isZero(ref any) bool {
	switch v := ref.(type) {
	case *byte:
		return *v == 0
	case *bool:
		return !*v
	case *uint16:
		return *v == 0
	case *uint32:
		return *v == 0
	case *string:
		return *v == ""
	case *[]byte:
		return len(*v) == 0
	case *[]uint32:
		return len(*v) == 0
	case *[]UserProperty:
		return len(*v) == 0
	}
	return true
}

// size returns how many bytes the properties that a t packet may carry take,
// without the property length in front of them. p may be nil.
func (p *Properties) size(t Type) int {
	if p == nil {
		return 0
	}
	n := 0
	for _, id := range carried[t] {
		if !p.writes(id) {
			continue
		}
		switch v := p.ref(id).(type) {
		case *byte, *bool:
			n += 1 + 1
		case *uint16:
			n += 1 + 2
		case *uint32:
			n += 1 + 4
		case *string:
			n += 1 + 2 + len(*v)
		case *[]byte:
			n += 1 + 2 + len(*v)
		case *[]uint32:
			for _, x := range *v {
				n += 1 + varintLen(int(x))
			}
		case *[]UserProperty:
			for _, u := range *v {
				n += 1 + 2 + len(u.Name) + 2 + len(u.Value)
			}
		}
	}
	return n
}

// writes reports whether property id is present to be written.
func (p *Properties) writes(id PropertyID) bool {
	return p.zero&(1<<id) != 0 || !isZero(p.ref(id))
}

// appendTo writes the property length n, from size(t), and the properties.
func (p *Properties) appendTo(dst []byte, t Type, n int) []byte {
	dst = AppendRemainingLength(dst, n)
	if n == 0 {
		return dst
	}
	for _, id := range carried[t] {
		if !p.writes(id) {
			continue
		}
		switch v := p.ref(id).(type) {
		case *byte:
			dst = append(dst, byte(id), *v)
		case *bool:
			b := byte(0)
			if *v {
				b = 1
			}
			dst = append(dst, byte(id), b)
		case *uint16:
			dst = binary.BigEndian.AppendUint16(append(dst, byte(id)), *v)
		case *uint32:
			dst = binary.BigEndian.AppendUint32(append(dst, byte(id)), *v)
		case *string:
			dst = appendString(append(dst, byte(id)), *v)
		case *[]byte:
			dst = appendString(append(dst, byte(id)), *v)
		case *[]uint32:
			for _, x := range *v {
				dst = AppendRemainingLength(append(dst, byte(id)), int(x))
			}
		case *[]UserProperty:
			for _, u := range *v {
				dst = appendString(append(dst, byte(id)), u.Name)
				dst = appendString(dst, u.Value)
			}
		}
	}
	return dst
}

// properties reads a property length and the properties after it (§2.2.2),
// for a packet of the cursor's type or, with where == willProps, for the will
// of a CONNECT. An empty list gives nil.
//
// An identifier the specification does not define, or one that this packet
// may not carry, is a Malformed Packet (§2.2.2.2); so is a value that runs
// past the property length or is not well-formed UTF-8. A property given
// twice that may not repeat, and a value out of its range, are Protocol
// Errors.
func (c *cursor) properties(where Type) (*Properties, error) {
	n, err := c.varint("property length")
	if err != nil {
		return nil, err
	}
	if n > c.remaining() {
		return nil, malformed(c.t, "property length", "%d runs past the end of the packet (%d bytes left)", n, c.remaining())
	}
	if n == 0 {
		return nil, nil
	}
	// A cursor of its own keeps every value inside the property length.
	pc := cursor{t: c.t, buf: c.buf[:c.off+n], off: c.off, v5: true}
	c.off += n
	p := &Properties{}
	var seen uint64
	for pc.remaining() > 0 {
		raw, err := pc.varint("property identifier")
		if err != nil {
			return nil, err
		}
		id := PropertyID(raw)
		if raw > 0xff || !id.known() {
			return nil, malformed(c.t, "property identifier", "unknown identifier %#x", raw)
		}
		field := propInfos[id].name
		if where == willProps {
			field = "will " + field
		}
		if propInfos[id].in&(1<<where) == 0 {
			return nil, malformed(c.t, field, "not allowed here")
		}
		repeats := id == PropUserProperty || id == PropSubscriptionIdentifier && where == TypePublish
		if seen&(1<<id) != 0 && !repeats {
			return nil, protocolErr(c.t, field, "included more than once")
		}
		seen |= 1 << id
		if err := p.decode(&pc, id, field); err != nil {
			return nil, err
		}
	}
	// §3.1.2.11.10, §3.2.2.3.18, §3.15.2.2.3
	if seen&(1<<PropAuthenticationData) != 0 && seen&(1<<PropAuthenticationMethod) == 0 {
		return nil, protocolErr(c.t, "Authentication Data", "without Authentication Method")
	}
	return p, nil
}

// decode reads the value of property id into its field and applies its rule.
func (p *Properties) decode(c *cursor, id PropertyID, field string) error {
	ref := p.ref(id)
	var x uint32 // the value of an integer property, for the rules
	switch v := ref.(type) {
	case *byte, *bool:
		b, err := c.byte(field)
		if err != nil {
			return err
		}
		x = uint32(b)
		if bp, ok := v.(*byte); ok {
			*bp = b
		} else {
			*v.(*bool) = b == 1
		}
	case *uint16:
		u, err := c.uint16(field)
		if err != nil {
			return err
		}
		x, *v = uint32(u), u
	case *uint32:
		u, err := c.uint32(field)
		if err != nil {
			return err
		}
		x, *v = u, u
	case *[]uint32:
		u, err := c.varint(field)
		if err != nil {
			return err
		}
		x = uint32(u)
		*v = append(*v, x)
	case *string:
		validate := ValidateUTF8 // [MQTT-1.5.4-1], [MQTT-1.5.4-2]
		if propInfos[id].rule == ruleTopic {
			validate = ValidateTopicName // [MQTT-3.3.2-13], [MQTT-3.3.2-14]
		}
		s, err := c.string(field, validate)
		if err != nil {
			return err
		}
		*v = s
	case *[]byte:
		b, err := c.field(field)
		if err != nil {
			return err
		}
		*v = nilIfEmpty(b)
	case *[]UserProperty:
		var u UserProperty
		var err error
		if u.Name, err = c.string(field, ValidateUTF8); err != nil { // [MQTT-1.5.7-1]
			return err
		}
		if u.Value, err = c.string(field, ValidateUTF8); err != nil {
			return err
		}
		*v = append(*v, u)
		return nil
	}
	switch propInfos[id].rule {
	case ruleZeroOne:
		if x > 1 {
			return protocolErr(c.t, field, "%d, want 0 or 1", x)
		}
	case ruleNonZero:
		if x == 0 {
			return protocolErr(c.t, field, "0")
		}
	case ruleAlias:
		if x == 0 {
			return fmt.Errorf("%w: %s %s: 0", ErrTopicAliasInvalid, c.t, field) // [MQTT-3.3.2-8]
		}
	}
	if isZero(ref) {
		p.zero |= 1 << id
	}
	return nil
}
