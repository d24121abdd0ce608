package integration

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2"
)

// TestAuthorizeRequestValidation sends malformed authorization requests,
// signed out and signed in, and checks each gets the documented answer:
// an error page that never redirects when the client or redirect_uri cannot
// be trusted, and otherwise a redirect to the client with error,
// error_description and state.
//
// RFC 6749 §4.1.2.1: "If the request fails due to a missing, invalid, or
// mismatching redirection URI, or if the client identifier is missing or
// invalid, the authorization server … MUST NOT automatically redirect the
// user-agent"; otherwise "the authorization server informs the client by
// adding the following parameters" (error, error_description, state).
// For DSS every parameter is required (docs/partners.md D14–D19);
// redirect_uri must match a registered one exactly, trailing slashes
// included (D16); code_challenge_method must be S256 and plain is rejected
// (D19); a scope outside the client's allowed set is invalid_scope at
// authorize (D17). A parameter given twice is invalid_request, and a
// parameter with an empty value counts as absent (docs/architecture.md
// §2.1, §3.1; RFC 6749 §3.1).
func TestAuthorizeRequestValidation(t *testing.T) {
	type want struct {
		accept bool     // the login form: the request is valid
		page   bool     // error page, no redirect
		errors []string // accepted error codes of the redirect
		state  bool     // the redirect must carry the state unchanged
	}
	page := want{page: true}
	redirect := func(state bool, codes ...string) want { return want{errors: codes, state: state} }

	verifier := oauth2.GenerateVerifier()
	const state = "st-8f29c0c3"
	base := func() url.Values {
		return url.Values{
			"response_type":         {"code"},
			"client_id":             {clientID},
			"redirect_uri":          {redirectURI},
			"scope":                 {"profile:read vessels:read"},
			"state":                 {state},
			"code_challenge":        {oauth2.S256ChallengeFromVerifier(verifier)},
			"code_challenge_method": {"S256"},
		}
	}
	set := func(k, v string) func(url.Values) { return func(q url.Values) { q.Set(k, v) } }
	del := func(k string) func(url.Values) { return func(q url.Values) { q.Del(k) } }
	twice := func(k string) func(url.Values) { return func(q url.Values) { q.Add(k, q.Get(k)) } }

	cases := []struct {
		name   string
		change func(url.Values)
		want   want
	}{
		// Untrusted client or redirect_uri: error page (RFC 6749 §4.1.2.1).
		{"unknown client_id", set("client_id", "ywc_unknown"), page},
		{"missing client_id", del("client_id"), page},
		{"empty client_id", set("client_id", ""), page},
		{"client_id twice", twice("client_id"), page},
		{"missing redirect_uri", del("redirect_uri"), page},
		{"empty redirect_uri", set("redirect_uri", ""), page},
		{"redirect_uri with trailing slash", set("redirect_uri", redirectURI+"/"), page},
		{"redirect_uri on another port", set("redirect_uri", "http://localhost:9998/callback"), page},
		{"redirect_uri with extra query", set("redirect_uri", redirectURI+"?next=1"), page},
		{"redirect_uri with uppercase host", set("redirect_uri", "http://LOCALHOST:9999/callback"), page},
		{"redirect_uri of another site", set("redirect_uri", "https://evil.example/callback"), page},
		{"redirect_uri twice", twice("redirect_uri"), page},

		// Trusted redirect_uri: the error goes back to the client.
		{"missing response_type", del("response_type"), redirect(true, "invalid_request")},
		{"response_type token", set("response_type", "token"), redirect(true, "unsupported_response_type")},
		{"response_type twice", twice("response_type"), redirect(true, "invalid_request")},
		{"missing state", del("state"), redirect(false, "invalid_request")},
		{"empty state", set("state", ""), redirect(false, "invalid_request")},
		{"state twice", twice("state"), redirect(false, "invalid_request")},
		{"scope outside the client's set", set("scope", "admin:write"), redirect(true, "invalid_scope")},
		{"scope partly outside the client's set", set("scope", "profile:read admin:write"), redirect(true, "invalid_scope")},
		// DSS marks scope required (docs/partners.md D17), so a missing one
		// is invalid_request (D54); RFC 6749 §3.3 says an omitted scope with
		// no default fails as invalid_scope. Either is a refusal.
		{"missing scope", del("scope"), redirect(true, "invalid_scope", "invalid_request")},
		{"empty scope", set("scope", ""), redirect(true, "invalid_scope", "invalid_request")},
		{"scope twice", twice("scope"), redirect(true, "invalid_request")},
		// A missing or malformed parameter, e.g. no code_challenge, is
		// invalid_request (docs/partners.md D19, D54).
		{"missing code_challenge", del("code_challenge"), redirect(true, "invalid_request")},
		{"empty code_challenge", set("code_challenge", ""), redirect(true, "invalid_request")},
		{"code_challenge twice", twice("code_challenge"), redirect(true, "invalid_request")},
		{"malformed code_challenge", set("code_challenge", "too-short"), redirect(true, "invalid_request")},
		{"code_challenge_method plain", set("code_challenge_method", "plain"), redirect(true, "invalid_request")},
		{"plain challenge equal to the verifier", func(q url.Values) {
			q.Set("code_challenge", verifier)
			q.Set("code_challenge_method", "plain")
		}, redirect(true, "invalid_request")},
		// RFC 7636 §4.3: an absent method means plain.
		{"missing code_challenge_method", del("code_challenge_method"), redirect(true, "invalid_request")},
		{"empty code_challenge_method", set("code_challenge_method", ""), redirect(true, "invalid_request")},
		{"code_challenge_method lowercase", set("code_challenge_method", "s256"), redirect(true, "invalid_request")},

		// RFC 6749 §3.1: "The authorization server MUST ignore unrecognized
		// request parameters."
		{"unrecognized parameters", func(q url.Values) {
			q.Set("nonce", "n-1")
			q.Set("prompt", "consent")
			q.Set("access_type", "offline")
		}, want{accept: true}},
	}

	forEachStore(t, gatewayConfig{}, func(t *testing.T, gw *gateway) {
		signedIn := newBrowser(t, gw)
		signedIn.signIn(gw.base + "/oauth/authorize?" + base().Encode())
		for _, session := range []struct {
			name string
			b    *browser
		}{{"signed out", nil}, {"signed in", signedIn}} {
			t.Run(session.name, func(t *testing.T) {
				// Control: the unchanged request is accepted.
				b := session.b
				if b == nil {
					b = newBrowser(t, gw)
				}
				if p := b.get(gw.base + "/oauth/authorize?" + base().Encode()); p.status != http.StatusOK || !(p.isLogin() || p.isConsent()) {
					t.Fatalf("the valid base request is refused:\n%s", p)
				}
				for _, tc := range cases {
					t.Run(tc.name, func(t *testing.T) {
						q := base()
						tc.change(q)
						b := session.b
						if b == nil {
							b = newBrowser(t, gw)
						}
						p := b.get(gw.base + "/oauth/authorize?" + q.Encode())
						if tc.want.accept {
							if p.status != http.StatusOK || !(p.isLogin() || p.isConsent()) {
								t.Fatalf("want the request accepted (login or consent form):\n%s", p)
							}
							return
						}
						if tc.want.page {
							wantErrorPage(t, p)
							return
						}
						wantErrorRedirect(t, p, tc.want.errors, tc.want.state, state)
					})
				}
			})
		}
	})
}

