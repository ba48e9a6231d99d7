package auth

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// fixtureUsers are the users of the committed password files in testdata/;
// each file's header says how it was made.
var fixtureUsers = []struct {
	file, user, password string
	kind                 hashKind
	cost                 int
}{
	{"mosquitto-pbkdf2.passwd", "alice", "correct horse battery staple", kindPBKDF2, 101},
	{"mosquitto-pbkdf2.passwd", "jörg", "pässwörd ✓", kindPBKDF2, 101},
	{"mosquitto-pbkdf2.passwd", "carol", "a:b c$d", kindPBKDF2, 101},
	{"mosquitto-sha512.passwd", "bob", "hunter2", kindSHA512, 0},
	{"mosquitto-sha512.passwd", "dave", "open sesame", kindSHA512, 0},
	{"pbkdf2-64salt.passwd", "newer", "2.1 style", kindPBKDF2, 1000},
	{"bcrypt.passwd", "alex", "bcrypt a", kindBcrypt, 5},
	{"bcrypt.passwd", "bea", "bcrypt b", kindBcrypt, 5},
	{"bcrypt.passwd", "yann", "bcrypt y", kindBcrypt, 5},
}

func TestLoadPasswordsFixtures(t *testing.T) {
	loaded := map[string]*Passwords{}
	for _, f := range fixtureUsers {
		t.Run(f.file+"/"+f.user, func(t *testing.T) {
			p := loaded[f.file]
			if p == nil {
				var err error
				if p, err = LoadPasswords(filepath.Join("testdata", f.file)); err != nil {
					t.Fatal(err)
				}
				loaded[f.file] = p
			}
			h := p.users[f.user]
			if h == nil {
				t.Fatalf("user %q not loaded", f.user)
			}
			if h.kind != f.kind || h.cost != f.cost {
				t.Errorf("parsed as %v cost %d, want %v cost %d", h.kind, h.cost, f.kind, f.cost)
			}
			if !p.Check(f.user, []byte(f.password)) {
				t.Errorf("right password refused")
			}
			for _, wrong := range []string{"", f.password + "x", f.password[:len(f.password)-1], strings.ToUpper(f.password)} {
				if p.Check(f.user, []byte(wrong)) {
					t.Errorf("wrong password %q accepted", wrong)
				}
			}
			if p.Check(strings.ToUpper(f.user), []byte(f.password)) {
				t.Errorf("user names must be case-sensitive")
			}
		})
	}
	for file, n := range map[string]int{"mosquitto-pbkdf2.passwd": 3, "mosquitto-sha512.passwd": 2, "bcrypt.passwd": 3, "pbkdf2-64salt.passwd": 1} {
		if p := loaded[file]; p != nil && p.Len() != n {
			t.Errorf("%s: Len() = %d, want %d", file, p.Len(), n)
		}
	}
}

func TestLoadPasswordsLayout(t *testing.T) {
	h, err := HashPasswordIterations([]byte("pw"), 10)
	if err != nil {
		t.Fatal(err)
	}
	// BOM, CRLF, blanks around fields, indented comments, blank lines with
	// blanks, no final newline.
	p := writeFile(t, "pw", "\ufeff# comment\r\n  # indented comment\n\n   \t\n  spaced user \t: "+h+"  \r\nlast:"+h)
	pw, err := LoadPasswords(p)
	if err != nil {
		t.Fatal(err)
	}
	if pw.Len() != 2 || !pw.Check("spaced user", []byte("pw")) || !pw.Check("last", []byte("pw")) {
		t.Fatalf("Len %d, users %v", pw.Len(), pw.users)
	}
	empty, err := LoadPasswords(writeFile(t, "empty", "# nobody\n"))
	if err != nil || empty.Len() != 0 || empty.Check("", nil) || empty.Check("x", []byte("x")) {
		t.Fatalf("empty file: %v, %d", err, empty.Len())
	}
}

