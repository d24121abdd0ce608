package webhook

import (
	"testing"
	"time"

	"github.com/tollgate/tollgate/caddymodule/store"
)

func TestBackoffDelay(t *testing.T) {
	var b Backoff // the defaults
	want := []time.Duration{5 * time.Second, 10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second}
	for i, w := range want {
		if got := b.Delay(i+1, 0); got != w {
			t.Errorf("attempt %d: %v, want %v", i+1, got, w)
		}
	}
	for _, n := range []int{11, 12, 100, 1 << 30} {
		if got := b.Delay(n, 0); got != time.Hour {
			t.Errorf("attempt %d: %v, want the 1h cap", n, got)
		}
	}
	// Jitter only ever shortens, by at most Jitter.
	for _, r := range []float64{0, 0.5, 0.999} {
		got := b.Delay(1, r)
		if got > 5*time.Second || got < 4*time.Second {
			t.Errorf("first delay with r=%v: %v, want within [4s, 5s]", r, got)
		}
	}
	custom := Backoff{First: time.Second, Max: 3 * time.Second, Jitter: 0.5}
	for n, w := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 3 * time.Second, 9: 3 * time.Second} {
		if got := custom.Delay(n, 0); got != w {
			t.Errorf("custom attempt %d: %v, want %v", n, got, w)
		}
	}
	if got := custom.Delay(9, 0.999); got < 1500*time.Millisecond {
		t.Errorf("custom jitter: %v, want at least half of 3s", got)
	}
}

// TestSchedule follows one event that never gets through, with the default
// settings: the first retry within 10s, growing delays, capped at an hour,
// the last retry at the 72h deadline, and abandonment after it.
func TestSchedule(t *testing.T) {
	created := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, r := range []float64{0, 0.999} {
		d := &Dispatcher{Rand: func() float64 { return r }}
		e := store.Event{ID: "evt_1", CreatedAt: created}
		now := created
		var delays []time.Duration
		for attempt := 1; ; attempt++ {
			next, abandon := d.schedule(e, attempt, now, 0)
			if abandon {
				if now.Before(created.Add(DefaultMaxAge)) {
					t.Fatalf("r=%v: abandoned at %v, before max age", r, now.Sub(created))
				}
				break
			}
			if next.After(created.Add(DefaultMaxAge)) {
				t.Fatalf("r=%v: retry at %v, past max age", r, next.Sub(created))
			}
			delays = append(delays, next.Sub(now))
			now = next
			if attempt > 1000 {
				t.Fatal("never abandoned")
			}
		}
		if delays[0] > 10*time.Second || delays[0] <= 0 {
			t.Errorf("r=%v: first retry after %v, want within 10s", r, delays[0])
		}
		for i, dl := range delays[:len(delays)-1] {
			if dl > time.Hour {
				t.Errorf("r=%v: delay %d is %v, over the 1h cap", r, i, dl)
			}
			if r == 0 && i > 0 && dl < delays[i-1] {
				t.Errorf("r=%v: delay %d (%v) shorter than the one before (%v)", r, i, dl, delays[i-1])
			}
		}
		if r == 0 && delays[len(delays)-2] != time.Hour {
			t.Errorf("delays never reached the cap: %v", delays)
		}
		if !now.Equal(created.Add(DefaultMaxAge)) {
			t.Errorf("r=%v: last retry %v after creation, want exactly at max age", r, now.Sub(created))
		}
	}

	// Retry-After lengthens a delay, up to the cap.
	d := &Dispatcher{Rand: func() float64 { return 0 }}
	e := store.Event{CreatedAt: created}
	if next, _ := d.schedule(e, 1, created, 2*time.Minute); next.Sub(created) != 2*time.Minute {
		t.Errorf("Retry-After 2m: next after %v", next.Sub(created))
	}
	if next, _ := d.schedule(e, 1, created, 48*time.Hour); next.Sub(created) != time.Hour {
		t.Errorf("Retry-After 48h: next after %v, want the 1h cap", next.Sub(created))
	}
	if next, _ := d.schedule(e, 1, created, time.Second); next.Sub(created) != 5*time.Second {
		t.Errorf("Retry-After 1s: next after %v, want the backoff's 5s", next.Sub(created))
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"":                              0,
		"120":                           2 * time.Minute,
		"0":                             0,
		"-5":                            0,
		"soon":                          0,
		"Tue, 01 Jan 2030 00:10:00 GMT": 10 * time.Minute,
		"Mon, 31 Dec 2029 00:10:00 GMT": 0,
	} {
		if got := retryAfter(in, now); got != want {
			t.Errorf("retryAfter(%q) = %v, want %v", in, got, want)
		}
	}
}