// wantErrorPage checks the gateway showed an error and did not redirect.
// Contract: "a 400 text/html response without a Location header".
func wantErrorPage(t *testing.T, p *page) {
	t.Helper()
	if p.status != http.StatusBadRequest {
		t.Fatalf("want a 400 error page (RFC 6749 §4.1.2.1: MUST NOT redirect):\n%s", p)
	}
	if loc := p.header.Get("Location"); loc != "" {
		t.Fatalf("error page carries Location %q (RFC 6749 §4.1.2.1: MUST NOT redirect):\n%s", loc, p)
	}
	if ct := p.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Fatalf("error page Content-Type = %q, want text/html:\n%s", ct, p)
	}
	if p.isLogin() || p.isConsent() {
		t.Fatalf("error page shows a login or consent form:\n%s", p)
	}
}

// wantErrorRedirect checks a redirect to the registered redirect_uri with
// error (one of codes), a non-empty error_description and, when withState,
// the request's state (RFC 6749 §4.1.2.1).
func wantErrorRedirect(t *testing.T, p *page, codes []string, withState bool, state string) {
	t.Helper()
	if p.status != http.StatusFound && p.status != http.StatusSeeOther {
		t.Fatalf("want a 302/303 redirect with error %v (RFC 6749 §4.1.2.1):\n%s", codes, p)
	}
	loc, err := url.Parse(p.header.Get("Location"))
	if err != nil {
		t.Fatalf("Location: %v\n%s", err, p)
	}
	target := *loc
	target.RawQuery = ""
	if target.String() != redirectURI {
		t.Fatalf("redirected to %q, want the registered %q:\n%s", loc, redirectURI, p)
	}
	q := loc.Query()
	ok := false
	for _, c := range codes {
		ok = ok || q.Get("error") == c
	}
	if !ok {
		t.Fatalf("error = %q, want one of %v; Location %s", q.Get("error"), codes, loc)
	}
	if q.Get("error_description") == "" {
		t.Errorf("no error_description (README \"What partners get\": every other authorize error is redirected to the client with error, error_description and state); Location %s", loc)
	}
	if q.Has("code") {
		t.Errorf("an error redirect carries a code; Location %s", loc)
	}
	if withState && q.Get("state") != state {
		t.Errorf("state = %q, want %q unchanged; Location %s", q.Get("state"), state, loc)
	}
}

// TestEmptyParameterCountsAsAbsent sends a parameter once with a value and
// once empty: the empty one is absent, so the parameter is given once and
// the request is valid.
//
// A parameter given twice is invalid_request; a parameter with an empty
// value counts as absent (docs/architecture.md §2.1, §3.1). RFC 6749 §3.1
// and §3.2: "Parameters sent without a value MUST be treated as if they
// were omitted from the request."
func TestEmptyParameterCountsAsAbsent(t *testing.T) {
	forEachStore(t, gatewayConfig{}, func(t *testing.T, gw *gateway) {
		conf := gw.oauthConfig(oauth2.AuthStyleInParams, allScopes...)
		t.Run("authorize", func(t *testing.T) {
			for _, name := range []string{"state", "scope", "code_challenge"} {
				a := newAuthRequest(conf)
				p := newBrowser(t, gw).get(a.url + "&" + name + "=")
				if p.status != http.StatusOK || !p.isLogin() {
					t.Errorf("authorize with an extra empty %s: want the login form:\n%s", name, p)
				}
			}
		})
		t.Run("token", func(t *testing.T) {
			b := newBrowser(t, gw)
			a := newAuthRequest(conf)
			f := url.Values{
				"grant_type":    {"authorization_code"},
				"code":          {b.authorize(a)},
				"redirect_uri":  {redirectURI, ""},
				"code_verifier": {a.verifier},
			}
			m := wantTokenResponse(t, gw.token(t, f), strings.Join(allScopes, " "))
			// A lone empty scope at refresh is no scope: the full one.
			r := gw.token(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {m["refresh_token"].(string)}, "scope": {""}})
			wantTokenResponse(t, r, strings.Join(allScopes, " "))
		})
	})
}
