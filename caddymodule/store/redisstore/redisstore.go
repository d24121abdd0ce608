// Package redisstore is the Redis implementation of store.Store, for running
// several gateway instances behind a load balancer.
//
// Every key of a grant carries the grant id as its Cluster hash tag
// ("tg:{<grant>}:..."), and every change that touches more than one key is a
// single Lua script with all its keys declared in KEYS, so the same scripts
// run unchanged on a single node, Sentinel or Cluster. Expiry is decided in
// the scripts against the store's injected clock (passed in as ARGV), never
// against Redis's clock; key TTLs only collect garbage and are always longer
// than the record's logical life.
package redisstore

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/caddymodule/store"
)

// Store is a store.Store backed by Redis.
type Store struct {
	client  redis.UniversalClient
	owned   bool // Close closes client only when New created it
	now     func() time.Time
	scripts scripts
	queue   string       // the webhook queue's hash tag, "" for the default (events.go)
	keys    keyspace     // the key prefix, "" for the default (keys.go)
	auth    *authBatcher // batches concurrent Authenticate calls (batch.go)
	tokens  *tokenCache  // access tokens Authenticate remembers (tokencache.go)
	watch   *watcher     // liveness and budget this gateway vouches for (watch.go)
}

// New returns a Store for a redis:// or rediss:// URL, e.g.
// "rediss://user:pass@host:6380/0?dial_timeout=2s" (query parameters are
// go-redis's, see redis.ParseURL). It does not connect: go-redis dials on
// first use, so a Redis that is down when Caddy loads its config does not
// fail the load; the first request reports it. now is the clock every expiry
// is judged by; nil means time.Now.
func New(rawURL string, now func() time.Time) (*Store, error) {
	opts, err := parseURL(rawURL)
	if err != nil {
		return nil, err
	}
	s := NewFromClient(redis.NewUniversalClient(opts), now)
	s.owned = true
	return s, nil
}

// NewFromClient returns a Store over an existing client (single node,
// Sentinel or Cluster). Close does not close a client passed in here: its
// owner may share it.
func NewFromClient(c redis.UniversalClient, now func() time.Time) *Store {
	if now == nil {
		now = time.Now
	}
	s := &Store{client: c, now: now, scripts: newScripts()}
	s.auth = newAuthBatcher(c, s.scripts.authenticate)
	s.tokens = newTokenCache()
	s.watch = newWatcher(c, s.nowMillis)
	return s
}

// channel is the invalidation channel of the store's keyspace.
func (s *Store) channel() string { return s.k().channel() }

// changed is called after a script that may have replaced a pair of the
// grant: this gateway stops vouching for it at once (the script's message
// tells the others).
func (s *Store) changed(grantID string) { s.watch.invalidate(grantID, false) }

// revokedEverywhere is called after a script revoked the grant: it returns
// once no gateway vouches for it any more (watch.go, announce).
func (s *Store) revokedEverywhere(grantID string) {
	s.watch.announce(s.channel(), grantID)
}

// parseURL turns a URL into universal options. Only the TCP schemes are
// accepted: UniversalOptions has no network field, so a unix:// URL would be
// silently dialled over TCP. Errors never echo the URL, which may hold a
// password.
func parseURL(rawURL string) (*redis.UniversalOptions, error) {
	if !strings.HasPrefix(rawURL, "redis://") && !strings.HasPrefix(rawURL, "rediss://") {
		return nil, errors.New("parsing redis url: scheme must be redis:// or rediss://")
	}
	o, err := redis.ParseURL(rawURL)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("parsing redis url: %w", err)
	}
	return &redis.UniversalOptions{
		Addrs:                 []string{o.Addr},
		ClientName:            o.ClientName,
		DB:                    o.DB,
		Protocol:              o.Protocol,
		Username:              o.Username,
		Password:              o.Password,
		MaxRetries:            o.MaxRetries,
		MinRetryBackoff:       o.MinRetryBackoff,
		MaxRetryBackoff:       o.MaxRetryBackoff,
		DialTimeout:           o.DialTimeout,
		ReadTimeout:           o.ReadTimeout,
		WriteTimeout:          o.WriteTimeout,
		PoolFIFO:              o.PoolFIFO,
		PoolSize:              o.PoolSize,
		MaxConcurrentDials:    o.MaxConcurrentDials,
		PoolTimeout:           o.PoolTimeout,
		MinIdleConns:          o.MinIdleConns,
		MaxIdleConns:          o.MaxIdleConns,
		MaxActiveConns:        o.MaxActiveConns,
		ConnMaxIdleTime:       o.ConnMaxIdleTime,
		ConnMaxLifetime:       o.ConnMaxLifetime,
		ConnMaxLifetimeJitter: o.ConnMaxLifetimeJitter,
		PipelinePoolSize:      o.PipelinePoolSize,
		TLSConfig:             o.TLSConfig,
		// ContextTimeoutEnabled makes a request's context deadline bound
		// the Redis call, so a hung Redis costs the caller its own timeout
		// rather than ReadTimeout on top of it.
		ContextTimeoutEnabled: true,
	}, nil
}

// Ping reports whether Redis answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis ping: %w", err)
	}
	return nil
}

// Close ends the store's subscription, gives back the budget it holds,
// and releases the client when the Store created it.
func (s *Store) Close() error {
	s.watch.stop()
	if !s.owned {
		return nil
	}
	if err := s.client.Close(); err != nil {
		return fmt.Errorf("closing redis client: %w", err)
	}
	return nil
}

// nowMillis reads the injected clock.
func (s *Store) nowMillis() int64 { return s.now().UnixMilli() }

// errReply is returned when a script answers something this code did not
// write it to answer: a version skew or a corrupted key, never a client error.
func errReply(v any) error { return fmt.Errorf("unexpected script reply %T", v) }

var _ store.Store = (*Store)(nil)
