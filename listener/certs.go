package listener

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"github.com/rs/zerolog"
)

// certSource holds the TLS configuration of a tls or wss listener. Every handshake asks it for
// the current *tls.Config (through GetConfigForClient), so Reload swapping the pointer applies
// the new certificate and client CA to new handshakes while established connections carry on.
type certSource struct {
	c    Config
	log  zerolog.Logger
	next []string // ALPN protocols to offer (wss: http/1.1)

	mu  sync.Mutex // serialises Reload
	cur atomic.Pointer[tls.Config]
}

func newCertSource(c Config, log zerolog.Logger) (*certSource, error) {
	s := &certSource{c: c, log: log}
	if c.Type == "wss" {
		// HTTP/1.1 only: the WebSocket upgrade needs it, and gorilla does not speak RFC 8441.
		s.next = []string{"http/1.1"}
	}
	cfg, err := s.load()
	if err != nil {
		return nil, err
	}
	s.cur.Store(cfg)
	return s, nil
}

// serverConfig returns the tls.Config to hand to tls.Server / tls.NewListener: it only forwards
// each ClientHello to the current configuration.
func (s *certSource) serverConfig() *tls.Config {
	v, _ := tlsVersion(s.c.MinTLSVersion)
	return &tls.Config{
		MinVersion: v,
		NextProtos: s.next,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return s.cur.Load(), nil
		},
	}
}

// reload re-reads the files; on any error the current configuration stays.
func (s *certSource) reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cfg, err := s.load()
	if err != nil {
		s.log.Error().Err(err).Msg("certificate reload failed; keeping the current certificate")
		return s.c.errorf("reload: %w", err)
	}
	s.cur.Store(cfg)
	ev := s.log.Info()
	if leaf := cfg.Certificates[0].Leaf; leaf != nil {
		ev = ev.Str("subject", leaf.Subject.String()).Time("not_after", leaf.NotAfter)
	}
	ev.Msg("certificate reloaded")
	return nil
}

// load builds a complete tls.Config from the files named in the listener's Config.
func (s *certSource) load() (*tls.Config, error) {
	c := s.c
	minVersion, err := tlsVersion(c.MinTLSVersion)
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("load certificate %s and key %s: %w", c.CertFile, c.KeyFile, err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("parse certificate %s: %w", c.CertFile, err)
		}
	}
	cfg := &tls.Config{
		MinVersion:   minVersion,
		Certificates: []tls.Certificate{cert},
		NextProtos:   s.next,
		ClientAuth:   tls.NoClientCert,
	}
	if c.ClientCAFile != "" {
		pem, err := os.ReadFile(c.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("read client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("client CA %s holds no PEM certificate", c.ClientCAFile)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
		if c.RequireClientCert {
			cfg.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	return cfg, nil
}

func tlsVersion(s string) (uint16, error) {
	switch s {
	case "", "1.2":
		return tls.VersionTLS12, nil
	case "1.3":
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("min_tls_version must be \"1.2\" or \"1.3\", not %q", s)
}

// identity returns the CommonName of the verified client certificate, if the listener takes it
// as the username.
func identity(c Config, st *tls.ConnectionState) (string, bool) {
	if !c.CertCNAsUsername || st == nil || len(st.VerifiedChains) == 0 || len(st.VerifiedChains[0]) == 0 {
		return "", false
	}
	cn := st.VerifiedChains[0][0].Subject.CommonName
	return cn, cn != ""
}