func TestLoadPasswordsErrors(t *testing.T) {
	good, err := HashPasswordIterations([]byte("pw"), 10)
	if err != nil {
		t.Fatal(err)
	}
	salt := "c2FsdHNhbHRzYWx0" // 12 bytes
	sum := strings.Repeat("QUJD", 21) + "QQ=="
	for _, tc := range []struct{ name, line, want string }{
		{"no colon", "eve " + good, "no ':'"},
		{"empty user", ":" + good, "empty user name"},
		{"no hash", "eve:", "no password hash"},
		{"plain text", "eve:letmein", "not hashed"},
		{"iterations not a number", "eve:$7$abc$" + salt + "$" + sum, "iteration count is not a positive number"},
		{"zero iterations", "eve:$7$0$" + salt + "$" + sum, "iteration count is not a positive number"},
		{"huge iterations", "eve:$7$20000000$" + salt + "$" + sum, "above the limit"},
		{"7 missing field", "eve:$7$101$" + salt, "want 3"},
		{"7 bad salt base64", "eve:$7$101$c2Fs!HNhbHRzYWx0$" + sum, "salt is not valid base64"},
		{"7 short salt", "eve:$7$101$c2FsdA==$" + sum, "salt is 4 bytes"},
		{"7 short hash", "eve:$7$101$" + salt + "$" + strings.Repeat("QUJD", 10) + "QUI=", "hash is 32 bytes"},
		{"7 bad hash base64", "eve:$7$101$" + salt + "$" + sum[:40] + "*" + sum[41:], "hash is not valid base64"},
		{"6 wrong fields", "eve:$6$" + salt + "$" + sum + "$x", "want 2"},
		{"6 crypt rounds", "eve:$6$rounds=5000$c2FsdHNhbHRz$" + strings.Repeat("a", 86), "crypt(3)"},
		{"6 crypt", "eve:$6$c2FsdHNhbHRz$" + strings.Repeat("a", 86), "crypt(3)"},
		{"bcrypt short", "eve:$2b$05$c2FsdHNhbHRzYWx0c2FsdHNh", "malformed bcrypt"},
		{"bcrypt bad cost", "eve:$2b$99$" + strings.Repeat("a", 53), "malformed bcrypt"},
		{"bcrypt 2x", "eve:$2x$05$" + strings.Repeat("a", 53), "unknown hash format"},
		{"argon2id", "eve:$argon2id$v=19$m=47104,t=1,p=1$" + salt + "$" + sum, "argon2id"},
		{"unknown", "eve:$1$" + salt + "$" + sum, "unknown hash format"},
		{"duplicate", "alice:" + good, `user "alice" is listed again (first on line 2)`},
		{"long line", "eve:" + strings.Repeat("x", maxLine), "line longer than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, "pw", "# users\nalice:"+good+"\n"+tc.line+"\nzed:"+good+"\n")
			p, err := LoadPasswords(path)
			if err == nil {
				t.Fatalf("loaded %d users, want an error", p.Len())
			}
			var le *LineError
			if !errors.As(err, &le) || le.Path != path || le.Line != 3 {
				t.Fatalf("error %v (%T), want a *LineError for %s line 3", err, err, path)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, path+":3: ") || !strings.Contains(msg, tc.want) {
				t.Errorf("error %q, want %q prefix and %q in it", msg, path+":3: ", tc.want)
			}
			// The message may name the user but never quote the hash.
			_, h, _ := strings.Cut(tc.line, ":")
			for _, field := range strings.Split(h, "$") {
				if len(field) >= 12 && strings.Contains(msg, field) { // salt or hash, not a count or a name
					t.Errorf("error %q quotes part of the hash: %q", msg, field)
				}
			}
		})
	}
	if _, err := LoadPasswords(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v, want fs.ErrNotExist", err)
	}
}

