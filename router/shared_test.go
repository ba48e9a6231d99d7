package router

import (
	"testing"
)

func TestParseShared_MQTT_4_8_2_1(t *testing.T) {
	for _, c := range []struct {
		in           string
		name, filter string
		shared, ok   bool
	}{
		{"a/b", "", "a/b", false, true},
		{"$share/g/a/#", "g", "a/#", true, true},
		{"$share/g//", "g", "/", true, true},
		{"$share/g", "", "", true, false},
		{"$share//a", "", "a", true, false},
		{"$share/g/", "g", "", true, false},
		{"$share/g+/a", "g+", "a", true, false},
		{"$share/#/a", "#", "a", true, false},
		{"$shared/g/a", "", "$shared/g/a", false, true},
	} {
		name, filter, shared, ok := ParseShared(c.in)
		if shared != c.shared || ok != c.ok || ok && (name != c.name || filter != c.filter) {
			t.Errorf("ParseShared(%q) = %q %q %v %v, want %q %q %v %v", c.in, name, filter, shared, ok, c.name, c.filter, c.shared, c.ok)
		}
	}
}

// Each group gets one copy, in turn among its members, preferring online ones.
