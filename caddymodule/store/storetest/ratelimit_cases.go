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
			wantRefund(t, e, l, false, "before any request")
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
			wantRefund(t, e, l, true, "after the budget was spent")
			if st := auth(); !st.Allowed || st.Remaining != 0 {
				t.Fatalf("status after a refund = %+v, want one more allowed", st)
			}
			wantRefund(t, e, l, true, "the second of the window")
			wantRefund(t, e, l, false, "past the cap")
			for range 5 {
				_, err := e.s.Refund(e.ctx, e.grantID, l)
				wantErr(t, "Refund", err, nil)
			}
			auth()
			if st := auth(); st.Allowed {
				t.Fatalf("refunds pushed the count below zero or past the cap: %+v", st)
			}
			ok, err := e.s.Refund(e.ctx, e.grantID, store.Limit{})
			wantErr(t, "Refund without a limit", err, nil)
			if ok {
				t.Fatalf("Refund without a limit reported a refund")
			}
		}},
		{"refunds are capped at the budget per window, and the cap resets with it", func(t *testing.T, e *env) {
			e.grant(t, "read")
			p := e.issue(t, false)
			l := store.Limit{Count: 3, Window: time.Minute}
			// Every request is refunded, as a client replaying a valid
			// ETag would be: the upstream serves 2×Count, then 429s.
			served := 0
			for range 20 {
				_, st, err := e.s.Authenticate(e.ctx, e.grantID, p.Access.Digest, l)
				wantErr(t, "Authenticate", err, nil)
				if !st.Allowed {
					break
				}
				served++
				_, err = e.s.Refund(e.ctx, e.grantID, l)
				wantErr(t, "Refund", err, nil)
			}
			if served != 2*int(l.Count) {
				t.Fatalf("%d requests allowed with every one refunded, want 2×%d", served, l.Count)
			}
			e.clk.Advance(time.Minute)
			_, _, err := e.s.Authenticate(e.ctx, e.grantID, p.Access.Digest, l)
			wantErr(t, "Authenticate", err, nil)
			wantRefund(t, e, l, true, "in the next window")
		}},
		{"a refund of a past window gives nothing back and spends no cap", func(t *testing.T, e *env) {
			e.grant(t, "read")
			p := e.issue(t, false)
			l := store.Limit{Count: 1, Window: time.Minute}
			_, _, err := e.s.Authenticate(e.ctx, e.grantID, p.Access.Digest, l)
			wantErr(t, "Authenticate", err, nil)
			e.clk.Advance(time.Minute)
			wantRefund(t, e, l, false, "of the past window")
			_, st, err := e.s.Authenticate(e.ctx, e.grantID, p.Access.Digest, l)
			wantErr(t, "Authenticate", err, nil)
			wantRefund(t, e, l, true, "of the new window")
			if _, st, err = e.s.Authenticate(e.ctx, e.grantID, p.Access.Digest, l); err != nil || !st.Allowed {
				t.Fatalf("after the new window's refund: %+v, %v; want allowed", st, err)
			}
		}},
		{"concurrent refunds stop at the cap", func(t *testing.T, e *env) {
			e.grant(t, "read")
			p := e.issue(t, false)
			l := store.Limit{Count: 40, Window: time.Minute}
			auth := func(n int) {
				t.Helper()
				for range n {
					_, _, err := e.s.Authenticate(e.ctx, e.grantID, p.Access.Digest, l)
					wantErr(t, "Authenticate", err, nil)
				}
			}
			// Half the cap is used first, and the budget spent again, so
			// that the cap, not the count, is what stops the refunds.
			auth(40)
			for range 20 {
				wantRefund(t, e, l, true, "below the cap")
			}
			auth(20)
			var refunded atomic.Int64
			var wg sync.WaitGroup
			start := make(chan struct{})
			for range 120 {
				wg.Go(func() {
					<-start
					ok, err := e.s.Refund(e.ctx, e.grantID, l)
					if err != nil {
						t.Errorf("Refund: %v", err)
					}
					if ok {
						refunded.Add(1)
					}
				})
			}
			close(start)
			wg.Wait()
			if refunded.Load() != 20 {
				t.Fatalf("%d of 120 concurrent refunds succeeded, want what is left of the cap, 20", refunded.Load())
			}
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
			wantRefund(t, e, l, true, "of the token's budget")
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

// wantRefund calls Refund and checks whether it gave a request back.
func wantRefund(t *testing.T, e *env, l store.Limit, want bool, when string) {
	t.Helper()
	ok, err := e.s.Refund(e.ctx, e.grantID, l)
	wantErr(t, "Refund "+when, err, nil)
	if ok != want {
		t.Fatalf("Refund %s = %v, want %v", when, ok, want)
	}
}