// TestDummyShape: unknown users are verified against a hash of the kind and
// cost most users have, the first in the file on a tie.
func TestDummyShape(t *testing.T) {
	h7 := func(iter int) string {
		h, err := HashPasswordIterations([]byte("x"), iter)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	bc := "$2a$05$27wg7cYboVYhbdsylE9jcuuOl6sysj/GEo/M4ZRv87IW/4JQWhO1q"
	for _, tc := range []struct {
		name, file string
		kind       hashKind
		cost       int
	}{
		{"empty", "", kindPBKDF2, DefaultIterations},
		{"most bcrypt", "a:" + h7(50) + "\nb:" + bc + "\nc:" + bc + "\n", kindBcrypt, 5},
		{"most pbkdf2 of one cost", "a:" + h7(60) + "\nb:" + bc + "\nc:" + h7(50) + "\nd:" + h7(50) + "\n", kindPBKDF2, 50},
		{"tie goes to the first line", "z:" + h7(70) + "\na:" + bc + "\n", kindPBKDF2, 70},
		{"tie goes to the first line, other order", "z:" + bc + "\na:" + h7(70) + "\n", kindBcrypt, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := LoadPasswords(writeFile(t, "pw", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if p.dummy.kind != tc.kind || p.dummy.cost != tc.cost {
				t.Fatalf("dummy is %v cost %d, want %v cost %d", p.dummy.kind, p.dummy.cost, tc.kind, tc.cost)
			}
			if p.Check("nobody", []byte("x")) {
				t.Fatal("unknown user accepted")
			}
		})
	}
}

// TestUnknownUserCostsLikeWrongPassword measures Check for an unknown user and
// for a wrong password. Without the dummy verification the unknown user takes
// well under a microsecond against milliseconds, so a bound of 3x either way
// (medians of interleaved runs) catches that on a noisy machine without
// being a benchmark.
func TestUnknownUserCostsLikeWrongPassword(t *testing.T) {
	h7, err := HashPasswordIterations([]byte("right"), 5_000)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, hash string }{
		{"pbkdf2", h7},
		// "right" at bcrypt cost 6 (x/crypto/bcrypt).
		{"bcrypt", "$2a$06$xPqBYAKOjHJOlmhEw/V92OXeZaFOb8Xna5MKEh9PUcyfxiHVw.gq."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := LoadPasswords(writeFile(t, "pw", "known:"+tc.hash+"\n"))
			if err != nil {
				t.Fatal(err)
			}
			if !p.Check("known", []byte("right")) {
				t.Fatal("right password refused")
			}
			timeIt := func(user string) time.Duration {
				start := time.Now()
				if p.Check(user, []byte("wrong")) {
					t.Fatalf("%s: wrong password accepted", user)
				}
				return time.Since(start)
			}
			const runs = 7
			var known, unknown []time.Duration
			for range runs {
				known = append(known, timeIt("known"))
				unknown = append(unknown, timeIt("unknown"))
			}
			slices.Sort(known)
			slices.Sort(unknown)
			k, u := known[runs/2], unknown[runs/2]
			t.Logf("median Check: wrong password %v, unknown user %v", k, u)
			if u*3 < k || k*3 < u {
				t.Fatalf("unknown user takes %v, wrong password %v: more than 3x apart", u, k)
			}
		})
	}
}

func TestNilPasswords(t *testing.T) {
	var p *Passwords
	if p.Check("a", []byte("b")) || p.Len() != 0 || p.Warnings() != nil {
		t.Fatal("nil *Passwords must refuse and be empty")
	}
}

