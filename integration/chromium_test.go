package integration

import (
	"context"
	"errors"
	"fmt"
	"html"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"golang.org/x/oauth2"
)

// chromiumPath is Debian's Chromium (apt-get install chromium). The house
// rule is "a real headless Chromium where a page is tested", so a missing
// browser fails the test rather than skipping it; `make test` installs it.
const chromiumPath = "/usr/bin/chromium"

// chromiumBudget bounds the whole browser session: the browser is started
// on a context with this deadline, so a hung step cannot hold the suite.
const chromiumBudget = 30 * time.Second

// TestChromiumConsentAndConnections drives the sign-in form, the consent
// screen and the connected-apps page in a real headless Chromium, end to
// end: the partner's golang.org/x/oauth2 request, the user's clicks, the
// 303 back to the partner, the code exchange, and the Disconnect button.
//
// It is not parallel on purpose: Go runs the sequential tests before it
// releases the parallel ones, so the browser starts on a quiet machine.
func TestChromiumConsentAndConnections(t *testing.T) {
	cr := newChromium(t)
	gw := startGateway(t, "memory", gatewayConfig{})

	// 1. Authorization Code + PKCE, in the browser.
	conf := gw.oauthConfig(oauth2.AuthStyleInParams, allScopes...)
	a := newAuthRequest(conf)

	login := cr.navigate("open the authorization URL", a.url)
	if login.Status != http.StatusOK {
		t.Fatalf("GET %s: status %d, want 200 and the sign-in form", a.url, login.Status)
	}
	cr.do("wait for the sign-in form",
		chromedp.WaitVisible(chromedp.CSS(`form input[name="username"]`)),
		chromedp.WaitVisible(chromedp.CSS(`form input[name="password"][type="password"]`)),
	)
	if text := cr.text("read the sign-in page"); !strings.Contains(text, "Sign in to continue to "+clientName) {
		t.Fatalf("sign-in page does not name the client %q; it reads:\n%s", clientName, text)
	}
	cr.do("type the credentials",
		chromedp.SendKeys(chromedp.CSS(`input[name="username"]`), username),
		chromedp.SendKeys(chromedp.CSS(`input[name="password"]`), password),
	)
	consent := cr.clickAndLoad("click Sign in", `//form//button[normalize-space()="Sign in"]`)
	if consent.Status != http.StatusOK {
		t.Fatalf("after Sign in: status %d, want 200 and the consent page", consent.Status)
	}
	cr.do("wait for the consent form",
		chromedp.WaitVisible(chromedp.CSS(`button[name="decision"][value="allow"]`)),
		chromedp.WaitVisible(chromedp.CSS(`button[name="decision"][value="deny"]`)),
	)
	text := cr.text("read the consent page")
	for _, want := range []string{clientName + " wants to access your account", "Signed in as Alice Mariner (" + username + ")"} {
		if !strings.Contains(text, want) {
			t.Errorf("consent page lacks %q; it reads:\n%s", want, text)
		}
	}
	for _, s := range allScopes {
		if !strings.Contains(text, scopeText[s]) || !strings.Contains(text, s) {
			t.Errorf("consent page lacks scope %s (%q); it reads:\n%s", s, scopeText[s], text)
		}
	}
	cr.screenshot("consent")

	// 3. What the browser is told about the consent page and the session:
	// no framing, and a session cookie that scripts cannot read.
	wantUnframeable(t, "consent page", consent)
	cr.wantHTTPOnlySession(gw)
	cr.wantFramingRefused(gw, newAuthRequest(conf).url)
	if t.Failed() {
		t.FailNow()
	}

	// Allow: the gateway answers 303 to the registered redirect URI, where
	// nothing listens, so the final URL is read from the navigation.
	callback := cr.clickAllow(gw)
	q := callback.Query()
	if got := q.Get("state"); got != a.state {
		t.Fatalf("callback state = %q, want %q (%s)", got, a.state, callback)
	}
	code := q.Get("code")
	if code == "" || q.Has("error") {
		t.Fatalf("callback without a code: %s", callback)
	}
	tok, err := conf.Exchange(clientCtx(t), code, oauth2.VerifierOption(a.verifier))
	if err != nil {
		t.Fatalf("exchanging the code from the browser's callback: %v", err)
	}
	if tok.AccessToken == "" || tok.RefreshToken == "" {
		t.Fatalf("token response without an access or refresh token: %+v", tok)
	}
	if got := scopeSet(fmt.Sprint(tok.Extra("scope"))); got != scopeSet(strings.Join(allScopes, " ")) {
		t.Errorf("granted scope = %q, want %q", got, strings.Join(allScopes, " "))
	}
	wantUserinfoOK(t, gw.userinfo(t, bearer(tok.AccessToken)))

	// 2. The connected-apps page, signed in by the same session cookie.
	conns := cr.navigate("open the connected-apps page", gw.base+"/oauth/connections")
	if conns.Status != http.StatusOK {
		t.Fatalf("GET /oauth/connections: status %d, want 200", conns.Status)
	}
	wantUnframeable(t, "connected-apps page", conns)
	cr.do("wait for the Disconnect button",
		chromedp.WaitVisible(chromedp.CSS(`button[name="disconnect"][value="`+clientID+`"]`)))
	text = cr.text("read the connected-apps page")
	for _, want := range []string{"Connected apps", "Signed in as Alice Mariner (" + username + ")", clientName, scopeText["seatime:read"]} {
		if !strings.Contains(text, want) {
			t.Errorf("connected-apps page lacks %q; it reads:\n%s", want, text)
		}
	}
	cr.screenshot("connections")

	after := cr.clickAndLoad("click Disconnect", `button[name="disconnect"]`)
	if after.Status != http.StatusOK || !strings.HasSuffix(after.URL, "/oauth/connections") {
		t.Fatalf("after Disconnect: landed on %s with status %d, want 200 on /oauth/connections (Post/Redirect/Get)", after.URL, after.Status)
	}
	text = cr.text("read the connected-apps page after Disconnect")
	if !strings.Contains(text, "No app is connected to your account.") || strings.Contains(text, clientName) {
		t.Fatalf("after Disconnect the page should say no app is connected; it reads:\n%s", text)
	}
	cr.screenshot("connections-empty")
	wantBearerError(t, gw.userinfo(t, bearer(tok.AccessToken)), http.StatusUnauthorized, "invalid_token")
}

