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
	if e != nil {
		if e.tok.ExpiresAt.UnixMilli() <= now {
			s.tokens.forget(accessDigest, e)
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
	if !ok || len(arr) != 5 {
		if n, isInt := res.(int64); isInt && n == resNotFound {
			if e != nil {
				s.tokens.forget(accessDigest, e)
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
	t, err := decodeToken(accessDigest, rec)
	if err != nil {
		return store.Token{}, store.RateStatus{}, fmt.Errorf("redis authenticate: decoding token: %w", err)
	}
	if s.tokens != nil {
		if e, ok := remember(t, grantID, keys, slot, now); ok {
			s.tokens.put(accessDigest, e, now)
			s.watch.confirm(e, snap)
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
// with no round trip when the gateway vouches for the grant's liveness
// (watch.go) and the call is not counted or a unit of budget is held
// (lease.go); else with one round trip that checks, as luaAuthenticate
// would, that the token's slot still holds its digest and its grant is
// live, and, unless a unit was held, takes a lease of the budget. decided
// is false when the answer must come from the script: the token is no
// longer its slot's (the script then says why, and e is forgotten), or
// this is the first call of a budget window, which only the script opens.
// Budget taken for a call that is not let through goes back, so the count
// never rests past the limit, as with the script.
func (s *Store) checkRemembered(ctx context.Context, digest string, e *remembered, now int64, l store.Limit) (store.Token, store.RateStatus, bool, error) {
	if l.Count == 0 {
		l = e.tok.Limit
	}
	w := l.Window.Milliseconds()
	counted := l.Count > 0 && w > 0
	gs := e.gs.Load()
	st := store.RateStatus{Allowed: true}
	var idx int64
	held := !counted
	if counted {
		idx = store.WindowIndex(now, w)
		st = store.RateStatus{Limit: l.Count, Window: l.Window, Reset: time.UnixMilli((idx + 1) * w), Allowed: true}
		st.Remaining, held = gs.take(l.Count, w, idx)
	}
	var waiting int64
	for !held && gs != nil {
		end, n, err := gs.fillOrWait(ctx)
		if err != nil {
			return store.Token{}, store.RateStatus{}, false, err
		}
		if end != nil {
			defer end()
			waiting = n
			break
		}
		st.Remaining, held = gs.take(l.Count, w, idx)
	}
	if held && s.watch.vouches(gs) {
		return e.tok, st, true, nil
	}
	snap := s.watch.snapshot()
	c := checkCall{hmgetArgs: e.hmgetArgs}
	var k int64
	if !held {
		k = gs.nextSize(l.Count, w, idx, now, waiting)
		c.zaddArgs = e.zaddArgs(w, idx, k)
	}
	if err := s.authBatcher().check(ctx, &c); err != nil {
		return store.Token{}, store.RateStatus{}, false, err
	}
	vals, err := c.hm.Result()
	if err != nil {
		return store.Token{}, store.RateStatus{}, false, err
	}
	d, _ := vals[0].(string)
	exp, _ := vals[1].(string)
	gexp, _ := strconv.ParseInt(exp, 10, 64)
	if d != digest || gexp <= now {
		if !held && c.z.Err() == nil {
			giveBack(ctx, s.client, e.counter, c.zaddArgs[5].(string), k)
		}
		s.tokens.forget(digest, e)
		return store.Token{}, store.RateStatus{}, false, nil
	}
	gs = s.watch.confirm(e, snap)
	if held {
		return e.tok, st, true, nil
	}
	n, err := replyCount(c.z)
	if errors.Is(err, redis.Nil) {
		return store.Token{}, store.RateStatus{}, false, nil
	}
	if err != nil {
		return store.Token{}, store.RateStatus{}, false, err
	}
	member := c.zaddArgs[5].(string)
	granted := k
	if n > l.Count {
		granted = max(l.Count-(n-k), 0)
		giveBack(ctx, s.client, e.counter, member, k-granted)
	}
	if granted == 0 {
		st.Allowed = false
		return e.tok, st, true, nil
	}
	st.Remaining = gs.add(s.watch, l.Count, w, idx, k, n, granted, now, e.counter, member)
	return e.tok, st, true, nil
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
