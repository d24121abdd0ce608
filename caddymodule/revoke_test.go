package caddymodule

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/tollgate/tollgate/caddymodule/oauth"
)

// revoke asks the revocation endpoint to revoke token as partner, by
// client_secret_basic.
func revoke(t *testing.T, a *App, token string) *httptest.ResponseRecorder {
	t.Helper()
	return post(t, &Revoke{appRef{a}}, "/oauth/revoke", url.Values{"token": {token}}, "partner:"+testSecret)
}

// wantRevoked checks an RFC 7009 §2.2 success: 200 with no body,
// uncacheable.
func wantRevoked(t *testing.T, w *httptest.ResponseRecorder) {
	t.Helper()
	if w.Code != http.StatusOK || w.Body.Len() != 0 {
		t.Fatalf("%d %q, want 200 with no body (RFC 7009 §2.2)", w.Code, w.Body)
	}
	if cc := w.Header().Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", cc)
	}
}

// Revoking either token of a pair, by either client authentication method
// and whatever the hint, ends the user's whole grant to that client: every
// pair of it stops working at once, so one call from a partner's
// "disconnect" button tears the connection down (docs/partners.md D38,
// D39). The user's grant to another client is untouched.
func TestRevokeEndsTheWholeGrant(t *testing.T) {
	for _, tc := range []struct {
		name  string
		token func(tokenResponse) string
		form  url.Values
		basic string
	}{
		{"access token, client_secret_basic", func(tr tokenResponse) string { return tr.AccessToken }, url.Values{}, "partner:" + testSecret},
		{"refresh token, client_secret_basic", func(tr tokenResponse) string { return tr.RefreshToken }, url.Values{}, "partner:" + testSecret},
		{"access token, client_secret_post", func(tr tokenResponse) string { return tr.AccessToken },
			url.Values{"client_id": {"partner"}, "client_secret": {testSecret}}, ""},
		{"refresh token with a wrong hint", func(tr tokenResponse) string { return tr.RefreshToken },
			url.Values{"token_type_hint": {"access_token"}}, "partner:" + testSecret},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, _ := newTestApp(t)
			first := issue(t, a, "partner", testSecret, "profile:read")
			second := issue(t, a, "partner", testSecret, "profile:read", "seatime:read")
			elsewhere := issue(t, a, "other", otherSecret, "profile:read")
			tc.form.Set("token", tc.token(first))
			wantRevoked(t, post(t, &Revoke{appRef{a}}, "/oauth/revoke", tc.form, tc.basic))
			for _, tok := range []string{first.AccessToken, first.RefreshToken, second.AccessToken, second.RefreshToken} {
				if active(t, a, "partner", testSecret, tok) {
					t.Errorf("%s… is still active after the grant was revoked", tok[:8])
				}
			}
			w := refresh(t, a, first.RefreshToken, nil)
			wantOAuthError(t, w, http.StatusBadRequest, oauth.InvalidGrant)
			if !active(t, a, "other", otherSecret, elsewhere.AccessToken) {
				t.Error("revoking the grant to partner revoked the user's grant to another client")
			}
		})
	}
}

// Revoking a token the gateway does not hold is 200 and does nothing
// (RFC 7009 §2.2: "invalid tokens do not cause an error response");
// docs/partners.md D40.
func TestRevokeUnknownTokenIs200(t *testing.T) {
	a, clk := newTestApp(t)
	expired := issue(t, a, "other", otherSecret, "profile:read")
	clk.Advance(time.Hour)
	live := issue(t, a, "partner", testSecret, "profile:read")
	for name, tok := range map[string]string{
		"malformed":                 "not-a-token",
		"never issued":              otherLastByte(live.AccessToken),
		"shaped like a code":        oauth.CodePrefix + live.AccessToken[len(oauth.AccessPrefix):],
		"another client's, expired": expired.AccessToken,
		"empty after the prefix":    oauth.RefreshPrefix,
		"one byte longer":           live.RefreshToken + "x",
		"access token, too short":   live.AccessToken[:len(live.AccessToken)-1],
	} {
		t.Run(name, func(t *testing.T) {
			w := post(t, &Revoke{appRef{a}}, "/oauth/revoke", url.Values{"token": {tok}}, "other:"+otherSecret)
			wantRevoked(t, w)
			if !active(t, a, "partner", testSecret, live.AccessToken) {
				t.Fatal("revoking an unknown token revoked a live one")
			}
		})
	}
}

