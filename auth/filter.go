package auth

import (
	"strings"

	"github.com/holdfast/holdfast/router"
)

// FilterCovers reports whether the topic filter outer matches every topic name
// that the topic filter inner matches, under router.MatchFilter's rules
// (including: a filter whose first level is '+' or '#' matches no topic
// beginning with '$'). So "a/#" covers "a", "a/+" and "a/+/c/#"; "a/+" covers
// "a/b" but not "a/#"; "#" covers "+/x" but not "$SYS/x". A topic name is a
// filter without wildcards, so FilterCovers(f, topic) is
// router.MatchFilter(f, topic).
//
// It looks at each filter alone: "a" and "a/+/#" together match everything
// "a/#" does, but neither covers it.
func FilterCovers(outer, inner string) bool {
	return covers(splitLevels(outer, false), nil, inner, true)
}

// covers walks the rule levels lvs against s, a topic name or (sub) a
// subscription filter, and reports whether every topic s can match is matched
// by lvs with c's id and username substituted for placeholders. The caller
// has made sure the values are safe to substitute.
func covers(lvs []level, c *Client, s string, sub bool) bool {
	// s can only match '$' topics if its first level is literal and begins
	// with '$'; then a rule whose first level is a wildcard matches none of
	// them [MQTT-4.7.2-1].
	exempt := router.WildcardExempt(s)
	si := 0
	for i := range lvs {
		lv := &lvs[i]
		first := i == 0
		if lv.kind == router.MultiLevel {
			// '#' matches the parent level and everything below it, so it
			// covers the rest of s whatever it is, even nothing.
			return !(first && exempt)
		}
		if si > len(s) {
			return false // s has fewer levels than the rule needs
		}
		var sl string
		sk := router.Literal
		if sub {
			sl, sk, si = router.FilterLevel(s, si)
		} else {
			sl, si = router.NextLevel(s, si)
		}
		if sk == router.MultiLevel {
			// s's '#' matches any number of further levels, zero included,
			// except where it is all of s: every topic has at least one
			// level, so there "+/#" covers it too. Otherwise only '#' does,
			// and that case returned above.
			return first && lv.kind == router.SingleLevel && len(lvs) == 2 && lvs[1].kind == router.MultiLevel
		}
		switch lv.kind {
		case router.SingleLevel:
			// '+' covers one literal level or '+'.
			if first && exempt {
				return false
			}
		default:
			if sk != router.Literal || !lv.equal(sl, c) {
				return false
			}
		}
	}
	return si > len(s) // both used up together
}

// equal reports whether the topic level t equals lv with placeholders
// substituted.
func (lv *level) equal(t string, c *Client) bool {
	if lv.toks == nil {
		return t == lv.text
	}
	for _, tk := range lv.toks {
		v := tk.lit
		switch tk.ph {
		case 'c':
			v = c.ID
		case 'u':
			v = c.Username
		}
		if !strings.HasPrefix(t, v) {
			return false
		}
		t = t[len(v):]
	}
	return t == ""
}
