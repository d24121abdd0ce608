package integration

import (
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestAPIStoreOutageIs503ThenRecovers stops the gateway's Redis in the
// middle of a run and calls the API routes: 503 problem+json with
// Retry-After, never 401 and never the upstream; then brings Redis back
// with its data and checks the same token works again without a gateway
// restart.
//
// With Redis stopped mid-run, an API call answers 503 problem+json (never
// 200 unchecked, never 401, which would make partners drop good tokens),
// and after Redis is back the same token works again without a gateway
// restart (docs/architecture.md §8.1; docs/partners.md D60). README "What
// partners get": "store unreachable | 503 | (and Retry-After)".
func TestAPIStoreOutageIs503ThenRecovers(t *testing.T) {
	t.Parallel()
	up := startUpstream(t)
	port := quietPort(t)
	dir := t.TempDir()
	stop := startRedisKeeping(t, port, dir)
	gw := startGatewayOn(t, "redis", fmt.Sprintf("redis://127.0.0.1:%d/0", port), gatewayConfig{legacyUpstream: up.addr})

	tok, _ := obtainTokens(t, gw, allScopes...)
	auth := bearer(tok.AccessToken)
	if r := gw.call(t, "/v1/me", auth, nil); r.status != http.StatusOK {
		t.Fatalf("before the outage: want 200:\n%s", r)
	}

	stop()
	n := up.count()
	for _, rt := range apiRoutes {
		r := gw.call(t, rt.path, auth, nil)
		if r.status == http.StatusUnauthorized {
			t.Fatalf("Redis down: 401 would make the partner drop a good token; want 503:\n%s", r)
		}
		wantProblem(t, r.response, http.StatusServiceUnavailable, tok.AccessToken)
		if ch := r.header.Get("WWW-Authenticate"); strings.Contains(ch, "invalid_token") {
			t.Fatalf("Redis down: the challenge %q calls a good token invalid:\n%s", ch, r)
		}
		wantRetryAfter(t, r.response, 0)
	}
	wantUpstreamUntouched(t, up, n, "while the store could not vouch for the token")

	startRedisKeeping(t, port, dir)
	if r := gw.waitServedAgain(t, auth, 15*time.Second, "while Redis comes back"); r.json(t)["user_id"] != username {
		t.Fatalf("after the outage: not alice's record:\n%s", r)
	}
	for _, rt := range apiRoutes[1:] {
		if r := gw.call(t, rt.path, auth, nil); r.status != http.StatusOK {
			t.Fatalf("after the outage: want 200:\n%s", r)
		}
	}
}

// startRedisKeeping runs a redis-server on port that keeps its data in dir
// across a stop and a restart, as a Redis restarted by its operator does
// (startRedisOn's servers lose everything on exit). The returned stop shuts
// it down with SHUTDOWN SAVE; it is also stopped when t ends.
func startRedisKeeping(t *testing.T, port int, dir string) (stop func()) {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("the redis store tests need redis-server on PATH: %v", err)
	}
	cmd := exec.Command(bin,
		"--port", fmt.Sprint(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir, "--dbfilename", "dump.rdb",
	)
	out := new(lockedBuffer)
	cmd.Stdout = out
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if !redisReady(addr, exited) {
		t.Fatalf("redis-server on %s did not start; output:\n%s", addr, out.String())
	}
	return func() {
		t.Helper()
		if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			_, _ = conn.Write([]byte("SHUTDOWN SAVE\r\n"))
			buf := make([]byte, 64)
			_, _ = conn.Read(buf) // the server closes the connection as it exits
			conn.Close()
		}
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			t.Fatalf("redis-server on %s did not shut down; output:\n%s", addr, out.String())
		}
	}
}
