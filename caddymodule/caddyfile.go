package caddymodule

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("tollgate", parseGlobal)
	for name, mod := range map[string]func() caddyhttp.MiddlewareHandler{
		"tollgate_authorize":   func() caddyhttp.MiddlewareHandler { return new(Authorize) },
		"tollgate_token":       func() caddyhttp.MiddlewareHandler { return new(Token) },
		"tollgate_revoke":      func() caddyhttp.MiddlewareHandler { return new(Revoke) },
		"tollgate_userinfo":    func() caddyhttp.MiddlewareHandler { return new(UserInfo) },
		"tollgate_connections": func() caddyhttp.MiddlewareHandler { return new(Connections) },
		"tollgate_introspect":  func() caddyhttp.MiddlewareHandler { return new(Introspect) },
	} {
		httpcaddyfile.RegisterHandlerDirective(name, parseEndpoint(name, mod))
		// The endpoints answer by themselves, like respond; ordering them
		// before reverse_proxy lets them share a site with a proxy.
		httpcaddyfile.RegisterDirectiveOrder(name, httpcaddyfile.Before, "reverse_proxy")
	}
	httpcaddyfile.RegisterHandlerDirective("tollgate_metadata", parseMetadata)
	httpcaddyfile.RegisterDirectiveOrder("tollgate_metadata", httpcaddyfile.Before, "reverse_proxy")
	httpcaddyfile.RegisterHandlerDirective("tollgate_protect", parseProtect)
	// Before rewrite, so that a rewrite in the same block can use
	// {http.auth.user.id} without wrapping the block in route.
	httpcaddyfile.RegisterDirectiveOrder("tollgate_protect", httpcaddyfile.Before, "rewrite")
}

// parseProtect parses the protecting handler:
//
//	tollgate_protect [<scope>...] {
//		name           <route name for the metrics>
//		scopes         <scope...>
//		user_header    <header name>
//		client_header  <header name>
//		scope_header   <header name>
//		etag           [<max body bytes>]
//		methods        <METHOD...>
//	}
func parseProtect(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	p := new(Protect)
	h.Next() // directive name
	p.Scopes = h.RemainingArgs()
	seen := map[string]bool{}
	for h.NextBlock(0) {
		dir := h.Val()
		if seen[dir] {
			return nil, h.Errf("%s given twice", dir)
		}
		seen[dir] = true
		var err error
		switch dir {
		case "scopes":
			more := h.RemainingArgs()
			if len(more) == 0 {
				return nil, h.ArgErr()
			}
			p.Scopes = append(p.Scopes, more...)
		case "name":
			err = oneArg(h.Dispenser, &p.Name)
		case "user_header":
			err = oneArg(h.Dispenser, &p.UserHeader)
		case "client_header":
			err = oneArg(h.Dispenser, &p.ClientHeader)
		case "scope_header":
			err = oneArg(h.Dispenser, &p.ScopeHeader)
		case "methods":
			p.Methods = h.RemainingArgs()
			if len(p.Methods) == 0 {
				return nil, h.ArgErr()
			}
			if err := checkMethods(p.Methods); err != nil {
				return nil, h.Err(err.Error())
			}
		case "etag":
			p.ETag = true
			if h.NextArg() {
				n, perr := strconv.Atoi(h.Val())
				if perr != nil || n <= 0 {
					return nil, h.Errf("etag: %q is not a positive byte count", h.Val())
				}
				p.ETagMaxBytes = n
				if h.NextArg() {
					return nil, h.ArgErr()
				}
			}
		default:
			return nil, h.Errf("tollgate_protect: unknown option %q", dir)
		}
		if err != nil {
			return nil, err
		}
	}
	return p, nil
}

// parseEndpoint parses an endpoint directive, which takes no arguments:
//
//	tollgate_authorize
//	tollgate_token
//	tollgate_revoke
//	tollgate_userinfo
//	tollgate_connections
//	tollgate_introspect
func parseEndpoint(name string, mod func() caddyhttp.MiddlewareHandler) httpcaddyfile.UnmarshalHandlerFunc {
	return func(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
		h.Next() // directive name
		if h.NextArg() {
			return nil, h.Errf("%s takes no arguments", name)
		}
		if h.NextBlock(0) {
			return nil, h.Errf("%s takes no block", name)
		}
		return mod(), nil
	}
}

