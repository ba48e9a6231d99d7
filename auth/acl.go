package auth

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/holdfast/holdfast/router"
)

// Client is who an ACL check is for: Username "" with Anonymous true for a
// client that sent no username.
type Client struct {
	ID, Username string
	Anonymous    bool
}

// access is what a rule grants; 0 is a deny rule.
type access uint8

const (
	accessRead access = 1 << iota
	accessWrite
	accessDeny access = 0
)

// rule is one topic or pattern line.
type rule struct {
	filter string // as written
	access access
	levels []level // filter split into levels, for covers and for patterns
	// Patterns only: which placeholders the filter uses, and whether one is at
	// the very start of the filter (where a value beginning with '$' would
	// make a '$' topic).
	usesC, usesU       bool
	leadingC, leadingU bool
}

// level is one level of a rule's filter.
type level struct {
	kind router.Kind
	text string  // Literal: the text
	toks []token // Literal with %c or %u (patterns only): the text split up
}

// token is a piece of a pattern level: literal text, or a placeholder.
type token struct {
	lit string
	ph  byte // 0 for literal text, 'c' or 'u'
}

// ruleSet is one section's rules, deny rules apart.
type ruleSet struct {
	deny, grant []rule
}

// ACL is a loaded Mosquitto-format ACL file. Safe for concurrent use;
// immutable after load. A nil *ACL refuses everything.
type ACL struct {
	anon     ruleSet             // topic lines before the first user line
	users    map[string]*ruleSet // topic lines after "user NAME"
	patterns ruleSet             // pattern lines
	n        int
	warnings []string
}

// LoadACL reads a Mosquitto-format ACL file (see the package documentation).
// An error is a *LineError naming the file and line and what is wrong.
func LoadACL(path string) (*ACL, error) {
	lines, err := readLines(path)
	if err != nil {
		return nil, err
	}
	a := &ACL{users: make(map[string]*ruleSet)}
	cur := &a.anon
	for i, line := range lines {
		n := i + 1
		fail := func(format string, args ...any) error {
			return &LineError{Path: path, Line: n, Msg: fmt.Sprintf(format, args...)}
		}
		if len(line) > maxLine {
			return nil, fail("line longer than %d bytes", maxLine)
		}
		t := strings.TrimSpace(line)
		if t == "" || t[0] == '#' {
			continue
		}
		keyword, rest := cutField(t)
		switch keyword {
		case "user":
			if rest == "" {
				return nil, fail("user line without a user name")
			}
			if !utf8.ValidString(rest) {
				return nil, fail("user name is not valid UTF-8")
			}
			cur = a.users[rest]
			if cur == nil {
				cur = &ruleSet{}
				a.users[rest] = cur
			}
		case "topic", "pattern":
			r, err := parseRule(keyword, rest)
			if err != nil {
				return nil, fail("%v", err)
			}
			set := cur
			if keyword == "pattern" {
				set = &a.patterns
				if !r.usesC && !r.usesU {
					a.warnings = append(a.warnings, fmt.Sprintf("%s:%d: pattern %q has no %%c or %%u, so it applies to every client as it is", path, n, r.filter))
				}
			} else if strings.Contains(r.filter, "%c") || strings.Contains(r.filter, "%u") {
				a.warnings = append(a.warnings, fmt.Sprintf("%s:%d: topic %q contains %%c or %%u, which only pattern lines substitute", path, n, r.filter))
			}
			if r.access == accessDeny {
				set.deny = append(set.deny, r)
			} else {
				set.grant = append(set.grant, r)
			}
			a.n++
		default:
			return nil, fail("unknown keyword %q (want topic, pattern or user)", keyword)
		}
	}
	return a, nil
}

// cutField splits s at its first run of blanks.
func cutField(s string) (field, rest string) {
	i := strings.IndexAny(s, " \t")
	if i < 0 {
		return s, ""
	}
	return s[:i], strings.TrimSpace(s[i:])
}

// parseRule parses what follows "topic" or "pattern".
func parseRule(keyword, rest string) (rule, error) {
	if rest == "" {
		return rule{}, fmt.Errorf("%s line without a topic filter", keyword)
	}
	r := rule{access: accessRead | accessWrite}
	word, filter := cutField(rest)
	if filter == "" {
		switch word {
		case "read", "write", "readwrite", "deny":
			return rule{}, fmt.Errorf("%s %s: access word without a topic filter (for a topic named %q write \"%s readwrite %s\")", keyword, word, word, keyword, word)
		}
		filter = word
	} else {
		switch word {
		case "read":
			r.access = accessRead
		case "write":
			r.access = accessWrite
		case "readwrite":
			r.access = accessRead | accessWrite
		case "deny":
			r.access = accessDeny
		default:
			return rule{}, fmt.Errorf("unknown access %q (want read, write, readwrite or deny; a filter with spaces needs one of them before it)", word)
		}
	}
	if err := validFilter(filter); err != nil {
		return rule{}, fmt.Errorf("topic filter %q: %v", filter, err)
	}
	r.filter = filter
	r.levels = splitLevels(filter, keyword == "pattern")
	for i, lv := range r.levels {
		for j, tk := range lv.toks {
			switch tk.ph {
			case 'c':
				r.usesC = true
				r.leadingC = r.leadingC || i == 0 && j == 0
			case 'u':
				r.usesU = true
				r.leadingU = r.leadingU || i == 0 && j == 0
			}
		}
	}
	return r, nil
}

