package caddymodule

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/caddymodule/oauth"
	"github.com/tollgate/tollgate/caddymodule/store/storetest"
)

// exchange posts partner's exchange of code (client_secret_post, the
// registered redirect URI, testVerifier) with the parameters of change
// set over it; an empty value removes the parameter.
func exchange(t *testing.T, a *App, code string, change url.Values) *httptest.ResponseRecorder {
	t.Helper()
	form := url.Values{
		"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {a.clients["partner"].RedirectURIs[0]},
		"code_verifier": {testVerifier}, "client_id": {"partner"}, "client_secret": {testSecret},
	}
	return post(t, &Token{appRef{a}}, "/oauth/token", override(form, change), "")
}

// refresh posts partner's refresh of rt (client_secret_basic) with the
// parameters of change set over it.
func refresh(t *testing.T, a *App, rt string, change url.Values) *httptest.ResponseRecorder {
	t.Helper()
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
	return post(t, &Token{appRef{a}}, "/oauth/token", override(form, change), "partner:"+testSecret)
}

// override returns form with change set over it; an empty value removes
// the parameter.
func override(form, change url.Values) url.Values {
	for k, vs := range change {
		if len(vs) == 1 && vs[0] == "" {
			form.Del(k)
		} else {
			form[k] = vs
		}
	}
	return form
}

// otherLastByte is tok with its last character changed: the same grant, a
// token never issued.
func otherLastByte(tok string) string {
	last := byte('A')
	if tok[len(tok)-1] == 'A' {
		last = 'B'
	}
	return tok[:len(tok)-1] + string(last)
}

// tokens decodes a successful token response (RFC 6749 §5.1): 200, JSON,
// uncacheable, a Bearer access token.
func tokens(t *testing.T, w *httptest.ResponseRecorder) tokenResponse {
	t.Helper()
	if w.Code != http.StatusOK {
		t.Fatalf("status %d, want 200: %s", w.Code, w.Body)
	}
	h := w.Header()
	if ct := h.Get("Content-Type"); ct != "application/json;charset=UTF-8" || h.Get("Cache-Control") != "no-store" || h.Get("Pragma") != "no-cache" {
		t.Errorf("headers %v, want JSON, Cache-Control: no-store, Pragma: no-cache (RFC 6749 §5.1)", h)
	}
	var tr tokenResponse
	if err := json.Unmarshal(w.Body.Bytes(), &tr); err != nil {
		t.Fatal(err)
	}
	if tr.TokenType != "Bearer" || !strings.HasPrefix(tr.AccessToken, oauth.AccessPrefix) {
		t.Errorf("token response %+v, want a Bearer access token", tr)
	}
	return tr
}

// The code exchange with the right PKCE verifier, redirect URI and client
// returns a working pair with the consented scopes and the configured
// lifetime (RFC 6749 §4.1.3, §5.1; RFC 7636 §4.6).
func TestTokenCodeExchange(t *testing.T) {
	a, _ := newTestApp(t)
	tr := tokens(t, exchange(t, a, newCode(t, a, "partner", "profile:read", "seatime:read"), nil))
	if tr.ExpiresIn != 3600 || tr.Scope != "profile:read seatime:read" || !strings.HasPrefix(tr.RefreshToken, oauth.RefreshPrefix) {
		t.Fatalf("token response %+v, want expires_in 3600, both scopes, a refresh token", tr)
	}
	for _, tok := range []string{tr.AccessToken, tr.RefreshToken} {
		if !active(t, a, "partner", testSecret, tok) {
			t.Errorf("%s… from the exchange is not active", tok[:8])
		}
	}
}

