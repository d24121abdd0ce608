package memory

import (
	"testing"
	"time"

	"github.com/tollgate/tollgate/caddymodule/store"
	"github.com/tollgate/tollgate/caddymodule/store/storetest"
)

// TestSweepMarksAndIndex: the janitor drops rotated marks once the old
// token would have expired, and index entries once their grant has.
func TestSweepMarksAndIndex(t *testing.T) {
	clk := storetest.NewClock()
	s := New(clk.Now)
	defer s.Close()
	ctx := t.Context()
	for id, ttl := range map[string]time.Duration{"g1": 48 * time.Hour, "g2": time.Hour} {
		if err := s.SaveGrant(ctx, store.Grant{ID: id, ClientID: id, Subject: "alice"}, ttl); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SaveCode(ctx, "g1", "c1", store.Code{ExpiresAt: clk.Now().Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ConsumeCode(ctx, "g1", "c1"); err != nil {
		t.Fatal(err)
	}
	p := store.Pair{
		Access:  store.Token{Digest: "a1", ExpiresAt: clk.Now().Add(time.Hour)},
		Refresh: store.Token{Digest: "r1", ExpiresAt: clk.Now().Add(2 * time.Hour)},
	}
	if err := s.IssueTokens(ctx, "g1", "c1", p); err != nil {
		t.Fatal(err)
	}
	p.Access.Digest, p.Refresh.Digest = "a2", "r2"
	p.Refresh.ExpiresAt = clk.Now().Add(24 * time.Hour)
	if err := s.Rotate(ctx, "g1", "r1", p); err != nil {
		t.Fatal(err)
	}

	clk.Advance(time.Hour + time.Minute)
	s.sweep()
	if len(s.grants["g1"].rotated) != 1 || len(s.subjects["alice"]) != 1 {
		t.Errorf("after 1h: %d marks, %d index entries; want 1, 1 (g2 expired)",
			len(s.grants["g1"].rotated), len(s.subjects["alice"]))
	}
	clk.Advance(time.Hour)
	s.sweep()
	if n := len(s.grants["g1"].rotated); n != 0 {
		t.Errorf("after the old refresh token's expiry: %d marks, want 0", n)
	}
	clk.Advance(48 * time.Hour)
	s.sweep()
	if len(s.subjects) != 0 {
		t.Errorf("index entries of expired grants not swept: %v", s.subjects)
	}
}
