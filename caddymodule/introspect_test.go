package caddymodule

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/caddymodule/oauth"
)

// introspect asks the introspection endpoint about token as partner, by
// client_secret_post.
func introspect(t *testing.T, a *App, token string) *httptest.ResponseRecorder {
	t.Helper()
	return post(t, &Introspect{appRef{a}}, "/oauth/introspect",
		url.Values{"token": {token}, "client_id": {"partner"}, "client_secret": {testSecret}}, "")
}

// active reports whether the introspection endpoint, asked by the token's
// client, calls token active.
func active(t *testing.T, a *App, client, secret, token string) bool {
	t.Helper()
	w := post(t, &Introspect{appRef{a}}, "/oauth/introspect", url.Values{"token": {token}}, client+":"+secret)
	if w.Code != http.StatusOK {
		t.Fatalf("introspection: %d %s", w.Code, w.Body)
	}
	return strings.Contains(w.Body.String(), `"active":true`)
}

// wantIntrospection checks a 200 introspection answer, uncacheable, whose
// body is exactly want.
func wantIntrospection(t *testing.T, w *httptest.ResponseRecorder, want string) {
	t.Helper()
	if w.Code != http.StatusOK {
		t.Fatalf("status %d, want 200 (RFC 7662 §2.2): %s", w.Code, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	if cc := w.Header().Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q, want no-store (RFC 7662 §4)", cc)
	}
	if got := strings.TrimSpace(w.Body.String()); got != want {
		t.Fatalf("body\n%s\nwant exactly\n%s", got, want)
	}
}

// A client's own live tokens are active, with what the store knows of them
// (RFC 7662 §2.2), by either client authentication method.
func TestIntrospectActiveTokens(t *testing.T) {
	a, clk := newTestApp(t)
	tr := issue(t, a, "partner", testSecret, "profile:read", "seatime:read")
	exp := clk.Now().Add(time.Hour).Unix()
	wantIntrospection(t, introspect(t, a, tr.AccessToken),
		`{"active":true,"scope":"profile:read seatime:read","client_id":"partner","sub":"alice","exp":`+itoa(exp)+`,"token_type":"Bearer","iss":"https://api.example.com"}`)

	// client_secret_basic, with a (wrong) hint, which is only a hint.
	w := post(t, &Introspect{appRef{a}}, "/oauth/introspect",
		url.Values{"token": {tr.RefreshToken}, "token_type_hint": {"access_token"}}, "partner:"+testSecret)
	rexp := clk.Now().Add(90 * 24 * time.Hour).Unix()
	// A refresh token has no token_type (RFC 6749 §5.1 types access tokens).
	wantIntrospection(t, w,
		`{"active":true,"scope":"profile:read seatime:read","client_id":"partner","sub":"alice","exp":`+itoa(rexp)+`,"iss":"https://api.example.com"}`)
	if strings.Contains(w.Body.String(), tr.RefreshToken) || strings.Contains(w.Body.String(), oauth.Digest(tr.RefreshToken)) {
		t.Fatal("the answer holds the token or its digest")
	}
}

// Everything that is not a live token of the asking client gets exactly
// {"active":false} and 200 (RFC 7662 §2.2), with nothing else said about
// it (§4: another client's token is indistinguishable from no token).
func TestIntrospectInactiveTokens(t *testing.T) {
	a, clk := newTestApp(t)
	const inactive = `{"active":false}`
	mine := issue(t, a, "partner", testSecret, "profile:read")
	theirs := issue(t, a, "other", otherSecret, "profile:read")

	for name, tok := range map[string]string{
		"unknown, well-formed": oauth.AccessPrefix + mine.AccessToken[4:26] + strings.Repeat("A", 43),
		"malformed":            "not-a-token",
		"one byte longer":      mine.AccessToken + "x",
		"another client's":     theirs.AccessToken,
		"another client's rt":  theirs.RefreshToken,
		"a code-shaped token":  oauth.CodePrefix + mine.AccessToken[4:],
	} {
		t.Run(name, func(t *testing.T) { wantIntrospection(t, introspect(t, a, tok), inactive) })
	}

	t.Run("rotated refresh token and its access token", func(t *testing.T) {
		tr := issue(t, a, "partner", testSecret, "profile:read")
		w := post(t, &Token{appRef{a}}, "/oauth/token", url.Values{
			"grant_type": {"refresh_token"}, "refresh_token": {tr.RefreshToken},
		}, "partner:"+testSecret)
		if w.Code != http.StatusOK {
			t.Fatalf("refresh: %d %s", w.Code, w.Body)
		}
		wantIntrospection(t, introspect(t, a, tr.RefreshToken), inactive)
		wantIntrospection(t, introspect(t, a, tr.AccessToken), inactive)
	})

	t.Run("revoked", func(t *testing.T) {
		tr := issue(t, a, "partner", testSecret, "profile:read")
		w := post(t, &Revoke{appRef{a}}, "/oauth/revoke", url.Values{"token": {tr.RefreshToken}}, "partner:"+testSecret)
		if w.Code != http.StatusOK {
			t.Fatalf("revoke: %d %s", w.Code, w.Body)
		}
		// Revoking the refresh token ends the grant, so the access token too.
		wantIntrospection(t, introspect(t, a, tr.AccessToken), inactive)
		wantIntrospection(t, introspect(t, a, tr.RefreshToken), inactive)
	})

	t.Run("expired", func(t *testing.T) {
		tr := issue(t, a, "partner", testSecret, "profile:read")
		clk.Advance(time.Hour - time.Second)
		if body := introspect(t, a, tr.AccessToken).Body.String(); !strings.Contains(body, `"active":true`) {
			t.Fatalf("one second before expiry: %s", body)
		}
		clk.Advance(time.Second)
		wantIntrospection(t, introspect(t, a, tr.AccessToken), inactive)
		// The refresh token lives on.
		if body := introspect(t, a, tr.RefreshToken).Body.String(); !strings.Contains(body, `"active":true`) {
			t.Fatalf("refresh token after the access token expired: %s", body)
		}
	})
}

// Introspection is client-authenticated like the token endpoint (RFC 7662
// §2.1) and answers RFC 6749 §5.2 errors: a wrong secret gets 401
// invalid_client, and says nothing about the token.
func TestIntrospectRequiresClientAuthentication(t *testing.T) {
	a, _ := newTestApp(t)
	tr := issue(t, a, "partner", testSecret, "profile:read")
	h := &Introspect{appRef{a}}
	for _, tc := range []struct {
		name      string
		form      url.Values
		basic     string
		challenge bool
	}{
		{"wrong secret (post)", url.Values{"client_id": {"partner"}, "client_secret": {"wrong"}}, "", false},
		{"wrong secret (basic)", url.Values{}, "partner:wrong", true},
		{"other client's secret", url.Values{"client_id": {"partner"}, "client_secret": {otherSecret}}, "", false},
		{"unknown client", url.Values{"client_id": {"nobody"}, "client_secret": {testSecret}}, "", false},
		{"no credentials", url.Values{}, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.form.Set("token", tr.AccessToken)
			w := post(t, h, "/oauth/introspect", tc.form, tc.basic)
			wantOAuthError(t, w, http.StatusUnauthorized, oauth.InvalidClient)
			if got := w.Header().Get("WWW-Authenticate") != ""; got != tc.challenge {
				t.Errorf("WWW-Authenticate present = %v, want %v (RFC 6749 §5.2: with Basic)", got, tc.challenge)
			}
			if strings.Contains(w.Body.String(), "active") {
				t.Errorf("a failed authentication says something about the token: %s", w.Body)
			}
		})
	}

	t.Run("no token", func(t *testing.T) {
		w := post(t, h, "/oauth/introspect", url.Values{}, "partner:"+testSecret)
		wantOAuthError(t, w, http.StatusBadRequest, oauth.InvalidRequest)
	})
	t.Run("GET", func(t *testing.T) { wantPOSTOnly(t, h, "/oauth/introspect?token="+tr.AccessToken) })
}

