package enhauth

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/xdg-go/scram"

	"github.com/holdfast/holdfast/auth"
	"github.com/holdfast/holdfast/internal/scramtest"
)

// RFC 7677, section 3: user "user", password "pencil".
const (
	vectorClientFirst = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
	vectorServerFirst = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
	vectorClientFinal = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
	vectorServerFinal = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
)

// users is a lookup of the given passwords, salted with RFC 7677's salt, and decoys for others.
func users(t testing.TB, iterations int, passwords map[string]string) func(string) (auth.SCRAMCredential, bool) {
	salt, _ := base64.StdEncoding.DecodeString("W22ZaJ0SNY7soEsUEjb6gQ==")
	creds := map[string]auth.SCRAMCredential{}
	for u, p := range passwords {
		c, err := auth.DeriveSCRAM([]byte(p), salt, iterations)
		if err != nil {
			t.Fatal(err)
		}
		creds[u] = c
	}
	return func(user string) (auth.SCRAMCredential, bool) {
		if c, ok := creds[user]; ok {
			return c, true
		}
		return (*auth.Passwords)(nil).SCRAM(user)
	}
}

func vectorServer(t testing.TB) *SCRAM {
	s := NewSCRAM(users(t, 4096, map[string]string{"user": "pencil"}))
	s.nonce = func() string { return "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0" }
	return s
}

// The server's side of RFC 7677's example, byte for byte.
func TestSCRAMRFC7677Vector(t *testing.T) {
	x := vectorServer(t).Start()
	out, done, err := x.Step([]byte(vectorClientFirst))
	if err != nil || done || string(out) != vectorServerFirst {
		t.Fatalf("server-first: %q, %v, %v; want %q", out, done, err, vectorServerFirst)
	}
	out, done, err = x.Step([]byte(vectorClientFinal))
	if err != nil || !done || string(out) != vectorServerFinal {
		t.Fatalf("server-final: %q, %v, %v; want %q", out, done, err, vectorServerFinal)
	}
	if x.Username() != "user" {
		t.Fatalf("username %q", x.Username())
	}
	if _, _, err := x.Step([]byte(vectorClientFinal)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("a step after the end: %v, want ErrMalformed", err)
	}
}

// The tests' client writes RFC 7677's example too, so the broker's tests speak real SCRAM.
func TestSCRAMTestClientRFC7677Vector(t *testing.T) {
	c := scramtest.NewWithNonce("user", "pencil", "rOprNGfwEbeRWgbNEkqO")
	if got := string(c.First()); got != vectorClientFirst {
		t.Fatalf("client-first %q", got)
	}
	final, err := c.Final([]byte(vectorServerFirst))
	if err != nil || string(final) != vectorClientFinal {
		t.Fatalf("client-final %q, %v", final, err)
	}
	if err := c.Verify([]byte(vectorServerFinal)); err != nil {
		t.Fatal(err)
	}
	if err := c.Verify([]byte("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G5=")); err == nil {
		t.Fatal("a wrong server signature verified")
	}
}

// run drives one exchange between a third-party SCRAM client (github.com/xdg-go/scram) and the
// server; it returns the server's error, and fails if the client refuses a server that succeeded.
func run(t *testing.T, s *SCRAM, user, password string) (Exchange, error) {
	t.Helper()
	cl, err := scram.SHA256.NewClient(user, password, "")
	if err != nil {
		t.Fatal(err)
	}
	conv := cl.NewConversation()
	x := s.Start()
	msg, err := conv.Step("")
	for err == nil {
		out, done, serr := x.Step([]byte(msg))
		if serr != nil {
			return x, serr
		}
		msg, err = conv.Step(string(out))
		if done {
			if err != nil || !conv.Valid() {
				t.Fatalf("the third-party client refuses the server's final message: %v", err)
			}
			return x, nil
		}
	}
	t.Fatalf("third-party client: %v", err)
	return nil, nil
}

// Interoperability with an independent implementation, and the failures a client sees.
func TestSCRAMAgainstThirdPartyClient(t *testing.T) {
	// "I\u00adX" has a soft hyphen, which SASLprep removes on both sides.
	s := NewSCRAM(users(t, 4096, map[string]string{"alice": "correct horse", "bob": "I\u00adX", "c,d=e": "x"}))
	for _, u := range []struct{ user, password string }{{"alice", "correct horse"}, {"bob", "IX"}, {"c,d=e", "x"}} {
		x, err := run(t, s, u.user, u.password)
		if err != nil || x.Username() != u.user {
			t.Fatalf("%s: %v, username %q", u.user, err, x.Username())
		}
	}
	for _, u := range []struct{ user, password string }{{"alice", "wrong"}, {"mallory", "correct horse"}} {
		x, err := run(t, s, u.user, u.password)
		if !errors.Is(err, ErrNotAuthorized) || x.Username() != "" {
			t.Fatalf("%s/%s: %v, username %q; want ErrNotAuthorized", u.user, u.password, err, x.Username())
		}
	}
}