// A code exchange that fails is an RFC 6749 §5.2 error. Once the store has
// handed the code out it is spent, whatever is wrong with the request: an
// attacker holding a stolen code gets one try, not one per guess at the
// verifier or redirect URI. A request refused before that (no verifier, a
// malformed one, a code that is not this one) leaves the code to the
// partner.
func TestTokenCodeExchangeRefusals(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, a *App, clk *storetest.Clock, code string) url.Values
		code   string
		spent  bool
	}{
		{"a wrong code_verifier is invalid_grant", func(*testing.T, *App, *storetest.Clock, string) url.Values {
			return url.Values{"code_verifier": {strings.Repeat("w", 43)}}
		}, oauth.InvalidGrant, true},
		{"a missing code_verifier is invalid_request", func(*testing.T, *App, *storetest.Clock, string) url.Values {
			return url.Values{"code_verifier": {""}}
		}, oauth.InvalidRequest, false},
		{"a code_verifier shorter than 43 characters is invalid_request", func(*testing.T, *App, *storetest.Clock, string) url.Values {
			return url.Values{"code_verifier": {testVerifier[:42]}}
		}, oauth.InvalidRequest, false},
		{"another redirect_uri is invalid_grant", func(*testing.T, *App, *storetest.Clock, string) url.Values {
			return url.Values{"redirect_uri": {"https://partner.example.com/cb/"}}
		}, oauth.InvalidGrant, true},
		{"a missing redirect_uri is invalid_grant", func(*testing.T, *App, *storetest.Clock, string) url.Values {
			return url.Values{"redirect_uri": {""}}
		}, oauth.InvalidGrant, true},
		{"another client presenting the code is invalid_grant", func(*testing.T, *App, *storetest.Clock, string) url.Values {
			return url.Values{"client_id": {"other"}, "client_secret": {otherSecret}}
		}, oauth.InvalidGrant, true},
		{"an expired code is invalid_grant", func(_ *testing.T, _ *App, clk *storetest.Clock, _ string) url.Values {
			clk.Advance(time.Minute)
			return nil
		}, oauth.InvalidGrant, true},
		{"a code never issued is invalid_grant", func(_ *testing.T, _ *App, _ *storetest.Clock, code string) url.Values {
			return url.Values{"code": {otherLastByte(code)}}
		}, oauth.InvalidGrant, false},
		{"a missing code is invalid_request", func(*testing.T, *App, *storetest.Clock, string) url.Values {
			return url.Values{"code": {""}}
		}, oauth.InvalidRequest, false},
		{"a refresh token is not a code", func(t *testing.T, a *App, _ *storetest.Clock, _ string) url.Values {
			return url.Values{"code": {issue(t, a, "partner", testSecret, "profile:read").RefreshToken}}
		}, oauth.InvalidGrant, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, clk := newTestApp(t)
			code := newCode(t, a, "partner", "profile:read")
			wantOAuthError(t, exchange(t, a, code, tc.change(t, a, clk, code)), http.StatusBadRequest, tc.code)
			w := exchange(t, a, code, nil)
			switch {
			case tc.spent:
				wantOAuthError(t, w, http.StatusBadRequest, oauth.InvalidGrant)
			case w.Code != http.StatusOK:
				t.Fatalf("the partner's own exchange after the refusal: %d %s, want 200", w.Code, w.Body)
			}
		})
	}
}

// A code presented twice is invalid_grant the second time, and the tokens
// issued from it are revoked: whoever replayed it may have stolen it (RFC
// 6749 §4.1.2; docs/partners.md D25).
func TestTokenReusedCodeRevokesItsTokens(t *testing.T) {
	a, _ := newTestApp(t)
	code := newCode(t, a, "partner", "profile:read")
	tr := tokens(t, exchange(t, a, code, nil))
	wantOAuthError(t, exchange(t, a, code, nil), http.StatusBadRequest, oauth.InvalidGrant)
	for _, tok := range []string{tr.AccessToken, tr.RefreshToken} {
		if active(t, a, "partner", testSecret, tok) {
			t.Errorf("%s… issued from the replayed code is still active", tok[:8])
		}
	}
}

// Requests the endpoint cannot act on get the RFC 6749 §5.2 code that says
// what is wrong.
func TestTokenMalformedRequests(t *testing.T) {
	a, _ := newTestApp(t)
	h := &Token{appRef{a}}
	for _, tc := range []struct {
		name   string
		ctype  string
		body   string
		status int
		code   string
	}{
		{"no grant_type", "application/x-www-form-urlencoded", "code=x", 400, oauth.InvalidRequest},
		{"client_credentials is not offered", "application/x-www-form-urlencoded", "grant_type=client_credentials", 400, oauth.UnsupportedGrantType},
		{"password is not offered", "application/x-www-form-urlencoded", "grant_type=password&username=alice&password=p", 400, oauth.UnsupportedGrantType},
		{"a repeated parameter", "application/x-www-form-urlencoded", "grant_type=refresh_token&refresh_token=a&refresh_token=b", 400, oauth.InvalidRequest},
		{"a JSON body from a client not registered for it", "application/json", `{"grant_type":"refresh_token","refresh_token":"x"}`, 400, oauth.InvalidRequest},
		{"a body that is not a form", "text/plain", "grant_type=refresh_token", 400, oauth.InvalidRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/oauth/token", strings.NewReader(tc.body))
			r.Header.Set("Content-Type", tc.ctype)
			r.SetBasicAuth("partner", testSecret)
			w := httptest.NewRecorder()
			if err := h.ServeHTTP(w, r, nil); err != nil {
				t.Fatal(err)
			}
			wantOAuthError(t, w, tc.status, tc.code)
		})
	}
	t.Run("GET is 405", func(t *testing.T) { wantPOSTOnly(t, h, "/oauth/token?grant_type=refresh_token") })
}

