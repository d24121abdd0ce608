package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/tollgate/tollgate/caddymodule/oauth"
	"github.com/tollgate/tollgate/caddymodule/store"
)

// usersPrefix is where the support routes live on Caddy's admin endpoint
// (README "Operator commands"):
//
//	GET    /tollgate/users/<subject>/grants              the user's grants, JSON
//	DELETE /tollgate/users/<subject>/grants/<client_id>  revoke one, as Disconnect does
const usersPrefix = "/tollgate/users/"

// grantView is one grant as the admin API shows it: what the user's
// connections page shows, never a token or a digest.
type grantView struct {
	ClientID   string    `json:"client_id"`
	ClientName string    `json:"client_name"`
	Scopes     []string  `json:"scopes"`
	GrantedAt  time.Time `json:"granted_at"`
	LastUsedAt time.Time `json:"last_used_at,omitzero"`
}

// userGrants serves the routes under usersPrefix.
func userGrants(w http.ResponseWriter, r *http.Request) error {
	// Split the escaped path, so that an encoded "/" stays inside its
	// segment (and then fails the subject check) rather than adding one.
	rest := strings.TrimPrefix(r.URL.EscapedPath(), usersPrefix)
	parts := strings.Split(rest, "/")
	if len(parts) < 2 || len(parts) > 3 || parts[1] != "grants" || (len(parts) == 3 && parts[2] == "") {
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: errors.New("not found: want /tollgate/users/<subject>/grants[/<client_id>]")}
	}
	allow := http.MethodGet
	if len(parts) == 3 {
		allow = http.MethodDelete
	}
	if r.Method != allow {
		w.Header().Set("Allow", allow)
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method not allowed: %s only", allow)}
	}
	subject, err := url.PathUnescape(parts[0])
	// The rule the gateway applies at sign-in (README "Security": subjects
	// are A-Z a-z 0-9 . _ @ + -, not . or ..).
	if err != nil || !safeSubject(subject) {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: errors.New("subject: want 1 to 256 of A-Z a-z 0-9 . _ @ + - (not . or ..)")}
	}
	a, err := activeApp()
	if err != nil {
		return err
	}
	r = auditRequest(r)
	if len(parts) == 2 {
		return a.listUserGrants(w, r, subject)
	}
	clientID, err := url.PathUnescape(parts[2])
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: errors.New("client_id: not a path segment")}
	}
	return a.revokeUserGrant(w, r, subject, clientID)
}

// activeApp is the tollgate app of the running config.
func activeApp() (*App, error) {
	mod, err := caddy.ActiveContext().AppIfConfigured("tollgate")
	if err != nil || mod == nil {
		return nil, caddy.APIError{HTTPStatus: http.StatusNotFound, Err: errors.New("the running config has no tollgate app")}
	}
	return mod.(*App), nil
}

func (a *App) listUserGrants(w http.ResponseWriter, r *http.Request, subject string) error {
	grants, err := a.grants.ListGrants(r.Context(), subject)
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: fmt.Errorf("store: %w", err)}
	}
	out := make([]grantView, 0, len(grants))
	for _, g := range grants {
		c := a.Client(g.ClientID)
		if c == nil {
			continue // a client since removed from the config, as on the connections page
		}
		out = append(out, grantView{
			ClientID: c.ID, ClientName: c.Name, Scopes: g.Scopes,
			GrantedAt: g.CreatedAt.UTC(), LastUsedAt: g.LastUsedAt.UTC(),
		})
	}
	a.auditEvent(r.Context(), auditGrantsListed, zap.String("subject", subject), zap.Int("grants", len(out)))
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	return json.NewEncoder(w).Encode(out)
}

// revokeUserGrant ends subject's grant to clientID exactly as the user's
// Disconnect button does: user.consent.revoked queued first, then every
// token revoked, then the audit entry (README "Webhooks", "Audit log").
func (a *App) revokeUserGrant(w http.ResponseWriter, r *http.Request, subject, clientID string) error {
	if a.Client(clientID) == nil {
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: errors.New("no such client in the running config")}
	}
	_, err := a.grants.GetGrant(r.Context(), oauth.GrantID(clientID, subject))
	if errors.Is(err, store.ErrNotFound) {
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: errors.New("this user has no grant to this client")}
	}
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: fmt.Errorf("store: %w", err)}
	}
	if err := a.disconnect(r.Context(), subject, clientID, "operator"); err != nil {
		return caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: err}
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
