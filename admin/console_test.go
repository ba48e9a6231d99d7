package admin

import (
	"net/http"
	"strings"
	"testing"
)

// TestConsoleFiles: the console's three files are served without the token, with their content
// type and no-cache; a revalidation with the ETag gets 304; other paths still need the token
// (the console's patterns must not outrank the protected catch-all), and the Host guard still
// applies to the page.
func TestConsoleFiles(t *testing.T) {
	s, _ := startAdmin(t, "s3cret")
	base := "http://" + s.Addr().String()
	for path, want := range map[string]string{
		"/":            "text/html; charset=utf-8",
		"/console.js":  "text/javascript; charset=utf-8",
		"/console.css": "text/css; charset=utf-8",
	} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != want ||
			resp.Header.Get("Cache-Control") != "no-cache" || resp.ContentLength < 500 {
			t.Errorf("GET %s: %d %q %q %d bytes, want 200 %q no-cache and a body", path, resp.StatusCode,
				resp.Header.Get("Content-Type"), resp.Header.Get("Cache-Control"), resp.ContentLength, want)
		}
		if !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'self'") {
			t.Errorf("GET %s: Content-Security-Policy %q", path, resp.Header.Get("Content-Security-Policy"))
		}
		req, _ := http.NewRequest("GET", base+path, nil)
		req.Header.Set("If-None-Match", resp.Header.Get("ETag"))
		again, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		again.Body.Close()
		if again.StatusCode != http.StatusNotModified {
			t.Errorf("GET %s with If-None-Match %s: %d, want 304", path, resp.Header.Get("ETag"), again.StatusCode)
		}
	}
	addr := s.Addr().String()
	for _, path := range []string{"/index.html", "/console.txt", "/api/overview", "/metrics", "/backup"} {
		if status, _ := get(t, addr, addr, path, ""); status != http.StatusUnauthorized {
			t.Errorf("GET %s without the token: %d, want 401", path, status)
		}
	}
	if status, _ := get(t, addr, "evil.example", "/", ""); status != http.StatusForbidden {
		t.Errorf("GET / with Host evil.example: %d, want 403", status)
	}
}