// chromium is one headless Chromium with one tab, and what the test saw
// of its network traffic.
type chromium struct {
	t      *testing.T
	ctx    context.Context // the tab
	output *lockedBuffer   // the browser's stdout and stderr

	mu        sync.Mutex
	requests  []string           // every document request, for failure messages
	redirects []chromiumRedirect // every redirect of a document request
}

// chromiumRedirect is one HTTP redirect Chromium followed.
type chromiumRedirect struct {
	status   int64
	from     string
	location string
}

// newChromium starts the browser with the options this machine needs (no
// sandbox as root, no GPU, no outside network) on a fresh profile. It fails
// the test when Chromium is not installed.
func newChromium(t *testing.T) *chromium {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("this test drives a real headless Chromium at %s: %v\n"+
			"install Debian's Chromium with `apt-get install chromium` (`make test` does it)", chromiumPath, err)
	}
	profile := t.TempDir() // before the Cleanup below, so removed after the browser exits
	cr := &chromium{t: t, output: new(lockedBuffer)}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(960, 720),
		chromedp.CombinedOutput(cr.output),
	)
	root, cancelRoot := context.WithTimeout(context.Background(), chromiumBudget)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(root, opts...)
	ctx, cancelTab := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc() // waits for the browser process to exit
		cancelRoot()
		if t.Failed() {
			cr.mu.Lock()
			t.Logf("document requests seen by Chromium:\n%s", strings.Join(cr.requests, "\n"))
			cr.mu.Unlock()
			t.Logf("Chromium output without D-Bus noise (last %d lines):\n%s", logTail, tail(withoutDBus(cr.output.String()), logTail))
		}
	})
	cr.ctx = ctx
	start := time.Now()
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting %s: %v\noutput:\n%s", chromiumPath, err, cr.output.String())
	}
	if err := chromedp.Listen(ctx, cr.record); err != nil {
		t.Fatal(err)
	}
	t.Logf("Chromium started in %s", time.Since(start).Round(time.Millisecond))
	return cr
}

// record keeps a line per document request and response. It runs in the
// tab's event loop, so it only appends.
func (cr *chromium) record(ev any) {
	var line string
	switch ev := ev.(type) {
	case *network.EventRequestWillBeSent:
		if ev.Type != network.ResourceTypeDocument {
			return
		}
		if r := ev.RedirectResponse; r != nil {
			loc := cdpHeader(r.Headers, "Location")
			cr.mu.Lock()
			cr.redirects = append(cr.redirects, chromiumRedirect{status: r.Status, from: r.URL, location: loc})
			cr.requests = append(cr.requests, fmt.Sprintf("← %d %s Location: %s", r.Status, redactQuery(r.URL), redactQuery(loc)))
			cr.mu.Unlock()
		}
		line = fmt.Sprintf("→ %s %s", ev.Request.Method, redactQuery(ev.Request.URL))
	case *network.EventResponseReceived:
		if ev.Type != network.ResourceTypeDocument {
			return
		}
		line = fmt.Sprintf("← %d %s", ev.Response.Status, redactQuery(ev.Response.URL))
	case *network.EventLoadingFailed:
		if ev.Type != network.ResourceTypeDocument {
			return
		}
		line = fmt.Sprintf("✗ %s (blocked: %q)", ev.ErrorText, ev.BlockedReason)
	default:
		return
	}
	cr.mu.Lock()
	cr.requests = append(cr.requests, line)
	cr.mu.Unlock()
}

