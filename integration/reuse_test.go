package integration

// Refresh-token reuse detection (RFC 9700 §4.14.2) against the benign race
// of two concurrent refreshes (docs/partners.md D36, D37).
//
// A rotated refresh token presented again after a grace window (default
// 10 s, `refresh_reuse_grace` in the tollgate block, at most 5 min)
// revokes the whole grant and is audit-logged; inside the window (a race:
// one refresh wins, and the loser must not be sent to re-consent) it only
// gets invalid_grant (README "Refresh tokens, reuse and disconnect" and
// "Configuration reference"; docs/architecture.md §3.4).

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// reuseAuditLine is the gateway's audit event for a detected reuse
// (README "Audit log").
const reuseAuditLine = "refresh_token_reused"

// rotate refreshes rt with the raw token endpoint and returns the new pair
// and when the answer arrived (the rotation happened before it).
func rotate(t *testing.T, gw *gateway, rt string) (*oauth2.Token, time.Time) {
	t.Helper()
	m := wantTokenResponse(t, gw.refreshRaw(t, rt, ""), strings.Join(allScopes, " "))
	at := time.Now()
	return &oauth2.Token{AccessToken: m["access_token"].(string), RefreshToken: m["refresh_token"].(string)}, at
}

// reuseInsideWindow presents old again and checks it only gets
// invalid_grant while pair keeps working; it fails when the machine was
// too slow to stay inside the window, which would make the check moot.
func reuseInsideWindow(t *testing.T, gw *gateway, old string, pair *oauth2.Token, rotated time.Time, grace time.Duration) {
	t.Helper()
	wantOAuthError(t, gw.refreshRaw(t, old, ""), http.StatusBadRequest, "invalid_grant")
	if d := time.Since(rotated); d >= grace {
		t.Fatalf("the reuse came %s after the rotation, outside the %s window: the machine is too slow for this test", d, grace)
	}
	wantUserinfoOK(t, gw.userinfo(t, bearer(pair.AccessToken)))
}

// sleepUntil sleeps until t.
func sleepUntil(at time.Time) { time.Sleep(time.Until(at)) }

// TestRefreshReuseAfterGraceRevokesGrantButRaceDoesNot rotates a refresh
// token, presents the old one again at once (a lost race: invalid_grant
// only, the new pair lives) and again after the 2 s window (reuse: the
// whole grant is revoked and audit-logged).
//
// A rotated refresh token presented again after the grace window revokes
// the whole grant and is audit-logged; inside the window it only gets
// invalid_grant (docs/architecture.md §3.4). A client that keeps using an
// old refresh token loses the connection and the user must consent again
// (docs/partners.md D37); of two racing refreshes one wins and the other
// gets invalid_grant and uses the winner's pair, without re-consent (D36).
func TestRefreshReuseAfterGraceRevokesGrantButRaceDoesNot(t *testing.T) {
	const grace = 2 * time.Second
	forEachStore(t, gatewayConfig{refreshReuseGrace: "refresh_reuse_grace 2s"}, func(t *testing.T, gw *gateway) {
		b := newBrowser(t, gw)
		tok := connect(t, gw, b, allScopes...)
		next, rotated := rotate(t, gw, tok.RefreshToken)

		// Inside the window: a race, not a theft.
		reuseInsideWindow(t, gw, tok.RefreshToken, next, rotated, grace)
		reuseInsideWindow(t, gw, tok.RefreshToken, next, rotated, grace)
		if strings.Contains(gw.output.String(), reuseAuditLine) {
			t.Fatalf("a reuse inside the window was treated as a theft; log:\n%s", tail(gw.output.String(), logTail))
		}

		// After the window: the old token is in two hands.
		sleepUntil(rotated.Add(grace + 500*time.Millisecond))
		r := gw.refreshRaw(t, tok.RefreshToken, "")
		wantOAuthError(t, r, http.StatusBadRequest, "invalid_grant")
		wantDead(t, gw, next)
		wantNoApp(t, b.connections())

		// Audit-logged, naming the grant and never the token.
		waitForLog(t, gw, reuseAuditLine, 5*time.Second)
		var line string
		for _, l := range strings.Split(gw.output.String(), "\n") {
			if strings.Contains(l, reuseAuditLine) {
				line = l
			}
		}
		for _, want := range []string{clientID, username} {
			if !strings.Contains(line, want) {
				t.Errorf("audit line does not name %q:\n%s", want, line)
			}
		}
		for _, secret := range []string{tok.RefreshToken, tok.AccessToken, next.RefreshToken, next.AccessToken} {
			if strings.Contains(gw.output.String(), secret) {
				t.Fatalf("the gateway log contains a token")
			}
		}
		if n := strings.Count(gw.output.String(), reuseAuditLine); n != 1 {
			t.Errorf("%d reuse audit lines, want 1", n)
		}

		// The user reconsents; the stolen token presented once more is
		// only invalid_grant and does not take the new connection down.
		again := connect(t, gw, b, allScopes...)
		wantOAuthError(t, gw.refreshRaw(t, tok.RefreshToken, ""), http.StatusBadRequest, "invalid_grant")
		wantOAuthError(t, gw.refreshRaw(t, next.RefreshToken, ""), http.StatusBadRequest, "invalid_grant")
		wantUserinfoOK(t, gw.userinfo(t, bearer(again.AccessToken)))
		rotate(t, gw, again.RefreshToken)
	})
}

