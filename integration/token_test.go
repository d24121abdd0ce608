package integration

import (
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// TestTokenInvalidRequest sends token requests with a missing or repeated
// parameter.
//
// A missing or malformed parameter is invalid_request (docs/partners.md
// D54). RFC 6749 §5.2 invalid_request: "missing a required parameter …
// repeats a parameter".
func TestTokenInvalidRequest(t *testing.T) {
	forEachStore(t, gatewayConfig{}, func(t *testing.T, gw *gateway) {
		a := newAuthRequest(gw.oauthConfig(oauth2.AuthStyleInParams, allScopes...))
		code := newBrowser(t, gw).authorize(a)
		valid := func() url.Values {
			return url.Values{
				"grant_type":    {"authorization_code"},
				"code":          {code},
				"redirect_uri":  {redirectURI},
				"code_verifier": {a.verifier},
			}
		}
		for _, tc := range []struct {
			name   string
			change func(url.Values)
		}{
			{"missing grant_type", func(f url.Values) { f.Del("grant_type") }},
			{"missing code", func(f url.Values) { f.Del("code") }},
			{"empty code", func(f url.Values) { f.Set("code", "") }},
			{"code twice", func(f url.Values) { f.Add("code", code) }},
			{"grant_type twice", func(f url.Values) { f.Add("grant_type", "authorization_code") }},
		} {
			t.Run(tc.name, func(t *testing.T) {
				f := valid()
				tc.change(f)
				wantOAuthError(t, gw.token(t, f), http.StatusBadRequest, "invalid_request")
			})
		}
		t.Run("refresh without refresh_token", func(t *testing.T) {
			wantOAuthError(t, gw.token(t, url.Values{"grant_type": {"refresh_token"}}), http.StatusBadRequest, "invalid_request")
		})
	})
}

// TestTokenInvalidClient presents wrong client credentials both ways.
//
// A wrong client_id/client_secret pair is invalid_client (docs/partners.md
// D30, D55): 401, with WWW-Authenticate: Basic when Basic was used (README
// "What partners get"; RFC 6749 §5.2).
func TestTokenInvalidClient(t *testing.T) {
	forEachStore(t, gatewayConfig{}, func(t *testing.T, gw *gateway) {
		a := newAuthRequest(gw.oauthConfig(oauth2.AuthStyleInParams, allScopes...))
		code := newBrowser(t, gw).authorize(a)
		grant := url.Values{
			"grant_type":    {"authorization_code"},
			"code":          {code},
			"redirect_uri":  {redirectURI},
			"code_verifier": {a.verifier},
		}
		for _, tc := range []struct {
			name       string
			auth       clientAuth
			id, secret string
		}{
			{"post: wrong secret", authPost, clientID, "wrong-secret"},
			{"post: unknown client", authPost, "ywc_unknown", clientSecret},
			{"post: empty secret", authPost, clientID, ""},
			{"basic: wrong secret", authBasic, clientID, "wrong-secret"},
			{"basic: unknown client", authBasic, "ywc_unknown", clientSecret},
			{"no client authentication", authNone, "", ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := gw.postForm(t, "/oauth/token", grant, tc.auth, tc.id, tc.secret)
				wantOAuthError(t, r, http.StatusUnauthorized, "invalid_client")
				ch := r.header.Get("WWW-Authenticate")
				if tc.auth == authBasic && !strings.HasPrefix(ch, "Basic") {
					t.Fatalf("WWW-Authenticate = %q, want Basic (RFC 6749 §5.2: \"MUST include the WWW-Authenticate response header field matching the authentication scheme used by the client\")\n%s", ch, r)
				}
			})
		}
		// Control: the code still exchanges with the right credentials, over
		// Basic — so the refusals above were about the client alone.
		r := gw.postForm(t, "/oauth/token", grant, authBasic, clientID, clientSecret)
		wantTokenResponse(t, r, strings.Join(allScopes, " "))
	})
}

