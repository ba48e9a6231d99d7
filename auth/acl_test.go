package auth

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

const testACL = `# Anonymous clients: the lines before the first user line.
topic read public/#
topic write anon/in
topic deny public/secret
topic read $SYS/#

user alice
topic readwrite alice/#
topic read sensors/#
topic deny sensors/private/#
topic write spaced topic name

user bob
topic #

# deny before or after the grant: the same
user dora
topic deny dora/secret
topic readwrite dora/#
user erin
topic readwrite erin/#
topic deny erin/secret

user frank
topic readwrite +/status
topic read fr/+

# a second section for alice adds to the first
user alice
topic read extra/alice

# an empty section
user gina

pattern readwrite devices/%c/#
pattern read users/%u/inbox
pattern write out/%u/%c
pattern deny devices/%c/locked
pattern read pre_%c_post/x
pattern read %u/feed
pattern deny public/%u
`

type aclCase struct {
	who   string
	c     Client
	op    string // "pub", "recv" or "sub"
	topic string
	want  bool
}

var (
	anon  = Client{ID: "anon1", Anonymous: true}
	alice = Client{ID: "a1", Username: "alice"}
	bob   = Client{ID: "b1", Username: "bob"}
	carol = Client{ID: "c1", Username: "carol"} // no section: patterns only
	dora  = Client{ID: "d1", Username: "dora"}
	erin  = Client{ID: "e1", Username: "erin"}
	frank = Client{ID: "f1", Username: "frank"}
	gina  = Client{ID: "g1", Username: "gina"}
	empty = Client{ID: "x1", Username: ""} // sent an empty username: not anonymous
)

