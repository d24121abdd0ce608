package caddymodule

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/tollgate/tollgate/caddymodule/oauth"
	"github.com/tollgate/tollgate/caddymodule/store"
)

func init() {
	caddy.RegisterModule(Authorize{})
}

// Authorize is the authorization endpoint (RFC 6749 §4.1.1): GET validates
// the request and shows the login form or the consent screen; POST takes the
// login form and the user's decision.
type Authorize struct {
	appRef
}

// CaddyModule returns the Caddy module information.
func (Authorize) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.tollgate_authorize",
		New: func() caddy.Module { return new(Authorize) },
	}
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (h *Authorize) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		h.start(w, r)
	case http.MethodPost:
		h.submit(w, r)
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		renderPage(w, http.StatusMethodNotAllowed, errorPage, oauth.Errorf(oauth.InvalidRequest, "method not allowed"))
		h.app.countAuthorize("", authorizeInvalidRequest)
	}
	return nil
}

// start handles GET: validate, then ask the user to sign in or to decide.
// Nothing is stored until the user has signed in: the sign-in form carries
// the request sealed (forms.go), so anonymous traffic costs no state.
func (h *Authorize) start(w http.ResponseWriter, r *http.Request) {
	a := h.app
	if len(r.URL.RawQuery) > oauth.MaxAuthorizeQuery {
		renderPage(w, http.StatusRequestURITooLong, errorPage, oauth.Errorf(oauth.InvalidRequest, "The authorization request is longer than %d bytes.", oauth.MaxAuthorizeQuery))
		a.countAuthorize("", authorizeInvalidRequest)
		return
	}
	req, aerr := oauth.ParseAuthorize(r.URL.Query(), a)
	if aerr != nil {
		h.refuse(w, r, aerr)
		return
	}
	ctx := r.Context()
	p := &pending{
		ClientID:    req.Client.ID,
		RedirectURI: req.RedirectURI,
		Scopes:      req.Scopes,
		State:       req.State,
		Challenge:   req.Challenge,
		ExpiresAt:   a.now().Add(pendingLifetime),
	}
	switch users := a.users.(type) {
	case RequestAuthenticator:
		p.Subject, p.Profile = users.Identify(r)
		if p.Subject == "" {
			renderPage(w, http.StatusUnauthorized, errorPage, oauth.Errorf(oauth.AccessDenied, "You are not signed in. The gateway is configured to take the user from a preceding authentication handler, and none signed you in."))
			a.countAuthorize(p.ClientID, authorizeUnauthenticated)
			return
		}
	case PasswordAuthenticator:
		s, digest, ok, err := a.loadSession(ctx, r)
		if err != nil {
			h.unavailable(w, p.ClientID, err)
			return
		}
		if !ok || s.Subject == "" {
			h.showLogin(w, r, p, http.StatusOK, "")
			return
		}
		p.Subject, p.Session = s.Subject, digest
	default:
		renderPage(w, http.StatusInternalServerError, errorPage, oauth.Errorf(oauth.ServerError, "No user authenticator is configured on this gateway."))
		a.countAuthorize(p.ClientID, authorizeError)
		return
	}
	h.show(w, r, p, http.StatusOK)
}

// showLogin renders the sign-in form with the request sealed into it and a
// CSRF token bound to the browser's login cookie; nothing is stored.
func (h *Authorize) showLogin(w http.ResponseWriter, r *http.Request, p *pending, status int, loginError string) {
	a := h.app
	key, err := a.formKey(r.Context())
	if err != nil {
		h.unavailable(w, p.ClientID, err)
		return
	}
	binding, err := a.loginBinding(w, r)
	if err != nil {
		h.unavailable(w, p.ClientID, err)
		return
	}
	p.Subject, p.Session, p.CSRF, p.Profile = "", "", "", nil
	tx, err := sealForm(key, p)
	if err != nil {
		h.unavailable(w, p.ClientID, err)
		return
	}
	renderPage(w, status, loginPage, map[string]any{
		"Action":     formAction(r),
		"TX":         tx,
		"CSRF":       anonymousCSRF(key, "authorize", binding, ""),
		"ClientName": a.Client(p.ClientID).Name,
		"Error":      loginError,
	})
	a.countAuthorize(p.ClientID, authorizeLoginForm)
}

