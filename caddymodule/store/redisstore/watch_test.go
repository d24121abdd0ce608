package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/caddymodule/store"
	"github.com/tollgate/tollgate/caddymodule/store/storetest"
)

// instance is one gateway's Store over its own client, as each gateway
// process has.
func instance(t *testing.T, newClient func() redis.UniversalClient, clk *storetest.Clock) (*Store, *roundTrips) {
	t.Helper()
	c := newClient()
	rt := &roundTrips{}
	c.AddHook(rt)
	s := NewFromClient(c, clk.Now)
	t.Cleanup(func() {
		_ = s.Close()
		_ = c.Close()
	})
	return s, rt
}

// singleClient makes clients of the Redis at url, bounded by their
// callers' deadlines as the gateway's are.
func singleClient(t *testing.T, url string) func() redis.UniversalClient {
	return func() redis.UniversalClient {
		o, err := redis.ParseURL(url)
		if err != nil {
			t.Fatal(err)
		}
		o.ContextTimeoutEnabled = true
		return redis.NewClient(o)
	}
}

// aclClient makes clients of the Redis at url that sign in as user.
func aclClient(t *testing.T, url, user, password string) func() redis.UniversalClient {
	return func() redis.UniversalClient {
		o, err := redis.ParseURL(url)
		if err != nil {
			t.Fatal(err)
		}
		o.Username, o.Password = user, password
		return redis.NewClient(o)
	}
}

// twoGateways is two Stores on a Redis of their own, as two gateway
// processes are: a to change grants, b (with its round trips recorded) to
// check tokens.
func twoGateways(t *testing.T) (clk *storetest.Clock, a, b *Store, rt *roundTrips) {
	t.Helper()
	newClient := singleClient(t, storetest.StartRedis(t))
	clk = storetest.NewClock()
	a, _ = instance(t, newClient, clk)
	b, rt = instance(t, newClient, clk)
	return clk, a, b, rt
}

// eventually polls cond until it returns nil, and fails the test with its
// last answer if that takes over 10 s.
func eventually(t *testing.T, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still after 10 s: %v", err)
		}
		time.Sleep(time.Millisecond)
	}
}

var signedInCount atomic.Int64

// signedIn makes a grant with one pair through s and returns its id, the
// code and the pair's tokens.
func signedIn(t *testing.T, s *Store, clk *storetest.Clock) (id, code string, p store.Pair) {
	t.Helper()
	ctx := t.Context()
	// Grant ids are base64url, so they may start with any character a
	// message's kind could be.
	id = string("hrca-_!g"[signedInCount.Add(1)%8]) + storetest.Random()
	if err := s.SaveGrant(ctx, store.Grant{ID: id, ClientID: "app", Subject: "alice", Scopes: []string{"read"}}, time.Hour); err != nil {
		t.Fatal(err)
	}
	now := clk.Now()
	p = store.Pair{
		Access:  store.Token{Digest: "at" + storetest.Random(), ClientID: "app", Subject: "alice", Scopes: []string{"read"}, ExpiresAt: now.Add(time.Hour)},
		Refresh: store.Token{Digest: "rt" + storetest.Random(), ClientID: "app", Subject: "alice", Scopes: []string{"read"}, ExpiresAt: now.Add(24 * time.Hour)},
	}
	return id, install(t, s, clk, id, p), p
}

