package integration

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// The Trans client of integration/testdata/trans.Caddyfile
// (docs/partners.md §4).
const (
	transClientID     = "example_app_client_id"
	transClientSecret = "example_app_secret"
	transAPIKey       = "example_app_api_key"
	transRedirectURI  = "https://app.example.com/trans/callback"
	transTokenPath    = "/ext/auth-api/accounts/token"
	transScope        = "offers.loads.manage"
)

// transAuthURL is Trans's documented authorization request: client_id,
// response_type, state and redirect_uri, and no scope (docs/partners.md
// T1, T2).
func transAuthURL(gw *gateway, state, redirect string) string {
	return gw.base + "/oauth2/auth?client_id=" + transClientID + "&response_type=code&state=" + url.QueryEscape(state) +
		"&redirect_uri=" + url.QueryEscape(redirect)
}

// transAuthorize runs the authorization request through sign-in and
// consent with b and returns the code of the 303 to the registered URI.
func transAuthorize(t *testing.T, b *browser, gw *gateway) string {
	t.Helper()
	state := randomDigits(t, 10)
	consent := b.consentPage(transAuthURL(gw, state, transRedirectURI))
	return wantCode(t, b.allowTo(consent, transRedirectURI), state)
}

// transHeaders is how a Trans token request authenticates beyond the form.
type transHeaders struct {
	apiKey string // the Api-key header; "" leaves it out
	basic  bool   // HTTP Basic client authentication
}

// transToken posts form (already encoded, in the document's order) to the
// Trans token endpoint with the document's Content-Type.
func transToken(t *testing.T, gw *gateway, form string, h transHeaders) *response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, gw.base+transTokenPath, strings.NewReader(form))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if h.apiKey != "" {
		req.Header.Set("Api-key", h.apiKey)
	}
	if h.basic {
		req.SetBasicAuth(transClientID, transClientSecret)
	}
	return send(t, req, describe(req, redactSecret(form)))
}

// transCodeForm is Trans's documented access token request parameters, in
// its order (docs/partners.md T9).
func transCodeForm(code string) string {
	return orderedForm(
		"grant_type", "authorization_code",
		"code", code,
		"redirect_uri", transRedirectURI,
		"client_id", transClientID,
		"client_secret", transClientSecret,
	)
}

func transRefreshForm(refreshToken string) string {
	return orderedForm(
		"grant_type", "refresh_token",
		"refresh_token", refreshToken,
		"client_id", transClientID,
		"client_secret", transClientSecret,
	)
}

func redactSecret(form string) string {
	return strings.ReplaceAll(form, url.QueryEscape(transClientSecret), "***")
}

// wantTransToken checks the Trans token response field by field
// (docs/partners.md T12) and returns it.
func wantTransToken(t *testing.T, r *response) map[string]any {
	t.Helper()
	failedBefore := t.Failed()
	if r.status != http.StatusOK {
		t.Fatalf("Trans token request: want 200:\n%s", r)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q, want application/json (docs/partners.md T12: a JSON response)", ct)
	}
	m := r.json(t)
	want := []string{"access_token", "expires_in", "refresh_token", "scope", "token_type"}
	if got := keys(m); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("fields = %v, want exactly %v (docs/partners.md T12)", got, want)
	}
	for _, k := range []string{"access_token", "refresh_token"} {
		if s, _ := m[k].(string); len(s) < 20 {
			t.Errorf("%s = %#v, want an opaque random string", k, m[k])
		}
	}
	if m["expires_in"] != float64(21599) {
		t.Errorf("expires_in = %#v, want 21599 (docs/partners.md T12)", m["expires_in"])
	}
	if m["token_type"] != "Bearer" {
		t.Errorf("token_type = %#v, want \"Bearer\" (docs/partners.md T12)", m["token_type"])
	}
	if m["scope"] != transScope {
		t.Errorf("scope = %#v, want %q (docs/partners.md T2, T12: the client's default scope)", m["scope"], transScope)
	}
	if t.Failed() && !failedBefore {
		t.Fatalf("response:\n%s", r)
	}
	return m
}

// transLoads calls the Trans API with an access token.
func transLoads(t *testing.T, gw *gateway, accessToken string) *response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, gw.base+"/ext/loads-api/v1/loads", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+accessToken)
	return send(t, req, describe(req, ""))
}

