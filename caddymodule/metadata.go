package caddymodule

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/tollgate/tollgate/caddymodule/oauth"
)

func init() {
	caddy.RegisterModule(Metadata{})
}

// Metadata serves the authorization server metadata of RFC 8414 (mount it
// at /.well-known/oauth-authorization-server), from which a client library
// learns the issuer, where each endpoint is and what the server supports.
//
// The document is built once, when the config loads: it depends only on
// the config. The app must have an issuer (RFC 8414 §2: "issuer REQUIRED"),
// or the config is refused.
//
// Each endpoint field is where that endpoint is mounted: a path, resolved
// against the issuer (RFC 3986 §5.2), or an absolute http(s) URL used as
// written. Empty means the path Caddyfile.example mounts it at. "off"
// leaves an optional endpoint (revocation, introspection, userinfo) out of
// the document, for a site that does not mount it.
type Metadata struct {
	appRef

	// AuthorizationEndpoint defaults to /oauth/authorize.
	AuthorizationEndpoint string `json:"authorization_endpoint,omitempty"`
	// TokenEndpoint defaults to /oauth/token.
	TokenEndpoint string `json:"token_endpoint,omitempty"`
	// RevocationEndpoint defaults to /oauth/revoke; "off" omits it.
	RevocationEndpoint string `json:"revocation_endpoint,omitempty"`
	// IntrospectionEndpoint defaults to /oauth/introspect; "off" omits it.
	IntrospectionEndpoint string `json:"introspection_endpoint,omitempty"`
	// UserinfoEndpoint defaults to /oauth/userinfo; "off" omits it.
	UserinfoEndpoint string `json:"userinfo_endpoint,omitempty"`

	body []byte
}

// metadataEndpoints are the endpoint settings: their name (the metadata
// member and the Caddyfile subdirective), the default path and whether
// "off" is allowed.
var metadataEndpoints = []struct {
	name, path string
	optional   bool
}{
	{"authorization_endpoint", "/oauth/authorize", false},
	{"token_endpoint", "/oauth/token", false},
	{"revocation_endpoint", "/oauth/revoke", true},
	{"introspection_endpoint", "/oauth/introspect", true},
	{"userinfo_endpoint", "/oauth/userinfo", true},
}

// field returns the setting of the endpoint named name.
func (h *Metadata) field(name string) *string {
	switch name {
	case "authorization_endpoint":
		return &h.AuthorizationEndpoint
	case "token_endpoint":
		return &h.TokenEndpoint
	case "revocation_endpoint":
		return &h.RevocationEndpoint
	case "introspection_endpoint":
		return &h.IntrospectionEndpoint
	case "userinfo_endpoint":
		return &h.UserinfoEndpoint
	}
	panic("unknown metadata endpoint " + name)
}

// CaddyModule returns the Caddy module information.
func (Metadata) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.tollgate_metadata",
		New: func() caddy.Module { return new(Metadata) },
	}
}

// Provision reaches the app and builds the document.
func (h *Metadata) Provision(ctx caddy.Context) error {
	if err := h.appRef.Provision(ctx); err != nil {
		return err
	}
	return h.build()
}

// serverMetadata is the document of RFC 8414 §2, in its order.
type serverMetadata struct {
	Issuer                string   `json:"issuer"`
	AuthorizationEndpoint string   `json:"authorization_endpoint"`
	TokenEndpoint         string   `json:"token_endpoint"`
	ScopesSupported       []string `json:"scopes_supported,omitempty"`
	ResponseTypes         []string `json:"response_types_supported"`
	ResponseModes         []string `json:"response_modes_supported"`
	GrantTypes            []string `json:"grant_types_supported"`
	TokenAuthMethods      []string `json:"token_endpoint_auth_methods_supported"`
	RevocationEndpoint    string   `json:"revocation_endpoint,omitempty"`
	RevocationAuthMethods []string `json:"revocation_endpoint_auth_methods_supported,omitempty"`
	IntrospectionEndpoint string   `json:"introspection_endpoint,omitempty"`
	IntrospectionMethods  []string `json:"introspection_endpoint_auth_methods_supported,omitempty"`
	CodeChallengeMethods  []string `json:"code_challenge_methods_supported"`
	// RFC 9207 §3: the authorize endpoint sends iss, which lets a client
	// that talks to several servers detect a mix-up attack.
	IssParameterSupported bool `json:"authorization_response_iss_parameter_supported"`
	// Not in RFC 8414 (OpenID Connect Discovery 1.0 §3 defines it), but
	// read by most client libraries.
	UserinfoEndpoint string `json:"userinfo_endpoint,omitempty"`
}

// clientAuthMethods are the client authentications the token, revocation
// and introspection endpoints accept (RFC 6749 §2.3.1; clientauth.go).
var clientAuthMethods = []string{"client_secret_basic", "client_secret_post"}

