package caddymodule

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/caddymodule/oauth"
)

const connectionsPath = "/account/connections"

// sessionOf signs subject in as the sign-in form does and returns the
// session cookie.
func sessionOf(t *testing.T, a *App, subject string) *http.Cookie {
	t.Helper()
	w := httptest.NewRecorder()
	if _, err := a.newSession(t.Context(), w, httptest.NewRequest(http.MethodGet, connectionsPath, nil), subject); err != nil {
		t.Fatal(err)
	}
	return w.Result().Cookies()[0]
}

// connections sends a request to the connected-apps page with the given
// cookies; a non-nil form is posted.
func connections(t *testing.T, a *App, method string, form url.Values, cookies ...*http.Cookie) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, connectionsPath, nil)
	if form != nil {
		r = httptest.NewRequest(method, connectionsPath, strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for _, c := range cookies {
		r.AddCookie(c)
	}
	w := httptest.NewRecorder()
	if err := (&Connections{appRef{a}}).ServeHTTP(w, r, nil); err != nil {
		t.Fatal(err)
	}
	return w
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrfOf returns the CSRF token of the page's forms.
func csrfOf(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	m := csrfField.FindStringSubmatch(w.Body.String())
	if m == nil {
		t.Fatalf("no CSRF field on the page: %d %s", w.Code, w.Body)
	}
	return m[1]
}

// wantPage checks an HTML page answer with the headers every page of the
// gateway carries: never cached, never framed (RFC 6819 §4.4.1.9).
func wantPage(t *testing.T, w *httptest.ResponseRecorder, status int) {
	t.Helper()
	if w.Code != status {
		t.Fatalf("status %d, want %d: %s", w.Code, status, w.Body)
	}
	h := w.Header()
	if !strings.HasPrefix(h.Get("Content-Type"), "text/html") || h.Get("Cache-Control") != "no-store" ||
		h.Get("X-Frame-Options") != "DENY" || !strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
		t.Errorf("page headers %v", h)
	}
}

// The page lists the apps the signed-in user connected, with the scopes
// in plain English and a Disconnect button each, and no one else's
// (docs/partners.md D42). A visitor who has not signed in gets the
// sign-in form.
func TestConnectionsListsTheSignedInUsersApps(t *testing.T) {
	a, _ := newTestApp(t)
	issue(t, a, "partner", testSecret, "profile:read", "seatime:read")
	if _, err := a.grantCode(t.Context(), &pending{ClientID: "other", RedirectURI: "https://other.example.com/cb", Scopes: []string{"profile:read"}, Subject: "bob"}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		subject      string
		want, absent []string
	}{
		{"alice", []string{"Signed in as <strong>alice</strong>", `name="disconnect" value="partner"`, "Name <small>(profile:read)</small>", "Sea time <small>(seatime:read)</small>"}, []string{`value="other"`}},
		{"bob", []string{"Signed in as <strong>bob</strong>", `name="disconnect" value="other"`}, []string{`value="partner"`, "Sea time"}},
		{"carol", []string{"No app is connected to your account."}, []string{`name="disconnect"`}},
	} {
		t.Run(tc.subject, func(t *testing.T) {
			w := connections(t, a, http.MethodGet, nil, sessionOf(t, a, tc.subject))
			wantPage(t, w, http.StatusOK)
			for _, s := range tc.want {
				if !strings.Contains(w.Body.String(), s) {
					t.Errorf("the page lacks %q", s)
				}
			}
			for _, s := range tc.absent {
				if strings.Contains(w.Body.String(), s) {
					t.Errorf("the page shows %q", s)
				}
			}
		})
	}
	t.Run("signed out", func(t *testing.T) {
		w := connections(t, a, http.MethodGet, nil)
		wantPage(t, w, http.StatusOK)
		if !strings.Contains(w.Body.String(), `name="password"`) || strings.Contains(w.Body.String(), `name="disconnect"`) {
			t.Fatalf("want the sign-in form and no app: %s", w.Body)
		}
		csrfOf(t, w)
		if c := w.Result().Cookies(); len(c) != 1 || c[0].Name != loginCookie || !c[0].HttpOnly {
			t.Fatalf("cookies %v, want the HttpOnly login cookie the form's CSRF token is bound to", c)
		}
	})
}

// Disconnect revokes every token of that app for that user at once and
// queues the app's signed user.consent.revoked webhook (docs/partners.md
// D43, D44), then redirects back to the page (Post/Redirect/Get). It takes
// the CSRF token of the page shown to this browser's session: a form
// posted from another site, or with another session's token, changes
// nothing.
func TestConnectionsDisconnect(t *testing.T) {
	for _, tc := range []struct {
		name string
		// form builds the post and the cookies it is sent with.
		form    func(t *testing.T, a *App) (url.Values, []*http.Cookie)
		status  int
		revoked bool
	}{
		{"with the page's CSRF token, the app is disconnected", func(t *testing.T, a *App) (url.Values, []*http.Cookie) {
			c := sessionOf(t, a, "alice")
			return url.Values{"csrf": {csrfOf(t, connections(t, a, http.MethodGet, nil, c))}, "disconnect": {"partner"}}, []*http.Cookie{c}
		}, http.StatusSeeOther, true},
		{"without a CSRF token, nothing happens", func(t *testing.T, a *App) (url.Values, []*http.Cookie) {
			return url.Values{"disconnect": {"partner"}}, []*http.Cookie{sessionOf(t, a, "alice")}
		}, http.StatusForbidden, false},
		{"with the CSRF token of another session, nothing happens", func(t *testing.T, a *App) (url.Values, []*http.Cookie) {
			theirs := csrfOf(t, connections(t, a, http.MethodGet, nil, sessionOf(t, a, "alice")))
			return url.Values{"csrf": {theirs}, "disconnect": {"partner"}}, []*http.Cookie{sessionOf(t, a, "alice")}
		}, http.StatusForbidden, false},
		{"signed out, with the sign-in form's CSRF token, nothing happens", func(t *testing.T, a *App) (url.Values, []*http.Cookie) {
			w := connections(t, a, http.MethodGet, nil)
			return url.Values{"csrf": {csrfOf(t, w)}, "disconnect": {"partner"}}, w.Result().Cookies()
		}, http.StatusSeeOther, false},
		{"an app the user has not connected is no error", func(t *testing.T, a *App) (url.Values, []*http.Cookie) {
			c := sessionOf(t, a, "alice")
			return url.Values{"csrf": {csrfOf(t, connections(t, a, http.MethodGet, nil, c))}, "disconnect": {"nobody"}}, []*http.Cookie{c}
		}, http.StatusSeeOther, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, _ := newTestApp(t)
			a.clients["partner"].webhook = &webhookTarget{url: "https://partner.example.com/hooks", secret: []byte("0123456789abcdef0123456789abcdef")}
			mine := issue(t, a, "partner", testSecret, "profile:read")
			elsewhere := issue(t, a, "other", otherSecret, "profile:read")
			form, cookies := tc.form(t, a)
			w := connections(t, a, http.MethodPost, form, cookies...)
			if tc.status == http.StatusSeeOther {
				if w.Code != http.StatusSeeOther || w.Header().Get("Location") != connectionsPath {
					t.Fatalf("%d Location %q, want 303 to %s", w.Code, w.Header().Get("Location"), connectionsPath)
				}
			} else {
				wantPage(t, w, tc.status)
			}
			for _, tok := range []string{mine.AccessToken, mine.RefreshToken} {
				if active(t, a, "partner", testSecret, tok) == tc.revoked {
					t.Errorf("%s… of the app active = %v, want %v", tok[:8], tc.revoked, !tc.revoked)
				}
			}
			if !active(t, a, "other", otherSecret, elsewhere.AccessToken) {
				t.Error("the user's other app was disconnected too")
			}
			events, err := a.webhooks.Queue.ClaimEvents(t.Context(), "test", 10, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case !tc.revoked && len(events) != 0:
				t.Errorf("%d webhook events queued, want none", len(events))
			case tc.revoked && (len(events) != 1 || !strings.Contains(string(events[0].Payload), `"type":"user.consent.revoked"`) ||
				!strings.Contains(string(events[0].Payload), `"client_id":"partner"`) || !strings.Contains(string(events[0].Payload), `"subject":"alice"`)):
				t.Errorf("queued %d events %v, want alice's user.consent.revoked for partner", len(events), events)
			}
		})
	}
}

// Methods other than GET, HEAD and POST are 405 with Allow; a store that
// fails is a 503 page with Retry-After, never a page that says the user
// has no apps (docs/architecture.md §8.1).
func TestConnectionsRefusals(t *testing.T) {
	a, _ := newTestApp(t)
	c := sessionOf(t, a, "alice")
	w := connections(t, a, http.MethodDelete, nil, c)
	wantPage(t, w, http.StatusMethodNotAllowed)
	if allow := w.Header().Get("Allow"); allow != "GET, HEAD, POST" {
		t.Errorf("Allow %q, want GET, HEAD, POST", allow)
	}
	closeStore(a)
	w = connections(t, a, http.MethodGet, nil, c)
	wantPage(t, w, http.StatusServiceUnavailable)
	if w.Header().Get("Retry-After") != "5" || !strings.Contains(w.Body.String(), oauth.TemporarilyUnavailable) {
		t.Errorf("Retry-After %q, body %s; want 5 and temporarily_unavailable", w.Header().Get("Retry-After"), w.Body)
	}
}
