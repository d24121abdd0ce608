package integration

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// metadataPath is where Caddyfile.example serves the RFC 8414 document.
const metadataPath = "/.well-known/oauth-authorization-server"

// getMetadata fetches the gateway's authorization server metadata.
func (gw *gateway) getMetadata(t *testing.T) (*response, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, gw.base+metadataPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := send(t, req, "GET "+metadataPath)
	if r.status != http.StatusOK {
		t.Fatalf("metadata: want 200:\n%s", r)
	}
	return r, r.json(t)
}

// TestDiscoveryAdvertisesTheMountedEndpoints reads the metadata document
// of Caddyfile.example and calls every endpoint it advertises, checking
// that each URL is that endpoint (a client configured from the document
// reaches the right handler) and that the issuer is the one authorization
// responses carry in iss.
//
// RFC 8414 §2 (issuer, endpoints), §3.3 (the issuer must be identical to
// the one the client used), RFC 9207 §2-3.
func TestDiscoveryAdvertisesTheMountedEndpoints(t *testing.T) {
	forEachStore(t, gatewayConfig{}, func(t *testing.T, gw *gateway) {
		r, m := gw.getMetadata(t)
		if got := r.header.Get("Cache-Control"); got != "public, max-age=3600" {
			t.Errorf("Cache-Control = %q, want public, max-age=3600", got)
		}
		if m["issuer"] != gw.base {
			t.Fatalf("issuer = %v, want the example's %s", m["issuer"], gw.base)
		}
		if m["authorization_response_iss_parameter_supported"] != true {
			t.Errorf("authorization_response_iss_parameter_supported = %v, want true (RFC 9207 §3)", m["authorization_response_iss_parameter_supported"])
		}
		str := func(k string) string {
			s, _ := m[k].(string)
			if !strings.HasPrefix(s, gw.base+"/") {
				t.Fatalf("%s = %q, want a URL under %s", k, s, gw.base)
			}
			return s
		}

		// The authorization endpoint: a request naming no client is an
		// error page on the gateway, never a redirect.
		p := newBrowser(t, gw).get(str("authorization_endpoint"))
		if p.status != http.StatusBadRequest || !strings.Contains(p.header.Get("Content-Type"), "text/html") {
			t.Fatalf("authorization_endpoint: want the authorize error page:\n%s", p)
		}
		// The three client-authenticated endpoints refuse a bad secret
		// with invalid_client.
		for _, k := range []string{"token_endpoint", "revocation_endpoint", "introspection_endpoint"} {
			path := strings.TrimPrefix(str(k), gw.base)
			f := url.Values{"token": {"tga_x"}, "grant_type": {"refresh_token"}, "refresh_token": {"tgr_x"}}
			wantOAuthError(t, gw.postForm(t, path, f, authPost, clientID, "wrong"), http.StatusUnauthorized, "invalid_client")
		}
		// The userinfo endpoint asks for a bearer token.
		req, _ := http.NewRequest(http.MethodGet, str("userinfo_endpoint"), nil)
		wantBearerError(t, send(t, req, "GET userinfo_endpoint"), http.StatusUnauthorized, "")

		// And the iss of an authorization response is the issuer.
		conf := gw.oauthConfig(0, "profile:read")
		b := newBrowser(t, gw)
		loc := b.decide(b.signIn(newAuthRequest(conf).url), "allow")
		if iss := loc.Query().Get("iss"); iss != m["issuer"] {
			t.Fatalf("authorization response iss = %q, metadata issuer %v (RFC 9207 §2.4)", iss, m["issuer"])
		}
	})
}

// TestIntrospectionReportsTokensWithoutSpendingBudget introspects a pair
// on the real gateway: both tokens are active with the user, client and
// scopes, five introspections leave the grant's budget (3/1h) untouched,
// and after revocation both are {"active":false}.
//
// RFC 7662 §2.1-2.2; README "Rate limits" (only API calls count).
func TestIntrospectionReportsTokensWithoutSpendingBudget(t *testing.T) {
	forEachStore(t, gatewayConfig{rateLimit: "3/1h"}, func(t *testing.T, gw *gateway) {
		tok, _ := obtainTokens(t, gw, "profile:read", "vessels:read")
		introspect := func(token string, auth clientAuth) map[string]any {
			t.Helper()
			r := gw.postForm(t, "/oauth/introspect", url.Values{"token": {token}}, auth, clientID, clientSecret)
			if r.status != http.StatusOK || r.header.Get("Cache-Control") != "no-store" {
				t.Fatalf("introspect: want 200 with Cache-Control: no-store:\n%s", r)
			}
			return r.json(t)
		}
		for i := range 5 {
			m := introspect(tok.AccessToken, clientAuth(i%2)) // post, basic, post, …
			if m["active"] != true || m["sub"] != username || m["client_id"] != clientID ||
				scopeSet(fmt.Sprint(m["scope"])) != "profile:read vessels:read" || m["token_type"] != "Bearer" || m["iss"] != gw.base {
				t.Fatalf("access token introspection = %v", m)
			}
		}
		if m := introspect(tok.RefreshToken, authBasic); m["active"] != true || m["sub"] != username {
			t.Fatalf("refresh token introspection = %v", m)
		}
		r := gw.userinfo(t, bearer(tok.AccessToken))
		wantUserinfoOK(t, r)
		if got := r.header.Get("X-RateLimit-Remaining"); got != "2" {
			t.Fatalf("X-RateLimit-Remaining after 6 introspections and 1 API call = %q, want 2", got)
		}

		wantRevoked(t, gw.revoke(t, tok.AccessToken))
		for _, token := range []string{tok.AccessToken, tok.RefreshToken} {
			r := gw.postForm(t, "/oauth/introspect", url.Values{"token": {token}}, authPost, clientID, clientSecret)
			if r.status != http.StatusOK || strings.TrimSpace(string(r.body)) != `{"active":false}` {
				t.Fatalf("introspection after revocation: want exactly {\"active\":false}:\n%s", r)
			}
		}
	})
}
