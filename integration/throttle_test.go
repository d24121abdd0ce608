package integration

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// Password guessing on the sign-in form is throttled per username in the
// store: after 10 failures within 15 minutes even the right password is
// refused with 429 (the password is not checked), other usernames are not
// affected, and an unknown username is throttled the same way, so the
// throttle does not tell which usernames exist.
func TestSignInThrottledAfterTenFailures(t *testing.T) {
	forEachStore(t, gatewayConfig{}, func(t *testing.T, gw *gateway) {
		awayFromSignInWindowEdge(t)
		conf := gw.oauthConfig(oauth2.AuthStyleInParams, allScopes...)
		b := newBrowser(t, gw)
		p := b.get(newAuthRequest(conf).url)
		for i := 1; i <= 10; i++ {
			p = b.submit(p, url.Values{"username": {username}, "password": {"guess"}})
			if p.status != http.StatusUnauthorized || !p.isLogin() {
				t.Fatalf("failure %d: want 401 and the form again:\n%s", i, p)
			}
		}
		p = b.submit(p, url.Values{"username": {username}, "password": {password}})
		if p.status != http.StatusTooManyRequests || p.isConsent() || !strings.Contains(p.text(), "Too many failed sign-ins") {
			t.Fatalf("11th attempt with the right password: want 429 and no sign-in:\n%s", p)
		}
		for i := 1; i <= 10; i++ {
			p = b.submit(p, url.Values{"username": {"mallory"}, "password": {"guess"}})
			if p.status != http.StatusUnauthorized {
				t.Fatalf("mallory's failure %d: alice's throttle leaked to another username: %d", i, p.status)
			}
		}
		if p = b.submit(p, url.Values{"username": {"mallory"}, "password": {"guess"}}); p.status != http.StatusTooManyRequests {
			t.Fatalf("an unknown username is throttled like a known one: got %d", p.status)
		}
	})
}

// awayFromSignInWindowEdge waits until just after the next boundary of the
// sign-in windows (15 minutes, fixed and aligned to the epoch: README,
// sign_in_limit) when it is less than a margin away, so that a test that
// counts attempts is not reset half-way by the window ending.
func awayFromSignInWindowEdge(t *testing.T) {
	t.Helper()
	const window, margin = 15 * time.Minute, 90 * time.Second
	left := window - time.Duration(time.Now().UnixNano())%window
	if left < margin {
		t.Logf("waiting %s for the sign-in window to turn", left.Round(time.Second))
		time.Sleep(left + time.Second)
	}
}
