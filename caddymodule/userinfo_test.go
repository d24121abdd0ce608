package caddymodule

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/tollgate/tollgate/caddymodule/oauth"
)

// staticAlice is a `users { … }` authenticator that knows alice's profile.
func staticAlice(t *testing.T) *StaticUsers {
	t.Helper()
	s := &StaticUsers{Users: []StaticUser{{
		Username: "alice",
		// bcrypt of alice-password, cost 4 to keep the test fast.
		Password: "$2a$04$NSLTbz.nzjk3k9RqYO2uDuMuhUGcgPOQGXuhu1ZtiqfTeNzkLxg2C",
		Name:     "Alice Mariner", Role: "Captain", Country: "GB", Picture: "https://img.example.com/alice.jpg",
	}}}
	if err := s.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	return s
}

// userinfo sends r to the userinfo endpoint of a.
func userinfo(t *testing.T, a *App, r *http.Request) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	if err := (&UserInfo{appRef: appRef{a}, route: userinfoRoute()}).ServeHTTP(w, r, nil); err != nil {
		t.Fatal(err)
	}
	return w
}

const aliceClaims = `{"country":"GB","name":"Alice Mariner","picture":"https://img.example.com/alice.jpg","role":"Captain","sub":"alice"}`

// A token with profile:read gets the user's claims, by GET or POST, as an
// uncacheable JSON object carrying the budget headers of any API call
// (docs/partners.md D11, D48).
func TestUserInfoReturnsTheUsersClaims(t *testing.T) {
	a, _ := newTestApp(t)
	a.users = staticAlice(t)
	tr := issue(t, a, "partner", testSecret, "profile:read")
	for i, method := range []string{http.MethodGet, http.MethodPost} {
		w := userinfo(t, a, apiRequest(method, "/oauth/userinfo", tr.AccessToken))
		if w.Code != http.StatusOK || strings.TrimSpace(w.Body.String()) != aliceClaims {
			t.Fatalf("%s: %d %s, want 200 %s", method, w.Code, w.Body, aliceClaims)
		}
		h := w.Header()
		if h.Get("Content-Type") != "application/json" || h.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: headers %v, want JSON, no-store", method, h)
		}
		if h.Get("X-RateLimit-Limit") != "2" || h.Get("X-RateLimit-Remaining") != itoa(int64(1-i)) {
			t.Errorf("%s: budget headers %v, want limit 2, remaining %d", method, h, 1-i)
		}
	}
}

// With an authenticator that cannot look the user up again (a preceding
// Caddy auth handler, `users caddy_auth`), the claims are the profile
// snapshot taken at consent.
func TestUserInfoFallsBackToTheProfileTakenAtConsent(t *testing.T) {
	a, _ := newTestApp(t)
	a.users = CaddyAuthUsers{}
	code, err := a.grantCode(t.Context(), &pending{
		ClientID: "partner", RedirectURI: "https://partner.example.com/cb", Scopes: []string{"profile:read"},
		Challenge: oauth.S256(testVerifier), Subject: "alice",
		Profile: map[string]string{"name": "Alice Mariner", "role": "Captain", "country": "GB", "picture": "https://img.example.com/alice.jpg"},
	})
	if err != nil {
		t.Fatal(err)
	}
	tr := tokens(t, exchange(t, a, code, nil))
	w := userinfo(t, a, apiRequest(http.MethodGet, "/oauth/userinfo", tr.AccessToken))
	if w.Code != http.StatusOK || strings.TrimSpace(w.Body.String()) != aliceClaims {
		t.Fatalf("%d %s, want 200 %s", w.Code, w.Body, aliceClaims)
	}
}

// UserInfo refuses like any API route (RFC 6750 §3): no or a bad token is
// 401, a token without profile:read is 403 naming it, a spent budget 429,
// a failing store 503.
func TestUserInfoRefusals(t *testing.T) {
	for _, tc := range []struct {
		name    string
		request func(t *testing.T, a *App, tr tokenResponse) *http.Request
		status  int
		code    string
		scope   string
	}{
		{"no token is a bare challenge", func(*testing.T, *App, tokenResponse) *http.Request {
			return apiRequest(http.MethodGet, "/oauth/userinfo", "")
		}, 401, "", ""},
		{"a token never issued is invalid_token", func(_ *testing.T, _ *App, tr tokenResponse) *http.Request {
			return apiRequest(http.MethodGet, "/oauth/userinfo", otherLastByte(tr.AccessToken))
		}, 401, "invalid_token", ""},
		{"a revoked token is invalid_token", func(t *testing.T, a *App, tr tokenResponse) *http.Request {
			wantRevoked(t, revoke(t, a, tr.RefreshToken))
			return apiRequest(http.MethodGet, "/oauth/userinfo", tr.AccessToken)
		}, 401, "invalid_token", ""},
		{"a token without profile:read is insufficient_scope", func(t *testing.T, a *App, _ tokenResponse) *http.Request {
			return apiRequest(http.MethodGet, "/oauth/userinfo", issue(t, a, "partner", testSecret, "seatime:read").AccessToken)
		}, 403, "insufficient_scope", "profile:read"},
		{"a spent budget is 429", func(t *testing.T, a *App, tr tokenResponse) *http.Request {
			for range 2 {
				if w := userinfo(t, a, apiRequest(http.MethodGet, "/oauth/userinfo", tr.AccessToken)); w.Code != http.StatusOK {
					t.Fatalf("within budget: %d %s", w.Code, w.Body)
				}
			}
			return apiRequest(http.MethodGet, "/oauth/userinfo", tr.AccessToken)
		}, 429, "rate_limited", ""},
		{"PUT is 405", func(_ *testing.T, _ *App, tr tokenResponse) *http.Request {
			return apiRequest(http.MethodPut, "/oauth/userinfo", tr.AccessToken)
		}, 405, "", ""},
		{"a store that fails is 503, never 401", func(_ *testing.T, a *App, tr tokenResponse) *http.Request {
			closeStore(a)
			return apiRequest(http.MethodGet, "/oauth/userinfo", tr.AccessToken)
		}, 503, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, _ := newTestApp(t)
			a.users = staticAlice(t)
			tr := issue(t, a, "partner", testSecret, "profile:read")
			w := userinfo(t, a, tc.request(t, a, tr))
			wantProblem(t, w, tc.status, tc.code, tc.scope)
			if strings.Contains(w.Body.String(), "Alice") {
				t.Errorf("the refusal shows the profile: %s", w.Body)
			}
			switch tc.status {
			case http.StatusMethodNotAllowed:
				if allow := w.Header().Get("Allow"); allow != "GET, HEAD, POST" {
					t.Errorf("Allow %q, want GET, HEAD, POST", allow)
				}
			case http.StatusServiceUnavailable:
				if w.Header().Get("Retry-After") != "5" {
					t.Errorf("503 with Retry-After %q, want 5", w.Header().Get("Retry-After"))
				}
			}
		})
	}
}
