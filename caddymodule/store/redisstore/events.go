package redisstore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/caddymodule/store"
)

// The webhook queue. Its keys share one hash tag, "{q}" unless the store was
// given another queue name, so that every script over them runs in one
// Cluster slot:
//
//	tg:wh:{q}:stream  Stream; entry fields id cid payload created next
//	                  (times in Unix ms); consumer group "tollgate"
//	tg:wh:{q}:due     zset: member = id of an entry already delivered to
//	                  the group, score = when it may be claimed again (its
//	                  lease's end, or its next attempt after RetryEvent)
//	tg:wh:{q}:tries   hash: entry id -> failed attempts
//
// New entries are handed out with XREADGROUP, which gives each to exactly
// one consumer. An entry that was handed out stays in the group's pending
// list until it is acked, and its schedule lives in the due zset: the claim
// script takes what is due from there and moves it to the claimer with
// XCLAIM. XAUTOCLAIM is not used on purpose: its min-idle-time is measured by
// Redis's own clock and restarted only by a delivery, so it could neither
// honour a retry scheduled an hour ahead nor the store's injected clock that
// every other expiry here is judged by (and it needs Redis 6.2; the scripts
// keep to 6.0). Every change is one script, so two gateway instances claiming
// at once never get the same entry within a lease.
//
// The queue has no TTL: it is drained by acks, which the dispatcher also
// sends for events it abandons.

// eventGroup is the consumer group every gateway instance reads with.
const eventGroup = "tollgate"

// defaultEventQueue is the queue's hash tag when none was set.
const defaultEventQueue = "q"

func (s *Store) eventKeys() []string {
	q := s.queue
	if q == "" {
		q = defaultEventQueue
	}
	p := string(s.k()) + "wh:{" + q + "}:"
	return []string{p + "stream", p + "due", p + "tries"}
}

// luaClaimEvents returns up to max entries as {entry id, fields, failed
// attempts, due ms}. Entries delivered before and due again come first
// (oldest schedule first), then new ones in stream order. A new entry queued
// with a next attempt in the future is taken into the schedule and left for
// a later claim. The group is created on first use, from the start of the
// stream, so entries queued before any instance claimed are not skipped.
//
// KEYS: stream, due, tries. ARGV: group, consumer, max, now, lease end.
const luaClaimEvents = `
local stream_key, due_key, tries_key = KEYS[1], KEYS[2], KEYS[3]
local group, consumer = ARGV[1], ARGV[2]
local max, now, lease = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local r = redis.pcall('XGROUP', 'CREATE', stream_key, group, '0', 'MKSTREAM')
if type(r) == 'table' and r.err and not string.find(r.err, 'BUSYGROUP', 1, true) then
  return r
end
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', due_key, '-inf', now, 'LIMIT', 0, max)) do
  local due = redis.call('ZSCORE', due_key, id)
  local e = redis.call('XCLAIM', stream_key, group, consumer, 0, id)[1]
  if type(e) == 'table' and type(e[2]) == 'table' then
    redis.call('ZADD', due_key, lease, id)
    out[#out + 1] = {id, e[2], redis.call('HGET', tries_key, id) or '0', due}
  else
    -- The entry was deleted behind the queue's back: forget it.
    redis.call('XACK', stream_key, group, id)
    redis.call('ZREM', due_key, id)
    redis.call('HDEL', tries_key, id)
  end
end
if #out < max then
  local rd = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', max - #out, 'STREAMS', stream_key, '>')
  if rd then
    for _, e in ipairs(rd[1][2]) do
      local id, f, due = e[1], e[2], '0'
      for i = 1, #f, 2 do
        if f[i] == 'next' then due = f[i + 1] end
      end
      if tonumber(due) > now then
        redis.call('ZADD', due_key, due, id)
      else
        redis.call('ZADD', due_key, lease, id)
        out[#out + 1] = {id, f, '0', due}
      end
    end
  end
end
return out
`

// luaAckEvent removes an entry and its schedule. XACK is allowed to fail:
// the group is gone only when the stream was deleted by hand.
//
// KEYS: stream, due, tries. ARGV: group, entry id.
const luaAckEvent = `
local stream_key, due_key, tries_key = KEYS[1], KEYS[2], KEYS[3]
local group, id = ARGV[1], ARGV[2]
redis.pcall('XACK', stream_key, group, id)
redis.call('XDEL', stream_key, id)
redis.call('ZREM', due_key, id)
redis.call('HDEL', tries_key, id)
return 1
`

// luaRetryEvent reschedules a delivered entry and counts the failed attempt;
// 0 when the entry is no longer queued (acked meanwhile).
//
// KEYS: stream, due, tries. ARGV: entry id, next attempt.
const luaRetryEvent = `
local due_key, tries_key = KEYS[2], KEYS[3] -- KEYS[1], the stream, is not read
local id, next_attempt = ARGV[1], ARGV[2]
if not redis.call('ZSCORE', due_key, id) then return 0 end
redis.call('HINCRBY', tries_key, id, 1)
redis.call('ZADD', due_key, next_attempt, id)
return 1
`

// EnqueueEvent appends the event to the stream. XADD returns once the
// entry is written, which is what the disconnect waits for.
func (s *Store) EnqueueEvent(ctx context.Context, e store.Event) error {
	if e.ID == "" {
		return errors.New("redis enqueue event: empty event id")
	}
	created := e.CreatedAt
	if created.IsZero() {
		created = s.now()
	}
	var next int64
	if !e.NextAttempt.IsZero() {
		next = e.NextAttempt.UnixMilli()
	}
	err := s.client.XAdd(ctx, &redis.XAddArgs{
		Stream: s.eventKeys()[0],
		Values: []any{
			"id", e.ID,
			"cid", e.ClientID,
			"payload", e.Payload,
			"created", created.UnixMilli(),
			"next", next,
		},
	}).Err()
	if err != nil {
		return fmt.Errorf("redis enqueue event: %w", err)
	}
	return nil
}

