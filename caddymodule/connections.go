package caddymodule

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/tollgate/tollgate/caddymodule/oauth"
	"github.com/tollgate/tollgate/caddymodule/store"
)

func init() {
	caddy.RegisterModule(Connections{})
}

// Connections is the user's connected-apps page: every partner the user has
// granted access to, with the scopes in plain English, when it was granted
// and last used, and a Disconnect button per partner. Disconnecting revokes
// every token of that partner for that user at once and queues a signed
// user.consent.revoked webhook (seed 002, "What happens when the user
// disconnects").
type Connections struct {
	appRef
}

// CaddyModule returns the Caddy module information.
func (Connections) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.tollgate_connections",
		New: func() caddy.Module { return new(Connections) },
	}
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (h *Connections) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	a := h.app
	ctx := r.Context()
	subject, sid, err := h.identify(w, r)
	if err != nil {
		h.unavailable(w, err)
		return nil
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodPost:
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		if err := r.ParseForm(); err != nil {
			renderPage(w, http.StatusBadRequest, errorPage, oauth.Errorf(oauth.InvalidRequest, "The form could not be read."))
			return nil
		}
		// The CSRF token is derived from the session id, which only this
		// browser's cookie holds; a cross-site form cannot know it.
		if subtle.ConstantTimeCompare([]byte(r.PostForm.Get("csrf")), []byte(csrfToken(sid))) != 1 {
			renderPage(w, http.StatusForbidden, errorPage, oauth.Errorf(oauth.AccessDenied, "This form was not sent by the browser it was shown to. Reload the page and try again."))
			return nil
		}
		switch {
		case r.PostForm.Has("disconnect") && subject != "":
			if err := a.disconnect(ctx, subject, r.PostForm.Get("disconnect")); err != nil {
				h.unavailable(w, err)
				return nil
			}
		case r.PostForm.Has("username") && subject == "":
			msg, status, err := h.login(w, r, sid)
			if err != nil {
				h.unavailable(w, err)
				return nil
			}
			if msg != "" {
				h.render(w, r, status, "", sid, msg)
				return nil
			}
		}
		// Post/Redirect/Get: a reload does not repeat the action.
		w.Header().Set("Location", actionPath(r))
		w.WriteHeader(http.StatusSeeOther)
		return nil
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		renderPage(w, http.StatusMethodNotAllowed, errorPage, oauth.Errorf(oauth.InvalidRequest, "method not allowed"))
		return nil
	}
	h.render(w, r, http.StatusOK, subject, sid, "")
	return nil
}

// identify returns the signed-in subject ("" when nobody is) and the raw
// id of the browser's session, creating an anonymous session when there is
// none so that every form on the page carries a CSRF token.
func (h *Connections) identify(w http.ResponseWriter, r *http.Request) (subject, sid string, err error) {
	a := h.app
	ctx := r.Context()
	s, _, ok, err := a.loadSession(ctx, r)
	if err != nil {
		return "", "", err
	}
	if ok {
		c, _ := r.Cookie(sessionCookie)
		sid = c.Value
		subject = s.Subject
	}
	if ra, isRA := a.users.(RequestAuthenticator); isRA {
		reqSubject, _ := ra.Identify(r)
		if !ok || subject != reqSubject {
			// Bind a session to the user the auth handler vouches for, for
			// the CSRF token; it carries no authority of its own.
			if sid, err = a.newSessionID(ctx, w, r, reqSubject); err != nil {
				return "", "", err
			}
		}
		return reqSubject, sid, nil
	}
	if !ok {
		if sid, err = a.newSessionID(ctx, w, r, ""); err != nil {
			return "", "", err
		}
	}
	return subject, sid, nil
}

