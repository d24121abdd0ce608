package integration

import (
	"net/http"
	"testing"

	"golang.org/x/oauth2"

	"github.com/tollgate/tollgate/caddymodule/store/storetest"
)

// basicAuth signs every request of a browser in to the preceding Caddy
// auth handler, as a browser that remembered the credentials would.
type basicAuth struct {
	user, pass string
	next       http.RoundTripper
}

func (b basicAuth) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.SetBasicAuth(b.user, b.pass)
	return b.next.RoundTrip(r)
}

// `users caddy_auth` takes a user already signed in by a preceding Caddy
// auth handler, with the subject from {http.auth.user.id} (README
// "Configuration reference"; docs/architecture.md §2.1; docs/partners.md
// D7). With `users caddy_auth` behind basic_auth, the consent screen comes
// straight away (no Tollgate login form), the grant belongs to the
// handler's user, and without the handler's credentials nothing is shown.
func TestCaddyAuthUsersSkipTheLoginForm(t *testing.T) {
	t.Parallel()
	for _, s := range stores {
		t.Run(s, func(t *testing.T) {
			t.Parallel()
			storeURL := ""
			if s == "redis" {
				storeURL = storetest.StartRedis(t)
			}
			gw, err := launchAt(t, s, storeURL, repoRoot+"/integration/testdata/caddyauth.Caddyfile", "/oauth/token")
			if err != nil {
				t.Fatal(err)
			}
			conf := gw.oauthConfig(oauth2.AuthStyleInParams, "profile:read")
			a := newAuthRequest(conf)

			anonymous := newBrowser(t, gw)
			if p := anonymous.get(a.url); p.status != http.StatusUnauthorized || p.isConsent() {
				t.Fatalf("without basic auth: want basic_auth's 401, got:\n%s", p)
			}

			b := newBrowser(t, gw)
			b.client.Transport = basicAuth{"alice", "alice-password", http.DefaultTransport}
			consent := b.get(a.url)
			if consent.status != http.StatusOK || !consent.isConsent() || consent.isLogin() {
				t.Fatalf("want the consent screen without a login form:\n%s", consent)
			}
			code := b.authorize(a)
			tok, err := conf.Exchange(clientCtx(t), code, oauth2.VerifierOption(a.verifier))
			if err != nil {
				t.Fatal(err)
			}
			info := gw.userinfo(t, "Bearer "+tok.AccessToken).json(t)
			if info["sub"] != "alice" {
				t.Fatalf("userinfo sub = %v, want the basic_auth user alice", info["sub"])
			}
		})
	}
}
