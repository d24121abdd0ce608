package redisstore

import (
	"errors"
	"testing"
	"time"

	"github.com/tollgate/tollgate/caddymodule/store"
	"github.com/tollgate/tollgate/caddymodule/store/storetest"
)

func TestRotatedLayout(t *testing.T) {
	url := storetest.StartRedis(t)
	const grace = 30 * time.Second
	rotate := func(t *testing.T, f *fixture) store.Pair {
		t.Helper()
		// The clock stays put: Rotate prunes the tokens index by the fake
		// clock, while Redis expires the pruned keys by its own, so a jump
		// would leave keys that no revocation lists.
		now := f.clk.Now()
		p := store.Pair{
			Access:  store.Token{Digest: "at2", ExpiresAt: now.Add(time.Hour)},
			Refresh: store.Token{Digest: "rt2", ExpiresAt: now.Add(30 * 24 * time.Hour)},
		}
		if err := f.s.Rotate(t.Context(), f.id, "rt1", p); err != nil {
			t.Fatalf("Rotate: %v", err)
		}
		return p
	}

	t.Run("rotate leaves a mark in the grant's slot and index until the old token's expiry", func(t *testing.T) {
		f := newFixture(t, url)
		ctx := t.Context()
		rotate(t, f)
		mk := rotatedKey(f.id, "rt1")
		if mk != "tg:{"+f.id+"}:rotated:rt1" {
			t.Errorf("rotated key = %q", mk)
		}
		v, err := f.c.HGetAll(ctx, mk).Result()
		if err != nil {
			t.Fatal(err)
		}
		nonce, err := f.c.HGet(ctx, grantKey(f.id), "n").Result()
		if err != nil {
			t.Fatal(err)
		}
		at, exp := f.clk.Now().UnixMilli(), f.fresh.ExpiresAt.UnixMilli()
		if v["at"] != itoa(at) || v["exp"] != itoa(exp) || v["n"] != nonce {
			t.Errorf("mark = %v, want at %d, exp %d, n %s", v, at, exp, nonce)
		}
		ttl, err := f.c.PTTL(ctx, mk).Result()
		if err != nil {
			t.Fatal(err)
		}
		if left := f.fresh.ExpiresAt.Sub(f.clk.Now()); ttl < left || ttl > left+gcMargin*time.Millisecond {
			t.Errorf("mark TTL %v, want between %v and %v more", ttl, left, gcMargin*time.Millisecond)
		}
		score, err := f.c.ZScore(ctx, tokensKey(f.id), mk).Result()
		if err != nil || int64(score) != exp {
			t.Errorf("mark's score in the tokens index = %v (%v), want %d", score, err, exp)
		}
	})

	t.Run("revoking the grant deletes the mark", func(t *testing.T) {
		f := newFixture(t, url)
		rotate(t, f)
		if _, err := f.s.RevokeGrant(t.Context(), f.id); err != nil {
			t.Fatal(err)
		}
		if keys := f.keys(t); len(keys) != 1 || keys[0] != markerKey(f.id, "code1") {
			t.Errorf("keys left = %q, want only the code's replay marker", keys)
		}
	})

	t.Run("a reuse deletes the grant's keys like a revocation", func(t *testing.T) {
		f := newFixture(t, url)
		rotate(t, f)
		f.clk.Advance(time.Minute)
		if _, err := f.s.CheckReuse(t.Context(), f.id, "rt1", grace); !errors.Is(err, store.ErrRefreshReused) {
			t.Fatalf("CheckReuse = %v", err)
		}
		if keys := f.keys(t); len(keys) != 1 || keys[0] != markerKey(f.id, "code1") {
			t.Errorf("keys left = %q, want only the code's replay marker", keys)
		}
	})

	t.Run("a mark left by a lost cleanup does not revoke the next consent", func(t *testing.T) {
		f := newFixture(t, url)
		ctx := t.Context()
		rotate(t, f)
		f.clk.Advance(time.Minute)
		f.c.AddHook(dropDel{})
		if _, err := f.s.CheckReuse(ctx, f.id, "rt1", grace); !errors.Is(err, store.ErrRefreshReused) {
			t.Fatalf("CheckReuse = %v", err)
		}
		if n, err := f.c.Exists(ctx, rotatedKey(f.id, "rt1")).Result(); err != nil || n != 1 {
			t.Fatalf("mark gone (%v): the cleanup was not lost, the test proves nothing", err)
		}
		if err := f.s.SaveGrant(ctx, store.Grant{ID: f.id, ClientID: "app", Subject: "alice"}, time.Hour); err != nil {
			t.Fatal(err)
		}
		if _, err := f.s.CheckReuse(ctx, f.id, "rt1", grace); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("CheckReuse after re-consent = %v, want ErrNotFound", err)
		}
		if _, err := f.s.GetGrant(ctx, f.id); err != nil {
			t.Errorf("GetGrant after re-consent: %v", err)
		}
	})
}