// login signs the user in from the page's own form and replaces the
// session id (session fixation). On refusal it returns the form's message
// and status.
func (h *Connections) login(w http.ResponseWriter, r *http.Request, oldSID string) (msg string, status int, err error) {
	a := h.app
	users, ok := a.users.(PasswordAuthenticator)
	if !ok {
		return "Signing in is not expected here.", http.StatusBadRequest, nil
	}
	ctx := r.Context()
	subject, msg, status, err := a.checkPassword(ctx, users, r.PostForm.Get("username"), r.PostForm.Get("password"))
	if err != nil || subject == "" {
		return msg, status, err
	}
	_ = a.store.DeleteBlob(ctx, sessionKey(oauth.Digest(oldSID)))
	if _, err := a.newSessionID(ctx, w, r, subject); err != nil {
		return "", 0, err
	}
	a.audit.Info("sign-in", zap.String("subject", subject), zap.String("page", "connections"))
	return "", http.StatusOK, nil
}

// connection is one row of the page.
type connection struct {
	ClientID   string
	ClientName string
	Scopes     []Scope
	GrantedAt  time.Time
	LastUsedAt time.Time
}

func (h *Connections) render(w http.ResponseWriter, r *http.Request, status int, subject, sid, loginError string) {
	a := h.app
	data := map[string]any{"Action": actionPath(r), "CSRF": csrfToken(sid), "Subject": a.displayName(subject, nil), "Error": loginError}
	if subject == "" {
		data["ClientName"] = "your connected apps"
		renderPage(w, status, connectionsLoginPage, data)
		return
	}
	grants, err := a.store.ListGrants(r.Context(), subject)
	if err != nil {
		h.unavailable(w, err)
		return
	}
	rows := make([]connection, 0, len(grants))
	for _, g := range grants {
		c := a.Client(g.ClientID)
		if c == nil {
			continue // a client since removed from the config
		}
		row := connection{ClientID: c.ID, ClientName: c.Name, GrantedAt: g.CreatedAt, LastUsedAt: g.LastUsedAt}
		for _, s := range g.Scopes {
			row.Scopes = append(row.Scopes, Scope{Name: s, Description: a.scopes[s]})
		}
		rows = append(rows, row)
	}
	data["Connections"] = rows
	renderPage(w, status, connectionsPage, data)
}

func (h *Connections) unavailable(w http.ResponseWriter, err error) {
	h.app.logger.Error("connections page failed", zap.Error(err))
	w.Header().Set("Retry-After", "5")
	renderPage(w, http.StatusServiceUnavailable, errorPage, oauth.Errorf(oauth.TemporarilyUnavailable, "The service is temporarily unavailable. Please try again in a moment."))
}

// disconnect ends subject's grant to clientID. The webhook event is queued
// in the store before the grant is revoked, so that no disconnect can
// happen without its event (DESIGN.md §4); if queuing fails nothing is
// revoked and the user is asked to retry.
func (a *App) disconnect(ctx context.Context, subject, clientID string) error {
	grantID := oauth.GrantID(clientID, subject)
	g, err := a.store.GetGrant(ctx, grantID)
	if errors.Is(err, store.ErrNotFound) {
		return nil // already gone: disconnecting twice is not an error
	}
	if err != nil {
		return fmt.Errorf("loading grant: %w", err)
	}
	if err := a.queueConsentRevoked(ctx, g); err != nil {
		return err
	}
	if _, err := a.store.RevokeGrant(ctx, grantID); err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("revoking grant: %w", err)
	}
	a.audit.Info("grant disconnected by user",
		zap.String("grant", grantID), zap.String("client_id", clientID), zap.String("subject", subject))
	return nil
}

// csrfToken derives the CSRF token of a session from its id. Nothing is
// stored: the id is 256 random bits that only the browser's cookie and
// (as a digest) the store know.
func csrfToken(sid string) string {
	sum := sha256.Sum256([]byte("tollgate csrf\x00" + sid))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Connections)(nil)
	_ caddyhttp.MiddlewareHandler = (*Connections)(nil)
)
