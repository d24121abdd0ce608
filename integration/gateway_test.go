package integration

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/caddymodule/store/storetest"
)

// stores are the two backing stores every flow runs on.
var stores = []string{"memory", "redis"}

// gatewayConfig selects a variant of Caddyfile.example. Each non-empty field
// replaces one line of the example verbatim, so that a test needing a short
// lifetime does not sleep through the real one.
type gatewayConfig struct {
	codeLifetime         string // replaces "code_lifetime 60s"
	accessTokenLifetime  string // replaces "access_token_lifetime 1h"
	refreshTokenLifetime string // replaces "refresh_token_lifetime 90d"

	// refreshReuseGrace is a line added to the tollgate block, e.g.
	// "refresh_reuse_grace 2s" ("" keeps the default).
	refreshReuseGrace string
	// storeTimeout is TOLLGATE_STORE_TIMEOUT, the example's store_timeout
	// ("" gives the harness's 5s: the tests share two cores, and a
	// starved process must not turn a slow store answer into a 503 that
	// no user would see; only the hung-store test wants the real bound).
	storeTimeout string

	// appLines are lines added to the tollgate block verbatim, e.g.
	// "sign_in_address_limit 5/15m".
	appLines []string
	// globalLines are lines added to the global options block verbatim,
	// e.g. a `log` block.
	globalLines []string

	// The settings the example reads from the environment, passed to
	// the process as such ("" leaves the variable unset: the default).
	legacyUpstream string // TOLLGATE_LEGACY_UPSTREAM: host:port the API routes proxy to
	rateLimit      string // TOLLGATE_RATE_LIMIT: each grant's budget, <count>/<duration>
	webhookURL     string // TOLLGATE_WEBHOOK_URL: the demo client's webhook receiver
}

// gateway is one running tollgate process.
type gateway struct {
	store  string // "memory" or "redis"
	port   int
	base   string // http://localhost:<port>, the issuer's origin
	admin  string // http://127.0.0.1:<port>, Caddy's admin endpoint
	home   string // the process's HOME; Caddy's autosave.json is under config/caddy
	output *lockedBuffer
	stop   func() // kills the process (also done when the test ends)
	pid    int
}

// forEachStore runs fn as the parallel subtests "memory" and "redis", each
// against its own gateway process started with cfg. Separate processes keep
// the tests independent: the demo has one user and one client, so one test
// revoking alice's grant must not pull tokens from under another.
func forEachStore(t *testing.T, cfg gatewayConfig, fn func(t *testing.T, gw *gateway)) {
	t.Helper()
	t.Parallel()
	for _, s := range stores {
		t.Run(s, func(t *testing.T) {
			t.Parallel()
			fn(t, startGateway(t, s, cfg))
		})
	}
}

// startGateway runs the binary with the config variant cfg on fresh ports
// and waits until it answers HTTP. The process is killed when t ends; its
// log is copied into the test log if t failed.
func startGateway(t *testing.T, storeKind string, cfg gatewayConfig) *gateway {
	t.Helper()
	storeURL := ""
	if storeKind == "redis" {
		storeURL = storetest.StartRedis(t)
	}
	return startGatewayOn(t, storeKind, storeURL, cfg)
}