// A refresh rotates the pair (RFC 9700 §4.14.2): a new access and refresh
// token, the old pair revoked at once. Inside refresh_reuse_grace the old
// refresh token only gets invalid_grant, so that the loser of two racing
// refreshes does not cost the user the connection (docs/partners.md D36).
func TestTokenRefreshRotates(t *testing.T) {
	a, clk := newTestApp(t)
	old := issue(t, a, "partner", testSecret, "profile:read", "seatime:read")
	rotated := tokens(t, refresh(t, a, old.RefreshToken, nil))
	if rotated.AccessToken == old.AccessToken || rotated.RefreshToken == old.RefreshToken || rotated.RefreshToken == "" {
		t.Fatalf("refresh did not rotate both tokens: %+v", rotated)
	}
	if rotated.Scope != "profile:read seatime:read" || rotated.ExpiresIn != 3600 {
		t.Errorf("rotated %+v, want the grant's scopes and expires_in 3600", rotated)
	}
	for tok, want := range map[string]bool{old.AccessToken: false, old.RefreshToken: false, rotated.AccessToken: true, rotated.RefreshToken: true} {
		if active(t, a, "partner", testSecret, tok) != want {
			t.Errorf("%s… active = %v, want %v", tok[:8], !want, want)
		}
	}
	clk.Advance(time.Duration(a.RefreshReuseGrace) - time.Second)
	wantOAuthError(t, refresh(t, a, old.RefreshToken, nil), http.StatusBadRequest, oauth.InvalidGrant)
	if !active(t, a, "partner", testSecret, rotated.RefreshToken) {
		t.Fatal("the old refresh token inside the grace window revoked the new pair")
	}
	tokens(t, refresh(t, a, rotated.RefreshToken, nil))
}

// A rotated-out refresh token presented after the grace window is the sign
// of a stolen token: invalid_grant, and the whole grant is revoked, so the
// thief's and the partner's current pairs both stop working (RFC 9700
// §4.14.2; docs/partners.md D37).
func TestTokenRefreshReuseRevokesTheGrant(t *testing.T) {
	a, clk := newTestApp(t)
	old := issue(t, a, "partner", testSecret, "profile:read")
	rotated := tokens(t, refresh(t, a, old.RefreshToken, nil))
	clk.Advance(time.Duration(a.RefreshReuseGrace) + time.Second)
	w := refresh(t, a, old.RefreshToken, nil)
	wantOAuthError(t, w, http.StatusBadRequest, oauth.InvalidGrant)
	if !strings.Contains(w.Body.String(), "authorize again") {
		t.Errorf("the reuse answer does not tell the partner to send the user back: %s", w.Body)
	}
	for _, tok := range []string{rotated.AccessToken, rotated.RefreshToken} {
		if active(t, a, "partner", testSecret, tok) {
			t.Errorf("%s… survived the reuse of a rotated refresh token", tok[:8])
		}
	}
}

