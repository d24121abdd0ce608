package integration

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
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

// TestAPIGatewayCookiesNeverReachUpstream sends bearer requests that also
// carry the gateway's sign-in cookie (a partner's web view, or a browser
// calling the API on the gateway's origin, sends it along) and checks the
// upstream receives every other cookie intact and no tollgate_ cookie: the
// session id would let the legacy API, or whoever reads its logs, act as
// the user on the consent pages.
//
// README, "Security": the gateway's cookies never reach the upstream.
func TestAPIGatewayCookiesNeverReachUpstream(t *testing.T) {
	forEachStoreWithUpstream(t, gatewayConfig{}, func(t *testing.T, gw *gateway, up *upstream) {
		tok, _ := obtainTokens(t, gw, allScopes...)
		const session = "s3ss10n-1d-0f-al1ce"
		for _, tc := range []struct {
			name   string
			cookie []string
			want   []string // the upstream's Cookie values; nil: no field
		}{
			{"session only", []string{"tollgate_session=" + session}, nil},
			{"session among others", []string{"theme=dark; tollgate_session=" + session + "; lang=en"}, []string{"theme=dark; lang=en"}},
			{"other tollgate_ cookies", []string{"Tollgate_Session=" + session + "; tollgate_csrf=" + session}, nil},
			{"no gateway cookie", []string{"theme=dark; lang=en"}, []string{"theme=dark; lang=en"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				n := up.count()
				r := gw.call(t, "/v1/me", bearer(tok.AccessToken), http.Header{"Cookie": tc.cookie})
				if r.status != http.StatusOK {
					t.Fatalf("want 200:\n%s", r)
				}
				got := up.since(n)
				if len(got) != 1 {
					t.Fatalf("the upstream received %d requests, want 1", len(got))
				}
				if strings.Contains(strings.ToLower(got[0].String()), "tollgate_") || strings.Contains(got[0].String(), session) {
					t.Fatalf("the upstream received the gateway's cookie:\n%s", redactTokens(got[0].String(), tok.AccessToken))
				}
				if v := got[0].Header.Values("Cookie"); strings.Join(v, "|") != strings.Join(tc.want, "|") {
					t.Fatalf("upstream Cookie = %q, want %q (the partner's other cookies intact)", v, tc.want)
				}
			})
		}
	})
}

// TestAPITokenElsewhereCannotBeDisguised sends a good token in the
// Authorization header and a copy the way an upstream's parser would still
// read as an access_token parameter: a percent-encoded or differently
// cased name, a repeated one, or in a form body made unparseable by a bad
// escape further on. Each must be refused 400 invalid_request (RFC 6750
// §3.1: more than one method) without the upstream seeing the token.
//
// README, "Security": a token also sent as access_token in the query or a
// form body, names compared after decoding and in any case, is refused.
func TestAPITokenElsewhereCannotBeDisguised(t *testing.T) {
	forEachStoreWithUpstream(t, gatewayConfig{}, func(t *testing.T, gw *gateway, up *upstream) {
		tok, _ := obtainTokens(t, gw, allScopes...)
		for _, tc := range []struct {
			name, query, body string
		}{
			{"query", "?access_token=" + tok.AccessToken, ""},
			{"form body", "", "access_token=" + tok.AccessToken},
			{"percent-encoded name in the query", "?access%5Ftoken=" + tok.AccessToken, ""},
			{"upper-case name in the query", "?ACCESS_TOKEN=" + tok.AccessToken, ""},
			{"repeated name in the query", "?access_token=x&access_token=" + tok.AccessToken, ""},
			{"unparseable query", "?access_token=" + tok.AccessToken + "&x=%zz", ""},
			{"form body with a bad escape after the token", "", "access_token=" + tok.AccessToken + "&x=%zz"},
			{"percent-encoded name in a form body", "", "access%5Ftoken=" + tok.AccessToken},
		} {
			t.Run(tc.name, func(t *testing.T) {
				var body io.Reader
				if tc.body != "" {
					body = strings.NewReader(tc.body)
				}
				// GET, which the route allows: the refusal under test must
				// not be a method refusal.
				req, err := http.NewRequest(http.MethodGet, gw.base+"/v1/me"+tc.query, body)
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Authorization", bearer(tok.AccessToken))
				if tc.body != "" {
					req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				}
				n := up.count()
				r := send(t, req, "GET /v1/me (Authorization: Bearer …, and a token in the "+tc.name+")")
				wantChallenge(t, r, http.StatusBadRequest, "invalid_request", "", tok.AccessToken)
				wantUpstreamUntouched(t, up, n, "for a request carrying the token outside the Authorization header")
			})
		}
	})
}