var aclCases = []aclCase{
	// Anonymous section: read, write, deny, and nothing for other sections.
	{"anon", anon, "recv", "public/news", true},
	{"anon", anon, "recv", "public", true}, // '#' covers the parent level
	{"anon", anon, "pub", "public/news", false},
	{"anon", anon, "pub", "anon/in", true},
	{"anon", anon, "recv", "anon/in", false},
	{"anon", anon, "recv", "public/secret", false},
	{"anon", anon, "pub", "public/secret", false},
	{"anon", anon, "recv", "public/secret/deeper", true}, // deny is exact here
	{"anon", anon, "recv", "alice/x", false},
	{"anon", anon, "recv", "users//inbox", false}, // %u never matches anonymous...
	{"anon", anon, "recv", "public/", true},       // ...not even in a deny pattern
	{"anon", anon, "pub", "out//anon1", false},
	{"anon", anon, "pub", "devices/anon1/x", true}, // %c does
	{"anon", anon, "recv", "$SYS/broker/uptime", true},
	{"anon", anon, "pub", "$SYS/broker/uptime", false},
	{"anon", anon, "sub", "public/#", true},
	{"anon", anon, "sub", "public/+", true},
	{"anon", anon, "sub", "public/secret", false}, // a deny rule covers it
	{"anon", anon, "sub", "#", false},             // no read rule covers '#'
	{"anon", anon, "sub", "$SYS/#", true},
	{"anon", anon, "sub", "$SYS/+/uptime", true},
	{"anon", anon, "sub", "anon/in", false}, // write only

	// A user section; the anonymous section does not apply to users.
	{"alice", alice, "recv", "public/news", false},
	{"alice", alice, "pub", "alice/x", true},
	{"alice", alice, "recv", "alice/x/y", true},
	{"alice", alice, "pub", "alice", true},
	{"alice", alice, "recv", "sensors/kitchen/temp", true},
	{"alice", alice, "pub", "sensors/kitchen/temp", false},
	{"alice", alice, "recv", "sensors/private", false},
	{"alice", alice, "recv", "sensors/private/x", false},
	{"alice", alice, "sub", "sensors/#", true}, // partly denied: CanReceive filters
	{"alice", alice, "sub", "sensors/+/temp", true},
	{"alice", alice, "sub", "sensors/private/#", false},
	{"alice", alice, "sub", "sensors/private/+/y", false},
	{"alice", alice, "sub", "sensors", true},
	{"alice", alice, "sub", "alice/#", true},
	{"alice", alice, "sub", "+/x", false},
	{"alice", alice, "pub", "spaced topic name", true},
	{"alice", alice, "recv", "spaced topic name", false},
	{"alice", alice, "recv", "extra/alice", true}, // second section merged
	// Patterns apply to users with a section too.
	{"alice", alice, "recv", "users/alice/inbox", true},
	{"alice", alice, "pub", "users/alice/inbox", false},
	{"alice", alice, "recv", "users/bob/inbox", false},
	{"alice", alice, "pub", "devices/a1/state", true},
	{"alice", alice, "pub", "devices/a2/state", false},
	{"alice", alice, "pub", "devices/a1/locked", false}, // deny pattern beats grant pattern
	{"alice", alice, "recv", "devices/a1/locked", false},
	{"alice", alice, "pub", "devices/a1/locked/x", true},
	{"alice", alice, "pub", "out/alice/a1", true},
	{"alice", alice, "pub", "out/alice/a2", false},
	{"alice", alice, "pub", "out/bob/a1", false},
	{"alice", alice, "recv", "pre_a1_post/x", true},
	{"alice", alice, "recv", "pre_a2_post/x", false},
	{"alice", alice, "recv", "pre_a1_post", false},
	{"alice", alice, "recv", "alice/feed", true},
	{"alice", alice, "sub", "devices/a1/#", true}, // devices/a1/locked inside is dropped by CanReceive
	{"alice", alice, "sub", "devices/a1/+", true},
	{"alice", alice, "sub", "devices/a1/state", true},
	{"alice", alice, "sub", "devices/a1/locked", false},
	{"alice", alice, "sub", "devices/+/state", false}, // other clients' devices

	// '#' for everything, except '$' topics; deny patterns still apply.
	{"bob", bob, "recv", "anything/at/all", true},
	{"bob", bob, "pub", "x", true},
	{"bob", bob, "recv", "$SYS/broker/uptime", false},
	{"bob", bob, "pub", "$foo/bar", false},
	{"bob", bob, "sub", "#", true},
	{"bob", bob, "sub", "+/+/#", true},
	{"bob", bob, "sub", "$SYS/#", false},
	{"bob", bob, "sub", "$foo", false},
	{"bob", bob, "pub", "devices/b1/locked", false}, // Mosquitto allows this; see doc.go
	{"bob", bob, "sub", "devices/b1/locked", false},
	{"bob", bob, "sub", "devices/+/locked", true},

	// Deny wins whatever the order in the section.
	{"dora", dora, "recv", "dora/secret", false},
	{"dora", dora, "pub", "dora/secret", false},
	{"dora", dora, "pub", "dora/open", true},
	{"erin", erin, "recv", "erin/secret", false},
	{"erin", erin, "pub", "erin/open", true},

	// '+' in the first level and '$' topics.
	{"frank", frank, "pub", "door/status", true},
	{"frank", frank, "recv", "$SYS/status", false},
	{"frank", frank, "sub", "+/status", true},
	{"frank", frank, "sub", "$SYS/status", false},
	{"frank", frank, "recv", "door/status/x", false},
	{"frank", frank, "sub", "fr/+", true},
	{"frank", frank, "sub", "fr/x", true},
	{"frank", frank, "sub", "fr/#", false}, // "fr/+" does not cover "fr" or "fr/x/y"
	{"frank", frank, "sub", "fr", false},

	// No section: patterns only. Empty section: the same.
	{"carol", carol, "pub", "devices/c1/x", true},
	{"carol", carol, "recv", "public/news", false},
	{"carol", carol, "recv", "alice/x", false},
	{"carol", carol, "recv", "users/carol/inbox", true},
	{"gina", gina, "pub", "devices/g1/x", true},
	{"gina", gina, "pub", "gina/x", false},

	// An empty username is a username: %u is "" and the anonymous section
	// does not apply.
	{"empty", empty, "recv", "users//inbox", true},
	{"empty", empty, "recv", "public/news", false},
	{"empty", empty, "recv", "/feed", true},

	// No rule at all: denied.
	{"nobody", Client{ID: "n", Username: "nobody"}, "pub", "x/y", false},
	{"nobody", Client{ID: "n", Username: "nobody"}, "recv", "x/y", false},
	{"nobody", Client{ID: "n", Username: "nobody"}, "sub", "x/y", false},
	// Case matters in user names.
	{"ALICE", Client{ID: "a1", Username: "ALICE"}, "pub", "alice/x", false},

	// Values that would change the pattern's shape: a pattern using them
	// grants nothing, a deny pattern using them refuses everything.
	{"slash id", Client{ID: "a/b", Username: "carol"}, "pub", "devices/a/b/x", false},
	{"slash id", Client{ID: "a/b", Username: "carol"}, "recv", "users/carol/inbox", false}, // deny devices/%c/locked
	{"plus id", Client{ID: "+", Username: "carol"}, "pub", "devices/zz/x", false},
	{"hash id", Client{ID: "#", Username: "carol"}, "pub", "devices/zz/x", false},
	{"hash id", Client{ID: "#", Username: "alice"}, "pub", "alice/x", false},
	{"plus user", Client{ID: "p1", Username: "+"}, "recv", "users/x/inbox", false},
	{"plus user", Client{ID: "p1", Username: "+"}, "pub", "devices/p1/x", false}, // deny public/%u refuses all
	{"dollar user", Client{ID: "s1", Username: "$SYS"}, "recv", "$SYS/feed", false},
	{"dollar user", Client{ID: "s1", Username: "$SYS"}, "recv", "users/$SYS/inbox", true}, // not at the start
	{"dan", Client{ID: "d9", Username: "dan"}, "recv", "dan/feed", true},
}

