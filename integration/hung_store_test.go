package integration

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestHungRedisAnswers503AtTheStoreDeadline pauses the gateway's Redis
// (SIGSTOP: the port still accepts connections, nothing answers, as with a
// Redis stuck in a fork or on a host that stopped responding) and checks
// that API calls and token requests are answered 503 in their documented
// formats at about store_timeout, not after the Redis client's 3 s read
// timeout, that no goroutines stay behind waiting on Redis, and that once
// Redis resumes the same token and a refresh work without a restart.
//
// README "Configuration reference", store_timeout; README: "store
// unreachable | 503 | (and Retry-After)"; RFC 6749 §5.2
// temporarily_unavailable at the token endpoint.
func TestHungRedisAnswers503AtTheStoreDeadline(t *testing.T) {
	t.Parallel()
	const storeTimeout = 300 * time.Millisecond
	port := quietPort(t)
	redis := startPausableRedis(t, port)
	gw := startGatewayOn(t, "redis", fmt.Sprintf("redis://127.0.0.1:%d/0", port),
		gatewayConfig{storeTimeout: storeTimeout.String()})

	tok, conf := obtainTokens(t, gw, allScopes...)
	auth := bearer(tok.AccessToken)
	if r := gw.call(t, "/v1/me", auth, nil); r.status != http.StatusOK {
		t.Fatalf("before the pause: want 200:\n%s", r)
	}
	before := goroutines(t, gw)

	redis.pause(t)
	// Two waves: goroutines left behind by the first would show after
	// the second.
	const calls = 50
	for wave := 1; wave <= 2; wave++ {
		results := burst(gw, calls, auth)
		var took []time.Duration
		for _, res := range results {
			if res.err != nil {
				t.Fatalf("wave %d: %v", wave, res.err)
			}
			took = append(took, res.took)
			if res.r.status == http.StatusUnauthorized {
				t.Fatalf("Redis hung: 401 would make the partner drop a good token; want 503:\n%s", res.r)
			}
			wantProblem(t, res.r, http.StatusServiceUnavailable, tok.AccessToken)
			wantRetryAfter(t, res.r, 0)
		}
		slices.Sort(took)
		t.Logf("wave %d: %d concurrent API calls to a hung Redis (store_timeout %s): 503 in min %s, median %s, max %s",
			wave, calls, storeTimeout, took[0], took[len(took)/2], took[len(took)-1])
		// Not a timing goal, only proof that the deadline applies: the
		// Redis client alone would take its 3 s read timeout.
		if took[len(took)-1] >= 2*time.Second {
			t.Fatalf("wave %d: the slowest 503 took %s; the store deadline (%s) does not apply", wave, took[len(took)-1], storeTimeout)
		}
	}

	sent := time.Now()
	r := gw.refreshRaw(t, tok.RefreshToken, "")
	took := time.Since(sent)
	t.Logf("refresh with Redis hung: %d in %s", r.status, took)
	if r.status != http.StatusServiceUnavailable {
		t.Fatalf("refresh with Redis hung: want 503 temporarily_unavailable, not a verdict on the token:\n%s", r)
	}
	wantOAuthError(t, r, http.StatusServiceUnavailable, "temporarily_unavailable")
	if took >= 2*time.Second {
		t.Fatalf("refresh with Redis hung took %s; the store deadline (%s) does not apply", took, storeTimeout)
	}

	// The other endpoints that need the store answer 503 as well.
	if r := gw.userinfo(t, auth); r.status != http.StatusServiceUnavailable {
		t.Fatalf("userinfo with Redis hung: want 503, never 401:\n%s", r)
	}
	// The sign-in form needs no store (it carries its request sealed, with
	// the form key read before the pause); signing in does.
	b := newBrowser(t, gw)
	p := b.get(newAuthRequest(conf).url)
	if p.status != http.StatusOK || !p.isLogin() {
		t.Fatalf("authorize with Redis hung: want the sign-in form, served without the store:\n%s", p)
	}
	if p := b.submit(p, url.Values{"username": {username}, "password": {password}}); p.status != http.StatusServiceUnavailable {
		t.Fatalf("sign-in with Redis hung: want 503:\n%s", p)
	}

	// Every request has been answered: whatever waited on Redis for them
	// must be gone too, though Redis still hangs. Server connections wind
	// down asynchronously, hence the wait for the count to settle.
	const slack = 20
	during := settledGoroutines(t, gw, before+slack)
	t.Logf("goroutines: %d before the pause, %d after %d requests to the hung Redis", before, during, 2*calls+4)
	if during > before+slack {
		t.Fatalf("%d goroutines after every request to the hung Redis was answered, %d before: they pile up", during, before)
	}

	redis.resume(t)
	gw.waitServedAgain(t, auth, 15*time.Second, "while Redis resumes")
	for _, rt := range apiRoutes {
		if r := gw.call(t, rt.path, auth, nil); r.status != http.StatusOK {
			t.Fatalf("after Redis resumed: the same token must work:\n%s", r)
		}
	}
	fresh, err := refresh(t, conf, tok.RefreshToken)
	if err != nil {
		t.Fatalf("after Redis resumed: refresh: %v", err)
	}
	if r := gw.call(t, "/v1/me", bearer(fresh.AccessToken), nil); r.status != http.StatusOK {
		t.Fatalf("after Redis resumed: the refreshed token must work:\n%s", r)
	}
}