// TestAPIReadRoutesRefuseOtherMethods sends DELETE, PUT, POST and PATCH
// with a read token to every API route of Caddyfile.example, whose scopes
// are read scopes: each must be answered 405 (RFC 9110 §15.5.6) with
// Allow: GET, HEAD and a problem document, without reaching the upstream
// (which would otherwise receive DELETE /legacy/users/alice/profile and
// cannot tell a read token from a write one) and without spending budget.
// HEAD and GET still pass.
//
// README, Configuration reference: tollgate_protect "methods".
func TestAPIReadRoutesRefuseOtherMethods(t *testing.T) {
	forEachStoreWithUpstream(t, gatewayConfig{rateLimit: "20/1h"}, func(t *testing.T, gw *gateway, up *upstream) {
		const limit, window = 20, time.Hour
		tok, _ := obtainTokens(t, gw, allScopes...)
		clearOfWindowEnd(window, 10*time.Second)
		for _, rt := range apiRoutes {
			for _, method := range []string{http.MethodDelete, http.MethodPut, http.MethodPost, http.MethodPatch, "PURGE"} {
				req, err := http.NewRequest(method, gw.base+rt.path, strings.NewReader(`{"name":"mallory"}`))
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Authorization", bearer(tok.AccessToken))
				req.Header.Set("Content-Type", "application/json")
				n := up.count()
				r := send(t, req, method+" "+rt.path+" (Authorization: Bearer …)")
				wantProblem(t, r, http.StatusMethodNotAllowed, tok.AccessToken)
				if got := r.header.Values("Allow"); len(got) != 1 || got[0] != "GET, HEAD" {
					t.Fatalf("%s %s: Allow = %q, want [\"GET, HEAD\"] (RFC 9110 §15.5.6):\n%s", method, rt.path, got, r)
				}
				wantUpstreamUntouched(t, up, n, "for "+method+" on a read route")
			}
		}
		n := up.count()
		req, err := http.NewRequest(http.MethodHead, gw.base+"/v1/me", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", bearer(tok.AccessToken))
		if r := send(t, req, "HEAD /v1/me (Authorization: Bearer …)"); r.status != http.StatusOK {
			t.Fatalf("HEAD: want 200:\n%s", r)
		}
		if got := up.since(n); len(got) != 1 || got[0].Method != http.MethodHead {
			t.Fatalf("HEAD: the upstream received %v, want one HEAD", got)
		}
		r := gw.call(t, "/v1/me", bearer(tok.AccessToken), nil)
		if r.status != http.StatusOK {
			t.Fatalf("GET: want 200:\n%s", r)
		}
		// Only the HEAD and this GET were counted.
		if f := wantRate(t, r, limit, window); f.remaining != limit-2 {
			t.Fatalf("X-RateLimit-Remaining = %d after 15 refused writes, a HEAD and a GET, want %d: a 405 costs nothing:\n%s", f.remaining, limit-2, r)
		}
	})
}

// TestAPIRewriteDropsClientQuery calls every API route of
// Caddyfile.example with query parameters a partner might try on the
// legacy API (another user's id among them) and checks the upstream
// receives the rewritten path with no query at all.
//
// README, Configuration reference: the example's rewrites end in "?",
// which empties the query (Caddy's rewrite: "To clear the query string,
// explicitly set an empty one").
func TestAPIRewriteDropsClientQuery(t *testing.T) {
	forEachStoreWithUpstream(t, gatewayConfig{}, func(t *testing.T, gw *gateway, up *upstream) {
		tok, _ := obtainTokens(t, gw, allScopes...)
		for _, rt := range apiRoutes {
			for _, q := range []string{"?user_id=bob", "?user_id=bob&fields=all", "?"} {
				n := up.count()
				r := gw.call(t, rt.path+q, bearer(tok.AccessToken), nil)
				if r.status != http.StatusOK || r.json(t)["user_id"] != username {
					t.Fatalf("%s%s: want 200 with %s's record:\n%s", rt.path, q, username, r)
				}
				got := up.since(n)
				if len(got) != 1 {
					t.Fatalf("the upstream received %d requests, want 1", len(got))
				}
				want := "/legacy/users/" + username + "/" + rt.resource
				if got[0].Path != want || got[0].RawQuery != "" {
					t.Fatalf("%s%s reached the upstream as %s?%s, want %s with no query", rt.path, q, got[0].Path, got[0].RawQuery, want)
				}
			}
		}
	})
}
