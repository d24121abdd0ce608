package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/caddymodule/store"
)

// Authenticate checks an access token and counts the call. On a token's
// first use by this gateway it is one EVALSHA of luaAuthenticate, batched
// with concurrent calls into one pipeline when Redis is busy (batch.go).
// The gateway then remembers the token (tokencache.go), and later calls
// cost no round trip while it can vouch for the grant's liveness
// (watch.go) and holds some of its budget (lease.go); otherwise they cost
// the cheaper checkRemembered, falling back to the script whenever that
// cannot decide.
//
// The rate limit is a fixed window aligned to the Unix epoch: window index
// floor(now/window), resetting at (index+1)*window. Every gateway instance
// computes the same index from its clock, so they share one counter per
// grant without coordinating.
func (s *Store) Authenticate(ctx context.Context, grantID, accessDigest string, l store.Limit) (store.Token, store.RateStatus, error) {
	if err := store.CheckLimit(l); err != nil {
		return store.Token{}, store.RateStatus{}, fmt.Errorf("redis authenticate: %w", err)
	}
	if !store.ValidGrantID(grantID) {
		return store.Token{}, store.RateStatus{}, store.ErrNotFound
	}
	now := s.nowMillis()
	e := s.tokens.get(accessDigest)
	if e != nil && e.grant != grantID {
		e = nil // not this grant's token: the script says so
	}
	if e != nil {
		if e.tok.ExpiresAt.UnixMilli() <= now {
			s.forgetDead(accessDigest, e)
			return store.Token{}, store.RateStatus{}, store.ErrNotFound
		}
		if now-e.checked < recheckEvery {
			t, st, decided, err := s.checkRemembered(ctx, accessDigest, e, now, l)
			if err != nil {
				return store.Token{}, store.RateStatus{}, fmt.Errorf("redis authenticate: %w", err)
			}
			if decided {
				return t, st, nil
			}
		}
	}
	if s.tokens != nil {
		s.watch.start(s.channel())
	}
	snap := s.watch.snapshot()
	keys := s.k().auth(grantID)
	res, err := s.authBatcher().run(ctx, keys, now, l.Count, l.Window.Milliseconds(), accessDigest)
	if err != nil {
		return store.Token{}, store.RateStatus{}, fmt.Errorf("redis authenticate: %w", err)
	}
	arr, ok := res.([]any)
	if !ok || len(arr) != 6 {
		if n, isInt := res.(int64); isInt && n == resNotFound {
			if e != nil {
				s.forgetDead(accessDigest, e)
			}
			return store.Token{}, store.RateStatus{}, store.ErrNotFound
		}
		return store.Token{}, store.RateStatus{}, fmt.Errorf("redis authenticate: %w", errReply(res))
	}
	rec, _ := arr[0].(string)
	count, _ := arr[1].(int64)
	allowed, _ := arr[2].(int64)
	reset, _ := arr[3].(int64)
	slot, _ := arr[4].(string)
	nonce, _ := arr[5].(string)
	t, err := decodeToken(accessDigest, rec)
	if err != nil {
		return store.Token{}, store.RateStatus{}, fmt.Errorf("redis authenticate: decoding token: %w", err)
	}
	if s.tokens != nil {
		if e, ok := remember(t, grantID, keys, slot, now); ok {
			s.watch.confirm(e, snap, nonce) // before other calls can find e
			s.tokens.put(accessDigest, e, now)
		}
	}
	if count < 0 {
		return t, store.RateStatus{Allowed: true}, nil
	}
	if l.Count == 0 {
		l = t.Limit
	}
	st := store.RateStatus{
		Limit:   l.Count,
		Window:  l.Window,
		Reset:   time.UnixMilli(reset),
		Allowed: allowed == 1,
	}
	if st.Allowed {
		st.Remaining = max(l.Count-count, 0)
	}
	return t, st, nil
}

