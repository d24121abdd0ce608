package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(adminAPI{})
}

// adminAPI adds Tollgate's operator routes to Caddy's admin endpoint
// (which listens on localhost:2019 unless the config says otherwise, and
// is the operator's, not the public's):
//
//	POST /tollgate/sign-in-locks/clear  {"username": "alice"}
//	                                    {"address": "203.0.113.7"}
//
// clears the current sign-in count of a username or a client address, on
// every instance at once since the counts live in the store;
//
//	GET    /tollgate/users/<subject>/grants
//	DELETE /tollgate/users/<subject>/grants/<client_id>
//
// list a user's grants and revoke one for support staff (admin_grants.go).
type adminAPI struct{}

// CaddyModule returns the Caddy module information.
func (adminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.tollgate",
		New: func() caddy.Module { return new(adminAPI) },
	}
}

// Routes implements caddy.AdminRouter.
func (adminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{
		Pattern: "/tollgate/sign-in-locks/clear",
		Handler: caddy.AdminHandlerFunc(clearSignInLock),
	}, {
		Pattern: usersPrefix,
		Handler: caddy.AdminHandlerFunc(userGrants),
	}}
}

func clearSignInLock(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: errors.New("method not allowed")}
	}
	var req struct {
		Username string `json:"username"`
		Address  string `json:"address"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || (req.Username == "") == (req.Address == "") {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: errors.New(`want a JSON body {"username": "..."} or {"address": "..."}`)}
	}
	mod, err := caddy.ActiveContext().AppIfConfigured("tollgate")
	if err != nil || mod == nil {
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: errors.New("the running config has no tollgate app")}
	}
	a := mod.(*App)
	key, limit := signInUserKey(req.Username), a.signInLimit
	if req.Address != "" {
		ip, err := netip.ParseAddr(req.Address)
		if err != nil {
			return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("address: %w", err)}
		}
		key, limit = signInAddressKey(&http.Request{RemoteAddr: netip.AddrPortFrom(ip, 0).String()}), a.signInAddressLimit
	}
	if limit.Count == 0 {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	if err := a.failures.ClearFailures(r.Context(), key, limit.Window); err != nil {
		return caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: fmt.Errorf("store: %w", err)}
	}
	a.logger.Info("sign-in lock cleared by an operator", zap.Bool("address", req.Address != ""))
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// Interface guard
var _ caddy.AdminRouter = adminAPI{}