// show stores p, whose user has signed in, under a fresh transaction id
// with a fresh CSRF token and renders the consent screen.
func (h *Authorize) show(w http.ResponseWriter, r *http.Request, p *pending, status int) {
	a := h.app
	tx, err1 := oauth.RandomString(a.rand, 32)
	csrf, err2 := oauth.RandomString(a.rand, 32)
	if err := errors.Join(err1, err2); err != nil {
		h.unavailable(w, p.ClientID, err)
		return
	}
	p.CSRF = oauth.Digest(csrf)
	if err := a.savePending(r.Context(), tx, p); err != nil {
		h.unavailable(w, p.ClientID, err)
		return
	}
	scopes := make([]Scope, len(p.Scopes))
	for i, s := range p.Scopes {
		scopes[i] = Scope{Name: s, Description: a.scopes[s]}
	}
	renderPageTo(w, status, consentPage, map[string]any{
		"Action":     formAction(r),
		"TX":         tx,
		"CSRF":       csrf,
		"ClientName": a.Client(p.ClientID).Name,
		"Subject":    a.displayName(p.Subject, p.Profile),
		"Scopes":     scopes,
	}, p.RedirectURI)
	a.countAuthorize(p.ClientID, authorizeConsentForm)
}

// submit handles POST: the sign-in form or the consent decision.
func (h *Authorize) submit(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		renderPage(w, http.StatusBadRequest, errorPage, oauth.Errorf(oauth.InvalidRequest, "The form could not be read."))
		h.app.countAuthorize("", authorizeBadForm)
		return
	}
	form := r.PostForm
	tx := form.Get("tx")
	if strings.HasPrefix(tx, sealedPrefix) {
		h.submitLogin(w, r, tx)
		return
	}
	ctx := r.Context()
	// A consent form is acted on once: the POST takes its request out of
	// the store.
	p, err := h.app.takePending(ctx, tx)
	if errors.Is(err, store.ErrNotFound) {
		expired(w)
		h.app.countAuthorize("", authorizeBadForm)
		return
	}
	if err != nil {
		h.unavailable(w, "", err)
		return
	}
	if !h.boundToBrowser(ctx, r, p, form.Get("csrf")) {
		notThisBrowser(w)
		h.app.countAuthorize(p.ClientID, authorizeBadForm)
		return
	}
	decision := form.Get("decision")
	if decision == "" {
		renderPage(w, http.StatusBadRequest, errorPage, oauth.Errorf(oauth.InvalidRequest, "The form is incomplete."))
		h.app.countAuthorize(p.ClientID, authorizeBadForm)
		return
	}
	h.decide(w, r, p, decision)
}

func expired(w http.ResponseWriter) {
	renderPage(w, http.StatusBadRequest, errorPage, oauth.Errorf(oauth.InvalidRequest, "This sign-in page has expired or was already used. Go back to the application and start again."))
}

func notThisBrowser(w http.ResponseWriter) {
	renderPage(w, http.StatusForbidden, errorPage, oauth.Errorf(oauth.AccessDenied, "This form was not sent by the browser it was shown to. Go back to the application and start again."))
}

// submitLogin takes the sign-in form: the sealed request must be intact
// and live, and the CSRF token must match the browser's login cookie.
func (h *Authorize) submitLogin(w http.ResponseWriter, r *http.Request, tx string) {
	a := h.app
	// Checked before the sealed form costs a store read: a.signIn would
	// refuse it anyway.
	if _, ok := a.users.(PasswordAuthenticator); !ok {
		renderPage(w, signInNotExpected.Status, errorPage, oauth.Errorf(oauth.InvalidRequest, "%s", signInNotExpected.Msg))
		a.countAuthorize("", authorizeBadForm)
		return
	}
	key, err := a.formKey(r.Context())
	if err != nil {
		h.unavailable(w, "", err)
		return
	}
	p := new(pending)
	if !openForm(key, tx, p) || !a.now().Before(p.ExpiresAt) || a.Client(p.ClientID) == nil || p.Subject != "" {
		expired(w)
		a.countAuthorize("", authorizeBadForm)
		return
	}
	binding := readLoginCookie(r)
	want := anonymousCSRF(key, "authorize", binding, "")
	if binding == "" || subtle.ConstantTimeCompare([]byte(r.PostForm.Get("csrf")), []byte(want)) != 1 {
		notThisBrowser(w)
		a.countAuthorize(p.ClientID, authorizeBadForm)
		return
	}
	if !r.PostForm.Has("username") {
		renderPage(w, http.StatusBadRequest, errorPage, oauth.Errorf(oauth.InvalidRequest, "The form is incomplete."))
		a.countAuthorize(p.ClientID, authorizeBadForm)
		return
	}
	res, err := a.signIn(w, r, p.ClientID)
	if err != nil {
		h.unavailable(w, p.ClientID, err)
		return
	}
	if res.Subject == "" {
		h.showLogin(w, r, p, res.Status, res.Msg)
		return
	}
	p.Subject, p.Session = res.Subject, res.Session
	h.show(w, r, p, http.StatusOK)
}

// boundToBrowser checks that a consent POST comes from the browser the
// form was shown to: the CSRF token echoes the one stored with the
// request, and the request belongs to the current session (or signed-in
// user).
func (h *Authorize) boundToBrowser(ctx context.Context, r *http.Request, p *pending, csrf string) bool {
	if subtle.ConstantTimeCompare([]byte(oauth.Digest(csrf)), []byte(p.CSRF)) != 1 {
		return false
	}
	if ra, ok := h.app.users.(RequestAuthenticator); ok {
		sub, _ := ra.Identify(r)
		return sub != "" && sub == p.Subject
	}
	s, digest, ok, err := h.app.loadSession(ctx, r)
	return err == nil && ok && digest == p.Session && s.Subject == p.Subject
}

