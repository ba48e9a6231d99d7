package codec

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

var (
	errEmpty   = errors.New("empty")                   // [MQTT-4.7.3-1]
	errTooLong = errors.New("longer than 65535 bytes") // §1.5.3, [MQTT-4.7.3-3]
)

// ValidateUTF8 reports whether s may travel as an MQTT UTF-8 string: at most
// 65,535 bytes, well-formed UTF-8 with no encoded surrogates [MQTT-1.5.3-1]
// and no U+0000 [MQTT-1.5.3-2].
//
// Control characters and non-characters are accepted: the specification only
// allows a receiver to refuse them, and refusing would break clients that
// other brokers serve. A leading BOM is kept as it is [MQTT-1.5.3-3].
func ValidateUTF8(s string) error {
	return checkString(s, false)
}

// ValidateTopicName reports whether s may be the topic of a PUBLISH or a
// will: a non-empty [MQTT-4.7.3-1] UTF-8 string (see ValidateUTF8) without
// the wildcards '+' and '#' [MQTT-3.3.2-2]. Empty levels ("a//b", "/") and
// a leading '$' are allowed; what '$' means is the router's business.
func ValidateTopicName(s string) error {
	if s == "" {
		return errEmpty
	}
	return checkString(s, true)
}

// ValidateTopicFilter reports whether s may be the filter of a SUBSCRIBE or
// UNSUBSCRIBE: a non-empty UTF-8 string (see ValidateUTF8) in which '#' only
// appears as the whole last level [MQTT-4.7.1-2] and '+' only as a whole
// level [MQTT-4.7.1-3].
func ValidateTopicFilter(s string) error {
	if s == "" {
		return errEmpty
	}
	if err := checkString(s, false); err != nil {
		return err
	}
	// Byte-wise is safe: '+', '#' and '/' are ASCII, and ASCII bytes never
	// occur inside a multi-byte UTF-8 sequence.
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '#':
			if i != len(s)-1 {
				return fmt.Errorf("'#' at byte %d is not the last character", i)
			}
			if i > 0 && s[i-1] != '/' {
				return fmt.Errorf("'#' at byte %d is not a whole level", i)
			}
		case '+':
			if (i > 0 && s[i-1] != '/') || (i+1 < len(s) && s[i+1] != '/') {
				return fmt.Errorf("'+' at byte %d is not a whole level", i)
			}
		}
	}
	return nil
}

// checkString does the UTF-8 checks in one pass, ASCII taking the short way,
// since it runs on the topic of every PUBLISH.
func checkString(s string, noWildcards bool) error {
	if len(s) > maxStringLen {
		return errTooLong
	}
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == 0:
				return fmt.Errorf("contains U+0000 at byte %d", i)
			case noWildcards && (c == '+' || c == '#'):
				return fmt.Errorf("contains wildcard %q", rune(c))
			}
			i++
			continue
		}
		// DecodeRuneInString also refuses overlong forms and encoded
		// surrogates U+D800..U+DFFF, reporting them as RuneError of size 1.
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			return fmt.Errorf("ill-formed UTF-8 at byte %d", i)
		}
		i += size
	}
	return nil
}
