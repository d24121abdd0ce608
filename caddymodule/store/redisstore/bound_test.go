package redisstore

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/caddymodule/store"
	"github.com/tollgate/tollgate/caddymodule/store/storetest"
)

// maxGrantBytes is what one live grant may cost in Redis, its access and
// refresh token and rate-limit counter included, however often it has been
// refreshed (README.md "Refresh tokens, reuse and disconnect").
const maxGrantBytes = 1024

// grantBytes sums MEMORY USAGE over every key carrying the grant's hash tag,
// found by SCAN on the node that serves the grant's slot.
func grantBytes(t *testing.T, c redis.UniversalClient, grantID string) (int64, int) {
	t.Helper()
	ctx := t.Context()
	node := redis.Cmdable(c)
	if cc, ok := c.(*redis.ClusterClient); ok {
		n, err := cc.MasterForKey(ctx, defaultKeys.grant(grantID))
		if err != nil {
			t.Fatal(err)
		}
		node = n
	}
	var total int64
	keys := 0
	iter := node.Scan(ctx, 0, "tg:{"+grantID+"}*", 1000).Iterator()
	for iter.Next(ctx) {
		n, err := node.MemoryUsage(ctx, iter.Val(), 0).Result()
		if err != nil {
			t.Fatal(err)
		}
		total += n
		keys++
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	return total, keys
}

// TestGrantMemoryBound drives a grant as a partner refreshing every hour
// would, calling the store directly: a consent, a code, a pair with a
// budget, API calls, then 10,000 rotations. The grant's keys stay under
// maxGrantBytes at rest and after the rotations, and the last rotated-out
// refresh token is still recognised as a reuse that revokes everything.
func TestGrantMemoryBound(t *testing.T) {
	t.Run("single", func(t *testing.T) {
		opts, err := redis.ParseURL(storetest.StartRedis(t))
		if err != nil {
			t.Fatal(err)
		}
		c := redis.NewClient(opts)
		t.Cleanup(func() { _ = c.Close() })
		testGrantMemoryBound(t, c)
	})
	t.Run("cluster", func(t *testing.T) {
		c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: storetest.StartRedisCluster(t)})
		t.Cleanup(func() { _ = c.Close() })
		testGrantMemoryBound(t, c)
	})
}

func testGrantMemoryBound(t *testing.T, c redis.UniversalClient) {
	ctx := t.Context()
	clk := storetest.NewClock()
	s := NewFromClient(c, clk.Now)
	// A grant as the gateway makes one: a 22-character id (oauth.GrantID),
	// the example's client and scopes, a profile snapshot, 64-hex digests.
	var b [16]byte
	_, _ = rand.Read(b[:])
	id := base64.RawURLEncoding.EncodeToString(b[:])
	scopes := []string{"profile:read", "seatime:read", "vessels:read"}
	g := store.Grant{ID: id, ClientID: "ywc_a1b2c3d4", Subject: "u_4f3c2a1b9d", Scopes: scopes,
		Profile: map[string]string{"name": "Alice Martin", "country": "FR"}}
	if err := s.SaveGrant(ctx, g, 90*24*time.Hour); err != nil {
		t.Fatal(err)
	}
	digest := func() string { return storetest.Random() + storetest.Random() }
	code := digest()
	if err := s.SaveCode(ctx, id, code, store.Code{ClientID: g.ClientID, Subject: g.Subject,
		RedirectURI: "https://partner.example/oauth/callback", Scopes: scopes, ExpiresAt: clk.Now().Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ConsumeCode(ctx, id, code); err != nil {
		t.Fatal(err)
	}
	budget := store.Limit{Count: 5000, Window: time.Hour}
	pair := func() store.Pair {
		now := clk.Now()
		return store.Pair{
			Access: store.Token{Digest: digest(), ClientID: g.ClientID, Subject: g.Subject, Scopes: scopes,
				ExpiresAt: now.Add(time.Hour), Limit: budget},
			Refresh: store.Token{Digest: digest(), ClientID: g.ClientID, Subject: g.Subject, Scopes: scopes,
				ExpiresAt: now.Add(90 * 24 * time.Hour)},
		}
	}
	p := pair()
	if err := s.IssueTokens(ctx, id, code, p); err != nil {
		t.Fatal(err)
	}
	call := func() {
		t.Helper()
		if _, st, err := s.Authenticate(ctx, id, p.Access.Digest, store.Limit{}); err != nil || !st.Allowed {
			t.Fatalf("Authenticate: %+v, %v", st, err)
		}
	}
	call()
	atRest, keys := grantBytes(t, c, id)
	t.Logf("at rest after issue: %d bytes in %d keys", atRest, keys)
	if atRest > maxGrantBytes {
		t.Errorf("a fresh grant costs %d bytes, want at most %d", atRest, maxGrantBytes)
	}

	const rotations = 10_000
	var previous string
	for range rotations {
		clk.Advance(time.Hour)
		next := pair()
		if err := s.Rotate(ctx, id, p.Refresh.Digest, next); err != nil {
			t.Fatalf("Rotate: %v", err)
		}
		previous, p = p.Refresh.Digest, next
	}
	call()
	after, keys := grantBytes(t, c, id)
	t.Logf("after %d rotations: %d bytes in %d keys", rotations, after, keys)
	if after > maxGrantBytes {
		t.Errorf("after %d rotations the grant costs %d bytes, want at most %d", rotations, after, maxGrantBytes)
	}

	// A second connection of the same user and client holds a second pair
	// in the same hash: what it costs is logged, not bounded above.
	code = digest()
	if err := s.SaveCode(ctx, id, code, store.Code{ClientID: g.ClientID, Subject: g.Subject, Scopes: scopes,
		ExpiresAt: clk.Now().Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ConsumeCode(ctx, id, code); err != nil {
		t.Fatal(err)
	}
	if err := s.IssueTokens(ctx, id, code, pair()); err != nil {
		t.Fatal(err)
	}
	two, keys := grantBytes(t, c, id)
	t.Logf("with a second pair (and a second replay marker): %d bytes in %d keys", two, keys)

	// Reuse detection still works: the token rotated out last comes back
	// after the grace window, and the grant goes with everything in it.
	clk.Advance(time.Minute)
	if _, err := s.CheckReuse(ctx, id, previous, 10*time.Second); !errors.Is(err, store.ErrRefreshReused) {
		t.Fatalf("CheckReuse of the last rotated-out token = %v, want ErrRefreshReused", err)
	}
	if _, _, err := s.Authenticate(ctx, id, p.Access.Digest, store.Limit{}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Authenticate after the reuse = %v, want ErrNotFound", err)
	}
	if left, keys := grantBytes(t, c, id); keys != 2 || left > 2*200 {
		t.Errorf("%d bytes in %d keys left after the revocation, want only the two codes' replay markers", left, keys)
	}
}
