package caddymodule

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"go.uber.org/zap"

	"github.com/tollgate/tollgate/caddymodule/store"
)

func TestPrefixFromName(t *testing.T) {
	for name, want := range map[string]string{
		"Yacht Crew App":           "yca",
		"yacht-crew app":           "yca",
		"3D Printing Co":           "pc",
		"Acme":                     "tg", // one initial is too short
		"Élan Vital":               "lv", // non-ASCII letters are skipped
		"Very Long Partner Name X": "vlpn",
		"":                         "tg",
	} {
		if got := prefixFromName(name); got != want {
			t.Errorf("prefixFromName(%q) = %q, want %q", name, got, want)
		}
	}
}

// The block new-client prints goes through the Caddyfile adapter into a
// client that the gateway builds and that authenticates exactly the
// printed secret (README "Operator commands").
func TestNewClientBlockLoadsAndAuthenticatesThePrintedSecret(t *testing.T) {
	spec := newClientSpec{
		Name:         "Yacht Crew App",
		RedirectURIs: []string{"https://app.example.com/cb", "http://localhost:9999/cb"},
		Scopes:       []string{"profile:read", "seatime:read"},
		WebhookURL:   "https://app.example.com/hooks",
	}
	if err := spec.check(); err != nil {
		t.Fatal(err)
	}
	c, err := newCredentials(rand.Reader, spec)
	if err != nil {
		t.Fatal(err)
	}
	out := c.render(spec)
	block := out[strings.Index(out, "client "+c.ClientID+" {"):]
	if strings.Contains(block, c.ClientSecret) || strings.Contains(block, strings.TrimPrefix(c.WebhookSecret, "whsec_")) {
		t.Fatalf("the block holds a secret:\n%s", block)
	}
	raw, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte("{\n\ttollgate {\n"+block+"\t}\n}\n"), nil)
	if err != nil {
		t.Fatalf("adapting the printed block: %v\n%s", err, block)
	}
	var cfg struct {
		Apps struct {
			Tollgate App `json:"tollgate"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(raw, &cfg); err != nil || len(cfg.Apps.Tollgate.Clients) != 1 {
		t.Fatalf("adapted config %s (%v): want one client", raw, err)
	}
	cc := cfg.Apps.Tollgate.Clients[0]
	if cc.ClientID != c.ClientID || cc.Name != spec.Name || cc.Secret != "" ||
		strings.Join(cc.RedirectURIs, " ") != strings.Join(spec.RedirectURIs, " ") ||
		strings.Join(cc.Scopes, " ") != strings.Join(spec.Scopes, " ") ||
		cc.WebhookURL != spec.WebhookURL || cc.WebhookSecret != "{env."+webhookEnvVar(c.ClientID)+"}" {
		t.Fatalf("adapted client %+v does not match %+v", cc, spec)
	}
	// The printed webhook secret is one the gateway accepts.
	t.Setenv(webhookEnvVar(c.ClientID), c.WebhookSecret)
	client, err := cc.provision(caddy.NewReplacer(), store.Limit{}, zap.NewNop())
	if err != nil {
		t.Fatalf("the printed credentials, the webhook secret set in %s: %v", webhookEnvVar(c.ClientID), err)
	}
	if client.webhook == nil || client.webhook.url != spec.WebhookURL {
		t.Fatalf("webhook %+v, want one to %s", client.webhook, spec.WebhookURL)
	}
	if !client.Authenticate(c.ClientSecret) || client.Authenticate(c.ClientSecret+"\n") || client.Authenticate(cc.SecretSHA256) {
		t.Fatal("the built client must authenticate the printed secret and nothing else")
	}
	if !bytes.HasPrefix([]byte(c.ClientID), []byte("yca_")) || len(c.ClientID) != len("yca_")+8 {
		t.Errorf("client_id %q, want yca_ and 8 hex digits", c.ClientID)
	}
}

func TestNewClientSpecRefusals(t *testing.T) {
	base := func() newClientSpec {
		return newClientSpec{Name: "Partner", RedirectURIs: []string{"https://p.example/cb"}, Scopes: []string{"profile:read"}}
	}
	for name, mutate := range map[string]func(*newClientSpec){
		"http off loopback":  func(s *newClientSpec) { s.RedirectURIs = []string{"http://p.example/cb"} },
		"space in URI":       func(s *newClientSpec) { s.RedirectURIs = []string{"https://p.example/a b"} },
		"brace in URI":       func(s *newClientSpec) { s.RedirectURIs = []string{"https://p.example/{env.X}"} },
		"brace in name":      func(s *newClientSpec) { s.Name = "{$HOME}" },
		"newline in name":    func(s *newClientSpec) { s.Name = "a\nb" },
		"backslash in scope": func(s *newClientSpec) { s.Scopes = []string{`a\b`} },
		"prefix with _":      func(s *newClientSpec) { s.Prefix = "a_b" },
		"prefix digit first": func(s *newClientSpec) { s.Prefix = "1ab" },
		"relative webhook":   func(s *newClientSpec) { s.WebhookURL = "/hooks" },
	} {
		s := base()
		mutate(&s)
		if err := s.check(); err == nil {
			t.Errorf("%s: accepted %+v", name, s)
		}
	}
	s := base()
	if err := s.check(); err != nil || s.Prefix != "tg" {
		t.Errorf("a good spec: %v, prefix %q (want tg for a one-word name)", err, s.Prefix)
	}
}
