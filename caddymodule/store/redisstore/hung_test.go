package redisstore

import (
	"context"
	"errors"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tollgate/tollgate/caddymodule/store"
	"github.com/tollgate/tollgate/caddymodule/store/storetest"
)

// TestAuthenticateOnHungRedisEndsAtTheCallersDeadline pauses redis-server
// (SIGSTOP: connections are accepted, nothing is answered) and makes many
// concurrent Authenticate calls with a short deadline, more than the
// round trips allowed in flight, so that most of them queue and go out in
// batches (batch.go). Every call must end with an error at about its own
// deadline (go-redis bounds the socket by it: ContextTimeoutEnabled), never
// ErrNotFound, and no goroutine may be left waiting on the paused server.
// After SIGCONT the same Store works again.
func TestAuthenticateOnHungRedisEndsAtTheCallersDeadline(t *testing.T) {
	s, err := New(storetest.StartRedis(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := t.Context()
	// One call first: the script is cached and a connection is open.
	if _, _, err := s.Authenticate(ctx, "g", "digest", store.Limit{}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("before the pause: want ErrNotFound, got %v", err)
	}
	pid := redisPID(t, s)
	before := runtime.NumGoroutine()

	resume := pauseProcess(t, pid)

	const calls, deadline = 64, 200 * time.Millisecond
	errs := make([]error, calls)
	took := make([]time.Duration, calls)
	var wg sync.WaitGroup
	for i := range calls {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, deadline)
			defer cancel()
			start := time.Now()
			_, _, errs[i] = s.Authenticate(ctx, "g"+strconv.Itoa(i), "digest", store.Limit{})
			took[i] = time.Since(start)
		})
	}
	wg.Wait()
	slowest := time.Duration(0)
	for i, err := range errs {
		if err == nil || errors.Is(err, store.ErrNotFound) {
			t.Fatalf("call %d on a hung Redis: want a store error, got %v", i, err)
		}
		slowest = max(slowest, took[i])
	}
	t.Logf("%d concurrent calls, deadline %s: the slowest ended after %s (%v)", calls, deadline, slowest, errs[0])
	// Not a timing goal: only proof that the deadline, not the client's
	// 3 s read timeout, ended the calls.
	if slowest >= 2*time.Second {
		t.Fatalf("the slowest call took %s with a %s deadline", slowest, deadline)
	}

	// Redis is still paused: nothing may still be waiting on it.
	var now int
	for range 50 {
		if now = runtime.NumGoroutine(); now <= before+2 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if now > before+2 {
		buf := make([]byte, 1<<16)
		t.Fatalf("%d goroutines before, %d after every call ended:\n%s", before, now, buf[:runtime.Stack(buf, true)])
	}

	resume()
	var lastErr error
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if _, _, lastErr = s.Authenticate(ctx, "g", "digest", store.Limit{}); errors.Is(lastErr, store.ErrNotFound) {
			return
		}
	}
	t.Fatalf("after SIGCONT: want ErrNotFound again, got %v", lastErr)
}

// redisPID is redis-server's process id, from INFO server.
func redisPID(t *testing.T, s *Store) int {
	t.Helper()
	info, err := s.client.Info(t.Context(), "server").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "process_id:"); ok {
			pid, err := strconv.Atoi(v)
			if err != nil {
				t.Fatal(err)
			}
			return pid
		}
	}
	t.Fatalf("INFO server has no process_id")
	return 0
}

// pauseProcess stops process pid (SIGSTOP: its connections stay open and
// nothing is answered) and returns the function that resumes it, which is
// also called when the test ends; calling it twice is harmless.
func pauseProcess(t *testing.T, pid int) (resume func()) {
	t.Helper()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	resume = func() { once.Do(func() { _ = syscall.Kill(pid, syscall.SIGCONT) }) }
	t.Cleanup(resume)
	return resume
}
