package integration

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/caddymodule/store/redisstore"
	"github.com/tollgate/tollgate/caddymodule/store/storetest"
)

// withStoreBlock writes Caddyfile.example with its `store {env.TOLLGATE_STORE}`
// line replaced by block, a structured `store redis { … }` (README "Redis
// topologies").
func withStoreBlock(t *testing.T, block string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoRoot, "Caddyfile.example"))
	if err != nil {
		t.Fatal(err)
	}
	const line = "store {env.TOLLGATE_STORE}"
	if !strings.Contains(string(raw), line) {
		t.Fatalf("Caddyfile.example no longer contains %q; update the test", line)
	}
	path := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(path, []byte(strings.Replace(string(raw), line, block, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func launchWithBlock(t *testing.T, block string, env ...string) *gateway {
	t.Helper()
	config := withStoreBlock(t, block)
	var err error
	for range 3 {
		var gw *gateway
		if gw, err = launch(t, "redis", "", config, env...); err == nil {
			return gw
		} else if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	t.Fatalf("starting the gateway: %v", err)
	return nil
}

// TestRedisClusterFlow runs the whole flow on the real binary against a
// three-primary Redis Cluster given as seed addresses: a grant's keys land
// on any of the three nodes, so a client that did not follow the Cluster's
// slot map would fail most requests with MOVED.
func TestRedisClusterFlow(t *testing.T) {
	t.Parallel()
	addrs := storetest.StartRedisCluster(t)
	gw := launchWithBlock(t, "store redis {\n\t\t\taddrs "+strings.Join(addrs, " ")+"\n\t\t}")
	e := waitForLogEntry(t, gw, "redis store", 5*time.Second)
	if e["topology"] != "cluster" {
		t.Fatalf("the gateway did not open a Cluster client: %v", e)
	}

	for range 3 { // three grants: their hash tags spread over the nodes
		tok, conf := obtainTokens(t, gw, allScopes...)
		if r := gw.call(t, "/v1/me", bearer(tok.AccessToken), nil); r.status != http.StatusOK {
			t.Fatalf("API call on Cluster: want 200:\n%s", r)
		}
		next, err := refresh(t, conf, tok.RefreshToken)
		if err != nil {
			t.Fatalf("refresh on Cluster: %v", err)
		}
		wantBearerError(t, gw.userinfo(t, bearer(tok.AccessToken)), http.StatusUnauthorized, "invalid_token")
		if r := gw.call(t, "/v1/me", bearer(next.AccessToken), nil); r.status != http.StatusOK {
			t.Fatalf("API call with the refreshed token on Cluster: want 200:\n%s", r)
		}
		wantRevoked(t, gw.revoke(t, next.RefreshToken))
		wantBearerError(t, gw.userinfo(t, bearer(next.AccessToken)), http.StatusUnauthorized, "invalid_token")
		_, err = refresh(t, conf, next.RefreshToken)
		wantRetrieveError(t, err, "invalid_grant")
	}
}

// TestRedisSentinelFailover kills the Sentinel primary with SIGKILL while
// a client calls the API, and checks what a partner relies on: calls in the
// gap answer 503 (never 401, which would make it drop a good token, and
// never a 200 the store did not vouch for), the gateway follows the new
// primary without a restart, and every token it handed out before the
// kill still works, including the pair issued a moment before it.
//
// The data nodes run min-replicas-to-write 1 and the store waits for one
// replica (wait_replicas 1 100ms) after each write that hands out a token:
// replication is asynchronous, so only WAIT makes the last pair certain to
// be on the replica that is promoted (README "Redis topologies").
func TestRedisSentinelFailover(t *testing.T) {
	t.Parallel()
	d := storetest.StartRedisSentinel(t, 2, "--min-replicas-to-write", "1", "--min-replicas-max-lag", "10")
	// store_timeout 1s, shorter than the failover (down-after 2s, then the
	// election): a call in the gap must end as 503 rather than wait the
	// harness's 5s and be answered by the new primary, which would leave
	// the gap untested.
	gw := launchWithBlock(t, fmt.Sprintf("store redis {\n\t\t\tsentinel %s\n\t\t\taddrs %s\n\t\t\twait_replicas 1 100ms\n\t\t}",
		storetest.SentinelMaster, strings.Join(d.Sentinels, " ")), "TOLLGATE_STORE_TIMEOUT=1s")
	if e := waitForLogEntry(t, gw, "redis store", 5*time.Second); e["topology"] != "sentinel" {
		t.Fatalf("the gateway did not open a Sentinel client: %v", e)
	}

	steady, _ := obtainTokens(t, gw, allScopes...) // the API traffic's token
	chain, conf := obtainTokens(t, gw, allScopes...)

	// API traffic from another goroutine, through the kill and the
	// failover, until told to stop.
	var (
		mu       sync.Mutex
		statuses = map[int]int{}
		stop     = make(chan struct{})
		done     = make(chan struct{})
	)
	client := &http.Client{Timeout: 5 * time.Second}
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			status := 0
			req, _ := http.NewRequest(http.MethodGet, gw.base+"/v1/me", nil)
			req.Header.Set("Authorization", bearer(steady.AccessToken))
			if resp, err := client.Do(req); err == nil {
				status = resp.StatusCode
				resp.Body.Close()
			}
			mu.Lock()
			statuses[status]++
			mu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
	}()
	stopTraffic := func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		<-done
	}
	defer stopTraffic()

	// Rotate the chain a few times; the last rotation's pair is the token
	// written just before the primary dies.
	for range 5 {
		r := gw.refreshRaw(t, chain.RefreshToken, "")
		m := wantTokenResponse(t, r, scopeSet(strings.Join(allScopes, " ")))
		chain.AccessToken, chain.RefreshToken = m["access_token"].(string), m["refresh_token"].(string)
	}
	d.KillPrimary(t)
	killed := time.Now()

	d.WaitFailover(t, 30*time.Second)
	// The gateway finds the new primary through the Sentinels.
	gw.waitServedAgain(t, bearer(steady.AccessToken), 20*time.Second, "during the failover")
	t.Logf("API answered again %s after the kill", time.Since(killed).Round(100*time.Millisecond))
	stopTraffic()
	mu.Lock()
	t.Logf("API statuses through the failover: %v", statuses)
	for status, n := range statuses {
		if status != http.StatusOK && status != http.StatusServiceUnavailable {
			t.Errorf("%d API calls answered %d (0: no answer) through the failover; want only 200 and 503", n, status)
		}
	}
	if statuses[http.StatusServiceUnavailable] == 0 {
		t.Errorf("no API call fell in the gap: the test did not exercise the failover")
	}
	mu.Unlock()

	// Every token handed out before the kill still works on the new
	// primary: the steady one, and the pair issued just before the kill,
	// whose refresh token rotates again (the new primary has the other
	// replica, so the WAIT of the new write is acknowledged too).
	if r := gw.call(t, "/v1/me", bearer(chain.AccessToken), nil); r.status != http.StatusOK {
		t.Fatalf("the access token issued just before the kill, after the failover: want 200:\n%s", r)
	}
	next, err := refresh(t, conf, chain.RefreshToken)
	if err != nil {
		t.Fatalf("the refresh token issued just before the kill, after the failover: %v", err)
	}
	wantUserinfoOK(t, gw.userinfo(t, bearer(next.AccessToken)))
	wantUserinfoOK(t, gw.userinfo(t, bearer(steady.AccessToken)))
	if strings.Contains(gw.output.String(), chain.RefreshToken) {
		t.Fatal("the gateway's log holds a token")
	}
}

// TestRedisTLSAndACLFromEnv connects the real binary to a TLS-only Redis
// whose certificate a private CA signed, which requires a client
// certificate and an ACL user, with the user and password given as
// {env.*} placeholders. The flow works, and neither Caddy's /config API,
// autosave.json nor the log holds the password.
func TestRedisTLSAndACLFromEnv(t *testing.T) {
	t.Parallel()
	const user, password = "tollgate-gw", "hunter2-redis-acl-password"
	srv := storetest.StartRedisTLS(t)
	cfg, err := redisstore.LoadTLS(srv.CA, srv.ClientCert, srv.ClientKey, "")
	if err != nil {
		t.Fatal(err)
	}
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr, TLSConfig: cfg})
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, cmd := range [][]any{
		{"ACL", "SETUSER", user, "on", ">" + password, "~*", "&*", "+@all"},
		{"ACL", "SETUSER", "default", "off"},
	} {
		if err := admin.Do(ctx, cmd...).Err(); err != nil {
			t.Fatalf("%v: %v", cmd[:3], err)
		}
	}

	gw := launchWithBlock(t, fmt.Sprintf(`store redis {
			addrs %s
			username {env.TOLLGATE_REDIS_USER}
			password {env.TOLLGATE_REDIS_PASSWORD}
			tls {
				ca %s
				cert %s
				key %s
				server_name %s
			}
		}`, srv.Addr, srv.CA, srv.ClientCert, srv.ClientKey, storetest.TLSServerName),
		"TOLLGATE_REDIS_USER="+user, "TOLLGATE_REDIS_PASSWORD="+password)

	tok, _ := obtainTokens(t, gw, allScopes...)
	wantUserinfoOK(t, gw.userinfo(t, bearer(tok.AccessToken)))

	config := adminConfig(t, gw)
	if !strings.Contains(config, "{env.TOLLGATE_REDIS_PASSWORD}") {
		t.Fatalf("GET /config/ does not hold the password's placeholder; is it the structured store?\n%s", config)
	}
	if strings.Contains(config, password) {
		t.Errorf("GET /config/ shows the Redis password")
	}
	if strings.Contains(readAutosave(t, gw), password) {
		t.Errorf("autosave.json holds the Redis password")
	}
	if strings.Contains(gw.output.String(), password) {
		t.Errorf("the gateway's log holds the Redis password")
	}
	// The gateway's data is in this Redis, reached as the ACL user; a
	// client without the user's password is refused.
	anon := redis.NewClient(&redis.Options{Addr: srv.Addr, TLSConfig: cfg})
	defer anon.Close()
	if err := anon.Ping(ctx).Err(); err == nil {
		t.Errorf("a client without credentials was let in: the ACL is not in force")
	}
	acl := redis.NewClient(&redis.Options{Addr: srv.Addr, TLSConfig: cfg, Username: user, Password: password})
	defer acl.Close()
	if n, err := acl.DBSize(ctx).Result(); err != nil || n == 0 {
		t.Errorf("the gateway's Redis holds %d keys (%v): is the flow's state elsewhere?", n, err)
	}
}
