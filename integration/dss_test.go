package integration

import (
	"net/http"
	"strings"
	"testing"
)

// TestDSSPythonPKCEPairMatchesRFC7636 checks the Go rendering of the python
// one-liners DSS gives partners for making a PKCE pair against the RFC 7636
// reference vector, and the verifier's shape: a high-entropy random string
// of 43–128 characters whose challenge is base64url(sha256(verifier))
// (docs/partners.md D20; RFC 7636 §4.1, §4.2, Appendix B).
func TestDSSPythonPKCEPairMatchesRFC7636(t *testing.T) {
	// RFC 7636 Appendix B.
	if got := pythonChallenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"); got != "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM" {
		t.Fatalf("challenge of the RFC 7636 vector = %q", got)
	}
	v, c := pythonPKCEPair(t)
	if len(v) != 64 || strings.Trim(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
		t.Fatalf("verifier %q: want 64 base64url characters (token_urlsafe(64)[:64])", v)
	}
	if len(c) != 43 {
		t.Fatalf("challenge %q: want 43 characters", c)
	}
}

// TestDSSCurlCommandsReplayed replays the DSS partner flow as DSS's shell
// examples send it, against Caddyfile.example: a PKCE pair made as the
// python one-liners make it, the authorize URL (step 1), the code exchange
// (step 2: client_secret_post, the six -d arguments grant_type, code,
// redirect_uri, client_id, client_secret, code_verifier in that order, sent
// unencoded as curl -d sends them), the API call (step 3), a refresh and a
// revocation. The README's "Walk-through: the partner flow with curl" shows
// the same session.
//
// Requirements: the code exchange as a form POST authenticated by client
// secret (docs/partners.md D9, D24); API calls with a bearer token, every
// authenticated response carrying X-RateLimit-Limit, X-RateLimit-Remaining
// and X-RateLimit-Reset (D47, D48); a refresh with grant_type=refresh_token,
// refresh_token, client_id and client_secret revokes the old access and
// refresh tokens and issues a new pair (D32, D33); a revocation with token,
// client_id and client_secret always answers 200 with no body, and revoking
// one token revokes the paired other (D38, D40).
func TestDSSCurlCommandsReplayed(t *testing.T) {
	forEachStorePartner(t, dssConfig, func(t *testing.T, gw *gateway) {
		for _, revokeWhich := range []string{"access token", "refresh token"} {
			t.Run("revoke "+revokeWhich, func(t *testing.T) {
				verifier, challenge := pythonPKCEPair(t)
				state, _ := pythonPKCEPair(t) // RANDOM_PER_REQUEST_CSRF_TOKEN
				state = state[:32]

				// Step 1, as DSS's example prints it (redirect_uri unencoded, scopes joined by '+').
				b := newBrowser(t, gw)
				consent := b.consentPage(gw.base + "/oauth/authorize?response_type=code" +
					"&client_id=" + clientID +
					"&redirect_uri=" + redirectURI +
					"&scope=profile:read+seatime:read+vessels:read" +
					"&state=" + state +
					"&code_challenge=" + challenge +
					"&code_challenge_method=S256")
				code := wantCode(t, b.allowTo(consent, redirectURI), state)

				// Step 2.
				tokens := curlPost(t, gw, "/oauth/token", curlData(
					"grant_type", "authorization_code",
					"code", code,
					"redirect_uri", redirectURI,
					"client_id", clientID,
					"client_secret", clientSecret,
					"code_verifier", verifier,
				))
				m := wantTokenResponse(t, tokens, strings.Join(allScopes, " "))
				access, refreshToken := m["access_token"].(string), m["refresh_token"].(string)

				// Step 3.
				wantDSSMe(t, gw, access)

				// Refreshing tokens.
				refreshed := curlPost(t, gw, "/oauth/token", curlData(
					"grant_type", "refresh_token",
					"refresh_token", refreshToken,
					"client_id", clientID,
					"client_secret", clientSecret,
				))
				n := wantTokenResponse(t, refreshed, strings.Join(allScopes, " "))
				if n["access_token"] == access || n["refresh_token"] == refreshToken {
					t.Fatalf("refresh did not issue a new pair:\n%s", refreshed)
				}
				wantBearerError(t, dssMe(t, gw, access), http.StatusUnauthorized, "invalid_token")
				wantDSSMe(t, gw, n["access_token"].(string))

				// Revoking a token.
				token := n["access_token"].(string)
				if revokeWhich == "refresh token" {
					token = n["refresh_token"].(string)
				}
				wantRevoked(t, curlPost(t, gw, "/oauth/revoke", curlData(
					"token", token,
					"client_id", clientID,
					"client_secret", clientSecret,
				)))
				wantBearerError(t, dssMe(t, gw, n["access_token"].(string)), http.StatusUnauthorized, "invalid_token")
				wantOAuthError(t, curlPost(t, gw, "/oauth/token", curlData(
					"grant_type", "refresh_token",
					"refresh_token", n["refresh_token"].(string),
					"client_id", clientID,
					"client_secret", clientSecret,
				)), http.StatusBadRequest, "invalid_grant")
			})
		}
	})
}

// curlPost is `curl -sS -X POST <gateway><path> -d …` with the -d
// arguments already joined.
func curlPost(t *testing.T, gw *gateway, path, data string) *response {
	t.Helper()
	req := curlRequest(t, http.MethodPost, gw.base+path, data)
	return send(t, req, describe(req, strings.ReplaceAll(data, clientSecret, "***")))
}

// dssMe is step 3 of the DSS flow: GET /v1/me with the access token
// (docs/partners.md D12, D47).
func dssMe(t *testing.T, gw *gateway, accessToken string) *response {
	t.Helper()
	req := curlRequest(t, http.MethodGet, gw.base+"/v1/me", "")
	req.Header.Set("Authorization", "Bearer "+accessToken)
	return send(t, req, describe(req, ""))
}

func wantDSSMe(t *testing.T, gw *gateway, accessToken string) {
	t.Helper()
	r := dssMe(t, gw, accessToken)
	wantAPIOK(t, r)
	for _, h := range []string{"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"} {
		if r.header.Get(h) == "" {
			t.Fatalf("no %s (docs/partners.md D48: every authenticated response carries it):\n%s", h, r)
		}
	}
}
