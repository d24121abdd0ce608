package webhook

import (
	"testing"
	"time"
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