func TestPasswordWarnings(t *testing.T) {
	p, err := LoadPasswords(filepath.Join("testdata", "mosquitto-pbkdf2.passwd"))
	if err != nil {
		t.Fatal(err)
	}
	if w := p.Warnings(); len(w) != 1 || !strings.Contains(w[0], "3 of 3 users have $7$ hashes with fewer than 10000 iterations (first on line 6)") {
		t.Errorf("warnings %q", w)
	}
	h, _ := HashPassword([]byte("x"))
	data, _ := os.ReadFile(filepath.Join("testdata", "mosquitto-sha512.passwd"))
	p, err = LoadPasswords(writeFile(t, "pw", string(data)+"strong:"+h+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	w := strings.Join(p.Warnings(), "\n")
	if !strings.Contains(w, "2 of 3 users have $6$ hashes") || !strings.Contains(w, "2 different kinds") {
		t.Errorf("warnings %q", w)
	}
	p, err = LoadPasswords(writeFile(t, "pw", "strong:"+h+"\n"))
	if err != nil || p.Warnings() != nil {
		t.Errorf("strong hash: %v, warnings %q", err, p.Warnings())
	}
}

// TestSecurity12_PasswordCostLimits: a password file is an input too. A cost
// at the limit loads; one step above is refused naming the file, the line and
// the limit, before anything is hashed.
func TestSecurity12_PasswordCostLimits(t *testing.T) {
	cheap, err := HashPasswordIterations([]byte("pw"), 10)
	if err != nil {
		t.Fatal(err)
	}
	salt := "c2FsdHNhbHRzYWx0" // 12 bytes
	sum := strings.Repeat("QUJD", 21) + "QQ=="
	pbkdf2 := func(iter int) string { return fmt.Sprintf("$7$%d$%s$%s", iter, salt, sum) }
	// A well-formed bcrypt hash of any cost, without paying for that cost.
	bcryptCost := func(cost int) string {
		return fmt.Sprintf("$2b$%02d$27wg7cYboVYhbdsylE9jcuuOl6sysj/GEo/M4ZRv87IW/4JQWhO1q", cost)
	}
	// Two cheap users come first so that the dummy hash made at load is a
	// cheap PBKDF2 one, not a bcrypt hash of the cost under test.
	file := func(line string) string {
		return writeFile(t, "pw", "a:"+cheap+"\nb:"+cheap+"\n"+line+"\n")
	}

	p, err := LoadPasswords(file("max7:" + pbkdf2(maxIterations) + "\nmax2:" + bcryptCost(maxBcryptCost)))
	if err != nil {
		t.Fatalf("costs at the limits refused: %v", err)
	}
	if got := p.users["max7"].cost; got != 1_000_000 {
		t.Errorf("$7$ at the limit: cost %d, want 1000000", got)
	}
	if got := p.users["max2"].cost; got != 16 {
		t.Errorf("bcrypt at the limit: cost %d, want 16", got)
	}

	for _, tc := range []struct{ name, line, want string }{
		{"pbkdf2", "eve:" + pbkdf2(1_000_001), "$7$ iteration count 1000001 is above the limit of 1000000"},
		{"bcrypt", "eve:" + bcryptCost(17), "bcrypt cost 17 is above the limit of 16"},
		{"bcrypt max", "eve:" + bcryptCost(31), "bcrypt cost 31 is above the limit of 16"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := file(tc.line)
			p, err := LoadPasswords(path)
			if err == nil {
				t.Fatalf("loaded %d users, want an error", p.Len())
			}
			var le *LineError
			if !errors.As(err, &le) || le.Path != path || le.Line != 3 {
				t.Fatalf("error %v (%T), want a *LineError for %s line 3", err, err, path)
			}
			if msg := err.Error(); !strings.HasPrefix(msg, path+":3: ") || !strings.Contains(msg, tc.want) {
				t.Errorf("error %q, want %q prefix and %q in it", msg, path+":3: ", tc.want)
			}
			if err := SetPasswordHash(filepath.Join(t.TempDir(), "pw"), "eve", tc.line[len("eve:"):]); err == nil || !strings.Contains(err.Error(), "above the limit") {
				t.Errorf("SetPasswordHash accepted it: %v", err)
			}
		})
	}
	if _, err := HashPasswordIterations([]byte("pw"), 1_000_001); err == nil {
		t.Error("HashPasswordIterations wrote a hash LoadPasswords refuses")
	}
}