// startGatewayOn is startGateway with the TOLLGATE_STORE value given.
func startGatewayOn(t *testing.T, storeKind, storeURL string, cfg gatewayConfig) *gateway {
	t.Helper()
	config := writeConfig(t, cfg)
	var lastErr error
	// A free port found by listening on :0 can be taken by another test's
	// process before ours binds it; retry on a fresh set.
	for attempt := 0; attempt < 3; attempt++ {
		gw, err := launch(t, storeKind, storeURL, config, cfg.environment()...)
		if err == nil {
			return gw
		}
		lastErr = err
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	t.Fatalf("starting gateway (%s store): %v", storeKind, lastErr)
	return nil
}

func writeConfig(t *testing.T, cfg gatewayConfig) string {
	t.Helper()
	example := filepath.Join(repoRoot, "Caddyfile.example")
	if cfg.codeLifetime == "" && cfg.accessTokenLifetime == "" && cfg.refreshTokenLifetime == "" && cfg.refreshReuseGrace == "" && len(cfg.appLines) == 0 && len(cfg.globalLines) == 0 {
		return example
	}
	raw, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	text := string(raw)
	replace := func(old, new string) {
		if new == "" {
			return
		}
		if !strings.Contains(text, old) {
			t.Fatalf("Caddyfile.example no longer contains %q; update the integration test", old)
		}
		text = strings.ReplaceAll(text, old, new)
	}
	replace("code_lifetime 60s", cfg.codeLifetime)
	replace("access_token_lifetime 1h", cfg.accessTokenLifetime)
	replace("refresh_token_lifetime 90d", cfg.refreshTokenLifetime)
	const anchor = "rate_limit {$TOLLGATE_RATE_LIMIT:5000/1h}"
	if cfg.refreshReuseGrace != "" {
		replace(anchor, anchor+"\n\t\t"+cfg.refreshReuseGrace)
	}
	for _, line := range cfg.appLines {
		replace(anchor, anchor+"\n\t\t"+line)
	}
	const globalAnchor = "admin {$TOLLGATE_ADMIN:localhost:2019}"
	for _, line := range cfg.globalLines {
		replace(globalAnchor, globalAnchor+"\n\t"+line)
	}
	path := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// environment is the TOLLGATE_* variables cfg sets beyond the ones launch
// always sets.
func (cfg gatewayConfig) environment() []string {
	var env []string
	if cfg.legacyUpstream != "" {
		env = append(env, "TOLLGATE_LEGACY_UPSTREAM="+cfg.legacyUpstream)
	}
	if cfg.rateLimit != "" {
		env = append(env, "TOLLGATE_RATE_LIMIT="+cfg.rateLimit)
	}
	if cfg.storeTimeout != "" {
		env = append(env, "TOLLGATE_STORE_TIMEOUT="+cfg.storeTimeout)
	}
	if cfg.webhookURL != "" {
		env = append(env, "TOLLGATE_WEBHOOK_URL="+cfg.webhookURL)
	}
	return env
}

func launch(t *testing.T, storeKind, storeURL, config string, extraEnv ...string) (*gateway, error) {
	t.Helper()
	return launchAt(t, storeKind, storeURL, config, "/oauth/token", extraEnv...)
}

// launchAt starts the binary with config and waits until tokenPath answers
// as a token endpoint does to a GET (405). The legacy upstream defaults to
// the config's own fake legacy API on the port chosen here; extraEnv comes
// last and so overrides it.
func launchAt(t *testing.T, storeKind, storeURL, config, tokenPath string, extraEnv ...string) (*gateway, error) {
	t.Helper()
	ports := freePorts(t, 3)
	home := t.TempDir()
	cmd := exec.Command(binary, "run", "--config", config, "--adapter", "caddyfile")
	cmd.Dir = repoRoot
	cmd.Env = append(environWithout("TOLLGATE_", "XDG_", "HOME="),
		fmt.Sprintf("TOLLGATE_PORT=%d", ports[0]),
		fmt.Sprintf("TOLLGATE_LEGACY_PORT=%d", ports[1]),
		fmt.Sprintf("TOLLGATE_LEGACY_UPSTREAM=127.0.0.1:%d", ports[1]),
		fmt.Sprintf("TOLLGATE_ADMIN=127.0.0.1:%d", ports[2]),
		"TOLLGATE_STORE="+storeURL,
		"TOLLGATE_STORE_TIMEOUT=5s",
		// Caddy keeps autosave.json and its instance id under these; one
		// directory per process keeps parallel gateways apart.
		"HOME="+home,
		"XDG_CONFIG_HOME="+filepath.Join(home, "config"),
		"XDG_DATA_HOME="+filepath.Join(home, "data"),
	)
	cmd.Env = append(cmd.Env, extraEnv...)
	out := new(lockedBuffer)
	cmd.Stdout = out
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	stop := func() {
		_ = cmd.Process.Kill()
		<-exited
	}

	gw := &gateway{
		store:  storeKind,
		port:   ports[0],
		base:   fmt.Sprintf("http://localhost:%d", ports[0]),
		admin:  fmt.Sprintf("http://127.0.0.1:%d", ports[2]),
		home:   home,
		output: out,
		stop:   stop,
		pid:    cmd.Process.Pid,
	}
	probe := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-exited:
			return nil, fmt.Errorf("exited before answering HTTP (%v); output:\n%s", waitErr, out.String())
		default:
		}
		resp, err := probe.Get(fmt.Sprintf("http://127.0.0.1:%d%s", ports[0], tokenPath))
		if err == nil {
			resp.Body.Close()
			// Anything but the token endpoint's 405 is not our gateway: some
			// other process holds the port (ours will then fail to bind).
			if resp.StatusCode == http.StatusMethodNotAllowed {
				break
			}
			err = fmt.Errorf("GET %s answered %d, want the token endpoint's 405", tokenPath, resp.StatusCode)
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("no HTTP answer on port %d after 30s (%v); output:\n%s", ports[0], err, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("gateway (%s store, port %d) output (last %d lines):\n%s", storeKind, ports[0], logTail, tail(out.String(), logTail))
		}
	})
	return gw, nil
}