// Introspecting a token is not calling the API: it costs the grant none of
// its budget (README, Rate limits). The partner's budget is 2/1h.
func TestIntrospectSpendsNoBudget(t *testing.T) {
	a, _ := newTestApp(t)
	tr := issue(t, a, "partner", testSecret, "profile:read")
	for range 5 {
		if body := introspect(t, a, tr.AccessToken).Body.String(); !strings.Contains(body, `"active":true`) {
			t.Fatalf("introspection: %s", body)
		}
	}
	r := httptest.NewRequest(http.MethodGet, "/oauth/userinfo", nil)
	r.Header.Set("Authorization", "Bearer "+tr.AccessToken)
	c, aerr := a.authenticateBearer(r)
	if aerr != nil {
		t.Fatalf("API call after introspection: %+v", aerr)
	}
	if !c.Rate.Allowed || c.Rate.Remaining != 1 {
		t.Fatalf("after 5 introspections and 1 API call: remaining %d of %d, want 1 (introspection spent budget)", c.Rate.Remaining, c.Rate.Limit)
	}
}

// A store that fails answers 503 temporarily_unavailable, never
// active:false, which would make a resource server drop a good token.
func TestIntrospectStoreFailureIsNotInactive(t *testing.T) {
	a, _ := newTestApp(t)
	tr := issue(t, a, "partner", testSecret, "profile:read")
	closeStore(a)
	wantUnavailable(t, introspect(t, a, tr.AccessToken))
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// A client registered with a token_header (the Trans style) must send it
// to the introspection endpoint too, as to the token and revocation
// endpoints (README, Partner styles).
func TestIntrospectRequiresTheClientsTokenHeader(t *testing.T) {
	a, _ := newTestApp(t)
	tr := issue(t, a, "partner", testSecret, "profile:read")
	requireAPIKey(t, a)
	for _, tc := range []struct {
		header string
		active bool
	}{{"", false}, {"wrong-key", false}, {"partner-api-key", true}} {
		form := url.Values{"token": {tr.AccessToken}, "client_id": {"partner"}, "client_secret": {testSecret}}
		r := httptest.NewRequest(http.MethodPost, "/oauth/introspect", strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if tc.header != "" {
			r.Header.Set("Api-key", tc.header)
		}
		w := httptest.NewRecorder()
		if err := (&Introspect{appRef{a}}).ServeHTTP(w, r, nil); err != nil {
			t.Fatal(err)
		}
		if !tc.active {
			wantOAuthError(t, w, http.StatusUnauthorized, oauth.InvalidClient)
		} else if !strings.Contains(w.Body.String(), `"active":true`) {
			t.Fatalf("with the right Api-key: %d %s", w.Code, w.Body)
		}
	}
}
