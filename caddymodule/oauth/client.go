package oauth

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"
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
	Policy
}

// Policy holds the per-client protocol knobs. The zero value is the
// behaviour of the DSS documents: PKCE S256 required, state required,
// redirect_uri required, loopback http allowed, form bodies only, refresh
// tokens issued. Other partner styles (Dash, Trans) are configurations.
type Policy struct {
	// PKCEOptional accepts an authorization request without a
	// code_challenge. A challenge that is sent is still verified, and a
	// code_verifier for a code issued without one is refused (RFC 9700
	// §4.8.2: PKCE downgrade).
	PKCEOptional bool
	// StateOptional accepts an authorization request without state.
	StateOptional bool
	// StateMinLength is the minimum length of a state that is sent.
	StateMinLength int
	// RedirectURIOptional lets the authorization request omit
	// redirect_uri (the first registered URI is used) and the token
	// request omit it too; one that is sent must still match.
	RedirectURIOptional bool
	// HTTPSOnly refuses plain-http redirect URIs even on loopback.
	HTTPSOnly bool
	// JSONBody lets the token endpoint take an application/json body.
	JSONBody bool
	// TokenHeader, when set, is a header the token and revocation
	// requests must carry with the value whose SHA-256 is
	// TokenHeaderDigest (e.g. an Api-key issued at registration).
	TokenHeader       string
	TokenHeaderDigest [sha256.Size]byte
	// DefaultScopes are granted when the request omits scope (RFC 6749
	// §3.3); without them an omitted scope is invalid_scope.
	DefaultScopes []string
	// AccessTokenLifetime and RefreshTokenLifetime override the app's
	// lifetimes when non-zero.
	AccessTokenLifetime  time.Duration
	RefreshTokenLifetime time.Duration
	// NoRefreshTokens issues access tokens only.
	NoRefreshTokens bool
}

// CheckTokenHeader reports whether the request headers satisfy the
// client's required token-endpoint header, comparing in constant time.
func (c *Client) CheckTokenHeader(value string) bool {
	if c.TokenHeader == "" {
		return true
	}
	sum := sha256.Sum256([]byte(value))
	return value != "" && subtle.ConstantTimeCompare(sum[:], c.TokenHeaderDigest[:]) == 1
}

// PrimaryRedirectURI is the first registered redirect URI.
func (c *Client) PrimaryRedirectURI() string {
	if len(c.RedirectURIs) == 0 {
		return ""
	}
	return c.RedirectURIs[0]
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
func CheckRegisteredRedirectURI(raw string, httpsOnly bool) error {
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
	// The query is kept in every response (RFC 6749 §3.1.2), with the
	// response's parameters added (§4.1.2, §4.1.2.1, RFC 9207): it must
	// parse, so that nothing of it is lost, and must not already hold one
	// of them, which the client could not tell from the response's own.
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return fmt.Errorf("redirect_uri %q: the query does not parse", raw)
	}
	for _, k := range [...]string{"code", "state", "error", "error_description", "error_uri", "iss"} {
		if q.Has(k) {
			return fmt.Errorf("redirect_uri %q: the query must not carry %s, a parameter of the authorization response", raw, k)
		}
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if !httpsOnly && isLoopbackHost(u.Hostname()) {
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
