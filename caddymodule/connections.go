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
// user.consent.revoked webhook (docs/partners.md D42–D44).
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
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodPost:
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		renderPage(w, http.StatusMethodNotAllowed, errorPage, oauth.Errorf(oauth.InvalidRequest, "method not allowed"))
		return nil
	}
	subject, csrf, err := h.identify(w, r)
	if err != nil {
		h.unavailable(w, err)
		return nil
	}
	if r.Method != http.MethodPost {
		h.render(w, r, http.StatusOK, subject, csrf, "")
		return nil
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		renderPage(w, http.StatusBadRequest, errorPage, oauth.Errorf(oauth.InvalidRequest, "The form could not be read."))
		return nil
	}
	// The CSRF token is derived from a cookie only this browser holds; a
	// cross-site form cannot know it.
	if subtle.ConstantTimeCompare([]byte(r.PostForm.Get("csrf")), []byte(csrf)) != 1 {
		renderPage(w, http.StatusForbidden, errorPage, oauth.Errorf(oauth.AccessDenied, "This form was not sent by the browser it was shown to. Reload the page and try again."))
		return nil
	}
	switch {
	case r.PostForm.Has("disconnect") && subject != "":
		if err := a.disconnect(ctx, subject, r.PostForm.Get("disconnect"), "user"); err != nil {
			h.unavailable(w, err)
			return nil
		}
	case r.PostForm.Has("username") && subject == "":
		res, err := a.signIn(w, r, "")
		if err != nil {
			h.unavailable(w, err)
			return nil
		}
		if res.Subject == "" {
			h.render(w, r, res.Status, "", csrf, res.Msg)
			return nil
		}
	}
	// Post/Redirect/Get: a reload does not repeat the action.
	w.Header().Set("Location", formAction(r))
	w.WriteHeader(http.StatusSeeOther)
	return nil
}

// identify returns the signed-in subject ("" when nobody is) and the CSRF
// token the page's forms carry. A signed-in session's token derives from
// its id; anyone else's is an HMAC of the browser's login cookie, so that
// a visitor who has not signed in writes nothing to the store.
func (h *Connections) identify(w http.ResponseWriter, r *http.Request) (subject, csrf string, err error) {
	a := h.app
	ra, isRA := a.users.(RequestAuthenticator)
	if !isRA {
		s, _, ok, err := a.loadSession(r.Context(), r)
		if err != nil {
			return "", "", err
		}
		if ok && s.Subject != "" {
			c, _ := r.Cookie(sessionCookie)
			return s.Subject, csrfToken(c.Value), nil
		}
	} else {
		subject, _ = ra.Identify(r)
	}
	key, err := a.formKey(r.Context())
	if err != nil {
		return "", "", err
	}
	binding, err := a.loginBinding(w, r)
	if err != nil {
		return "", "", err
	}
	return subject, anonymousCSRF(key, "connections", binding, subject), nil
}

// connection is one row of the page.
type connection struct {
	ClientID   string
	ClientName string
	Scopes     []Scope
	GrantedAt  time.Time
	LastUsedAt time.Time
}

func (h *Connections) render(w http.ResponseWriter, r *http.Request, status int, subject, csrf, loginError string) {
	a := h.app
	data := map[string]any{"Action": formAction(r), "CSRF": csrf, "Subject": a.displayName(subject, nil), "Error": loginError}
	if subject == "" {
		data["ClientName"] = "your connected apps"
		renderPage(w, status, connectionsLoginPage, data)
		return
	}
	grants, err := a.grants.ListGrants(r.Context(), subject)
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
	h.app.unavailablePage(w, "connections page failed", err)
}

// disconnect ends subject's grant to clientID. The webhook event is queued
// in the store before the grant is revoked, so that no disconnect can
// happen without its event (docs/architecture.md §4.4, §7); if queuing
// fails nothing is revoked and the user is asked to retry. by ("user",
// "operator") says in the audit log who asked.
func (a *App) disconnect(ctx context.Context, subject, clientID, by string) error {
	grantID := oauth.GrantID(clientID, subject)
	g, err := a.grants.GetGrant(ctx, grantID)
	if errors.Is(err, store.ErrNotFound) {
		return nil // already gone: disconnecting twice is not an error
	}
	if err != nil {
		return fmt.Errorf("loading grant: %w", err)
	}
	if err := a.queueConsentRevoked(ctx, g); err != nil {
		return err
	}
	if _, err := a.grants.RevokeGrant(ctx, grantID); err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("revoking grant: %w", err)
	}
	a.auditEvent(ctx, auditGrantDisconnected, auditGrant(grantID, clientID, subject), zap.String("by", by), zap.Strings("scopes", g.Scopes))
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
