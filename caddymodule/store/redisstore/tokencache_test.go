package redisstore

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/caddymodule/store"
	"github.com/tollgate/tollgate/caddymodule/store/storetest"
)

// roundTrips records each round trip as the command names it carried,
// pipelines as "a+b".
type roundTrips struct {
	mu    sync.Mutex
	trips []string
}

func (r *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }
func (r *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		r.add(cmd.Name())
		return next(ctx, cmd)
	}
}
func (r *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		names := make([]string, len(cmds))
		for i, c := range cmds {
			names[i] = c.Name()
		}
		r.add(strings.Join(names, "+"))
		return next(ctx, cmds)
	}
}
func (r *roundTrips) add(s string) {
	if strings.HasPrefix(s, "hello") || strings.HasPrefix(s, "client") || s == "publish" {
		return // a new connection's handshake, a heartbeat (watch.go)
	}
	r.mu.Lock()
	r.trips = append(r.trips, s)
	r.mu.Unlock()
}
func (r *roundTrips) take() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := strings.Join(r.trips, " ")
	r.trips = nil
	return s
}

// remembering is the fixture with its store remembering tokens, and every
// round trip recorded.
func remembering(t *testing.T, url string) (*fixture, *roundTrips) {
	f := newFixture(t, url)
	f.s.tokens = newTokenCache()
	f.s.watch.start(f.s.channel())
	rt := &roundTrips{}
	f.c.AddHook(rt)
	return f, rt
}

func wantAuth(t *testing.T, f *fixture, l store.Limit, allowed bool, remaining int64) {
	t.Helper()
	tok, st, err := f.s.Authenticate(t.Context(), f.id, f.access.Digest, l)
	if err != nil || st.Allowed != allowed || st.Remaining != remaining {
		t.Fatalf("Authenticate: %+v, %v; want allowed %v, remaining %d", st, err, allowed, remaining)
	}
	if tok.ClientID != "app" || tok.Subject != "alice" || strings.Join(tok.Scopes, " ") != "read" || !tok.ExpiresAt.Equal(f.access.ExpiresAt) {
		t.Fatalf("Authenticate: token %+v, want the fixture's access token", tok)
	}
}

// subscribed starts s's subscription (watch.go) if need be and waits
// until it is up and answering pings, so that what it confirms next is
// vouched for.
func subscribed(t *testing.T, s *Store) {
	t.Helper()
	w := s.watch
	w.start(s.channel())
	// Its own heartbeat heard within the last half of watchFresh, so that
	// a slow moment right after cannot let the vouching lapse.
	eventually(t, func() error {
		if w.gen.Load() == 0 || int64(time.Since(w.base))+int64(watchFresh/2) >= w.fresh.Load() {
			return errors.New("the invalidation subscription is not up and fresh")
		}
		return nil
	})
}

// TestRememberedTokenCostsNoRoundTrip: after the script has vouched for a
// token once and a check in Redis has confirmed it under the
// subscription, calls without a budget cost no round trip at all, and
// calls with one cost a round trip only to take a lease, whose size
// doubles while the calls keep coming; X-RateLimit-Remaining still goes
// down by exactly one per call, and every unit not used goes back.
func TestRememberedTokenCostsNoRoundTrip(t *testing.T) {
	f, rt := remembering(t, storetest.StartRedis(t))
	l := store.Limit{Count: 10_000, Window: time.Minute} // the fixture already counted 1
	wantAuth(t, f, l, true, 9998)
	if got := rt.take(); got != "evalsha" {
		t.Fatalf("first call: round trips %q, want the script", got)
	}
	subscribed(t, f.s)
	remaining := int64(9997)
	for range 31 {
		wantAuth(t, f, l, true, remaining)
		remaining--
	}
	// Leases of 1, 2, 4, 8 and 16 units (the clock stands still, so each
	// is used up "at once" and the next doubles). A bare HMGET would be a
	// heartbeat late on a slow machine: the lease pattern is what counts.
	got := rt.take()
	leases := 0
	for _, trip := range strings.Fields(got) {
		if trip == "hmget+zadd" {
			leases++
		}
	}
	if leases != 5 || strings.Contains(got, "evalsha") {
		t.Errorf("31 calls: round trips %q, want 5 leases and no script", got)
	}
	if n := windowCount(t, f, l); n != 2+31 {
		t.Errorf("count %d, want %d: every unit taken was used", n, 2+31)
	}
	rt.take() // the ZSCORE above
	// Without a budget nothing is counted, and the grant is vouched for.
	for range 10 {
		if _, st, err := f.s.Authenticate(t.Context(), f.id, f.access.Digest, store.Limit{}); err != nil || !st.Allowed {
			t.Fatalf("unlimited: %+v, %v", st, err)
		}
	}
	if got := rt.take(); got != "" {
		t.Errorf("unlimited remembered calls: round trips %q, want none", got)
	}
	// A lease of 32 is taken and 1 unit of it used; the rest goes back
	// once it has been idle for leaseIdle.
	wantAuth(t, f, l, true, remaining)
	if n := windowCount(t, f, l); n != 2+32+31 {
		t.Fatalf("count %d, want %d with a lease of 32 held", n, 2+32+31)
	}
	f.clk.Advance(leaseIdle * time.Millisecond)
	f.s.watch.sweep(t.Context(), leaseIdle)
	if n := windowCount(t, f, l); n != 2+32 {
		t.Errorf("count %d after the idle lease went back, want %d", n, 2+32)
	}
}