// TestExpiredCodeIsInvalidGrant lets a code outlive a 2 s code_lifetime.
//
// Codes expire after 60 seconds, and an expired code is invalid_grant
// (docs/partners.md D26, D56); partners exchange the code at once (D62).
func TestExpiredCodeIsInvalidGrant(t *testing.T) {
	forEachStore(t, gatewayConfig{codeLifetime: "code_lifetime 2s"}, func(t *testing.T, gw *gateway) {
		conf := gw.oauthConfig(oauth2.AuthStyleInParams, allScopes...)
		b := newBrowser(t, gw)
		ctx := clientCtx(t)

		// Control: exchanged at once, a code works.
		a := newAuthRequest(conf)
		if _, err := conf.Exchange(ctx, b.authorize(a), oauth2.VerifierOption(a.verifier)); err != nil {
			t.Fatalf("exchanging a fresh code: %v", err)
		}

		a = newAuthRequest(conf)
		code := b.authorize(a)
		time.Sleep(3 * time.Second)
		_, err := conf.Exchange(ctx, code, oauth2.VerifierOption(a.verifier))
		wantRetrieveError(t, err, "invalid_grant")
	})
}

// TestReplayedCodeIsInvalidGrantAndRevokesItsTokens presents a code twice.
//
// Codes are single-use: a code presented a second time is invalid_grant,
// and every token issued from it is revoked (docs/partners.md D25; RFC
// 6749 §4.1.2).
func TestReplayedCodeIsInvalidGrantAndRevokesItsTokens(t *testing.T) {
	forEachStore(t, gatewayConfig{}, func(t *testing.T, gw *gateway) {
		conf := gw.oauthConfig(oauth2.AuthStyleInParams, allScopes...)
		b := newBrowser(t, gw)
		ctx := clientCtx(t)

		t.Run("sequential", func(t *testing.T) {
			a := newAuthRequest(conf)
			code := b.authorize(a)
			tok, err := conf.Exchange(ctx, code, oauth2.VerifierOption(a.verifier))
			if err != nil {
				t.Fatalf("first exchange: %v", err)
			}
			wantUserinfoOK(t, gw.userinfo(t, bearer(tok.AccessToken)))

			_, err = conf.Exchange(ctx, code, oauth2.VerifierOption(a.verifier))
			wantRetrieveError(t, err, "invalid_grant")

			wantBearerError(t, gw.userinfo(t, bearer(tok.AccessToken)), http.StatusUnauthorized, "invalid_token")
			_, err = refresh(t, conf, tok.RefreshToken)
			wantRetrieveError(t, err, "invalid_grant")
		})

		// Single use must hold when the presentations race: at most one
		// gets tokens, and since the code was presented again those tokens
		// are revoked too.
		t.Run("concurrent", func(t *testing.T) {
			a := newAuthRequest(conf)
			code := b.authorize(a)
			const n = 6
			rs := race(t, n, func() *http.Request {
				req, _ := gw.formRequest(t, "/oauth/token", url.Values{
					"grant_type":    {"authorization_code"},
					"code":          {code},
					"redirect_uri":  {redirectURI},
					"code_verifier": {a.verifier},
				}, authPost, clientID, clientSecret)
				return req
			})
			var winners []map[string]any
			for _, r := range rs {
				if r.status == http.StatusOK {
					winners = append(winners, r.json(t))
					continue
				}
				wantOAuthError(t, r, http.StatusBadRequest, "invalid_grant")
			}
			if len(winners) > 1 {
				t.Fatalf("%d of %d concurrent exchanges of one code succeeded, want at most one", len(winners), n)
			}
			for _, w := range winners {
				wantBearerError(t, gw.userinfo(t, bearer(w["access_token"].(string))), http.StatusUnauthorized, "invalid_token")
				wantOAuthError(t, gw.refreshRaw(t, w["refresh_token"].(string), ""), http.StatusBadRequest, "invalid_grant")
			}
		})
	})
}