// withoutDBus drops the D-Bus complaints a headless Chromium prints on a
// machine without a bus.
func withoutDBus(out string) string {
	var keep []string
	for _, l := range strings.Split(out, "\n") {
		if !strings.Contains(l, ":ERROR:dbus/") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// redactQuery drops the query of a URL (codes, tokens) from the log.
func redactQuery(u string) string {
	if i := strings.IndexByte(u, '?'); i >= 0 {
		return u[:i] + "?…"
	}
	return u
}

// fail ends the test at a step that went wrong, with where the tab is.
func (cr *chromium) fail(step string, err error) {
	cr.t.Helper()
	where := "(unknown)"
	ctx, cancel := context.WithTimeout(cr.ctx, 2*time.Second)
	if loc, lerr := chromedp.Run(ctx, chromedp.Location()); lerr == nil {
		where = redactQuery(loc)
	}
	cancel()
	if errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("%w (the browser session has %s in all)", err, chromiumBudget)
	}
	cr.t.Fatalf("Chromium: %s: %v\n(tab at %s)", step, err, where)
}

// stepCtx bounds one step; the whole session is bounded by chromiumBudget.
func (cr *chromium) stepCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(cr.ctx, 15*time.Second)
}

func (cr *chromium) do(step string, actions ...chromedp.Action[chromedp.Void]) {
	cr.t.Helper()
	ctx, cancel := cr.stepCtx()
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		cr.fail(step, err)
	}
}

// navigate loads rawURL and returns the response of its document.
func (cr *chromium) navigate(step, rawURL string) *network.Response {
	cr.t.Helper()
	ctx, cancel := cr.stepCtx()
	defer cancel()
	resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(rawURL))
	if err == nil && resp == nil {
		err = errors.New("no document response")
	}
	if err != nil {
		cr.fail(step, err)
	}
	return resp
}

// clickAndLoad clicks the element sel selects (a Search selector: CSS or
// XPath) and returns the response of the document the click loads; after
// a redirect, that is the final one.
func (cr *chromium) clickAndLoad(step, sel string) *network.Response {
	cr.t.Helper()
	ctx, cancel := cr.stepCtx()
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, chromedp.Click(sel, chromedp.NodeVisible))
	if err == nil && resp == nil {
		err = errors.New("the click loaded no document")
	}
	if err != nil {
		cr.fail(step, err)
	}
	return resp
}

// text is the visible text of the page's <main>, whitespace collapsed.
func (cr *chromium) text(step string) string {
	cr.t.Helper()
	ctx, cancel := cr.stepCtx()
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("main")))
	if err != nil {
		cr.fail(step, err)
	}
	return strings.Join(strings.Fields(s), " ")
}

// screenshot saves the viewport as <name>.png in the test's temporary
// directory and, when TOLLGATE_SCREENSHOTS names a directory, there too.
func (cr *chromium) screenshot(name string) {
	cr.t.Helper()
	ctx, cancel := cr.stepCtx()
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		cr.fail("screenshot "+name, err)
	}
	if len(png) < 8 || string(png[1:4]) != "PNG" {
		cr.t.Fatalf("screenshot %s is not a PNG (%d bytes)", name, len(png))
	}
	path := filepath.Join(cr.t.TempDir(), name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		cr.t.Fatal(err)
	}
	cr.t.Logf("screenshot %s: %s (%d bytes)", name, path, len(png))
	if dir := os.Getenv("TOLLGATE_SCREENSHOTS"); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			cr.t.Fatal(err)
		}
		keep := filepath.Join(dir, "chromium-"+name+".png")
		if err := os.WriteFile(keep, png, 0o644); err != nil {
			cr.t.Fatal(err)
		}
		cr.t.Logf("screenshot %s copied to %s", name, keep)
	}
}

