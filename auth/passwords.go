package auth

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/xdg-go/stringprep"
	"golang.org/x/crypto/bcrypt"
)

// hashKind is the format of one password hash.
type hashKind uint8

const (
	kindPBKDF2 hashKind = iota + 1 // "$7$": PBKDF2-HMAC-SHA512
	kindSHA512                     // "$6$": SHA-512(password || salt)
	kindBcrypt                     // "$2a$", "$2b$", "$2y$"
	kindSCRAM                      // "SCRAM-SHA-256$": RFC 5803's StoredKey and ServerKey
)

func (k hashKind) String() string {
	switch k {
	case kindPBKDF2:
		return "$7$ PBKDF2-SHA512"
	case kindSHA512:
		return "$6$ SHA-512"
	case kindBcrypt:
		return "bcrypt"
	case kindSCRAM:
		return "SCRAM-SHA-256"
	}
	return "unknown"
}

const (
	sumLen = sha512.Size // length of a $6$ or $7$ hash

	minSaltLen = 8  // shorter salts are refused
	maxSaltLen = 64 // Mosquitto 2.1 writes 64-byte salts

	// maxIterations and maxBcryptCost bound the cost a password file may ask
	// for: the file is an input too, and one typo or hostile line must not
	// make every CONNECT (and, for bcrypt, the dummy hash made at load) burn
	// seconds to days of CPU. Both are generous: holdfast writes 100,000
	// iterations, mosquitto_passwd 101 (2.0) or 1,000 (2.1); bcrypt tools
	// default to cost 10 to 12 (htpasswd -B: 5). On the 2-core dev VM
	// 1,000,000 iterations take 0.5 s and bcrypt cost 16 about 3.5 s per
	// check (cost 14: 0.9 s; each step doubles). LoadPasswords refuses a
	// hash above either, naming the file, the line and the limit.
	maxIterations = 1_000_000
	maxBcryptCost = 16

	// weakIterations is the count below which Warnings flags a $7$ hash.
	// mosquitto_passwd 2.0 writes 101, 2.1 writes 1,000.
	weakIterations = 10_000
)

// hash is one parsed password hash.
type hash struct {
	kind   hashKind
	cost   int    // $7$, SCRAM: iterations; bcrypt: cost; $6$: 0
	salt   []byte // $6$, $7$, SCRAM
	sum    []byte // $6$, $7$: 64 bytes; SCRAM: the StoredKey, 32 bytes
	server []byte // SCRAM: the ServerKey, 32 bytes
	bcrypt []byte // bcrypt: the whole hash, as bcrypt.CompareHashAndPassword wants it
	line   int    // where it was read, for Warnings
}

// verify reports whether password produces h. The comparison of the results
// is constant time.
func (h *hash) verify(password []byte) bool {
	switch h.kind {
	case kindPBKDF2:
		sum, err := pbkdf2.Key(sha512.New, string(password), h.salt, h.cost, sumLen)
		return err == nil && subtle.ConstantTimeCompare(sum, h.sum) == 1
	case kindSHA512:
		d := sha512.New()
		d.Write(password)
		d.Write(h.salt)
		return subtle.ConstantTimeCompare(d.Sum(nil), h.sum) == 1
	case kindBcrypt:
		return bcrypt.CompareHashAndPassword(h.bcrypt, password) == nil
	case kindSCRAM:
		c, err := DeriveSCRAM(password, h.salt, h.cost)
		return err == nil && subtle.ConstantTimeCompare(c.StoredKey, h.sum) == 1
	}
	return false
}

// Passwords is a loaded password file. Safe for concurrent use; immutable
// after load.
type Passwords struct {
	users    map[string]*hash
	dummy    hash // verified for unknown users, so they cost what a known one does
	warnings []string

	// decoy makes the salts of SCRAM's decoy credentials (see SCRAM); decoyCost
	// is their iteration count, the one most SCRAM entries have.
	decoy     [32]byte
	decoyCost int
}

