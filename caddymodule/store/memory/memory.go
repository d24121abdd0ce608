// Package memory is the embedded store.Store: everything in process memory,
// for a single gateway instance. It keeps the same semantics as the Redis
// store, down to millisecond expiry and the shape of revocation, so that one
// contract suite (storetest) holds both to the same behaviour.
package memory

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/tollgate/tollgate/caddymodule/store"
)

// sweepInterval is how often the janitor drops expired entries. Expiry is
// decided on every read; the janitor only bounds memory.
const sweepInterval = time.Minute

var errClosed = errors.New("memory store is closed")

// Store is a store.Store in process memory. All times are kept as Unix
// milliseconds of the injected clock, as the Redis store keeps them, so that
// the two agree on expiry to the millisecond.
type Store struct {
	now func() time.Time

	mu     sync.Mutex
	closed bool
	grants map[string]*grant
	// markers outlive codes and grants: a code presented again after its
	// grant was revoked is still recognised as a replay.
	markers map[codeRef]marker
	// counters are per grant id, not per grant, like the Redis key
	// tg:{<grant>}:rc: RevokeGrant deletes them, expiry does not.
	counters map[string]*window
	blobs    map[string]blob
	// failures are the failure counters of CountFailure (failure.go).
	failures map[failureRef]*failures
	events   eventQueue // webhook events (events.go)
	// subjects indexes grant ids by subject for ListGrants (index.go).
	subjects map[string][]string

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// grant is one incarnation of a grant with everything issued under it:
// dropping it from Store.grants revokes all of it at once. Like the Redis
// store's grant hash it holds one pair and a fixed ring of rotated-out
// refresh tokens (reuse.go), so its size does not grow with rotations.
type grant struct {
	id, clientID, subject string
	scopes                []string
	profile               []string              // profilePairs
	created, exp          int64                 // ms
	used                  int64                 // LastUsedAt, ms
	codes                 map[string]store.Code // pending codes; nil while there are none
	// pairs are the grant's token pairs, at most pairSlots; an empty
	// digest is a token that has expired or was never issued.
	pairs []pair
	ring  ring
}

// pairSlots is how many pairs a grant holds at once, as on Redis.
const pairSlots = store.PairsPerGrant

type pair struct{ access, refresh token }

// life is when the pair's last token expires.
func (p *pair) life() int64 { return max(p.access.exp, p.refresh.exp) }

// token is a stored token: what store.Token holds beyond its grant's client
// and subject and its pair's digest.
type token struct {
	digest string
	exp    int64 // ms
	scopes []string
	limit  store.Limit
}

// codeRef names a consumed code's replay marker: 128 bits of the code's
// digest (ringForm), as on Redis, rather than the caller's whole digest.
type codeRef struct {
	grantID string
	digest  [16]byte
}

// marker states, as in the Redis store.
const (
	consumed markerState = iota + 1
	replayed
	issued
)

type markerState uint8

// marker is a consumed code's replay marker, kept by value: 16 bytes.
type marker struct {
	state markerState
	exp   int64
}

// window is a grant's request count in one rate-limit window.
type window struct {
	idx int64 // window index: floor(now / window length)
	n   int64
	end int64
	// refunds is how many requests Refund gave back in this window.
	refunds int64
}

type blob struct {
	value []byte
	exp   int64
}

// New returns an empty Store and starts its janitor; Close stops it. now is
// the clock every expiry is judged by; nil means time.Now.
func New(now func() time.Time) *Store {
	if now == nil {
		now = time.Now
	}
	s := &Store{
		now:      now,
		grants:   make(map[string]*grant),
		markers:  make(map[codeRef]marker),
		counters: make(map[string]*window),
		blobs:    make(map[string]blob),
		failures: make(map[failureRef]*failures),
		subjects: make(map[string][]string),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	go s.janitor()
	return s
}

func (s *Store) janitor() {
	defer close(s.done)
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.sweep()
		}
	}
}

// sweep drops everything the clock says is over.
func (s *Store) sweep() {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.nowMillis()
	for id, g := range s.grants {
		if g.exp <= now {
			delete(s.grants, id)
			continue
		}
		for d, c := range g.codes {
			if c.ExpiresAt.UnixMilli() <= now {
				delete(g.codes, d)
			}
		}
		if len(g.codes) == 0 {
			g.codes = nil
		}
		g.pairs = slices.DeleteFunc(g.pairs, func(p pair) bool { return p.life() <= now })
		if len(g.pairs) == 0 {
			g.pairs = nil
		}
	}
	s.sweepIndex(now)
	for r, m := range s.markers {
		if m.exp <= now {
			delete(s.markers, r)
		}
	}
	for id, w := range s.counters {
		if w.end <= now {
			delete(s.counters, id)
		}
	}
	for k, b := range s.blobs {
		if b.exp <= now {
			delete(s.blobs, k)
		}
	}
	for r, f := range s.failures {
		if f.end <= now {
			delete(s.failures, r)
		}
	}
}

// Ping reports whether the store is open.
func (s *Store) Ping(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	return nil
}

// Close stops the janitor; later calls fail, as they would on a closed
// Redis client. It is safe to call more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		close(s.stop)
		<-s.done
	})
	return nil
}

func (s *Store) nowMillis() int64 { return s.now().UnixMilli() }

// live returns the grant when it exists and has not expired. The caller
// holds s.mu.
func (s *Store) live(grantID string, now int64) *grant {
	g := s.grants[grantID]
	if g == nil || g.exp <= now {
		return nil
	}
	return g
}

// revoke drops the grant and its counters. The caller holds s.mu.
func (s *Store) revoke(grantID string) {
	delete(s.grants, grantID)
	delete(s.counters, grantID)
}

var _ store.Store = (*Store)(nil)
