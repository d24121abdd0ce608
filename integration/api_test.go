package integration

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// apiRoutes are Caddyfile.example's API routes: the partner path, the
// scope it needs and the legacy resource it is rewritten to.
var apiRoutes = []struct {
	path, scope, resource string
}{
	{"/v1/me", "profile:read", "profile"},
	{"/v1/me/sea-time", "seatime:read", "seatime"},
	{"/v1/me/vessels", "vessels:read", "vessels"},
}

// TestAPIForwardsIdentityNotCredentials calls every API route with a good
// token, with and without a forged identity header, and checks what the
// upstream received: the rewritten path with the user id, X-Legacy-User
// set by the gateway alone, and no trace of the token.
//
// The upstream receives the rewritten path /legacy/users/alice/seatime and
// X-Legacy-User: alice; the Authorization header never reaches it, and a
// spoofed X-Legacy-User: mallory sent by the client is stripped and
// replaced (docs/partners.md D12; docs/architecture.md §5.1). README
// "Configuration reference", tollgate_protect: "it removes Authorization,
// every identity header it may set and the gateway's tollgate_ cookies
// from the incoming request before anything is forwarded".
func TestAPIForwardsIdentityNotCredentials(t *testing.T) {
	forEachStoreWithUpstream(t, gatewayConfig{}, func(t *testing.T, gw *gateway, up *upstream) {
		tok, _ := obtainTokens(t, gw, allScopes...)
		for _, rt := range apiRoutes {
			for _, tc := range []struct {
				name  string
				extra http.Header
			}{
				{"no identity header", nil},
				{"spoofed X-Legacy-User", http.Header{"X-Legacy-User": {"mallory"}}},
				{"spoofed X-Legacy-User twice", http.Header{"X-Legacy-User": {"mallory", "alice"}}},
				{"spoofed x-legacy-user in lower case", http.Header{"x-legacy-user": {"mallory"}}},
			} {
				t.Run(rt.path+"/"+tc.name, func(t *testing.T) {
					n := up.count()
					r := gw.call(t, rt.path, bearer(tok.AccessToken), tc.extra)
					if r.status != http.StatusOK {
						t.Fatalf("want 200 from the upstream:\n%s", r)
					}
					body := r.json(t)
					if body["user_id"] != username || body["resource"] != rt.resource || body["record_updated_at"] != "2026-11-01T08:00:00Z" {
						t.Fatalf("response is not the upstream's record of %s/%s:\n%s", username, rt.resource, r)
					}
					got := up.since(n)
					if len(got) != 1 {
						t.Fatalf("the upstream received %d requests, want 1", len(got))
					}
					u := got[0]
					want := "/legacy/users/" + username + "/" + rt.resource
					if u.Method != http.MethodGet || u.Path != want {
						t.Errorf("upstream received %s %s, want GET %s (rewrite * /legacy/users/{http.auth.user.id}/%s)", u.Method, u.Path, want, rt.resource)
					}
					if v := u.Header.Values("X-Legacy-User"); len(v) != 1 || v[0] != username {
						t.Errorf("upstream X-Legacy-User = %q, want exactly [%q]: the gateway's, never the client's", v, username)
					}
					if v := u.Header.Values("Authorization"); len(v) != 0 {
						t.Errorf("upstream received an Authorization header (%d value(s)): the token must never reach it", len(v))
					}
					seen := u.String()
					for _, secret := range []string{tok.AccessToken, tok.RefreshToken, "mallory"} {
						if strings.Contains(seen, secret) {
							t.Errorf("upstream request carries %q:\n%s", redactToken(secret), redactTokens(seen, tok.AccessToken, tok.RefreshToken))
						}
					}
				})
			}
		}
	})
}

// redactToken shortens a token for a failure message.
func redactToken(s string) string {
	if len(s) > 12 {
		return s[:8] + "…"
	}
	return s
}

// redactTokens shortens every occurrence of the tokens in s.
func redactTokens(s string, tokens ...string) string {
	for _, tok := range tokens {
		if tok != "" {
			s = strings.ReplaceAll(s, tok, redactToken(tok))
		}
	}
	return s
}

