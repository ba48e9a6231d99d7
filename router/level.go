package router

import "strings"

// Kind says how a level of a topic filter matches levels of a topic name.
type Kind uint8

const (
	// Literal matches a topic level equal to it byte for byte: matching is
	// case-sensitive and nothing is normalised [MQTT-4.7.3-4].
	Literal Kind = iota
	// SingleLevel is '+': exactly one topic level, which may be empty
	// [MQTT-4.7.1-3].
	SingleLevel
	// MultiLevel is a final '#': the parent level and any number of levels
	// below it, so "sport/#" also matches "sport" [MQTT-4.7.1-2].
	MultiLevel
)

// NextLevel returns the level of s that begins at byte offset i and the
// offset at which the following level begins. When next > len(s) the level
// returned was the last one, so a walk over all levels reads
//
//	for i := 0; i <= len(s); {
//		level, i = NextLevel(s, i)
//	}
//
// Levels are substrings of s, so walking allocates nothing. Empty levels are
// real levels: "/a" is "" then "a", and "a/" is "a" then "".
func NextLevel(s string, i int) (level string, next int) {
	if uint(i) > uint(len(s)) {
		return "", len(s) + 1
	}
	rest := s[i:]
	if j := strings.IndexByte(rest, '/'); j >= 0 {
		return rest[:j], i + j + 1
	}
	return rest, len(s) + 1
}

// FilterLevel is NextLevel for a topic filter: it also reports the level's
// Kind. A '#' that is not the last level is invalid; it is treated as a
// literal so that every matcher in holdfast agrees on what it does.
func FilterLevel(filter string, i int) (level string, kind Kind, next int) {
	level, next = NextLevel(filter, i)
	if len(level) == 1 {
		switch {
		case level[0] == '+':
			kind = SingleLevel
		case level[0] == '#' && next > len(filter):
			kind = MultiLevel
		}
	}
	return level, kind, next
}

// WildcardExempt reports whether topic, or the first level of a topic, begins
// with '$'. A filter whose first level is '+' or '#' must not match such a
// topic, so that "#" does not pick up "$SYS/..." [MQTT-4.7.2-1]; a filter
// that spells the '$' level out, like "$SYS/#", still does.
func WildcardExempt(topic string) bool {
	return len(topic) > 0 && topic[0] == '$'
}

// MatchFilter reports whether the topic filter matches the topic name. It is
// the reference for the matching rules; Trie.Match gives the same answers for
// every filter in the trie.
func MatchFilter(filter, topic string) bool {
	exempt := WildcardExempt(topic)
	fi, ti := 0, 0
	for first := true; ; first = false {
		fl, kind, fnext := FilterLevel(filter, fi)
		if kind == MultiLevel {
			// Also when the topic is used up: '#' covers the parent level.
			return !(first && exempt)
		}
		if ti > len(topic) {
			return false
		}
		tl, tnext := NextLevel(topic, ti)
		if kind == SingleLevel {
			if first && exempt {
				return false
			}
		} else if fl != tl {
			return false
		}
		fi, ti = fnext, tnext
		if fi > len(filter) {
			return ti > len(topic)
		}
	}
}