// TestTransDocumentFlow replays Trans's documented flow as Trans writes
// it: the authorization request without scope (the client's default scope
// is shown and granted), the 302/303 back with code and state, the access
// token request as Trans's form with the Api-key header, the token
// response, a refresh, and calls of the loads API with both access tokens.
//
// Requirements (docs/partners.md §4): authorize at /oauth2/auth with
// client_id, response_type=code, state and redirect_uri (T1) and no scope
// (T2); the code and state come back by redirect (T7); the token request
// is a form POST to /ext/auth-api/accounts/token with grant_type, code,
// redirect_uri, client_id and client_secret and an Api-key header (T9,
// T10); the response carries access_token, expires_in 21599, token_type
// Bearer, scope offers.loads.manage and refresh_token (T12); the refresh
// token is single-use and extends the session (T13).
func TestTransDocumentFlow(t *testing.T) {
	forEachStorePartner(t, transConfig, func(t *testing.T, gw *gateway) {
		b := newBrowser(t, gw)
		state := randomDigits(t, 10)
		consent := b.consentPage(transAuthURL(gw, state, transRedirectURI))
		if text := consent.text(); !strings.Contains(text, "Example App") || !strings.Contains(text, "Manage your load offers") {
			t.Errorf("consent page does not name the client and its default scope (\"Example App\", \"Manage your load offers\"):\n%s", text)
		}
		code := wantCode(t, b.allowTo(consent, transRedirectURI), state)

		first := wantTransToken(t, transToken(t, gw, transCodeForm(code), transHeaders{apiKey: transAPIKey}))
		wantAPIOK(t, transLoads(t, gw, first["access_token"].(string)))

		second := wantTransToken(t, transToken(t, gw, transRefreshForm(first["refresh_token"].(string)), transHeaders{apiKey: transAPIKey}))
		if second["access_token"] == first["access_token"] || second["refresh_token"] == first["refresh_token"] {
			t.Fatalf("refresh did not issue a new pair: %v then %v", first, second)
		}
		wantAPIOK(t, transLoads(t, gw, second["access_token"].(string)))
		// "Single serving token": the first refresh token is spent.
		wantOAuthError(t, transToken(t, gw, transRefreshForm(first["refresh_token"].(string)), transHeaders{apiKey: transAPIKey}),
			http.StatusBadRequest, "invalid_grant")
	})
}

// TestTransTokenRequiresAPIKey sends the document's token requests without
// the Api-key header and with a wrong one: 401 invalid_client, for the
// code exchange and the refresh alike.
//
// Trans requires the Api-key header issued at registration on the token
// request (docs/partners.md T10).
func TestTransTokenRequiresAPIKey(t *testing.T) {
	forEachStorePartner(t, transConfig, func(t *testing.T, gw *gateway) {
		b := newBrowser(t, gw)
		for _, tc := range []struct {
			name string
			h    transHeaders
		}{
			{"no Api-key", transHeaders{}},
			{"wrong Api-key", transHeaders{apiKey: "example_app_api_kez"}},
			{"client secret as Api-key", transHeaders{apiKey: transClientSecret}},
			{"no Api-key with Basic", transHeaders{basic: true}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				code := transAuthorize(t, b, gw)
				form := transCodeForm(code)
				if tc.h.basic {
					form = orderedForm("grant_type", "authorization_code", "code", code, "redirect_uri", transRedirectURI)
				}
				wantOAuthError(t, transToken(t, gw, form, tc.h), http.StatusUnauthorized, "invalid_client")
			})
		}
		t.Run("refresh", func(t *testing.T) {
			m := wantTransToken(t, transToken(t, gw, transCodeForm(transAuthorize(t, b, gw)), transHeaders{apiKey: transAPIKey}))
			rt := m["refresh_token"].(string)
			wantOAuthError(t, transToken(t, gw, transRefreshForm(rt), transHeaders{}), http.StatusUnauthorized, "invalid_client")
			wantOAuthError(t, transToken(t, gw, transRefreshForm(rt), transHeaders{apiKey: "wrong"}), http.StatusUnauthorized, "invalid_client")
			// The refused attempts did not spend it.
			wantTransToken(t, transToken(t, gw, transRefreshForm(rt), transHeaders{apiKey: transAPIKey}))
		})
	})
}

