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
	caddy.RegisterModule(Introspect{})
}

// Introspect is the token introspection endpoint of RFC 7662. A client
// authenticates exactly as at the token and revocation endpoints and learns
// whether a token it holds is active, and for whom and with which scopes.
//
// It looks the token up with GetToken, which finds only a live token of a
// live grant, so an expired, rotated or revoked token, or one of a revoked
// grant, is inactive. It never counts against the grant's rate-limit budget:
// introspecting is not using the API (README, Rate limits).
type Introspect struct {
	appRef
}

// CaddyModule returns the Caddy module information.
func (Introspect) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.tollgate_introspect",
		New: func() caddy.Module { return new(Introspect) },
	}
}

// introspection is the answer of RFC 7662 §2.2. An inactive token gets
// only {"active":false}: "the authorization server SHOULD NOT include any
// additional information about an inactive token".
type introspection struct {
	Active   bool   `json:"active"`
	Scope    string `json:"scope,omitempty"`
	ClientID string `json:"client_id,omitempty"`
	Subject  string `json:"sub,omitempty"`
	Expires  int64  `json:"exp,omitempty"`
	// TokenType is "Bearer" for access tokens (the token_type of RFC 6749
	// §5.1) and omitted for refresh tokens, which have none.
	TokenType string `json:"token_type,omitempty"`
	Issuer    string `json:"iss,omitempty"`
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (h *Introspect) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	resp, oerr := h.introspect(w, r)
	if oerr != nil {
		oerr.WriteJSON(w)
		return nil
	}
	// RFC 7662 §4: the answer describes a credential; no cache keeps it.
	return writeCredentialJSON(w, resp)
}

func (h *Introspect) introspect(w http.ResponseWriter, r *http.Request) (*introspection, *oauth.Error) {
	a := h.app
	// RFC 7662 §2.1: the endpoint requires authorization; the client's
	// own credentials, as at the token endpoint (RFC 6749 §2.3.1).
	form, client, oerr := a.readClientForm(w, r)
	if oerr != nil {
		return nil, oerr
	}
	tok := form.Get("token")
	if tok == "" {
		return nil, oauth.Errorf(oauth.InvalidRequest, "token is missing")
	}
	inactive := &introspection{Active: false}
	// The token's own prefix says what it is; token_type_hint (RFC 7662
	// §2.1) is only a hint and is not needed. Anything that is not the
	// shape of an access or refresh token (a code included) is inactive.
	prefix, grantID, ok := oauth.ParseToken(tok)
	var kind store.Kind
	switch {
	case ok && prefix == oauth.AccessPrefix:
		kind = store.Access
	case ok && prefix == oauth.RefreshPrefix:
		kind = store.Refresh
	default:
		return inactive, nil
	}
	t, err := a.tokens.GetToken(r.Context(), grantID, kind, oauth.Digest(tok))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return inactive, nil
	case err != nil:
		// 503, never active:false: a client must not drop a good token
		// because the store did not answer.
		return nil, a.storeFailed("loading token to introspect", err)
	case t.ClientID != client.ID, !t.ExpiresAt.After(a.now()):
		// RFC 7662 §4: a client learns nothing of another client's
		// tokens, not even that they exist.
		return inactive, nil
	}
	resp := &introspection{
		Active:   true,
		Scope:    oauth.FormatScope(t.Scopes),
		ClientID: t.ClientID,
		Subject:  t.Subject,
		Expires:  t.ExpiresAt.Unix(),
		Issuer:   a.Issuer,
	}
	if kind == store.Access {
		resp.TokenType = "Bearer"
	}
	return resp, nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Introspect)(nil)
	_ caddyhttp.MiddlewareHandler = (*Introspect)(nil)
)
