package integration

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// TestAuthorizationCodeFlowWithPKCE drives the documented happy path end
// to end with golang.org/x/oauth2, once per client authentication method:
// authorize → sign-in → consent → 303 with code and the unchanged state →
// code exchange with the PKCE verifier → userinfo → refresh.
//
// On approval the browser is redirected to redirect_uri?code=…&state=…
// with state unchanged (docs/partners.md D18, D22); the token response has
// the five fields of D29; the client authenticates by client_secret_post or
// client_secret_basic (D24; README "What partners get", POST /oauth/token).
func TestAuthorizationCodeFlowWithPKCE(t *testing.T) {
	forEachStore(t, gatewayConfig{}, func(t *testing.T, gw *gateway) {
		for _, tc := range []struct {
			name  string
			style oauth2.AuthStyle
		}{
			{"client_secret_post", oauth2.AuthStyleInParams},
			{"client_secret_basic", oauth2.AuthStyleInHeader},
		} {
			t.Run(tc.name, func(t *testing.T) {
				conf := gw.oauthConfig(tc.style, allScopes...)
				// Characters that need escaping, to catch a state that is
				// decoded, re-encoded or trimmed on its way back.
				a := newAuthRequestWith(conf, "xyz ABC/+=&?~%é."+oauth2.GenerateVerifier()[:8], oauth2.GenerateVerifier())
				b := newBrowser(t, gw)

				consent := b.signIn(a.url)
				text := consent.text()
				if !strings.Contains(text, clientName) {
					t.Errorf("consent page does not name the partner %q (docs/partners.md D21: the consent screen shows the partner's name):\n%s", clientName, text)
				}
				for _, s := range allScopes {
					if !strings.Contains(text, scopeText[s]) {
						t.Errorf("consent page does not describe %s as %q (docs/partners.md D21: the requested scopes in plain English):\n%s", s, scopeText[s], text)
					}
				}

				loc := b.decide(consent, "allow")
				q := loc.Query()
				if q.Get("state") != a.state {
					t.Fatalf("callback state = %q, want %q unchanged (docs/partners.md D18: state is returned unchanged); Location %s", q.Get("state"), a.state, loc)
				}
				if q.Get("code") == "" || q.Has("error") {
					t.Fatalf("callback has no code: %s", loc)
				}

				ctx := clientCtx(t)
				tok, err := conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(a.verifier))
				if err != nil {
					t.Fatalf("code exchange: %v", err)
				}
				if tok.AccessToken == "" || tok.RefreshToken == "" {
					t.Fatalf("token response lacks a token: %+v", tok)
				}
				if tok.TokenType != "Bearer" {
					t.Errorf("token_type = %q, want Bearer", tok.TokenType)
				}
				if tok.ExpiresIn != 3600 {
					t.Errorf("expires_in = %d, want 3600 (docs/partners.md D31: access tokens live 1 hour)", tok.ExpiresIn)
				}
				if got, _ := tok.Extra("scope").(string); scopeSet(got) != scopeSet(strings.Join(allScopes, " ")) {
					t.Errorf("scope = %q, want %q", got, strings.Join(allScopes, " "))
				}
				wantUserinfoOK(t, gw.userinfo(t, bearer(tok.AccessToken)))

				// The partner's library refreshes a token it considers expired.
				expired := &oauth2.Token{AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken, Expiry: time.Now().Add(-time.Minute)}
				next, err := conf.TokenSource(ctx, expired).Token()
				if err != nil {
					t.Fatalf("refresh: %v", err)
				}
				if next.AccessToken == tok.AccessToken || next.RefreshToken == tok.RefreshToken || next.RefreshToken == "" {
					t.Fatalf("refresh did not issue a new pair (docs/partners.md D33): old %q/%q new %q/%q",
						tok.AccessToken, tok.RefreshToken, next.AccessToken, next.RefreshToken)
				}
				wantUserinfoOK(t, gw.userinfo(t, bearer(next.AccessToken)))
			})
		}
	})
}