// An unknown user gets a server-first-message like a known one's, with the same salt every
// time, so the first answer does not tell who exists.
func TestSCRAMUnknownUserLooksKnown(t *testing.T) {
	s := NewSCRAM(users(t, 4096, map[string]string{"alice": "pw"}))
	first := func(user string) (salt, iter string) {
		out, _, err := s.Start().Step(scramtest.New(user, "pw").First())
		if err != nil {
			t.Fatal(err)
		}
		f := strings.Split(string(out), ",")
		return f[1], f[2]
	}
	_, iterKnown := first("alice")
	salt1, iter1 := first("nobody")
	salt2, _ := first("nobody")
	salt3, _ := first("somebody")
	if iter1 != iterKnown || salt1 != salt2 || salt1 == salt3 || len(salt1) != len("s=")+24 {
		t.Fatalf("decoys: %s %s %s %s; known %s", salt1, iter1, salt2, salt3, iterKnown)
	}
}

func TestSCRAMRefusesMalformed(t *testing.T) {
	nonce := "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
	for _, tc := range []struct {
		name, first, final string
		want               error
	}{
		{"no GS2 header", "n=user,r=abc", "", ErrMalformed},
		{"channel binding asked", "p=tls-unique,,n=user,r=abc", "", ErrNotAuthorized},
		{"unknown binding flag", "x,,n=user,r=abc", "", ErrMalformed},
		{"mandatory extension", "n,,m=ext,n=user,r=abc", "", ErrMalformed},
		{"bad escape", "n,,n=us=er,r=abc", "", ErrMalformed},
		{"empty user", "n,,n=,r=abc", "", ErrMalformed},
		{"nonce with a blank", "n,,n=user,r=a c", "", ErrMalformed},
		{"another authzid", "n,a=root,n=user,r=abc", "", ErrNotAuthorized},
		{"not UTF-8", "n,,n=\xff,r=abc", "", ErrMalformed},
		{"no proof", vectorClientFirst, "c=biws,r=" + nonce, ErrMalformed},
		{"binding differs", vectorClientFirst, "c=eSws,r=" + nonce + ",p=" + strings.Repeat("A", 43) + "=", ErrMalformed},
		{"nonce differs", vectorClientFirst, "c=biws,r=rOprNGfwEbeRWgbNEkqO,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", ErrMalformed},
		{"short proof", vectorClientFirst, "c=biws,r=" + nonce + ",p=dHzb", ErrMalformed},
		{"wrong proof", vectorClientFirst, "c=biws,r=" + nonce + ",p=eHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", ErrNotAuthorized},
	} {
		x := vectorServer(t).Start()
		_, _, err := x.Step([]byte(tc.first))
		if tc.final != "" {
			if err != nil {
				t.Fatalf("%s: client-first: %v", tc.name, err)
			}
			_, _, err = x.Step([]byte(tc.final))
		}
		if !errors.Is(err, tc.want) || x.Username() != "" {
			t.Errorf("%s: %v, username %q; want %v", tc.name, err, x.Username(), tc.want)
		}
		if _, _, err := x.Step([]byte(vectorClientFinal)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: the exchange goes on after failing: %v", tc.name, err)
		}
	}
}

// The server's whole side of one exchange (both steps of RFC 7677's example): what a SCRAM
// login costs the broker's CPU, the iterations being the client's to pay.
func BenchmarkSCRAMServerExchange(b *testing.B) {
	s := vectorServer(b)
	for b.Loop() {
		x := s.Start()
		x.Step([]byte(vectorClientFirst))
		if _, done, err := x.Step([]byte(vectorClientFinal)); !done || err != nil {
			b.Fatal(err)
		}
	}
}

// Whatever a client sends in either step, the exchange answers or fails; it never panics, and
// it succeeds only with the proof of RFC 7677's example.
func FuzzSCRAMExchange(f *testing.F) {
	f.Add([]byte(vectorClientFirst), []byte(vectorClientFinal))
	f.Add([]byte("y,a=user,n=user,r=x,ext=1"), []byte("c=eSxhPXVzZXIs,r=x,p="))
	f.Add([]byte("n,,n=u=2Cs=3D,r=\x7f"), []byte(",p=,p=,p="))
	s := vectorServer(f)
	f.Fuzz(func(t *testing.T, first, final []byte) {
		x := s.Start()
		if _, _, err := x.Step(first); err != nil {
			return
		}
		_, done, err := x.Step(final)
		if done != (err == nil) || done && (string(first) != vectorClientFirst || x.Username() != "user") {
			t.Fatalf("done %v, err %v, username %q for %q then %q", done, err, x.Username(), first, final)
		}
	})
}
