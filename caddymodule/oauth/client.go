package oauth

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// Client is a registered partner application.
type Client struct {
	ID   string
	Name string
	// SecretDigest is the SHA-256 of the client secret; the secret itself
	// is never kept.
	SecretDigest [sha256.Size]byte
	RedirectURIs []string
	Scopes       []string
}

// Authenticate compares secret with the registered one in constant time.
// Both sides are hashed first so that the comparison time depends on
// neither the secret's length nor its content.
func (c *Client) Authenticate(secret string) bool {
	sum := sha256.Sum256([]byte(secret))
	return subtle.ConstantTimeCompare(sum[:], c.SecretDigest[:]) == 1
}

// HasRedirectURI reports whether uri is registered, compared byte for byte:
// no normalisation, so a trailing slash or a changed case is a different
// URI (RFC 9700 §4.1.3, and the DSS rule "trailing slashes count").
func (c *Client) HasRedirectURI(uri string) bool {
	for _, r := range c.RedirectURIs {
		if r == uri {
			return true
		}
	}
	return false
}

// CheckRegisteredRedirectURI validates a redirect URI at configuration
// time: absolute, no fragment (RFC 6749 §3.1.2), and https unless it points
// at the loopback interface (http://localhost or http://127.0.0.1 on any
// port, for local development; RFC 8252 §7.3).
func CheckRegisteredRedirectURI(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("redirect_uri %q: %w", raw, err)
	}
	if !u.IsAbs() || u.Host == "" {
		return fmt.Errorf("redirect_uri %q: must be an absolute URI", raw)
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return fmt.Errorf("redirect_uri %q: must not have a fragment", raw)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if isLoopbackHost(u.Hostname()) {
			return nil
		}
		return fmt.Errorf("redirect_uri %q: must be https (plain http only for localhost and 127.0.0.1)", raw)
	default:
		return fmt.Errorf("redirect_uri %q: scheme must be https", raw)
	}
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.Equal(net.IPv4(127, 0, 0, 1))
}