// TestTransBasicClientAuthentication authenticates the client with HTTP
// Basic and leaves client_id and client_secret out of the form.
//
// client_id and client_secret in the form are only needed when the
// Authorization header is not sent (docs/partners.md T11).
func TestTransBasicClientAuthentication(t *testing.T) {
	forEachStorePartner(t, transConfig, func(t *testing.T, gw *gateway) {
		code := transAuthorize(t, newBrowser(t, gw), gw)
		form := orderedForm("grant_type", "authorization_code", "code", code, "redirect_uri", transRedirectURI)
		m := wantTransToken(t, transToken(t, gw, form, transHeaders{apiKey: transAPIKey, basic: true}))
		wantAPIOK(t, transLoads(t, gw, m["access_token"].(string)))

		refreshForm := orderedForm("grant_type", "refresh_token", "refresh_token", m["refresh_token"].(string))
		n := wantTransToken(t, transToken(t, gw, refreshForm, transHeaders{apiKey: transAPIKey, basic: true}))
		wantAPIOK(t, transLoads(t, gw, n["access_token"].(string)))
	})
}

// TestTransStateAtLeastEightCharacters sends a 7-character state (refused:
// redirected to the client with invalid_request and the state) and an
// 8-character one (accepted: the login form).
//
// Trans's state is required, a random number of at least 8 characters
// (docs/partners.md T1, T3).
func TestTransStateAtLeastEightCharacters(t *testing.T) {
	forEachStorePartner(t, transConfig, func(t *testing.T, gw *gateway) {
		b := newBrowser(t, gw)
		p := b.get(transAuthURL(gw, "1234567", transRedirectURI))
		loc := wantRedirectTo(t, p, transRedirectURI, http.StatusFound, http.StatusSeeOther)
		q := loc.Query()
		if q.Get("error") != "invalid_request" || q.Get("error_description") == "" || q.Get("state") != "1234567" || q.Has("code") {
			t.Fatalf("want error=invalid_request with error_description and state=1234567, no code; Location %s", loc)
		}

		p = b.get(transAuthURL(gw, "12345678", transRedirectURI))
		if p.status != http.StatusOK || !p.isLogin() {
			t.Fatalf("an 8-character state: want the login form:\n%s", p)
		}

		// And without any state.
		p = b.get(gw.base + "/oauth2/auth?client_id=" + transClientID + "&response_type=code&redirect_uri=" + url.QueryEscape(transRedirectURI))
		loc = wantRedirectTo(t, p, transRedirectURI, http.StatusFound, http.StatusSeeOther)
		if loc.Query().Get("error") != "invalid_request" || loc.Query().Has("code") {
			t.Fatalf("no state: want error=invalid_request (docs/partners.md T1: state is required); Location %s", loc)
		}
	})
}

// TestTransRedirectURIHTTPSOnly checks that plain-http redirect URIs, even
// on localhost, and any URI that is not exactly the whitelisted one get the
// gateway's error page and are never redirected to.
//
// The redirect URI must be exactly as whitelisted, https only, and a
// missing, invalid or mismatching redirect URI or client id is reported on
// the authorization server's own page, not by redirect (docs/partners.md
// T4, T5; RFC 6749 §4.1.2.1).
func TestTransRedirectURIHTTPSOnly(t *testing.T) {
	forEachStorePartner(t, transConfig, func(t *testing.T, gw *gateway) {
		b := newBrowser(t, gw)
		for _, uri := range []string{
			"http://app.example.com/trans/callback",
			"http://localhost/trans/callback",
			"http://localhost:9999/callback",
			"http://127.0.0.1/trans/callback",
			"https://app.example.com/trans/callback/",
			"https://app.example.com/trans/",
		} {
			t.Run(uri, func(t *testing.T) {
				wantErrorPage(t, b.get(transAuthURL(gw, randomDigits(t, 10), uri)))
			})
		}
		t.Run("missing redirect_uri", func(t *testing.T) {
			wantErrorPage(t, b.get(gw.base+"/oauth2/auth?client_id="+transClientID+"&response_type=code&state="+randomDigits(t, 10)))
		})
		t.Run("unknown client_id", func(t *testing.T) {
			wantErrorPage(t, b.get(strings.Replace(transAuthURL(gw, randomDigits(t, 10), transRedirectURI), transClientID, "other_app_client_id", 1)))
		})
	})
}
