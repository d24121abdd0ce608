package caddymodule

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/tollgate/tollgate/caddymodule/oauth"
	"github.com/tollgate/tollgate/caddymodule/store"
	"github.com/tollgate/tollgate/caddymodule/webhook"
)

// ClientConfig registers one partner application.
type ClientConfig struct {
	// ClientID is the public identifier issued to the partner.
	ClientID string `json:"client_id"`
	// Name is the display name shown to users on the consent screen.
	Name string `json:"name,omitempty"`
	// Secret is the client secret. Give it through a placeholder such as
	// {env.PARTNER_SECRET} or {file./run/secrets/partner}; it is resolved
	// and hashed when the config is loaded. A value written here in clear
	// shows in the /config API (a warning is logged); the Caddyfile
	// adapter writes an inline secret as SecretSHA256 instead.
	Secret string `json:"secret,omitempty"`
	// SecretSHA256 is the hex SHA-256 digest of the client secret, an
	// alternative to Secret that keeps the secret out of the config.
	SecretSHA256 string `json:"secret_sha256,omitempty"`
	// RedirectURIs are the registered redirect URIs, matched byte for
	// byte. They must be https, except http://localhost and
	// http://127.0.0.1 on any port.
	RedirectURIs []string `json:"redirect_uris,omitempty"`
	// Scopes are the scopes this client may request.
	Scopes []string `json:"scopes,omitempty"`
	// RateLimit overrides the app's default budget for this client's
	// grants, as <count>/<duration>; "unlimited" turns counting off.
	RateLimit string `json:"rate_limit,omitempty"`

	// The policy knobs below default to the DSS behaviour.

	// PKCE is "required" (default) or "optional". Optional still verifies
	// a challenge that was sent, and refuses a code_verifier for a code
	// issued without one (RFC 9700 §4.8.2).
	PKCE string `json:"pkce,omitempty"`
	// State is "required" (default) or "optional".
	State string `json:"state,omitempty"`
	// StateMinLength is the minimum length of state, when sent.
	StateMinLength int `json:"state_min_length,omitempty"`
	// RedirectURIOptional lets authorization requests omit redirect_uri
	// (the first registered URI is used) and token requests omit it too.
	RedirectURIOptional bool `json:"redirect_uri_optional,omitempty"`
	// HTTPSOnly refuses plain-http redirect URIs even on loopback.
	HTTPSOnly bool `json:"https_only,omitempty"`
	// TokenJSON lets the token endpoint take application/json bodies as
	// well as forms.
	TokenJSON bool `json:"token_json,omitempty"`
	// TokenHeader is a header the token and revocation requests must carry
	// (e.g. an Api-key issued at registration).
	TokenHeader *HeaderRequirement `json:"token_header,omitempty"`
	// DefaultScopes are granted when the authorization request omits
	// scope (RFC 6749 §3.3).
	DefaultScopes []string `json:"default_scopes,omitempty"`
	// AccessTokenLifetime and RefreshTokenLifetime override the app's.
	AccessTokenLifetime  caddy.Duration `json:"access_token_lifetime,omitempty"`
	RefreshTokenLifetime caddy.Duration `json:"refresh_token_lifetime,omitempty"`
	// RefreshTokens, when false, issues access tokens only. Default true.
	RefreshTokens *bool `json:"refresh_tokens,omitempty"`

	// WebhookURL receives the client's user.consent.revoked events.
	WebhookURL string `json:"webhook_url,omitempty"`
	// WebhookSecret signs them (Standard Webhooks), as whsec_<base64>;
	// give it through a placeholder such as {env.PARTNER_WEBHOOK_SECRET}.
	WebhookSecret string `json:"webhook_secret,omitempty"`
}

// HeaderRequirement is a request header that must carry a given value.
type HeaderRequirement struct {
	// Name is the header name, e.g. Api-key.
	Name string `json:"name"`
	// Value is the expected value; placeholders such as {env.API_KEY} are
	// resolved at load time and only its digest is kept.
	Value string `json:"value,omitempty"`
	// ValueSHA256 is the hex SHA-256 digest of the value, an alternative
	// to Value that keeps it out of the config (the Caddyfile adapter
	// writes an inline value this way).
	ValueSHA256 string `json:"value_sha256,omitempty"`
}

// client is a registered client as a running config holds it: the
// protocol's view of it (oauth.Client) and what the gateway adds.
type client struct {
	oauth.Client
	// limit is the budget of each of the client's grants. It travels
	// with every access token issued to the client (token.go), so that
	// the API hot path looks no client up.
	limit store.Limit
	// webhook is where the client's events go and the key that signs
	// them; nil when it has no webhook.
	webhook *webhookTarget
}

