package auth

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestHashPasswordFormat(t *testing.T) {
	a, err := HashPassword([]byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := HashPassword([]byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	if a == b {
		t.Fatal("two hashes of one password are equal: the salt is not random")
	}
	f := strings.Split(a, "$")
	if len(f) != 5 || f[0] != "" || f[1] != "7" || f[2] != strconv.Itoa(DefaultIterations) {
		t.Fatalf("hash %q, want $7$%d$salt$hash", a, DefaultIterations)
	}
	salt, err1 := base64.StdEncoding.DecodeString(f[3])
	sum, err2 := base64.StdEncoding.DecodeString(f[4])
	if err1 != nil || err2 != nil || len(salt) != 12 || len(sum) != 64 {
		t.Fatalf("salt %d bytes (%v), hash %d bytes (%v); want 12 and 64, padded base64 as mosquitto_passwd writes", len(salt), err1, len(sum), err2)
	}
	h, err := parseHash(a)
	if err != nil || !h.verify([]byte("secret")) || h.verify([]byte("Secret")) {
		t.Fatalf("hash does not verify: %v", err)
	}
	if _, err := HashPasswordIterations(nil, 0); err == nil {
		t.Error("0 iterations accepted")
	}
	if _, err := HashPasswordIterations(nil, maxIterations+1); err == nil {
		t.Error("too many iterations accepted")
	}
}

// setCheap is SetPassword with a cheap hash, for tests about the file rather
// than the hash.
func setCheap(t *testing.T, path, user, password string) error {
	t.Helper()
	h, err := HashPasswordIterations([]byte(password), cheapIterations)
	if err != nil {
		t.Fatal(err)
	}
	return SetPasswordHash(path, user, h)
}

const cheapIterations = 1000

func TestSetPasswordHashRefusesBadHash(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pw")
	for _, h := range []string{"", "plain", "$7$101$c2FsdHNhbHRzYWx0$c2hvcnRoYXNoc2hvcnQ="} {
		err := SetPasswordHash(path, "u", h)
		if err == nil {
			t.Fatalf("hash %q accepted", h)
		}
		if len(h) > 12 && strings.Contains(err.Error(), h[8:]) {
			t.Errorf("error %q quotes the hash", err)
		}
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("a refused hash created the file: %v", err)
	}
}

func TestSetPasswordNewFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "passwd")
	if err := SetPassword(path, "alice", []byte("one")); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("new file mode %v, want 0600", fi.Mode().Perm())
	}
	p, err := LoadPasswords(path)
	if err != nil {
		t.Fatal(err)
	}
	if p.Len() != 1 || !p.Check("alice", []byte("one")) || p.Check("alice", []byte("two")) {
		t.Fatal("the written hash does not verify")
	}
	if h := p.users["alice"]; h.kind != kindPBKDF2 || h.cost != DefaultIterations {
		t.Errorf("written as %v cost %d", h.kind, h.cost)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the password file (temporary file left behind?)", len(entries))
	}
}

func TestSetPasswordUpdatePreserves(t *testing.T) {
	mosq, err := os.ReadFile(filepath.Join("testdata", "mosquitto-pbkdf2.passwd"))
	if err != nil {
		t.Fatal(err)
	}
	bc, err := os.ReadFile(filepath.Join("testdata", "bcrypt.passwd"))
	if err != nil {
		t.Fatal(err)
	}
	// Mosquitto's users, comments and blank lines, a CRLF line, a duplicate
	// alice, and no newline at the end.
	orig := "# header\n\n" + string(mosq) + "  # indented comment\r\nalice:$7$1$stale\n" + strings.TrimSuffix(string(bc), "\n")
	dir := t.TempDir()
	path := filepath.Join(dir, "passwd")
	if err := os.WriteFile(path, []byte(orig), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}

	// Update alice: her first line changes in place, the stale duplicate goes,
	// nothing else changes.
	if err := setCheap(t, path, "alice", "new alice"); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	oldLines := strings.Split(orig, "\n")
	newLines := strings.Split(string(got), "\n")
	if len(newLines) != len(oldLines)-1 {
		t.Fatalf("%d lines, want %d:\n%s", len(newLines), len(oldLines)-1, got)
	}
	j := 0
	for _, l := range oldLines {
		switch {
		case strings.HasPrefix(l, "alice:$7$1$stale"):
			continue
		case strings.HasPrefix(l, "alice:"):
			if !strings.HasPrefix(newLines[j], "alice:$7$"+strconv.Itoa(cheapIterations)+"$") {
				t.Errorf("line %d: %q, want alice's new hash", j+1, newLines[j])
			}
		default:
			if newLines[j] != l {
				t.Errorf("line %d changed: %q -> %q", j+1, l, newLines[j])
			}
		}
		j++
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600 (the old 0640 is not kept)", fi.Mode().Perm())
	}

	// Add a user: appended after a newline is supplied for the last line.
	if err := setCheap(t, path, "zoe", "zoe's"); err != nil {
		t.Fatal(err)
	}
	got2, _ := os.ReadFile(path)
	if !bytes.HasPrefix(got2, got) || !bytes.HasPrefix(got2[len(got):], []byte("\nzoe:$7$")) || !bytes.HasSuffix(got2, []byte("\n")) {
		t.Fatalf("after adding zoe:\n%s", got2)
	}

	p, err := LoadPasswords(path)
	if err != nil {
		t.Fatal(err)
	}
	for user, pw := range map[string]string{
		"alice": "new alice", "jörg": "pässwörd ✓", "carol": "a:b c$d",
		"alex": "bcrypt a", "bea": "bcrypt b", "yann": "bcrypt y", "zoe": "zoe's",
	} {
		if !p.Check(user, []byte(pw)) {
			t.Errorf("%s: password refused", user)
		}
	}
	if p.Check("alice", []byte("correct horse battery staple")) {
		t.Error("alice's old password still accepted")
	}
	if p.Len() != 7 {
		t.Errorf("Len %d, want 7", p.Len())
	}
}

