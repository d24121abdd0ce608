package store

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// The rules below are the contract's, applied alike by every store: what a
// store refuses, how a fixed window is numbered, how a listing is ordered.
// They are kept once, here, so that the memory store and the Redis store
// cannot drift apart on them.

// ErrGrantOwner is returned by SaveGrant when a live grant with that id
// belongs to another client or subject: merging would hand one user's
// consent to someone else, so it is refused rather than silently done. A
// grant id is made of its client and subject (oauth.GrantID), so only a
// collision gets here, and handlers treat it as any store error (503).
var ErrGrantOwner = errors.New("grant id belongs to another client or subject")

// ValidGrantID reports whether id can name a grant. On Redis every key of a
// grant carries its id as the hash tag; with "" or a leading "}" the tag
// "{...}" is empty and Redis Cluster hashes each whole key, so a script over
// them fails with CROSSSLOT: an error (503) where a forged token deserves
// ErrNotFound (401). Every store refuses the same ids, so that all accept
// the same grants.
func ValidGrantID(id string) bool { return id != "" && id[0] != '}' }

// LastUsedGranularity is how stale a grant's LastUsedAt may get before
// Authenticate rewrites it. It is shown to users as "last used 5 minutes
// ago", so minute precision is all it needs. On Redis, rewriting it on every
// call would add a write to the grant hash (propagated to replicas and the
// AOF) to every API call, and would make Authenticate a write even for
// unlimited clients, whose calls otherwise only read. The Redis store's
// Authenticate script spells it out in milliseconds; a test there keeps the
// two in step.
const LastUsedGranularity = time.Minute

// MarkerLife is how long a consumed code's replay marker is kept. Codes live
// minutes; a day comfortably covers a client that retries a stale code.
const MarkerLife = 24 * time.Hour

// CheckLimit rejects budgets the gateway should never have been configured
// with; they are reported as store errors (503) rather than guessed at.
func CheckLimit(l Limit) error {
	switch {
	case l.Count < 0:
		return fmt.Errorf("rate limit count %d is negative", l.Count)
	case l.Count > 0 && l.Window < time.Millisecond:
		return fmt.Errorf("rate limit window %v is shorter than 1ms", l.Window)
	}
	return nil
}

// CheckPair rejects a pair no handler should send (IssueTokens, Rotate).
// The access token's budget is checked here, once, so that the hot path
// (Authenticate) can trust the budget it reads back from the token.
func CheckPair(p Pair) error {
	if p.Access.Digest == "" {
		return errors.New("access token digest is empty")
	}
	return CheckLimit(p.Access.Limit)
}

// CheckFailure rejects what CountFailure and Failures cannot count under;
// like a bad rate-limit budget, it is a store error (503), not a guess.
func CheckFailure(key string, window time.Duration) error {
	switch {
	case key == "":
		return errors.New("empty failure key")
	case window < time.Millisecond:
		return fmt.Errorf("failure window %v is shorter than 1ms", window)
	}
	return nil
}

// CheckClaim rejects a ClaimEvents call that could claim nothing, or claim
// for no one.
func CheckClaim(consumer string, max int, lease time.Duration) error {
	if max <= 0 || lease <= 0 || consumer == "" {
		return fmt.Errorf("invalid consumer %q, max %d or lease %v", consumer, max, lease)
	}
	return nil
}

// WindowIndex numbers the fixed window of length window that now falls in
// (both in milliseconds, now since the Unix epoch): floor(now / window), so
// that windows are aligned to the epoch (see Limit), also for instants
// before 1970. window must be positive.
func WindowIndex(now, window int64) int64 {
	q := now / window
	if now%window < 0 {
		q--
	}
	return q
}

// DedupeScopes returns the scopes in order without repeats, never nil (on
// Redis they are kept as a JSON array, which nil would not encode as).
func DedupeScopes(in []string) []string {
	out := make([]string, 0, len(in))
	seen := make(map[string]bool, len(in))
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// SortGrants puts grants in ListGrants' order: newest first, by id among
// equals, so that a listing is stable.
func SortGrants(gs []Grant) {
	slices.SortFunc(gs, func(a, b Grant) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
}
