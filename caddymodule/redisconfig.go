package caddymodule

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"
	"unicode"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/tollgate/tollgate/caddymodule/store"
	"github.com/tollgate/tollgate/caddymodule/store/redisstore"
)

// RedisConfig is the structured Redis store (README "Redis topologies"),
// for what a single redis:// URL cannot say: a Cluster's seed nodes, a
// primary found through Sentinel, TLS with a private CA. Every string may
// be a placeholder such as {env.REDIS_PASSWORD}, resolved when the config
// loads, so that a password need never be in the JSON that Caddy's /config
// API serves and autosave.json keeps.
type RedisConfig struct {
	// Addrs are host:port pairs. One address is a single node; several are
	// the seed nodes of a Redis Cluster; with Sentinel they are the
	// Sentinels.
	Addrs []string `json:"addrs,omitempty"`
	// Cluster forces Redis Cluster with a single seed address.
	Cluster bool `json:"cluster,omitempty"`
	// Sentinel is the master name the Sentinels at Addrs watch.
	Sentinel string `json:"sentinel,omitempty"`
	// SentinelUsername and SentinelPassword authenticate to the Sentinels.
	SentinelUsername string `json:"sentinel_username,omitempty"`
	SentinelPassword string `json:"sentinel_password,omitempty"`
	// Username and Password authenticate to Redis (ACL user, or the
	// default user's requirepass when Username is empty).
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	// DB is the database index of a single node or Sentinel primary.
	DB int `json:"db,omitempty"`
	// TLS, when present (even empty), makes every connection TLS.
	TLS *RedisTLS `json:"tls,omitempty"`
	// PoolSize is the connection pool's size per node; default go-redis's
	// (10 per CPU).
	PoolSize int `json:"pool_size,omitempty"`
	// DialTimeout, ReadTimeout and WriteTimeout default to go-redis's
	// (5s, 3s, 3s). A request's store_timeout bounds its calls anyway.
	DialTimeout  caddy.Duration `json:"dial_timeout,omitempty"`
	ReadTimeout  caddy.Duration `json:"read_timeout,omitempty"`
	WriteTimeout caddy.Duration `json:"write_timeout,omitempty"`
	// WaitReplicas is how many replicas must acknowledge a write that
	// hands out or revokes a token before the client is answered (Redis
	// WAIT), for at most WaitTimeout; a write not acknowledged in time
	// answers 503. Single node or Sentinel only.
	WaitReplicas int            `json:"wait_replicas,omitempty"`
	WaitTimeout  caddy.Duration `json:"wait_timeout,omitempty"`
	// KeyPrefix starts every key Tollgate writes, the webhook queue's
	// included, instead of "tg:", so that two deployments can share one
	// Redis: 1 to 64 of A-Z a-z 0-9 . _ : - (docs/architecture.md §6.3).
	KeyPrefix string `json:"key_prefix,omitempty"`
}

// RedisTLS is the TLS of the structured Redis store.
type RedisTLS struct {
	// CA is a PEM file of the certificate authorities that may sign the
	// server's certificate, instead of the system's.
	CA string `json:"ca,omitempty"`
	// Cert and Key are the client's certificate and key (PEM files), for
	// a server that requires one.
	Cert string `json:"cert,omitempty"`
	Key  string `json:"key,omitempty"`
	// ServerName is the name checked in the server's certificate when it
	// differs from the host dialled.
	ServerName string `json:"server_name,omitempty"`
}

// poolSecret keys the pool keys of structured configs. The resolved
// config holds the password; a plain digest of it could be guessed
// offline from a leaked key, a keyed one cannot, and pool keys live only
// in this process anyway.
var poolSecret = func() []byte {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return b
}()

// options builds the store options, each string passed through r; TLS
// is left to resolve, which reads its files.
func (rc *RedisConfig) options(r func(string) string) redisstore.Options {
	o := redisstore.Options{
		Cluster:          rc.Cluster,
		MasterName:       r(rc.Sentinel),
		SentinelUsername: r(rc.SentinelUsername),
		SentinelPassword: r(rc.SentinelPassword),
		Username:         r(rc.Username),
		Password:         r(rc.Password),
		DB:               rc.DB,
		PoolSize:         rc.PoolSize,
		DialTimeout:      time.Duration(rc.DialTimeout),
		ReadTimeout:      time.Duration(rc.ReadTimeout),
		WriteTimeout:     time.Duration(rc.WriteTimeout),
		WaitReplicas:     rc.WaitReplicas,
		WaitTimeout:      time.Duration(rc.WaitTimeout),
		KeyPrefix:        r(rc.KeyPrefix),
	}
	for _, a := range rc.Addrs {
		o.Addrs = append(o.Addrs, splitAddrs(r(a))...)
	}
	return o
}

