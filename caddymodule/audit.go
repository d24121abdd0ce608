package caddymodule

import (
	"context"
	"encoding/json"
	"net"
	"net/http"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/tollgate/tollgate/caddymodule/oauth"
	"github.com/tollgate/tollgate/caddymodule/store"
)

// The audit log (README "Audit log"): one Info entry per security-relevant
// event, on the logger tollgate.audit, whose message is the event's stable
// name and whose fields name the client, the user, the grant and the
// tokens involved by short digests. Nothing that authenticates anyone is
// ever in it: no token, code, code_verifier, client secret, password,
// session id, cookie, CSRF token or webhook secret, at any level.
const (
	auditConsentGranted    = "consent_granted"
	auditConsentDenied     = "consent_denied"
	auditCodeIssued        = "code_issued"
	auditCodeReplayed      = "code_replayed"
	auditTokensIssued      = "tokens_issued"
	auditTokensRefreshed   = "tokens_refreshed"
	auditTokenRevoked      = "token_revoked"
	auditRefreshReused     = "refresh_token_reused"
	auditGrantDisconnected = "grant_disconnected"
	auditGrantsListed      = "grants_listed"
	auditSignInSucceeded   = "sign_in_succeeded"
	auditSignInFailed      = "sign_in_failed"
	auditSignInThrottled   = "sign_in_throttled"
	auditWebhookGivenUp    = "webhook_given_up"
)

// auditDigestLen is how many hex digits of a token's SHA-256 the audit log
// keeps: 64 bits tell any two tokens of a deployment apart and let an
// operator match a token they hold (README "Audit log"), without making
// the log an index of the store's keys.
const auditDigestLen = 16

// newAuditLogger is the app's audit logger. The app's own logger is
// ctx.Logger(), named after the module ID "tollgate" and built with the
// cores of every configured log whose include and exclude let that
// module's loggers through; a log with `include tollgate.audit` therefore
// receives this child and nothing else of the app. caddy.Log() would not
// do: it writes to the default log only.
func newAuditLogger(appLogger *zap.Logger) *zap.Logger {
	return appLogger.Named("audit")
}

// auditEvent writes one audit entry, adding the client's address when the
// request in ctx has one.
func (a *App) auditEvent(ctx context.Context, event string, fields ...zap.Field) {
	if ip := auditClientIP(ctx); ip != "" {
		fields = append(fields, zap.String("client_ip", ip))
	}
	a.audit.Info(event, fields...)
}

// auditClientIP is the client address Caddy's HTTP server determined for
// the request (the connection's peer, or the address a proxy listed in
// trusted_proxies vouches for: what client_ip means in Caddy's access
// log), or the peer of an admin API request (auditRequest).
func auditClientIP(ctx context.Context) string {
	if ip, _ := caddyhttp.GetVar(ctx, caddyhttp.ClientIPVarKey).(string); ip != "" {
		return ip
	}
	ip, _ := ctx.Value(auditPeerKey{}).(string)
	return ip
}

type auditPeerKey struct{}

// auditRequest gives a request that did not pass through Caddy's HTTP
// server (the admin API's) its peer address for the audit log.
func auditRequest(r *http.Request) *http.Request {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return r.WithContext(context.WithValue(r.Context(), auditPeerKey{}, host))
}

// auditGrant names a grant: client_id, and subject and grant_id when known
// (grant_id is derived from the other two when not given).
func auditGrant(grantID, clientID, subject string) zap.Field {
	if grantID == "" && subject != "" {
		grantID = oauth.GrantID(clientID, subject)
	}
	return zap.Inline(auditGrantRef{grantID: grantID, clientID: clientID, subject: subject})
}

type auditGrantRef struct{ grantID, clientID, subject string }

func (g auditGrantRef) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	enc.AddString("client_id", g.clientID)
	if g.subject != "" {
		enc.AddString("subject", g.subject)
	}
	if g.grantID != "" {
		enc.AddString("grant_id", g.grantID)
	}
	return nil
}

// auditDigest is the short form of a digest the store keeps (oauth.Digest,
// hex SHA-256): its first auditDigestLen hex digits.
func auditDigest(key, digest string) zap.Field {
	if digest == "" {
		return zap.Skip()
	}
	return zap.String(key, digest[:min(len(digest), auditDigestLen)])
}

// auditPair names a token pair by access_digest and, when the client gets
// refresh tokens, refresh_digest.
func auditPair(p store.Pair) zap.Field {
	return zap.Inline(zapcore.ObjectMarshalerFunc(func(enc zapcore.ObjectEncoder) error {
		for _, f := range []zap.Field{auditDigest("access_digest", p.Access.Digest), auditDigest("refresh_digest", p.Refresh.Digest)} {
			f.AddTo(enc)
		}
		return nil
	}))
}

// auditTokenType names a token's kind as RFC 7009 §2.1's token_type_hint
// values do.
func auditTokenType(kind store.Kind) zap.Field {
	if kind == store.Refresh {
		return zap.String("token_type", "refresh_token")
	}
	return zap.String("token_type", "access_token")
}

// auditSignIn names a sign-in attempt: client_id and page "authorize" on
// the authorization page, page "connections" on the connected-apps page,
// and the subject when known. Callers pass a refused username only when it
// is a known user's (knownUser): an unknown one may be a password typed
// into the wrong field.
func auditSignIn(clientID, subject string) zap.Field {
	page := "connections"
	if clientID != "" {
		page = "authorize"
	}
	return zap.Inline(zapcore.ObjectMarshalerFunc(func(enc zapcore.ObjectEncoder) error {
		enc.AddString("page", page)
		if clientID != "" {
			enc.AddString("client_id", clientID)
		}
		if subject != "" {
			enc.AddString("subject", subject)
		}
		return nil
	}))
}

// knownUser returns username when the authenticator knows it, else "".
func knownUser(users Authenticator, username string) string {
	if users.Profile(username) == nil {
		return ""
	}
	return username
}

// auditWebhookGivenUp is the webhook dispatcher's GaveUp hook: the user
// whose disconnect the partner was never told of, and why.
func (a *App) auditWebhookGivenUp(e store.Event, reason string, attempts int) {
	var body struct {
		Type string `json:"type"`
		Data struct {
			Subject string `json:"subject"`
		} `json:"data"`
	}
	_ = json.Unmarshal(e.Payload, &body)
	a.auditEvent(context.Background(), auditWebhookGivenUp,
		auditGrant("", e.ClientID, body.Data.Subject),
		zap.String("event_id", e.ID), zap.String("event_type", body.Type),
		zap.String("reason", reason), zap.Int("attempts", attempts), zap.Time("created", e.CreatedAt))
}
