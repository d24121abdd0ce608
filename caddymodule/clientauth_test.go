package caddymodule

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/tollgate/tollgate/caddymodule/oauth"
)

// The token and revocation endpoints authenticate the client by
// client_secret_basic or client_secret_post (RFC 6749 §2.3.1). A failure is
// 401 invalid_client, with WWW-Authenticate: Basic when the client tried
// Basic (RFC 6749 §5.2); an ambiguous request is 400 invalid_request.
// Either way nothing happens to the token the request named.
func TestTokenAndRevokeRefuseBadClientAuthentication(t *testing.T) {
	const challenge = `Basic realm="tollgate", charset="UTF-8"`
	for _, tc := range []struct {
		name      string
		form      url.Values
		query     string
		basic     string // "id:secret", form-urlencoded into Basic
		header    http.Header
		status    int
		code      string
		challenge string
	}{
		{"a wrong secret (post)", url.Values{"client_id": {"partner"}, "client_secret": {"wrong"}}, "", "", nil, 401, oauth.InvalidClient, ""},
		{"a wrong secret (Basic)", nil, "", "partner:wrong", nil, 401, oauth.InvalidClient, challenge},
		{"another client's secret", url.Values{"client_id": {"partner"}, "client_secret": {otherSecret}}, "", "", nil, 401, oauth.InvalidClient, ""},
		{"an unknown client (post)", url.Values{"client_id": {"nobody"}, "client_secret": {testSecret}}, "", "", nil, 401, oauth.InvalidClient, ""},
		{"an unknown client (Basic)", nil, "", "nobody:" + testSecret, nil, 401, oauth.InvalidClient, challenge},
		{"an empty secret", url.Values{"client_id": {"partner"}, "client_secret": {""}}, "", "", nil, 401, oauth.InvalidClient, ""},
		{"no credentials", url.Values{"client_id": {"partner"}}, "", "", nil, 401, oauth.InvalidClient, ""},
		{"the secret in the query", url.Values{"client_id": {"partner"}}, "client_secret=" + testSecret, "", nil, 401, oauth.InvalidClient, ""},
		{"Basic and client_secret at once", url.Values{"client_secret": {testSecret}}, "", "partner:" + testSecret, nil, 400, oauth.InvalidRequest, ""},
		{"a body client_id other than the Basic one", url.Values{"client_id": {"other"}}, "", "partner:" + testSecret, nil, 400, oauth.InvalidRequest, ""},
		{"two Authorization headers", nil, "", "partner:" + testSecret, http.Header{"Authorization": {"Basic b3RoZXI6b3RoZXItc2VjcmV0"}}, 400, oauth.InvalidRequest, ""},
		{"Basic that is not form-urlencoded", nil, "", "", http.Header{"Authorization": {"Basic cGFydG5lciU6eA=="}}, 401, oauth.InvalidClient, challenge},
	} {
		for _, ep := range []struct {
			name string
			h    func(a *App) handler
			form func(tr tokenResponse) url.Values
		}{
			{"token", func(a *App) handler { return &Token{appRef{a}} }, func(tr tokenResponse) url.Values {
				return url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tr.RefreshToken}}
			}},
			{"revoke", func(a *App) handler { return &Revoke{appRef{a}} }, func(tr tokenResponse) url.Values {
				return url.Values{"token": {tr.RefreshToken}}
			}},
		} {
			t.Run(ep.name+"/"+tc.name, func(t *testing.T) {
				a, _ := newTestApp(t)
				tr := issue(t, a, "partner", testSecret, "profile:read")
				form := override(ep.form(tr), tc.form)
				r := httptest.NewRequest(http.MethodPost, "/oauth/"+ep.name+"?"+tc.query, strings.NewReader(form.Encode()))
				r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				if tc.basic != "" {
					id, secret, _ := strings.Cut(tc.basic, ":")
					r.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
				}
				for k, vs := range tc.header {
					for _, v := range vs {
						r.Header.Add(k, v)
					}
				}
				w := httptest.NewRecorder()
				if err := ep.h(a).ServeHTTP(w, r, nil); err != nil {
					t.Fatal(err)
				}
				wantOAuthError(t, w, tc.status, tc.code)
				if got := w.Header().Get("WWW-Authenticate"); got != tc.challenge {
					t.Errorf("WWW-Authenticate %q, want %q", got, tc.challenge)
				}
				if !active(t, a, "partner", testSecret, tr.RefreshToken) {
					t.Fatal("a request whose client was not authenticated changed the token")
				}
			})
		}
	}
}

// A client registered with a token_header (the Trans style) must send that
// header with the right value to the token and revocation endpoints, on top
// of its secret (README, Partner styles).
func TestTokenRequiresTheClientsTokenHeader(t *testing.T) {
	a, _ := newTestApp(t)
	tr := issue(t, a, "partner", testSecret, "profile:read")
	requireAPIKey(t, a)
	refreshWith := func(apiKey string) *httptest.ResponseRecorder {
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tr.RefreshToken}}
		r := httptest.NewRequest(http.MethodPost, "/oauth/token", strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.SetBasicAuth("partner", testSecret)
		if apiKey != "" {
			r.Header.Set("Api-key", apiKey)
		}
		w := httptest.NewRecorder()
		if err := (&Token{appRef{a}}).ServeHTTP(w, r, nil); err != nil {
			t.Fatal(err)
		}
		return w
	}
	for _, bad := range []string{"", "wrong-key", "partner-api-key "} {
		w := refreshWith(bad)
		wantOAuthError(t, w, http.StatusUnauthorized, oauth.InvalidClient)
		if !strings.Contains(strings.ToLower(w.Body.String()), "api-key") {
			t.Errorf("Api-key %q: the error does not name the header: %s", bad, w.Body)
		}
	}
	tokens(t, refreshWith("partner-api-key"))
}

// requireAPIKey registers partner again with the token_header
// Api-key: partner-api-key.
func requireAPIKey(t *testing.T, a *App) {
	t.Helper()
	c, err := ClientConfig{
		ClientID: "partner", Secret: testSecret, RedirectURIs: []string{"https://partner.example.com/cb"},
		Scopes: []string{"profile:read"}, TokenHeader: &HeaderRequirement{Name: "Api-key", Value: "partner-api-key"},
	}.build(caddy.NewReplacer())
	if err != nil {
		t.Fatal(err)
	}
	a.clients["partner"] = c
}

// wantPOSTOnly sends a GET to h, a client-authenticated endpoint, and
// checks it is refused 405 invalid_request with Allow: POST: a token or
// secret in a URL ends up in logs.
func wantPOSTOnly(t *testing.T, h handler, target string) {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, target, nil)
	r.SetBasicAuth("partner", testSecret)
	w := httptest.NewRecorder()
	if err := h.ServeHTTP(w, r, nil); err != nil {
		t.Fatal(err)
	}
	wantOAuthError(t, w, http.StatusMethodNotAllowed, oauth.InvalidRequest)
	if allow := w.Header().Get("Allow"); allow != "POST" {
		t.Errorf("Allow %q, want POST", allow)
	}
}
