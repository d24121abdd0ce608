package integration

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// The Dash client of integration/testdata/dash.Caddyfile (docs/partners.md
// §3).
const (
	dashClientID     = "GJK88NjZWQtOWNkZC00ZDg1LWIzOTEtN2ViYmMyM2EyYjQz"
	dashClientSecret = "wezQ30xIL0HWuLcZu5FY+AnTmFowGGXa"
	dashRedirectURI  = "https://client.example.com/cb" // the primary (and only) one
	dashTokenPath    = "/api/auth/token"
)

// dashAuthorize opens /api/auth/authorize?rawQuery (sent as written, with
// no re-encoding), signs alice in, allows, and checks the code comes back
// to the primary redirect URI with wantState; it returns the code.
func dashAuthorize(t *testing.T, gw *gateway, rawQuery, wantState string) string {
	t.Helper()
	b := newBrowser(t, gw)
	consent := b.consentPage(gw.base + "/api/auth/authorize?" + rawQuery)
	if text := consent.text(); !strings.Contains(text, "Dash demo app") || !strings.Contains(text, "Your trips") {
		t.Errorf("consent page does not name the client and the scope (\"Dash demo app\", \"Your trips\"):\n%s", text)
	}
	return wantCode(t, b.allowTo(consent, dashRedirectURI), wantState)
}

// dashTokenJSON posts Dash's documented example token request
// (docs/partners.md H9): the JSON body as Dash prints it, with the code of
// the redirect in place of the example's.
func dashTokenJSON(t *testing.T, gw *gateway, code string) *response {
	t.Helper()
	body := `{
    "client_id": "` + dashClientID + `",
    "client_secret": "` + dashClientSecret + `",
    "code": "` + code + `",
    "grant_type": "authorization_code"
} `
	return dashTokenRaw(t, gw, "application/json", body)
}

func dashTokenRaw(t *testing.T, gw *gateway, contentType, body string) *response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, gw.base+dashTokenPath, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	return send(t, req, describe(req, body))
}

// wantDashToken checks the Dash token response (docs/partners.md H11):
// access_token and token_type "Bearer", and no refresh token
// (refresh_tokens off). It returns the access token.
func wantDashToken(t *testing.T, r *response) string {
	t.Helper()
	failedBefore := t.Failed()
	if r.status != http.StatusOK {
		t.Fatalf("Dash token request: want 200:\n%s", r)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	m := r.json(t)
	at, _ := m["access_token"].(string)
	if len(at) < 20 {
		t.Errorf("access_token = %#v, want an opaque random string (docs/partners.md H11)", m["access_token"])
	}
	if m["token_type"] != "Bearer" {
		t.Errorf("token_type = %#v, want \"Bearer\" (docs/partners.md H11: always Bearer)", m["token_type"])
	}
	if _, ok := m["refresh_token"]; ok {
		t.Errorf("refresh_token present; the Dash client gets access tokens only (docs/partners.md H11, H13: access_token and token_type, no refresh token)")
	}
	if t.Failed() && !failedBefore {
		t.Fatalf("response:\n%s", r)
	}
	return at
}

// dashTrips is Dash's documented example API call (docs/partners.md H12):
//
//	$ curl -H "Authorization: Bearer …" "https://dash.by/api/chassis/v1/trips"
func dashTrips(t *testing.T, gw *gateway, accessToken string) *response {
	t.Helper()
	req := curlRequest(t, http.MethodGet, gw.base+"/api/chassis/v1/trips", "")
	req.Header.Set("Authorization", "Bearer "+accessToken)
	return send(t, req, describe(req, ""))
}

// TestDashDocumentFlow replays Dash's documented flow as Dash writes it
// (docs/partners.md H1–H12): the example authorize request (its
// redirect_uri with %2E-encoded dots, which decode to the registered URI),
// the redirect with code and state, the example JSON token request (no
// redirect_uri, no code_verifier), the token response, and the curl call
// of the Chassis API. A second run leaves out the optional state and
// redirect_uri.
//
// Dash's example authorize request is
//
//	GET /api/auth/authorize?response_type=code&client_id=MY_CLIENT_ID&scope=trips&state=xyz
//	    &redirect_uri=https%3A%2F%2Fclient%2Eexample%2Ecom%2Fcb
//
// state is optional (H5); redirect_uri is optional, and when absent the
// code goes to the primary redirect URI (H6); the token request is a JSON
// body (H9); the response has access_token and token_type, always Bearer
// (H11); the API is called with Authorization: Bearer (H12).
func TestDashDocumentFlow(t *testing.T) {
	forEachStorePartner(t, dashConfig, func(t *testing.T, gw *gateway) {
		for _, tc := range []struct {
			name, query, state string
		}{
			{"document example", "response_type=code&client_id=" + dashClientID + "&scope=trips&state=xyz" +
				"&redirect_uri=https%3A%2F%2Fclient%2Eexample%2Ecom%2Fcb", "xyz"},
			{"no state, no redirect_uri", "response_type=code&client_id=" + dashClientID + "&scope=trips", ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				code := dashAuthorize(t, gw, tc.query, tc.state)
				at := wantDashToken(t, dashTokenJSON(t, gw, code))
				m := wantAPIOK(t, dashTrips(t, gw, at))
				if trips, ok := m["trips"].([]any); !ok || len(trips) == 0 {
					t.Fatalf("trips = %#v, want the legacy API's list", m["trips"])
				}
			})
		}
	})
}