// wantUnframeable checks the headers that keep a page out of frames
// (clickjacking a consent button, RFC 6819 §4.4.1.9).
func wantUnframeable(t *testing.T, what string, r *network.Response) {
	t.Helper()
	if got := cdpHeader(r.Headers, "X-Frame-Options"); !strings.EqualFold(got, "DENY") {
		t.Errorf("%s: X-Frame-Options = %q, want DENY", what, got)
	}
	csp := cdpHeader(r.Headers, "Content-Security-Policy")
	if !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("%s: Content-Security-Policy = %q, want frame-ancestors 'none'", what, csp)
	}
}

// cdpHeader reads a response header as Chromium reports it (names as sent,
// repeated values joined by newlines).
func cdpHeader(h network.Headers, name string) string {
	for k, v := range h {
		if strings.EqualFold(k, name) {
			return fmt.Sprint(v)
		}
	}
	return ""
}

// wantHTTPOnlySession checks that the browser holds the session cookie and
// that the page's scripts cannot read it.
func (cr *chromium) wantHTTPOnlySession(gw *gateway) {
	cr.t.Helper()
	ctx, cancel := cr.stepCtx()
	defer cancel()
	jar, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{gw.base + "/oauth/authorize"}})
	if err != nil {
		cr.fail("read the browser's cookies", err)
	}
	var session *network.Cookie
	for _, c := range jar.Cookies {
		if c.Name == "tollgate_session" {
			session = c
		}
	}
	if session == nil {
		cr.t.Fatalf("the browser holds no tollgate_session cookie for %s after sign-in", gw.base)
	}
	if !session.HTTPOnly {
		cr.t.Errorf("tollgate_session cookie is not HttpOnly: %+v", session)
	}
	if session.SameSite != network.CookieSameSiteLax && session.SameSite != network.CookieSameSiteStrict {
		cr.t.Errorf("tollgate_session cookie SameSite = %q, want Lax or Strict", session.SameSite)
	}
	visible, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.cookie`))
	if err != nil {
		cr.fail("read document.cookie", err)
	}
	if strings.Contains(visible, "tollgate_session") {
		cr.t.Errorf("document.cookie shows the session cookie to scripts: %q", visible)
	}
}

// wantFramingRefused opens, in a second tab, a page of another origin on
// the same site (localhost, another port) that frames authURL next to a
// control frame without framing protection. Being same-site, the iframe's
// request carries the Lax session cookie, so the gateway answers it with
// the consent page; Chromium must refuse to render that, and render the
// control.
func (cr *chromium) wantFramingRefused(gw *gateway, authURL string) {
	cr.t.Helper()
	framer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		switch r.URL.Path {
		case "/":
			fmt.Fprintf(w, `<!doctype html><title>framer</title>