// TestRememberedTokenDiesAtOnce: revoking or rotating its grant, on this
// store or any other, refuses a remembered token on the very next call
// (README: "revocation is instant"), and it is forgotten.
func TestRememberedTokenDiesAtOnce(t *testing.T) {
	url := storetest.StartRedis(t)
	l := store.Limit{Count: 10, Window: time.Minute}
	t.Run("revoked", func(t *testing.T) {
		f, _ := remembering(t, url)
		wantAuth(t, f, l, true, 8)
		other := NewFromClient(f.c, f.clk.Now) // another gateway instance
		t.Cleanup(func() { _ = other.Close() })
		if _, err := other.RevokeGrant(t.Context(), f.id); err != nil {
			t.Fatal(err)
		}
		if _, _, err := f.s.Authenticate(t.Context(), f.id, f.access.Digest, l); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("after revocation: %v, want ErrNotFound", err)
		}
		if f.s.tokens.get(f.access.Digest) != nil {
			t.Errorf("a revoked token is still remembered")
		}
	})
	t.Run("rotated", func(t *testing.T) {
		f, _ := remembering(t, url)
		wantAuth(t, f, l, true, 8)
		p := store.Pair{
			Access:  store.Token{Digest: "at2", ClientID: "app", Subject: "alice", Scopes: []string{"read"}, ExpiresAt: f.clk.Now().Add(time.Hour)},
			Refresh: store.Token{Digest: "rt2", ClientID: "app", Subject: "alice", Scopes: []string{"read"}, ExpiresAt: f.clk.Now().Add(24 * time.Hour)},
		}
		if err := f.s.Rotate(t.Context(), f.id, f.fresh.Digest, p); err != nil {
			t.Fatal(err)
		}
		if _, _, err := f.s.Authenticate(t.Context(), f.id, f.access.Digest, l); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("after rotation: %v, want ErrNotFound", err)
		}
		// The refused call was not counted: the new token has the rest.
		if _, st, err := f.s.Authenticate(t.Context(), f.id, "at2", l); err != nil || st.Remaining != 7 {
			t.Fatalf("new token: %+v, %v; want remaining 7", st, err)
		}
	})
	t.Run("expired", func(t *testing.T) {
		f, rt := remembering(t, url)
		wantAuth(t, f, l, true, 8)
		rt.take()
		f.clk.Advance(time.Hour)
		if _, _, err := f.s.Authenticate(t.Context(), f.id, f.access.Digest, l); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("expired: %v, want ErrNotFound", err)
		}
		if got := rt.take(); got != "" {
			t.Errorf("an expired remembered token cost round trips %q", got)
		}
	})
}