// TestDashTokenRequestAlsoFormEncoded sends the same four parameters as an
// RFC 6749 §4.1.3 form (the secret's '+' encoded as %2B): it is accepted as
// well, and the code is single-use whichever encoding redeemed it.
//
// Dash's token request takes client_id, client_secret, code and grant_type
// (docs/partners.md H9, H10).
func TestDashTokenRequestAlsoFormEncoded(t *testing.T) {
	forEachStorePartner(t, dashConfig, func(t *testing.T, gw *gateway) {
		code := dashAuthorize(t, gw, "response_type=code&client_id="+dashClientID+"&scope=trips&state=xyz", "xyz")
		body := orderedForm("client_id", dashClientID, "client_secret", dashClientSecret, "code", code, "grant_type", "authorization_code")
		at := wantDashToken(t, dashTokenRaw(t, gw, "application/x-www-form-urlencoded", body))
		wantAPIOK(t, dashTrips(t, gw, at))

		wantOAuthError(t, dashTokenJSON(t, gw, code), http.StatusBadRequest, "invalid_grant")
	})
}

// TestDashPKCEStillEnforcedWhenSent checks the optional PKCE of the Dash
// client cannot be used to weaken a flow: a code_verifier for a code issued
// without a challenge is refused (PKCE downgrade), and a challenge that was
// sent anyway is verified (a wrong or missing verifier is refused, the
// right one accepted).
//
// Dash's token request has no code_verifier, and the Dash style makes PKCE
// optional (docs/partners.md H7, H9). RFC 9700 §4.8.2: "authorization
// servers MUST mitigate PKCE downgrade attacks by ensuring that a token
// request containing a code_verifier parameter is accepted only if a
// code_challenge parameter was present in the authorization request". RFC
// 7636 §4.6: the server "MUST verify" the verifier against the challenge
// it recorded.
func TestDashPKCEStillEnforcedWhenSent(t *testing.T) {
	forEachStorePartner(t, dashConfig, func(t *testing.T, gw *gateway) {
		plain := "response_type=code&client_id=" + dashClientID + "&scope=trips&state=xyz"
		exchange := func(code, verifier string) *response {
			form := []string{"client_id", dashClientID, "client_secret", dashClientSecret, "code", code, "grant_type", "authorization_code"}
			if verifier != "" {
				form = append(form, "code_verifier", verifier)
			}
			return dashTokenRaw(t, gw, "application/x-www-form-urlencoded", orderedForm(form...))
		}

		t.Run("verifier without challenge", func(t *testing.T) {
			code := dashAuthorize(t, gw, plain, "xyz")
			verifier, _ := pythonPKCEPair(t)
			wantOAuthError(t, exchange(code, verifier), http.StatusBadRequest, "invalid_grant")
		})

		withChallenge := func(t *testing.T) (code, verifier string) {
			verifier, challenge := pythonPKCEPair(t)
			return dashAuthorize(t, gw, plain+"&code_challenge="+challenge+"&code_challenge_method=S256", "xyz"), verifier
		}
		t.Run("challenge sent, wrong verifier", func(t *testing.T) {
			code, _ := withChallenge(t)
			other, _ := pythonPKCEPair(t)
			wantOAuthError(t, exchange(code, other), http.StatusBadRequest, "invalid_grant")
		})
		t.Run("challenge sent, no verifier", func(t *testing.T) {
			code, _ := withChallenge(t)
			wantOAuthError(t, dashTokenJSON(t, gw, code), http.StatusBadRequest, "invalid_grant")
		})
		t.Run("challenge sent, right verifier", func(t *testing.T) {
			code, verifier := withChallenge(t)
			wantAPIOK(t, dashTrips(t, gw, wantDashToken(t, exchange(code, verifier))))
		})
	})
}

// TestDashUnregisteredRedirectURIGetsErrorPage checks that an optional
// redirect_uri is still matched byte for byte when present: anything but a
// registered URI gets an error page and is never redirected.
//
// A redirect_uri that is sent must be the primary or one of the additional
// registered redirect URIs (docs/partners.md H6). RFC 6749 §4.1.2.1: on "a
// missing, invalid, or mismatching redirection URI … MUST NOT
// automatically redirect".
func TestDashUnregisteredRedirectURIGetsErrorPage(t *testing.T) {
	forEachStorePartner(t, dashConfig, func(t *testing.T, gw *gateway) {
		for _, uri := range []string{
			"https://evil.example.com/cb",
			"https://client.example.com/cb/",
			"http://client.example.com/cb",
			"https://client.example.com/cb?x=1",
			"https://client.example.com/CB",
		} {
			t.Run(uri, func(t *testing.T) {
				q := "response_type=code&client_id=" + dashClientID + "&scope=trips&state=xyz&redirect_uri=" + url.QueryEscape(uri)
				// Signed in, so that a wrongly accepted request would show
				// the consent page or redirect rather than the login form.
				b := newBrowser(t, gw)
				b.consentPage(gw.base + "/api/auth/authorize?response_type=code&client_id=" + dashClientID + "&scope=trips")
				wantErrorPage(t, b.get(gw.base+"/api/auth/authorize?"+q))
			})
		}
	})
}