// TestTokenResponseFieldsAndNoStore checks the exact token response of both
// grants on the wire.
//
// The response is {"access_token", "token_type": "Bearer", "expires_in":
// 3600, "refresh_token", "scope"} with Cache-Control: no-store
// (docs/partners.md D29; RFC 6749 §5.1).
func TestTokenResponseFieldsAndNoStore(t *testing.T) {
	forEachStore(t, gatewayConfig{}, func(t *testing.T, gw *gateway) {
		scope := "profile:read vessels:read"
		a := newAuthRequest(gw.oauthConfig(oauth2.AuthStyleInParams, strings.Fields(scope)...))
		code := newBrowser(t, gw).authorize(a)

		first := gw.exchange(t, code, a.verifier, redirectURI)
		m := wantTokenResponse(t, first, scope)

		second := gw.refreshRaw(t, m["refresh_token"].(string), "")
		n := wantTokenResponse(t, second, scope)
		if n["access_token"] == m["access_token"] || n["refresh_token"] == m["refresh_token"] {
			t.Fatalf("refresh returned the old tokens:\n%s", second)
		}
	})
}

// wantTokenResponse checks an RFC 6749 §5.1 success response with exactly
// the five documented fields and returns it.
func wantTokenResponse(t *testing.T, r *response, scope string) map[string]any {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("want 200:\n%s", r)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q, want application/json (RFC 6749 §5.1)", ct)
	}
	if cc := r.header.Get("Cache-Control"); !strings.Contains(cc, "no-store") {
		t.Errorf("Cache-Control = %q, want no-store (RFC 6749 §5.1; docs/partners.md D29)", cc)
	}
	m := r.json(t)
	want := []string{"access_token", "expires_in", "refresh_token", "scope", "token_type"}
	if got := keys(m); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("fields = %v, want exactly %v (docs/partners.md D29)", got, want)
	}
	for _, k := range []string{"access_token", "refresh_token"} {
		if s, _ := m[k].(string); len(s) < 20 {
			t.Errorf("%s = %#v, want an opaque random string", k, m[k])
		}
	}
	if m["access_token"] == m["refresh_token"] {
		t.Errorf("access_token and refresh_token are equal")
	}
	if m["token_type"] != "Bearer" {
		t.Errorf("token_type = %#v, want \"Bearer\"", m["token_type"])
	}
	if m["expires_in"] != float64(3600) {
		t.Errorf("expires_in = %#v, want 3600 (docs/partners.md D29)", m["expires_in"])
	}
	if s, _ := m["scope"].(string); scopeSet(s) != scopeSet(scope) {
		t.Errorf("scope = %#v, want %q", m["scope"], scope)
	}
	if t.Failed() {
		t.Fatalf("response:\n%s", r)
	}
	return m
}

// TestConsentScreenListsOnlyRequestedScopes asks for one scope and checks
// the consent screen names the partner and that scope, and no other.
//
// The consent screen shows the partner's name and the requested scopes in
// plain English (docs/partners.md D21), in one form whose submit buttons
// are name="decision" value="allow" and value="deny" (the form's field
// names are Tollgate's own; docs/architecture.md §2.3).
func TestConsentScreenListsOnlyRequestedScopes(t *testing.T) {
	forEachStore(t, gatewayConfig{}, func(t *testing.T, gw *gateway) {
		a := newAuthRequest(gw.oauthConfig(oauth2.AuthStyleInParams, "vessels:read"))
		consent := newBrowser(t, gw).signIn(a.url) // checks the form and buttons
		text := consent.text()
		if !strings.Contains(text, clientName) {
			t.Errorf("consent page does not name %q:\n%s", clientName, text)
		}
		if !strings.Contains(text, scopeText["vessels:read"]) {
			t.Errorf("consent page does not say %q:\n%s", scopeText["vessels:read"], text)
		}
		for _, s := range []string{"profile:read", "seatime:read"} {
			if strings.Contains(text, scopeText[s]) {
				t.Errorf("consent page lists %s (%q), which was not requested:\n%s", s, scopeText[s], text)
			}
		}
		if n := strings.Count(strings.ToLower(consent.body), "<form"); n != 1 {
			t.Errorf("consent page has %d forms, want one (the allow and deny buttons share one form)", n)
		}
	})
}

