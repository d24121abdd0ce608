package caddymodule

import (
	"context"
	"crypto/subtle"
	"errors"
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
	caddy.RegisterModule(Token{})
}

// Token is the token endpoint (RFC 6749 §3.2): it exchanges authorization
// codes (with PKCE) and rotates refresh tokens.
type Token struct {
	appRef
}

// CaddyModule returns the Caddy module information.
func (Token) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.tollgate_token",
		New: func() caddy.Module { return new(Token) },
	}
}

// tokenResponse is the successful answer of RFC 6749 §5.1.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Scope        string `json:"scope"`
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (h *Token) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	resp, oerr := h.serve(w, r)
	h.app.countToken(r, oerr)
	if oerr != nil {
		oerr.WriteJSON(w)
		return nil
	}
	return writeCredentialJSON(w, resp)
}

func (h *Token) serve(w http.ResponseWriter, r *http.Request) (*tokenResponse, *oauth.Error) {
	form, client, oerr := h.app.readClientForm(w, r)
	if oerr != nil {
		return nil, oerr
	}
	switch gt := form.Get("grant_type"); gt {
	case "authorization_code":
		return h.app.exchangeCode(r.Context(), client, form)
	case "refresh_token":
		return h.app.refresh(r.Context(), client, form)
	case "":
		return nil, oauth.Errorf(oauth.InvalidRequest, "grant_type is missing")
	default:
		return nil, oauth.Errorf(oauth.UnsupportedGrantType, "grant_type must be authorization_code or refresh_token")
	}
}

// exchangeCode redeems an authorization code (RFC 6749 §4.1.3, RFC 7636 §4.6).
func (a *App) exchangeCode(ctx context.Context, client *oauth.Client, form url.Values) (*tokenResponse, *oauth.Error) {
	code := form.Get("code")
	if code == "" {
		return nil, oauth.Errorf(oauth.InvalidRequest, "code is missing")
	}
	verifier := form.Get("code_verifier")
	switch {
	case verifier == "" && !client.PKCEOptional:
		// Refused before the code is consumed: a request that forgot the
		// verifier does not burn the partner's code.
		return nil, oauth.Errorf(oauth.InvalidRequest, "code_verifier is missing (PKCE is required)")
	case verifier != "" && !oauth.ValidVerifier(verifier):
		return nil, oauth.Errorf(oauth.InvalidRequest, "code_verifier must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~")
	}
	prefix, grantID, ok := oauth.ParseToken(code)
	if !ok || prefix != oauth.CodePrefix {
		return nil, oauth.Errorf(oauth.InvalidGrant, "the authorization code is invalid, expired or already used")
	}
	codeDigest := oauth.Digest(code)
	c, err := a.codes.ConsumeCode(ctx, grantID, codeDigest)
	switch {
	case errors.Is(err, store.ErrCodeReplayed):
		a.auditEvent(ctx, auditCodeReplayed, auditGrant(grantID, client.ID, ""), auditDigest("code_digest", codeDigest))
		return nil, oauth.Errorf(oauth.InvalidGrant, "the authorization code was already used; tokens issued from it are revoked")
	case errors.Is(err, store.ErrNotFound):
		return nil, oauth.Errorf(oauth.InvalidGrant, "the authorization code is invalid, expired or already used")
	case err != nil:
		return nil, a.storeFailed("consuming code", err)
	}
	// The code is spent whatever follows: a request that fails these checks
	// may be an attacker's, and the code must not be left for another try.
	redirectURI := form.Get("redirect_uri")
	switch {
	case c.ClientID != client.ID:
		return nil, oauth.Errorf(oauth.InvalidGrant, "the authorization code was issued to another client")
	case redirectURI != c.RedirectURI && !(redirectURI == "" && client.RedirectURIOptional):
		return nil, oauth.Errorf(oauth.InvalidGrant, "redirect_uri does not exactly match the one of the authorization request")
	case c.Challenge == "" && verifier != "":
		// RFC 9700 §4.8.2: a verifier for a code issued without a
		// challenge is a sign of a PKCE downgrade attempt.
		return nil, oauth.Errorf(oauth.InvalidGrant, "code_verifier sent for a code issued without code_challenge")
	case c.Challenge != "" && subtle.ConstantTimeCompare([]byte(oauth.S256(verifier)), []byte(c.Challenge)) != 1:
		return nil, oauth.Errorf(oauth.InvalidGrant, "code_verifier does not match the code_challenge")
	}
	pair, resp, err := a.newPair(grantID, client, c.Subject, c.Scopes)
	if err != nil {
		return nil, a.storeFailed("making tokens", err)
	}
	err = a.tokens.IssueTokens(ctx, grantID, codeDigest, pair)
	switch {
	case errors.Is(err, store.ErrCodeReplayed), errors.Is(err, store.ErrNotFound):
		return nil, oauth.Errorf(oauth.InvalidGrant, "the authorization code was already used or the grant was revoked")
	case err != nil:
		return nil, a.storeFailed("issuing tokens", err)
	}
	a.auditEvent(ctx, auditTokensIssued, auditGrant(grantID, client.ID, c.Subject), zap.String("grant_type", "authorization_code"), zap.Strings("scopes", c.Scopes), auditDigest("code_digest", codeDigest), auditPair(pair))
	return resp, nil
}