// A partner's "disconnect" sends the access token it stored, which has
// usually expired by then: as long as it is still its grant's current
// pair, revoking it ends the connection, refresh token included
// (docs/partners.md D39). A token rotated out since names nothing, and
// revoking it leaves the new pair alone.
func TestRevokeExpiredAccessTokenEndsTheConnection(t *testing.T) {
	a, clk := newTestApp(t)
	tr := issue(t, a, "partner", testSecret, "profile:read")
	clk.Advance(time.Hour) // the access token has expired; the refresh token lives
	if active(t, a, "partner", testSecret, tr.AccessToken) {
		t.Fatal("the access token is still active an hour later; the test needs it expired")
	}
	wantRevoked(t, revoke(t, a, tr.AccessToken))
	wantOAuthError(t, refresh(t, a, tr.RefreshToken, nil), http.StatusBadRequest, oauth.InvalidGrant)

	tr = issue(t, a, "partner", testSecret, "profile:read")
	w := refresh(t, a, tr.RefreshToken, nil)
	if w.Code != http.StatusOK {
		t.Fatalf("refresh: %d %s", w.Code, w.Body)
	}
	var next tokenResponse
	if err := json.Unmarshal(w.Body.Bytes(), &next); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Hour)
	wantRevoked(t, revoke(t, a, tr.AccessToken)) // rotated out: names nothing
	if w := refresh(t, a, next.RefreshToken, nil); w.Code != http.StatusOK {
		t.Fatalf("revoking a rotated-out token ended the new pair: refresh %d %s", w.Code, w.Body)
	}
}

// A client may revoke only its own tokens (RFC 7009 §2.1); a request that
// is refused changes nothing.
func TestRevokeRefusals(t *testing.T) {
	for _, tc := range []struct {
		name    string
		request func(t *testing.T, a *App, tr tokenResponse) *httptest.ResponseRecorder
		status  int
		code    string
	}{
		{"another client's token is unauthorized_client", func(t *testing.T, a *App, tr tokenResponse) *httptest.ResponseRecorder {
			return post(t, &Revoke{appRef{a}}, "/oauth/revoke", url.Values{"token": {tr.AccessToken}}, "other:"+otherSecret)
		}, http.StatusBadRequest, oauth.UnauthorizedClient},
		{"no token is invalid_request", func(t *testing.T, a *App, _ tokenResponse) *httptest.ResponseRecorder {
			return post(t, &Revoke{appRef{a}}, "/oauth/revoke", url.Values{}, "partner:"+testSecret)
		}, http.StatusBadRequest, oauth.InvalidRequest},
		{"a token in the query is not read", func(t *testing.T, a *App, tr tokenResponse) *httptest.ResponseRecorder {
			return post(t, &Revoke{appRef{a}}, "/oauth/revoke?token="+url.QueryEscape(tr.AccessToken), url.Values{}, "partner:"+testSecret)
		}, http.StatusBadRequest, oauth.InvalidRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, _ := newTestApp(t)
			tr := issue(t, a, "partner", testSecret, "profile:read")
			wantOAuthError(t, tc.request(t, a, tr), tc.status, tc.code)
			if !active(t, a, "partner", testSecret, tr.AccessToken) {
				t.Fatal("a refused revocation revoked the token")
			}
		})
	}
	t.Run("GET is 405", func(t *testing.T) {
		a, _ := newTestApp(t)
		tr := issue(t, a, "partner", testSecret, "profile:read")
		wantPOSTOnly(t, &Revoke{appRef{a}}, "/oauth/revoke?token="+url.QueryEscape(tr.AccessToken))
		if !active(t, a, "partner", testSecret, tr.AccessToken) {
			t.Fatal("a GET revoked the token")
		}
	})
}

// A store that fails is 503 temporarily_unavailable with Retry-After, not
// the 200 of an unknown token: the partner must retry, or it would believe
// the user disconnected while the tokens still work (docs/architecture.md
// §8.1).
func TestRevokeStoreFailureIs503(t *testing.T) {
	a, _ := newTestApp(t)
	tr := issue(t, a, "partner", testSecret, "profile:read")
	closeStore(a)
	wantUnavailable(t, revoke(t, a, tr.AccessToken))
}
