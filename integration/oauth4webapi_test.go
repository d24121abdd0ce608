package integration

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// oauth4webapiDir holds the Node script and its pinned oauth4webapi
// (relative to this package's directory, where go test runs).
const oauth4webapiDir = "oauth4webapi"

// npmInstall installs the script's dependencies from package-lock.json,
// once per run.
var npmInstall = sync.OnceValue(func() error {
	cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund", "--prefer-offline")
	cmd.Dir = oauth4webapiDir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("npm ci in integration/%s (make deps installs node and npm): %v\n%s", oauth4webapiDir, err, out)
	}
	return nil
})

// flowChecks are the checks flow.mjs reports, in order: a script that
// stopped early or skipped one does not pass.
var flowChecks = []string{
	"discovery",
	"discovery issuer mismatch",
	"authorization response with a foreign iss",
	"authorization response",
	"token",
	"introspect access token",
	"introspect refresh token",
	"userinfo",
	"introspect with a wrong secret",
	"refresh",
	"revoke",
	"introspect after revocation",
}

// TestOAuth4WebAPIClient runs the whole partner flow with oauth4webapi, a
// strict third-party client that validates what the gateway says with its
// own rules: the metadata's issuer against the one asked for (RFC 8414
// §3.3), the authorization response's iss and state (RFC 9207 §2.4), the
// token, introspection (RFC 7662), userinfo (sub) and revocation (RFC 7009)
// responses, for client_secret_post and client_secret_basic. The script
// also checks that the library refuses a forged iss and a metadata document
// fetched as another issuer, so that its passing checks mean something.
// The browser part (sign-in, consent) is the Go browser of browser_test.go.
func TestOAuth4WebAPIClient(t *testing.T) {
	if err := npmInstall(); err != nil {
		t.Fatal(err)
	}
	forEachStore(t, gatewayConfig{}, func(t *testing.T, gw *gateway) {
		for _, style := range []string{"post", "basic"} {
			t.Run(style, func(t *testing.T) { runFlowScript(t, gw, style) })
		}
	})
}

// runFlowScript runs flow.mjs against gw, answering its AUTHORIZE line with
// the callback URL a signed-in user's consent leads to, and checks it
// exits 0 having passed every check.
func runFlowScript(t *testing.T, gw *gateway, style string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "flow.mjs", gw.base, style)
	cmd.Dir = oauth4webapiDir
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("node flow.mjs (make deps installs node): %v", err)
	}
	var out []string
	var passed []string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		out = append(out, line)
		switch {
		case strings.HasPrefix(line, "AUTHORIZE "):
			b := newBrowser(t, gw)
			loc := b.decide(b.consentPage(strings.TrimPrefix(line, "AUTHORIZE ")), "allow")
			if _, err := io.WriteString(stdin, loc.String()+"\n"); err != nil {
				t.Fatalf("writing the callback URL to the script: %v", err)
			}
		case strings.HasPrefix(line, "PASS "):
			name, _, _ := strings.Cut(strings.TrimPrefix(line, "PASS "), " {")
			passed = append(passed, name)
		}
	}
	stdin.Close()
	err = cmd.Wait()
	transcript := strings.Join(out, "\n") + "\n" + stderr.String()
	if err != nil {
		t.Fatalf("node flow.mjs %s %s: %v\n%s", gw.base, style, err, transcript)
	}
	if len(out) == 0 || out[len(out)-1] != "OK" || !slices.Equal(passed, flowChecks) {
		t.Fatalf("flow.mjs passed %q, want %q and a last line OK:\n%s", passed, flowChecks, transcript)
	}
	if testing.Verbose() {
		t.Logf("flow.mjs %s:\n%s", style, transcript)
	}
}
