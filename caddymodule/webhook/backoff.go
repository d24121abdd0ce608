package webhook

import "time"

// Backoff is the retry schedule: First after the first failed attempt, then
// doubling up to Max. Each delay is shortened by a random fraction of up to
// Jitter, so that events that failed together (a receiver's outage) do not
// all come back in the same second; shortened rather than lengthened, so
// that First and Max are bounds an operator can rely on.
type Backoff struct {
	// First is the delay after the first failed attempt. Default 5s.
	First time.Duration
	// Max caps the delay. Default 1h.
	Max time.Duration
	// Jitter is the largest fraction taken off a delay, in (0, 1].
	// Default 0.2.
	Jitter float64
}

// Backoff defaults.
const (
	DefaultFirst  = 5 * time.Second
	DefaultMax    = time.Hour
	DefaultJitter = 0.2
)

// Delay is the wait after failed attempt number attempt (1 for the first),
// r being a random number in [0, 1).
func (b Backoff) Delay(attempt int, r float64) time.Duration {
	first, ceiling, jitter := b.First, b.Max, b.Jitter
	if first <= 0 {
		first = DefaultFirst
	}
	if ceiling <= 0 {
		ceiling = DefaultMax
	}
	if jitter <= 0 || jitter > 1 {
		jitter = DefaultJitter
	}
	d := first
	for i := 1; i < attempt && d < ceiling; i++ {
		d *= 2
	}
	d = min(d, ceiling)
	return d - time.Duration(float64(d)*jitter*r)
}

// ceiling is Max with its default.
func (b Backoff) ceiling() time.Duration {
	if b.Max <= 0 {
		return DefaultMax
	}
	return b.Max
}