// TestSessionCookieIsRandomHttpOnlyLaxAndRenewedAtSignIn checks the
// session cookie's attributes and that signing in replaces any id the
// browser carried before (session fixation).
//
// Sessions are server-side, the cookie holds only a random id, HttpOnly,
// SameSite=Lax, and a new id is issued at sign-in (README "Security";
// docs/architecture.md §2.2).
func TestSessionCookieIsRandomHttpOnlyLaxAndRenewedAtSignIn(t *testing.T) {
	forEachStore(t, gatewayConfig{}, func(t *testing.T, gw *gateway) {
		conf := gw.oauthConfig(oauth2.AuthStyleInParams, allScopes...)

		// An honest sign-in: every cookie set at sign-in is HttpOnly and
		// SameSite=Lax, and the session cookie's value changes.
		b := newBrowser(t, gw)
		a := newAuthRequest(conf)
		login := b.get(a.url)
		if !login.isLogin() {
			t.Fatalf("want the login form:\n%s", login)
		}
		before := map[string]string{}
		for _, c := range setCookies(t, login) {
			before[c.Name] = c.Value
			wantCookieAttrs(t, c)
		}
		signedIn := b.submit(login, url.Values{"username": {username}, "password": {password}})
		if !signedIn.isConsent() {
			t.Fatalf("want the consent form after sign-in:\n%s", signedIn)
		}
		set := setCookies(t, signedIn)
		if len(set) == 0 {
			t.Fatalf("sign-in set no cookie (README \"Security\": a new session id at every sign-in):\n%s", signedIn)
		}
		var session *http.Cookie
		for _, c := range set {
			wantCookieAttrs(t, c)
			if old, ok := before[c.Name]; ok && old == c.Value {
				t.Errorf("cookie %s kept its pre-sign-in value %q across sign-in", c.Name, c.Value)
			}
			if c.MaxAge >= 0 && session == nil {
				session = c
			}
		}
		if session == nil {
			t.Fatalf("sign-in only deleted cookies: %q", signedIn.header.Values("Set-Cookie"))
		}
		if len(session.Value) < 22 {
			t.Errorf("session cookie value %q is too short to be a random id (want ≥ 128 bits)", session.Value)
		}
		if strings.Contains(strings.ToLower(session.Value), username) {
			t.Errorf("session cookie value %q looks like it carries data, not only a random id", session.Value)
		}
		other := newBrowser(t, gw)
		other.signIn(newAuthRequest(conf).url)
		if v := other.cookie(session.Name); v == "" || v == session.Value {
			t.Errorf("two sign-ins got session ids %q and %q, want two different random ids", session.Value, v)
		}

		// Fixation: the attacker obtains a session id (an anonymous one the
		// gateway handed out, or any string), plants it in the victim's
		// browser, and waits for the victim to sign in.
		attacker := newBrowser(t, gw)
		attacker.get(newAuthRequest(conf).url)
		planted := attacker.cookie(session.Name)
		if planted == "" {
			planted = "planted-session-id-0123456789abcdefghij"
			attacker.setCookie(session.Name, planted)
		}
		victim := newBrowser(t, gw)
		victim.setCookie(session.Name, planted)
		victim.signIn(newAuthRequest(conf).url)
		if got := victim.cookie(session.Name); got == planted {
			t.Fatalf("the victim's session id %q did not change at sign-in (README \"Security\": a new session id at every sign-in)", got)
		}
		if p := attacker.get(newAuthRequest(conf).url); p.isConsent() || !p.isLogin() {
			t.Fatalf("the planted session id is signed in as the victim (session fixation):\n%s", p)
		}
	})
}

func setCookies(t *testing.T, p *page) []*http.Cookie {
	t.Helper()
	var cs []*http.Cookie
	for _, line := range p.header.Values("Set-Cookie") {
		c, err := http.ParseSetCookie(line)
		if err != nil {
			t.Fatalf("Set-Cookie %q: %v", line, err)
		}
		cs = append(cs, c)
	}
	return cs
}

func wantCookieAttrs(t *testing.T, c *http.Cookie) {
	t.Helper()
	if !c.HttpOnly {
		t.Errorf("cookie %s is not HttpOnly (README \"Security\"): %s", c.Name, c.Raw)
	}
	if c.SameSite != http.SameSiteLaxMode {
		t.Errorf("cookie %s is not SameSite=Lax (README \"Security\"): %s", c.Name, c.Raw)
	}
	if c.Secure {
		// The example runs on plain http://localhost: a Secure cookie is
		// never sent back and sign-in could not work.
		t.Errorf("cookie %s is Secure on a plain-HTTP gateway: %s", c.Name, c.Raw)
	}
}

