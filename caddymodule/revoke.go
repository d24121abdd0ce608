package caddymodule

import (
	"errors"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/tollgate/tollgate/caddymodule/oauth"
	"github.com/tollgate/tollgate/caddymodule/store"
)

func init() {
	caddy.RegisterModule(Revoke{})
}

// Revoke is the revocation endpoint of RFC 7009. Revoking either token of a
// pair ends the user's whole grant to that client, so that one call from a
// partner's "disconnect" button tears the connection down (docs/partners.md
// D38, D39; revoking one token revokes the paired other).
type Revoke struct {
	appRef
}

// CaddyModule returns the Caddy module information.
func (Revoke) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.tollgate_revoke",
		New: func() caddy.Module { return new(Revoke) },
	}
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (h *Revoke) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	if oerr := h.revoke(w, r); oerr != nil {
		oerr.WriteJSON(w)
		return nil
	}
	// RFC 7009 §2.2: 200, and the content of the body is ignored; we send none.
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	return nil
}

func (h *Revoke) revoke(w http.ResponseWriter, r *http.Request) *oauth.Error {
	a := h.app
	form, client, oerr := a.readClientForm(w, r)
	if oerr != nil {
		return oerr
	}
	tok := form.Get("token")
	if tok == "" {
		return oauth.Errorf(oauth.InvalidRequest, "token is missing")
	}
	// The token's own prefix says what it is; token_type_hint (RFC 7009
	// §2.1) is only a hint and is not needed.
	prefix, grantID, ok := oauth.ParseToken(tok)
	var kind store.Kind
	switch {
	case ok && prefix == oauth.AccessPrefix:
		kind = store.Access
	case ok && prefix == oauth.RefreshPrefix:
		kind = store.Refresh
	default:
		return nil // RFC 7009 §2.2: an invalid token is not an error.
	}
	ctx := r.Context()
	// Expired or not: a partner disconnecting a user sends the access
	// token it stored, which has usually expired, and expects the
	// connection gone (docs/partners.md); a token rotated out or replaced
	// is not found and touches nothing.
	t, err := a.tokens.RevocableToken(ctx, grantID, kind, oauth.Digest(tok))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil
	case err != nil:
		return a.storeFailed("loading token to revoke", err)
	case t.ClientID != client.ID:
		// RFC 7009 §2.1: a client may only revoke its own tokens.
		return oauth.Errorf(oauth.UnauthorizedClient, "the token was not issued to this client")
	}
	if _, err := a.grants.RevokeGrant(ctx, grantID); err != nil && !errors.Is(err, store.ErrNotFound) {
		return a.storeFailed("revoking grant", err)
	}
	a.auditEvent(ctx, auditTokenRevoked, auditGrant(grantID, client.ID, t.Subject), auditTokenType(kind), auditDigest("token_digest", oauth.Digest(tok)))
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Revoke)(nil)
	_ caddyhttp.MiddlewareHandler = (*Revoke)(nil)
)