// TestUnsafeValuesOnlyAffectTheirPlaceholder: an unsafe username disables the
// %u patterns, not the %c ones, and with no deny pattern using it, nothing is
// refused beyond what those grants gave.
func TestUnsafeValuesOnlyAffectTheirPlaceholder(t *testing.T) {
	a := loadTestACL(t, "pattern readwrite dev/%c/#\npattern read in/%u\npattern deny dev/%c/lock\n")
	slashUser := Client{ID: "p1", Username: "a/b"}
	if !a.CanPublish(slashUser, "dev/p1/x") || a.CanPublish(slashUser, "dev/p1/lock") {
		t.Error("client-id patterns must work for a client whose username is unsafe")
	}
	if a.CanReceive(slashUser, "in/a/b") {
		t.Error("a %u pattern granted with a '/' in the username")
	}
	slashID := Client{ID: "a/b", Username: "u"}
	if a.CanReceive(slashID, "in/u") || a.CanPublish(slashID, "dev/a/b/x") {
		t.Error("an unsafe client id must meet the deny pattern that substitutes it")
	}
}

func loadTestACL(t testing.TB, content string) *ACL {
	t.Helper()
	a, err := LoadACL(writeFile(t, "acl", content))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func (tc aclCase) run(a *ACL) bool {
	switch tc.op {
	case "pub":
		return a.CanPublish(tc.c, tc.topic)
	case "recv":
		return a.CanReceive(tc.c, tc.topic)
	case "sub":
		return a.CanSubscribe(tc.c, tc.topic)
	}
	panic(tc.op)
}

func TestACL(t *testing.T) {
	a := loadTestACL(t, testACL)
	for _, tc := range aclCases {
		if got := tc.run(a); got != tc.want {
			t.Errorf("%s (id %q user %q anon %v) %s %q: %v, want %v", tc.who, tc.c.ID, tc.c.Username, tc.c.Anonymous, tc.op, tc.topic, got, tc.want)
		}
	}
	if a.Len() != 23 {
		t.Errorf("Len %d, want 23", a.Len())
	}
}

// TestCanSubscribePartialDeny: a subscription a read rule covers is refused
// only when a deny rule covers it too; one a deny rule merely overlaps is
// allowed and CanReceive drops the denied messages.
func TestCanSubscribePartialDeny(t *testing.T) {
	a := loadTestACL(t, "user u\ntopic read a/#\ntopic deny a/b/secret\n")
	u := Client{ID: "i", Username: "u"}
	for _, tc := range []struct {
		filter string
		want   bool
	}{
		{"a/#", true}, {"a/b/+", true}, {"a/b/secret", false}, {"a/+/secret", true}, {"b/#", false},
	} {
		if got := a.CanSubscribe(u, tc.filter); got != tc.want {
			t.Errorf("CanSubscribe(%q) = %v, want %v", tc.filter, got, tc.want)
		}
	}
	if a.CanReceive(u, "a/b/secret") || !a.CanReceive(u, "a/c/secret") {
		t.Error("CanReceive must drop exactly the denied topic")
	}
}

func TestACLNoAccessWordIsReadwrite(t *testing.T) {
	a := loadTestACL(t, "topic a/b\npattern c/%c\n")
	for _, c := range []Client{anon, {ID: "i", Username: "u"}} {
		if c.Anonymous && (!a.CanPublish(c, "a/b") || !a.CanReceive(c, "a/b")) {
			t.Error("topic without access word is not readwrite")
		}
		if !a.CanPublish(c, "c/"+c.ID) || !a.CanReceive(c, "c/"+c.ID) {
			t.Error("pattern without access word is not readwrite")
		}
	}
}

func TestACLLayout(t *testing.T) {
	// Tabs, CRLF, indentation, a byte order mark, trailing blanks, a user name
	// with a space.
	a := loadTestACL(t, "\ufeff  # comment\r\n\ttopic\tread\tx/y  \r\n\nuser  john doe \r\n topic   write  a b/c \n")
	if !a.CanReceive(anon, "x/y") || a.CanPublish(anon, "x/y") {
		t.Error("anonymous rule lost")
	}
	if !a.CanPublish(Client{ID: "i", Username: "john doe"}, "a b/c") {
		t.Error("user with a space, topic with a space")
	}
}

func TestLoadACLErrors(t *testing.T) {
	for _, tc := range []struct{ line, want string }{
		{"topic", "topic line without a topic filter"},
		{"pattern", "pattern line without a topic filter"},
		{"topic read", "access word without a topic filter"},
		{"topic deny", "access word without a topic filter"},
		{"topic rw a/b", `unknown access "rw"`},
		{"topic a b", `unknown access "a"`},
		{"topic read a/#/b", "'#' must be the last level"},
		{"topic read a+/b", "whole level"},
		{"pattern read a/%c#", "whole level"},
		{"topic read a/\x00", "U+0000"},
		{"topic read a/\xff", "not valid UTF-8"},
		{"user", "user line without a user name"},
		{"user \xff", "not valid UTF-8"},
		{"users alice", `unknown keyword "users"`},
		{"Topic read a", `unknown keyword "Topic"`},
		{"topic read " + strings.Repeat("a", 65536), "longer than 65535"},
	} {
		t.Run(tc.line[:min(len(tc.line), 20)], func(t *testing.T) {
			path := writeFile(t, "acl", "# rules\ntopic read ok\n\n"+tc.line+"\ntopic read ok2\n")
			_, err := LoadACL(path)
			var le *LineError
			if !errors.As(err, &le) || le.Path != path || le.Line != 4 {
				t.Fatalf("error %v, want a *LineError for %s line 4", err, path)
			}
			if want := fmt.Sprintf("%s:4: ", path); !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want prefix %q and %q", err, want, tc.want)
			}
		})
	}
	if _, err := LoadACL(writeFile(t, "x", "") + ".missing"); err == nil {
		t.Error("missing file loaded")
	}
}

