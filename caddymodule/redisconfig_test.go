package caddymodule

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/tollgate/tollgate/caddymodule/store"
)

// The structured Redis store refuses, at load, what would otherwise fail
// at the first request or, worse, talk to the wrong thing; a password in
// a placeholder is never quoted back.
func TestRedisConfigRefusedAtLoad(t *testing.T) {
	t.Setenv("TOLLGATE_TEST_REDIS_PASSWORD", "hunter2")
	missing := filepath.Join(t.TempDir(), "no-such-ca.pem")
	notPEM := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(notPEM, []byte("hunter2"), 0o600); err != nil {
		t.Fatal(err)
	}
	const pw = `,"password":"{env.TOLLGATE_TEST_REDIS_PASSWORD}"`
	for _, tc := range []struct{ name, app, want string }{
		{"store and redis", `{"store":"memory","redis":{"addrs":["127.0.0.1:1"]}}`, "store or redis, not both"},
		{"no address", `{"redis":{"sentinel":"m"` + pw + `}}`, "no address given"},
		{"sentinel and cluster", `{"redis":{"addrs":["a:1"],"sentinel":"m","cluster":true` + pw + `}}`, "exclusive"},
		{"sentinel resolved empty", `{"redis":{"addrs":["a:1"],"sentinel":"{env.TOLLGATE_TEST_UNSET}"` + pw + `}}`, "master name is empty"},
		{"db with cluster", `{"redis":{"addrs":["a:1","b:2"],"db":1` + pw + `}}`, "db must be 0"},
		{"missing CA file", `{"redis":{"addrs":["a:1"],"tls":{"ca":"` + missing + `"}` + pw + `}}`, "tls ca: open " + missing + ": no such file"},
		{"CA file not PEM", `{"redis":{"addrs":["a:1"],"tls":{"ca":"` + notPEM + `"}` + pw + `}}`, "holds no PEM certificate"},
		{"wait with cluster", `{"redis":{"addrs":["a:1"],"cluster":true,"wait_replicas":1,"wait_timeout":"100ms"` + pw + `}}`, "not Redis Cluster"},
		{"wait as long as store_timeout", `{"redis":{"addrs":["a:1"],"wait_replicas":1,"wait_timeout":"250ms"` + pw + `}}`, "shorter than store_timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := validate(t, tc.app)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatal("the error quotes the password or the file's content")
			}
		})
	}
	// One placeholder may hold several addresses: then it is a Cluster.
	t.Setenv("TOLLGATE_TEST_REDIS_ADDRS", "10.0.0.1:6379, 10.0.0.2:6379 10.0.0.3:6379")
	if err := validate(t, `{"redis":{"addrs":["{env.TOLLGATE_TEST_REDIS_ADDRS}"],"db":1}}`); err == nil || !strings.Contains(err.Error(), "db must be 0") {
		t.Errorf("three addresses from one placeholder with db 1: %v, want the Cluster db error", err)
	}
	if err := validate(t, `{"redis":{"addrs":["127.0.0.1:1"],"wait_replicas":1,"wait_timeout":"100ms"`+pw+`}}`); err != nil {
		t.Fatalf("a valid config was refused: %v", err)
	}
}

// The pool key is what lets a reload reuse the open store: the same
// config gives the same key, a changed password or CA file a new one, and
// the key never holds the password.
func TestRedisPoolKey(t *testing.T) {
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, []byte("first"), 0o600); err != nil {
		t.Fatal(err)
	}
	repl := caddy.NewReplacer()
	key := func(password string) string {
		t.Helper()
		t.Setenv("TOLLGATE_TEST_REDIS_PASSWORD", password)
		rc := &RedisConfig{Addrs: []string{"127.0.0.1:6379"}, Password: "{env.TOLLGATE_TEST_REDIS_PASSWORD}", TLS: &RedisTLS{CA: ca}}
		k, err := rc.poolKey(repl)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(k, password) {
			t.Fatalf("pool key %q holds the password", k)
		}
		return k
	}
	a := key("correct-horse")
	if b := key("correct-horse"); a != b {
		t.Errorf("the same config gave two pool keys: a reload would open a second pool")
	}
	if b := key("battery-staple"); a == b {
		t.Errorf("a new password kept the pool key: a reload would keep the old credentials")
	}
	if err := os.WriteFile(ca, []byte("second"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b := key("correct-horse"); a == b {
		t.Errorf("a new CA file kept the pool key: a reload would keep the old trust")
	}
}

// A reload provisions the new config before the old one is cleaned up:
// the same structured config must get the very store the old one holds
// (one connection pool, not two), a changed one its own.
func TestRedisStoreSharedAcrossReload(t *testing.T) {
	t.Setenv("TOLLGATE_TEST_REDIS_PASSWORD", "correct-horse")
	repl := caddy.NewReplacer()
	rc := &RedisConfig{Addrs: []string{"127.0.0.1:1"}, Password: "{env.TOLLGATE_TEST_REDIS_PASSWORD}"}
	open := func() (store.Store, string) {
		t.Helper()
		st, key, err := openRedis(rc, repl, nil, zap.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _, _ = stores.Delete(key) })
		return st, key
	}
	oldStore, oldKey := open()
	newStore, newKey := open()
	if oldKey != newKey || oldStore != newStore {
		t.Fatalf("reloading the same config opened a second store")
	}
	if refs, ok := stores.References(oldKey); !ok || refs != 2 {
		t.Fatalf("the shared store has %d references, want 2", refs)
	}
	t.Setenv("TOLLGATE_TEST_REDIS_PASSWORD", "battery-staple")
	changed, changedKey := open()
	if changedKey == oldKey || changed == oldStore {
		t.Fatalf("a changed password reused the store opened with the old one")
	}
}
