package enhauth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/holdfast/holdfast/auth"
)

// SCRAMSHA256 is the method's name in CONNECT's Authentication Method, as IANA registers it for
// SASL (RFC 7677).
const SCRAMSHA256 = "SCRAM-SHA-256"

// SCRAM is SCRAM-SHA-256 without channel binding: the client proves it knows the password
// without sending it, and the server proves it holds the user's keys (RFC 5802).
type SCRAM struct {
	// lookup returns a user's credential; ok false with a decoy credential for a user that
	// cannot log in this way (auth.Passwords.SCRAM), so that only the proof fails.
	lookup func(user string) (c auth.SCRAMCredential, ok bool)
	nonce  func() string // the server's part of the nonce; RFC 7677's test vector pins it
}

// NewSCRAM returns the method checking against the credentials lookup returns.
func NewSCRAM(lookup func(user string) (auth.SCRAMCredential, bool)) *SCRAM {
	return &SCRAM{lookup: lookup, nonce: randomNonce}
}

func randomNonce() string {
	var b [18]byte
	rand.Read(b[:])
	return base64.StdEncoding.EncodeToString(b[:])
}

// Name implements Method.
func (s *SCRAM) Name() string { return SCRAMSHA256 }

// Start implements Method.
func (s *SCRAM) Start() Exchange { return &scramExchange{m: s} }

// scramStep is where an exchange stands: what it waits for next.
type scramStep uint8

const (
	awaitClientFirst scramStep = iota
	awaitClientFinal
	over // succeeded or failed: nothing more is accepted
)

type scramExchange struct {
	m    *SCRAM
	step scramStep

	gs2Header   string // "n,," as the client sent it: client-final must repeat it
	user        string
	cred        auth.SCRAMCredential
	known       bool
	nonce       string // the client's and the server's parts
	clientFirst string // client-first-message-bare
	serverFirst string
}

func (x *scramExchange) Username() string {
	if x.step != over || x.user == "" {
		return ""
	}
	return x.user
}

func (x *scramExchange) Step(in []byte) ([]byte, bool, error) {
	step := x.step
	x.step = over // until this step succeeds
	switch step {
	case awaitClientFirst:
		out, err := x.clientFirstMessage(string(in))
		if err != nil {
			return nil, false, err
		}
		x.step = awaitClientFinal
		return out, false, nil
	case awaitClientFinal:
		out, err := x.clientFinalMessage(string(in))
		if err != nil {
			x.user = ""
			return nil, false, err
		}
		return out, true, nil
	}
	return nil, false, fmt.Errorf("%w: the exchange is over", ErrMalformed)
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
}

// clientFirstMessage reads "gs2-cbind-flag,[a=authzid],n=user,r=nonce[,extensions]" and answers
// with server-first-message, "r=nonce,s=salt,i=iterations".
func (x *scramExchange) clientFirstMessage(m string) ([]byte, error) {
	if !utf8.ValidString(m) {
		return nil, malformed("client-first-message is not UTF-8")
	}
	cbind, rest, ok1 := strings.Cut(m, ",")
	authzid, bare, ok2 := strings.Cut(rest, ",")
	if !ok1 || !ok2 {
		return nil, malformed("client-first-message has no GS2 header")
	}
	switch {
	case cbind == "n", cbind == "y": // y: the client could bind, but the server offers no SCRAM-SHA-256-PLUS
	case strings.HasPrefix(cbind, "p="):
		return nil, fmt.Errorf("%w: the client asks for channel binding (%s), which is not offered", ErrNotAuthorized, cbind)
	default:
		return nil, malformed("channel binding flag %q", cbind)
	}
	f := strings.Split(bare, ",")
	if len(f) < 2 || !strings.HasPrefix(f[0], "n=") || !strings.HasPrefix(f[1], "r=") {
		// "m=" here is a mandatory extension, which a server that knows none must refuse.
		return nil, malformed("client-first-message-bare is not n=user,r=nonce")
	}
	user, err := saslname(f[0][2:])
	if err != nil {
		return nil, err
	}
	if authzid != "" {
		// Acting for another user is not offered: the only authorization identity is oneself.
		if !strings.HasPrefix(authzid, "a=") {
			return nil, malformed("authorization identity %q", authzid)
		}
		if az, err := saslname(authzid[2:]); err != nil || az != user {
			return nil, fmt.Errorf("%w: authorization identity differs from the user", ErrNotAuthorized)
		}
	}
	cnonce := f[1][2:]
	if !printableNonce(cnonce) {
		return nil, malformed("client nonce is empty or not printable")
	}
	x.gs2Header = cbind + "," + authzid + ","
	x.user = user
	x.cred, x.known = x.m.lookup(user)
	x.nonce = cnonce + x.m.nonce()
	x.clientFirst = bare
	x.serverFirst = "r=" + x.nonce + ",s=" + base64.StdEncoding.EncodeToString(x.cred.Salt) +
		",i=" + strconv.Itoa(x.cred.Iterations)
	return []byte(x.serverFirst), nil
}

