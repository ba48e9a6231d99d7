// Package testpki makes throwaway certificate authorities and certificates, in memory and as PEM
// files, for the tests of the listeners and of the broker. It is for tests only: the keys are
// short-lived and nothing here is meant for production use.
package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

var serial atomic.Int64

// nextSerial returns a serial number no other certificate of this process has.
func nextSerial() *big.Int {
	return big.NewInt(time.Now().UnixNano() + serial.Add(1))
}

// CA is a certificate authority made up for a test.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	PEM  []byte         // the certificate, PEM-encoded
	Pool *x509.CertPool // holds only Cert, for a client's RootCAs
}

// NewCA creates a self-signed CA named cn.
func NewCA(t testing.TB, cn string) *CA {
	t.Helper()
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"holdfast tests"}},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, key := sign(t, tmpl, nil, nil)
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ca := &CA{Cert: cert, Key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), Pool: x509.NewCertPool()}
	ca.Pool.AddCert(cert)
	return ca
}

// sign gives tmpl a fresh key, a new serial number and a validity from an hour ago to a day
// from now, and signs it with parentKey, or with its own key when parent is nil. It returns the
// certificate (DER) and its key.
func sign(t testing.TB, tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) ([]byte, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = nextSerial()
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	return der, key
}

// Issue signs a certificate for cn: a server certificate for 127.0.0.1 (and localhost) when
// server is true, else a client certificate. It returns the certificate and its private key
// (PKCS #8), PEM-encoded.
func (ca *CA) Issue(t testing.TB, cn string, server bool) (certPEM, keyPEM []byte) {
	t.Helper()
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		tmpl.DNSNames = []string{"localhost"}
	}
	der, key := sign(t, tmpl, ca.Cert, ca.Key)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}

// ClientCert returns a client certificate for cn signed by ca.
func (ca *CA) ClientCert(t testing.TB, cn string) tls.Certificate {
	t.Helper()
	c, k := ca.Issue(t, cn, false)
	cert, err := tls.X509KeyPair(c, k)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// Issued is a certificate signed by a CA, in memory and on disk.
type Issued struct {
	TLS      tls.Certificate
	CertFile string
	KeyFile  string
}

// IssueFiles is Issue, and writes the certificate and key to new files in dir.
func (ca *CA) IssueFiles(t testing.TB, dir, cn string, server bool) Issued {
	t.Helper()
	c, k := ca.Issue(t, cn, server)
	base := filepath.Join(dir, fmt.Sprintf("%d-%s", serial.Add(1), strings.ReplaceAll(cn, " ", "_")))
	out := Issued{CertFile: base + ".crt", KeyFile: base + ".key"}
	WriteFile(t, out.CertFile, c)
	WriteFile(t, out.KeyFile, k)
	var err error
	if out.TLS, err = tls.X509KeyPair(c, k); err != nil {
		t.Fatal(err)
	}
	return out
}

// ServerFiles are the files of a server certificate and of the CA that signed it, in a
// temporary directory.
type ServerFiles struct {
	Dir           string
	Cert, Key, CA string // server.pem, server.key and ca.pem in Dir
}

// NewServerFiles writes a fresh server certificate for cn signed by ca, and ca itself, into a
// new temporary directory.
func NewServerFiles(t testing.TB, ca *CA, cn string) *ServerFiles {
	t.Helper()
	dir := t.TempDir()
	f := &ServerFiles{Dir: dir, Cert: filepath.Join(dir, "server.pem"), Key: filepath.Join(dir, "server.key"), CA: filepath.Join(dir, "ca.pem")}
	f.Write(t, ca, cn)
	WriteFile(t, f.CA, ca.PEM)
	return f
}

// Write overwrites the server certificate and key with fresh ones for cn signed by ca (to test
// a reload).
func (f *ServerFiles) Write(t testing.TB, ca *CA, cn string) {
	t.Helper()
	c, k := ca.Issue(t, cn, true)
	WriteFile(t, f.Cert, c)
	WriteFile(t, f.Key, k)
}

// WriteFile writes data to path, readable by the owner only, and fails the test on error.
func WriteFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
