package caddymodule

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/tollgate/tollgate/caddymodule/oauth"
	"github.com/tollgate/tollgate/caddymodule/store"
)

// Sign-in attempts are counted in the store, so that every gateway
// instance shares the counts, per username (default 10 per 15 minutes) and
// per client address (default 100 per 15 minutes). An attempt is reserved
// (counted) before the password is checked, so that however many arrive at
// once, no more than the limit are ever checked in a window; bcrypt's cost
// alone would let an attacker try thousands of passwords a day against one
// account. A successful sign-in clears its username's count; an operator
// clears a lock through the admin API (admin.go).
var (
	defaultSignInLimit        = store.Limit{Count: 10, Window: 15 * time.Minute}
	defaultSignInAddressLimit = store.Limit{Count: 100, Window: 15 * time.Minute}
)

// signInResult is the outcome of a sign-in form.
type signInResult struct {
	// Subject is the user signed in, "" when refused.
	Subject string
	// Session is the digest of the new session's id.
	Session string
	// Msg and Status are what the form shows on refusal.
	Msg    string
	Status int
}

// signInNotExpected refuses a sign-in form where the authenticator takes
// no password (it reads the user from the request instead).
var signInNotExpected = signInResult{Msg: "Signing in is not expected here.", Status: http.StatusBadRequest}

// signIn checks the sign-in form of r (username and password, parsed into
// r.PostForm) under the throttle and, on success, starts a new session (a
// new id, so that an id planted before sign-in is worthless after it:
// session fixation). It is the one sign-in of both the authorization pages
// and the connections page; clientID is the client of the authorization
// request, "" on the connections page.
func (a *App) signIn(w http.ResponseWriter, r *http.Request, clientID string) (signInResult, error) {
	users, ok := a.users.(PasswordAuthenticator)
	if !ok {
		return signInNotExpected, nil
	}
	username, password := r.PostForm.Get("username"), r.PostForm.Get("password")
	ctx := r.Context()
	userKey := signInUserKey(username)
	who := auditSignIn(clientID, knownUser(users, username))
	if res, err := a.reserveSignIn(ctx, signInAddressKey(r), userKey, who); res.Msg != "" || err != nil {
		return res, err
	}
	subject, ok := users.Login(username, password)
	if !ok {
		a.auditEvent(ctx, auditSignInFailed, who)
		countSignIn("failure")
		return signInResult{Msg: "The username or password is not right.", Status: http.StatusUnauthorized}, nil
	}
	countSignIn("success")
	if err := a.failures.ClearFailures(ctx, userKey, a.signInLimit.Window); err != nil {
		a.logger.Warn("clearing the sign-in count failed", zap.Error(err))
	}
	if c, err := r.Cookie(sessionCookie); err == nil && c.Value != "" && len(c.Value) <= 128 {
		_ = a.blobs.DeleteBlob(ctx, sessionKey(oauth.Digest(c.Value)))
	}
	digest, err := a.newSession(ctx, w, r, subject)
	if err != nil {
		return signInResult{}, err
	}
	a.auditEvent(ctx, auditSignInSucceeded, auditSignIn(clientID, subject))
	return signInResult{Subject: subject, Session: digest}, nil
}

// reserveSignIn counts one attempt against the client address and then
// the username, each in one atomic store step, and refuses it (a message
// and 429) when either is over its limit. An attempt refused for its
// address is not counted against the username, so one noisy address
// cannot lock an account by itself beyond its own limit. who names the
// attempt in the audit log.
func (a *App) reserveSignIn(ctx context.Context, addrKey, userKey string, who zap.Field) (signInResult, error) {
	for _, c := range [...]struct {
		key, by string
		limit   store.Limit
		msg     string
	}{
		{addrKey, "address", a.signInAddressLimit, "Too many sign-in attempts from your network."},
		{userKey, "username", a.signInLimit, "Too many failed sign-ins for this account."},
	} {
		if c.key == "" || c.limit.Count == 0 {
			continue
		}
		n, reset, err := a.failures.CountFailure(ctx, c.key, c.limit.Window)
		if err != nil {
			return signInResult{}, fmt.Errorf("counting a sign-in attempt: %w", err)
		}
		if n > c.limit.Count {
			a.auditEvent(ctx, auditSignInThrottled, who, zap.String("limit", c.by), zap.Time("until", reset))
			countSignIn("throttled_" + c.by)
			wait := max(time.Minute, reset.Sub(a.now()).Round(time.Minute))
			return signInResult{
				Msg:    fmt.Sprintf("%s Try again in %d minutes.", c.msg, int(wait/time.Minute)),
				Status: http.StatusTooManyRequests,
			}, nil
		}
	}
	return signInResult{}, nil
}

// signInUserKey is the counter of a username. Unknown usernames are
// counted like known ones, so the throttle does not tell which exist.
func signInUserKey(username string) string {
	return "login:" + oauth.Digest(strings.ToLower(username))
}

// signInAddressKey is the counter of the request's client address as
// Caddy determined it (the connection's peer, or the address a proxy
// listed in the server's trusted_proxies vouches for; never a raw
// X-Forwarded-For). IPv6 addresses count per /64, the block one host
// usually has.
func signInAddressKey(r *http.Request) string {
	raw, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	if raw == "" {
		raw, _, _ = net.SplitHostPort(r.RemoteAddr)
	}
	ip, err := netip.ParseAddr(raw)
	if err != nil {
		return ""
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		ip = netip.PrefixFrom(ip, 64).Masked().Addr()
	}
	return "login-addr:" + ip.String()
}
