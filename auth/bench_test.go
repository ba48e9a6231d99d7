package auth

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// BenchmarkCheck reports the cost of one password check, which every CONNECT
// with a username pays. "default" is what HashPassword writes.
func BenchmarkCheck(b *testing.B) {
	def, err := HashPassword([]byte("pw"))
	if err != nil {
		b.Fatal(err)
	}
	bc, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.DefaultCost)
	if err != nil {
		b.Fatal(err)
	}
	scram, err := HashSCRAM([]byte("pw"), DefaultSCRAMIterations)
	if err != nil {
		b.Fatal(err)
	}
	file := writeFile(b, "pw", "default:"+def+"\nbcrypt:"+string(bc)+"\nscram:"+scram+"\n")
	mosq, err := LoadPasswords(filepath.Join("testdata", "mosquitto-pbkdf2.passwd"))
	if err != nil {
		b.Fatal(err)
	}
	sha, err := LoadPasswords(filepath.Join("testdata", "mosquitto-sha512.passwd"))
	if err != nil {
		b.Fatal(err)
	}
	ours, err := LoadPasswords(file)
	if err != nil {
		b.Fatal(err)
	}
	for _, bm := range []struct {
		name     string
		p        *Passwords
		user, pw string
	}{
		{fmt.Sprintf("pbkdf2-%d", DefaultIterations), ours, "default", "pw"},
		{fmt.Sprintf("pbkdf2-%d-unknown-user", DefaultIterations), ours, "nobody", "pw"},
		{"pbkdf2-101-mosquitto", mosq, "alice", "correct horse battery staple"},
		{"sha512-mosquitto", sha, "bob", "hunter2"},
		{fmt.Sprintf("bcrypt-%d", bcrypt.DefaultCost), ours, "bcrypt", "pw"},
		{fmt.Sprintf("scram-sha-256-%d", DefaultSCRAMIterations), ours, "scram", "pw"},
	} {
		b.Run(bm.name, func(b *testing.B) {
			pw := []byte(bm.pw)
			for b.Loop() {
				bm.p.Check(bm.user, pw)
			}
		})
	}
}

// benchACL is an ACL file for 1,000 users with a few rules each and the
// patterns of a device fleet.
func benchACL(b *testing.B) *ACL {
	var s strings.Builder
	s.WriteString("topic read public/#\n")
	for i := range 1000 {
		fmt.Fprintf(&s, "user user%d\ntopic readwrite home/user%d/#\ntopic read sensors/+/temp\ntopic deny home/user%d/private/#\n", i, i, i)
	}
	s.WriteString("pattern readwrite devices/%c/#\npattern read users/%u/inbox\npattern write out/%u/%c\npattern deny devices/%c/locked\n")
	return loadTestACL(b, s.String())
}

func BenchmarkCanPublish(b *testing.B) {
	a := benchACL(b)
	c := Client{ID: "dev-42", Username: "user500"}
	for _, bm := range []struct{ name, topic string }{
		{"user-rule", "home/user500/kitchen/light"},
		{"pattern", "devices/dev-42/state"},
		{"denied-no-match", "other/place/entirely"},
		{"denied-by-deny", "home/user500/private/diary"},
	} {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				a.CanPublish(c, bm.topic)
			}
		})
	}
}

func BenchmarkCanSubscribe(b *testing.B) {
	a := benchACL(b)
	c := Client{ID: "dev-42", Username: "user500"}
	b.ReportAllocs()
	for b.Loop() {
		a.CanSubscribe(c, "devices/dev-42/+/state")
	}
}
