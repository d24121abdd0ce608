package integration

import (
	"net/http"
	"strings"
	"testing"
)

// TestUserinfoReturnsProfile reads alice's profile with a profile:read
// token, including with the scheme in lower case.
//
// GET /oauth/userinfo with a bearer token carrying profile:read returns
// sub, name, role, country and picture; profile:read covers name, role,
// country and photo URL (docs/partners.md D11). RFC 7235 §2.1: the
// auth-scheme is case-insensitive.
func TestUserinfoReturnsProfile(t *testing.T) {
	forEachStore(t, gatewayConfig{}, func(t *testing.T, gw *gateway) {
		tok, _ := obtainTokens(t, gw, "profile:read")
		wantUserinfoOK(t, gw.userinfo(t, "Bearer "+tok.AccessToken))
		wantUserinfoOK(t, gw.userinfo(t, "bearer "+tok.AccessToken))
	})
}

// TestUserinfoErrors checks the RFC 6750 challenges and RFC 9457 bodies of
// the resource endpoint for the requests that carry no usable token.
//
// Errors are RFC 9457 application/problem+json with the RFC 6750
// WWW-Authenticate challenge: no token → 401 Bearer realm="…";
// bad/expired/revoked token → 401 error="invalid_token" (README "What
// partners get"; docs/architecture.md §4.3; docs/partners.md D53).
// (Expired: TestExpiredAccessTokenThenRefresh; revoked:
// TestRevokeEitherTokenRevokesThePair; insufficient_scope:
// TestInsufficientScope.)
func TestUserinfoErrors(t *testing.T) {
	forEachStore(t, gatewayConfig{}, func(t *testing.T, gw *gateway) {
		tok, _ := obtainTokens(t, gw, allScopes...)
		for _, tc := range []struct {
			name          string
			authorization string
			code          string
		}{
			{"no token", "", ""},
			{"unknown token", "Bearer Aq3redacted0000000000000000000000000000000", "invalid_token"},
			{"garbage token", "Bearer not a token", "invalid_token"},
			{"empty token", "Bearer ", "invalid_token"},
			{"refresh token as bearer", "Bearer " + tok.RefreshToken, "invalid_token"},
			{"access token with a character changed", "Bearer " + flipLast(tok.AccessToken), "invalid_token"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := gw.userinfo(t, tc.authorization)
				if tc.name == "empty token" || tc.name == "garbage token" {
					// RFC 6750 §3.1: a malformed request may also be 400
					// invalid_request; it must not be a success.
					if r.status == http.StatusBadRequest {
						wantBearerError(t, r, http.StatusBadRequest, "invalid_request")
						return
					}
				}
				if tc.name == "empty token" && !strings.Contains(r.header.Get("WWW-Authenticate"), "error=") {
					// "Bearer" with nothing after it (the trailing space does
					// not survive the header) may count as no token at all.
					wantBearerError(t, r, http.StatusUnauthorized, "")
					return
				}
				wantBearerError(t, r, http.StatusUnauthorized, tc.code)
				if strings.Contains(string(r.body), tok.RefreshToken) || strings.Contains(string(r.body), tok.AccessToken) {
					t.Fatalf("error body echoes a token:\n%s", r)
				}
			})
		}
		// Control: the token itself works.
		wantUserinfoOK(t, gw.userinfo(t, bearer(tok.AccessToken)))
	})
}

func flipLast(s string) string {
	if s == "" {
		return "x"
	}
	last := s[len(s)-1]
	if last == 'A' {
		return s[:len(s)-1] + "B"
	}
	return s[:len(s)-1] + "A"
}
