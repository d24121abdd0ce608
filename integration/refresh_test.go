package integration

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// TestRefreshRotatesAndOldPairIsRevoked refreshes with golang.org/x/oauth2
// and checks the old pair is dead while the new one lives.
//
// Every successful refresh revokes the old access and refresh tokens
// atomically and issues a new pair (docs/partners.md D33); a client that
// keeps using the old refresh token loses the connection (D37); a revoked
// refresh token is invalid_grant (D56).
func TestRefreshRotatesAndOldPairIsRevoked(t *testing.T) {
	forEachStore(t, gatewayConfig{}, func(t *testing.T, gw *gateway) {
		tok, conf := obtainTokens(t, gw, allScopes...)
		next, err := refresh(t, conf, tok.RefreshToken)
		if err != nil {
			t.Fatalf("refresh: %v", err)
		}
		if next.AccessToken == tok.AccessToken || next.RefreshToken == tok.RefreshToken {
			t.Fatalf("refresh did not rotate both tokens")
		}
		if got, _ := next.Extra("scope").(string); scopeSet(got) != scopeSet(strings.Join(allScopes, " ")) {
			t.Errorf("refreshed scope = %q, want the original %q", got, strings.Join(allScopes, " "))
		}
		wantUserinfoOK(t, gw.userinfo(t, bearer(next.AccessToken)))

		// The old pair is revoked.
		wantBearerError(t, gw.userinfo(t, bearer(tok.AccessToken)), http.StatusUnauthorized, "invalid_token")
		_, err = refresh(t, conf, tok.RefreshToken)
		wantRetrieveError(t, err, "invalid_grant")

		// Presenting the stale refresh token did not take the new pair down:
		// docs/partners.md D36: the loser of a race gets invalid_grant and
		// uses the winner's pair; it is not sent to re-consent.
		wantUserinfoOK(t, gw.userinfo(t, bearer(next.AccessToken)))
		third, err := refresh(t, conf, next.RefreshToken)
		if err != nil {
			t.Fatalf("refreshing the new refresh token: %v", err)
		}
		wantUserinfoOK(t, gw.userinfo(t, bearer(third.AccessToken)))
		wantBearerError(t, gw.userinfo(t, bearer(next.AccessToken)), http.StatusUnauthorized, "invalid_token")
	})
}

// TestRefreshMayNarrowScope asks for a subset of the scope at refresh.
//
// A refresh may ask for a narrower scope and get a more limited token
// (docs/partners.md D34). RFC 6749 §6.
func TestRefreshMayNarrowScope(t *testing.T) {
	forEachStore(t, gatewayConfig{}, func(t *testing.T, gw *gateway) {
		tok, _ := obtainTokens(t, gw, allScopes...)

		r := gw.refreshRaw(t, tok.RefreshToken, "seatime:read vessels:read")
		m := wantTokenResponse(t, r, "seatime:read vessels:read")
		// The narrower token no longer reaches profile:read.
		wantBearerError(t, gw.userinfo(t, bearer(m["access_token"].(string))), http.StatusForbidden, "insufficient_scope")
		// And the old pair went away with the refresh.
		wantBearerError(t, gw.userinfo(t, bearer(tok.AccessToken)), http.StatusUnauthorized, "invalid_token")

		tok2, _ := obtainTokens(t, gw, allScopes...)
		r = gw.refreshRaw(t, tok2.RefreshToken, "profile:read")
		m = wantTokenResponse(t, r, "profile:read")
		wantUserinfoOK(t, gw.userinfo(t, bearer(m["access_token"].(string))))
	})
}

// TestRefreshCannotWidenScope asks for a scope the token was not issued
// with, at refresh.
//
// A refresh cannot widen the scope: a wider scope is invalid_scope
// (docs/partners.md D34, D58).
func TestRefreshCannotWidenScope(t *testing.T) {
	forEachStore(t, gatewayConfig{}, func(t *testing.T, gw *gateway) {
		tok, _ := obtainTokens(t, gw, "vessels:read")
		for _, scope := range []string{
			"vessels:read profile:read", // within the client's set, not the grant's
			"profile:read",
			"vessels:read admin:write", // not a scope at all
		} {
			wantOAuthError(t, gw.refreshRaw(t, tok.RefreshToken, scope), http.StatusBadRequest, "invalid_scope")
		}
	})
}

// TestConcurrentRefreshExactlyOneWins races refreshes of one refresh token.
//
// Of two concurrent refreshes with one refresh token exactly one wins; the
// other gets invalid_grant and must use the winner's pair
// (docs/partners.md D36).
func TestConcurrentRefreshExactlyOneWins(t *testing.T) {
	forEachStore(t, gatewayConfig{}, func(t *testing.T, gw *gateway) {
		tok, _ := obtainTokens(t, gw, allScopes...)
		current := tok.RefreshToken
		for round, n := range []int{2, 2, 2, 2, 8} {
			winner := raceRefresh(t, gw, current, n, round)
			wantUserinfoOK(t, gw.userinfo(t, bearer(winner["access_token"].(string))))
			current = winner["refresh_token"].(string)
		}
	})
}

