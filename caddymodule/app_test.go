package caddymodule

import (
	"crypto/rand"
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/tollgate/tollgate/caddymodule/store"
	"github.com/tollgate/tollgate/caddymodule/store/memory"
	"github.com/tollgate/tollgate/caddymodule/store/storetest"
	"github.com/tollgate/tollgate/caddymodule/webhook"
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
		{"no client_id", `{` + scopes + `,"clients":[{"secret":"s","redirect_uris":["https://a.example/cb"]}]}`, "a client has no client_id"},
		{"no redirect URI", `{` + scopes + `,"clients":[{"client_id":"c","secret":"s"}]}`, "client c: no redirect_uri registered"},
		{"state typo", client(`,"state":"maybe"`), "client c: state must be required or optional"},
		{"negative state length", client(`,"state_min_length":-1`), "client c: state_min_length must not be negative"},
		{"secret placeholder resolving to nothing", `{` + scopes + `,"clients":[{"client_id":"c","secret":"{env.TOLLGATE_TEST_UNSET}","redirect_uris":["https://a.example/cb"]}]}`, "client c: secret resolved to an empty value"},
		{"bad client rate limit", client(`,"rate_limit":"lots"`), "client c: rate_limit"},
		{"relative webhook URL", client(`,"webhook_url":"/hooks","webhook_secret":"hunter2"`), "client c: webhook URL must be an absolute http(s) URL"},
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

func TestParseRateLimit(t *testing.T) {
	for in, ok := range map[string]bool{
		"5000/1h": true, "10/1s": true, "1/90d": true, "": true, "unlimited": true,
		"5000": false, "0/1h": false, "-1/1h": false, "10/0s": false, "10/500ms": false, "x/1h": false, "10/soon": false,
	} {
		l, err := parseRateLimit(in)
		if (err == nil) != ok {
			t.Errorf("parseRateLimit(%q) err = %v, want ok=%v", in, err, ok)
		}
		if in == "5000/1h" && (l.Count != 5000 || l.Window.Hours() != 1) {
			t.Errorf("5000/1h parsed as %+v", l)
		}
	}
}

const (
	testIssuer  = "https://api.example.com"
	testSecret  = "partner-secret"
	otherSecret = "other-secret"
)

// newTestApp is a provisioned tollgate app on its own memory store and
// clock, with two clients: "partner" (budget 2/1h) and "other". The clock
// stands at the start of an hour, so a budget's window starts with it.
func newTestApp(t testing.TB) (*App, *storetest.Clock) {
	t.Helper()
	clk := storetest.NewClock()
	a := &App{
		Issuer:               testIssuer,
		Realm:                "tollgate",
		AccessTokenLifetime:  caddy.Duration(time.Hour),
		RefreshTokenLifetime: caddy.Duration(90 * 24 * time.Hour),
		CodeLifetime:         caddy.Duration(time.Minute),
		SessionLifetime:      caddy.Duration(defaultSessionLifetime),
		RefreshReuseGrace:    caddy.Duration(10 * time.Second),
		Scopes: []Scope{
			{Name: "profile:read", Description: "Name"},
			{Name: "seatime:read", Description: "Sea time"},
		},
		StoreTimeout:   caddy.Duration(defaultStoreTimeout),
		logger:         zap.NewNop(),
		audit:          zap.NewNop(),
		formKeyCache:   new(atomic.Pointer[[]byte]),
		formKeyChecked: new(atomic.Int64),
		now:            clk.Now,
		rand:           rand.Reader,
		scopes:         map[string]string{"profile:read": "Name", "seatime:read": "Sea time"},
	}
	a.Clients = []ClientConfig{
		{ClientID: "partner", Secret: testSecret, RedirectURIs: []string{"https://partner.example.com/cb"}, Scopes: []string{"profile:read", "seatime:read"}, RateLimit: "2/1h"},
		{ClientID: "other", Secret: otherSecret, RedirectURIs: []string{"https://other.example.com/cb"}, Scopes: []string{"profile:read"}},
	}
	if err := a.provisionClients(caddy.NewReplacer()); err != nil {
		t.Fatal(err)
	}
	st := memory.New(clk.Now)
	t.Cleanup(func() { st.Close() })
	// As Provision has it: timed, with no deadline on the memory store.
	a.useStore(deadlineStore{st: st})
	// As Provision does; never started, so events stay queued in st.
	a.webhooks = &webhook.Dispatcher{Queue: st, Endpoint: a.webhookEndpoint, Now: clk.Now, Logger: zap.NewNop()}
	return a, clk
}

// closeStore closes a test app's store: every later call fails, as when
// the store cannot be reached.
func closeStore(a *App) { _ = a.grants.(store.Lifecycle).Close() }