// TestWrongPasswordCreatesNoSession submits bad credentials and checks the
// login form comes back and no signed-in session exists afterwards.
//
// With no session, the user sees a login form whose inputs are named
// username and password; a wrong password re-renders the login form and
// creates no session: only a successful sign-in creates server-side state
// (docs/architecture.md §2.2).
func TestWrongPasswordCreatesNoSession(t *testing.T) {
	forEachStore(t, gatewayConfig{}, func(t *testing.T, gw *gateway) {
		conf := gw.oauthConfig(oauth2.AuthStyleInParams, allScopes...)
		for _, tc := range []struct{ name, user, pass string }{
			{"wrong password", username, "not-alices-password"},
			{"unknown user", "mallory", password},
			{"empty password", username, ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				b := newBrowser(t, gw)
				a := newAuthRequest(conf)
				login := b.get(a.url)
				if !login.isLogin() {
					t.Fatalf("want the login form:\n%s", login)
				}
				p := b.submit(login, url.Values{"username": {tc.user}, "password": {tc.pass}})
				if p.status != http.StatusOK && p.status != http.StatusUnauthorized {
					t.Fatalf("bad credentials: want 200 or 401 with the login form again:\n%s", p)
				}
				if !p.isLogin() || p.isConsent() {
					t.Fatalf("bad credentials: want the login form again, not consent:\n%s", p)
				}
				if again := b.get(a.url); again.isConsent() || !again.isLogin() {
					t.Fatalf("after bad credentials the browser is signed in:\n%s", again)
				}
				// The re-rendered form still works.
				if p2 := b.submit(p, url.Values{"username": {username}, "password": {password}}); !p2.isConsent() {
					t.Fatalf("signing in from the re-rendered form: want the consent form:\n%s", p2)
				}
			})
		}
	})
}

// TestConsentDenyRedirectsWithAccessDenied clicks Deny.
//
// On denial, the same redirect with ?error=access_denied&state=…
// (docs/partners.md D23, D59).
func TestConsentDenyRedirectsWithAccessDenied(t *testing.T) {
	forEachStore(t, gatewayConfig{}, func(t *testing.T, gw *gateway) {
		a := newAuthRequest(gw.oauthConfig(oauth2.AuthStyleInParams, allScopes...))
		b := newBrowser(t, gw)
		loc := b.decide(b.signIn(a.url), "deny")
		q := loc.Query()
		if q.Get("error") != "access_denied" || q.Get("state") != a.state || q.Has("code") {
			t.Fatalf("deny: Location %s, want %s?error=access_denied&state=%s and no code", loc, redirectURI, a.state)
		}
	})
}

// TestConsentFormIsBoundToSession checks the consent POST cannot be forged:
// every hidden field is needed and a form from another session is refused.
//
// The consent form carries a CSRF token bound to the session (README
// "Security"; docs/architecture.md §2.3).
func TestConsentFormIsBoundToSession(t *testing.T) {
	forEachStore(t, gatewayConfig{}, func(t *testing.T, gw *gateway) {
		conf := gw.oauthConfig(oauth2.AuthStyleInParams, allScopes...)
		victim := newBrowser(t, gw)
		attacker := newBrowser(t, gw)
		victimConsent := victim.signIn(newAuthRequest(conf).url)
		attackerConsent := attacker.signIn(newAuthRequest(conf).url)
		hidden := victimConsent.form().hidden
		if len(hidden) == 0 {
			t.Fatalf("the consent form has no hidden fields, so no CSRF token:\n%s", victimConsent)
		}

		// The victim's form fields posted from the attacker's session.
		forged := url.Values{"decision": {"allow"}}
		for k, vs := range hidden {
			forged[k] = vs
		}
		wantNoCode(t, attacker.submit(attackerConsent, forged), "the victim's consent form posted from another session")

		// Each hidden field left out or changed.
		for name := range hidden {
			p := victim.consentPage(newAuthRequest(conf).url)
			f := url.Values{"decision": {"allow"}}
			for k, vs := range p.form().hidden {
				if k != name {
					f[k] = vs
				}
			}
			wantNoCode(t, victim.post(resolve(t, p), f), "consent without hidden field "+name)

			p = victim.consentPage(newAuthRequest(conf).url)
			wantNoCode(t, victim.submit(p, url.Values{"decision": {"allow"}, name: {"tampered" + p.form().hidden.Get(name)}}),
				"consent with hidden field "+name+" changed")
		}

		// Control: the attacker's own, untouched form works.
		attacker.decide(attacker.consentPage(newAuthRequest(conf).url), "allow")
	})
}

