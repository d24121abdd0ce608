package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestConfigAPIHoldsNoInlineClientSecret runs Caddyfile.example, whose
// partner has the inline `secret demo-client-secret`, and reads the config
// back from Caddy's admin endpoint (GET /config/) and from autosave.json:
// neither holds the secret, only its SHA-256 digest, and the secret still
// authenticates at the token endpoint. The inline webhook secret must be
// kept in clear to sign, so it does show; the gateway warns about it at
// load, naming the client and not the secret.
//
// README "Security": client secrets are kept only as SHA-256
// digests, and an inline one never reaches the /config API or autosave.json.
func TestConfigAPIHoldsNoInlineClientSecret(t *testing.T) {
	t.Parallel()
	const webhookSecret = "whsec_ff7pEzFcQ9tMNXGjfqbUqtMbVTy956SG" // Caddyfile.example's
	gw := startGateway(t, "memory", gatewayConfig{})

	config := adminConfig(t, gw)
	if strings.Contains(config, clientSecret) {
		t.Errorf("GET /config/ shows the inline client secret in clear")
	}
	sum := sha256.Sum256([]byte(clientSecret))
	if !strings.Contains(config, hex.EncodeToString(sum[:])) {
		t.Fatalf("GET /config/ does not hold the digest of the client secret; is it the example's config?")
	}
	autosave := readAutosave(t, gw)
	if strings.Contains(autosave, clientSecret) {
		t.Errorf("autosave.json holds the inline client secret in clear")
	}

	// Kept in clear to sign, so in the config; the operator is told.
	if !strings.Contains(config, webhookSecret) {
		t.Fatalf("GET /config/ no longer holds the example's inline webhook secret; update the test")
	}
	e := waitForLogEntry(t, gw, "webhook secret written in clear in the config, which the /config API and autosave.json show; give it as {env.NAME}", 5*time.Second)
	if e["level"] != "warn" || e["client_id"] != clientID {
		t.Fatalf("the warning is not a warn naming client_id %s: %v", clientID, e)
	}
	for _, s := range []string{clientSecret, webhookSecret, strings.TrimPrefix(webhookSecret, "whsec_")} {
		if strings.Contains(gw.output.String(), s) {
			t.Fatalf("the gateway's log holds a secret")
		}
	}

	// The digest authenticates the secret: the whole flow still works.
	tok, _ := obtainTokens(t, gw, allScopes...)
	wantUserinfoOK(t, gw.userinfo(t, bearer(tok.AccessToken)))
}

// TestConfigAPIHoldsNoInlineTokenHeaderValue does the same for the Trans
// style's inline `token_header Api-key example_app_api_key` and its inline
// secret (TestTransTokenRequiresAPIKey checks the header still works).
func TestConfigAPIHoldsNoInlineTokenHeaderValue(t *testing.T) {
	t.Parallel()
	gw := startPartnerGateway(t, "memory", transConfig)
	config := adminConfig(t, gw)
	autosave := readAutosave(t, gw)
	for _, s := range []string{"example_app_api_key", "example_app_secret"} {
		if strings.Contains(config, s) {
			t.Errorf("GET /config/ shows the inline secret %q", s)
		}
		if strings.Contains(autosave, s) {
			t.Errorf("autosave.json holds the inline secret %q", s)
		}
	}
	if !strings.Contains(config, `"value_sha256"`) {
		t.Fatalf("GET /config/ has no token_header digest; is it the Trans config?")
	}
}

// adminConfig is the running config as Caddy's admin API serves it.
func adminConfig(t *testing.T, gw *gateway) string {
	t.Helper()
	resp, err := httpClient.Get(gw.admin + "/config/")
	if err != nil {
		t.Fatalf("GET /config/: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /config/: %d %v\n%s", resp.StatusCode, err, body)
	}
	return string(body)
}

// readAutosave waits for Caddy's autosave.json and returns it.
func readAutosave(t *testing.T, gw *gateway) string {
	t.Helper()
	path := filepath.Join(gw.home, "config", "caddy", "autosave.json")
	deadline := time.Now().Add(5 * time.Second)
	for {
		raw, err := os.ReadFile(path)
		if err == nil && len(raw) > 0 {
			return string(raw)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no autosave.json at %s: %v", path, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
