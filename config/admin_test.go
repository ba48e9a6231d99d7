package config

import (
	"strings"
	"testing"
)

// TestSecurity04_AdminTokenOffLoopback: an admin listener that is not on loopback needs a
// token; the error names admin.token and the file.
func TestSecurity04_AdminTokenOffLoopback(t *testing.T) {
	for _, tc := range []struct {
		admin string
		want  string // "" = accepted
	}{
		{`address = "0.0.0.0:9883"`, "admin.token"},
		{`address = ":9883"`, "admin.token"},
		{`address = "192.0.2.1:9883"`, "admin.token"},
		{`address = "[::]:9883"`, "admin.token"},
		{`address = "admin.example.com:9883"`, "admin.token"},
		{`address = "0.0.0.0:9883"` + "\n" + `token = "t"`, ""},
		{`address = "127.0.0.1:9883"`, ""},
		{`address = "127.0.0.5:0"`, ""},
		{`address = "localhost:9883"`, ""},
		{`address = "[::1]:9883"`, ""},
		{`address = ""`, ""},
		{`address = "nowhere"`, "admin.address"},
	} {
		_, err := Load(defaults(t), "my.toml", []byte("[admin]\n"+tc.admin+"\n"))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.admin, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "my.toml")):
			t.Errorf("%s: %v, want an error naming %s and the file", tc.admin, err, tc.want)
		}
	}
}

func TestAllowedOriginsChecked(t *testing.T) {
	ws := "[[listener]]\ntype = \"ws\"\naddress = \"127.0.0.1:8080\"\n"
	for _, tc := range []struct{ origins, want string }{
		{`["dash.example.com"]`, "listener[0].allowed_origins"},
		{`["*", "https://dash.example.com"]`, "listener[0].allowed_origins"},
		{`["https://dash.example.com/app"]`, "listener[0].allowed_origins"},
		{`["*"]`, ""},
		{`["https://dash.example.com", "http://localhost:3000"]`, ""},
	} {
		_, err := Load(defaults(t), "my.toml", []byte(ws+"allowed_origins = "+tc.origins+"\n"))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.origins, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want an error naming %s", tc.origins, err, tc.want)
		}
	}
}
