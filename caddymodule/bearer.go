package caddymodule

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"go.uber.org/zap"

	"github.com/tollgate/tollgate/caddymodule/oauth"
	"github.com/tollgate/tollgate/caddymodule/store"
)

// caller is who made an API request, as the store vouches for it.
type caller struct {
	GrantID string
	Token   store.Token
	Rate    store.RateStatus
}

// apiRoute is what a route that takes access tokens (tollgate_protect,
// tollgate_userinfo) checks them against: the scopes it needs, and its
// token-check counters (metrics.go).
type apiRoute struct {
	scopes []string
	// scopeList is scopes space-separated, for the insufficient_scope
	// challenge.
	scopeList string
	checks    routeChecks
}

// admit takes an API request on from the look-up of its token (c, or the
// refusal aerr, from authenticateBearer): it refuses a bad token, sets the
// budget headers that every authenticated answer carries (docs/partners.md
// D48), answers 429 once the grant's budget is spent and 403 when the
// token lacks a scope the route needs. Each refusal is written and
// counted; it reports whether the request may go on, and leaves counting a
// success to the caller, which may refuse it still.
func (rt *apiRoute) admit(a *App, w http.ResponseWriter, c *caller, aerr *apiError) bool {
	if aerr != nil {
		aerr.write(w, a.Realm)
		rt.checks.refused(aerr.Status)
		return false
	}
	a.rateHeaders(w.Header(), c.Rate)
	if !c.Rate.Allowed {
		tooMany(w, c.Rate, a.now(), a.Realm)
		rt.checks.limited(a, c.Token.ClientID)
		return false
	}
	if oauth.Missing(c.Token.Scopes, rt.scopes) != "" {
		insufficientScope(rt.scopeList).write(w, a.Realm)
		rt.checks.count(checkInsufficientScope)
		return false
	}
	return true
}

// apiError is a refusal on an API route: an RFC 9457 problem document with
// the RFC 6750 §3 WWW-Authenticate challenge a partner's client library
// reads to decide whether to refresh, re-consent or give up.
type apiError struct {
	Status int
	// Code is the RFC 6750 error code ("" for a request without a token,
	// which gets a bare challenge, §3.1).
	Code   string
	Detail string
	// Scope is the scope the route needed, for insufficient_scope.
	Scope string
}

// bearerToken returns the token of the Authorization header. RFC 6750
// §2.1 is the only method accepted: tokens in query strings end up in logs
// and Referer headers (§5.3), so they are never read.
func bearerToken(r *http.Request) (string, *apiError) {
	vals := r.Header.Values("Authorization")
	if len(vals) == 0 {
		return "", &apiError{Status: http.StatusUnauthorized, Detail: "this API needs an access token in the Authorization header: Bearer <token>"}
	}
	if len(vals) > 1 {
		return "", &apiError{Status: http.StatusBadRequest, Code: "invalid_request", Detail: "more than one Authorization header"}
	}
	scheme, tok, _ := strings.Cut(vals[0], " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", &apiError{Status: http.StatusUnauthorized, Detail: "this API needs an access token in the Authorization header: Bearer <token>"}
	}
	tok = strings.TrimSpace(tok)
	if tok == "" {
		return "", &apiError{Status: http.StatusBadRequest, Code: "invalid_request", Detail: "the Authorization header has no token"}
	}
	return tok, nil
}

// authenticateBearer checks the request's access token in one store round
// trip (docs/architecture.md §5.2) and counts it against the grant's
// budget, which the token record carries (set from the client's
// rate_limit at issuance).
func (a *App) authenticateBearer(r *http.Request) (caller, *apiError) {
	tok, aerr := bearerToken(r)
	if aerr != nil {
		return caller{}, aerr
	}
	prefix, grantID, ok := oauth.ParseToken(tok)
	if !ok || prefix != oauth.AccessPrefix {
		return caller{}, invalidToken()
	}
	t, rate, err := a.budgets.Authenticate(r.Context(), grantID, oauth.Digest(tok), store.Limit{})
	switch {
	case errors.Is(err, store.ErrNotFound):
		return caller{}, invalidToken()
	case err != nil:
		// Never 401 here: a partner would throw away a good token. A
		// caller that hung up (its context ended) is no store failure:
		// nobody reads the answer, and an error line per closed
		// connection would hide real ones.
		lvl := zap.ErrorLevel
		if r.Context().Err() != nil {
			lvl = zap.DebugLevel
		}
		if ce := a.logger.Check(lvl, "store failure on API request"); ce != nil {
			ce.Write(zap.Error(err))
		}
		return caller{}, &apiError{Status: http.StatusServiceUnavailable, Detail: "the gateway cannot check tokens right now; retry shortly"}
	}
	return caller{GrantID: grantID, Token: t, Rate: rate}, nil
}

func invalidToken() *apiError {
	return &apiError{Status: http.StatusUnauthorized, Code: "invalid_token", Detail: "the access token is invalid, expired or revoked"}
}

func insufficientScope(scope string) *apiError {
	return &apiError{
		Status: http.StatusForbidden, Code: "insufficient_scope", Scope: scope,
		Detail: "the access token was not granted the scope " + scope + "; send the user through authorization again requesting it",
	}
}

// write sends e as application/problem+json with its challenge.
func (e *apiError) write(w http.ResponseWriter, realm string) {
	h := w.Header()
	switch e.Status {
	case http.StatusUnauthorized, http.StatusForbidden, http.StatusBadRequest:
		var b strings.Builder
		b.WriteString(`Bearer realm=`)
		b.WriteString(strconv.Quote(realm))
		if e.Code != "" {
			b.WriteString(`, error="` + e.Code + `"`)
			b.WriteString(`, error_description=` + strconv.Quote(e.Detail))
		}
		if e.Scope != "" {
			b.WriteString(`, scope=` + strconv.Quote(e.Scope))
		}
		h.Set("WWW-Authenticate", b.String())
	case http.StatusServiceUnavailable:
		h.Set("Retry-After", "5")
	}
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(e.Status)
	_ = json.NewEncoder(w).Encode(problem{
		Type:   "about:blank",
		Title:  http.StatusText(e.Status),
		Status: e.Status,
		Detail: e.Detail,
		Error:  e.Code,
		Scope:  e.Scope,
	})
}

// problem is an RFC 9457 problem details document. With type about:blank
// the title is the status phrase (§4.2.1); error and scope are extension
// members repeating the RFC 6750 attributes for clients that read bodies.
type problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
	Error  string `json:"error,omitempty"`
	Scope  string `json:"scope,omitempty"`
}
