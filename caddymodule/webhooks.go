package caddymodule

import (
	"context"
	"fmt"
	"time"

	"github.com/tollgate/tollgate/caddymodule/store"
)

// webhookTarget is where a client's events go and the key that signs them.
type webhookTarget struct {
	url    string
	secret []byte
}

// webhookEndpoint tells the dispatcher where a client's events go.
func (a *App) webhookEndpoint(clientID string) (string, []byte, bool) {
	c := a.clients[clientID]
	if c == nil || c.webhook == nil {
		return "", nil, false
	}
	return c.webhook.url, c.webhook.secret, true
}

// queueConsentRevoked queues the user.consent.revoked event of a grant for
// its client's webhook, if it has one, returning once the store holds it.
func (a *App) queueConsentRevoked(ctx context.Context, g store.Grant) error {
	// The dispatcher's queue is the store without the request deadline
	// (its background calls have their own); this call is a request's.
	ctx, cancel := context.WithTimeout(ctx, time.Duration(a.StoreTimeout))
	defer cancel()
	if err := a.webhooks.ConsentRevoked(ctx, g); err != nil {
		return fmt.Errorf("queueing user.consent.revoked: %w", err)
	}
	return nil
}

// countDelivery counts a webhook attempt's outcome (metrics.go).
func (a *App) countDelivery(clientID, outcome string) {
	metrics.deliveries.WithLabelValues(a.clientLabel(clientID), outcome).Inc()
}

// setBacklog publishes the webhook queue's backlog as the dispatcher last
// read it. Every instance reads the same shared queue, so the instances'
// figures agree up to a poll interval.
func setBacklog(events int64, oldestAge time.Duration) {
	metrics.queueDepth.WithLabelValues().Set(float64(events))
	metrics.oldestAge.WithLabelValues().Set(oldestAge.Seconds())
}