// race sends n requests built by mk at the same moment and returns the
// responses.
func race(t *testing.T, n int, mk func() *http.Request) []*response {
	t.Helper()
	reqs := make([]*http.Request, n)
	for i := range reqs {
		reqs[i] = mk()
	}
	// One connection per request, opened before the start signal, so the
	// requests reach the gateway together.
	tr := &http.Transport{MaxIdleConnsPerHost: n, DisableCompression: true}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	var warm sync.WaitGroup
	for i := 0; i < n; i++ {
		warm.Add(1)
		go func() {
			defer warm.Done()
			if resp, err := c.Get(reqs[0].URL.Scheme + "://" + reqs[0].URL.Host + "/"); err == nil {
				resp.Body.Close()
			}
		}()
	}
	warm.Wait()

	out := make([]*response, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range reqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			resp, err := c.Do(reqs[i])
			if err != nil {
				errs[i] = err
				return
			}
			defer resp.Body.Close()
			var sb strings.Builder
			buf := make([]byte, 4096)
			for {
				k, err := resp.Body.Read(buf)
				sb.Write(buf[:k])
				if err != nil {
					break
				}
			}
			out[i] = &response{req: "concurrent POST " + reqs[i].URL.Path, status: resp.StatusCode, header: resp.Header, body: []byte(sb.String())}
		}()
	}
	close(start)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("concurrent request: %v", err)
		}
	}
	return out
}

// TestRedirectURIMustMatchAuthorize exchanges codes with a redirect_uri
// that differs from the authorize one.
//
// The redirect_uri at token exchange must exactly equal the one passed at
// authorize, trailing slashes included; otherwise invalid_grant
// (docs/partners.md D16, D27, D56; RFC 6749 §4.1.3).
func TestRedirectURIMustMatchAuthorize(t *testing.T) {
	forEachStore(t, gatewayConfig{}, func(t *testing.T, gw *gateway) {
		conf := gw.oauthConfig(oauth2.AuthStyleInParams, allScopes...)
		b := newBrowser(t, gw)
		for _, tc := range []struct{ name, redirect string }{
			{"trailing slash", redirectURI + "/"},
			{"other path", "http://localhost:9999/other"},
			{"127.0.0.1 for localhost", "http://127.0.0.1:9999/callback"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				a := newAuthRequest(conf)
				code := b.authorize(a)
				wrong := *conf
				wrong.RedirectURL = tc.redirect
				_, err := wrong.Exchange(clientCtx(t), code, oauth2.VerifierOption(a.verifier))
				wantRetrieveError(t, err, "invalid_grant")
			})
		}
		t.Run("missing", func(t *testing.T) {
			a := newAuthRequest(conf)
			r := gw.exchange(t, b.authorize(a), a.verifier, "")
			// RFC 6749 §4.1.3: "REQUIRED, if the redirect_uri parameter was
			// included in the authorization request". Missing is either a
			// missing parameter or a mismatch; it must not succeed.
			if m := r.json(t); r.status != http.StatusBadRequest || (m["error"] != "invalid_grant" && m["error"] != "invalid_request") {
				t.Fatalf("exchange without redirect_uri: want 400 invalid_grant or invalid_request:\n%s", r)
			}
		})
		t.Run("control", func(t *testing.T) {
			a := newAuthRequest(conf)
			if _, err := conf.Exchange(clientCtx(t), b.authorize(a), oauth2.VerifierOption(a.verifier)); err != nil {
				t.Fatalf("exchange with the exact redirect_uri: %v", err)
			}
		})
	})
}

