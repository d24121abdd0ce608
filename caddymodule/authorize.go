package caddymodule

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"net/url"
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
	}
	return nil
}

// start handles GET: validate, remember the request server-side, then ask
// the user to sign in or to decide.
func (h *Authorize) start(w http.ResponseWriter, r *http.Request) {
	a := h.app
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
			return
		}
	case PasswordAuthenticator:
		s, digest, ok, err := a.loadSession(ctx, r)
		if err != nil {
			h.unavailable(w, err)
			return
		}
		if !ok {
			if digest, err = a.newSession(ctx, w, r, ""); err != nil {
				h.unavailable(w, err)
				return
			}
		}
		p.Subject, p.Session = s.Subject, digest
	default:
		renderPage(w, http.StatusInternalServerError, errorPage, oauth.Errorf(oauth.ServerError, "No user authenticator is configured on this gateway."))
		return
	}
	h.show(w, r, p, http.StatusOK, "")
}

// show stores p under a fresh transaction id with a fresh CSRF token and
// renders the login form (nobody signed in) or the consent screen.
func (h *Authorize) show(w http.ResponseWriter, r *http.Request, p *pending, status int, loginError string) {
	a := h.app
	tx, err1 := oauth.RandomString(a.rand, 32)
	csrf, err2 := oauth.RandomString(a.rand, 32)
	if err := errors.Join(err1, err2); err != nil {
		h.unavailable(w, err)
		return
	}
	p.CSRF = oauth.Digest(csrf)
	if err := a.savePending(r.Context(), tx, p); err != nil {
		h.unavailable(w, err)
		return
	}
	client := a.Client(p.ClientID)
	data := map[string]any{
		"Action":     actionPath(r),
		"TX":         tx,
		"CSRF":       csrf,
		"ClientName": client.Name,
		"Subject":    a.displayName(p.Subject, p.Profile),
		"Error":      loginError,
	}
	if p.Subject == "" {
		renderPage(w, status, loginPage, data)
		return
	}
	scopes := make([]Scope, len(p.Scopes))
	for i, s := range p.Scopes {
		scopes[i] = Scope{Name: s, Description: a.scopes[s]}
	}
	data["Scopes"] = scopes
	renderPage(w, status, consentPage, data)
}

// submit handles POST: the login form or the consent decision.
func (h *Authorize) submit(w http.ResponseWriter, r *http.Request) {
	a := h.app
	ctx := r.Context()
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		renderPage(w, http.StatusBadRequest, errorPage, oauth.Errorf(oauth.InvalidRequest, "The form could not be read."))
		return
	}
	form := r.PostForm
	decision := form.Get("decision")
	// Every POST takes the request out of the store, so that a form is
	// acted on once; the login step stores it again under a new id with
	// the next form.
	p, err := a.takePending(ctx, form.Get("tx"))
	if errors.Is(err, store.ErrNotFound) {
		renderPage(w, http.StatusBadRequest, errorPage, oauth.Errorf(oauth.InvalidRequest, "This sign-in page has expired or was already used. Go back to the application and start again."))
		return
	}
	if err != nil {
		h.unavailable(w, err)
		return
	}
	if !h.boundToBrowser(ctx, r, p, form.Get("csrf")) {
		renderPage(w, http.StatusForbidden, errorPage, oauth.Errorf(oauth.AccessDenied, "This form was not sent by the browser it was shown to. Go back to the application and start again."))
		return
	}

	switch {
	case decision != "":
		h.decide(w, r, p, decision)
	case form.Has("username"):
		h.login(w, r, p, form.Get("username"), form.Get("password"))
	default:
		renderPage(w, http.StatusBadRequest, errorPage, oauth.Errorf(oauth.InvalidRequest, "The form is incomplete."))
	}
}

// boundToBrowser checks that the POST comes from the browser the form was
// shown to: the CSRF token echoes the one stored with the request, and the
// request belongs to the current session (or signed-in user).
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

// login checks the credentials; on success it issues a new session id and
// shows the consent screen.
func (h *Authorize) login(w http.ResponseWriter, r *http.Request, p *pending, username, password string) {
	a := h.app
	users, ok := a.users.(PasswordAuthenticator)
	if !ok || p.Subject != "" {
		renderPage(w, http.StatusBadRequest, errorPage, oauth.Errorf(oauth.InvalidRequest, "Signing in is not expected here."))
		return
	}
	ctx := r.Context()
	subject, msg, status, err := a.checkPassword(ctx, users, username, password)
	if err != nil {
		h.unavailable(w, err)
		return
	}
	if subject == "" {
		h.show(w, r, p, status, msg)
		return
	}
	// Replace the anonymous session: the old id is dropped and a new one,
	// which no one else can have seen, carries the sign-in.
	_ = a.store.DeleteBlob(ctx, sessionKey(p.Session))
	digest, err := a.newSession(ctx, w, r, subject)
	if err != nil {
		h.unavailable(w, err)
		return
	}
	p.Subject, p.Session = subject, digest
	a.audit.Info("sign-in", zap.String("subject", subject), zap.String("client_id", p.ClientID))
	h.show(w, r, p, http.StatusOK, "")
}

// decide acts on the consent decision: allow records the grant and sends
// a code; anything else is a denial. Both answer 303 so that the browser
// follows with a GET and never re-posts the form (RFC 9700 §4.12).
func (h *Authorize) decide(w http.ResponseWriter, r *http.Request, p *pending, decision string) {
	a := h.app
	if p.Subject == "" {
		renderPage(w, http.StatusBadRequest, errorPage, oauth.Errorf(oauth.InvalidRequest, "Sign in first."))
		return
	}
	if decision != "allow" {
		a.audit.Info("consent denied", zap.String("subject", p.Subject), zap.String("client_id", p.ClientID))
		h.redirect(w, p, url.Values{"error": {oauth.AccessDenied}, "error_description": {"The user denied access."}})
		return
	}
	code, err := a.grantCode(r.Context(), p)
	if err != nil {
		h.unavailable(w, err)
		return
	}
	a.audit.Info("consent granted",
		zap.String("subject", p.Subject),
		zap.String("client_id", p.ClientID),
		zap.Strings("scopes", p.Scopes))
	h.redirect(w, p, url.Values{"code": {code}})
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

func (h *Authorize) unavailable(w http.ResponseWriter, err error) {
	h.app.logger.Error("authorization request failed", zap.Error(err))
	w.Header().Set("Retry-After", "5")
	renderPage(w, http.StatusServiceUnavailable, errorPage, oauth.Errorf(oauth.TemporarilyUnavailable, "The service is temporarily unavailable. Please try again in a moment."))
}

// actionPath is the path the forms post back to: the path the request was
// made on, before any rewrite or handle_path stripping.
func actionPath(r *http.Request) string {
	if orig, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request); ok && orig.URL != nil {
		return orig.URL.Path
	}
	return r.URL.Path
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
	if err := a.store.SaveGrant(ctx, g, time.Duration(a.RefreshTokenLifetime)); err != nil {
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
	if err := a.store.SaveCode(ctx, grantID, oauth.Digest(code), c); err != nil {
		return "", fmt.Errorf("saving code: %w", err)
	}
	return code, nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Authorize)(nil)
	_ caddyhttp.MiddlewareHandler = (*Authorize)(nil)
)
