package admin

import (
	"bufio"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/holdfast/holdfast/internal/syncbuf"
	"github.com/holdfast/holdfast/persist"
)

// startAdmin serves a small on-disk store on 127.0.0.1:0 without a broker.
func startAdmin(t *testing.T, token string) (*Server, *syncbuf.Buffer) {
	t.Helper()
	o := persist.DefaultOptions(t.TempDir())
	o.MemTableSize = 8 << 20
	o.NumMemtables = 2
	o.BlockCacheSize = 4 << 20
	o.IndexCacheSize = 4 << 20
	o.ValueLogFileSize = 16 << 20
	o.Logger = zerolog.Nop()
	store, err := persist.Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := store.Close(); err != nil {
			t.Error(err)
		}
	})
	logs := &syncbuf.Buffer{}
	s, err := Start("127.0.0.1:0", token, nil, store, prometheus.NewRegistry(), zerolog.New(logs))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	return s, logs
}

// get sends one GET over a fresh connection with the Host header and Authorization given ("" =
// none) and returns the status and the start of the body.
func get(t *testing.T, addr, host, path, authorization string) (int, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	req := fmt.Sprintf("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n", path, host)
	if authorization != "" {
		req += "Authorization: " + authorization + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("GET %s Host %s: %v", path, host, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	return resp.StatusCode, string(body)
}

// TestSecurity04_AdminHostHeader: a request whose Host is a name other than localhost (a name a
// web page has rebound to 127.0.0.1) gets 403 on every endpoint, probes included; the same
// request addressed to 127.0.0.1:PORT, localhost or ::1 is served.
func TestSecurity04_AdminHostHeader(t *testing.T) {
	s, logs := startAdmin(t, "")
	addr := s.Addr().String()
	_, port, _ := net.SplitHostPort(addr)
	for _, path := range []string{"/backup", "/metrics", "/inspect", "/healthz", "/debug/pprof/", "/nowhere"} {
		for _, host := range []string{"evil.example", "evil.example:" + port, "127.0.0.1.evil.example:" + port, "localhost.evil.example", "192.0.2.1:" + port, ""} {
			if status, body := get(t, addr, host, path, ""); status != http.StatusForbidden {
				t.Errorf("GET %s with Host %q: %d %q, want 403", path, host, status, body)
			}
		}
	}
	for _, path := range []string{"/backup", "/metrics", "/inspect", "/healthz"} {
		for _, host := range []string{addr, "localhost:" + port, "LOCALHOST", "[::1]:" + port, "127.0.0.2:1234"} {
			if status, body := get(t, addr, host, path, ""); status != http.StatusOK {
				t.Errorf("GET %s with Host %q: %d %q, want 200", path, host, status, body)
			}
		}
	}
	if log := logs.String(); !strings.Contains(log, `"level":"warn"`) || !strings.Contains(log, `"host":"evil.example"`) {
		t.Fatalf("no warning naming the refused Host:\n%s", log)
	}
}

// TestSecurity04_AdminHostGuardAddresses: the configured and the bound address count, and on a
// listener bound to every interface so does any literal address (it cannot be rebound); names
// other than the configured one never do.
func TestSecurity04_AdminHostGuardAddresses(t *testing.T) {
	ok := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	named := newHostGuard("admin.lan:9883", &net.TCPAddr{IP: net.ParseIP("10.0.0.5"), Port: 9883}, zerolog.Nop(), ok)
	any4 := newHostGuard("0.0.0.0:0", &net.TCPAddr{IP: net.IPv4zero, Port: 9883}, zerolog.Nop(), ok)
	any6 := newHostGuard(":9883", &net.TCPAddr{IP: net.IPv6unspecified, Port: 9883}, zerolog.Nop(), ok)
	for _, tc := range []struct {
		g    *hostGuard
		host string
		want bool
	}{
		{named, "admin.lan:9883", true},
		{named, "ADMIN.LAN:9883", true},
		{named, "10.0.0.5:9883", true},
		{named, "admin.lan", false}, // port 80
		{named, "admin.lan:9884", false},
		{named, "10.0.0.6:9883", false},
		{named, "evil.example:9883", false},
		{named, "127.0.0.1:80", true},
		{any4, "10.1.2.3:9883", true}, // a probe by pod IP
		{any4, "10.1.2.3:30000", true},
		{any4, "[fd00::1]:9883", true},
		{any4, "evil.example:9883", false},
		{any6, "192.0.2.7:9883", true},
		{any6, "evil.example:9883", false},
		{any6, "[::1]", true},
		{any6, "[::1", false},
	} {
		if got := tc.g.allowed(tc.host); got != tc.want {
			t.Errorf("%v: Host %q allowed = %v, want %v", tc.g.own, tc.host, got, tc.want)
		}
	}
}

// TestSecurity04_AdminTokenStillRequired: with a token set, the probes answer without it and
// everything else, /backup first, needs it; a good Host does not replace the token.
func TestSecurity04_AdminTokenStillRequired(t *testing.T) {
	s, _ := startAdmin(t, "s3cret")
	addr := s.Addr().String()
	for _, path := range []string{"/backup", "/metrics", "/inspect"} {
		if status, _ := get(t, addr, addr, path, ""); status != http.StatusUnauthorized {
			t.Errorf("GET %s without the token: %d, want 401", path, status)
		}
		if status, _ := get(t, addr, addr, path, "Bearer s3cret"); status != http.StatusOK {
			t.Errorf("GET %s with the token: %d, want 200", path, status)
		}
		if status, _ := get(t, addr, "evil.example", path, "Bearer s3cret"); status != http.StatusForbidden {
			t.Errorf("GET %s with the token and Host evil.example: %d, want 403", path, status)
		}
	}
	if status, _ := get(t, addr, addr, "/healthz", ""); status != http.StatusOK {
		t.Errorf("/healthz without the token: %d, want 200", status)
	}
}

// TestSecurity10_TokenCompare: the digest comparison accepts the right header and refuses a
// wrong one of the same length, shorter or longer ones, and none.
func TestSecurity10_TokenCompare(t *testing.T) {
	want := sha256.Sum256([]byte("Bearer s3cret"))
	if !tokenMatches("Bearer s3cret", want) {
		t.Fatal("the right token is refused")
	}
	for _, wrong := range []string{"Bearer s3creT", "Bearer s3cre", "Bearer s3cret ", "Bearer s3cret\x00", "bearer s3cret", "s3cret", ""} {
		if tokenMatches(wrong, want) {
			t.Errorf("%q accepted", wrong)
		}
	}
	s, _ := startAdmin(t, "s3cret")
	addr := s.Addr().String()
	for _, tc := range []struct {
		auth   string
		status int
	}{
		{"Bearer s3cret", 200},
		{"Bearer s3creX", 401},
		{"Bearer s3cretX", 401},
		{"Bearer s", 401},
	} {
		if status, body := get(t, addr, addr, "/metrics", tc.auth); status != tc.status {
			t.Errorf("Authorization %q: %d %q, want %d", tc.auth, status, body, tc.status)
		}
	}
}