// provision resolves the registration's placeholders, keeps its secrets
// only as digests, applies the app's defaults (defaultLimit, its rate_limit)
// and checks everything that concerns this client alone; App.Validate
// checks what spans the config. Its errors do not name the client: the
// caller does. Inline secrets are reported to logger (secrets.go).
func (cc *ClientConfig) provision(repl *caddy.Replacer, defaultLimit store.Limit, logger *zap.Logger) (*client, error) {
	cc.warnInlineSecrets(logger)
	c := &client{
		Client: oauth.Client{
			ID:           cc.ClientID,
			Name:         cc.Name,
			RedirectURIs: cc.RedirectURIs,
			Scopes:       cc.Scopes,
		},
		limit: defaultLimit,
	}
	if c.Name == "" {
		c.Name = c.ID
	}

	switch {
	case cc.Secret != "" && cc.SecretSHA256 != "":
		return nil, fmt.Errorf("give secret or secret_sha256, not both")
	case cc.Secret != "":
		secret := repl.ReplaceAll(cc.Secret, "")
		if secret == "" {
			return nil, fmt.Errorf("secret resolved to an empty value")
		}
		c.SecretDigest = sha256.Sum256([]byte(secret))
	case cc.SecretSHA256 != "":
		var ok bool
		if c.SecretDigest, ok = parseSHA256(cc.SecretSHA256); !ok {
			return nil, fmt.Errorf("secret_sha256 must be 64 hex digits")
		}
	default:
		return nil, fmt.Errorf("no secret (confidential clients only)")
	}

	if len(cc.RedirectURIs) == 0 {
		return nil, fmt.Errorf("no redirect_uri registered")
	}
	for _, u := range cc.RedirectURIs {
		if err := oauth.CheckRegisteredRedirectURI(u, cc.HTTPSOnly); err != nil {
			return nil, err
		}
	}

	if cc.PKCE != "" && cc.PKCE != "required" && cc.PKCE != "optional" {
		return nil, fmt.Errorf("pkce must be required or optional")
	}
	if cc.State != "" && cc.State != "required" && cc.State != "optional" {
		return nil, fmt.Errorf("state must be required or optional")
	}
	if cc.StateMinLength < 0 {
		return nil, fmt.Errorf("state_min_length must not be negative")
	}
	for _, s := range cc.DefaultScopes {
		if !slices.Contains(cc.Scopes, s) {
			return nil, fmt.Errorf("default scope %q is not among its scopes", s)
		}
	}
	c.Policy = oauth.Policy{
		PKCEOptional:         cc.PKCE == "optional",
		StateOptional:        cc.State == "optional",
		StateMinLength:       cc.StateMinLength,
		RedirectURIOptional:  cc.RedirectURIOptional,
		HTTPSOnly:            cc.HTTPSOnly,
		JSONBody:             cc.TokenJSON,
		DefaultScopes:        cc.DefaultScopes,
		AccessTokenLifetime:  time.Duration(cc.AccessTokenLifetime),
		RefreshTokenLifetime: time.Duration(cc.RefreshTokenLifetime),
		NoRefreshTokens:      cc.RefreshTokens != nil && !*cc.RefreshTokens,
	}

	if th := cc.TokenHeader; th != nil {
		v := repl.ReplaceAll(th.Value, "")
		switch {
		case th.Name == "" || (v == "" && th.ValueSHA256 == ""):
			return nil, fmt.Errorf("token_header needs a name and a non-empty value")
		case th.Value != "" && th.ValueSHA256 != "":
			return nil, fmt.Errorf("token_header: give value or value_sha256, not both")
		case th.ValueSHA256 != "":
			var ok bool
			if c.TokenHeaderDigest, ok = parseSHA256(th.ValueSHA256); !ok {
				return nil, fmt.Errorf("token_header value_sha256 must be 64 hex digits")
			}
		default:
			c.TokenHeaderDigest = sha256.Sum256([]byte(v))
		}
		c.TokenHeader = http.CanonicalHeaderKey(th.Name)
	}

	if cc.RateLimit != "" {
		// "unlimited" turns counting off for this client.
		var err error
		if c.limit, err = parseRateLimit(repl.ReplaceAll(cc.RateLimit, "")); err != nil {
			return nil, fmt.Errorf("rate_limit: %w", err)
		}
	}

	if cc.WebhookURL != "" || cc.WebhookSecret != "" {
		raw := repl.ReplaceAll(cc.WebhookURL, "")
		if !absoluteHTTPURL(raw) {
			return nil, fmt.Errorf("webhook URL must be an absolute http(s) URL")
		}
		secret, err := webhook.ParseSecret(repl.ReplaceAll(cc.WebhookSecret, ""))
		if err != nil {
			// Never echo the secret.
			return nil, fmt.Errorf("webhook secret must be whsec_<base64>: %w", err)
		}
		c.webhook = &webhookTarget{url: raw, secret: secret}
	}
	return c, nil
}

// parseSHA256 reads a SHA-256 digest written as 64 hex digits.
func parseSHA256(s string) (d [sha256.Size]byte, ok bool) {
	b, err := hex.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != sha256.Size {
		return d, false
	}
	copy(d[:], b)
	return d, true
}

// absoluteHTTPURL reports whether raw is an absolute http or https URL,
// as a webhook URL must be.
func absoluteHTTPURL(raw string) bool {
	u, err := url.Parse(raw)
	return err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != ""
}

// clientLimit is the budget of each grant of client id: none for an id
// the config does not register.
func (a *App) clientLimit(id string) store.Limit {
	if c := a.clients[id]; c != nil {
		return c.limit
	}
	return store.Limit{}
}
