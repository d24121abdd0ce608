package caddymodule

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/tollgate/tollgate/caddymodule/store"
	"github.com/tollgate/tollgate/caddymodule/store/memory"
	"github.com/tollgate/tollgate/caddymodule/store/redisstore"
	"github.com/tollgate/tollgate/caddymodule/webhook"
)

// stores shares open stores across config reloads. Caddy provisions the new
// config before it stops the old one; without sharing, a reload would open a
// second Redis pool for a moment or, worse, start an empty memory store and
// sign every user out and invalidate every token.
var stores = caddy.NewUsagePool()

// backend is what the handlers need of a store.
type backend interface {
	SaveGrant(ctx context.Context, g store.Grant, ttl time.Duration) error
	GetGrant(ctx context.Context, grantID string) (store.Grant, error)
	RevokeGrant(ctx context.Context, grantID string) (store.Grant, error)
	SaveCode(ctx context.Context, grantID, digest string, c store.Code) error
	ConsumeCode(ctx context.Context, grantID, digest string) (store.Code, error)
	IssueTokens(ctx context.Context, grantID, codeDigest string, p store.Pair) error
	GetToken(ctx context.Context, grantID string, kind store.Kind, digest string) (store.Token, error)
	Rotate(ctx context.Context, grantID, oldRefresh string, p store.Pair) error
	Authenticate(ctx context.Context, grantID, accessDigest string, l store.Limit) (store.Token, store.RateStatus, error)
	Refund(ctx context.Context, grantID string, l store.Limit) (bool, error)
	SetBlob(ctx context.Context, key string, value []byte, ttl time.Duration) error
	GetBlob(ctx context.Context, key string) ([]byte, error)
	TakeBlob(ctx context.Context, key string) ([]byte, error)
	DeleteBlob(ctx context.Context, key string) error
	LoadOrStoreBlob(ctx context.Context, key string, value []byte) ([]byte, error)
	CountFailure(ctx context.Context, key string, window time.Duration) (int64, time.Time, error)
	Failures(ctx context.Context, key string, window time.Duration) (int64, time.Time, error)
	ClearFailures(ctx context.Context, key string, window time.Duration) error
	CheckReuse(ctx context.Context, grantID, refreshDigest string, grace time.Duration) (store.Grant, error)
	ListGrants(ctx context.Context, subject string) ([]store.Grant, error)
	webhook.Queue
	Close() error
}

// pooledStore lets the usage pool close a store when its last user is gone.
type pooledStore struct{ backend }

func (p pooledStore) Destruct() error { return p.Close() }

// openStore returns the store for a resolved store setting and the key
// under which it is pooled.
func openStore(setting string, now func() time.Time) (backend, string, error) {
	setting = strings.TrimSpace(setting)
	key := setting
	if setting == "" || setting == "memory" {
		key = "memory"
	}
	val, _, err := stores.LoadOrNew(key, func() (caddy.Destructor, error) {
		switch {
		case key == "memory":
			return pooledStore{memory.New(now)}, nil
		case strings.HasPrefix(setting, "redis://"), strings.HasPrefix(setting, "rediss://"):
			st, err := redisstore.New(setting, now)
			if err != nil {
				// The URL may hold a password: say what is wrong, not the URL.
				return nil, fmt.Errorf("store: invalid Redis URL: %w", err)
			}
			return pooledStore{st}, nil
		default:
			return nil, fmt.Errorf(`store: want "memory" or a redis:// or rediss:// URL`)
		}
	})
	if err != nil {
		return nil, "", err
	}
	return val.(pooledStore).backend, key, nil
}
