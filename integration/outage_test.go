package integration

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// TestRedisDownAtStartThenUp starts the gateway while its Redis is down,
// checks it still serves and answers 503 (not 401, not invalid_grant), then
// brings Redis up and runs the whole flow without a restart.
//
// A Redis that is down at start must not fail the config load: Provision
// makes no network call, and the first request that needs the store
// reports it (docs/architecture.md §1.1, §8.1). caddymodule/store/store.go:
// "handlers map those to 503, never to 401". RFC 6749 §4.1.2.1 / §5.2
// temporarily_unavailable.
func TestRedisDownAtStartThenUp(t *testing.T) {
	t.Parallel()
	port := quietPort(t)
	gw := startGatewayOn(t, "redis", fmt.Sprintf("redis://127.0.0.1:%d/0", port), gatewayConfig{})

	conf := gw.oauthConfig(oauth2.AuthStyleInParams, allScopes...)
	a := newAuthRequest(conf)
	b := newBrowser(t, gw)
	if p := b.get(a.url); p.status != http.StatusServiceUnavailable {
		t.Errorf("authorize with Redis down: want 503:\n%s", p)
	}
	// Tokens of the real shape: the answer must not tell the partner its
	// token is bad (invalid_grant would make it drop the token and send the
	// user to reconsent) when the store merely could not be asked.
	access, refreshTok := newTokenLike(t)
	r := gw.refreshRaw(t, refreshTok, "")
	if r.status != http.StatusServiceUnavailable {
		t.Errorf("refresh with Redis down: want 503 temporarily_unavailable, not a verdict on the token:\n%s", r)
	} else {
		wantOAuthError(t, r, http.StatusServiceUnavailable, "temporarily_unavailable")
	}
	r = gw.userinfo(t, bearer(access))
	if r.status != http.StatusServiceUnavailable {
		t.Errorf("userinfo with Redis down: want 503, never 401 (store.go: \"handlers map those to 503, never to 401\"):\n%s", r)
	}

	startRedisOn(t, port)
	deadline := time.Now().Add(15 * time.Second)
	for {
		p := b.get(a.url)
		if p.status == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Redis is up but the gateway still refuses after 15 s:\n%s", p)
		}
		time.Sleep(200 * time.Millisecond)
	}
	got, _ := obtainTokens(t, gw, allScopes...)
	wantUserinfoOK(t, gw.userinfo(t, bearer(got.AccessToken)))
}

// newTokenLike returns an access token of the right shape that was never
// issued: obtained from a memory-store gateway, which shares the format.
func newTokenLike(t *testing.T) (string, string) {
	t.Helper()
	other := startGateway(t, "memory", gatewayConfig{})
	tok, _ := obtainTokens(t, other, allScopes...)
	return tok.AccessToken, tok.RefreshToken
}