// clientFinalMessage reads "c=channel-binding,r=nonce[,extensions],p=proof", checks the proof
// and answers with server-final-message, "v=server-signature".
func (x *scramExchange) clientFinalMessage(m string) ([]byte, error) {
	i := strings.LastIndex(m, ",p=")
	if i < 0 {
		return nil, malformed("client-final-message has no proof")
	}
	withoutProof, proof64 := m[:i], m[i+len(",p="):]
	f := strings.Split(withoutProof, ",")
	if len(f) < 2 || f[0] != "c="+base64.StdEncoding.EncodeToString([]byte(x.gs2Header)) {
		return nil, malformed("channel binding in client-final-message does not repeat the GS2 header")
	}
	if f[1] != "r="+x.nonce {
		return nil, malformed("nonce in client-final-message is not the one the server sent")
	}
	proof, err := base64.StdEncoding.Strict().DecodeString(proof64)
	if err != nil || len(proof) != sha256.Size {
		return nil, malformed("client proof is not %d bytes of base64", sha256.Size)
	}
	authMessage := x.clientFirst + "," + x.serverFirst + "," + withoutProof
	// ClientKey = ClientProof XOR HMAC(StoredKey, AuthMessage); the proof is right when it
	// hashes to StoredKey.
	clientKey := mac(x.cred.StoredKey, authMessage)
	subtle.XORBytes(clientKey, clientKey, proof)
	stored := sha256.Sum256(clientKey)
	if subtle.ConstantTimeCompare(stored[:], x.cred.StoredKey) != 1 || !x.known {
		return nil, fmt.Errorf("%w: wrong proof for user %q (a wrong password, an unknown user or one without a SCRAM-SHA-256 entry)", ErrNotAuthorized, x.user)
	}
	return []byte("v=" + base64.StdEncoding.EncodeToString(mac(x.cred.ServerKey, authMessage))), nil
}

func mac(key []byte, msg string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(msg))
	return h.Sum(nil)
}

// saslname decodes RFC 5802's escaping of a user name: "=2C" for ',' and "=3D" for '='.
func saslname(s string) (string, error) {
	if s == "" {
		return "", malformed("empty user name")
	}
	if !strings.Contains(s, "=") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '=' {
			b.WriteByte(s[i])
			continue
		}
		switch {
		case strings.HasPrefix(s[i:], "=2C"):
			b.WriteByte(',')
		case strings.HasPrefix(s[i:], "=3D"):
			b.WriteByte('=')
		default:
			return "", malformed("'=' in a user name not followed by 2C or 3D")
		}
		i += 2
	}
	return b.String(), nil
}

// printableNonce reports whether s is a nonce as RFC 5802 defines it: printable ASCII but ','.
func printableNonce(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e || s[i] == ',' {
			return false
		}
	}
	return s != ""
}
