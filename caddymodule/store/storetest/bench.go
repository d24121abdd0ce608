package storetest

import (
	"testing"
	"time"

	"github.com/tollgate/tollgate/caddymodule/store"
)

// BenchAuthenticate measures the API hot path on s as the gateway drives
// it: one live access token carrying a budget that never runs out, and no
// explicit limit. It runs in parallel (as
// the gateway does) when parallel is set.
func BenchAuthenticate(b *testing.B, s store.Store, parallel bool) {
	e := &env{s: s, clk: NewClock(), ctx: b.Context(), grantID: "g" + Random()}
	g := store.Grant{ID: e.grantID, ClientID: "app", Subject: "alice", Scopes: []string{"read"}}
	if err := s.SaveGrant(e.ctx, g, grantTTL); err != nil {
		b.Fatalf("SaveGrant: %v", err)
	}
	d := Random()
	if err := s.SaveCode(e.ctx, e.grantID, d, store.Code{ClientID: "app", ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		b.Fatalf("SaveCode: %v", err)
	}
	if _, err := s.ConsumeCode(e.ctx, e.grantID, d); err != nil {
		b.Fatalf("ConsumeCode: %v", err)
	}
	p := e.pair(true)
	p.Access.Limit = store.Limit{Count: 1 << 62, Window: time.Hour}
	p.Access.ExpiresAt = time.Now().Add(time.Hour)
	p.Refresh.ExpiresAt = time.Now().Add(time.Hour)
	if err := s.IssueTokens(e.ctx, e.grantID, d, p); err != nil {
		b.Fatalf("IssueTokens: %v", err)
	}
	auth := func() {
		if _, st, err := s.Authenticate(e.ctx, e.grantID, p.Access.Digest, store.Limit{}); err != nil || !st.Allowed {
			b.Fatalf("Authenticate: %+v, %v", st, err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	if !parallel {
		for b.Loop() {
			auth()
		}
		return
	}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			auth()
		}
	})
}