// parseGlobal parses the tollgate global option:
//
//	tollgate {
//		store                  memory | redis://… | rediss://… | {env.NAME}
//		store redis { … }      (Cluster, Sentinel, TLS, ACL: see parseStore)
//		store_timeout          <duration>
//		issuer                 <https origin>
//		realm                  <name>
//		rate_limit             <count>/<duration> | unlimited
//		rate_limit_headers
//		access_token_lifetime  <duration>
//		refresh_token_lifetime <duration>
//		code_lifetime          <duration>
//		session_lifetime       <duration>
//		refresh_reuse_grace    <duration>
//		webhook_max_age        <duration>
//		sign_in_limit          <count>/<duration> | unlimited
//		sign_in_address_limit  <count>/<duration> | unlimited
//		scope <name> <plain-English description>
//		client <client_id> {
//			name          <display name>
//			secret        <secret or {env.NAME}>  (an inline secret becomes secret_sha256)
//			secret_sha256 <hex digest>
//			redirect_uri  <uri...>
//			scopes        <scope...>
//			rate_limit    <count>/<duration> | unlimited
//			webhook       <url> <whsec_ secret or {env.NAME}>
//			pkce          required | optional
//			state         required | optional
//			state_min_length <n>
//			redirect_uri_optional
//			https_only
//			token_json
//			token_header  <name> <value or {env.NAME}>  (an inline value becomes value_sha256)
//			default_scopes <scope...>
//			access_token_lifetime  <duration>
//			refresh_token_lifetime <duration>
//			refresh_tokens on | off
//		}
//		users {
//			<username> <bcrypt hash> {
//				name    <name>
//				role    <role>
//				country <country>
//				picture <url>
//			}
//		}
//		users caddy_auth
//	}
func parseGlobal(d *caddyfile.Dispenser, _ any) (any, error) {
	app := new(App)
	d.Next() // option name
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	seen := map[string]bool{}
	for d.NextBlock(0) {
		dir := d.Val()
		switch dir {
		case "scope", "client":
		default:
			if seen[dir] {
				return nil, d.Errf("%s given twice", dir)
			}
			seen[dir] = true
		}
		switch dir {
		case "store":
			if err := parseStore(d, app); err != nil {
				return nil, err
			}
		case "store_timeout":
			if err := durationArg(d, &app.StoreTimeout); err != nil {
				return nil, err
			}
		case "issuer":
			if err := oneArg(d, &app.Issuer); err != nil {
				return nil, err
			}
		case "realm":
			if err := oneArg(d, &app.Realm); err != nil {
				return nil, err
			}
		case "rate_limit":
			if err := oneArg(d, &app.RateLimit); err != nil {
				return nil, err
			}
		case "sign_in_limit":
			if err := oneArg(d, &app.SignInLimit); err != nil {
				return nil, err
			}
		case "sign_in_address_limit":
			if err := oneArg(d, &app.SignInAddressLimit); err != nil {
				return nil, err
			}
		case "rate_limit_headers":
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			app.RateLimitHeaders = true
		case "access_token_lifetime":
			if err := durationArg(d, &app.AccessTokenLifetime); err != nil {
				return nil, err
			}
		case "refresh_token_lifetime":
			if err := durationArg(d, &app.RefreshTokenLifetime); err != nil {
				return nil, err
			}
		case "code_lifetime":
			if err := durationArg(d, &app.CodeLifetime); err != nil {
				return nil, err
			}
		case "session_lifetime":
			if err := durationArg(d, &app.SessionLifetime); err != nil {
				return nil, err
			}
		case "refresh_reuse_grace":
			if err := durationArg(d, &app.RefreshReuseGrace); err != nil {
				return nil, err
			}
		case "webhook_max_age":
			if err := durationArg(d, &app.WebhookMaxAge); err != nil {
				return nil, err
			}
		case "scope":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return nil, d.Errf("scope takes a name and a quoted description")
			}
			app.Scopes = append(app.Scopes, Scope{Name: args[0], Description: args[1]})
		case "client":
			c, err := parseClient(d)
			if err != nil {
				return nil, err
			}
			app.Clients = append(app.Clients, c)
		case "users":
			raw, err := parseUsers(d)
			if err != nil {
				return nil, err
			}
			app.UsersRaw = raw
		default:
			return nil, d.Errf("unknown tollgate option %q", dir)
		}
	}
	return httpcaddyfile.App{Name: "tollgate", Value: caddyconfig.JSON(app, nil)}, nil
}