// TestPKCEVerifierMustMatch exchanges codes with verifiers that do not
// match the challenge or are not valid verifiers.
//
// The code_verifier is a high-entropy string of 43–128 unreserved
// characters, checked against the challenge per RFC 7636 S256; a
// mismatched verifier is invalid_grant (docs/partners.md D20, D28, D56;
// docs/architecture.md §3.2; RFC 7636 §4.1, §4.6).
func TestPKCEVerifierMustMatch(t *testing.T) {
	forEachStore(t, gatewayConfig{}, func(t *testing.T, gw *gateway) {
		conf := gw.oauthConfig(oauth2.AuthStyleInParams, allScopes...)
		b := newBrowser(t, gw)
		ctx := clientCtx(t)

		t.Run("another verifier", func(t *testing.T) {
			a := newAuthRequest(conf)
			_, err := conf.Exchange(ctx, b.authorize(a), oauth2.VerifierOption(oauth2.GenerateVerifier()))
			wantRetrieveError(t, err, "invalid_grant")
		})
		t.Run("the challenge as verifier", func(t *testing.T) {
			a := newAuthRequest(conf)
			_, err := conf.Exchange(ctx, b.authorize(a), oauth2.VerifierOption(oauth2.S256ChallengeFromVerifier(a.verifier)))
			wantRetrieveError(t, err, "invalid_grant")
		})
		t.Run("missing verifier", func(t *testing.T) {
			a := newAuthRequest(conf)
			r := gw.exchange(t, b.authorize(a), "", redirectURI)
			if m := r.json(t); r.status != http.StatusBadRequest || (m["error"] != "invalid_grant" && m["error"] != "invalid_request") {
				t.Fatalf("exchange without code_verifier: want 400 invalid_grant or invalid_request:\n%s", r)
			}
		})
		// Verifiers whose S256 does match the challenge but which are not
		// verifiers RFC 7636 §4.1 allows: the length and alphabet rules
		// must be enforced, not just the hash.
		for _, tc := range []struct{ name, verifier string }{
			{"42 characters", strings.Repeat("a", 42)},
			{"129 characters", strings.Repeat("a", 129)},
			{"character outside the unreserved set", strings.Repeat("a", 42) + "+"},
			{"space inside", strings.Repeat("a", 21) + " " + strings.Repeat("a", 21)},
		} {
			t.Run(tc.name, func(t *testing.T) {
				a := newAuthRequestWith(conf, "st-"+oauth2.GenerateVerifier()[:8], tc.verifier)
				r := gw.exchange(t, b.authorize(a), tc.verifier, redirectURI)
				if m := r.json(t); r.status != http.StatusBadRequest || (m["error"] != "invalid_grant" && m["error"] != "invalid_request") {
					t.Fatalf("verifier %q (%d chars) accepted or wrongly refused: want 400 invalid_grant or invalid_request:\n%s", tc.verifier, len(tc.verifier), r)
				}
			})
		}
		t.Run("128-character verifier is accepted", func(t *testing.T) {
			v := strings.Repeat("A1-._~z", 19)[:128]
			a := newAuthRequestWith(conf, "st-"+oauth2.GenerateVerifier()[:8], v)
			wantTokenResponse(t, gw.exchange(t, b.authorize(a), v, redirectURI), strings.Join(allScopes, " "))
		})
		t.Run("43-character verifier is accepted", func(t *testing.T) {
			v := strings.Repeat("A1-._~z", 7)[:43]
			a := newAuthRequestWith(conf, "st-"+oauth2.GenerateVerifier()[:8], v)
			wantTokenResponse(t, gw.exchange(t, b.authorize(a), v, redirectURI), strings.Join(allScopes, " "))
		})
	})
}

// TestUnsupportedGrantType asks for grants the gateway does not offer.
//
// No API keys and no client-credentials grant: anything other than
// authorization_code or refresh_token is unsupported_grant_type
// (docs/partners.md D5, D57; RFC 6749 §5.2).
func TestUnsupportedGrantType(t *testing.T) {
	forEachStore(t, gatewayConfig{}, func(t *testing.T, gw *gateway) {
		for _, g := range []string{
			"client_credentials",
			"password",
			"implicit",
			"urn:ietf:params:oauth:grant-type:device_code",
			"urn:ietf:params:oauth:grant-type:jwt-bearer",
		} {
			t.Run(g, func(t *testing.T) {
				f := url.Values{"grant_type": {g}, "username": {username}, "password": {password}, "scope": {"profile:read"}}
				wantOAuthError(t, gw.token(t, f), http.StatusBadRequest, "unsupported_grant_type")
			})
		}
		t.Run("password grant with golang.org/x/oauth2", func(t *testing.T) {
			conf := gw.oauthConfig(oauth2.AuthStyleInParams, "profile:read")
			_, err := conf.PasswordCredentialsToken(clientCtx(t), username, password)
			wantRetrieveError(t, err, "unsupported_grant_type")
		})
	})
}
