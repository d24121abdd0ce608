// Package store defines what Tollgate keeps server-side and the contract that
// every backing store (the embedded memory store and Redis) must honour.
//
// The unit of state is the grant: one user's consent to one client. Every
// code, access token, refresh token and rate-limit counter belongs to exactly
// one grant and is addressed by the grant id, so that in Redis every key one
// atomic operation touches shares the grant's hash tag
// (docs/architecture.md §6.1, §6.3) and revoking a grant is one atomic
// step.
//
// The store never sees a token, code or secret: callers pass SHA-256 digests.
// All expiry decisions are made against the store's injected clock, so the
// contract suite can move time forward on both implementations; Redis key
// TTLs only collect garbage.
package store

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors. Any other error from a Store means the store could not be
// reached or answered nonsense; handlers map those to 503, never to 401.
var (
	// ErrNotFound: the code, token, grant or blob does not exist, has
	// expired, or belongs to a revoked grant.
	ErrNotFound = errors.New("not found")

	// ErrCodeReplayed: the authorization code was already consumed. When
	// tokens had been issued from it, the store has revoked the whole grant
	// in the same atomic step (RFC 6749 §4.1.2).
	ErrCodeReplayed = errors.New("authorization code replayed")

	// ErrRefreshReused: a refresh token that was already rotated out was
	// presented again after the grace window; the store has revoked the
	// whole grant in the same atomic step (RFC 9700 §4.14.2).
	ErrRefreshReused = errors.New("refresh token reused")
)

// RotatedRemembered is how many rotated-out refresh tokens a grant
// remembers for reuse detection (RFC 9700 §4.14.2). A store keeps them in a
// fixed ring inside the grant, replacing the oldest, so that a grant costs
// the same after 10,000 refreshes as after one (README.md "Refresh tokens,
// reuse and disconnect"): a record per rotation, kept for the refresh
// token's lifetime, made a grant refreshed hourly grow to ~0.9 MB in 90
// days.
const RotatedRemembered = 4

// PairsPerGrant is how many token pairs a grant holds at once: a user may
// connect one client more than once (two installs of an app, or a partner
// that authorizes again for more scopes), and every pair works until it is
// rotated, expires or the grant is revoked. A fixed number keeps a grant's
// size bounded: a partner that authorizes again and again without using
// its earlier pairs pushes out the one that would expire first.
const PairsPerGrant = 4

// Grant is one user's consent to one client.
type Grant struct {
	ID       string   `json:"id"`
	ClientID string   `json:"client_id"`
	Subject  string   `json:"subject"`
	Scopes   []string `json:"scopes"` // union of every scope consented to
	// Profile is a snapshot of the user's profile fields taken at consent
	// (name, role, country, picture), used by /userinfo when the user
	// authenticator cannot look the user up again.
	Profile    map[string]string `json:"profile,omitempty"`
	CreatedAt  time.Time         `json:"created_at"`
	LastUsedAt time.Time         `json:"last_used_at"`
}