// TestRememberedTokenBudget: a remembered token's calls are counted in the
// same window as the script's, never past the limit; a new window is
// opened by the script, and refunds see the count.
func TestRememberedTokenBudget(t *testing.T) {
	f, rt := remembering(t, storetest.StartRedis(t))
	// A window shorter than recheckEvery, so that the next one starts
	// while the token is remembered.
	l := store.Limit{Count: 3, Window: 10 * time.Second}
	f.clk.Advance(l.Window)
	wantAuth(t, f, l, true, 2) // the script opens the window
	wantAuth(t, f, l, true, 1)
	wantAuth(t, f, l, true, 0)
	for range 3 {
		wantAuth(t, f, l, false, 0)
	}
	if n := windowCount(t, f, l); n != 3 {
		t.Errorf("count %d after refused calls, want the limit, 3", n)
	}
	if ok, err := f.s.Refund(t.Context(), f.id, l); err != nil || !ok {
		t.Fatalf("Refund: %v, %v", ok, err)
	}
	wantAuth(t, f, l, true, 0)
	rt.take()
	f.clk.Advance(l.Window)
	wantAuth(t, f, l, true, 2)
	if got := rt.take(); got != "hmget+zadd evalsha" {
		t.Errorf("new window: round trips %q, want the check finding it unopened, then the script", got)
	}
	// The script cleared the members of the window that ended (count and
	// refunds); the fixture's minute window may still run.
	members, err := f.c.ZRange(t.Context(), defaultKeys.counter(f.id), 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	idx := store.WindowIndex(f.clk.Now().UnixMilli(), 10000)
	for _, m := range members {
		if strings.HasSuffix(m, counterMember("", 10000, idx-1)) {
			t.Errorf("counter members %q: the ended window's %q is left", members, m)
		}
	}
	if !strings.Contains(strings.Join(members, " "), counterMember("c", 10000, idx)) {
		t.Errorf("counter members %q: the new window's count is missing", members)
	}
}

// TestForgedTokenIsNotRemembered: only tokens the script accepted are
// remembered, so forged ones cannot grow the cache.
func TestForgedTokenIsNotRemembered(t *testing.T) {
	f, _ := remembering(t, storetest.StartRedis(t))
	for _, d := range []string{"forged", "at1x", ""} {
		if _, _, err := f.s.Authenticate(t.Context(), f.id, d, store.Limit{}); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("digest %q: %v, want ErrNotFound", d, err)
		}
	}
	if n := len(f.s.tokens.m); n != 0 {
		t.Errorf("%d forged tokens remembered", n)
	}
}

// TestTokenCacheBound: the cache never holds more than its maximum, and
// makes room with expired tokens first.
func TestTokenCacheBound(t *testing.T) {
	c := newTokenCache()
	c.max = 8
	now := time.Now()
	live := &remembered{tok: store.Token{ExpiresAt: now.Add(time.Hour)}}
	dead := &remembered{tok: store.Token{ExpiresAt: now.Add(-time.Second)}}
	for i := range 7 {
		c.put(string(rune('a'+i)), live, now.UnixMilli())
	}
	c.put("dead", dead, now.UnixMilli())
	c.put("new", live, now.UnixMilli())
	if c.get("new") == nil || len(c.m) != 8 {
		t.Fatalf("%d entries, new remembered %v; want 8 with the new one", len(c.m), c.get("new") != nil)
	}
	if c.get("dead") != nil {
		t.Errorf("a live token was evicted while an expired one was kept")
	}
	for i := range 1000 {
		c.put(strings.Repeat("x", i%50)+string(rune(i)), live, now.UnixMilli())
		if len(c.m) > 8 {
			t.Fatalf("%d entries, want at most 8", len(c.m))
		}
	}
}

// TestAuthenticateLocal: the in-process answer (store.LocalAuthenticator)
// is given only for a remembered token of that grant that the gateway
// vouches for, uncounted or with a unit of budget held, and is then the
// answer Authenticate gives; anything else is left to Authenticate.
func TestAuthenticateLocal(t *testing.T) {
	f, rt := remembering(t, storetest.StartRedis(t))
	unlimited := store.Limit{}
	l := store.Limit{Count: 10_000, Window: time.Minute}
	if _, _, ok := f.s.AuthenticateLocal(f.id, f.access.Digest, unlimited); ok {
		t.Fatal("decided for a token never checked")
	}
	wantAuth(t, f, l, true, 9998) // the script
	subscribed(t, f.s)
	wantAuth(t, f, l, true, 9997) // vouched now; a lease of 1, used
	if _, _, ok := f.s.AuthenticateLocal(f.id, f.access.Digest, l); ok {
		t.Error("decided with no unit of budget held")
	}
	wantAuth(t, f, l, true, 9996) // a lease of 2: one unit left
	rt.take()
	tok, st, ok := f.s.AuthenticateLocal(f.id, f.access.Digest, l)
	if !ok || !st.Allowed || st.Remaining != 9995 || tok.Digest != f.access.Digest {
		t.Errorf("with a unit held: %+v, %+v, %v; want allowed, remaining 9995", tok, st, ok)
	}
	if _, st, ok := f.s.AuthenticateLocal(f.id, f.access.Digest, unlimited); !ok || !st.Allowed {
		t.Errorf("uncounted: %+v, %v; want allowed", st, ok)
	}
	if _, _, ok := f.s.AuthenticateLocal("another", f.access.Digest, unlimited); ok {
		t.Error("decided for the token under another grant id")
	}
	if _, _, ok := f.s.AuthenticateLocal(f.id, "forged", unlimited); ok {
		t.Error("decided for a token never seen")
	}
	if got := rt.take(); got != "" {
		t.Errorf("round trips %q, want none", got)
	}
	if _, err := f.s.RevokeGrant(t.Context(), f.id); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := f.s.AuthenticateLocal(f.id, f.access.Digest, unlimited); ok {
		t.Error("decided for a revoked token")
	}
}