// LoadPasswords reads a Mosquitto-format password file: lines "user:hash",
// '#' comments and blank lines ignored. Hash formats: "$7$<iterations>$<base64
// salt>$<base64 hash>" (PBKDF2-SHA512 as written by mosquitto_passwd 2.x),
// "$6$<base64 salt>$<base64 hash>" (Mosquitto's older SHA-512 of
// password+salt, not crypt(3)), bcrypt "$2a$/$2b$/$2y$", and RFC 5803's
// "SCRAM-SHA-256$<iterations>:<base64 salt>$<base64 StoredKey>:<base64
// ServerKey>", which serves a plain password and a SCRAM exchange alike. An
// error is a *LineError naming the file and line and what is wrong; it never
// contains the hash.
func LoadPasswords(path string) (*Passwords, error) {
	lines, err := readLines(path)
	if err != nil {
		return nil, err
	}
	p := &Passwords{users: make(map[string]*hash)}
	for i, line := range lines {
		n := i + 1
		fail := func(format string, args ...any) error {
			return &LineError{Path: path, Line: n, Msg: fmt.Sprintf(format, args...)}
		}
		if len(line) > maxLine {
			return nil, fail("line longer than %d bytes", maxLine)
		}
		t := strings.TrimSpace(line)
		if t == "" || t[0] == '#' {
			continue
		}
		user, encoded, ok := strings.Cut(t, ":")
		if !ok {
			return nil, fail("no ':' between user name and password hash")
		}
		user, encoded = strings.TrimSpace(user), strings.TrimSpace(encoded)
		if user == "" {
			return nil, fail("empty user name before ':'")
		}
		if prev, dup := p.users[user]; dup {
			return nil, fail("user %q is listed again (first on line %d)", user, prev.line)
		}
		h, err := parseHash(encoded)
		if err != nil {
			return nil, fail("user %q: %v", user, err)
		}
		h.line = n
		p.users[user] = h
	}
	if err := p.setDummy(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	p.setDecoy()
	p.warnings = hashWarnings(path, p.users)
	return p, nil
}

// parseHash decodes one hash field. Its errors say what is wrong without
// quoting the field.
func parseHash(s string) (*hash, error) {
	switch {
	case s == "":
		return nil, fmt.Errorf("no password hash after ':'")
	case strings.HasPrefix(s, "$7$"):
		f := strings.Split(s[3:], "$")
		if len(f) != 3 {
			return nil, fmt.Errorf("$7$ hash has %d '$'-separated fields after \"$7$\", want 3 (iterations, salt, hash)", len(f))
		}
		iter, err := strconv.Atoi(f[0])
		if err != nil || iter < 1 {
			return nil, fmt.Errorf("$7$ iteration count is not a positive number")
		}
		if iter > maxIterations {
			return nil, fmt.Errorf("$7$ iteration count %d is above the limit of %d", iter, maxIterations)
		}
		salt, sum, err := decodeSaltSum(f[1], f[2])
		if err != nil {
			return nil, fmt.Errorf("$7$ %v", err)
		}
		return &hash{kind: kindPBKDF2, cost: iter, salt: salt, sum: sum}, nil
	case strings.HasPrefix(s, "$6$"):
		f := strings.Split(s[3:], "$")
		if strings.HasPrefix(s, "$6$rounds=") || len(f) == 2 && len(f[1]) == 86 {
			return nil, fmt.Errorf("$6$ hash looks like crypt(3) SHA-512, which Mosquitto never wrote; set the password again with `holdfast passwd`")
		}
		if len(f) != 2 {
			return nil, fmt.Errorf("$6$ hash has %d '$'-separated fields after \"$6$\", want 2 (salt, hash)", len(f))
		}
		salt, sum, err := decodeSaltSum(f[0], f[1])
		if err != nil {
			return nil, fmt.Errorf("$6$ %v", err)
		}
		return &hash{kind: kindSHA512, salt: salt, sum: sum}, nil
	case strings.HasPrefix(s, "$2a$"), strings.HasPrefix(s, "$2b$"), strings.HasPrefix(s, "$2y$"):
		cost, err := bcrypt.Cost([]byte(s))
		if err != nil || len(s) != 60 {
			return nil, fmt.Errorf("malformed bcrypt hash (want 60 characters: $2b$NN$ and 53 of salt and hash)")
		}
		if cost > maxBcryptCost {
			return nil, fmt.Errorf("bcrypt cost %d is above the limit of %d", cost, maxBcryptCost)
		}
		return &hash{kind: kindBcrypt, cost: cost, bcrypt: []byte(s)}, nil
	case strings.HasPrefix(s, scramPrefix):
		return parseSCRAM(s[len(scramPrefix):])
	case strings.HasPrefix(s, "$argon2id$"):
		return nil, fmt.Errorf("argon2id hashes (Mosquitto 2.1) are not supported; set the password again with `holdfast passwd`")
	case strings.HasPrefix(s, "$"):
		return nil, fmt.Errorf("unknown hash format (want $7$, $6$, bcrypt $2a$/$2b$/$2y$ or SCRAM-SHA-256$)")
	}
	return nil, fmt.Errorf("password is not hashed (plain-text password files are not supported; hash it with `holdfast passwd`)")
}

// parseSCRAM decodes what follows "SCRAM-SHA-256$" in RFC 5803's form,
// "<iterations>:<salt>$<StoredKey>:<ServerKey>", all base64 but the count.
func parseSCRAM(s string) (*hash, error) {
	params, keys, ok := strings.Cut(s, "$")
	iter64, salt64, ok1 := strings.Cut(params, ":")
	stored64, server64, ok2 := strings.Cut(keys, ":")
	if !ok || !ok1 || !ok2 {
		return nil, fmt.Errorf("SCRAM-SHA-256 entry is not <iterations>:<salt>$<StoredKey>:<ServerKey>")
	}
	iter, err := strconv.Atoi(iter64)
	if err != nil || iter < 1 {
		return nil, fmt.Errorf("SCRAM-SHA-256 iteration count is not a positive number")
	}
	if iter > maxIterations {
		return nil, fmt.Errorf("SCRAM-SHA-256 iteration count %d is above the limit of %d", iter, maxIterations)
	}
	salt, err := decodeBase64(salt64)
	if err != nil || len(salt) < minSaltLen || len(salt) > maxSaltLen {
		return nil, fmt.Errorf("SCRAM-SHA-256 salt is not %d to %d bytes of base64", minSaltLen, maxSaltLen)
	}
	stored, err1 := decodeBase64(stored64)
	server, err2 := decodeBase64(server64)
	if err1 != nil || err2 != nil || len(stored) != sha256.Size || len(server) != sha256.Size {
		return nil, fmt.Errorf("SCRAM-SHA-256 StoredKey and ServerKey are not %d bytes of base64 each", sha256.Size)
	}
	return &hash{kind: kindSCRAM, cost: iter, salt: salt, sum: stored, server: server}, nil
}

// decodeSaltSum decodes the base64 salt and hash fields of a $6$ or $7$ hash.
func decodeSaltSum(salt64, sum64 string) (salt, sum []byte, err error) {
	salt, err = decodeBase64(salt64)
	if err != nil {
		return nil, nil, fmt.Errorf("salt is not valid base64")
	}
	if len(salt) < minSaltLen || len(salt) > maxSaltLen {
		return nil, nil, fmt.Errorf("salt is %d bytes, want %d to %d", len(salt), minSaltLen, maxSaltLen)
	}
	sum, err = decodeBase64(sum64)
	if err != nil {
		return nil, nil, fmt.Errorf("hash is not valid base64")
	}
	if len(sum) != sumLen {
		return nil, nil, fmt.Errorf("hash is %d bytes, want %d", len(sum), sumLen)
	}
	return salt, sum, nil
}

// decodeBase64 decodes standard base64 as Mosquitto writes it, with padding;
// unpadded input is accepted too.
func decodeBase64(s string) ([]byte, error) {
	if strings.HasSuffix(s, "=") || len(s)%4 == 0 {
		return base64.StdEncoding.Strict().DecodeString(s)
	}
	return base64.RawStdEncoding.Strict().DecodeString(s)
}

// setDummy picks the kind and cost most users' hashes have (on a tie, the one
// that comes first in the file; the HashPassword default for an empty file) and
// makes a random hash of that kind and cost for Check to verify unknown users
// against.
func (p *Passwords) setDummy() error {
	type shape struct {
		kind hashKind
		cost int
	}
	count := make(map[shape]int)
	for _, h := range p.users {
		count[shape{h.kind, h.cost}]++
	}
	best, bestN, bestLine := shape{kindPBKDF2, DefaultIterations}, 0, 0
	for _, h := range p.users {
		s := shape{h.kind, h.cost}
		if n := count[s]; n > bestN || n == bestN && h.line < bestLine {
			best, bestN, bestLine = s, n, h.line
		}
	}
	d := hash{kind: best.kind, cost: best.cost}
	switch best.kind {
	case kindPBKDF2, kindSHA512:
		d.salt = make([]byte, 12)
		d.sum = make([]byte, sumLen)
		rand.Read(d.salt)
		rand.Read(d.sum)
	case kindSCRAM:
		d.salt = make([]byte, scramSaltLen)
		d.sum = make([]byte, sha256.Size)
		rand.Read(d.salt)
		rand.Read(d.sum)
	case kindBcrypt:
		secret := make([]byte, 32)
		rand.Read(secret)
		b, err := bcrypt.GenerateFromPassword(secret, best.cost)
		if err != nil {
			return fmt.Errorf("making the dummy bcrypt hash: %w", err)
		}
		d.bcrypt = b
	}
	p.dummy = d
	return nil
}

// hashWarnings describes weak hashes and mixed shapes, for the broker to log.
func hashWarnings(path string, users map[string]*hash) []string {
	var weak, weakSCRAM, sha, n int
	first := map[string]int{}
	shapes := map[[2]int]bool{}
	note := func(key string, line int) {
		if l, ok := first[key]; !ok || line < l {
			first[key] = line
		}
	}
	for _, h := range users {
		n++
		shapes[[2]int{int(h.kind), h.cost}] = true
		switch {
		case h.kind == kindSHA512:
			sha++
			note("sha", h.line)
		case h.kind == kindPBKDF2 && h.cost < weakIterations:
			weak++
			note("weak", h.line)
		case h.kind == kindSCRAM && h.cost < DefaultSCRAMIterations:
			weakSCRAM++
			note("weakSCRAM", h.line)
		}
	}
	var w []string
	if sha > 0 {
		w = append(w, fmt.Sprintf("%s: %d of %d users have $6$ hashes (one SHA-512, fast to brute-force; first on line %d); set them again with `holdfast passwd`", path, sha, n, first["sha"]))
	}
	if weak > 0 {
		w = append(w, fmt.Sprintf("%s: %d of %d users have $7$ hashes with fewer than %d iterations (first on line %d); set them again with `holdfast passwd`", path, weak, n, weakIterations, first["weak"]))
	}
	if weakSCRAM > 0 {
		w = append(w, fmt.Sprintf("%s: %d of %d users have SCRAM-SHA-256 entries with fewer than %d iterations, RFC 7677's minimum (first on line %d); set them again with `holdfast passwd --scram`", path, weakSCRAM, n, DefaultSCRAMIterations, first["weakSCRAM"]))
	}
	if len(shapes) > 1 {
		w = append(w, fmt.Sprintf("%s: hashes of %d different kinds or costs: an unknown user costs what the most common kind costs, so users with another kind can be told apart by timing; set them all with `holdfast passwd`", path, len(shapes)))
	}
	return w
}

// Check reports whether password is right for user. The comparison is constant
// time, and an unknown user costs the same as a wrong password: the password is
// verified against a dummy hash of the kind and cost most common in the file.
//
// Check does not know whether the client sent a password at all; Mosquitto
// refuses a CONNECT that has a username but no password flag for a user in the
// file, and the broker should do the same before calling Check.
func (p *Passwords) Check(user string, password []byte) bool {
	if p == nil {
		return false
	}
	h, known := p.users[user]
	if !known {
		h = &p.dummy
	}
	ok := h.verify(password)
	return known && ok
}

// SCRAMCredential is what a SCRAM-SHA-256 server keeps of a password (RFC
// 5802, section 3): the salt and iteration count the client derives its key
// with, and two keys from which the password cannot be recovered.
type SCRAMCredential struct {
	Iterations           int
	Salt                 []byte
	StoredKey, ServerKey []byte
}

// DeriveSCRAM computes the SCRAM-SHA-256 credential of password: SaltedPassword
// is PBKDF2-HMAC-SHA-256 of it, StoredKey the SHA-256 of HMAC(SaltedPassword,
// "Client Key"), ServerKey HMAC(SaltedPassword, "Server Key"). The password is
// SASLprep-ed first (RFC 4013), as SCRAM clients do: a password that SASLprep
// refuses (control characters, for one) is an error.
func DeriveSCRAM(password, salt []byte, iterations int) (SCRAMCredential, error) {
	prepped, err := stringprep.SASLprep.Prepare(string(password))
	if err != nil {
		// Not wrapped: the error quotes the character, a piece of the password.
		return SCRAMCredential{}, errors.New("the password has a character SCRAM does not allow (SASLprep, RFC 4013: control characters, for one)")
	}
	salted, err := pbkdf2.Key(sha256.New, prepped, salt, iterations, sha256.Size)
	if err != nil {
		return SCRAMCredential{}, err
	}
	clientKey := hmacSHA256(salted, "Client Key")
	stored := sha256.Sum256(clientKey)
	return SCRAMCredential{Iterations: iterations, Salt: salt, StoredKey: stored[:], ServerKey: hmacSHA256(salted, "Server Key")}, nil
}

func hmacSHA256(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// setDecoy picks the decoy credentials' key and iteration count.
func (p *Passwords) setDecoy() {
	rand.Read(p.decoy[:])
	count := make(map[int]int)
	for _, h := range p.users {
		if h.kind == kindSCRAM {
			count[h.cost]++
		}
	}
	p.decoyCost = DefaultSCRAMIterations
	best := 0
	for cost, n := range count {
		if n > best || n == best && cost < p.decoyCost { // ties: the lowest, whatever the map's order
			p.decoyCost, best = cost, n
		}
	}
}

// SCRAM returns user's SCRAM-SHA-256 credential; ok is false when the user is
// unknown or has a hash of another kind, which a SCRAM exchange cannot check.
// Then the credential is a decoy that no proof matches, with a salt that is the
// same for every exchange naming that user (until the file is reloaded) and
// the iteration count most entries have, so that the exchange goes on as for a
// known user and fails only at the proof: the server's first answer does not
// tell who exists.
func (p *Passwords) SCRAM(user string) (c SCRAMCredential, ok bool) {
	if p != nil {
		if h, known := p.users[user]; known && h.kind == kindSCRAM {
			return SCRAMCredential{Iterations: h.cost, Salt: h.salt, StoredKey: h.sum, ServerKey: h.server}, true
		}
	}
	var key [32]byte
	cost := DefaultSCRAMIterations
	if p != nil {
		key, cost = p.decoy, p.decoyCost
	}
	m := hmac.New(sha256.New, key[:])
	m.Write([]byte(user))
	salt := m.Sum(nil)[:scramSaltLen]
	junk := make([]byte, 2*sha256.Size)
	rand.Read(junk)
	return SCRAMCredential{Iterations: cost, Salt: salt, StoredKey: junk[:sha256.Size], ServerKey: junk[sha256.Size:]}, false
}

// Len returns the number of users.
func (p *Passwords) Len() int {
	if p == nil {
		return 0
	}
	return len(p.users)
}

// Warnings returns, for the broker to log at load, notes about weak hashes and
// about a mix of hash kinds that lets timing tell users apart. Nil when none.
func (p *Passwords) Warnings() []string {
	if p == nil {
		return nil
	}
	return p.warnings
}

// readLines reads a whole text file as lines without their "\n" or "\r\n",
// skipping a leading UTF-8 byte order mark.
func readLines(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s := strings.TrimPrefix(string(data), "\ufeff")
	if s == "" {
		return nil, nil
	}
	s = strings.TrimSuffix(s, "\n")
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimSuffix(l, "\r")
	}
	return lines, nil
}
