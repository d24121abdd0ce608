package caddymodule

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// With `users caddy_auth` the gateway takes no password: a sign-in form
// posted to the connections page or to the authorization endpoint is
// refused 400 and signs nobody in, since the user must come from the
// preceding auth handler (README "Configuration reference").
func TestSignInFormRefusedWithoutPasswords(t *testing.T) {
	const msg = "Signing in is not expected here."
	a, _ := newTestApp(t)
	a.users = CaddyAuthUsers{}
	creds := url.Values{"username": {"alice"}, "password": {"alice-password"}}

	t.Run("connections page", func(t *testing.T) {
		page := connections(t, a, http.MethodGet, nil)
		form := url.Values{"csrf": {csrfOf(t, page)}}
		for k, v := range creds {
			form[k] = v
		}
		w := connections(t, a, http.MethodPost, form, page.Result().Cookies()...)
		wantPage(t, w, http.StatusBadRequest)
		if !strings.Contains(w.Body.String(), msg) {
			t.Errorf("the page does not say %q: %s", msg, w.Body)
		}
		for _, c := range w.Result().Cookies() {
			if c.Name == sessionCookie {
				t.Errorf("a session cookie was set: %v", c)
			}
		}
	})
	t.Run("authorization endpoint", func(t *testing.T) {
		form := url.Values{"tx": {sealedPrefix + "anything"}}
		for k, v := range creds {
			form[k] = v
		}
		r := httptest.NewRequest(http.MethodPost, "/oauth/authorize", strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		w := httptest.NewRecorder()
		if err := (&Authorize{appRef{a}}).ServeHTTP(w, r, nil); err != nil {
			t.Fatal(err)
		}
		wantPage(t, w, http.StatusBadRequest)
		if !strings.Contains(w.Body.String(), msg) || len(w.Result().Cookies()) != 0 {
			t.Errorf("cookies %v, page %s; want no cookie and %q", w.Result().Cookies(), w.Body, msg)
		}
	})
}
