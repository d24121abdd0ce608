package caddymodule

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/tollgate/tollgate/caddymodule/oauth"
)

// Failed sign-ins are counted per username in the store, so that every
// gateway instance shares the count: after loginFailures within
// loginWindow the form refuses that username, without checking the
// password, until the window ends. bcrypt's cost alone would let an
// attacker try thousands of passwords a day against one account.
const (
	loginFailures = 10
	loginWindow   = 15 * time.Minute
)

// checkPassword signs a user in from a login form. On refusal it returns
// the message the form shows and its status.
func (a *App) checkPassword(ctx context.Context, users PasswordAuthenticator, username, password string) (subject, msg string, status int, err error) {
	// Unknown usernames are counted like known ones, so the throttle does
	// not tell which exist.
	key := "login:" + oauth.Digest(strings.ToLower(username))
	n, reset, err := a.store.Failures(ctx, key, loginWindow)
	if err != nil {
		return "", "", 0, fmt.Errorf("reading sign-in failures: %w", err)
	}
	if n >= loginFailures {
		a.logger.Warn("sign-in throttled", zap.Time("until", reset))
		wait := max(time.Minute, reset.Sub(a.now()).Round(time.Minute))
		return "", fmt.Sprintf("Too many failed sign-ins for this account. Try again in %d minutes.", int(wait/time.Minute)), http.StatusTooManyRequests, nil
	}
	subject, ok := users.Login(username, password)
	if ok {
		return subject, "", http.StatusOK, nil
	}
	if _, _, err := a.store.CountFailure(ctx, key, loginWindow); err != nil {
		return "", "", 0, fmt.Errorf("counting sign-in failure: %w", err)
	}
	a.logger.Info("sign-in failed")
	return "", "The username or password is not right.", http.StatusUnauthorized, nil
}
