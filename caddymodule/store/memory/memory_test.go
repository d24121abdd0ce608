package memory

import (
	"testing"
	"time"

	"github.com/tollgate/tollgate/caddymodule/store"
	"github.com/tollgate/tollgate/caddymodule/store/storetest"
)

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T, now func() time.Time) store.Store {
		return New(now)
	})
}

// TestSweep checks the janitor's work: what the clock says is over is
// dropped from memory, what is live stays.
func TestSweep(t *testing.T) {
	clk := storetest.NewClock()
	s := New(clk.Now)
	defer s.Close()
	ctx := t.Context()
	const id = "g1"
	if err := s.SaveGrant(ctx, store.Grant{ID: id, ClientID: "app", Subject: "alice"}, 48*time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveCode(ctx, id, "c1", store.Code{ExpiresAt: clk.Now().Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ConsumeCode(ctx, id, "c1"); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveCode(ctx, id, "c2", store.Code{ExpiresAt: clk.Now().Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	p := store.Pair{
		Access:  store.Token{Digest: "a1", ExpiresAt: clk.Now().Add(time.Hour)},
		Refresh: store.Token{Digest: "r1", ExpiresAt: clk.Now().Add(30 * time.Hour)},
	}
	if err := s.IssueTokens(ctx, id, "c1", p); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Authenticate(ctx, id, "a1", store.Limit{Count: 5, Window: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetBlob(ctx, "b", []byte("x"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.CountFailure(ctx, "login:x", time.Hour); err != nil {
		t.Fatal(err)
	}
	// Windows are aligned to the Unix epoch: this 100h one ends 40h after
	// Epoch, between the two sweeps below.
	if _, _, err := s.CountFailure(ctx, "login:y", 100*time.Hour); err != nil {
		t.Fatal(err)
	}

	clk.Advance(25 * time.Hour)
	s.sweep()
	g := s.grants[id]
	if g == nil {
		t.Fatal("live grant swept")
	}
	if g.codes != nil || len(g.pairs) != 1 || len(s.markers) != 0 || len(s.counters) != 0 || len(s.blobs) != 0 {
		t.Errorf("after sweep: codes %v, %d pairs, %d markers, %d counters, %d blobs; want none, 1 (its refresh token lives), 0, 0, 0",
			g.codes, len(g.pairs), len(s.markers), len(s.counters), len(s.blobs))
	}
	if _, ok := s.failures[failureRef{"login:y", (100 * time.Hour).Milliseconds()}]; len(s.failures) != 1 || !ok {
		t.Errorf("after sweep: failure counters %v, want only login:y's 100h window", s.failures)
	}
	clk.Advance(5 * time.Hour)
	s.sweep()
	if g.pairs != nil {
		t.Errorf("after the refresh token's expiry: %d pairs, want none", len(g.pairs))
	}
	clk.Advance(43 * time.Hour)
	s.sweep()
	if len(s.grants) != 0 {
		t.Errorf("expired grant not swept")
	}
	if len(s.failures) != 0 {
		t.Errorf("failure counter of an ended window not swept")
	}
}

func TestClosed(t *testing.T) {
	s := New(nil)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := s.Ping(t.Context()); err == nil {
		t.Fatal("Ping after Close succeeded")
	}
	if _, _, err := s.Authenticate(t.Context(), "g", "a", store.Limit{}); err == nil || err == store.ErrNotFound {
		t.Fatalf("Authenticate after Close = %v, want a store error", err)
	}
	if _, _, err := s.CountFailure(t.Context(), "k", time.Minute); err == nil {
		t.Fatal("CountFailure after Close succeeded")
	}
}

func BenchmarkAuthenticate(b *testing.B) {
	for _, parallel := range []bool{false, true} {
		name := map[bool]string{false: "serial", true: "parallel"}[parallel]
		b.Run(name, func(b *testing.B) {
			s := New(nil)
			defer s.Close()
			storetest.BenchAuthenticate(b, s, parallel)
		})
	}
}
