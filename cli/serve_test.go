package cli

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/syncbuf"
)

// serveOnce runs holdfast serve with a TCP listener on a free loopback port and dataDir, waits
// until it is ready, stops it with SIGTERM (which serve has caught since it started) and
// returns its JSON log lines.
func serveOnce(t *testing.T, dataDir string) []map[string]any {
	t.Helper()
	def, err := os.ReadFile("../config.toml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "config.toml")
	body := fmt.Sprintf("data_dir = %q\n[log]\nformat = \"json\"\n[[listener]]\ntype = \"tcp\"\naddress = \"127.0.0.1:0\"\n", dataDir)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb syncbuf.Buffer
	env := &Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, DefaultConfig: def, Version: "test"}
	done := make(chan error, 1)
	go func() { done <- Run(env, []string{"serve", "-c", cfg}) }()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(errb.String(), "holdfast ready") {
		select {
		case err := <-done:
			t.Fatalf("serve returned before it was ready: %v\n%s", err, errb.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve not ready after 30s:\n%s", errb.String())
		}
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve: %v\n%s", err, errb.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("serve did not stop after SIGTERM:\n%s", errb.String())
	}
	var lines []map[string]any
	sc := bufio.NewScanner(strings.NewReader(errb.String()))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		lines = append(lines, m)
	}
	return lines
}

// dataDirWarnings returns the log lines that warn about the data directory's mode.
func dataDirWarnings(lines []map[string]any) []map[string]any {
	var w []map[string]any
	for _, l := range lines {
		if l["level"] == "warn" && l["data_dir"] != nil {
			w = append(w, l)
		}
	}
	return w
}

// TestSecurity15_ServeWarnsOpenDataDir: serve warns once, naming the directory and its mode,
// when the data directory lets other users in, and not for the 0700 one it creates.
func TestSecurity15_ServeWarnsOpenDataDir(t *testing.T) {
	open := filepath.Join(t.TempDir(), "open")
	if err := os.Mkdir(open, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o755); err != nil {
		t.Fatal(err)
	}
	w := dataDirWarnings(serveOnce(t, open))
	if len(w) != 1 {
		t.Fatalf("%d data directory warnings for a 0755 directory, want 1: %v", len(w), w)
	}
	if w[0]["data_dir"] != open || w[0]["mode"] != "0755" || !strings.Contains(w[0]["message"].(string), "chmod 700") {
		t.Errorf("warning %v, want data_dir %s, mode 0755 and what to do", w[0], open)
	}

	fresh := filepath.Join(t.TempDir(), "fresh")
	if w := dataDirWarnings(serveOnce(t, fresh)); len(w) != 0 {
		t.Errorf("warnings for the data directory serve created: %v", w)
	}
	if fi, err := os.Stat(fresh); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("created data directory: %v, want mode 0700", err)
	}
}
