package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/holdfast/holdfast/auth"
)

// passwdRun runs holdfast passwd FILE USER with password on stdin.
func passwdRun(t *testing.T, file, user, password string) (stderr string, err error) {
	t.Helper()
	var out, errb bytes.Buffer
	env := &Env{Stdin: strings.NewReader(password + "\n"), Stdout: &out, Stderr: &errb, Version: "test"}
	err = Run(env, []string{"passwd", file, user})
	return errb.String(), err
}

// TestSecurity14_PasswdCommand: holdfast passwd writes 0600 under any umask,
// narrows (and says so) a file others could read, and refuses a symbolic link.
func TestSecurity14_PasswdCommand(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	dir := t.TempDir()

	fresh := filepath.Join(dir, "fresh")
	if _, err := passwdRun(t, fresh, "alice", "one"); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(fresh); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("new file under umask 0: %v, want mode 0600", err)
	}

	wide := filepath.Join(dir, "wide")
	if err := os.WriteFile(wide, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	stderr, err := passwdRun(t, wide, "bob", "two")
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(wide); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("0644 file after passwd: %v, want mode 0600", err)
	}
	if !strings.Contains(stderr, "mode changed from 0644 to 0600") {
		t.Errorf("no note about the mode change: %q", stderr)
	}
	if p, err := auth.LoadPasswords(wide); err != nil || !p.Check("bob", []byte("two")) {
		t.Fatalf("bob not set: %v", err)
	}

	link := filepath.Join(dir, "link")
	if err := os.Symlink(fresh, link); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(fresh)
	_, err = passwdRun(t, link, "mallory", "three")
	if err == nil || !strings.Contains(err.Error(), "symbolic link") || !strings.Contains(err.Error(), link) {
		t.Fatalf("passwd through a symlink: %v, want a refusal naming %s", err, link)
	}
	if after, _ := os.ReadFile(fresh); !bytes.Equal(before, after) {
		t.Error("the link's target changed")
	}
}

// holdfast passwd --scram writes RFC 5803's SCRAM-SHA-256 entry (4096 iterations unless told),
// which serves a SCRAM exchange and a plain password; without it the entry stays $7$.
func TestPasswdSCRAM(t *testing.T) {
	file := filepath.Join(t.TempDir(), "passwd")
	for _, args := range [][]string{{"--scram", file, "sam"}, {"--scram", "--iterations", "5000", file, "sid"}, {file, "pat"}} {
		env := &Env{Stdin: strings.NewReader("pw\n"), Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}, Version: "test"}
		if err := Run(env, append([]string{"passwd"}, args...)); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
	}
	data, _ := os.ReadFile(file)
	for _, want := range []string{"sam:SCRAM-SHA-256$4096:", "sid:SCRAM-SHA-256$5000:", "pat:$7$100000$"} {
		if !strings.Contains(string(data), "\n"+want) && !strings.HasPrefix(string(data), want) {
			t.Errorf("no line starting %q in\n%s", want, data)
		}
	}
	p, err := auth.LoadPasswords(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"sam", "sid", "pat"} {
		if _, scram := p.SCRAM(u); !p.Check(u, []byte("pw")) || scram != (u != "pat") {
			t.Errorf("%s: plain password refused, or SCRAM entry %v", u, scram)
		}
	}
}