// checkRemembered decides a call of a remembered token e (tokencache.go):
// with no round trip when the gateway vouches for the token (watch.go)
// and the call is not counted or a unit of budget is held (lease.go);
// else with one round trip that checks, as luaAuthenticate would, that
// the token's slot still holds its digest and its grant is live, and,
// unless a unit was held, takes a lease of the budget (fill). decided is
// false when the answer must come from the script: the token is no longer
// its slot's (the script then says why, and e is forgotten), or this is
// the first call of a budget window, which only the script opens.
func (s *Store) checkRemembered(ctx context.Context, digest string, e *remembered, now int64, l store.Limit) (store.Token, store.RateStatus, bool, error) {
	if st, ok := s.local(e, now, l); ok {
		return e.tok, st, true, nil
	}
	if l.Count == 0 {
		l = e.tok.Limit
	}
	w := l.Window.Milliseconds()
	if l.Count <= 0 || w <= 0 { // not counted: liveness only
		if !s.watch.vouches(e.vouch.Load()) {
			if live, err := s.recheck(ctx, digest, e, now); err != nil || !live {
				return store.Token{}, store.RateStatus{}, false, err
			}
		}
		return e.tok, store.RateStatus{Allowed: true}, true, nil
	}
	idx := store.WindowIndex(now, w)
	st := store.RateStatus{Limit: l.Count, Window: l.Window, Reset: time.UnixMilli((idx + 1) * w), Allowed: true}
	for {
		v := e.vouch.Load()
		if v == nil {
			return store.Token{}, store.RateStatus{}, false, nil // found dead meanwhile
		}
		gs := v.gs
		rem, r := gs.take(l.Count, w, idx, v.nonce, now)
		switch {
		case r == took:
			st.Remaining = rem
			if !s.watch.vouches(v) {
				if live, err := s.recheck(ctx, digest, e, now); err != nil || !live {
					return store.Token{}, store.RateStatus{}, false, err
				}
			}
			return e.tok, st, true, nil
		case r == spent && s.watch.vouches(v):
			st.Allowed = false
			return e.tok, st, true, nil
		}
		end, waiting, err := gs.fillOrWait(ctx)
		if err != nil {
			return store.Token{}, store.RateStatus{}, false, err
		}
		if end == nil {
			continue // a lease was taken meanwhile: try its units
		}
		k := gs.nextSize(l.Count, w, idx, v.nonce, now, waiting)
		if !s.watch.fills.begin() {
			end()
			return store.Token{}, store.RateStatus{}, false, errStoreClosed
		}
		done := make(chan fillResult, 1)
		go func() {
			defer s.watch.fills.done()
			f := s.fill(ctx, digest, e, l.Count, w, idx, k, now)
			end() // before the answer: a caller's next call must not wait for this fill
			done <- f
		}()
		var f fillResult
		select {
		case f = <-done:
		case <-ctx.Done():
			return store.Token{}, store.RateStatus{}, false, ctx.Err()
		}
		switch {
		case f.err != nil:
			return store.Token{}, store.RateStatus{}, false, f.err
		case !f.decided:
			return store.Token{}, store.RateStatus{}, false, nil
		}
		st.Allowed, st.Remaining = f.allowed, f.remaining
		return e.tok, st, true, nil
	}
}

// errStoreClosed answers a call that would take a lease after Close.
var errStoreClosed = errors.New("store closed")

// AuthenticateLocal is Authenticate when it needs no round trip
// (store.LocalAuthenticator): the token is remembered, vouched for, not
// due for the script, and either not counted or a unit of its budget is
// held (or its window was just found spent).
func (s *Store) AuthenticateLocal(grantID, accessDigest string, l store.Limit) (store.Token, store.RateStatus, bool) {
	if store.CheckLimit(l) != nil {
		return store.Token{}, store.RateStatus{}, false
	}
	e := s.tokens.get(accessDigest)
	if e == nil || e.grant != grantID {
		return store.Token{}, store.RateStatus{}, false
	}
	now := s.nowMillis()
	if e.tok.ExpiresAt.UnixMilli() <= now || now-e.checked >= recheckEvery {
		return store.Token{}, store.RateStatus{}, false
	}
	st, ok := s.local(e, now, l)
	return e.tok, st, ok
}

// local decides a call of a live remembered token e with no I/O, when the
// gateway vouches for it and the call is not counted or a unit of budget
// is held (or its window was just found spent).
func (s *Store) local(e *remembered, now int64, l store.Limit) (store.RateStatus, bool) {
	v := e.vouch.Load()
	if !s.watch.vouches(v) {
		return store.RateStatus{}, false
	}
	if l.Count == 0 {
		l = e.tok.Limit
	}
	w := l.Window.Milliseconds()
	if l.Count <= 0 || w <= 0 {
		return store.RateStatus{Allowed: true}, true
	}
	idx := store.WindowIndex(now, w)
	rem, r := v.gs.take(l.Count, w, idx, v.nonce, now)
	if r == noUnit {
		return store.RateStatus{}, false
	}
	return store.RateStatus{Limit: l.Count, Window: l.Window, Reset: time.UnixMilli((idx + 1) * w), Allowed: r == took, Remaining: rem}, true
}

// fillResult is what fill found: decided false when the script must
// answer (the token is dead, or the window unopened).
type fillResult struct {
	decided, allowed bool
	remaining        int64
	err              error
}

