package integration

import (
	"net/http"
	"testing"
)

// TestAPIConnectionHeaderCannotDropIdentity names the identity header, and
// Authorization, in the request's Connection field. A proxy removes the
// fields Connection names before forwarding (RFC 9110 §7.6.1), so Caddy's
// reverse_proxy would drop the X-Legacy-User the gateway set and the legacy
// API would receive a request with no user at all: the gateway must refuse
// it (400 invalid_request) without calling the upstream. Ordinary
// Connection values still pass, with the identity header.
//
// README, Configuration reference: tollgate_protect refuses a Connection
// header naming a header it sets or strips.
func TestAPIConnectionHeaderCannotDropIdentity(t *testing.T) {
	forEachStoreWithUpstream(t, gatewayConfig{}, func(t *testing.T, gw *gateway, up *upstream) {
		tok, _ := obtainTokens(t, gw, allScopes...)
		for _, conn := range [][]string{
			{"X-Legacy-User"},
			{"keep-alive, x-legacy-user"},
			{"keep-alive", " X-LEGACY-USER "},
			{"Authorization"},
		} {
			t.Run(conn[0], func(t *testing.T) {
				n := up.count()
				r := gw.call(t, "/v1/me", bearer(tok.AccessToken), http.Header{"Connection": conn})
				wantChallenge(t, r.response, http.StatusBadRequest, "invalid_request", "", tok.AccessToken)
				wantUpstreamUntouched(t, up, n, "for a request whose Connection header names a guarded header")
			})
		}
		for _, conn := range []string{"keep-alive", "X-Something-Else"} {
			n := up.count()
			r := gw.call(t, "/v1/me", bearer(tok.AccessToken), http.Header{"Connection": {conn}})
			if r.status != http.StatusOK {
				t.Fatalf("Connection: %s: want 200:\n%s", conn, r)
			}
			got := up.since(n)
			if len(got) != 1 || got[0].Header.Get("X-Legacy-User") != username {
				t.Fatalf("Connection: %s: upstream received %d requests, want 1 with X-Legacy-User: %s:\n%v", conn, len(got), username, got)
			}
		}
	})
}