// burstResult is one call of a burst.
type burstResult struct {
	r    *response
	took time.Duration
	err  error
}

// burst sends n concurrent GET /v1/me, each on its own connection (no
// keep-alive, so that idle connections do not count as goroutines left
// behind).
func burst(gw *gateway, n int, authorization string) []burstResult {
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	out := make([]burstResult, n)
	var wg sync.WaitGroup
	for i := range out {
		wg.Go(func() {
			req, err := http.NewRequest(http.MethodGet, gw.base+"/v1/me", nil)
			if err != nil {
				out[i].err = err
				return
			}
			req.Header.Set("Authorization", authorization)
			desc := fmt.Sprintf("GET /v1/me #%d (gateway :%d, Authorization: Bearer …)", i, gw.port)
			start := time.Now()
			resp, err := client.Do(req)
			if err != nil {
				out[i].err = fmt.Errorf("%s: %v", desc, err)
				return
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			out[i] = burstResult{r: &response{req: desc, status: resp.StatusCode, header: resp.Header, body: body}, took: time.Since(start), err: err}
		})
	}
	wg.Wait()
	return out
}

var goroutineTotal = regexp.MustCompile(`goroutine profile: total (\d+)`)

// goroutines reads the gateway's goroutine count from Caddy's admin
// endpoint (/debug/pprof/, served there by default).
func goroutines(t *testing.T, gw *gateway) int {
	t.Helper()
	resp, err := httpClient.Get(gw.admin + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatalf("reading the goroutine count: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	m := goroutineTotal.FindSubmatch(body)
	if resp.StatusCode != http.StatusOK || m == nil {
		t.Fatalf("admin /debug/pprof/goroutine answered %d without a total:\n%.500s", resp.StatusCode, body)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// settledGoroutines waits up to 5 s for the goroutine count to drop to at
// most want and returns the last count read.
func settledGoroutines(t *testing.T, gw *gateway, want int) int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := goroutines(t, gw)
		if n <= want || time.Now().After(deadline) {
			return n
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// pausableRedis is a redis-server the test can freeze and thaw.
type pausableRedis struct {
	cmd    *exec.Cmd
	paused bool
}

// startPausableRedis runs a throwaway redis-server on port. It is resumed
// (if paused) and killed when t ends.
func startPausableRedis(t *testing.T, port int) *pausableRedis {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("the redis store tests need redis-server on PATH: %v", err)
	}
	cmd := exec.Command(bin, "--port", fmt.Sprint(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", t.TempDir())
	out := new(lockedBuffer)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	p := &pausableRedis{cmd: cmd}
	t.Cleanup(func() {
		if p.paused {
			_ = cmd.Process.Signal(syscall.SIGCONT)
		}
		_ = cmd.Process.Kill()
		<-exited
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if !redisReady(addr, exited) {
		t.Fatalf("redis-server on %s did not start; output:\n%s", addr, out.String())
	}
	return p
}

func (p *pausableRedis) pause(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	p.paused = true
	// SIGSTOP is delivered asynchronously; wait until the process is
	// stopped ("T" in /proc/<pid>/stat) so that no request slips through.
	for i := 0; i < 100 && !strings.Contains(procState(p.cmd.Process.Pid), "T"); i++ {
		time.Sleep(10 * time.Millisecond)
	}
}

func (p *pausableRedis) resume(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	p.paused = false
}

// procState is the state field of /proc/<pid>/stat ("" when unreadable).
func procState(pid int) string {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(raw)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2 : i+3]
	}
	return ""
}
