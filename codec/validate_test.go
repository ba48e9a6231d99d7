package codec

import (
	"strings"
	"testing"
	"unicode/utf8"
)

var long65535 = strings.Repeat("a", 65535)

func TestValidateUTF8(t *testing.T) {
	tests := []struct {
		name string
		s    string
		ok   bool
	}{
		{"empty is a valid string", "", true},
		{"ascii", "client-1", true},
		{"multi-byte", "gr\u00fc\u00df/\u6771\u4eac/\U0001F600", true},
		{"U+FFFD itself is well-formed", "\uFFFD", true},
		{"[MQTT-1.5.3-3] BOM kept", "\uFEFFa", true},
		{"control characters are allowed", "a\x01\x1f\x7f", true},
		{"65535 bytes", long65535, true},
		{"[§1.5.3] 65536 bytes", long65535 + "a", false},
		{"[MQTT-1.5.3-2] U+0000", "a\x00b", false},
		{"[MQTT-1.5.3-2] U+0000 at the end", "ab\x00", false},
		{"[MQTT-1.5.3-1] surrogate U+D800", "\xED\xA0\x80", false},
		{"[MQTT-1.5.3-1] surrogate U+DFFF", "a\xED\xBF\xBF", false},
		{"[MQTT-1.5.3-1] lone continuation byte", "\x80", false},
		{"[MQTT-1.5.3-1] overlong slash", "\xC0\xAF", false},
		{"[MQTT-1.5.3-1] truncated sequence", "a\xE2\x82", false},
		{"[MQTT-1.5.3-1] beyond U+10FFFF", "\xF4\x90\x80\x80", false},
	}
	for _, tt := range tests {
		if err := ValidateUTF8(tt.s); (err == nil) != tt.ok {
			t.Errorf("%s: ValidateUTF8(%q) = %v, want ok=%v", tt.name, tt.s, err, tt.ok)
		}
	}
}

func TestValidateTopicName(t *testing.T) {
	tests := []struct {
		name string
		s    string
		ok   bool
	}{
		{"plain", "a/b/c", true},
		{"single level", "a", true},
		{"lone slash", "/", true},
		{"empty levels", "a//b/", true},
		{"dollar", "$SYS/broker/uptime", true},
		{"space", "a b", true},
		{"multi-byte", "\u00fc/\u6771", true},
		{"65535 bytes", long65535, true},
		{"[MQTT-4.7.3-1] empty", "", false},
		{"[MQTT-3.3.2-2] plus", "a/+/c", false},
		{"[MQTT-3.3.2-2] hash", "a/#", false},
		{"[MQTT-3.3.2-2] hash inside a level", "a#b", false},
		{"[MQTT-4.7.3-2] U+0000", "a\x00", false},
		{"[MQTT-1.5.3-1] ill-formed", "a/\xff", false},
		{"[MQTT-4.7.3-3] 65536 bytes", long65535 + "a", false},
	}
	for _, tt := range tests {
		if err := ValidateTopicName(tt.s); (err == nil) != tt.ok {
			t.Errorf("%s: ValidateTopicName(%.40q) = %v, want ok=%v", tt.name, tt.s, err, tt.ok)
		}
	}
}

func TestValidateTopicFilter(t *testing.T) {
	tests := []struct {
		name string
		s    string
		ok   bool
	}{
		{"plain", "a/b/c", true},
		{"hash alone", "#", true},
		{"plus alone", "+", true},
		{"hash last", "a/b/#", true},
		{"plus first", "+/b", true},
		{"plus middle", "a/+/c", true},
		{"plus last", "a/+", true},
		{"plus every level", "+/+/+", true},
		{"plus then hash", "+/#", true},
		{"hash after empty level", "a//#", true},
		{"plus empty levels", "/+/", true},
		{"lone slash", "/", true},
		{"hash after leading slash", "/#", true},
		{"dollar", "$SYS/#", true},
		{"[MQTT-4.7.3-1] empty", "", false},
		{"[MQTT-4.7.1-2] hash not last", "a/#/c", false},
		{"[MQTT-4.7.1-2] hash then slash", "#/", false},
		{"[MQTT-4.7.1-2] hash twice", "##", false},
		{"[MQTT-4.7.1-2] hash sharing a level", "a/b#", false},
		{"[MQTT-4.7.1-2] hash sharing the only level", "a#", false},
		{"[MQTT-4.7.1-3] plus sharing a level before", "a/b+", false},
		{"[MQTT-4.7.1-3] plus sharing a level after", "a/+b", false},
		{"[MQTT-4.7.1-3] plus twice", "++", false},
		{"[MQTT-4.7.1-3] plus sharing the first level", "+a/b", false},
		{"[MQTT-4.7.1-3] hash then plus", "a/#+", false},
		{"[MQTT-4.7.3-2] U+0000", "a/\x00/#", false},
		{"[MQTT-1.5.3-1] ill-formed", "+/\xC3", false},
		{"[MQTT-4.7.3-3] 65536 bytes", long65535 + "a", false},
	}
	for _, tt := range tests {
		if err := ValidateTopicFilter(tt.s); (err == nil) != tt.ok {
			t.Errorf("%s: ValidateTopicFilter(%.40q) = %v, want ok=%v", tt.name, tt.s, err, tt.ok)
		}
	}
}

func TestValidateTopicNameDoesNotAllocate(t *testing.T) {
	allocs := testing.AllocsPerRun(100, func() {
		if ValidateTopicName("sensors/\u00fc/temperature") != nil {
			t.Fatal("valid name refused")
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations validating a valid topic name", allocs)
	}
}

// filterRule restates the filter rules level by level, independently of the
// byte scan in ValidateTopicFilter, so the fuzzer can compare the two.
func filterRule(s string) bool {
	if s == "" || len(s) > 65535 || !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
		return false
	}
	levels := strings.Split(s, "/")
	for i, l := range levels {
		if strings.Contains(l, "#") && (l != "#" || i != len(levels)-1) {
			return false
		}
		if strings.Contains(l, "+") && l != "+" {
			return false
		}
	}
	return true
}

func FuzzValidateTopicFilter(f *testing.F) {
	for _, s := range []string{"a/b", "#", "+", "a/+/#", "a#", "+a", "/", "", "\x00", "\xED\xA0\x80", "$SYS/+/x", "a//#"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		filterErr := ValidateTopicFilter(s)
		if want := filterRule(s); (filterErr == nil) != want {
			t.Fatalf("ValidateTopicFilter(%q) = %v, rule says ok=%v", s, filterErr, want)
		}
		// A valid name is exactly a valid filter without wildcards.
		nameErr := ValidateTopicName(s)
		wantName := filterErr == nil && !strings.ContainsAny(s, "+#")
		if (nameErr == nil) != wantName {
			t.Fatalf("ValidateTopicName(%q) = %v, want ok=%v", s, nameErr, wantName)
		}
		utf8Err := ValidateUTF8(s)
		wantUTF8 := len(s) <= 65535 && utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
		if (utf8Err == nil) != wantUTF8 {
			t.Fatalf("ValidateUTF8(%q) = %v, want ok=%v", s, utf8Err, wantUTF8)
		}
	})
}
