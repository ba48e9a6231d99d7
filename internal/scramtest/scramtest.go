// Package scramtest is the client's side of SCRAM-SHA-256 (RFC 5802, RFC 7677) for the tests: it
// writes client-first and client-final messages, and checks the server's signature. Passwords
// are taken as they are (no SASLprep): tests use ASCII ones.
package scramtest

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Client is one exchange; make it with New.
type Client struct {
	user, password string
	nonce          string

	clientFirstBare string
	serverSignature []byte
}

// New starts an exchange for user with password and a random nonce.
func New(user, password string) *Client {
	var b [18]byte
	rand.Read(b[:])
	return NewWithNonce(user, password, base64.StdEncoding.EncodeToString(b[:]))
}

// NewWithNonce is New with a chosen client nonce (a test vector's).
func NewWithNonce(user, password, nonce string) *Client {
	return &Client{user: user, password: password, nonce: nonce}
}

// First returns client-first-message: no channel binding, no authorization identity.
func (c *Client) First() []byte {
	name := strings.NewReplacer("=", "=3D", ",", "=2C").Replace(c.user)
	c.clientFirstBare = "n=" + name + ",r=" + c.nonce
	return []byte("n,," + c.clientFirstBare)
}

// Final answers server-first-message with client-final-message and its proof.
func (c *Client) Final(serverFirst []byte) ([]byte, error) {
	f := strings.Split(string(serverFirst), ",")
	if len(f) < 3 || !strings.HasPrefix(f[0], "r="+c.nonce) || !strings.HasPrefix(f[1], "s=") || !strings.HasPrefix(f[2], "i=") {
		return nil, fmt.Errorf("server-first-message %q", serverFirst)
	}
	salt, err := base64.StdEncoding.DecodeString(f[1][2:])
	if err != nil {
		return nil, fmt.Errorf("salt: %w", err)
	}
	iter, err := strconv.Atoi(f[2][2:])
	if err != nil {
		return nil, fmt.Errorf("iterations: %w", err)
	}
	salted, err := pbkdf2.Key(sha256.New, c.password, salt, iter, sha256.Size)
	if err != nil {
		return nil, err
	}
	clientKey := mac(salted, "Client Key")
	storedKey := sha256.Sum256(clientKey)
	withoutProof := "c=biws," + f[0] // biws: base64 of "n,,"
	authMessage := c.clientFirstBare + "," + string(serverFirst) + "," + withoutProof
	proof := mac(storedKey[:], authMessage)
	subtle.XORBytes(proof, proof, clientKey)
	c.serverSignature = mac(mac(salted, "Server Key"), authMessage)
	return []byte(withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof)), nil
}

// Verify checks server-final-message: the server held the user's ServerKey.
func (c *Client) Verify(serverFinal []byte) error {
	want := "v=" + base64.StdEncoding.EncodeToString(c.serverSignature)
	if c.serverSignature == nil || !hmac.Equal([]byte(want), serverFinal) {
		return errors.New("server signature does not match: the server does not know the password")
	}
	return nil
}

func mac(key []byte, msg string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(msg))
	return h.Sum(nil)
}
