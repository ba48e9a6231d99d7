package admin

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"time"
)

// The console's page, script and style: static, holding no data, so they are served without the
// token; the page asks for it and sends it with every /api/ request.
//
//go:embed console
var consoleFS embed.FS

// consoleFile is one embedded file with what its responses say about it.
type consoleFile struct {
	body        []byte
	contentType string
	etag        string
}

// consolePaths maps the URL paths to the embedded files.
var consolePaths = map[string]string{
	"/":            "index.html",
	"/console.js":  "console.js",
	"/console.css": "console.css",
}

// handleConsole registers the console's files on mux. Each path is its own pattern: a "GET /"
// pattern would outrank the token-protected "/" for every GET.
func handleConsole(mux *http.ServeMux) {
	h := consoleHandler()
	for p := range consolePaths {
		if p == "/" {
			p = "/{$}"
		}
		mux.Handle("GET "+p, h)
	}
}

// consoleHandler serves the console's files with their content type, a strong ETag and
// no-cache, so that a browser revalidates and never runs a page older than the broker.
func consoleHandler() http.Handler {
	types := map[string]string{
		".html": "text/html; charset=utf-8",
		".js":   "text/javascript; charset=utf-8",
		".css":  "text/css; charset=utf-8",
	}
	files := make(map[string]consoleFile, len(consolePaths))
	for p, name := range consolePaths {
		body, err := fs.ReadFile(consoleFS, "console/"+name)
		if err != nil {
			panic(err) // embedded at build time: missing only if the source tree is broken
		}
		sum := sha256.Sum256(body)
		files[p] = consoleFile{body: body, contentType: types[path.Ext(name)], etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Type", f.contentType)
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", f.etag)
		h.Set("X-Content-Type-Options", "nosniff")
		// The page inserts attacker-chosen strings (client ids, topics) as text; the policy is the
		// second line of defence should one ever reach markup: no inline or foreign script.
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
		h.Set("Referrer-Policy", "no-referrer")
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.body))
	})
}