func TestSetPasswordCRLFLine(t *testing.T) {
	path := writeFile(t, "pw", "# c\r\nbob:$6$x$y\r\ncarl:$6$x$y\r\n")
	if err := setCheap(t, path, "bob", "b"); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	lines := strings.SplitAfter(string(got), "\n")
	if len(lines) != 4 || lines[0] != "# c\r\n" || !strings.HasPrefix(lines[1], "bob:$7$") || !strings.HasSuffix(lines[1], "==\r\n") || lines[2] != "carl:$6$x$y\r\n" {
		t.Fatalf("got %q", got)
	}
}

// TestSecurity14_PasswdRefusesSymlink: a symbolic link at the password file's
// path is refused, dangling or not, and neither it nor its target changes.
func TestSecurity14_PasswdRefusesSymlink(t *testing.T) {
	dir := t.TempDir()
	elsewhere := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(elsewhere, []byte("# not a password file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, target := range map[string]string{"to a file": elsewhere, "dangling": filepath.Join(dir, "nothing")} {
		t.Run(name, func(t *testing.T) {
			link := filepath.Join(dir, "link "+name)
			if err := os.Symlink(target, link); err != nil {
				t.Skip("no symlinks here:", err)
			}
			err := setCheap(t, link, "u", "p")
			if !errors.Is(err, ErrSymlink) || !strings.Contains(err.Error(), link) {
				t.Fatalf("error %v, want ErrSymlink naming %s", err, link)
			}
			if got, err := os.Readlink(link); err != nil || got != target {
				t.Errorf("the link changed: %q, %v", got, err)
			}
		})
	}
	if got, err := os.ReadFile(elsewhere); err != nil || string(got) != "# not a password file\n" {
		t.Errorf("the link's target changed: %q, %v", got, err)
	}
	if fi, err := os.Stat(elsewhere); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("the link's target's mode changed: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "nothing")); !os.IsNotExist(err) {
		t.Errorf("the dangling link's target was created: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("directory holds %d entries, want the two links (temporary file left behind?)", len(entries))
	}
}

// TestSecurity14_PasswdWrites0600: an existing password file readable by
// group and others comes back 0600, replaced (a new inode), not rewritten in
// place, with no temporary file left.
func TestSecurity14_PasswdWrites0600(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "passwd")
	if err := os.WriteFile(path, []byte("# users\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o664); err != nil { // past the umask
		t.Fatal(err)
	}
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := setCheap(t, path, "u", "p"); err != nil {
		t.Fatal(err)
	}
	after, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if after.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", after.Mode().Perm())
	}
	if os.SameFile(before, after) {
		t.Error("the file was rewritten in place, not replaced by a rename")
	}
	p, err := LoadPasswords(path)
	if err != nil || !p.Check("u", []byte("p")) {
		t.Fatalf("the new file does not hold u: %v", err)
	}
	if got, _ := os.ReadFile(path); !strings.HasPrefix(string(got), "# users\nu:$7$") {
		t.Errorf("content %q", got)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the password file", len(entries))
	}
}

func TestSetPasswordInvalidUser(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pw")
	for _, user := range []string{"", "a:b", "#root", " lead", "trail ", "new\nline", "nul\x00", "tab\there", string([]byte{0xff, 0xfe}), strings.Repeat("u", 65536)} {
		err := setCheap(t, path, user, "p")
		if !errors.Is(err, ErrInvalidUsername) {
			t.Errorf("user %q: error %v, want ErrInvalidUsername", user, err)
		}
		err = SetPassword(path, user, []byte("p"))
		if !errors.Is(err, ErrInvalidUsername) {
			t.Errorf("user %q: error %v, want ErrInvalidUsername", user, err)
		}
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("a refused user created the file: %v", err)
	}
	// Names LoadPasswords reads back unchanged are fine, spaces and '#' inside
	// included.
	for _, user := range []string{"a b", "x#y", "ünï", "$7$"} {
		if err := setCheap(t, path, user, "p"); err != nil {
			t.Errorf("user %q: %v", user, err)
		}
	}
	p, err := LoadPasswords(path)
	if err != nil || p.Len() != 4 || !p.Check("x#y", []byte("p")) {
		t.Fatalf("%v, %d users", err, p.Len())
	}
}

func TestSetPasswordUnreadableFile(t *testing.T) {
	dir := t.TempDir()
	if err := setCheap(t, dir, "u", "p"); err == nil {
		t.Fatal("SetPassword on a directory succeeded")
	}
}