// fill takes a lease of k units of window idx for e's grant, one of them
// for the caller's call, in one round trip that also checks e is live. It
// runs to completion even when its caller gives up (ctx's cancellation is
// ignored and its deadline extended by watchFresh): units counted in
// Redis are then held here for the next calls, or given back, never lost.
func (s *Store) fill(ctx context.Context, digest string, e *remembered, limit, w, idx, k, now int64) fillResult {
	ctx, cancel := detach(ctx)
	defer cancel()
	snap := s.watch.snapshot()
	c := checkCall{hmgetArgs: e.hmgetArgs, zaddArgs: e.zaddArgs(w, idx, k)}
	if err := s.authBatcher().check(ctx, &c); err != nil {
		return fillResult{err: err}
	}
	member := c.zaddArgs[5].(string)
	n, zerr := replyCount(c.z)
	nonce, live, err := liveReply(c.hm, digest, now)
	if err != nil || !live {
		if zerr == nil {
			giveBack(ctx, s.client, e.counter, member, k)
		}
		if err == nil {
			s.forgetDead(digest, e)
		}
		return fillResult{err: err}
	}
	gs := s.watch.confirm(e, snap, nonce)
	if errors.Is(zerr, redis.Nil) {
		return fillResult{} // the window is not opened: the script opens it
	}
	if zerr != nil {
		return fillResult{err: zerr}
	}
	granted := k
	if n > limit {
		granted = max(limit-(n-k), 0)
		giveBack(ctx, s.client, e.counter, member, k-granted)
	}
	l0 := &lease{limit: limit, w: w, idx: idx, nonce: nonce, grant: e.hmgetArgs[1].(string), counter: e.counter, member: member}
	if granted == 0 {
		gs.markSpent(l0, now)
		return fillResult{decided: true}
	}
	return fillResult{decided: true, allowed: true, remaining: gs.add(s.watch, l0, k, n, granted, now)}
}

// recheck asks Redis whether e is still live (one HMGET), and vouches for
// it again if so.
func (s *Store) recheck(ctx context.Context, digest string, e *remembered, now int64) (bool, error) {
	snap := s.watch.snapshot()
	c := checkCall{hmgetArgs: e.hmgetArgs}
	if err := s.authBatcher().check(ctx, &c); err != nil {
		return false, err
	}
	nonce, live, err := liveReply(c.hm, digest, now)
	if err != nil {
		return false, err
	}
	if !live {
		s.forgetDead(digest, e)
		return false, nil
	}
	s.watch.confirm(e, snap, nonce)
	return true, nil
}

// liveReply reads the check's HMGET of a token's slot digest, the grant's
// expiry and nonce: live when the slot still holds digest and the grant
// has not expired.
func liveReply(hm *redis.SliceCmd, digest string, now int64) (nonce string, live bool, err error) {
	vals, err := hm.Result()
	if err != nil {
		return "", false, err
	}
	if len(vals) != 3 {
		return "", false, errReply(vals)
	}
	d, _ := vals[0].(string)
	exp, _ := vals[1].(string)
	nonce, _ = vals[2].(string)
	gexp, _ := strconv.ParseInt(exp, 10, 64)
	return nonce, d == digest && gexp > now, nil
}

// forgetDead forgets a token Redis found dead; calls already holding its
// entry stop vouching for it.
func (s *Store) forgetDead(digest string, e *remembered) {
	e.vouch.Store(nil)
	s.tokens.forget(digest, e)
}

// detach is ctx without its cancellation, with its deadline (if any)
// extended by watchFresh.
func detach(ctx context.Context) (context.Context, context.CancelFunc) {
	d := context.WithoutCancel(ctx)
	if dl, ok := ctx.Deadline(); ok {
		return context.WithDeadline(d, dl.Add(watchFresh))
	}
	return context.WithCancel(d)
}

// replyCount reads the score ZADD INCR answers: a double in RESP3, a bulk
// string in RESP2 (a count, so a whole number either way).
func replyCount(cmd *redis.Cmd) (int64, error) {
	v, err := cmd.Result()
	if err != nil {
		return 0, err
	}
	switch v := v.(type) {
	case float64:
		return int64(v), nil
	case string:
		f, err := strconv.ParseFloat(v, 64)
		return int64(f), err
	}
	return 0, errReply(v)
}

// counterMember names a budget window's member of the grant's counter
// (luaAuthenticate): kind ("c" count, "r" refunds, "" the name the
// scripts prefix themselves), window ms, ":", window index.
func counterMember(kind string, w, idx int64) string {
	b := make([]byte, 0, len(kind)+40)
	b = append(b, kind...)
	b = strconv.AppendInt(b, w, 10)
	b = append(b, ':')
	b = strconv.AppendInt(b, idx, 10)
	return string(b)
}

// Refund gives back one request of the current window, never going below 0
// and at most l.Count times per window (store.Store.Refund), in one script
// on the grant's counter key (luaRefund).
func (s *Store) Refund(ctx context.Context, grantID string, l store.Limit) (bool, error) {
	if err := store.CheckLimit(l); err != nil {
		return false, fmt.Errorf("redis refund: %w", err)
	}
	if l.Count == 0 || !store.ValidGrantID(grantID) {
		return false, nil
	}
	w := l.Window.Milliseconds()
	idx := store.WindowIndex(s.nowMillis(), w)
	member := counterMember("", w, idx)
	n, err := s.scripts.refund.Run(ctx, s.client, []string{s.k().counter(grantID)}, member, l.Count).Int64()
	if err != nil {
		return false, fmt.Errorf("redis refund: %w", err)
	}
	if n == 1 {
		if gs := s.watch.state(grantID); gs != nil {
			gs.refunded(l.Count, w, idx)
		}
	}
	return n == 1, nil
}