// Code is a pending authorization code, stored under its digest.
type Code struct {
	ClientID string `json:"client_id"`
	Subject  string `json:"subject"`
	// RedirectURI is the redirect_uri given at authorize ("" when it was
	// omitted); the token request must present the same value.
	RedirectURI string `json:"redirect_uri"`
	// Challenge is the S256 code_challenge ("" when none was sent).
	Challenge string    `json:"challenge"`
	Scopes    []string  `json:"scopes"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Token is the stored record of an access or refresh token.
type Token struct {
	Digest    string    `json:"digest"` // hex SHA-256 of the token
	ClientID  string    `json:"client_id"`
	Subject   string    `json:"subject"`
	Scopes    []string  `json:"scopes"`
	ExpiresAt time.Time `json:"expires_at"`
	// Pair is the digest of the other token of the pair ("" for an access
	// token issued without a refresh token).
	Pair string `json:"pair,omitempty"`
	// Limit is the client's budget, recorded on the access token at issue:
	// the budget depends on the client, which only the token record names,
	// so Authenticate reads it there rather than needing a lookup before
	// its round trip.
	Limit Limit `json:"limit,omitzero"`
}

// Pair is what one token response hands out. Refresh.Digest is "" when the
// client gets no refresh token.
type Pair struct {
	Access  Token
	Refresh Token
}

// Event is a webhook event waiting for delivery.
type Event struct {
	// ID is stable across attempts, so that receivers can de-duplicate
	// (Standard Webhooks' webhook-id).
	ID       string `json:"id"`
	ClientID string `json:"client_id"`
	// Payload is the JSON body, fixed when the event is queued so that
	// every attempt sends the same bytes.
	Payload     []byte    `json:"payload"`
	CreatedAt   time.Time `json:"created_at"`
	Attempts    int       `json:"attempts"`
	NextAttempt time.Time `json:"next_attempt"`
	// Handle is the store's own reference to the queued entry (the stream
	// entry id on Redis); callers pass it back untouched.
	Handle string `json:"-"`
}

// Kind distinguishes the two token kinds; they live under different keys.
type Kind string

const (
	Access  Kind = "at"
	Refresh Kind = "rt"
)

// Limit is a rate-limit budget: Count requests per fixed Window. A zero
// Count means unlimited (nothing is counted). Windows are aligned to the
// Unix epoch, so every gateway instance agrees on when one ends. A grant has
// one counter, so the budgets counted against one grant should share a
// window: a request under another window starts the count afresh.
type Limit struct {
	Count  int64
	Window time.Duration
}

// RateStatus is the state of a grant's budget after counting one request.
type RateStatus struct {
	Limit     int64
	Window    time.Duration // the budget's window (0 when nothing was counted)
	Remaining int64         // never negative
	Reset     time.Time     // when the current window ends
	Allowed   bool          // false: the request exceeded the budget
}

// Store is everything the handlers need from a backing store: the roles
// below, one per kind of state, each used by the handlers that touch that
// state (docs/architecture.md §6). A handler names the roles it uses, so
// that what it may do to the store shows where it does it.
type Store interface {
	Grants
	Codes
	Tokens
	Budgets
	Blobs
	FailureCounts
	Events
	Lifecycle
}

// Grants keeps the grants themselves: consent writes them, the
// connections page and the admin API list and revoke them, /userinfo
// reads the profile snapshot.
type Grants interface {
	// SaveGrant creates the grant or, when it exists, adds the scopes and
	// profile to it. Its lifetime is extended to at least ttl. A live grant
	// with that id but another client or subject is left as it is, and the
	// error wraps ErrGrantOwner.
	SaveGrant(ctx context.Context, g Grant, ttl time.Duration) error
	// GetGrant returns a live grant or ErrNotFound.
	GetGrant(ctx context.Context, grantID string) (Grant, error)
	// RevokeGrant deletes the grant and every code, token and counter of it
	// atomically and returns what was revoked, or ErrNotFound.
	RevokeGrant(ctx context.Context, grantID string) (Grant, error)
	// ListGrants returns the live grants of a subject, newest first: the
	// user's connected apps. It reads an index kept beside the grants
	// (docs/architecture.md §6.5: indexes that span grants live in their
	// own keys, written after the grant; the grant is the source of truth),
	// so an entry whose grant is gone is skipped and pruned.
	ListGrants(ctx context.Context, subject string) ([]Grant, error)
}

// Codes keeps authorization codes: consent stores one, the token
// endpoint consumes it.
type Codes interface {
	// SaveCode stores an authorization code of a live grant (ErrNotFound
	// when the grant does not exist).
	SaveCode(ctx context.Context, grantID, digest string, c Code) error
	// ConsumeCode takes the code atomically: a second call for the same
	// digest returns ErrCodeReplayed (and, when IssueTokens already ran for
	// it, the grant is revoked in the same step); an unknown or expired code
	// gives ErrNotFound.
	ConsumeCode(ctx context.Context, grantID, digest string) (Code, error)
}

// Tokens keeps token pairs: the token endpoint issues and rotates them,
// revocation and introspection look them up.
type Tokens interface {
	// IssueTokens stores the pair issued for a consumed code. It fails with
	// ErrCodeReplayed if the code was presented again in between (and
	// revokes the grant), and with ErrNotFound if the grant is gone. A
	// grant holds at most PairsPerGrant pairs: when it holds that many live
	// ones, the new pair replaces the one that would expire first, whose
	// tokens are then simply not found (not a reuse).
	IssueTokens(ctx context.Context, grantID, codeDigest string, p Pair) error
	// GetToken returns a live token of the given kind or ErrNotFound.
	GetToken(ctx context.Context, grantID string, kind Kind, digest string) (Token, error)
	// RevocableToken is GetToken without the token's own expiry: it
	// returns the token while it is still one of its live grant's current
	// pairs (not rotated out or replaced), expired or not, else
	// ErrNotFound. A revocation (RFC 7009 §2.1) names what a client holds,
	// and a client's stored access token has often expired: it must still
	// end the connection, while a token rotated out long ago must not
	// touch the grant it once belonged to.
	RevocableToken(ctx context.Context, grantID string, kind Kind, digest string) (Token, error)
	// Rotate atomically deletes the refresh token oldRefresh and its paired
	// access token and stores the new pair. Of two concurrent calls for one
	// refresh token exactly one succeeds; the other gets ErrNotFound. In
	// the same step it records that oldRefresh was rotated out, and when,
	// and until when oldRefresh would have lived, in the grant's ring of
	// the last RotatedRemembered rotations.
	Rotate(ctx context.Context, grantID, oldRefresh string, p Pair) error
	// CheckReuse is asked about a refresh token that GetToken did not find.
	// When it is one of the last RotatedRemembered refresh tokens rotated
	// out of the grant, rotated out more than grace ago and not past its
	// own expiry, the grant is revoked in the same atomic step and
	// ErrRefreshReused is returned with the grant revoked. Inside grace (two
	// racing refreshes, docs/partners.md D36: one wins and the loser must
	// not be sent to re-consent), for a token never seen or rotated out
	// longer ago than the ring reaches, or for one whose grant is already
	// gone, it returns ErrNotFound and revokes nothing.
	CheckReuse(ctx context.Context, grantID, refreshDigest string, grace time.Duration) (Grant, error)
}

// Budgets is the API hot path (docs/architecture.md §5): checking an
// access token and counting the request against its grant's budget, and
// giving a request back.
type Budgets interface {
	// Authenticate is the API hot path, one round trip or none (the Redis
	// store, docs/architecture.md §5.2): it looks the access token up, checks it is live and its grant alive, counts one request
	// against the grant's budget and records the grant as used. The budget
	// is l, or the token's own Limit when l is the zero Limit.
	Authenticate(ctx context.Context, grantID, accessDigest string, l Limit) (Token, RateStatus, error)
	// Refund gives back one request of the grant's current window (a 304),
	// l being the budget the request was counted against, and reports
	// whether it did. It never takes the count below 0, and gives back at
	// most l.Count requests per grant per window: every request that
	// reaches the upstream was counted, so the upstream serves a grant at
	// most 2×l.Count requests per window however many 304s it answers
	// (README, Rate limits). The refund count is kept beside the budget's
	// counter, in the grant's keys, and ends with the window. It is atomic:
	// of concurrent calls, at most the cap succeed.
	Refund(ctx context.Context, grantID string, l Limit) (bool, error)
}

// LocalAuthenticator is implemented by a store that can often decide
// Authenticate from what it holds in process, with no I/O (the Redis
// store's remembered tokens, with liveness it vouches for and budget it
// has leased: docs/architecture.md §5.2). decided is false when the call
// must be made with Authenticate. Callers use it to skip what only a call
// that waits needs, such as a deadline's timer.
type LocalAuthenticator interface {
	AuthenticateLocal(grantID, accessDigest string, l Limit) (t Token, st RateStatus, decided bool)
}

// Blobs keeps small opaque values (sessions, pending authorization
// requests, the form-signing key) under a caller-chosen key.
type Blobs interface {
	// SetBlob, GetBlob and TakeBlob keep a value under key for ttl.
	// TakeBlob gets and deletes atomically, so a value is taken once.
	SetBlob(ctx context.Context, key string, value []byte, ttl time.Duration) error
	GetBlob(ctx context.Context, key string) ([]byte, error)
	TakeBlob(ctx context.Context, key string) ([]byte, error)
	DeleteBlob(ctx context.Context, key string) error
	// LoadOrStoreBlob stores value under key, with no expiry, unless the
	// key already holds a value, and returns the value the key holds
	// afterwards. It is atomic: concurrent calls with different values
	// all return the one value that was stored first. Gateway instances
	// use it to agree on one shared secret (the form-signing key).
	LoadOrStoreBlob(ctx context.Context, key string, value []byte) ([]byte, error)
}

// FailureCounts counts failures per key in fixed windows: sign-in attempts
// per username and per client address, and the admin API's unlock.
type FailureCounts interface {
	// CountFailure counts one failure under key in a fixed window (aligned to
	// the epoch, judged by the store's clock) and returns how many failures
	// the key has had in the current window, this one included, and when the
	// window ends. Counters of different keys are independent; a counter
	// disappears after its window. It is atomic: n concurrent calls return
	// 1..n exactly once each.
	//
	// The window is counted in whole milliseconds, and each window length
	// has counters of its own: one key counted under a minute and under an
	// hour has two independent counts. A window shorter than 1ms or an
	// empty key is a store error.
	CountFailure(ctx context.Context, key string, window time.Duration) (count int64, reset time.Time, err error)
	// Failures returns the current window's count for key without counting.
	Failures(ctx context.Context, key string, window time.Duration) (count int64, reset time.Time, err error)
	// ClearFailures sets the current window's count for key back to zero.
	ClearFailures(ctx context.Context, key string, window time.Duration) error
}

// Events is the webhook queue (docs/architecture.md §7): a disconnect
// queues an event, the webhook dispatcher claims, acks and retries.
type Events interface {
	// EnqueueEvent durably stores a webhook event for delivery before it
	// returns (docs/architecture.md §7). On Redis the queue is a Stream
	// with a consumer group, so several gateway instances share deliveries.
	EnqueueEvent(ctx context.Context, e Event) error
	// ClaimEvents leases up to max events that are due (NextAttempt not
	// after now) to consumer for lease; an event whose lease ran out
	// without an ack or retry (its claimer died) is due again.
	ClaimEvents(ctx context.Context, consumer string, max int, lease time.Duration) ([]Event, error)
	// AckEvent removes a delivered (or abandoned) event for good.
	AckEvent(ctx context.Context, e Event) error
	// RetryEvent records a failed attempt: Attempts is incremented and the
	// event is not due again before next.
	RetryEvent(ctx context.Context, e Event, next time.Time) error
}

// Lifecycle is the store's connection rather than its state: the
// handlers never call it.
type Lifecycle interface {
	// Ping reports whether the store can be reached.
	Ping(ctx context.Context) error
	Close() error
}
