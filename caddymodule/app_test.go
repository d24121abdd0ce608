package caddymodule

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// validate provisions and validates a tollgate app config the way a config
// load does, without starting anything.
func validate(t *testing.T, app string) error {
	t.Helper()
	var cfg caddy.Config
	raw := `{"admin":{"disabled":true},"apps":{"tollgate":` + app + `}}`
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		t.Fatal(err)
	}
	return caddy.Validate(&cfg)
}

// Operator mistakes fail the config load with a message naming the client
// and the setting, instead of surfacing later as a partner's error.
func TestAppValidateRefusesOperatorMistakes(t *testing.T) {
	const scopes = `"scopes":[{"name":"profile:read","description":"Name"}]`
	client := func(extra string) string {
		return `{` + scopes + `,"clients":[{"client_id":"c","secret":"s","redirect_uris":["https://app.example.com/cb"],"scopes":["profile:read"]` + extra + `}]}`
	}
	if err := validate(t, client("")); err != nil {
		t.Fatalf("a valid config was refused: %v", err)
	}
	for _, tc := range []struct{ name, app, want string }{
		{"http redirect URI off loopback", `{` + scopes + `,"clients":[{"client_id":"c","secret":"s","redirect_uris":["http://app.example.com/cb"],"scopes":["profile:read"]}]}`, "must be https"},
		{"https_only refuses loopback http", `{` + scopes + `,"clients":[{"client_id":"c","secret":"s","https_only":true,"redirect_uris":["http://localhost:9/cb"],"scopes":["profile:read"]}]}`, "must be https"},
		{"scope outside the catalogue", `{` + scopes + `,"clients":[{"client_id":"c","secret":"s","redirect_uris":["https://a.example/cb"],"scopes":["admin"]}]}`, `scope "admin" is not in the scope catalogue`},
		{"default scope outside the client's", client(`,"default_scopes":["vessels:read"]`), "default scope"},
		{"no secret", `{` + scopes + `,"clients":[{"client_id":"c","redirect_uris":["https://a.example/cb"]}]}`, "no secret"},
		{"secret and digest", client(`,"secret_sha256":"00"`), "not both"},
		{"bad digest", `{` + scopes + `,"clients":[{"client_id":"c","secret_sha256":"zz","redirect_uris":["https://a.example/cb"]}]}`, "64 hex digits"},
		{"pkce typo", client(`,"pkce":"sometimes"`), "pkce must be required or optional"},
		{"reuse grace too long", `{"refresh_reuse_grace":600000000000}`, "refresh_reuse_grace"},
		{"bad rate limit", `{"rate_limit":"lots"}`, "rate_limit"},
		{"token_header value and digest", client(`,"token_header":{"name":"Api-key","value":"k","value_sha256":"00"}`), "not both"},
		{"bad token_header digest", client(`,"token_header":{"name":"Api-key","value_sha256":"zz"}`), "64 hex digits"},
		{"token_header without value", client(`,"token_header":{"name":"Api-key"}`), "non-empty value"},
		{"negative store timeout", `{"store_timeout":-1}`, "store_timeout"},
		{"store timeout too long", `{"store_timeout":"5m"}`, "store_timeout"},
		{"bad webhook secret", client(`,"webhook_url":"https://a.example/h","webhook_secret":"hunter2"`), "whsec_"},
		{"unknown store", `{"store":"postgres://x"}`, "redis://"},
		{"duplicate client", `{` + scopes + `,"clients":[{"client_id":"c","secret":"s","redirect_uris":["https://a.example/cb"]},{"client_id":"c","secret":"s","redirect_uris":["https://a.example/cb"]}]}`, "registered twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := validate(t, tc.app)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatal("the error quotes the secret")
			}
		})
	}
}
