package caddymodule

import (
	"fmt"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/tollgate/tollgate/caddymodule/store"
	"github.com/tollgate/tollgate/caddymodule/store/memory"
	"github.com/tollgate/tollgate/caddymodule/store/redisstore"
)

// stores shares open stores across config reloads. Caddy provisions the new
// config before it stops the old one; without sharing, a reload would open a
// second Redis pool for a moment or, worse, start an empty memory store and
// sign every user out and invalidate every token.
var stores = caddy.NewUsagePool()

// pooledStore lets the usage pool close a store when its last user is gone.
type pooledStore struct{ store.Store }

func (p pooledStore) Destruct() error { return p.Close() }

// openStore returns the store for a resolved store setting and the key
// under which it is pooled.
func openStore(setting string, now func() time.Time) (store.Store, string, error) {
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
	return val.(pooledStore).Store, key, nil
}

// useStore hands the handlers st, each through the role it uses.
func (a *App) useStore(st store.Store) {
	a.grants, a.codes, a.tokens, a.budgets, a.blobs, a.failures = st, st, st, st, st, st
}