<iframe name="control" src="/frameable" width="400" height="200"></iframe>
<iframe name="gateway" src="%s" width="400" height="300"></iframe>`, html.EscapeString(authURL))
		case "/frameable":
			fmt.Fprint(w, `<!doctype html><p>frameable</p>`)
		default:
			http.NotFound(w, r)
		}
	}))
	defer framer.Close()
	framerBase := fmt.Sprintf("http://localhost:%d", framer.Listener.Addr().(*net.TCPAddr).Port)

	tab, closeTab := chromedp.NewContext(cr.ctx)
	defer closeTab()
	ctx, cancel := context.WithTimeout(tab, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx); err != nil {
		cr.fail("open a second tab", err)
	}

	// What happens to the iframe's request to the gateway.
	type framed struct {
		id          network.RequestID
		sessionSent bool
		status      int64
		failure     string
	}
	var mu sync.Mutex
	var got framed
	extra := map[network.RequestID]bool{} // request id → session cookie sent
	var consoleLines []string
	err := chromedp.Listen(ctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch ev := ev.(type) {
		case *network.EventRequestWillBeSent:
			if ev.Type == network.ResourceTypeDocument && strings.HasPrefix(ev.Request.URL, gw.base+"/oauth/authorize") {
				got.id = ev.RequestID
			}
		case *network.EventRequestWillBeSentExtraInfo:
			for _, c := range ev.AssociatedCookies {
				if c.Cookie != nil && c.Cookie.Name == "tollgate_session" && len(c.BlockedReasons) == 0 {
					extra[ev.RequestID] = true
				}
			}
		case *network.EventResponseReceived:
			if ev.RequestID == got.id {
				got.status = ev.Response.Status
			}
		case *network.EventLoadingFailed:
			if ev.RequestID == got.id {
				got.failure = ev.ErrorText
			}
		case *cdplog.EventEntryAdded:
			consoleLines = append(consoleLines, ev.Entry.Text)
		}
	})
	if err != nil {
		cr.fail("listen to the second tab", err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(framerBase+"/")); err != nil {
		cr.fail("open a page that frames the gateway", err)
	}
	// The load event can come before the last network events of a blocked
	// frame; give them a moment.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		mu.Lock()
		done := got.failure != ""
		mu.Unlock()
		if done {
			break
		}
	}
	tree, err := chromedp.Call(ctx, cdppage.GetFrameTree, cdp.Empty{})
	if err != nil {
		cr.fail("read the frame tree", err)
	}
	frames := map[string]*cdp.Frame{}
	for _, f := range tree.FrameTree.ChildFrames {
		frames[f.Frame.Name] = f.Frame
	}
	mu.Lock()
	defer mu.Unlock()
	got.sessionSent = extra[got.id]
	cr.t.Logf("framing the gateway: response %d, session cookie sent %v, load %q; browser said %q",
		got.status, got.sessionSent, got.failure, consoleLines)

	if f := frames["control"]; f == nil || f.URL != framerBase+"/frameable" {
		cr.t.Fatalf("the control iframe did not render (%+v): the framing check cannot be trusted", f)
	}
	if got.id == "" || got.status != http.StatusOK {
		cr.t.Fatalf("the iframe's request to the gateway got no 200 answer (request %q, status %d)", got.id, got.status)
	}
	if !got.sessionSent {
		cr.t.Errorf("the iframe's request did not carry the session cookie, so what was refused was not the consent page")
	}
	f := frames["gateway"]
	switch {
	case f == nil:
		cr.t.Errorf("no gateway iframe in the frame tree")
	case f.URL != "chrome-error://chromewebdata/" || f.UnreachableURL != authURL:
		cr.t.Errorf("Chromium rendered the gateway's page in an iframe of %s (frame url %q): "+
			"it must be refused by X-Frame-Options DENY / CSP frame-ancestors 'none'", framerBase, f.URL)
	}
	if got.failure != "net::ERR_BLOCKED_BY_RESPONSE" {
		cr.t.Errorf("the iframe's load ended with %q, want net::ERR_BLOCKED_BY_RESPONSE", got.failure)
	}
}

// clickAllow clicks Allow on the consent page and returns the URL the
// browser was sent to: the redirect URI with code and state. Nothing
// listens there, so Chromium commits an error page for it; the URL comes
// from the navigation events, and the redirect from the network events.
func (cr *chromium) clickAllow(gw *gateway) *url.URL {
	cr.t.Helper()
	ctx, cancel := cr.stepCtx()
	defer cancel()
	atCallback := func(ev cdppage.EventFrameNavigated) bool {
		f := ev.Frame
		return f.ParentID == "" && (strings.HasPrefix(f.URL, redirectURI+"?") || strings.HasPrefix(f.UnreachableURL, redirectURI+"?"))
	}
	nav, err := chromedp.Run(ctx, chromedp.WaitEvent(cdppage.FrameNavigated, atCallback,
		chromedp.Click(chromedp.CSS(`button[name="decision"][value="allow"]`), chromedp.NodeVisible)))
	if err != nil {
		cr.fail("click Allow and follow the redirect to "+redirectURI, err)
	}
	final := nav.Frame.URL
	if nav.Frame.UnreachableURL != "" {
		final = nav.Frame.UnreachableURL
	}
	cr.t.Logf("after Allow the tab is at %s (document %s)", redactQuery(final), nav.Frame.URL)

	// The gateway's answer to the consent form: 303 See Other to the
	// registered redirect URI, and it is what brought the browser there.
	cr.mu.Lock()
	var hop *chromiumRedirect
	for i := range cr.redirects {
		if strings.HasPrefix(cr.redirects[i].location, redirectURI+"?") {
			hop = &cr.redirects[i]
		}
	}
	cr.mu.Unlock()
	switch {
	case hop == nil:
		cr.t.Fatalf("Chromium reached %s without a redirect from the gateway", redactQuery(final))
	case hop.status != http.StatusSeeOther:
		cr.t.Errorf("consent form answered %d, want 303 See Other to the redirect URI", hop.status)
	case !strings.HasPrefix(hop.from, gw.base+"/oauth/authorize"):
		cr.t.Errorf("redirect to the callback came from %s, want the gateway's /oauth/authorize", hop.from)
	case hop.location != final:
		cr.t.Errorf("browser ended at %s, but the gateway's Location was %s", final, hop.location)
	}
	u, err := url.Parse(final)
	if err != nil {
		cr.t.Fatalf("callback URL %q: %v", final, err)
	}
	target := *u
	target.RawQuery = ""
	if target.String() != redirectURI {
		cr.t.Fatalf("browser sent to %s, want the registered %s", redactQuery(final), redirectURI)
	}
	return u
}
