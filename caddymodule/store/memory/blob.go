package memory

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/tollgate/tollgate/caddymodule/store"
)

// SetBlob stores a copy of value under key for ttl.
func (s *Store) SetBlob(_ context.Context, key string, value []byte, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("memory set blob: ttl %v is not positive", ttl)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	s.blobs[key] = blob{value: append([]byte{}, value...), exp: s.nowMillis() + ttl.Milliseconds()}
	return nil
}

// GetBlob returns a copy of a live blob.
func (s *Store) GetBlob(_ context.Context, key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errClosed
	}
	b, ok := s.blobs[key]
	if !ok || b.exp <= s.nowMillis() {
		return nil, store.ErrNotFound
	}
	return slices.Clone(b.value), nil
}

// TakeBlob gets and deletes a blob, so it is taken at most once.
func (s *Store) TakeBlob(_ context.Context, key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errClosed
	}
	b, ok := s.blobs[key]
	if !ok {
		return nil, store.ErrNotFound
	}
	delete(s.blobs, key)
	if b.exp <= s.nowMillis() {
		return nil, store.ErrNotFound
	}
	return b.value, nil
}

// DeleteBlob deletes a blob; deleting an absent one is not an error.
func (s *Store) DeleteBlob(_ context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	delete(s.blobs, key)
	return nil
}

// LoadOrStoreBlob stores a copy of value under key with no expiry unless a
// live value is there, and returns the value the key holds afterwards.
func (s *Store) LoadOrStoreBlob(_ context.Context, key string, value []byte) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errClosed
	}
	if b, ok := s.blobs[key]; ok && b.exp > s.nowMillis() {
		return slices.Clone(b.value), nil
	}
	s.blobs[key] = blob{value: slices.Clone(value), exp: math.MaxInt64}
	return slices.Clone(value), nil
}
