package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/tollgate/tollgate/caddymodule/oauth"
	"github.com/tollgate/tollgate/caddymodule/store"
)

// sessionCookie holds only a random id; the session itself is in the store
// under the id's digest, so a store dump cannot be replayed as cookies.
const sessionCookie = "tollgate_session"

// session is a browser's sign-in to the authorization pages. Sessions are
// created only at sign-in; a browser that has not signed in is bound to its
// forms by the login cookie instead (forms.go), which costs no state. A
// stored session with an empty Subject (written by earlier versions) counts
// as no session.
type session struct {
	Subject   string    `json:"sub,omitempty"`
	ExpiresAt time.Time `json:"exp"`
}

// pending is an authorization request between the authorize GET and the
// user's decision. It is kept server-side so that nothing on the consent
// form (client, scopes, redirect URI) is trusted from the browser.
type pending struct {
	ClientID    string            `json:"client_id"`
	RedirectURI string            `json:"redirect_uri"`
	Scopes      []string          `json:"scopes"`
	State       string            `json:"state"`
	Challenge   string            `json:"challenge"`
	Subject     string            `json:"sub,omitempty"`
	Profile     map[string]string `json:"profile,omitempty"`
	// Session is the digest of the session id the request is bound to
	// (empty with a RequestAuthenticator, where Subject binds it).
	Session string `json:"session,omitempty"`
	// CSRF is the digest of the token the form must echo.
	CSRF      string    `json:"csrf"`
	ExpiresAt time.Time `json:"exp"`
}

func sessionKey(digest string) string { return "sess:" + digest }
func pendingKey(tx string) string     { return "authz:" + oauth.Digest(tx) }

// loadSession returns the session of the request's cookie, with the digest
// of its id, or ok=false.
func (a *App) loadSession(ctx context.Context, r *http.Request) (s session, digest string, ok bool, err error) {
	c, cerr := r.Cookie(sessionCookie)
	if cerr != nil || c.Value == "" || len(c.Value) > 128 {
		return s, "", false, nil
	}
	digest = oauth.Digest(c.Value)
	raw, err := a.blobs.GetBlob(ctx, sessionKey(digest))
	if errors.Is(err, store.ErrNotFound) {
		return s, "", false, nil
	}
	if err != nil {
		return s, "", false, fmt.Errorf("loading session: %w", err)
	}
	if json.Unmarshal(raw, &s) != nil || !a.now().Before(s.ExpiresAt) {
		return s, "", false, nil
	}
	return s, digest, true, nil
}

// newSession stores a session of subject under a fresh random id, sets the
// cookie and returns the id's digest. Called at sign-in, so that an id an
// attacker planted before sign-in is worthless after it (session
// fixation).
func (a *App) newSession(ctx context.Context, w http.ResponseWriter, r *http.Request, subject string) (string, error) {
	id, err := oauth.RandomString(a.rand, 32)
	if err != nil {
		return "", err
	}
	life := time.Duration(a.SessionLifetime)
	digest := oauth.Digest(id)
	raw, _ := json.Marshal(session{Subject: subject, ExpiresAt: a.now().Add(life)})
	if err := a.blobs.SetBlob(ctx, sessionKey(digest), raw, life); err != nil {
		return "", fmt.Errorf("saving session: %w", err)
	}
	setCookie(w, r, sessionCookie, id, life)
	return digest, nil
}

// savePending stores p under tx.
func (a *App) savePending(ctx context.Context, tx string, p *pending) error {
	raw, _ := json.Marshal(p)
	ttl := p.ExpiresAt.Sub(a.now())
	if ttl <= 0 {
		return store.ErrNotFound
	}
	if err := a.blobs.SetBlob(ctx, pendingKey(tx), raw, ttl); err != nil {
		return fmt.Errorf("saving authorization request: %w", err)
	}
	return nil
}

// takePending takes the pending request tx out of the store, so that each
// form built on it is acted on once.
func (a *App) takePending(ctx context.Context, tx string) (*pending, error) {
	if tx == "" || len(tx) > 128 {
		return nil, store.ErrNotFound
	}
	raw, err := a.blobs.TakeBlob(ctx, pendingKey(tx))
	if err != nil {
		return nil, err
	}
	p := new(pending)
	if json.Unmarshal(raw, p) != nil || !a.now().Before(p.ExpiresAt) {
		return nil, store.ErrNotFound
	}
	return p, nil
}