// splitAddrs splits one addrs value on spaces and commas, so that a single
// placeholder such as {env.REDIS_ADDRS} can hold every seed or Sentinel.
func splitAddrs(v string) []string {
	f := strings.FieldsFunc(v, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
	if len(f) == 0 {
		return []string{v} // "" stays, for Validate to name
	}
	return f
}

// validate checks the config as written, placeholders unresolved, so the
// Caddyfile adapter rejects a contradiction before anything runs.
func (rc *RedisConfig) validate() error {
	o := rc.options(func(s string) string { return s })
	if strings.Contains(o.KeyPrefix, "{") {
		o.KeyPrefix = "" // a placeholder: checked when resolved
	}
	if err := o.Validate(); err != nil {
		return fmt.Errorf("store redis: %w", err)
	}
	return nil
}

// resolve replaces the placeholders and builds the store options. Errors
// name the field, never a resolved value.
func (rc *RedisConfig) resolve(repl *caddy.Replacer) (redisstore.Options, error) {
	r := func(s string) string { return repl.ReplaceAll(s, "") }
	o := rc.options(r)
	if rc.Sentinel != "" && o.MasterName == "" {
		return o, fmt.Errorf("store redis: the sentinel master name is empty once resolved")
	}
	if rc.TLS != nil {
		t := rc.TLS
		cfg, err := redisstore.LoadTLS(r(t.CA), r(t.Cert), r(t.Key), r(t.ServerName))
		if err != nil {
			return o, fmt.Errorf("store redis: %w", err)
		}
		o.TLS = cfg
	}
	if err := o.Validate(); err != nil {
		return o, fmt.Errorf("store redis: %w", err)
	}
	return o, nil
}

// poolKey is the key under which the store of the resolved config rc is
// shared across reloads: the same config (and the same TLS files) gives
// the same key, a changed password or certificate a new one. It is a
// keyed digest, so the key never holds the password.
func (rc *RedisConfig) poolKey(repl *caddy.Replacer) (string, error) {
	resolved := *rc
	r := func(s string) string { return repl.ReplaceAll(s, "") }
	resolved.Addrs = nil
	for _, a := range rc.Addrs {
		resolved.Addrs = append(resolved.Addrs, splitAddrs(r(a))...)
	}
	for _, p := range []*string{&resolved.Sentinel, &resolved.SentinelUsername, &resolved.SentinelPassword, &resolved.Username, &resolved.Password} {
		*p = r(*p)
	}
	canon := struct {
		Config RedisConfig       `json:"config"`
		Files  map[string][]byte `json:"files,omitempty"`
	}{Config: resolved}
	if rc.TLS != nil {
		t := *rc.TLS
		canon.Files = map[string][]byte{}
		for _, p := range []*string{&t.CA, &t.Cert, &t.Key, &t.ServerName} {
			*p = r(*p)
		}
		for _, f := range []string{t.CA, t.Cert, t.Key} {
			if f == "" {
				continue
			}
			// Read for the digest only: resolve has already checked it.
			b, err := os.ReadFile(f)
			if err != nil {
				return "", fmt.Errorf("store redis: tls: %w", err)
			}
			canon.Files[f] = b
		}
		canon.Config.TLS = &t
	}
	raw, err := json.Marshal(canon) // map keys are sorted: canonical
	if err != nil {
		return "", err
	}
	mac := hmac.New(sha256.New, poolSecret)
	mac.Write(raw)
	return "redis-config:" + hex.EncodeToString(mac.Sum(nil)), nil
}

// openRedis opens (or shares) the store of a structured Redis config.
func openRedis(rc *RedisConfig, repl *caddy.Replacer, now func() time.Time, logger *zap.Logger) (store.Store, string, error) {
	for _, f := range []struct{ name, v string }{
		{"password", rc.Password}, {"sentinel_password", rc.SentinelPassword},
	} {
		if f.v != "" && !hasPlaceholder(f.v) {
			logger.Warn("redis " + f.name + " written in clear in the config, which the /config API and autosave.json show; give it as {env.NAME}")
		}
	}
	o, err := rc.resolve(repl)
	if err != nil {
		return nil, "", err
	}
	key, err := rc.poolKey(repl)
	if err != nil {
		return nil, "", err
	}
	val, _, err := stores.LoadOrNew(key, func() (caddy.Destructor, error) {
		st, err := redisstore.Open(o, now)
		if err != nil {
			return nil, fmt.Errorf("store redis: %w", err)
		}
		if o.WaitReplicas > 0 {
			return pooledStore{redisstore.Acked{Store: st}}, nil
		}
		return pooledStore{st}, nil
	})
	if err != nil {
		return nil, "", err
	}
	logger.Info("redis store", zap.String("topology", o.Topology()), zap.Strings("addrs", o.Addrs),
		zap.Bool("tls", o.TLS != nil), zap.Int("wait_replicas", o.WaitReplicas))
	return val.(pooledStore).Store, key, nil
}