// validFilter applies MQTT's rules for a topic filter [MQTT-4.7.1].
func validFilter(f string) error {
	switch {
	case len(f) > 65535:
		return fmt.Errorf("longer than 65535 bytes")
	case !utf8.ValidString(f):
		return fmt.Errorf("not valid UTF-8")
	case strings.IndexByte(f, 0) >= 0:
		return fmt.Errorf("contains U+0000")
	}
	for i := 0; i <= len(f); {
		var lv string
		lv, i = router.NextLevel(f, i)
		if len(lv) > 1 && strings.ContainsAny(lv, "+#") {
			return fmt.Errorf("'+' and '#' must be a whole level")
		}
		if lv == "#" && i <= len(f) {
			return fmt.Errorf("'#' must be the last level")
		}
	}
	return nil
}

// splitLevels compiles a valid filter. With subst, "%c" and "%u" inside a
// literal level become placeholders.
func splitLevels(f string, subst bool) []level {
	var lvs []level
	for i := 0; i <= len(f); {
		var lv level
		lv.text, lv.kind, i = router.FilterLevel(f, i)
		if subst && lv.kind == router.Literal {
			lv.toks = tokens(lv.text)
		}
		lvs = append(lvs, lv)
	}
	return lvs
}

// tokens splits a pattern level at its placeholders; nil if it has none.
func tokens(s string) []token {
	var toks []token
	start := 0
	for i := 0; i+1 < len(s); i++ {
		if s[i] != '%' || s[i+1] != 'c' && s[i+1] != 'u' {
			continue
		}
		if i > start {
			toks = append(toks, token{lit: s[start:i]})
		}
		toks = append(toks, token{ph: s[i+1]})
		i++
		start = i + 1
	}
	if toks == nil {
		return nil
	}
	if start < len(s) {
		toks = append(toks, token{lit: s[start:]})
	}
	return toks
}

// CanPublish reports whether c may publish to the topic name (write access).
func (a *ACL) CanPublish(c Client, topic string) bool {
	return a.check(&c, topic, accessWrite, false)
}

// CanReceive reports whether a message on the topic name may be delivered to c
// (read access). The broker checks it at delivery, so a changed ACL applies to
// existing subscriptions.
func (a *ACL) CanReceive(c Client, topic string) bool {
	return a.check(&c, topic, accessRead, false)
}

// CanSubscribe reports whether c may subscribe to the topic filter: one read
// rule must cover the filter (match every topic it can match) and no deny rule
// may cover it. Messages on topics a deny rule matches inside an allowed
// subscription are refused by CanReceive.
func (a *ACL) CanSubscribe(c Client, filter string) bool {
	return a.check(&c, filter, accessRead, true)
}

// Len returns the number of topic and pattern rules.
func (a *ACL) Len() int {
	if a == nil {
		return 0
	}
	return a.n
}

// Warnings returns notes about lines that are valid but probably not what was
// meant, for the broker to log at load. Nil when none.
func (a *ACL) Warnings() []string {
	if a == nil {
		return nil
	}
	return a.warnings
}

// check decides for s, a topic name or (sub) a subscription filter.
func (a *ACL) check(c *Client, s string, need access, sub bool) bool {
	if a == nil {
		return false
	}
	set := &a.anon
	if !c.Anonymous {
		set = a.users[c.Username]
	}
	if set != nil {
		for i := range set.deny {
			if set.deny[i].applies(c, s, sub) {
				return false
			}
		}
	}
	for i := range a.patterns.deny {
		r := &a.patterns.deny[i]
		if r.usesU && c.Anonymous {
			continue
		}
		if r.unsafeFor(c) || r.applies(c, s, sub) {
			return false
		}
	}
	if set != nil {
		for i := range set.grant {
			r := &set.grant[i]
			if r.access&need != 0 && r.applies(c, s, sub) {
				return true
			}
		}
	}
	for i := range a.patterns.grant {
		r := &a.patterns.grant[i]
		if r.access&need == 0 || r.usesU && c.Anonymous {
			continue
		}
		if !r.unsafeFor(c) && r.applies(c, s, sub) {
			return true
		}
	}
	return false
}

// unsafeFor reports whether substituting c's id or username into pattern r
// could make something other than one literal piece of a level: a '/', '+' or
// '#' in the value, or a '$' at the start of the topic.
func (r *rule) unsafeFor(c *Client) bool {
	return r.usesC && unsafeValue(c.ID, r.leadingC) || r.usesU && unsafeValue(c.Username, r.leadingU)
}

func unsafeValue(v string, leading bool) bool {
	return strings.ContainsAny(v, "/+#") || leading && strings.HasPrefix(v, "$")
}

// applies reports whether r matches the topic name s, or (sub) covers the
// subscription filter s.
func (r *rule) applies(c *Client, s string, sub bool) bool {
	if !sub && !r.usesC && !r.usesU {
		return router.MatchFilter(r.filter, s)
	}
	return covers(r.levels, c, s, sub)
}