// TestAPIErrorsAreChallengesWithProblemDetails sends each kind of unusable
// credentials to every API route and checks the status, the exact
// challenge and the problem document, and that the upstream was never
// called.
//
// The errors of API routes (README "What partners get"; docs/architecture.md
// §5.1): no token → 401 with WWW-Authenticate: Bearer realm="tollgate" (no
// error attribute); bad, expired or revoked token → 401 with
// error="invalid_token"; missing scope → 403 with
// error="insufficient_scope" and the scope attribute (RFC 6750 §3); every
// body an RFC 9457 application/problem+json document (type, title, status,
// detail), never a stack trace (docs/partners.md D53). RFC 6750 §3.1: a
// request that "attempted using an unsupported authentication method"
// (Basic) gets no error code. RFC 6750 §2.1 is the only way a token is
// accepted (bearer.go: tokens in query strings "end up in logs and Referer
// headers", §5.3).
// Expired: TestAPIExpiredTokenIsInvalidToken; revoked:
// TestAPIRevokedTokenFailsOnNextRequest.
func TestAPIErrorsAreChallengesWithProblemDetails(t *testing.T) {
	forEachStoreWithUpstream(t, gatewayConfig{}, func(t *testing.T, gw *gateway, up *upstream) {
		all, _ := obtainTokens(t, gw, allScopes...)
		profileOnly, _ := obtainTokens(t, gw, "profile:read")
		noProfile, _ := obtainTokens(t, gw, "seatime:read", "vessels:read")
		secrets := []string{all.AccessToken, all.RefreshToken, profileOnly.AccessToken, noProfile.AccessToken}

		for _, rt := range apiRoutes {
			for _, tc := range []struct {
				name          string
				path          string // "" for the route's own
				authorization string
				status        int
				code          string
			}{
				{"no token", "", "", http.StatusUnauthorized, ""},
				{"Basic credentials", "", "Basic " + "YWxpY2U6YWxpY2UtcGFzc3dvcmQ=", http.StatusUnauthorized, ""},
				{"token in the query string", "?access_token=" + all.AccessToken, "", http.StatusUnauthorized, ""},
				{"garbage token", "", "Bearer not-a-token", http.StatusUnauthorized, "invalid_token"},
				{"access token with a character changed", "", bearer(flipLast(all.AccessToken)), http.StatusUnauthorized, "invalid_token"},
				{"refresh token as bearer", "", bearer(all.RefreshToken), http.StatusUnauthorized, "invalid_token"},
			} {
				t.Run(rt.path+"/"+tc.name, func(t *testing.T) {
					n := up.count()
					r := gw.call(t, rt.path+tc.path, tc.authorization, nil)
					wantChallenge(t, r.response, tc.status, tc.code, "", secrets...)
					wantUpstreamUntouched(t, up, n, "for a refused request")
				})
			}
		}

		for _, tc := range []struct {
			path, token, scope string
		}{
			{"/v1/me/sea-time", profileOnly.AccessToken, "seatime:read"},
			{"/v1/me/vessels", profileOnly.AccessToken, "vessels:read"},
			{"/v1/me", noProfile.AccessToken, "profile:read"},
		} {
			t.Run(tc.path+"/missing "+tc.scope, func(t *testing.T) {
				n := up.count()
				r := gw.call(t, tc.path, bearer(tc.token), nil)
				wantChallenge(t, r.response, http.StatusForbidden, "insufficient_scope", tc.scope, secrets...)
				wantUpstreamUntouched(t, up, n, "for a token without the route's scope")
			})
		}

		// Control: the same routes answer a good token, so the refusals
		// above were the gateway's, not a broken upstream's.
		for _, rt := range apiRoutes {
			if r := gw.call(t, rt.path, bearer(all.AccessToken), nil); r.status != http.StatusOK {
				t.Fatalf("control: want 200:\n%s", r)
			}
		}
	})
}

// TestAPIExpiredTokenIsInvalidToken lets an access token outlive a 2 s
// access_token_lifetime and calls an API route with it.
//
// A bad, expired or revoked token → 401 with error="invalid_token"
// (README "What partners get"); access tokens live 1 hour, after which the
// API answers invalid_token (docs/partners.md D31).
func TestAPIExpiredTokenIsInvalidToken(t *testing.T) {
	forEachStoreWithUpstream(t, gatewayConfig{accessTokenLifetime: "access_token_lifetime 2s"}, func(t *testing.T, gw *gateway, up *upstream) {
		tok, _ := obtainTokens(t, gw, allScopes...)
		if r := gw.call(t, "/v1/me/sea-time", bearer(tok.AccessToken), nil); r.status != http.StatusOK {
			t.Fatalf("within its lifetime: want 200:\n%s", r)
		}
		time.Sleep(time.Until(tok.Expiry) + 500*time.Millisecond)
		n := up.count()
		r := gw.call(t, "/v1/me/sea-time", bearer(tok.AccessToken), nil)
		wantChallenge(t, r.response, http.StatusUnauthorized, "invalid_token", "", tok.AccessToken)
		wantUpstreamUntouched(t, up, n, "with an expired token")
	})
}

// TestAPIRevokedTokenFailsOnNextRequest revokes the access token of one
// pair and the refresh token of another, each right after a successful API
// call, and checks the very next call with the access token is refused.
//
// A revoked token fails on the next request: revocation is instant, and
// after a disconnect every token issued to the client for that user stops
// working on the next request with invalid_token → 401 (docs/partners.md
// D6, D43); revoking one token revokes the paired other (D38).
func TestAPIRevokedTokenFailsOnNextRequest(t *testing.T) {
	forEachStoreWithUpstream(t, gatewayConfig{}, func(t *testing.T, gw *gateway, up *upstream) {
		for _, which := range []string{"access token", "refresh token"} {
			t.Run(which, func(t *testing.T) {
				tok, _ := obtainTokens(t, gw, allScopes...)
				if r := gw.call(t, "/v1/me/sea-time", bearer(tok.AccessToken), nil); r.status != http.StatusOK {
					t.Fatalf("before revocation: want 200:\n%s", r)
				}
				revoked := tok.AccessToken
				if which == "refresh token" {
					revoked = tok.RefreshToken
				}
				wantRevoked(t, gw.revoke(t, revoked))
				n := up.count()
				for _, rt := range apiRoutes {
					r := gw.call(t, rt.path, bearer(tok.AccessToken), nil)
					wantChallenge(t, r.response, http.StatusUnauthorized, "invalid_token", "", tok.AccessToken, tok.RefreshToken)
				}
				wantUpstreamUntouched(t, up, n, "after the token was revoked")
			})
		}
	})
}
