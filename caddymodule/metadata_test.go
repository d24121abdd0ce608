package caddymodule

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// metadata builds the handler for a with the given endpoint settings.
func metadata(t *testing.T, a *App, m Metadata) (*Metadata, error) {
	t.Helper()
	m.app = a
	return &m, m.build()
}

func serveMetadata(t *testing.T, h *Metadata, method string) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	if err := h.ServeHTTP(w, httptest.NewRequest(method, "/.well-known/oauth-authorization-server", nil), nil); err != nil {
		t.Fatal(err)
	}
	return w
}

// The default document names the issuer, every endpoint at the path
// Caddyfile.example mounts it at, and what the server supports (RFC 8414
// §2, RFC 9207 §3); it is public and cacheable.
func TestMetadataDocument(t *testing.T) {
	a, _ := newTestApp(t)
	h, err := metadata(t, a, Metadata{})
	if err != nil {
		t.Fatal(err)
	}
	w := serveMetadata(t, h, http.MethodGet)
	if w.Code != http.StatusOK {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	for k, v := range map[string]string{
		"Content-Type":   "application/json",
		"Cache-Control":  "public, max-age=3600",
		"Content-Length": strconv.Itoa(w.Body.Len()),
	} {
		if got := w.Header().Get(k); got != v {
			t.Errorf("%s %q, want %q", k, got, v)
		}
	}
	var got map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	auth := []any{"client_secret_basic", "client_secret_post"}
	want := map[string]any{
		"issuer":                                         testIssuer,
		"authorization_endpoint":                         testIssuer + "/oauth/authorize",
		"token_endpoint":                                 testIssuer + "/oauth/token",
		"revocation_endpoint":                            testIssuer + "/oauth/revoke",
		"introspection_endpoint":                         testIssuer + "/oauth/introspect",
		"userinfo_endpoint":                              testIssuer + "/oauth/userinfo",
		"scopes_supported":                               []any{"profile:read", "seatime:read"},
		"response_types_supported":                       []any{"code"},
		"response_modes_supported":                       []any{"query"},
		"grant_types_supported":                          []any{"authorization_code", "refresh_token"},
		"code_challenge_methods_supported":               []any{"S256"},
		"token_endpoint_auth_methods_supported":          auth,
		"revocation_endpoint_auth_methods_supported":     auth,
		"introspection_endpoint_auth_methods_supported":  auth,
		"authorization_response_iss_parameter_supported": true,
	}
	if g, _ := json.Marshal(got); string(g) != mustJSON(t, want) {
		t.Fatalf("document\n%s\nwant\n%s", g, mustJSON(t, want))
	}

	head := serveMetadata(t, h, http.MethodHead)
	if head.Code != http.StatusOK || head.Body.Len() != 0 || head.Header().Get("Content-Length") != w.Header().Get("Content-Length") {
		t.Errorf("HEAD: %d, body %q, Content-Length %q; want 200, no body, the GET's length", head.Code, head.Body, head.Header().Get("Content-Length"))
	}
	for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, "PATCH"} {
		w := serveMetadata(t, h, method)
		wantOAuthError(t, w, http.StatusMethodNotAllowed, "invalid_request")
		if allow := w.Header().Get("Allow"); allow != "GET, HEAD" {
			t.Errorf("%s: Allow %q, want GET, HEAD", method, allow)
		}
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Endpoints mounted elsewhere are advertised where they are: a path is
// resolved against the issuer (its own path replaced, RFC 3986 §5.2), a URL
// is taken as written, and "off" drops an optional endpoint with its
// auth-methods member.
func TestMetadataEndpointSettings(t *testing.T) {
	a, _ := newTestApp(t)
	a.Issuer = "https://login.example.com/tenant"
	h, err := metadata(t, a, Metadata{
		AuthorizationEndpoint: "/oauth2/auth",
		TokenEndpoint:         "https://tokens.example.com/ext/auth-api/accounts/token",
		RevocationEndpoint:    "off",
		IntrospectionEndpoint: "off",
		UserinfoEndpoint:      "/tenant/me",
	})
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(serveMetadata(t, h, http.MethodGet).Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]any{
		"issuer":                 "https://login.example.com/tenant",
		"authorization_endpoint": "https://login.example.com/oauth2/auth",
		"token_endpoint":         "https://tokens.example.com/ext/auth-api/accounts/token",
		"userinfo_endpoint":      "https://login.example.com/tenant/me",
	} {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	for _, k := range []string{"revocation_endpoint", "revocation_endpoint_auth_methods_supported", "introspection_endpoint", "introspection_endpoint_auth_methods_supported"} {
		if _, ok := got[k]; ok {
			t.Errorf("%s is advertised although off", k)
		}
	}
}

// A config the document would be wrong for is refused when it loads, not
// served: no issuer (RFC 8414 §2 requires one, and clients compare it), an
// issuer with a query or fragment, an endpoint that is neither a path nor
// a URL, a required endpoint turned off.
func TestMetadataRefusesBadConfig(t *testing.T) {
	for _, tc := range []struct {
		name, issuer string
		m            Metadata
		want         string
	}{
		{"no issuer", "", Metadata{}, "no issuer"},
		{"issuer with query", "https://api.example.com?x=1", Metadata{}, "without query or fragment"},
		{"issuer with fragment", "https://api.example.com#f", Metadata{}, "without query or fragment"},
		{"issuer not a URL", "api.example.com", Metadata{}, "must be an https URL"},
		{"relative path", testIssuer, Metadata{TokenEndpoint: "oauth/token"}, "want a path starting with /"},
		{"scheme-relative", testIssuer, Metadata{TokenEndpoint: "//evil.example/token"}, "want a path starting with /"},
		{"endpoint with query", testIssuer, Metadata{UserinfoEndpoint: "/me?x=1"}, "no query or fragment"},
		{"token endpoint off", testIssuer, Metadata{TokenEndpoint: "off"}, "cannot be off"},
		{"authorization endpoint off", testIssuer, Metadata{AuthorizationEndpoint: "off"}, "cannot be off"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, _ := newTestApp(t)
			a.Issuer = tc.issuer
			_, err := metadata(t, a, tc.m)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

// Mistakes in the metadata directive fail at adapt time, naming the
// offending setting.
func TestMetadataCaddyfileRejects(t *testing.T) {
	for _, tc := range []struct{ name, site, want string }{
		{"unknown option", "tollgate_metadata {\n\t\tjwks_uri /jwks\n\t}", `unknown option "jwks_uri"`},
		{"option twice", "tollgate_metadata {\n\t\ttoken_endpoint /a\n\t\ttoken_endpoint /b\n\t}", "token_endpoint given twice"},
		{"argument", "tollgate_metadata oauth", "takes no arguments"},
		{"relative path", "tollgate_metadata {\n\t\ttoken_endpoint oauth/token\n\t}", "want a path starting with /"},
		{"required endpoint off", "tollgate_metadata {\n\t\tauthorization_endpoint off\n\t}", "cannot be off"},
		{"no value", "tollgate_metadata {\n\t\tuserinfo_endpoint\n\t}", "wrong argument count"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			input := "{\n\ttollgate {\n\t\tissuer https://api.example.com\n\t}\n}\n:8080 {\n\t" + tc.site + "\n}\n"
			_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}
