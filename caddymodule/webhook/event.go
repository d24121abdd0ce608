package webhook

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"

	"github.com/tollgate/tollgate/caddymodule/store"
)

// TypeConsentRevoked is sent when a user disconnects a client: the client
// must stop using the user's tokens (they are already revoked) and delete
// the user's data as its agreement requires.
const TypeConsentRevoked = "user.consent.revoked"

// envelope is the body of every event, in the Standard Webhooks shape plus
// the event id, so that a receiver that logs bodies can de-duplicate too.
type envelope struct {
	ID        string `json:"id"`
	Type      string `json:"type"`
	Timestamp string `json:"timestamp"`
	Data      any    `json:"data"`
}

// ConsentRevoked is the data of a user.consent.revoked event. It names the
// grant, never a token: the tokens are dead, and a body that carried one
// would put a credential into every receiver's logs.
type ConsentRevoked struct {
	ClientID string   `json:"client_id"`
	Subject  string   `json:"subject"`
	Scopes   []string `json:"scopes"`
}

// NewConsentRevoked builds the user.consent.revoked event of a revoked
// grant, ready to queue.
func NewConsentRevoked(g store.Grant, now time.Time) (store.Event, error) {
	scopes := g.Scopes
	if scopes == nil {
		scopes = []string{} // "scopes": [] rather than null
	}
	return NewEvent(TypeConsentRevoked, g.ClientID, ConsentRevoked{
		ClientID: g.ClientID, Subject: g.Subject, Scopes: scopes,
	}, now)
}

// NewEvent builds an event for clientID with a fresh id. The body is fixed
// here, so that every attempt sends (and signs) the same bytes.
func NewEvent(typ, clientID string, data any, now time.Time) (store.Event, error) {
	id, err := newEventID()
	if err != nil {
		return store.Event{}, err
	}
	now = now.Truncate(time.Millisecond) // what the stores keep
	body, err := json.Marshal(envelope{
		ID:        id,
		Type:      typ,
		Timestamp: now.UTC().Format(time.RFC3339Nano),
		Data:      data,
	})
	if err != nil {
		return store.Event{}, fmt.Errorf("encoding %s event: %w", typ, err)
	}
	return store.Event{ID: id, ClientID: clientID, Payload: body, CreatedAt: now}, nil
}

// newEventID returns "evt_" and 128 random bits in base64url: unique without
// coordination between gateway instances, and free of the "." that the
// signed "id.timestamp.body" string uses as its separator.
func newEventID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("drawing an event id: %w", err)
	}
	return "evt_" + base64.RawURLEncoding.EncodeToString(b[:]), nil
}