// build checks the issuer and the endpoint settings and renders the document.
func (h *Metadata) build() error {
	a := h.app
	issuer, err := checkIssuer(a.Issuer)
	if err != nil {
		return fmt.Errorf("tollgate_metadata: %w", err)
	}
	urls := make(map[string]string, len(metadataEndpoints))
	for _, ep := range metadataEndpoints {
		v := *h.field(ep.name)
		if v == "" {
			v = ep.path
		}
		if err := checkEndpoint(ep.name, v, ep.optional); err != nil {
			return fmt.Errorf("tollgate_metadata: %w", err)
		}
		if v == "off" {
			continue
		}
		ref, _ := url.Parse(v) // checked above
		urls[ep.name] = issuer.ResolveReference(ref).String()
	}
	m := serverMetadata{
		Issuer:                a.Issuer,
		AuthorizationEndpoint: urls["authorization_endpoint"],
		TokenEndpoint:         urls["token_endpoint"],
		ResponseTypes:         []string{"code"},
		// RFC 6749 §4.1.2: the code comes back in the query; no other
		// response mode is offered.
		ResponseModes:         []string{"query"},
		GrantTypes:            []string{"authorization_code", "refresh_token"},
		TokenAuthMethods:      clientAuthMethods,
		RevocationEndpoint:    urls["revocation_endpoint"],
		IntrospectionEndpoint: urls["introspection_endpoint"],
		// RFC 7636 §4.2; plain is never accepted (RFC 9700 §2.1.1).
		CodeChallengeMethods:  []string{"S256"},
		IssParameterSupported: true,
		UserinfoEndpoint:      urls["userinfo_endpoint"],
	}
	for _, s := range a.Scopes {
		m.ScopesSupported = append(m.ScopesSupported, s.Name)
	}
	if m.RevocationEndpoint != "" {
		m.RevocationAuthMethods = clientAuthMethods
	}
	if m.IntrospectionEndpoint != "" {
		m.IntrospectionMethods = clientAuthMethods
	}
	h.body, err = json.Marshal(m)
	return err
}

// checkIssuer parses the issuer identifier: RFC 8414 §2 wants a URL with
// no query or fragment. http is accepted for local trials (the example
// runs on http://localhost); strict clients refuse it unless told to.
func checkIssuer(issuer string) (*url.URL, error) {
	if issuer == "" {
		return nil, fmt.Errorf("the tollgate app has no issuer; set `issuer https://<public origin>` (RFC 8414 §2: issuer is required)")
	}
	u, err := url.Parse(issuer)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" ||
		u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(issuer, "#") {
		return nil, fmt.Errorf("issuer %q must be an https URL (http only for local trials) without query or fragment (RFC 8414 §2)", issuer)
	}
	return u, nil
}

// checkEndpoint checks one endpoint setting: an absolute path, an
// absolute http(s) URL, or "off" where that is allowed.
func checkEndpoint(name, v string, optional bool) error {
	if v == "off" {
		if !optional {
			return fmt.Errorf("%s cannot be off: RFC 8414 §2 requires it for the authorization code grant", name)
		}
		return nil
	}
	u, err := url.Parse(v)
	switch {
	case err != nil:
		return fmt.Errorf("%s %q: %v", name, v, err)
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(v, "#"):
		return fmt.Errorf("%s %q: an endpoint URL has no query or fragment", name, v)
	case u.Scheme == "" && u.Host == "" && strings.HasPrefix(v, "/") && !strings.HasPrefix(v, "//"):
		return nil // a path on the issuer's host
	case (u.Scheme == "https" || u.Scheme == "http") && u.Host != "" && u.User == nil:
		return nil
	}
	return fmt.Errorf("%s %q: want a path starting with / or an absolute https URL", name, v)
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (h *Metadata) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	hdr := w.Header()
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hdr.Set("Allow", "GET, HEAD")
		e := oauth.Errorf(oauth.InvalidRequest, "use GET")
		e.Status = http.StatusMethodNotAllowed
		e.WriteJSON(w)
		return nil
	}
	hdr.Set("Content-Type", "application/json")
	// The document changes only with the config; an hour of caching
	// spares the gateway a request per client start without keeping a
	// changed endpoint from clients for long.
	hdr.Set("Cache-Control", "public, max-age=3600")
	hdr.Set("Content-Length", strconv.Itoa(len(h.body)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return nil
	}
	_, err := w.Write(h.body)
	return err
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Metadata)(nil)
	_ caddyhttp.MiddlewareHandler = (*Metadata)(nil)
)

// parseMetadata parses the metadata handler; every subdirective is
// optional and defaults to the path Caddyfile.example mounts the endpoint at:
//
//	tollgate_metadata {
//		authorization_endpoint <path or URL>
//		token_endpoint         <path or URL>
//		revocation_endpoint    <path or URL> | off
//		introspection_endpoint <path or URL> | off
//		userinfo_endpoint      <path or URL> | off
//	}
func parseMetadata(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(Metadata)
	h.Next() // directive name
	if h.NextArg() {
		return nil, h.Errf("tollgate_metadata takes no arguments")
	}
	seen := map[string]bool{}
	for h.NextBlock(0) {
		dir := h.Val()
		optional, known := false, false
		for _, ep := range metadataEndpoints {
			if ep.name == dir {
				optional, known = ep.optional, true
			}
		}
		if !known {
			return nil, h.Errf("tollgate_metadata: unknown option %q", dir)
		}
		if seen[dir] {
			return nil, h.Errf("%s given twice", dir)
		}
		seen[dir] = true
		dst := m.field(dir)
		if err := oneArg(h.Dispenser, dst); err != nil {
			return nil, err
		}
		if err := checkEndpoint(dir, *dst, optional); err != nil {
			return nil, h.Err(err.Error())
		}
	}
	return m, nil
}
