package memory

import (
	"encoding/hex"
	"testing"
	"time"

	"github.com/tollgate/tollgate/caddymodule/store"
	"github.com/tollgate/tollgate/caddymodule/store/storetest"
)

// TestSweepIndex: the janitor drops index entries once their grant has
// expired.
func TestSweepIndex(t *testing.T) {
	clk := storetest.NewClock()
	s := New(clk.Now)
	defer s.Close()
	ctx := t.Context()
	for id, ttl := range map[string]time.Duration{"g1": 48 * time.Hour, "g2": time.Hour} {
		if err := s.SaveGrant(ctx, store.Grant{ID: id, ClientID: id, Subject: "alice"}, ttl); err != nil {
			t.Fatal(err)
		}
	}
	clk.Advance(time.Hour + time.Minute)
	s.sweep()
	if len(s.subjects["alice"]) != 1 {
		t.Errorf("after 1h: %d index entries; want 1 (g2 expired)", len(s.subjects["alice"]))
	}
	clk.Advance(48 * time.Hour)
	s.sweep()
	if len(s.subjects) != 0 {
		t.Errorf("index entries of expired grants not swept: %v", s.subjects)
	}
}

// TestRing: the ring keeps the last ringSize rotated-out refresh tokens,
// 128 bits of each, and nothing more.
func TestRing(t *testing.T) {
	var r ring
	long := storetest.Random() + storetest.Random()
	r.add(long, 1, 2)
	if e, ok := r.find(long); !ok || hex.EncodeToString(e.digest[:]) != long[:32] || e.at != 1 || e.exp != 2 {
		t.Errorf("find(%q) = %+v, %v; want 128 bits of digest, at 1, exp 2", long, e, ok)
	}
	for i := range ringSize - 1 {
		r.add(storetest.Random(), int64(i), 1)
	}
	if _, ok := r.find(long); !ok {
		t.Errorf("the oldest of %d entries is gone", ringSize)
	}
	r.add(storetest.Random(), 0, 1)
	if _, ok := r.find(long); ok {
		t.Errorf("the ring holds more than %d entries", ringSize)
	}
	if _, ok := r.find(""); ok {
		t.Errorf("the empty digest is found")
	}
}
