package webhook

import (
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/tollgate/tollgate/caddymodule/store/storetest"
)

// TestObservers checks what the metrics are told: each attempt's outcome
// with its client, and the queue's backlog read after each poll (the event
// being attempted still counts: it leaves the queue when acked), once per
// poll interval at most.
func TestObservers(t *testing.T) {
	clk := storetest.NewClock()
	q := memoryStore(t, clk)
	r := newReceiver(t, clk.Now)
	r.setAnswer(func(n int) int {
		if n == 0 {
			return http.StatusServiceUnavailable
		}
		return http.StatusNoContent
	})
	ep := &endpoint{}
	ep.set(r.listen(t, ""), r.secret)
	d := newDispatcher(q, ep, clk, zap.NewNop(), "gw1")
	d.PollInterval = time.Minute
	var outcomes, backlog []string
	d.OnDelivery = func(clientID, outcome string) { outcomes = append(outcomes, clientID+" "+outcome) }
	d.Backlog = q.Backlog
	d.OnBacklog = func(n int64, age time.Duration) { backlog = append(backlog, fmt.Sprint(n, " ", age)) }
	ctx := t.Context()
	if err := d.ConsentRevoked(ctx, alice); err != nil {
		t.Fatal(err)
	}

	clk.Advance(time.Minute)
	d.poll(ctx) // fails: retried after the first backoff
	d.poll(ctx) // within the poll interval: no second read
	clk.Advance(time.Hour)
	d.poll(ctx) // delivered
	clk.Advance(time.Hour)
	d.poll(ctx) // nothing queued

	if want := []string{"app failed", "app delivered"}; !slices.Equal(outcomes, want) {
		t.Errorf("outcomes %q, want %q", outcomes, want)
	}
	if want := []string{"1 1m0s", "1 1h1m0s", "0 0s"}; !slices.Equal(backlog, want) {
		t.Errorf("backlog readings %q, want %q", backlog, want)
	}
}