// ClaimEvents leases up to max due events to consumer.
func (s *Store) ClaimEvents(ctx context.Context, consumer string, max int, lease time.Duration) ([]store.Event, error) {
	if err := store.CheckClaim(consumer, max, lease); err != nil {
		return nil, fmt.Errorf("redis claim events: %w", err)
	}
	now := s.nowMillis()
	res, err := s.scripts.claimEvents.Run(ctx, s.client, s.eventKeys(),
		eventGroup, consumer, max, now, now+lease.Milliseconds()).Slice()
	if err != nil {
		return nil, fmt.Errorf("redis claim events: %w", err)
	}
	events := make([]store.Event, 0, len(res))
	for _, r := range res {
		e, err := decodeEvent(r)
		if err != nil {
			return nil, fmt.Errorf("redis claim events: %w", err)
		}
		events = append(events, e)
	}
	return events, nil
}

// AckEvent removes the event for good; acking one that is gone is not an
// error.
func (s *Store) AckEvent(ctx context.Context, e store.Event) error {
	if !validEntryID(e.Handle) {
		return nil
	}
	if err := s.scripts.ackEvent.Run(ctx, s.client, s.eventKeys(), eventGroup, e.Handle).Err(); err != nil {
		return fmt.Errorf("redis ack event: %w", err)
	}
	return nil
}

// RetryEvent counts a failed attempt and makes the event due at next, or
// returns ErrNotFound when it is no longer queued.
func (s *Store) RetryEvent(ctx context.Context, e store.Event, next time.Time) error {
	if !validEntryID(e.Handle) {
		return store.ErrNotFound
	}
	n, err := s.scripts.retryEvent.Run(ctx, s.client, s.eventKeys(), e.Handle, next.UnixMilli()).Int64()
	if err != nil {
		return fmt.Errorf("redis retry event: %w", err)
	}
	if n == resNotFound {
		return store.ErrNotFound
	}
	return nil
}

// decodeEvent reads one {entry id, fields, attempts, due} of the claim
// script.
func decodeEvent(v any) (store.Event, error) {
	r, ok := v.([]any)
	if !ok || len(r) != 4 {
		return store.Event{}, errReply(v)
	}
	id, _ := r[0].(string)
	fields, _ := r[1].([]any)
	tries, _ := r[2].(string)
	due, _ := r[3].(string)
	if id == "" || len(fields)%2 != 0 {
		return store.Event{}, errReply(v)
	}
	e := store.Event{Handle: id}
	var created int64
	for i := 0; i < len(fields); i += 2 {
		k, _ := fields[i].(string)
		val, _ := fields[i+1].(string)
		switch k {
		case "id":
			e.ID = val
		case "cid":
			e.ClientID = val
		case "payload":
			e.Payload = []byte(val)
		case "created":
			created, _ = strconv.ParseInt(val, 10, 64)
		}
	}
	attempts, err := strconv.Atoi(tries)
	if err != nil {
		return store.Event{}, fmt.Errorf("event %s: attempts %q: %w", id, tries, err)
	}
	// A sorted-set score comes back as a float's text.
	d, err := strconv.ParseFloat(due, 64)
	if err != nil {
		return store.Event{}, fmt.Errorf("event %s: due %q: %w", id, due, err)
	}
	e.Attempts = attempts
	e.CreatedAt = time.UnixMilli(created)
	e.NextAttempt = e.CreatedAt
	if d > 0 {
		e.NextAttempt = time.UnixMilli(int64(math.Round(d)))
	}
	return e, nil
}

// validEntryID reports whether h looks like a stream entry id
// ("<ms>-<seq>"); anything else would make XACK and XDEL fail with a
// syntax error for what is simply an unknown event.
func validEntryID(h string) bool {
	ms, seq, ok := strings.Cut(h, "-")
	if !ok {
		return false
	}
	_, err1 := strconv.ParseUint(ms, 10, 64)
	_, err2 := strconv.ParseUint(seq, 10, 64)
	return err1 == nil && err2 == nil
}

// Backlog reports how many events are queued (due, leased or waiting for a
// retry: every entry not yet acked, as an ack deletes it from the stream)
// and when the oldest was queued, the zero time when none is (the webhook
// dispatcher's BacklogReader, for the queue metrics). One pipeline of XLEN
// and the stream's first entry: constant work whatever the backlog.
func (s *Store) Backlog(ctx context.Context) (int64, time.Time, error) {
	stream := s.eventKeys()[0]
	var n *redis.IntCmd
	var first *redis.XMessageSliceCmd
	if _, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		n = p.XLen(ctx, stream)
		first = p.XRangeN(ctx, stream, "-", "+", 1)
		return nil
	}); err != nil {
		return 0, time.Time{}, fmt.Errorf("redis webhook backlog: %w", err)
	}
	var oldest time.Time
	if msgs := first.Val(); len(msgs) > 0 {
		created, _ := msgs[0].Values["created"].(string)
		ms, err := strconv.ParseInt(created, 10, 64)
		if err != nil {
			return 0, time.Time{}, fmt.Errorf("redis webhook backlog: entry %s: created %q: %w", msgs[0].ID, created, err)
		}
		oldest = time.UnixMilli(ms)
	}
	return n.Val(), oldest, nil
}
