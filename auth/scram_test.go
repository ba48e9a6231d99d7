package auth

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xdg-go/scram"
)

// rfc5803Entry writes a user's entry in RFC 5803's form from keys that a third-party SCRAM
// implementation (github.com/xdg-go/scram) derives.
func rfc5803Entry(t *testing.T, password string, salt []byte, iterations int) string {
	t.Helper()
	cl, err := scram.SHA256.NewClient("u", password, "")
	if err != nil {
		t.Fatal(err)
	}
	c, err := cl.GetStoredCredentialsWithError(scram.KeyFactors{Salt: string(salt), Iters: iterations})
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", iterations, b64(salt), b64(c.StoredKey), b64(c.ServerKey))
}

// A SCRAM-SHA-256 entry serves a plain CONNECT password (derived and compared) and a SCRAM
// exchange (its keys as they are); a non-ASCII password is SASLprep-ed as other implementations do.
func TestSCRAMEntry(t *testing.T) {
	salt, _ := base64.StdEncoding.DecodeString("W22ZaJ0SNY7soEsUEjb6gQ==")
	file := writeFile(t, "passwd", "user:"+rfc5803Entry(t, "pencil", salt, 4096)+"\n"+
		"hy:"+rfc5803Entry(t, "I\u00adX", salt, 5000)+"\n"+
		"old:$7$101$"+strings.Repeat("A", 16)+"$"+strings.Repeat("A", 86)+"==\n")
	p, err := LoadPasswords(file)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Check("user", []byte("pencil")) || p.Check("user", []byte("pencil ")) || p.Check("user", nil) {
		t.Fatal("plain password against a SCRAM entry: right refused or wrong accepted")
	}
	if w := strings.Join(p.Warnings(), "\n"); strings.Contains(w, "SCRAM-SHA-256 entries") {
		t.Errorf("warnings about SCRAM entries of 4096 iterations and more: %s", w)
	}
	if !p.Check("hy", []byte("IX")) || !p.Check("hy", []byte("I\u00adX")) {
		t.Fatal("SASLprep: the soft hyphen is not mapped to nothing")
	}
	c, ok := p.SCRAM("user")
	want, _ := DeriveSCRAM([]byte("pencil"), salt, 4096)
	if !ok || c.Iterations != 4096 || !bytes.Equal(c.Salt, salt) || !bytes.Equal(c.StoredKey, want.StoredKey) || !bytes.Equal(c.ServerKey, want.ServerKey) {
		t.Fatalf("SCRAM(user) = %+v, %v", c, ok)
	}
	for _, u := range []string{"old", "nobody"} {
		d, ok := p.SCRAM(u)
		again, _ := p.SCRAM(u)
		if ok || d.Iterations != 4096 || len(d.Salt) != scramSaltLen || !bytes.Equal(d.Salt, again.Salt) || bytes.Equal(d.StoredKey, again.StoredKey) {
			t.Fatalf("SCRAM(%s) = %+v, %v: want a decoy with a stable salt", u, d, ok)
		}
	}
}

// holdfast passwd --scram's entry: RFC 5803's form, read back, its iteration count kept.
func TestHashSCRAM(t *testing.T) {
	file := filepath.Join(t.TempDir(), "passwd")
	h, err := HashSCRAM([]byte("s3cret"), 4096)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "SCRAM-SHA-256$4096:") {
		t.Fatalf("entry %q", h)
	}
	if err := SetPasswordHash(file, "eve", h); err != nil {
		t.Fatal(err)
	}
	p, err := LoadPasswords(file)
	if err != nil || !p.Check("eve", []byte("s3cret")) || p.Check("eve", []byte("s3cre")) {
		t.Fatalf("entry not read back: %v", err)
	}
	weak, err := HashSCRAM([]byte("x"), 4095)
	if err != nil {
		t.Fatal(err)
	}
	if err := SetPasswordHash(file, "weak", weak); err != nil {
		t.Fatal(err)
	}
	if p, err := LoadPasswords(file); err != nil || !strings.Contains(strings.Join(p.Warnings(), "\n"), "1 of 2 users have SCRAM-SHA-256 entries with fewer than 4096 iterations") {
		t.Fatalf("no warning about 4095 iterations: %v %q", err, p.Warnings())
	}
	if _, err := HashSCRAM([]byte("a\x07b"), 4096); err == nil || strings.Contains(err.Error(), "\\u0007") {
		t.Fatalf("a control character: %v, want a refusal that does not quote it", err)
	}
	if _, err := HashSCRAM([]byte("x"), maxIterations+1); err == nil {
		t.Fatal("iterations above the limit accepted")
	}
}

func TestSCRAMEntryMalformed(t *testing.T) {
	key := base64.StdEncoding.EncodeToString(make([]byte, 32))
	salt := base64.StdEncoding.EncodeToString(make([]byte, 16))
	for _, tc := range []struct{ entry, want string }{
		{"SCRAM-SHA-256$4096:" + salt + "$" + key, "is not <iterations>"},
		{"SCRAM-SHA-256$" + salt + "$" + key + ":" + key, "is not <iterations>"},
		{"SCRAM-SHA-256$0:" + salt + "$" + key + ":" + key, "not a positive number"},
		{"SCRAM-SHA-256$1000001:" + salt + "$" + key + ":" + key, "above the limit"},
		{"SCRAM-SHA-256$4096:AAAA$" + key + ":" + key, "salt is not"},
		{"SCRAM-SHA-256$4096:" + salt + "$" + key + ":AAAA", "StoredKey and ServerKey"},
		{"SCRAM-SHA-256$4096:" + salt + "$" + key + ":" + key + "!", "StoredKey and ServerKey"},
	} {
		_, err := LoadPasswords(writeFile(t, "passwd", "u:"+tc.entry+"\n"))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), ":1:") {
			t.Errorf("%s: %v, want an error at line 1 saying %q", tc.entry, err, tc.want)
		}
	}
}
