package integration

import (
	"net/http"
	"net/url"
	"testing"
)

// TestRevokeEitherTokenRevokesThePair revokes the access token in one flow
// and the refresh token in another, each with a different client
// authentication method, and checks both tokens of the pair stop working.
//
// Either the access or the refresh token may be revoked (RFC 7009), and
// revoking one revokes the paired other (docs/partners.md D38); the answer
// is 200 with no body (D40, RFC 7009 §2.2); a revoked refresh token is
// invalid_grant (D56); revocation is instant (D6).
func TestRevokeEitherTokenRevokesThePair(t *testing.T) {
	forEachStore(t, gatewayConfig{}, func(t *testing.T, gw *gateway) {
		for _, tc := range []struct {
			name string
			auth clientAuth
			hint string
			pick func(access, refresh string) string
		}{
			{"access token, client_secret_post", authPost, "", func(a, _ string) string { return a }},
			{"refresh token, client_secret_basic", authBasic, "", func(_, r string) string { return r }},
			// RFC 7009 §2.1: a wrong hint only costs the server a wider search.
			{"access token with hint refresh_token", authPost, "refresh_token", func(a, _ string) string { return a }},
			{"refresh token with hint access_token", authBasic, "access_token", func(_, r string) string { return r }},
		} {
			t.Run(tc.name, func(t *testing.T) {
				tok, conf := obtainTokens(t, gw, allScopes...)
				f := url.Values{"token": {tc.pick(tok.AccessToken, tok.RefreshToken)}}
				if tc.hint != "" {
					f.Set("token_type_hint", tc.hint)
				}
				r := gw.postForm(t, "/oauth/revoke", f, tc.auth, clientID, clientSecret)
				wantRevoked(t, r)
				wantBearerError(t, gw.userinfo(t, bearer(tok.AccessToken)), http.StatusUnauthorized, "invalid_token")
				_, err := refresh(t, conf, tok.RefreshToken)
				wantRetrieveError(t, err, "invalid_grant")

				// Revoking again is still a 200 no-op.
				wantRevoked(t, gw.postForm(t, "/oauth/revoke", f, tc.auth, clientID, clientSecret))
			})
		}
	})
}

// TestRevokeUnknownTokenIsNoOp revokes tokens the gateway never issued.
//
// Revoking an unknown token is a no-op, not an error (docs/partners.md
// D40). RFC 7009 §2.2.
func TestRevokeUnknownTokenIsNoOp(t *testing.T) {
	forEachStore(t, gatewayConfig{}, func(t *testing.T, gw *gateway) {
		tok, _ := obtainTokens(t, gw, allScopes...)
		for _, token := range []string{"not-a-token", "Aq3redacted0000000000000000000000000000000", tok.AccessToken + "x"} {
			wantRevoked(t, gw.revoke(t, token))
		}
		// The unrelated live token is untouched.
		wantUserinfoOK(t, gw.userinfo(t, bearer(tok.AccessToken)))
	})
}

// TestRevokeRequiresClientAuthentication revokes with bad client
// credentials and checks the token survives.
//
// POST /oauth/revoke is RFC 7009 revocation, authenticated by client
// secret (docs/partners.md D10, D41). RFC 7009 §2.1, §2.2.1 (invalid_client
// per RFC 6749 §5.2).
func TestRevokeRequiresClientAuthentication(t *testing.T) {
	forEachStore(t, gatewayConfig{}, func(t *testing.T, gw *gateway) {
		tok, _ := obtainTokens(t, gw, allScopes...)
		for _, tc := range []struct {
			name       string
			auth       clientAuth
			id, secret string
		}{
			{"post: wrong secret", authPost, clientID, "wrong-secret"},
			{"basic: wrong secret", authBasic, clientID, "wrong-secret"},
			{"unknown client", authPost, "ywc_unknown", clientSecret},
			{"no client authentication", authNone, "", ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := gw.postForm(t, "/oauth/revoke", url.Values{"token": {tok.AccessToken}}, tc.auth, tc.id, tc.secret)
				wantOAuthError(t, r, http.StatusUnauthorized, "invalid_client")
				wantUserinfoOK(t, gw.userinfo(t, bearer(tok.AccessToken)))
			})
		}
	})
}

// wantRevoked checks an RFC 7009 §2.2 success: 200 with an empty body.
func wantRevoked(t *testing.T, r *response) {
	t.Helper()
	if r.status != http.StatusOK || len(r.body) != 0 {
		t.Fatalf("revoke: want 200 with no body (docs/partners.md D40; RFC 7009 §2.2):\n%s", r)
	}
}

// TestRevokeTearsDownTheUsersConnection connects twice (two token pairs for
// the same user and client), revokes one token of the first pair and checks
// the second pair is gone as well.
//
// Every access and refresh token issued to the client for that user is
// revoked at once (docs/partners.md D43); the partner can trigger the
// same from its side with POST /oauth/revoke and one of the user's tokens:
// a single call tears down the user's connection, no other clean-up call
// is needed (D39).
func TestRevokeTearsDownTheUsersConnection(t *testing.T) {
	forEachStore(t, gatewayConfig{}, func(t *testing.T, gw *gateway) {
		first, conf := obtainTokens(t, gw, allScopes...)
		second, _ := obtainTokens(t, gw, "profile:read")
		wantUserinfoOK(t, gw.userinfo(t, bearer(second.AccessToken)))

		wantRevoked(t, gw.revoke(t, first.RefreshToken))
		for _, tok := range []string{first.AccessToken, second.AccessToken} {
			wantBearerError(t, gw.userinfo(t, bearer(tok)), http.StatusUnauthorized, "invalid_token")
		}
		for _, rt := range []string{first.RefreshToken, second.RefreshToken} {
			_, err := refresh(t, conf, rt)
			wantRetrieveError(t, err, "invalid_grant")
		}
	})
}