// TestExpiredAccessTokenThenRefresh lets an access token outlive a 2 s
// access_token_lifetime, checks the resource answers invalid_token, and
// refreshes with golang.org/x/oauth2 the way a partner's client does.
//
// An access token lives 1 hour and then gets invalid_token; the client
// refreshes it with grant_type=refresh_token (docs/partners.md D31, D32).
// A revoked token stops working at once, before its expiry (D6).
func TestExpiredAccessTokenThenRefresh(t *testing.T) {
	forEachStore(t, gatewayConfig{accessTokenLifetime: "access_token_lifetime 2s"}, func(t *testing.T, gw *gateway) {
		tok, conf := obtainTokens(t, gw, allScopes...)
		if tok.ExpiresIn != 2 {
			t.Errorf("expires_in = %d, want 2 from access_token_lifetime 2s", tok.ExpiresIn)
		}
		wantUserinfoOK(t, gw.userinfo(t, bearer(tok.AccessToken)))

		time.Sleep(3 * time.Second)
		wantBearerError(t, gw.userinfo(t, bearer(tok.AccessToken)), http.StatusUnauthorized, "invalid_token")

		// The partner's token source sees the token expired and refreshes.
		ts := conf.TokenSource(clientCtx(t), tok)
		next, err := ts.Token()
		if err != nil {
			t.Fatalf("refresh after expiry: %v", err)
		}
		if next.AccessToken == tok.AccessToken || next.RefreshToken == tok.RefreshToken {
			t.Fatalf("refresh after expiry returned the old tokens")
		}
		wantUserinfoOK(t, gw.userinfo(t, bearer(next.AccessToken)))
		// The refresh token itself lives 90 days, not 2 s.
		if _, err := refresh(t, conf, next.RefreshToken); err != nil {
			t.Fatalf("second refresh: %v", err)
		}
	})
}

// TestInsufficientScope calls userinfo with a token that lacks
// profile:read, then follows the documented way out.
//
// A token without the endpoint's scope (here profile:read for userinfo)
// gets 403 error="insufficient_scope", and refresh cannot add it: the way
// out is to send the user through authorize again with the missing scope
// requested (docs/partners.md D51; RFC 6750 §3.1).
func TestInsufficientScope(t *testing.T) {
	forEachStore(t, gatewayConfig{}, func(t *testing.T, gw *gateway) {
		tok, _ := obtainTokens(t, gw, "seatime:read", "vessels:read")
		if got, _ := tok.Extra("scope").(string); scopeSet(got) != "seatime:read vessels:read" {
			t.Errorf("scope = %q, want \"seatime:read vessels:read\"", got)
		}
		r := gw.userinfo(t, bearer(tok.AccessToken))
		wantBearerError(t, r, http.StatusForbidden, "insufficient_scope")

		// Back through authorize with the missing scope.
		tok2, _ := obtainTokens(t, gw, "profile:read", "seatime:read", "vessels:read")
		wantUserinfoOK(t, gw.userinfo(t, bearer(tok2.AccessToken)))
	})
}

// TestExpiredRefreshTokenIsInvalidGrant lets a refresh token outlive a 2 s
// refresh_token_lifetime.
//
// Refresh tokens live 90 days; a user not seen for 90 days must consent
// again, and the expired refresh token is invalid_grant (docs/partners.md
// D35).
func TestExpiredRefreshTokenIsInvalidGrant(t *testing.T) {
	forEachStore(t, gatewayConfig{refreshTokenLifetime: "refresh_token_lifetime 2s"}, func(t *testing.T, gw *gateway) {
		tok, conf := obtainTokens(t, gw, allScopes...)
		// Control: used at once, the refresh token works.
		next, err := refresh(t, conf, tok.RefreshToken)
		if err != nil {
			t.Fatalf("refresh within the lifetime: %v", err)
		}
		time.Sleep(3 * time.Second)
		_, err = refresh(t, conf, next.RefreshToken)
		wantRetrieveError(t, err, "invalid_grant")
		// Reconsent works.
		tok2, _ := obtainTokens(t, gw, allScopes...)
		wantUserinfoOK(t, gw.userinfo(t, bearer(tok2.AccessToken)))
	})
}

// TestTokenKindsAreNotInterchangeable presents an access token as a refresh
// token and a refresh token as a code.
//
// A token of the wrong kind is invalid_grant (docs/partners.md D56; RFC
// 6749 §5.2: "The provided authorization grant … or refresh token is
// invalid").
func TestTokenKindsAreNotInterchangeable(t *testing.T) {
	forEachStore(t, gatewayConfig{}, func(t *testing.T, gw *gateway) {
		tok, _ := obtainTokens(t, gw, allScopes...)
		wantOAuthError(t, gw.refreshRaw(t, tok.AccessToken, ""), http.StatusBadRequest, "invalid_grant")
		a := newAuthRequest(gw.oauthConfig(oauth2.AuthStyleInParams, allScopes...))
		wantOAuthError(t, gw.exchange(t, tok.RefreshToken, a.verifier, redirectURI), http.StatusBadRequest, "invalid_grant")
		wantOAuthError(t, gw.exchange(t, tok.AccessToken, a.verifier, redirectURI), http.StatusBadRequest, "invalid_grant")
	})
}

// raceRefresh sends n concurrent refreshes of one refresh token and checks
// that exactly one wins (the others get invalid_grant); it returns the
// winner's token response.
func raceRefresh(t *testing.T, gw *gateway, refreshToken string, n, round int) map[string]any {
	t.Helper()
	rs := race(t, n, func() *http.Request {
		req, _ := gw.formRequest(t, "/oauth/token", map[string][]string{
			"grant_type":    {"refresh_token"},
			"refresh_token": {refreshToken},
		}, authPost, clientID, clientSecret)
		return req
	})
	var winner map[string]any
	wins := 0
	for _, r := range rs {
		if r.status == http.StatusOK {
			wins++
			winner = wantTokenResponse(t, r, strings.Join(allScopes, " "))
			continue
		}
		wantOAuthError(t, r, http.StatusBadRequest, "invalid_grant")
	}
	if wins != 1 {
		t.Fatalf("round %d: %d of %d concurrent refreshes succeeded, want exactly one", round, wins, n)
	}
	return winner
}