// decide acts on the consent decision: allow records the grant and sends
// a code; anything else is a denial. Both answer 303 so that the browser
// follows with a GET and never re-posts the form (RFC 9700 §4.12).
func (h *Authorize) decide(w http.ResponseWriter, r *http.Request, p *pending, decision string) {
	a := h.app
	if p.Subject == "" {
		renderPage(w, http.StatusBadRequest, errorPage, oauth.Errorf(oauth.InvalidRequest, "Sign in first."))
		a.countAuthorize(p.ClientID, authorizeBadForm)
		return
	}
	if decision != "allow" {
		a.auditEvent(r.Context(), auditConsentDenied, auditGrant("", p.ClientID, p.Subject), zap.Strings("scopes", p.Scopes))
		h.redirect(w, p, url.Values{"error": {oauth.AccessDenied}, "error_description": {"The user denied access."}})
		a.countAuthorize(p.ClientID, authorizeDenied)
		return
	}
	code, err := a.grantCode(r.Context(), p)
	if err != nil {
		h.unavailable(w, p.ClientID, err)
		return
	}
	a.auditEvent(r.Context(), auditConsentGranted, auditGrant("", p.ClientID, p.Subject), zap.Strings("scopes", p.Scopes))
	a.auditEvent(r.Context(), auditCodeIssued, auditGrant("", p.ClientID, p.Subject), zap.Strings("scopes", p.Scopes), auditDigest("code_digest", oauth.Digest(code)))
	h.redirect(w, p, url.Values{"code": {code}})
	a.countAuthorize(p.ClientID, authorizeGranted)
}

// redirect sends the user back to the client with v, the state and, when
// configured, the issuer (RFC 9207, a defence against mix-up attacks).
func (h *Authorize) redirect(w http.ResponseWriter, p *pending, v url.Values) {
	if p.State != "" {
		// RFC 6749 §4.1.2: state is returned when the client sent one.
		v.Set("state", p.State)
	}
	if h.app.Issuer != "" {
		v.Set("iss", h.app.Issuer)
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Location", oauth.AddQuery(p.RedirectURI, v))
	w.WriteHeader(http.StatusSeeOther)
}

// refuse answers an invalid authorization request: redirected to the
// client when its redirect URI is trusted, else an error page here.
func (h *Authorize) refuse(w http.ResponseWriter, r *http.Request, e *oauth.AuthorizeError) {
	h.app.countAuthorize(r.URL.Query().Get("client_id"), authorizeInvalidRequest)
	if !e.Redirect {
		renderPage(w, http.StatusBadRequest, errorPage, e.Error)
		return
	}
	loc := oauth.ErrorRedirect(e)
	if h.app.Issuer != "" {
		// RFC 9207 §2: iss goes with error responses too.
		loc = oauth.AddQuery(loc, url.Values{"iss": {h.app.Issuer}})
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, loc, http.StatusFound)
}

// unavailable answers 503; clientID is the request's client when known,
// for the metrics.
func (h *Authorize) unavailable(w http.ResponseWriter, clientID string, err error) {
	h.app.countAuthorize(clientID, authorizeError)
	h.app.unavailablePage(w, "authorization request failed", err)
}

// grantCode records the consent in the grant and stores a new code for it.
func (a *App) grantCode(ctx context.Context, p *pending) (string, error) {
	grantID := oauth.GrantID(p.ClientID, p.Subject)
	now := a.now()
	g := store.Grant{
		ID:         grantID,
		ClientID:   p.ClientID,
		Subject:    p.Subject,
		Scopes:     p.Scopes,
		Profile:    p.Profile,
		CreatedAt:  now,
		LastUsedAt: now,
	}
	if err := a.grants.SaveGrant(ctx, g, time.Duration(a.RefreshTokenLifetime)); err != nil {
		return "", fmt.Errorf("saving grant: %w", err)
	}
	code, err := oauth.NewToken(a.rand, oauth.CodePrefix, grantID)
	if err != nil {
		return "", err
	}
	c := store.Code{
		ClientID:    p.ClientID,
		Subject:     p.Subject,
		RedirectURI: p.RedirectURI,
		Challenge:   p.Challenge,
		Scopes:      p.Scopes,
		ExpiresAt:   now.Add(time.Duration(a.CodeLifetime)),
	}
	if err := a.codes.SaveCode(ctx, grantID, oauth.Digest(code), c); err != nil {
		return "", fmt.Errorf("saving code: %w", err)
	}
	return code, nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Authorize)(nil)
	_ caddyhttp.MiddlewareHandler = (*Authorize)(nil)
)
