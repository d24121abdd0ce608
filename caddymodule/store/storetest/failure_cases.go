package storetest

import (
	"sync"
	"testing"
	"time"
)

func failureCases() []testCase {
	return []testCase{
		{"failures are counted 1, 2, 3 until the window ends", func(t *testing.T, e *env) {
			k := "login:" + Random()
			reset := Epoch().Add(time.Minute)
			for want := int64(1); want <= 3; want++ {
				e.clk.Advance(time.Second)
				e.countFailure(t, k, time.Minute, want, reset)
			}
		}},
		{"failures are read without being counted", func(t *testing.T, e *env) {
			k := "login:" + Random()
			reset := Epoch().Add(time.Minute)
			e.failures(t, k, time.Minute, 0, reset)
			e.countFailure(t, k, time.Minute, 1, reset)
			e.countFailure(t, k, time.Minute, 2, reset)
			for range 3 {
				e.failures(t, k, time.Minute, 2, reset)
			}
			e.countFailure(t, k, time.Minute, 3, reset)
			e.failures(t, k, time.Minute, 3, reset)
		}},
		{"each key has its own failure count", func(t *testing.T, e *env) {
			a, b := "login:"+Random(), "login:"+Random()
			reset := Epoch().Add(time.Minute)
			e.countFailure(t, a, time.Minute, 1, reset)
			e.countFailure(t, a, time.Minute, 2, reset)
			e.failures(t, b, time.Minute, 0, reset)
			e.countFailure(t, b, time.Minute, 1, reset)
			e.failures(t, a, time.Minute, 2, reset)
		}},
		{"failure keys are taken literally, braces and all", func(t *testing.T, e *env) {
			r := Random()
			keys := []string{r, "{" + r + "}", "}" + r, r + "}", r + "}:60000:0", "{}" + r, r + ":x"}
			reset := Epoch().Add(time.Minute)
			for i, k := range keys {
				for range i + 1 {
					_, _, err := e.s.CountFailure(e.ctx, k, time.Minute)
					wantErr(t, "CountFailure", err, nil)
				}
			}
			for i, k := range keys {
				e.failures(t, k, time.Minute, int64(i+1), reset)
			}
		}},
		{"each window length has its own failure count", func(t *testing.T, e *env) {
			k := "login:" + Random()
			e.countFailure(t, k, time.Minute, 1, Epoch().Add(time.Minute))
			e.countFailure(t, k, time.Minute, 2, Epoch().Add(time.Minute))
			e.countFailure(t, k, time.Hour, 1, Epoch().Add(time.Hour))
			e.failures(t, k, time.Minute, 2, Epoch().Add(time.Minute))
		}},
		{"failures reset when the window passes", func(t *testing.T, e *env) {
			k := "login:" + Random()
			reset := Epoch().Add(time.Minute)
			for want := int64(1); want <= 3; want++ {
				e.countFailure(t, k, time.Minute, want, reset)
			}
			e.clk.Advance(time.Minute - time.Millisecond)
			e.failures(t, k, time.Minute, 3, reset)
			e.clk.Advance(time.Millisecond)
			next := Epoch().Add(2 * time.Minute)
			e.failures(t, k, time.Minute, 0, next)
			e.countFailure(t, k, time.Minute, 1, next)
			e.clk.Advance(10 * time.Minute)
			e.failures(t, k, time.Minute, 0, Epoch().Add(12*time.Minute))
		}},
		{"failure windows are aligned to the epoch", func(t *testing.T, e *env) {
			k := "login:" + Random()
			e.clk.Advance(45 * time.Second)
			e.countFailure(t, k, time.Minute, 1, Epoch().Add(time.Minute))
			e.clk.Advance(15 * time.Second)
			e.countFailure(t, k, time.Minute, 1, Epoch().Add(2*time.Minute))
			e.clk.Advance(59*time.Second + 999*time.Millisecond)
			e.countFailure(t, k, time.Minute, 2, Epoch().Add(2*time.Minute))
			// A window that does not divide the hour: its index counts from
			// the epoch, not from the clock's start.
			w := 7 * time.Second
			end := time.UnixMilli((e.clk.Now().UnixMilli()/w.Milliseconds() + 1) * w.Milliseconds())
			e.countFailure(t, k, w, 1, end)
			e.failures(t, k, w, 1, end)
		}},
		{"concurrent failures are counted 1..n exactly once each", func(t *testing.T, e *env) {
			const n = 100
			k := "login:" + Random()
			reset := Epoch().Add(time.Hour)
			var mu sync.Mutex
			seen := make(map[int64]int)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for range n {
				wg.Go(func() {
					<-start
					c, r, err := e.s.CountFailure(e.ctx, k, time.Hour)
					if err != nil {
						t.Errorf("CountFailure: %v", err)
						return
					}
					if !r.Equal(reset) {
						t.Errorf("reset = %v, want %v", r, reset)
					}
					mu.Lock()
					seen[c]++
					mu.Unlock()
				})
			}
			close(start)
			wg.Wait()
			for c := int64(1); c <= n; c++ {
				if seen[c] != 1 {
					t.Errorf("count %d returned %d times, want once", c, seen[c])
				}
			}
			if len(seen) != n {
				t.Errorf("%d distinct counts, want %d: %v", len(seen), n, seen)
			}
			e.failures(t, k, time.Hour, n, reset)
		}},
		{"cleared failures count from zero again, other keys untouched", func(t *testing.T, e *env) {
			a, b := "login:"+Random(), "login:"+Random()
			reset := Epoch().Add(time.Minute)
			for want := int64(1); want <= 3; want++ {
				e.countFailure(t, a, time.Minute, want, reset)
			}
			e.countFailure(t, b, time.Minute, 1, reset)
			wantErr(t, "ClearFailures", e.s.ClearFailures(e.ctx, a, time.Minute), nil)
			e.failures(t, a, time.Minute, 0, reset)
			e.countFailure(t, a, time.Minute, 1, reset)
			e.failures(t, b, time.Minute, 1, reset)
			// Clearing a key with no count is not an error.
			wantErr(t, "ClearFailures unknown", e.s.ClearFailures(e.ctx, "login:"+Random(), time.Minute), nil)
			wantStoreError(t, "ClearFailures empty key", e.s.ClearFailures(e.ctx, "", time.Minute))
		}},
		{"an empty failure key or a window under 1ms is refused", func(t *testing.T, e *env) {
			k := "login:" + Random()
			for _, tc := range []struct {
				key    string
				window time.Duration
			}{
				{"", time.Minute},
				{k, 0},
				{k, -time.Minute},
				{k, time.Millisecond - time.Nanosecond},
			} {
				_, _, err := e.s.CountFailure(e.ctx, tc.key, tc.window)
				wantStoreError(t, "CountFailure", err)
				_, _, err = e.s.Failures(e.ctx, tc.key, tc.window)
				wantStoreError(t, "Failures", err)
			}
			e.countFailure(t, k, time.Millisecond, 1, Epoch().Add(time.Millisecond))
		}},
	}
}

// countFailure counts a failure and checks the count and reset returned.
func (e *env) countFailure(t *testing.T, key string, window time.Duration, want int64, reset time.Time) {
	t.Helper()
	n, r, err := e.s.CountFailure(e.ctx, key, window)
	wantErr(t, "CountFailure", err, nil)
	if n != want || !r.Equal(reset) {
		t.Fatalf("CountFailure(%q, %v) = %d, %v; want %d, %v", key, window, n, r, want, reset)
	}
}

// failures checks the count and reset Failures reports.
func (e *env) failures(t *testing.T, key string, window time.Duration, want int64, reset time.Time) {
	t.Helper()
	n, r, err := e.s.Failures(e.ctx, key, window)
	wantErr(t, "Failures", err, nil)
	if n != want || !r.Equal(reset) {
		t.Fatalf("Failures(%q, %v) = %d, %v; want %d, %v", key, window, n, r, want, reset)
	}
}
