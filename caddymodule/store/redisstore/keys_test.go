package redisstore

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/caddymodule/store"
	"github.com/tollgate/tollgate/caddymodule/store/storetest"
)

// Two deployments with their own key prefixes share one Redis without
// seeing each other: not a grant, a blob, a sign-in count, a webhook event
// nor a user's list of apps, and every key either writes starts with its
// own prefix.
func TestKeyPrefixesKeepDeploymentsApart(t *testing.T) {
	url := storetest.StartRedis(t)
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opts)
	t.Cleanup(func() { _ = c.Close() })
	ctx := t.Context()
	open := func(prefix string) *Store {
		s := NewFromClient(c, nil)
		if err := s.SetKeyPrefix(prefix); err != nil {
			t.Fatal(err)
		}
		return s
	}
	a, b := open("deploy-a:"), open("deploy-b:")

	g := store.Grant{ID: "g1", ClientID: "app", Subject: "alice", Scopes: []string{"read"}, CreatedAt: time.Now(), LastUsedAt: time.Now()}
	if err := a.SaveGrant(ctx, g, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := a.SetBlob(ctx, "sess:x", []byte("v"), time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.CountFailure(ctx, "login:alice", time.Minute); err != nil {
		t.Fatal(err)
	}
	keyA, err := a.LoadOrStoreBlob(ctx, "formkey", []byte("key-of-a"))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.EnqueueEvent(ctx, store.Event{ID: "evt_1", ClientID: "app", Payload: []byte("{}"), CreatedAt: time.Now(), NextAttempt: time.Now()}); err != nil {
		t.Fatal(err)
	}

	if _, err := b.GetGrant(ctx, "g1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("b sees a's grant: %v", err)
	}
	if gs, err := b.ListGrants(ctx, "alice"); err != nil || len(gs) != 0 {
		t.Errorf("b lists a's grants: %v, %v", gs, err)
	}
	if _, err := b.GetBlob(ctx, "sess:x"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("b sees a's blob: %v", err)
	}
	if n, _, err := b.Failures(ctx, "login:alice", time.Minute); err != nil || n != 0 {
		t.Errorf("b counts a's failures: %d, %v", n, err)
	}
	if k, err := b.LoadOrStoreBlob(ctx, "formkey", []byte("key-of-b")); err != nil || string(k) != "key-of-b" || string(keyA) != "key-of-a" {
		t.Errorf("form keys: a %q, b %q (%v): want each its own", keyA, k, err)
	}
	if evs, err := b.ClaimEvents(ctx, "b1", 10, time.Minute); err != nil || len(evs) != 0 {
		t.Errorf("b claims a's events: %v, %v", evs, err)
	}
	if evs, err := a.ClaimEvents(ctx, "a1", 10, time.Minute); err != nil || len(evs) != 1 {
		t.Errorf("a claims %d of its own events (%v), want 1", len(evs), err)
	}
	if _, err := a.GetGrant(ctx, "g1"); err != nil {
		t.Errorf("a lost its grant: %v", err)
	}

	keys, err := c.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if !strings.HasPrefix(k, "deploy-a:") && !strings.HasPrefix(k, "deploy-b:") {
			t.Errorf("key %q has neither deployment's prefix", k)
		}
	}
	if len(keys) < 6 {
		t.Errorf("only %d keys written: %v", len(keys), keys)
	}
}

func TestKeyPrefixRefusesBraces(t *testing.T) {
	s := NewFromClient(nil, nil)
	for _, p := range []string{"", "{x}:", "a}", "a b", strings.Repeat("a", 65), "é:"} {
		if err := s.SetKeyPrefix(p); err == nil {
			t.Errorf("SetKeyPrefix(%q) accepted", p)
		}
	}
	if err := s.SetKeyPrefix("prod.eu-1:"); err != nil {
		t.Errorf("SetKeyPrefix(prod.eu-1:): %v", err)
	}
}

// Open takes the prefix from Options, and a deployment configured with one
// writes no key outside it.
func TestOpenWithKeyPrefix(t *testing.T) {
	url := storetest.StartRedis(t)
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Options{Addrs: []string{opts.Addr}, KeyPrefix: "{bad}"}, nil); err == nil {
		t.Fatal("Open accepted a prefix with braces")
	}
	s, err := Open(Options{Addrs: []string{opts.Addr}, KeyPrefix: "staging:"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	ctx := t.Context()
	if err := s.SaveGrant(ctx, store.Grant{ID: "g1", ClientID: "app", Subject: "alice", Scopes: []string{"read"}}, time.Hour); err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opts)
	t.Cleanup(func() { _ = c.Close() })
	keys, err := c.Keys(ctx, "*").Result()
	if err != nil || len(keys) == 0 {
		t.Fatalf("keys: %v, %v", keys, err)
	}
	for _, k := range keys {
		if !strings.HasPrefix(k, "staging:") {
			t.Errorf("key %q outside the prefix", k)
		}
	}
}