// startRedisOn runs a throwaway redis-server on the given loopback port
// (for a test that points the gateway at Redis before Redis exists) and
// returns its redis:// URL. Other tests get theirs from
// storetest.StartRedis.
func startRedisOn(t *testing.T, port int) string {
	t.Helper()
	startRedisKeeping(t, port, t.TempDir())
	return fmt.Sprintf("redis://127.0.0.1:%d/0", port)
}

// quietPort returns a free loopback port below the kernel's ephemeral
// range, which bind(0) — ours, storetest's, any client socket's — never
// hands out, so it stays free while a test leaves it unused on purpose.
func quietPort(t *testing.T) int {
	t.Helper()
	lo := 32768
	if raw, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(raw)); len(f) == 2 {
			fmt.Sscan(f[0], &lo)
		}
	}
	handedOut.Lock()
	defer handedOut.Unlock()
	for p := lo - 1 - rand.IntN(2000); p > 1024; p-- {
		if handedOut.ports[p] {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		l.Close()
		handedOut.ports[p] = true
		return p
	}
	t.Fatal("no free port below the ephemeral range")
	return 0
}

// redisReady waits until addr answers PING with PONG.
func redisReady(addr string, exited <-chan struct{}) bool {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return false
		default:
		}
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = conn.SetDeadline(time.Now().Add(time.Second))
			_, _ = conn.Write([]byte("PING\r\n"))
			line, _ := bufio.NewReader(conn).ReadString('\n')
			conn.Close()
			if strings.HasPrefix(line, "+PONG") {
				return true
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// handedOut holds every port freePorts returned during this run. The
// kernel readily gives a just-closed port to the next bind(0), so without
// it two parallel tests can pick the same "free" port for different
// processes.
var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// freePorts returns n loopback ports that were free a moment ago and that
// no other test of this run was given.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	handedOut.Lock()
	defer handedOut.Unlock()
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for len(ports) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l) // held open until all n are chosen
		p := l.Addr().(*net.TCPAddr).Port
		if handedOut.ports[p] {
			continue
		}
		handedOut.ports[p] = true
		ports = append(ports, p)
	}
	return ports
}

// logTail is how many lines of a failed test's gateway log are shown.
const logTail = 40

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// environWithout returns os.Environ() minus variables with these prefixes.
func environWithout(prefixes ...string) []string {
	var env []string
outer:
	for _, kv := range os.Environ() {
		for _, p := range prefixes {
			if strings.HasPrefix(kv, p) {
				continue outer
			}
		}
		env = append(env, kv)
	}
	return env
}

// lockedBuffer collects a process's output while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