// refresh rotates a refresh token (RFC 6749 §6, RFC 9700 §4.14.2): the old
// pair is revoked and a new one issued in one atomic store step.
func (a *App) refresh(ctx context.Context, client *oauth.Client, form url.Values) (*tokenResponse, *oauth.Error) {
	rt := form.Get("refresh_token")
	if rt == "" {
		return nil, oauth.Errorf(oauth.InvalidRequest, "refresh_token is missing")
	}
	prefix, grantID, ok := oauth.ParseToken(rt)
	if !ok || prefix != oauth.RefreshPrefix {
		return nil, oauth.Errorf(oauth.InvalidGrant, "the refresh token is invalid, expired or revoked")
	}
	old, err := a.tokens.GetToken(ctx, grantID, store.Refresh, oauth.Digest(rt))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, a.refreshNotFound(ctx, client, grantID, oauth.Digest(rt))
	case err != nil:
		return nil, a.storeFailed("loading refresh token", err)
	case old.ClientID != client.ID:
		return nil, oauth.Errorf(oauth.InvalidGrant, "the refresh token was issued to another client")
	}
	scopes := old.Scopes
	if raw := form.Get("scope"); raw != "" {
		// A narrower scope is allowed, a wider one never (RFC 6749 §6).
		scopes = oauth.ParseScope(raw)
		if m := oauth.Missing(old.Scopes, scopes); m != "" {
			return nil, oauth.Errorf(oauth.InvalidScope, "scope %q was not granted; refresh cannot widen scope", m)
		}
	}
	pair, resp, err := a.newPair(grantID, client, old.Subject, scopes)
	if err != nil {
		return nil, a.storeFailed("making tokens", err)
	}
	err = a.tokens.Rotate(ctx, grantID, oauth.Digest(rt), pair)
	switch {
	case errors.Is(err, store.ErrNotFound):
		// Lost a race with a concurrent refresh of the same token: the
		// winner's pair is the one to use (docs/partners.md D36).
		return nil, oauth.Errorf(oauth.InvalidGrant, "the refresh token was already used")
	case err != nil:
		return nil, a.storeFailed("rotating tokens", err)
	}
	a.auditEvent(ctx, auditTokensRefreshed, auditGrant(grantID, client.ID, old.Subject), zap.String("grant_type", "refresh_token"), zap.Strings("scopes", scopes), auditDigest("old_refresh_digest", oauth.Digest(rt)), auditPair(pair))
	return resp, nil
}

// refreshNotFound answers a refresh token the store does not hold. One
// that was rotated out earlier and comes back after the grace window is
// the sign of a stolen token (RFC 9700 §4.14.2; docs/partners.md D37: a
// client that keeps using an old refresh token loses the connection): the
// store has revoked the whole grant. Inside the window it is a lost race
// (docs/partners.md D36: exactly one of two concurrent refreshes wins, and
// the loser must not be sent to re-consent) and only gets invalid_grant.
func (a *App) refreshNotFound(ctx context.Context, client *oauth.Client, grantID, digest string) *oauth.Error {
	g, err := a.tokens.CheckReuse(ctx, grantID, digest, time.Duration(a.RefreshReuseGrace))
	switch {
	case errors.Is(err, store.ErrRefreshReused):
		a.auditEvent(ctx, auditRefreshReused, auditGrant(grantID, client.ID, g.Subject), auditDigest("refresh_digest", digest))
		return oauth.Errorf(oauth.InvalidGrant, "the refresh token was already used; the connection has been revoked and the user must authorize again")
	case err != nil && !errors.Is(err, store.ErrNotFound):
		return a.storeFailed("checking refresh token reuse", err)
	}
	return oauth.Errorf(oauth.InvalidGrant, "the refresh token is invalid, expired or revoked")
}

// newPair mints an access token and, unless the client gets none, a
// refresh token of a grant, with the client's lifetimes and budget.
func (a *App) newPair(grantID string, client *oauth.Client, subject string, scopes []string) (store.Pair, *tokenResponse, error) {
	accessLife, refreshLife := time.Duration(a.AccessTokenLifetime), time.Duration(a.RefreshTokenLifetime)
	if client.AccessTokenLifetime > 0 {
		accessLife = client.AccessTokenLifetime
	}
	if client.RefreshTokenLifetime > 0 {
		refreshLife = client.RefreshTokenLifetime
	}
	at, err := oauth.NewToken(a.rand, oauth.AccessPrefix, grantID)
	if err != nil {
		return store.Pair{}, nil, err
	}
	now := a.now()
	p := store.Pair{Access: store.Token{
		Digest: oauth.Digest(at), ClientID: client.ID, Subject: subject, Scopes: scopes,
		ExpiresAt: now.Add(accessLife),
		// The budget travels with the token so that the API hot path
		// needs no client lookup before its one store round trip.
		Limit: a.clientLimit(client.ID),
	}}
	resp := &tokenResponse{
		AccessToken: at,
		TokenType:   "Bearer",
		ExpiresIn:   int64(accessLife / time.Second),
		Scope:       oauth.FormatScope(scopes),
	}
	if !client.NoRefreshTokens {
		rt, err := oauth.NewToken(a.rand, oauth.RefreshPrefix, grantID)
		if err != nil {
			return store.Pair{}, nil, err
		}
		p.Refresh = store.Token{
			Digest: oauth.Digest(rt), ClientID: client.ID, Subject: subject, Scopes: scopes,
			ExpiresAt: now.Add(refreshLife),
		}
		p.Access.Pair, p.Refresh.Pair = p.Refresh.Digest, p.Access.Digest
		resp.RefreshToken = rt
	}
	return p, resp, nil
}

// storeFailed logs a store failure and answers 503: the client should retry,
// not conclude that its code or token is bad (docs/architecture.md §8.1).
func (a *App) storeFailed(op string, err error) *oauth.Error {
	a.logger.Error("store failure", zap.String("op", op), zap.Error(err))
	e := oauth.Errorf(oauth.TemporarilyUnavailable, "the authorization server is temporarily unavailable; retry shortly")
	return e
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Token)(nil)
	_ caddyhttp.MiddlewareHandler = (*Token)(nil)
)
