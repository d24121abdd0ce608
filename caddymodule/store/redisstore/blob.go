package redisstore

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"github.com/tollgate/tollgate/caddymodule/store"
)

// A blob is stored as its expiry (8 bytes, big-endian Unix ms of the
// injected clock) followed by the value, so that GetBlob and TakeBlob judge
// expiry by the same clock as everything else; the key's TTL only collects
// it afterwards.

// SetBlob stores value under key for ttl.
func (s *Store) SetBlob(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("redis set blob: ttl %v is not positive", ttl)
	}
	buf := make([]byte, 8+len(value))
	binary.BigEndian.PutUint64(buf, uint64(s.nowMillis()+ttl.Milliseconds()))
	copy(buf[8:], value)
	if err := s.client.Set(ctx, s.k().blob(key), buf, ttl+gcMargin*time.Millisecond).Err(); err != nil {
		return fmt.Errorf("redis set blob: %w", err)
	}
	return nil
}

// GetBlob returns a live blob.
func (s *Store) GetBlob(ctx context.Context, key string) ([]byte, error) {
	v, err := s.client.Get(ctx, s.k().blob(key)).Bytes()
	if isNil(err) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("redis get blob: %w", err)
	}
	return s.unwrapBlob(v)
}

// TakeBlob gets and deletes a blob in one script, so two concurrent takes
// cannot both get it.
func (s *Store) TakeBlob(ctx context.Context, key string) ([]byte, error) {
	v, err := s.scripts.takeBlob.Run(ctx, s.client, []string{s.k().blob(key)}).Text()
	if isNil(err) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("redis take blob: %w", err)
	}
	return s.unwrapBlob([]byte(v))
}

// DeleteBlob deletes a blob; deleting an absent one is not an error.
func (s *Store) DeleteBlob(ctx context.Context, key string) error {
	if err := s.client.Del(ctx, s.k().blob(key)).Err(); err != nil {
		return fmt.Errorf("redis delete blob: %w", err)
	}
	return nil
}

func (s *Store) unwrapBlob(v []byte) ([]byte, error) {
	if len(v) < 8 {
		return nil, fmt.Errorf("redis blob: %d-byte value is too short", len(v))
	}
	if int64(binary.BigEndian.Uint64(v)) <= s.nowMillis() {
		return nil, store.ErrNotFound
	}
	return v[8:], nil
}

// LoadOrStoreBlob stores value under key with no expiry unless the key
// holds a value, and returns the value the key holds afterwards: SET NX,
// then GET when another value was there. (SET NX GET would do both in one
// command, but only from Redis 7.0; this works on 6.) The value stored
// first is never replaced, so every caller gets that one.
func (s *Store) LoadOrStoreBlob(ctx context.Context, key string, value []byte) ([]byte, error) {
	k := s.k().blob(key)
	buf := make([]byte, 8+len(value))
	binary.BigEndian.PutUint64(buf, uint64(math.MaxInt64))
	copy(buf[8:], value)
	stored, err := s.client.SetNX(ctx, k, buf, 0).Result()
	if err != nil {
		return nil, fmt.Errorf("redis load or store blob: %w", err)
	}
	if stored {
		return value, nil
	}
	old, err := s.client.Get(ctx, k).Bytes()
	if err != nil {
		// Deleted in between (by hand: nothing in Tollgate deletes it).
		return nil, fmt.Errorf("redis load or store blob: %w", err)
	}
	if len(old) < 8 {
		return nil, fmt.Errorf("redis blob: %d-byte value is too short", len(old))
	}
	return old[8:], nil
}