func parseClient(d *caddyfile.Dispenser) (ClientConfig, error) {
	var c ClientConfig
	if !d.NextArg() {
		return c, d.Errf("client needs a client_id")
	}
	c.ClientID = d.Val()
	if d.NextArg() {
		return c, d.ArgErr()
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		dir := d.Val()
		if seen[dir] && dir != "redirect_uri" {
			return c, d.Errf("client %s: %s given twice", c.ClientID, dir)
		}
		seen[dir] = true
		switch dir {
		case "name":
			if err := oneArg(d, &c.Name); err != nil {
				return c, err
			}
		case "secret":
			var v string
			if err := oneArg(d, &v); err != nil {
				return c, err
			}
			// Only the digest of an inline secret goes into the JSON, so
			// that Caddy's /config API and autosave.json never hold it; a
			// placeholder is kept, to be resolved and hashed at load.
			if hasPlaceholder(v) {
				c.Secret = v
			} else {
				c.SecretSHA256 = sha256Hex(v)
			}
		case "secret_sha256":
			if err := oneArg(d, &c.SecretSHA256); err != nil {
				return c, err
			}
		case "redirect_uri":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return c, d.ArgErr()
			}
			c.RedirectURIs = append(c.RedirectURIs, args...)
		case "scopes":
			c.Scopes = d.RemainingArgs()
			if len(c.Scopes) == 0 {
				return c, d.ArgErr()
			}
		case "rate_limit":
			if err := oneArg(d, &c.RateLimit); err != nil {
				return c, err
			}
		case "pkce":
			if err := oneArg(d, &c.PKCE); err != nil {
				return c, err
			}
		case "webhook":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return c, d.Errf("client %s: webhook takes a URL and a whsec_ secret", c.ClientID)
			}
			c.WebhookURL, c.WebhookSecret = args[0], args[1]
		case "state":
			if err := oneArg(d, &c.State); err != nil {
				return c, err
			}
		case "state_min_length":
			var v string
			if err := oneArg(d, &v); err != nil {
				return c, err
			}
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return c, d.Errf("client %s: state_min_length %q is not a length", c.ClientID, v)
			}
			c.StateMinLength = n
		case "redirect_uri_optional":
			if d.NextArg() {
				return c, d.ArgErr()
			}
			c.RedirectURIOptional = true
		case "https_only":
			if d.NextArg() {
				return c, d.ArgErr()
			}
			c.HTTPSOnly = true
		case "token_json":
			if d.NextArg() {
				return c, d.ArgErr()
			}
			c.TokenJSON = true
		case "token_header":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return c, d.Errf("client %s: token_header takes a header name and a value", c.ClientID)
			}
			// As for secret: an inline value is kept as its digest only.
			c.TokenHeader = &HeaderRequirement{Name: args[0], Value: args[1]}
			if !hasPlaceholder(args[1]) {
				c.TokenHeader = &HeaderRequirement{Name: args[0], ValueSHA256: sha256Hex(args[1])}
			}
		case "default_scopes":
			c.DefaultScopes = d.RemainingArgs()
			if len(c.DefaultScopes) == 0 {
				return c, d.ArgErr()
			}
		case "access_token_lifetime":
			if err := durationArg(d, &c.AccessTokenLifetime); err != nil {
				return c, err
			}
		case "refresh_token_lifetime":
			if err := durationArg(d, &c.RefreshTokenLifetime); err != nil {
				return c, err
			}
		case "refresh_tokens":
			var v string
			if err := oneArg(d, &v); err != nil {
				return c, err
			}
			if v != "on" && v != "off" {
				return c, d.Errf("client %s: refresh_tokens takes on or off", c.ClientID)
			}
			on := v == "on"
			c.RefreshTokens = &on
		default:
			return c, d.Errf("client %s: unknown option %q", c.ClientID, dir)
		}
	}
	if seen["secret"] && seen["secret_sha256"] {
		return c, d.Errf("client %s: give secret or secret_sha256, not both", c.ClientID)
	}
	return c, nil
}

// hasPlaceholder reports whether a Caddyfile value holds a runtime
// placeholder such as {env.NAME} or {file./run/secrets/x}, which the app
// resolves when the config loads. ({$NAME} is substituted by the Caddyfile
// parser itself, so the adapter sees its value.)
func hasPlaceholder(v string) bool {
	open := strings.IndexByte(v, '{')
	return open >= 0 && strings.IndexByte(v[open:], '}') > 0
}

// sha256Hex is the hex SHA-256 digest of a secret, as secret_sha256 holds it.
func sha256Hex(v string) string {
	sum := sha256.Sum256([]byte(v))
	return hex.EncodeToString(sum[:])
}

func parseUsers(d *caddyfile.Dispenser) (json.RawMessage, error) {
	if d.NextArg() {
		if d.Val() != "caddy_auth" {
			return nil, d.Errf("users: want a block of users or caddy_auth, got %q", d.Val())
		}
		if d.NextArg() {
			return nil, d.ArgErr()
		}
		return caddyconfig.JSONModuleObject(CaddyAuthUsers{}, "authenticator", "caddy_auth", nil), nil
	}
	var s StaticUsers
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		u := StaticUser{Username: d.Val()}
		if !d.NextArg() {
			return nil, d.Errf("user %s: needs a bcrypt password hash", u.Username)
		}
		u.Password = d.Val()
		if d.NextArg() {
			return nil, d.ArgErr()
		}
		for n2 := d.Nesting(); d.NextBlock(n2); {
			var err error
			switch field := d.Val(); field {
			case "name":
				err = oneArg(d, &u.Name)
			case "role":
				err = oneArg(d, &u.Role)
			case "country":
				err = oneArg(d, &u.Country)
			case "picture":
				err = oneArg(d, &u.Picture)
			default:
				err = d.Errf("user %s: unknown field %q", u.Username, field)
			}
			if err != nil {
				return nil, err
			}
		}
		s.Users = append(s.Users, u)
	}
	return caddyconfig.JSONModuleObject(s, "authenticator", "static", nil), nil
}

// oneArg reads exactly one argument into dst.
func oneArg(d *caddyfile.Dispenser, dst *string) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	*dst = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

func durationArg(d *caddyfile.Dispenser, dst *caddy.Duration) error {
	var s string
	if err := oneArg(d, &s); err != nil {
		return err
	}
	dur, err := caddy.ParseDuration(s)
	if err != nil {
		return d.Errf("%s: %v", d.Val(), err)
	}
	if dur <= 0 {
		return d.Errf("%s must be positive", s)
	}
	*dst = caddy.Duration(dur)
	return nil
}