// A refresh may narrow the scope, never widen it (RFC 6749 §6), and only
// the client the token was issued to may use it; a refused refresh leaves
// the token working.
func TestTokenRefreshRefusals(t *testing.T) {
	for _, tc := range []struct {
		name   string
		token  func(tokenResponse) string // what is sent as refresh_token
		change url.Values
		client string // "id:secret", by client_secret_basic
		code   string
	}{
		{"a wider scope is invalid_scope", refreshToken, url.Values{"scope": {"profile:read seatime:read"}}, "partner:" + testSecret, oauth.InvalidScope},
		{"another client's refresh token is invalid_grant", refreshToken, nil, "other:" + otherSecret, oauth.InvalidGrant},
		{"a missing refresh_token is invalid_request", refreshToken, url.Values{"refresh_token": {""}}, "partner:" + testSecret, oauth.InvalidRequest},
		{"a refresh token never issued is invalid_grant", func(tr tokenResponse) string { return otherLastByte(tr.RefreshToken) }, nil, "partner:" + testSecret, oauth.InvalidGrant},
		{"an access token is not a refresh token", func(tr tokenResponse) string { return tr.AccessToken }, nil, "partner:" + testSecret, oauth.InvalidGrant},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, _ := newTestApp(t)
			tr := issue(t, a, "partner", testSecret, "profile:read")
			form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tc.token(tr)}}
			w := post(t, &Token{appRef{a}}, "/oauth/token", override(form, tc.change), tc.client)
			wantOAuthError(t, w, http.StatusBadRequest, tc.code)
			if !active(t, a, "partner", testSecret, tr.RefreshToken) {
				t.Fatal("the refused refresh revoked the token")
			}
		})
	}
	t.Run("a narrower scope is granted", func(t *testing.T) {
		a, _ := newTestApp(t)
		tr := issue(t, a, "partner", testSecret, "profile:read", "seatime:read")
		if got := tokens(t, refresh(t, a, tr.RefreshToken, url.Values{"scope": {"seatime:read"}})); got.Scope != "seatime:read" {
			t.Fatalf("scope %q, want seatime:read", got.Scope)
		}
	})
	t.Run("an expired refresh token is invalid_grant", func(t *testing.T) {
		a, clk := newTestApp(t)
		tr := issue(t, a, "partner", testSecret, "profile:read")
		clk.Advance(time.Duration(a.RefreshTokenLifetime))
		wantOAuthError(t, refresh(t, a, tr.RefreshToken, nil), http.StatusBadRequest, oauth.InvalidGrant)
	})
}

func refreshToken(tr tokenResponse) string { return tr.RefreshToken }

// A store that fails is 503 temporarily_unavailable with Retry-After, never
// invalid_grant, which would make the partner discard a good code or
// refresh token (docs/architecture.md §8.1).
func TestTokenStoreFailureIs503(t *testing.T) {
	a, _ := newTestApp(t)
	code := newCode(t, a, "partner", "profile:read")
	tr := issue(t, a, "partner", testSecret, "profile:read")
	closeStore(a)
	wantUnavailable(t, exchange(t, a, code, nil))
	wantUnavailable(t, refresh(t, a, tr.RefreshToken, nil))
}

// wantUnavailable checks the answer of an OAuth endpoint whose store
// failed: 503 temporarily_unavailable with Retry-After (RFC 6749 §5.2,
// docs/architecture.md §8.1).
func wantUnavailable(t *testing.T, w *httptest.ResponseRecorder) {
	t.Helper()
	wantOAuthError(t, w, http.StatusServiceUnavailable, oauth.TemporarilyUnavailable)
	if ra := w.Header().Get("Retry-After"); ra != "5" {
		t.Errorf("503 with Retry-After %q, want 5", ra)
	}
}

// testVerifier is the PKCE code_verifier of the codes newCode makes.
var testVerifier = strings.Repeat("v", 43)

// newCode runs a consent of alice to client, with the S256 challenge of
// testVerifier and the client's first redirect URI, and returns the code.
func newCode(t testing.TB, a *App, client string, scopes ...string) string {
	t.Helper()
	code, err := a.grantCode(t.Context(), &pending{
		ClientID: client, RedirectURI: a.clients[client].RedirectURIs[0], Scopes: scopes,
		Challenge: oauth.S256(testVerifier), Subject: "alice",
	})
	if err != nil {
		t.Fatal(err)
	}
	return code
}

// issue runs a consent and the token endpoint's code exchange for client
// and alice, and returns the token response.
func issue(t testing.TB, a *App, client, secret string, scopes ...string) tokenResponse {
	t.Helper()
	w := post(t, &Token{appRef{a}}, "/oauth/token", url.Values{
		"grant_type": {"authorization_code"}, "code": {newCode(t, a, client, scopes...)},
		"redirect_uri": {a.clients[client].RedirectURIs[0]}, "code_verifier": {testVerifier},
		"client_id": {client}, "client_secret": {secret},
	}, "")
	if w.Code != http.StatusOK {
		t.Fatalf("code exchange: %d %s", w.Code, w.Body)
	}
	var tr tokenResponse
	if err := json.Unmarshal(w.Body.Bytes(), &tr); err != nil {
		t.Fatal(err)
	}
	return tr
}