// resolve returns the page's form action as an absolute URL.
func resolve(t *testing.T, p *page) string {
	t.Helper()
	u, err := p.url.Parse(p.form().action)
	if err != nil {
		t.Fatal(err)
	}
	return u.String()
}

// wantNoCode fails if p hands out an authorization code or is a server
// error; a refusal page, a re-rendered form or an error redirect are fine.
func wantNoCode(t *testing.T, p *page, what string) {
	t.Helper()
	if loc := p.header.Get("Location"); loc != "" {
		if u, err := url.Parse(loc); err != nil || u.Query().Get("code") != "" {
			t.Fatalf("%s: a code was issued:\n%s", what, p)
		}
	}
	if p.status >= 500 {
		t.Fatalf("%s: want a refusal, got a server error:\n%s", what, p)
	}
}

// TestConsentKeepsAuthorizeParametersServerSide posts the consent form with
// redirect_uri, scope, state and code_challenge fields added and checks
// none of them is believed.
//
// The authorize parameters are kept server-side, and the consent form
// carries only tx, csrf and the decision (docs/architecture.md §2.3).
func TestConsentKeepsAuthorizeParametersServerSide(t *testing.T) {
	forEachStore(t, gatewayConfig{}, func(t *testing.T, gw *gateway) {
		conf := gw.oauthConfig(oauth2.AuthStyleInParams, "vessels:read")
		a := newAuthRequest(conf)
		b := newBrowser(t, gw)
		consent := b.signIn(a.url)
		evil := oauth2.GenerateVerifier()
		p := b.submit(consent, url.Values{
			"decision":              {"allow"},
			"redirect_uri":          {"http://evil.example/callback"},
			"scope":                 {strings.Join(allScopes, " ")},
			"state":                 {"forged-state"},
			"client_id":             {"ywc_other"},
			"code_challenge":        {oauth2.S256ChallengeFromVerifier(evil)},
			"code_challenge_method": {"S256"},
		})
		if p.status != http.StatusSeeOther {
			// Refusing the tampered form outright keeps the parameters
			// server-side too; it must not redirect anywhere, though.
			wantNoCode(t, p, "tampered consent form")
			if loc := p.header.Get("Location"); loc != "" && !strings.HasPrefix(loc, redirectURI) {
				t.Fatalf("tampered consent form redirected to %q", loc)
			}
			return
		}
		loc, _ := url.Parse(p.header.Get("Location"))
		if !strings.HasPrefix(loc.String(), redirectURI+"?") || loc.Query().Get("state") != a.state {
			t.Fatalf("tampered consent form: Location %s, want %s with state %q", loc, redirectURI, a.state)
		}
		code := loc.Query().Get("code")
		if code == "" {
			t.Fatalf("no code: %s", loc)
		}
		if r := gw.exchange(t, code, evil, redirectURI); r.status == http.StatusOK {
			t.Fatalf("the code_challenge posted with the consent form was used:\n%s", r)
		}
		// The failed attempt may have burnt the code; get another one and
		// check its scope is the one asked for at authorize.
		a2 := newAuthRequest(conf)
		p2 := b.submit(b.consentPage(a2.url), url.Values{"decision": {"allow"}, "scope": {strings.Join(allScopes, " ")}})
		if p2.status != http.StatusSeeOther {
			t.Fatalf("consent with an extra scope field: want 303:\n%s", p2)
		}
		loc2, _ := url.Parse(p2.header.Get("Location"))
		r := gw.exchange(t, loc2.Query().Get("code"), a2.verifier, redirectURI)
		wantTokenResponse(t, r, "vessels:read")
	})
}
