package storetest

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/caddymodule/store"
)

func rateLimitCases() []testCase {
	return []testCase{
		{"rate limit counts down and then refuses", func(t *testing.T, e *env) {
			e.grant(t, "read")
			p := e.issue(t, false)
			l := store.Limit{Count: 3, Window: time.Minute}
			reset := Epoch().Add(time.Minute)
			for i, want := range []store.RateStatus{
				{Limit: 3, Window: time.Minute, Remaining: 2, Reset: reset, Allowed: true},
				{Limit: 3, Window: time.Minute, Remaining: 1, Reset: reset, Allowed: true},
				{Limit: 3, Window: time.Minute, Remaining: 0, Reset: reset, Allowed: true},
				{Limit: 3, Window: time.Minute, Remaining: 0, Reset: reset, Allowed: false},
				{Limit: 3, Window: time.Minute, Remaining: 0, Reset: reset, Allowed: false},
			} {
				e.clk.Advance(time.Second)
				_, st, err := e.s.Authenticate(e.ctx, e.grantID, p.Access.Digest, l)
				wantErr(t, "Authenticate", err, nil)
				sameStatus(t, i, st, want)
			}
		}},
		{"rate limit resets when the window passes", func(t *testing.T, e *env) {
			e.grant(t, "read")
			p := e.issue(t, false)
			l := store.Limit{Count: 2, Window: time.Minute}
			for range 3 {
				_, _, err := e.s.Authenticate(e.ctx, e.grantID, p.Access.Digest, l)
				wantErr(t, "Authenticate", err, nil)
			}
			e.clk.Advance(time.Minute)
			_, st, err := e.s.Authenticate(e.ctx, e.grantID, p.Access.Digest, l)
			wantErr(t, "Authenticate", err, nil)
			sameStatus(t, 0, st, store.RateStatus{Limit: 2, Window: time.Minute, Remaining: 1, Reset: Epoch().Add(2 * time.Minute), Allowed: true})
		}},
		{"rate limit windows are aligned to the epoch", func(t *testing.T, e *env) {
			e.grant(t, "read")
			p := e.issue(t, false)
			e.clk.Advance(45 * time.Second)
			l := store.Limit{Count: 1, Window: time.Minute}
			_, st, err := e.s.Authenticate(e.ctx, e.grantID, p.Access.Digest, l)
			wantErr(t, "Authenticate", err, nil)
			sameStatus(t, 0, st, store.RateStatus{Limit: 1, Window: time.Minute, Remaining: 0, Reset: Epoch().Add(time.Minute), Allowed: true})
			e.clk.Advance(15 * time.Second)
			_, st, err = e.s.Authenticate(e.ctx, e.grantID, p.Access.Digest, l)
			wantErr(t, "Authenticate", err, nil)
			sameStatus(t, 1, st, store.RateStatus{Limit: 1, Window: time.Minute, Remaining: 0, Reset: Epoch().Add(2 * time.Minute), Allowed: true})
		}},
		{"each grant has its own budget", func(t *testing.T, e *env) {
			e.grant(t, "read")
			p := e.issue(t, false)
			other := &env{s: e.s, clk: e.clk, ctx: e.ctx, grantID: "g" + Random()}
			other.grant(t, "read")
			q := other.issue(t, false)
			l := store.Limit{Count: 1, Window: time.Minute}
			_, st, err := e.s.Authenticate(e.ctx, e.grantID, p.Access.Digest, l)
			wantErr(t, "Authenticate", err, nil)
			_, st2, err := e.s.Authenticate(e.ctx, other.grantID, q.Access.Digest, l)
			wantErr(t, "Authenticate other", err, nil)
			if !st.Allowed || !st2.Allowed {
				t.Errorf("statuses %+v, %+v; want both allowed", st, st2)
			}
		}},
		{"refund gives back one request and never goes below zero", func(t *testing.T, e *env) {
			e.grant(t, "read")
			p := e.issue(t, false)
			l := store.Limit{Count: 2, Window: time.Minute}
			wantErr(t, "Refund before any request", e.s.Refund(e.ctx, e.grantID, l), nil)
			auth := func() store.RateStatus {
				t.Helper()
				_, st, err := e.s.Authenticate(e.ctx, e.grantID, p.Access.Digest, l)
				wantErr(t, "Authenticate", err, nil)
				return st
			}
			if st := auth(); st.Remaining != 1 {
				t.Fatalf("remaining = %d after a refund of nothing, want 1", st.Remaining)
			}
			auth()
			if st := auth(); st.Allowed {
				t.Fatalf("third request allowed with limit 2")
			}
			wantErr(t, "Refund", e.s.Refund(e.ctx, e.grantID, l), nil)
			if st := auth(); !st.Allowed || st.Remaining != 0 {
				t.Fatalf("status after a refund = %+v, want one more allowed", st)
			}
			for range 5 {
				wantErr(t, "Refund", e.s.Refund(e.ctx, e.grantID, l), nil)
			}
			auth()
			auth()
			if st := auth(); st.Allowed {
				t.Fatalf("refunds pushed the count below zero: %+v", st)
			}
			wantErr(t, "Refund without a limit", e.s.Refund(e.ctx, e.grantID, store.Limit{}), nil)
		}},
		{"concurrent requests are counted exactly", func(t *testing.T, e *env) {
			e.grant(t, "read")
			p := e.issue(t, false)
			l := store.Limit{Count: 150, Window: time.Minute}
			var allowed, denied atomic.Int64
			var wg sync.WaitGroup
			start := make(chan struct{})
			for range 200 {
				wg.Go(func() {
					<-start
					_, st, err := e.s.Authenticate(e.ctx, e.grantID, p.Access.Digest, l)
					switch {
					case err != nil:
						t.Errorf("Authenticate: %v", err)
					case st.Allowed:
						allowed.Add(1)
					default:
						denied.Add(1)
					}
				})
			}
			close(start)
			wg.Wait()
			if allowed.Load() != 150 || denied.Load() != 50 {
				t.Errorf("allowed %d, denied %d; want 150, 50", allowed.Load(), denied.Load())
			}
		}},
		{"authenticate counts against the budget recorded in the token", func(t *testing.T, e *env) {
			e.grant(t, "read")
			l := store.Limit{Count: 2, Window: time.Minute}
			p := e.issueWith(t, func(p *store.Pair) { p.Access.Limit = l })
			reset := Epoch().Add(time.Minute)
			for i, want := range []store.RateStatus{
				{Limit: 2, Window: time.Minute, Remaining: 1, Reset: reset, Allowed: true},
				{Limit: 2, Window: time.Minute, Remaining: 0, Reset: reset, Allowed: true},
				{Limit: 2, Window: time.Minute, Remaining: 0, Reset: reset, Allowed: false},
			} {
				tok, st, err := e.s.Authenticate(e.ctx, e.grantID, p.Access.Digest, store.Limit{})
				wantErr(t, "Authenticate", err, nil)
				if tok.Limit != l {
					t.Fatalf("token limit = %+v, want %+v", tok.Limit, l)
				}
				sameStatus(t, i, st, want)
			}
			wantErr(t, "Refund", e.s.Refund(e.ctx, e.grantID, l), nil)
			_, st, err := e.s.Authenticate(e.ctx, e.grantID, p.Access.Digest, store.Limit{})
			wantErr(t, "Authenticate", err, nil)
			sameStatus(t, 3, st, store.RateStatus{Limit: 2, Window: time.Minute, Remaining: 0, Reset: reset, Allowed: true})
		}},
		{"a rotated access token keeps counting against its budget", func(t *testing.T, e *env) {
			e.grant(t, "read")
			l := store.Limit{Count: 1, Window: time.Hour}
			old := e.issueWith(t, func(p *store.Pair) { p.Access.Limit = l })
			_, _, err := e.s.Authenticate(e.ctx, e.grantID, old.Access.Digest, store.Limit{})
			wantErr(t, "Authenticate", err, nil)
			p := e.pair(true)
			p.Access.Limit = l
			wantErr(t, "Rotate", e.s.Rotate(e.ctx, e.grantID, old.Refresh.Digest, p), nil)
			_, st, err := e.s.Authenticate(e.ctx, e.grantID, p.Access.Digest, store.Limit{})
			wantErr(t, "Authenticate", err, nil)
			if st.Allowed || st.Limit != 1 {
				t.Errorf("status = %+v, want the grant's budget already spent", st)
			}
		}},
		{"an explicit limit overrides the token's budget", func(t *testing.T, e *env) {
			e.grant(t, "read")
			p := e.issueWith(t, func(p *store.Pair) { p.Access.Limit = store.Limit{Count: 1, Window: time.Minute} })
			_, st, err := e.s.Authenticate(e.ctx, e.grantID, p.Access.Digest, store.Limit{Count: 5, Window: time.Minute})
			wantErr(t, "Authenticate", err, nil)
			sameStatus(t, 0, st, store.RateStatus{Limit: 5, Window: time.Minute, Remaining: 4, Reset: Epoch().Add(time.Minute), Allowed: true})
		}},
		{"an invalid budget is refused when the token is issued", func(t *testing.T, e *env) {
			e.grant(t, "read")
			d, _ := e.code(t)
			_, err := e.s.ConsumeCode(e.ctx, e.grantID, d)
			wantErr(t, "ConsumeCode", err, nil)
			p := e.pair(true)
			p.Access.Limit = store.Limit{Count: 5}
			wantStoreError(t, "IssueTokens", e.s.IssueTokens(e.ctx, e.grantID, d, p))
			p.Access.Limit.Window = time.Second
			wantErr(t, "IssueTokens after the failed attempt", e.s.IssueTokens(e.ctx, e.grantID, d, p), nil)
		}},
		{"a revoked grant's budget starts afresh", func(t *testing.T, e *env) {
			e.grant(t, "read")
			p := e.issue(t, false)
			l := store.Limit{Count: 1, Window: time.Hour}
			_, _, err := e.s.Authenticate(e.ctx, e.grantID, p.Access.Digest, l)
			wantErr(t, "Authenticate", err, nil)
			_, err = e.s.RevokeGrant(e.ctx, e.grantID)
			wantErr(t, "RevokeGrant", err, nil)
			e.grant(t, "read")
			q := e.issue(t, false)
			_, st, err := e.s.Authenticate(e.ctx, e.grantID, q.Access.Digest, l)
			wantErr(t, "Authenticate", err, nil)
			if !st.Allowed {
				t.Errorf("status = %+v, want the revoked grant's counter gone", st)
			}
		}},
	}
}

func sameStatus(t *testing.T, i int, got, want store.RateStatus) {
	t.Helper()
	if got.Limit != want.Limit || got.Window != want.Window || got.Remaining != want.Remaining ||
		got.Allowed != want.Allowed || !got.Reset.Equal(want.Reset) {
		t.Fatalf("request %d: status = %+v, want %+v", i, got, want)
	}
}