// TestRefreshReuseOfOlderTokenRevokesGrant rotates twice and, after the
// window, presents the first refresh token: the grant is revoked, with the
// pair two rotations later.
//
// A rotated refresh token presented again after the grace window revokes
// the whole grant (docs/architecture.md §3.4; docs/partners.md D37). RFC
// 9700 §4.14.2: the server "cannot determine which party submitted the
// invalid refresh token, it will revoke the active refresh token".
func TestRefreshReuseOfOlderTokenRevokesGrant(t *testing.T) {
	const grace = 2 * time.Second
	forEachStore(t, gatewayConfig{refreshReuseGrace: "refresh_reuse_grace 2s"}, func(t *testing.T, gw *gateway) {
		tok, _ := obtainTokens(t, gw, allScopes...)
		second, rotated := rotate(t, gw, tok.RefreshToken)
		sleepUntil(rotated.Add(grace + 500*time.Millisecond))
		third, _ := rotate(t, gw, second.RefreshToken)
		wantUserinfoOK(t, gw.userinfo(t, bearer(third.AccessToken)))

		wantOAuthError(t, gw.refreshRaw(t, tok.RefreshToken, ""), http.StatusBadRequest, "invalid_grant")
		wantDead(t, gw, third)
		waitForLog(t, gw, reuseAuditLine, 5*time.Second)
	})
}

// TestRefreshReuseDefaultGraceIsTenSeconds checks the default window with
// Caddyfile.example as shipped: a reuse 3 s after the rotation is still a
// race, one 10 s after it revokes the grant.
//
// The grace window defaults to 10 s (README "Configuration reference",
// refresh_reuse_grace; docs/partners.md D36).
func TestRefreshReuseDefaultGraceIsTenSeconds(t *testing.T) {
	forEachStore(t, gatewayConfig{}, func(t *testing.T, gw *gateway) {
		tok, _ := obtainTokens(t, gw, allScopes...)
		next, rotated := rotate(t, gw, tok.RefreshToken)

		sleepUntil(rotated.Add(3 * time.Second))
		reuseInsideWindow(t, gw, tok.RefreshToken, next, rotated, 10*time.Second)

		sleepUntil(rotated.Add(10*time.Second + 500*time.Millisecond))
		wantOAuthError(t, gw.refreshRaw(t, tok.RefreshToken, ""), http.StatusBadRequest, "invalid_grant")
		wantDead(t, gw, next)
		waitForLog(t, gw, reuseAuditLine, 5*time.Second)
	})
}

// TestConcurrentRefreshIsRaceNotReuse races refreshes of one
// token: exactly one wins, the others get invalid_grant inside the window,
// and after the window has passed the winner's pair still works — the
// losers' attempts were a race, not a reuse.
//
// Of two refreshes raced with the same refresh token only one wins; the
// other gets invalid_grant and uses the winner's pair, without re-consent
// (docs/partners.md D36). Inside the grace window such a race only gets
// invalid_grant (docs/architecture.md §3.4).
func TestConcurrentRefreshIsRaceNotReuse(t *testing.T) {
	const grace = 2 * time.Second
	forEachStore(t, gatewayConfig{refreshReuseGrace: "refresh_reuse_grace 2s"}, func(t *testing.T, gw *gateway) {
		tok, _ := obtainTokens(t, gw, allScopes...)
		current := tok.RefreshToken
		for round, n := range []int{2, 5} {
			start := time.Now()
			winner := raceRefresh(t, gw, current, n, round)
			if d := time.Since(start); d >= grace {
				t.Fatalf("round %d: the race took %s, longer than the %s window: the machine is too slow for this test", round, d, grace)
			}
			// Past the window, the winner's pair still works.
			sleepUntil(start.Add(grace + 500*time.Millisecond))
			wantUserinfoOK(t, gw.userinfo(t, bearer(winner["access_token"].(string))))
			current = winner["refresh_token"].(string)
		}
		rotate(t, gw, current)
		if strings.Contains(gw.output.String(), reuseAuditLine) {
			t.Fatalf("a lost race was treated as a reuse; log:\n%s", tail(gw.output.String(), logTail))
		}
	})
}

// TestRefreshReuseGraceAbove5MinutesRefused starts the gateway with
// refresh_reuse_grace 6m (refused, with a message naming the setting) and
// with 5m (accepted).
//
// `refresh_reuse_grace` is set in the tollgate block, at most 5 min
// (README "Configuration reference").
func TestRefreshReuseGraceAbove5MinutesRefused(t *testing.T) {
	t.Parallel()
	_, err := launch(t, "memory", "", writeConfig(t, gatewayConfig{refreshReuseGrace: "refresh_reuse_grace 6m"}))
	if err == nil {
		t.Fatal("the gateway started with refresh_reuse_grace 6m, want it refused (at most 5 min)")
	}
	if !strings.Contains(err.Error(), "refresh_reuse_grace") {
		t.Fatalf("refused without naming refresh_reuse_grace: %v", err)
	}
	for _, bad := range []string{"refresh_reuse_grace -1s", "refresh_reuse_grace soon"} {
		if _, err := launch(t, "memory", "", writeConfig(t, gatewayConfig{refreshReuseGrace: bad})); err == nil {
			t.Errorf("the gateway started with %q, want it refused", bad)
		}
	}
	gw := startGateway(t, "memory", gatewayConfig{refreshReuseGrace: "refresh_reuse_grace 5m"})
	tok, _ := obtainTokens(t, gw, allScopes...)
	next, _ := rotate(t, gw, tok.RefreshToken)
	wantOAuthError(t, gw.refreshRaw(t, tok.RefreshToken, ""), http.StatusBadRequest, "invalid_grant")
	wantUserinfoOK(t, gw.userinfo(t, bearer(next.AccessToken)))

}
