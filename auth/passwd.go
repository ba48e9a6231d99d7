package auth

import (
	"bytes"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"
)

// DefaultIterations is the PBKDF2 iteration count HashPassword writes.
//
// mosquitto_passwd writes 101 (2.0) or 1,000 (2.1), which a GPU tries by the
// billion. OWASP's 2023 figure for PBKDF2-HMAC-SHA512 is 210,000, but on the
// 2-core Xeon dev VM that is 120 ms of CPU per check, and every CONNECT with a
// username pays it, wrong password or not. 100,000 is 55 ms of CPU there
// (60-80 ms wall time under load, BenchmarkCheck), and still a thousand times
// Mosquitto's default. Each hash carries its own count, so raising this later
// only affects passwords set after the change.
const DefaultIterations = 100_000

// saltLen is the salt length HashPassword writes, the one mosquitto_passwd 2.0
// writes and every Mosquitto 2.x reads.
const saltLen = 12

// HashPassword returns a new "$7$" PBKDF2-SHA512 hash of password with a random
// 12-byte salt and DefaultIterations iterations, in the form mosquitto_passwd
// writes, so Mosquitto 2.x can read it too.
func HashPassword(password []byte) (string, error) {
	return HashPasswordIterations(password, DefaultIterations)
}

// HashPasswordIterations is HashPassword with a chosen iteration count, from 1
// to 1,000,000 (the most LoadPasswords accepts).
func HashPasswordIterations(password []byte, iterations int) (string, error) {
	if iterations < 1 || iterations > maxIterations {
		return "", fmt.Errorf("auth: iteration count %d is outside 1..%d", iterations, maxIterations)
	}
	salt := make([]byte, saltLen)
	rand.Read(salt)
	sum, err := pbkdf2.Key(sha512.New, string(password), salt, iterations, sumLen)
	if err != nil {
		return "", fmt.Errorf("auth: hashing password: %w", err)
	}
	return fmt.Sprintf("$7$%d$%s$%s", iterations,
		base64.StdEncoding.EncodeToString(salt), base64.StdEncoding.EncodeToString(sum)), nil
}

// DefaultSCRAMIterations is the iteration count HashSCRAM writes unless told
// otherwise: RFC 7677's minimum. The client pays it, once per login (the server
// only compares keys), and so does the broker when a SCRAM user logs in with a
// plain CONNECT password.
const DefaultSCRAMIterations = 4096

// scramPrefix starts a SCRAM-SHA-256 entry (RFC 5803); scramSaltLen is the
// salt length HashSCRAM writes.
const (
	scramPrefix  = "SCRAM-SHA-256$"
	scramSaltLen = 16
)

// HashSCRAM returns a new SCRAM-SHA-256 entry for password in RFC 5803's form,
// "SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>", with a random
// 16-byte salt and iterations from 1 to 1,000,000.
func HashSCRAM(password []byte, iterations int) (string, error) {
	if iterations < 1 || iterations > maxIterations {
		return "", fmt.Errorf("auth: iteration count %d is outside 1..%d", iterations, maxIterations)
	}
	salt := make([]byte, scramSaltLen)
	rand.Read(salt)
	c, err := DeriveSCRAM(password, salt, iterations)
	if err != nil {
		return "", fmt.Errorf("auth: deriving the SCRAM keys: %w", err)
	}
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("%s%d:%s$%s:%s", scramPrefix, iterations, b64(salt), b64(c.StoredKey), b64(c.ServerKey)), nil
}

