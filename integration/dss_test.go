package integration

import (
	"net/http"
	"strings"
	"testing"
)

// TestDSSPythonPKCEPairMatchesRFC7636 checks the Go rendering of seed 002's
// python one-liners against the reference vector they are said to follow,
// and the verifier's shape.
//
// 002 Generating a PKCE pair: "The reference vectors come from RFC 7636
// §4.4." "code_verifier — a high-entropy random string, 43-128 chars".
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

// TestDSSCurlCommandsReplayed replays seed 002's shell session literally
// against Caddyfile.example: a PKCE pair made as the python one-liners make
// it, the Step 1 authorize URL, the Step 2 curl (client_secret_post, the six
// -d arguments in the document's order, sent unencoded as curl -d sends
// them), the Step 3 API call, the curl of "Refreshing tokens" and the curl
// of "Revoking a token".
//
// 002 Step 2: "curl -sS -X POST https://api.digitalseaservice.com/oauth/token
// -d grant_type=authorization_code -d code="$CODE" -d redirect_uri=… -d
// client_id="$CLIENT_ID" -d client_secret="$CLIENT_SECRET" -d
// code_verifier="$CODE_VERIFIER"". Step 3: "GET /v1/me … Authorization:
// Bearer …"; "Every authenticated response carries X-RateLimit-Limit,
// X-RateLimit-Remaining, and X-RateLimit-Reset headers." Refreshing tokens:
// "-d grant_type=refresh_token -d refresh_token="$REFRESH_TOKEN" -d
// client_id -d client_secret"; "Every successful refresh revokes both the
// old access token and the old refresh token, and issues a new pair."
// Revoking a token: "-d token="$ACCESS_TOKEN_OR_REFRESH" -d client_id -d
// client_secret"; "the response is always 200 OK with no body"; "Revoking
// one revokes the paired other."
func TestDSSCurlCommandsReplayed(t *testing.T) {
	forEachStorePartner(t, dssConfig, func(t *testing.T, gw *gateway) {
		for _, revokeWhich := range []string{"access token", "refresh token"} {
			t.Run("revoke "+revokeWhich, func(t *testing.T) {
				verifier, challenge := pythonPKCEPair(t)
				state, _ := pythonPKCEPair(t) // RANDOM_PER_REQUEST_CSRF_TOKEN
				state = state[:32]

				// Step 1, as printed (redirect_uri unencoded, scopes joined by '+').
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

// dssMe is 002 Step 3: GET /v1/me with the access token.
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
			t.Fatalf("no %s (002 Step 3: \"Every authenticated response carries\" it):\n%s", h, r)
		}
	}
}