func TestACLWarnings(t *testing.T) {
	a := loadTestACL(t, "topic read a/%c\npattern read b/#\npattern read c/%u\n")
	w := a.Warnings()
	if len(w) != 2 || !strings.Contains(w[0], ":1: topic \"a/%c\" contains %c or %u") || !strings.Contains(w[1], ":2: pattern \"b/#\" has no %c or %u") {
		t.Errorf("warnings %q", w)
	}
	// A topic rule does not substitute.
	if a.CanReceive(Client{ID: "i", Anonymous: true}, "a/i") || !a.CanReceive(Client{ID: "i", Anonymous: true}, "a/%c") {
		t.Error("a topic rule substituted the client id")
	}
	if loadTestACL(t, testACL).Warnings() != nil {
		t.Error("warnings for a clean file")
	}
}

func TestNilACL(t *testing.T) {
	var a *ACL
	if a.CanPublish(bob, "x") || a.CanReceive(bob, "x") || a.CanSubscribe(bob, "x") || a.Len() != 0 || a.Warnings() != nil {
		t.Fatal("nil *ACL must refuse everything")
	}
}

func TestEmptyACLDeniesAll(t *testing.T) {
	a := loadTestACL(t, "# nothing\n")
	for _, c := range []Client{anon, alice} {
		if a.CanPublish(c, "x") || a.CanReceive(c, "x") || a.CanSubscribe(c, "#") {
			t.Fatal("an empty ACL must refuse everything")
		}
	}
}