// ValidUsername returns an error wrapping ErrInvalidUsername if user cannot be
// written to a password file and read back as the same name: it must be
// non-empty valid UTF-8 of at most 65535 bytes, without ':', control
// characters, a leading '#' (a comment) or blanks at either end (trimmed on
// read).
func ValidUsername(user string) error {
	bad := func(why string) error { return fmt.Errorf("%w %q: %s", ErrInvalidUsername, user, why) }
	switch {
	case user == "":
		return bad("empty")
	case len(user) > 65535:
		return bad("longer than 65535 bytes")
	case !utf8.ValidString(user):
		return bad("not valid UTF-8")
	case strings.ContainsRune(user, ':'):
		return bad("contains ':', which separates user and hash in the file")
	case strings.IndexFunc(user, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0:
		return bad("contains a control character")
	case user[0] == '#':
		return bad("begins with '#', which marks a comment")
	case strings.TrimSpace(user) != user:
		return bad("begins or ends with a blank")
	}
	return nil
}

// SetPassword adds user to the password file at path or replaces the user's
// hash, with a new HashPassword hash. Every other line, comments and blank
// lines included, is kept byte for byte; a user listed more than once keeps
// only the first line, updated.
//
// The file is replaced atomically: a temporary file in the same directory is
// written, synced and renamed over it, and the directory is synced, so a reader
// (a broker reloading on SIGHUP) sees the old file or the new one, never half
// of one. The new file has mode 0600 whatever the umask and whatever mode the
// old one had, since its hashes can be attacked offline by anyone who reads
// them; an existing file keeps its owner and group (see keepOwner), so a broker
// running as the file's owner still reads it. A symbolic link at path is
// refused with ErrSymlink rather than followed: whoever can change the link
// would choose which file is rewritten, and whose content is copied into it.
//
// Two SetPassword calls on one file at the same time can lose one update.
func SetPassword(path, user string, password []byte) error {
	if err := ValidUsername(user); err != nil {
		return err
	}
	h, err := HashPassword(password)
	if err != nil {
		return err
	}
	return SetPasswordHash(path, user, h)
}

// SetPasswordHash is SetPassword with a hash made elsewhere, such as by
// HashPasswordIterations or another tool; it must be a hash LoadPasswords
// accepts.
func SetPasswordHash(path, user, hash string) error {
	if err := ValidUsername(user); err != nil {
		return err
	}
	if _, err := parseHash(hash); err != nil {
		return fmt.Errorf("auth: user %q: %w", user, err)
	}
	old, fi, err := readPasswordFile(path)
	if err != nil {
		return err
	}
	return writeAtomic(path, replaceUser(old, user, user+":"+hash), fi)
}

// ErrSymlink is returned by SetPassword when the password file is a symbolic
// link.
var ErrSymlink = errors.New("auth: the password file is a symbolic link")

// readPasswordFile returns the content and FileInfo of the password file at
// path, nil and nil when there is none. It refuses a symbolic link and
// anything but a regular file, and checks that the file it opened is the one
// it looked at, so a link put in its place meanwhile is not followed either.
func readPasswordFile(path string) ([]byte, fs.FileInfo, error) {
	lfi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil, nil
	case err != nil:
		return nil, nil, err
	case lfi.Mode()&fs.ModeSymlink != 0:
		return nil, nil, fmt.Errorf("%w: %s; give the path of the file itself", ErrSymlink, path)
	case !lfi.Mode().IsRegular():
		return nil, nil, fmt.Errorf("auth: %s is not a regular file", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if !os.SameFile(lfi, fi) {
		return nil, nil, fmt.Errorf("auth: %s was replaced while it was being read; try again", path)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, nil, err
	}
	return data, fi, nil
}

// replaceUser returns data with the first line for user replaced by entry and
// any later lines for user removed, or with entry appended when no line is for
// user. Lines are recognised as LoadPasswords recognises them; all others are
// copied unchanged, line endings included.
func replaceUser(data []byte, user, entry string) []byte {
	var out bytes.Buffer
	done := false
	rest := data
	for len(rest) > 0 {
		line := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line = rest[:i+1]
		}
		rest = rest[len(line):]
		if lineUser(line) != user {
			out.Write(line)
			continue
		}
		if done {
			continue
		}
		done = true
		eol := "\n"
		if bytes.HasSuffix(line, []byte("\r\n")) {
			eol = "\r\n"
		}
		out.WriteString(entry + eol)
	}
	if !done {
		if b := out.Bytes(); len(b) > 0 && b[len(b)-1] != '\n' {
			out.WriteByte('\n')
		}
		out.WriteString(entry + "\n")
	}
	return out.Bytes()
}

// lineUser returns the user name a password file line is for, or "" for a
// comment, blank or malformed line.
func lineUser(line []byte) string {
	t := strings.TrimSpace(string(line))
	if t == "" || t[0] == '#' {
		return ""
	}
	user, _, ok := strings.Cut(t, ":")
	if !ok {
		return ""
	}
	return strings.TrimSpace(user)
}

// writeAtomic replaces path with data, mode 0600, through a synced temporary
// file in the same directory. old is the replaced file's FileInfo, nil for a
// new file.
func writeAtomic(path string, data []byte, old fs.FileInfo) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if old != nil {
		if err = keepOwner(f, old); err != nil {
			return fmt.Errorf("auth: %s: %w", path, err)
		}
	}
	// CreateTemp asks for 0600 but the umask may take bits away.
	if err = f.Chmod(0o600); err != nil {
		return err
	}
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	syncDir(dir)
	return nil
}

// syncDir makes a rename in dir durable where the system allows it.
func syncDir(dir string) {
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	d.Sync()
	d.Close()
}
