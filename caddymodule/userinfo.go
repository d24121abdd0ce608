package caddymodule

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/tollgate/tollgate/caddymodule/store"
)

func init() {
	caddy.RegisterModule(UserInfo{})
}

// userinfoScope is the scope /userinfo needs: profile:read covers name,
// role, country and photo URL (docs/partners.md D11).
const userinfoScope = "profile:read"

// UserInfo is the OIDC-style userinfo endpoint: the signed-in user's basic
// profile, for a bearer token with profile:read.
type UserInfo struct {
	appRef
	route apiRoute
}

// CaddyModule returns the Caddy module information.
func (UserInfo) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.tollgate_userinfo",
		New: func() caddy.Module { return new(UserInfo) },
	}
}

// Provision reaches the tollgate app and resolves the route's metrics.
func (h *UserInfo) Provision(ctx caddy.Context) error {
	h.route = userinfoRoute()
	return h.appRef.Provision(ctx)
}

// userinfoRoute is how /userinfo checks tokens: it needs userinfoScope,
// and its checks are labelled "userinfo" in the metrics.
func userinfoRoute() apiRoute {
	return apiRoute{scopes: []string{userinfoScope}, scopeList: userinfoScope, checks: newRouteChecks("userinfo")}
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (h *UserInfo) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	a := h.app
	if r.Method != http.MethodGet && r.Method != http.MethodHead && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, HEAD, POST")
		(&apiError{Status: http.StatusMethodNotAllowed, Detail: "use GET"}).write(w, a.Realm)
		h.route.checks.count(checkBadRequest)
		return nil
	}
	// /userinfo is an authenticated API response like any other: it
	// carries the budget headers and spends the budget (docs/partners.md
	// D48, docs/architecture.md §4.3).
	c, aerr := a.authenticateBearer(r)
	if !h.route.admit(a, w, &c, aerr) {
		return nil
	}
	profile := map[string]string(nil)
	if a.users != nil {
		profile = a.users.Profile(c.Token.Subject)
	}
	if profile == nil {
		g, err := a.grants.GetGrant(r.Context(), c.GrantID)
		switch {
		case errors.Is(err, store.ErrNotFound):
			invalidToken().write(w, a.Realm)
			h.route.checks.count(checkInvalid)
			return nil
		case err != nil:
			a.logger.Error("store failure on userinfo", zap.Error(err))
			(&apiError{Status: http.StatusServiceUnavailable, Detail: "retry shortly"}).write(w, a.Realm)
			h.route.checks.count(checkStoreError)
			return nil
		}
		profile = g.Profile
	}
	h.route.checks.count(checkOK)
	claims := map[string]string{"sub": c.Token.Subject}
	for _, f := range profileFields {
		claims[f] = profile[f]
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	return json.NewEncoder(w).Encode(claims)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*UserInfo)(nil)
	_ caddyhttp.MiddlewareHandler = (*UserInfo)(nil)
)
