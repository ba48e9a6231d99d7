package codec

import (
	"errors"
	"reflect"
	"testing"
)

func TestStoredPropertiesRoundTrip(t *testing.T) {
	pub := &Properties{ContentType: "text/plain", ResponseTopic: "r/1", CorrelationData: []byte{0, 1, 2},
		User: []UserProperty{{"b", "2"}, {"a", "1"}, {"b", "3"}}}
	pub.Include(PropPayloadFormatIndicator) // 0, present
	will := &Properties{PayloadFormat: 1, WillDelay: 30, MessageExpiry: 60, User: []UserProperty{{"k", "v"}}}
	for _, c := range []struct {
		name   string
		p      *Properties
		append func([]byte, *Properties) []byte
		read   func([]byte) (*Properties, int, error)
	}{
		{"publish", pub, AppendPublishProperties, ReadPublishProperties},
		{"will", will, AppendWillProperties, ReadWillProperties},
	} {
		b := c.append([]byte("x"), c.p)
		b = append(b, "payload"...)
		got, n, err := c.read(b[1:])
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if !reflect.DeepEqual(got, c.p) || string(b[1+n:]) != "payload" {
			t.Errorf("%s: read %+v, %d bytes (rest %q), want %+v", c.name, got, n, b[1+n:], c.p)
		}
	}

	// Without properties: one byte, read back as nil.
	if b := AppendPublishProperties(nil, nil); len(b) != 1 || b[0] != 0 {
		t.Errorf("nil properties appended as %x, want 00", b)
	}
	if p, n, err := ReadWillProperties([]byte{0, 'p'}); p != nil || n != 1 || err != nil {
		t.Errorf("empty block read as %+v, %d, %v", p, n, err)
	}
}

// What a PUBLISH may not carry is left out; what a will may carry stays.
func TestStoredPropertiesKeepTheirPacketsSet(t *testing.T) {
	p := &Properties{SessionExpiry: 5, WillDelay: 7, ContentType: "c"}
	got, _, err := ReadPublishProperties(AppendPublishProperties(nil, p))
	if err != nil || !reflect.DeepEqual(got, &Properties{ContentType: "c"}) {
		t.Errorf("publish: %+v, %v", got, err)
	}
	got, _, err = ReadWillProperties(AppendWillProperties(nil, p))
	if err != nil || !reflect.DeepEqual(got, &Properties{ContentType: "c", WillDelay: 7}) {
		t.Errorf("will: %+v, %v", got, err)
	}
}

func TestStoredPropertiesRejectDamage(t *testing.T) {
	for _, c := range []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrMalformed},
		{"length past the end", []byte{5, 0x01, 1}, ErrMalformed},
		{"unknown identifier", []byte{2, 0x7f, 0}, ErrMalformed},
		{"not a PUBLISH property", []byte{5, 0x11, 0, 0, 0, 1}, ErrMalformed},
		{"Payload Format 2", []byte{2, 0x01, 2}, ErrProtocol},
		{"Content Type twice", []byte{6, 0x03, 0, 0, 0x03, 0, 0}, ErrProtocol},
		{"bad UTF-8", []byte{4, 0x03, 0, 1, 0xff}, ErrMalformed},
	} {
		if _, _, err := ReadPublishProperties(c.b); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	if _, _, err := ReadWillProperties([]byte{3, 0x23, 0, 1}); !errors.Is(err, ErrMalformed) { // Topic Alias
		t.Errorf("will with Topic Alias: %v, want %v", err, ErrMalformed)
	}
}
