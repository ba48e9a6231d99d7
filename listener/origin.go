package listener

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
)

// Browsers let any page open a WebSocket to any address and tell the server only which page it
// is, in Origin. Without a check, any site the operator visits could reach a loopback broker
// that lets anonymous clients in, so by default a page is let in only from the listener's own
// host and port; allowed_origins = ["*"] turns the check off, and any other list replaces it.

// AnyOrigin, as the only entry of allowed_origins, lets pages of every origin in.
const AnyOrigin = "*"

// authority is a host (lower case, IPv6 without brackets) and a port.
type authority struct{ host, port string }

// SplitAuthority splits a Host header or host:port into a lower-case host (IPv6 without
// brackets) and a port, defaultPort when hostport has none. ok is false when hostport is
// malformed or names no host.
func SplitAuthority(hostport, defaultPort string) (host, port string, ok bool) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		// Only a missing port is worth a second look: a name, an IPv4 address, or an IPv6
		// address in brackets.
		host, port = hostport, defaultPort
		if len(host) > 2 && host[0] == '[' && host[len(host)-1] == ']' {
			host = host[1 : len(host)-1]
			if net.ParseIP(host) == nil {
				return "", "", false
			}
		} else if strings.ContainsAny(host, "[]:") {
			return "", "", false
		}
	}
	if host == "" {
		return "", "", false
	}
	if port == "" {
		port = defaultPort // "host:" means the default port too (RFC 3986)
	}
	return strings.ToLower(host), port, true
}

// LoopbackHost reports whether host, as SplitAuthority returns it, names this machine only: an
// address in 127.0.0.0/8, ::1, or "localhost". Other names can be made to resolve to a loopback
// address too (DNS rebinding), so they do not count.
func LoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// parseOrigin returns the scheme and authority of an origin (scheme://host[:port]), the port
// being the scheme's default when absent.
func parseOrigin(origin string) (scheme string, a authority, err error) {
	u, err := url.Parse(origin)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return "", authority{}, fmt.Errorf("%q is not an origin (scheme://host[:port])", origin)
	}
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return "", authority{}, fmt.Errorf("%q is not an origin: an origin has no user, path, query or fragment (scheme://host[:port])", origin)
	}
	scheme = strings.ToLower(u.Scheme)
	def := ""
	switch scheme {
	case "http":
		def = "80"
	case "https":
		def = "443"
	}
	host, port, ok := SplitAuthority(u.Host, def)
	if !ok {
		return "", authority{}, fmt.Errorf("%q is not an origin (scheme://host[:port])", origin)
	}
	return scheme, authority{host, port}, nil
}

// originKey is the form in which two origins compare equal: lower case, explicit port.
func originKey(scheme string, a authority) string {
	return scheme + "://" + net.JoinHostPort(a.host, a.port)
}

// ValidateOrigins checks an allowed_origins list: empty, ["*"], or origins such as
// "https://dashboard.example.com" or "http://localhost:3000".
func ValidateOrigins(origins []string) error {
	for _, o := range origins {
		if o == AnyOrigin {
			if len(origins) > 1 {
				return errors.New(`"*" lets every origin in and must be the only entry`)
			}
			continue
		}
		if _, _, err := parseOrigin(o); err != nil {
			return err
		}
	}
	return nil
}

// originPolicy decides which browser pages may open a WebSocket on one listener.
type originPolicy struct {
	any     bool            // allowed_origins = ["*"]
	allowed map[string]bool // originKey of each allowed origin; nil: the listener's own host only

	hostPort string      // the port of a Host header without one: 80 (ws) or 443 (wss)
	loopback bool        // bound to a loopback address: a Host naming anything else is a rebound name
	own      []authority // the configured address (with the bound port) and the bound address
}

// newOriginPolicy builds the policy of a listener configured as c and bound to bound; c has
// been validated.
func newOriginPolicy(c Config, bound net.Addr) originPolicy {
	p := originPolicy{hostPort: "80"}
	if c.Type == "wss" {
		p.hostPort = "443"
	}
	switch {
	case slices.Equal(c.AllowedOrigins, []string{AnyOrigin}):
		p.any = true
	case len(c.AllowedOrigins) > 0:
		p.allowed = make(map[string]bool, len(c.AllowedOrigins))
		for _, o := range c.AllowedOrigins {
			scheme, a, _ := parseOrigin(o)
			p.allowed[originKey(scheme, a)] = true
		}
	}
	bip, bport, _ := SplitAuthority(bound.String(), "")
	p.loopback = LoopbackHost(bip)
	p.own = append(p.own, authority{bip, bport})
	// The configured name, for a listener that answers on a name of its own (port 0 is the bound one).
	if host, _, ok := SplitAuthority(c.Address, ""); ok {
		if ip := net.ParseIP(host); ip == nil || !ip.IsUnspecified() {
			p.own = append(p.own, authority{host, bport})
		}
	}
	return p
}

// allow reports whether a browser page of origin (a non-empty Origin header) may upgrade a
// request that came with Host header host.
func (p originPolicy) allow(origin, host string) bool {
	if p.any {
		return true
	}
	scheme, o, err := parseOrigin(origin)
	if err != nil {
		return false // "null" (sandboxed frames, file: pages) and the like
	}
	if p.allowed != nil {
		return p.allowed[originKey(scheme, o)]
	}
	if scheme != "http" && scheme != "https" {
		return false
	}
	if h, hp, ok := SplitAuthority(host, p.hostPort); ok && o == (authority{h, hp}) && (!p.loopback || LoopbackHost(h)) {
		return true
	}
	return slices.Contains(p.own, o)
}