// install issues p in the grant through s, as a code exchange does, and
// returns the code.
func install(t *testing.T, s *Store, clk *storetest.Clock, id string, p store.Pair) string {
	t.Helper()
	ctx := t.Context()
	code := "code" + storetest.Random()
	if err := s.SaveCode(ctx, id, code, store.Code{ClientID: "app", ExpiresAt: clk.Now().Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ConsumeCode(ctx, id, code); err != nil {
		t.Fatal(err)
	}
	if err := s.IssueTokens(ctx, id, code, p); err != nil {
		t.Fatal(err)
	}
	return code
}

// vouched uses the token on s until s lets it through with no round trip,
// as a gateway does for a token in use.
func vouched(t *testing.T, s *Store, rt *roundTrips, id, digest string) {
	t.Helper()
	subscribed(t, s)
	eventually(t, func() error {
		rt.take()
		if _, _, err := s.Authenticate(t.Context(), id, digest, store.Limit{}); err != nil {
			t.Fatal(err)
		}
		if got := rt.take(); got != "" {
			return fmt.Errorf("a token in use costs round trips %q", got)
		}
		return nil
	})
}

// TestRevocationIsRefusedEverywhereAtOnce: a grant revoked on one gateway
// (a user disconnecting the app, a replayed code, a refresh token reused)
// is refused on the very next call to any other gateway, even one that
// was letting the token through without asking Redis. The revocation only
// returns once every subscribed gateway has applied it, so this holds
// every time, on a single Redis and on a Cluster. A rotation, which is not
// a revocation, reaches the other gateways as soon as its message does.
func TestRevocationIsRefusedEverywhereAtOnce(t *testing.T) {
	single := storetest.StartRedis(t)
	cluster := storetest.StartRedisCluster(t)
	topologies := map[string]func() redis.UniversalClient{
		"single": singleClient(t, single),
		"cluster": func() redis.UniversalClient {
			return redis.NewClusterClient(&redis.ClusterOptions{Addrs: cluster, ContextTimeoutEnabled: true})
		},
	}
	// Each revocation gets the grant with its code and pair, does what
	// comes before it, and returns the access token that is live until it
	// revokes.
	type revocation struct {
		before func(t *testing.T, s *Store, clk *storetest.Clock, id string, p store.Pair) string
		revoke func(t *testing.T, s *Store, id, code string, p store.Pair)
	}
	current := func(_ *testing.T, _ *Store, _ *storetest.Clock, _ string, p store.Pair) string {
		return p.Access.Digest
	}
	revocations := map[string]revocation{
		"disconnect": {current, func(t *testing.T, s *Store, id, _ string, _ store.Pair) {
			if _, err := s.RevokeGrant(t.Context(), id); err != nil {
				t.Fatal(err)
			}
		}},
		"code replayed": {current, func(t *testing.T, s *Store, id, code string, _ store.Pair) {
			if _, err := s.ConsumeCode(t.Context(), id, code); !errors.Is(err, store.ErrCodeReplayed) {
				t.Fatalf("replay: %v", err)
			}
		}},
		"refresh token reused": {func(t *testing.T, s *Store, clk *storetest.Clock, id string, p store.Pair) string {
			next := p
			next.Access.Digest, next.Refresh.Digest = "at"+storetest.Random(), "rt"+storetest.Random()
			if err := s.Rotate(t.Context(), id, p.Refresh.Digest, next); err != nil {
				t.Fatal(err)
			}
			clk.Advance(time.Minute) // past the race grace
			return next.Access.Digest
		}, func(t *testing.T, s *Store, id, _ string, p store.Pair) {
			if _, err := s.CheckReuse(t.Context(), id, p.Refresh.Digest, 10*time.Second); !errors.Is(err, store.ErrRefreshReused) {
				t.Fatalf("reuse: %v", err)
			}
		}},
	}
	for topo, newClient := range topologies {
		t.Run(topo, func(t *testing.T) {
			clk := storetest.NewClock()
			a, _ := instance(t, newClient, clk)
			b, rtb := instance(t, newClient, clk)
			c, rtc := instance(t, newClient, clk)
			for name, r := range revocations {
				t.Run(name, func(t *testing.T) {
					for i := range 10 {
						id, code, p := signedIn(t, a, clk)
						live := r.before(t, a, clk, id, p)
						vouched(t, b, rtb, id, live)
						vouched(t, c, rtc, id, live)
						r.revoke(t, a, id, code, p)
						for _, s := range []*Store{b, c} {
							if _, _, err := s.Authenticate(t.Context(), id, live, store.Limit{}); !errors.Is(err, store.ErrNotFound) {
								t.Fatalf("round %d: the next call after the revocation: %v, want ErrNotFound", i, err)
							}
						}
					}
				})
			}
			t.Run("rotated", func(t *testing.T) {
				id, _, p := signedIn(t, a, clk)
				vouched(t, b, rtb, id, p.Access.Digest)
				next := p
				next.Access.Digest, next.Refresh.Digest = "at"+storetest.Random(), "rt"+storetest.Random()
				if err := a.Rotate(t.Context(), id, p.Refresh.Digest, next); err != nil {
					t.Fatal(err)
				}
				eventually(t, refused(t, b, id, p.Access.Digest))
			})
		})
	}
}

// refused is a condition for eventually: the token is refused on s.
func refused(t *testing.T, s *Store, id, digest string) func() error {
	return func() error {
		_, _, err := s.Authenticate(t.Context(), id, digest, store.Limit{})
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		return fmt.Errorf("the token is not refused: %v", err)
	}
}

// TestLostSubscriptionVouchesForNothing: when the subscription breaks,
// every grant vouched for under it needs Redis again, even after the
// gateway has subscribed anew (messages sent meanwhile are lost).
func TestLostSubscriptionVouchesForNothing(t *testing.T) {
	clk, a, b, rt := twoGateways(t)
	id, _, p := signedIn(t, a, clk)
	vouched(t, b, rt, id, p.Access.Digest)
	gen := b.watch.gen.Load()
	if err := a.client.Do(t.Context(), "client", "kill", "type", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() error {
		if g := b.watch.gen.Load(); g == 0 || g == gen {
			return errors.New("the subscription did not come back")
		}
		return nil
	})
	rt.take()
	if _, _, err := b.Authenticate(t.Context(), id, p.Access.Digest, store.Limit{}); err != nil {
		t.Fatal(err)
	}
	if got := rt.take(); got != "hmget" {
		t.Errorf("first call after the subscription came back: round trips %q, want the HMGET that vouches again", got)
	}
}

// TestSilentSubscriptionStopsVouching: a subscription that stops
// answering (here: Redis paused, as a partition would look) vouches for
// nothing once watchFresh has passed since it last heard its own
// heartbeat, so the gateway asks Redis, and a call fails rather than pass
// unchecked.
func TestSilentSubscriptionStopsVouching(t *testing.T) {
	url := storetest.StartRedis(t)
	clk := storetest.NewClock()
	newClient := singleClient(t, url)
	b, rt := instance(t, newClient, clk)
	id, _, p := signedIn(t, b, clk)
	vouched(t, b, rt, id, p.Access.Digest)
	admin := newClient()
	defer admin.Close()
	pause := 3 * watchFresh // well past the call below, however slow the machine
	if err := admin.Do(t.Context(), "client", "pause", pause.Milliseconds(), "all").Err(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(watchFresh + watchPing)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	rt.take()
	_, _, err := b.Authenticate(ctx, id, p.Access.Digest, store.Limit{})
	if got := rt.take(); got != "hmget" {
		t.Errorf("round trips %q, want the HMGET that asks Redis", got)
	}
	if err == nil {
		t.Fatalf("a call %v into a silent subscription was let through without Redis", watchFresh+watchPing)
	}
	time.Sleep(pause)
	if _, _, err := b.Authenticate(t.Context(), id, p.Access.Digest, store.Limit{}); err != nil {
		t.Fatalf("after Redis answers again: %v", err)
	}
}

// TestLeasesNeverOverspend: several gateways, each with concurrent
// callers, hammering one grant's budget let through no more than the
// budget between them, however the leases fall; what Redis counts is
// exactly what was let through once the idle units are back; and little
// of the budget is left unused.
func TestLeasesNeverOverspend(t *testing.T) {
	url := storetest.StartRedis(t)
	clk := storetest.NewClock()
	newClient := singleClient(t, url)
	var gws []*Store
	for range 3 {
		s, _ := instance(t, newClient, clk)
		gws = append(gws, s)
	}
	id, _, p := signedIn(t, gws[0], clk)
	const budget = 2000
	l := store.Limit{Count: budget, Window: time.Hour}
	const perGateway = 4 // concurrent callers on each gateway
	allowed := make(chan int, len(gws)*perGateway)
	for i, s := range gws {
		for range perGateway {
			go func() {
				n := 0
				for j := 0; j < budget/perGateway; j++ {
					_, st, err := s.Authenticate(t.Context(), id, p.Access.Digest, l)
					if err != nil {
						t.Errorf("gateway %d: %v", i, err)
						break
					}
					if st.Allowed {
						n++
					}
				}
				allowed <- n
			}()
		}
	}
	total := 0
	for range len(gws) * perGateway {
		total += <-allowed
	}
	// Units still held by one gateway when the others ran dry go back
	// when idle; until then they are the budget the others missed.
	clk.Advance(leaseIdle * time.Millisecond)
	for _, s := range gws {
		s.watch.sweep(t.Context(), leaseIdle) // waits for a sweep of the ticker's, if one runs
	}
	var n int64
	ms := counterMember("c", l.Window.Milliseconds(), store.WindowIndex(clk.Now().UnixMilli(), l.Window.Milliseconds()))
	score, err := gws[0].client.ZScore(t.Context(), defaultKeys.counter(id), ms).Result()
	if err != nil {
		t.Fatal(err)
	}
	n = int64(score)
	if total > budget || n != int64(total) {
		t.Errorf("%d calls let through and %d counted, want the same and at most %d", total, n, budget)
	}
	if total < budget-3*leaseMax/leaseShare {
		t.Errorf("%d calls let through of a budget of %d", total, budget)
	}
}

// TestUserWithoutTheChannel: a Redis ACL user not allowed the
// invalidation channel still issues, checks and revokes tokens (the
// scripts' PUBLISH may fail, the write may not), and its gateways never
// vouch for a grant: every call asks Redis, and a revocation does not
// wait for acknowledgements that cannot come.
func TestUserWithoutTheChannel(t *testing.T) {
	url := storetest.StartRedis(t)
	admin := singleClient(t, url)()
	defer admin.Close()
	if err := admin.Do(t.Context(), "acl", "setuser", "nochan", "on", ">pw", "~*", "+@all", "resetchannels").Err(); err != nil {
		t.Fatal(err)
	}
	clk := storetest.NewClock()
	s, rt := instance(t, aclClient(t, url, "nochan", "pw"), clk)
	id, _, p := signedIn(t, s, clk)
	s.watch.start(s.channel())
	eventually(t, func() error {
		if !s.watch.denied.Load() {
			return errors.New("the subscription was not refused")
		}
		return nil
	})
	rt.take()
	for range 3 {
		if _, _, err := s.Authenticate(t.Context(), id, p.Access.Digest, store.Limit{}); err != nil {
			t.Fatal(err)
		}
	}
	// (EVALSHA then EVAL when this Redis has not cached the script yet.)
	if got := strings.ReplaceAll(rt.take(), "evalsha eval", "evalsha"); got != "evalsha hmget hmget" {
		t.Errorf("round trips %q, want every call to ask Redis", got)
	}
	began := time.Now()
	if _, err := s.RevokeGrant(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(began); d >= watchFresh {
		t.Errorf("the revocation took %v, waiting for acknowledgements that cannot come", d)
	}
	if _, _, err := s.Authenticate(t.Context(), id, p.Access.Digest, store.Limit{}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("after the revocation: %v, want ErrNotFound", err)
	}
}

// TestRotatedTokenIsNotVouchedForByItsSuccessor: vouching is per token. A
// gateway that has heard of a rotation and then let the new access token
// through refuses the rotated-out one: checking one token of a grant
// never vouches for another.
func TestRotatedTokenIsNotVouchedForByItsSuccessor(t *testing.T) {
	clk, a, b, rt := twoGateways(t)
	id, _, p := signedIn(t, a, clk)
	vouched(t, b, rt, id, p.Access.Digest)
	epoch := b.watch.state(id).epoch.Load()
	next := p
	next.Access.Digest, next.Refresh.Digest = "at"+storetest.Random(), "rt"+storetest.Random()
	if err := a.Rotate(t.Context(), id, p.Refresh.Digest, next); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() error {
		if b.watch.state(id).epoch.Load() == epoch {
			return errors.New("the rotation's message did not arrive")
		}
		return nil
	})
	vouched(t, b, rt, id, next.Access.Digest)
	for _, l := range []store.Limit{{}, {Count: 1000, Window: time.Hour}} {
		if _, _, err := b.Authenticate(t.Context(), id, p.Access.Digest, l); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("the rotated-out token with budget %+v: %v, want ErrNotFound", l, err)
		}
	}
}

// TestRevokedGrantsUnitsAreNotReused: budget units a gateway holds of a
// grant die with it. A grant revoked and consented to again (same id, a
// new incarnation) gets its whole budget, counted from zero, and none of
// the old units.
func TestRevokedGrantsUnitsAreNotReused(t *testing.T) {
	clk, a, b, rt := twoGateways(t)
	id, _, p := signedIn(t, a, clk)
	vouched(t, b, rt, id, p.Access.Digest)
	const budget = 1000
	l := store.Limit{Count: budget, Window: time.Hour}
	for range 40 {
		if _, st, err := b.Authenticate(t.Context(), id, p.Access.Digest, l); err != nil || !st.Allowed {
			t.Fatalf("first incarnation: %+v, %v", st, err)
		}
	}
	if ls := b.watch.state(id).lease.Load(); ls == nil || ls.left.Load() <= 0 {
		t.Fatal("the gateway holds no units: the test would prove nothing")
	}
	if _, err := a.RevokeGrant(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	// Consent again: same client and subject, so the same grant id.
	if err := a.SaveGrant(t.Context(), store.Grant{ID: id, ClientID: "app", Subject: "alice", Scopes: []string{"read"}}, time.Hour); err != nil {
		t.Fatal(err)
	}
	p2 := p
	p2.Access.Digest, p2.Refresh.Digest = "at"+storetest.Random(), "rt"+storetest.Random()
	install(t, a, clk, id, p2)
	allowed := 0
	for range budget + 10 {
		_, st, err := b.Authenticate(t.Context(), id, p2.Access.Digest, l)
		if err != nil {
			t.Fatal(err)
		}
		if st.Allowed {
			allowed++
		}
	}
	if allowed != budget {
		t.Errorf("the grant consented to again let %d calls through, want its budget, %d", allowed, budget)
	}
}

// TestRevocationWaitsForEverySubscriber: a revocation answers only once
// every subscriber PUBLISH reached has acknowledged it, or after
// watchFresh, by when a subscriber that did not can no longer be
// vouching. A subscriber that never acknowledges (here a bare
// subscription) makes it wait that long; without one it is quick.
func TestRevocationWaitsForEverySubscriber(t *testing.T) {
	clk, a, b, rt := twoGateways(t)
	subscribed(t, a)
	// A revoker whose subscription is younger than the peers' memory
	// waits the full second (watch.go, announce).
	time.Sleep(2*watchFresh + watchPing)
	revoke := func() time.Duration {
		id, _, p := signedIn(t, a, clk)
		vouched(t, b, rt, id, p.Access.Digest)
		subscribed(t, a)
		began := time.Now()
		if _, err := a.RevokeGrant(t.Context(), id); err != nil {
			t.Fatal(err)
		}
		return time.Since(began)
	}
	if d := revoke(); d >= watchFresh/2 {
		t.Errorf("with every subscriber acknowledging, the revocation took %v", d)
	}
	silent := a.client // its own connections: a bare subscription, a ghost's heartbeats
	ps := silent.Subscribe(t.Context(), defaultKeys.channel())
	defer ps.Close()
	if _, err := ps.Receive(t.Context()); err != nil { // the subscription's confirmation
		t.Fatal(err)
	}
	if d := revoke(); d < watchFresh-50*time.Millisecond {
		t.Errorf("with a subscriber that never acknowledges, the revocation took only %v, want about %v", d, watchFresh)
	}
	_ = ps.Close()
	if d := revoke(); d >= watchFresh/2 {
		t.Errorf("once the silent subscriber left, the revocation took %v", d)
	}
	// A gateway heard lately but not counted by PUBLISH (subscribed on
	// another node, or dropped by Redis without knowing it yet) is waited
	// for too: here one whose heartbeat is heard and that never answers.
	ghost, stop := context.WithCancel(t.Context())
	defer stop()
	go func() { // beats as a gateway does, until the test ends
		for ghost.Err() == nil {
			_ = silent.Publish(ghost, defaultKeys.channel(), "hghost 0").Err()
			time.Sleep(watchPing)
		}
	}()
	eventually(t, func() error {
		a.watch.mu.Lock()
		defer a.watch.mu.Unlock()
		if _, heard := a.watch.peers["ghost"]; !heard {
			return errors.New("the ghost's heartbeat was not heard")
		}
		return nil
	})
	if d := revoke(); d < watchFresh-50*time.Millisecond {
		t.Errorf("with a gateway heard that never acknowledges, the revocation took only %v, want about %v", d, watchFresh)
	}
}

// TestUserThatMayNotPublish: a Redis user allowed the channel but not
// PUBLISH hears nothing of other gateways' changes, and cannot hear its
// own heartbeats either, so it never vouches: every call asks Redis, and
// a revocation elsewhere is refused at once.
func TestUserThatMayNotPublish(t *testing.T) {
	url := storetest.StartRedis(t)
	admin := singleClient(t, url)()
	defer admin.Close()
	if err := admin.Do(t.Context(), "acl", "setuser", "nopub", "on", ">pw", "~*", "&*", "+@all", "-publish").Err(); err != nil {
		t.Fatal(err)
	}
	clk := storetest.NewClock()
	newClient := aclClient(t, url, "nopub", "pw")
	a, _ := instance(t, newClient, clk)
	b, rt := instance(t, newClient, clk)
	id, _, p := signedIn(t, a, clk)
	b.watch.start(b.channel())
	eventually(t, func() error {
		if b.watch.gen.Load() == 0 {
			return errors.New("the subscription did not come up")
		}
		return nil
	})
	time.Sleep(2 * watchPing) // time enough to hear a heartbeat, were it sent
	rt.take()
	for range 3 {
		if _, _, err := b.Authenticate(t.Context(), id, p.Access.Digest, store.Limit{}); err != nil {
			t.Fatal(err)
		}
	}
	if got := strings.ReplaceAll(rt.take(), "evalsha eval", "evalsha"); got != "evalsha hmget hmget" {
		t.Errorf("round trips %q, want every call to ask Redis", got)
	}
	if _, err := a.RevokeGrant(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.Authenticate(t.Context(), id, p.Access.Digest, store.Limit{}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("after the revocation elsewhere: %v, want ErrNotFound", err)
	}
}

// TestReplacedPairReachesOtherGateways: a fifth install of one app by one
// user replaces the pair that expires first (store.PairsPerGrant); a
// gateway vouching for that pair's access token hears of it and refuses
// the token, as for a rotation.
func TestReplacedPairReachesOtherGateways(t *testing.T) {
	clk, a, b, rt := twoGateways(t)
	id, _, first := signedIn(t, a, clk)
	vouched(t, b, rt, id, first.Access.Digest)
	for i := range store.PairsPerGrant {
		p := first
		p.Access.Digest, p.Refresh.Digest = "at"+storetest.Random(), "rt"+storetest.Random()
		p.Refresh.ExpiresAt = p.Refresh.ExpiresAt.Add(time.Duration(i+1) * time.Hour) // the first pair expires first
		p.Access.ExpiresAt = p.Access.ExpiresAt.Add(time.Duration(i+1) * time.Hour)
		install(t, a, clk, id, p)
	}
	eventually(t, refused(t, b, id, first.Access.Digest))
}
