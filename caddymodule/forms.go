package caddymodule

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// Someone who has not signed in writes nothing to the store: the sign-in
// forms carry what they need themselves, integrity-protected with an HMAC
// key that every gateway instance shares through the store (README,
// "Security"). Only a successful sign-in creates server-side state.

// loginCookie binds an anonymous browser to the forms it was shown. It
// holds 256 random bits and is never stored: the forms carry an HMAC of
// it, which a cross-site page cannot compute (login CSRF, RFC 6749 §10.12).
const loginCookie = "tollgate_login"

// formKeyBlob is the store key of the shared form-signing key.
const formKeyBlob = "formkey"

// sealedPrefix marks a sign-in form's transaction: the authorization
// request sealed into the form, where a consent form's tx is the random id
// of a request kept server-side.
const sealedPrefix = "l."

// formKeyRecheck is how often an instance confirms in the background that
// the store still holds the key it cached.
const formKeyRecheck = time.Minute

// formKey returns the key that signs anonymous forms, created in the store
// by whichever instance needs it first and cached afterwards.
func (a *App) formKey(ctx context.Context) ([]byte, error) {
	if k := a.formKeyCache.Load(); k != nil {
		a.recheckFormKey(*k)
		return *k, nil
	}
	fresh := make([]byte, 32)
	if _, err := a.rand.Read(fresh); err != nil {
		return nil, fmt.Errorf("reading randomness: %w", err)
	}
	k, err := a.blobs.LoadOrStoreBlob(ctx, formKeyBlob, fresh)
	if err != nil {
		return nil, fmt.Errorf("loading the form key: %w", err)
	}
	if len(k) != 32 {
		return nil, fmt.Errorf("the stored form key has %d bytes, want 32", len(k))
	}
	a.formKeyCache.Store(&k)
	a.formKeyChecked.Store(a.now().UnixNano())
	return k, nil
}

// recheckFormKey confirms, at most once per formKeyRecheck and without
// making the request wait, that the store still holds the cached key. A
// store that lost it (a Redis restarted empty, a failover to an empty
// replica) gets it back; a key another instance stored meanwhile is
// adopted. Either way the instances agree on one key again, so that a
// sign-in form served by one is accepted by the others; without this,
// each kept the key it had cached until it restarted. A store that does
// not answer leaves the cached key in use.
func (a *App) recheckFormKey(cached []byte) {
	now := a.now().UnixNano()
	last := a.formKeyChecked.Load()
	if now-last < int64(formKeyRecheck) || !a.formKeyChecked.CompareAndSwap(last, now) {
		return
	}
	go func() {
		// Bounded by store_timeout, like every call to a networked store
		// (deadline.go).
		k, err := a.blobs.LoadOrStoreBlob(context.Background(), formKeyBlob, cached)
		if err != nil || len(k) != 32 || hmac.Equal(k, cached) {
			return
		}
		a.formKeyCache.Store(&k)
		a.logger.Warn("the store holds another form-signing key than this instance had; adopted it (sign-in forms shown before may need a reload)")
	}()
}

// mac is HMAC-SHA256 under the form key of the parts, each part's purpose
// separated from the next so that no MAC can stand in for another.
func mac(key []byte, parts ...string) []byte {
	m := hmac.New(sha256.New, key)
	for _, p := range parts {
		m.Write([]byte(p))
		m.Write([]byte{0})
	}
	return m.Sum(nil)
}

// sealForm encodes v and its MAC for a hidden form field.
func sealForm(key []byte, v any) (string, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	payload := base64.RawURLEncoding.EncodeToString(raw)
	return sealedPrefix + payload + "." + base64.RawURLEncoding.EncodeToString(mac(key, "tollgate form", payload)), nil
}

// openForm checks the MAC of a sealed field and decodes it into v.
func openForm(key []byte, sealed string, v any) bool {
	rest, ok := strings.CutPrefix(sealed, sealedPrefix)
	if !ok || len(sealed) > maxSealedForm {
		return false
	}
	payload, sig, ok := strings.Cut(rest, ".")
	if !ok {
		return false
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, mac(key, "tollgate form", payload)) {
		return false
	}
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	return err == nil && json.Unmarshal(raw, v) == nil
}

// maxSealedForm bounds the sealed field read back from a form: the largest
// authorization request (oauth.MaxState and the other parameter maximums)
// seals to well under it.
const maxSealedForm = 16 << 10

// loginBinding returns the browser's login cookie, setting a new one when
// the request has none. Nothing is stored.
func (a *App) loginBinding(w http.ResponseWriter, r *http.Request) (string, error) {
	if v := readLoginCookie(r); v != "" {
		return v, nil
	}
	id, err := randomID(a)
	if err != nil {
		return "", err
	}
	setCookie(w, r, loginCookie, id, pendingLifetime)
	return id, nil
}

// setCookie sets one of the gateway's cookies: site-wide, HttpOnly,
// SameSite=Lax (sent on the top-level navigation back from a partner, not
// on cross-site posts), Secure when the request came over TLS.
func setCookie(w http.ResponseWriter, r *http.Request, name, value string, life time.Duration) {
	http.SetCookie(w, &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     "/",
		MaxAge:   int(life / time.Second),
		HttpOnly: true,
		Secure:   r.TLS != nil,
		SameSite: http.SameSiteLaxMode,
	})
}

// readLoginCookie returns the request's login cookie, or "" when it has
// none or one that is not 43 base64url characters.
func readLoginCookie(r *http.Request) string {
	c, err := r.Cookie(loginCookie)
	if err != nil || len(c.Value) != 43 {
		return ""
	}
	if _, err := base64.RawURLEncoding.DecodeString(c.Value); err != nil {
		return ""
	}
	return c.Value
}

func randomID(a *App) (string, error) {
	b := make([]byte, 32)
	if _, err := a.rand.Read(b); err != nil {
		return "", fmt.Errorf("reading randomness: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// anonymousCSRF is the CSRF token of a form shown to a browser that has
// not signed in: an HMAC of its login cookie, bound to the page (and, with
// a preceding auth handler, to the user it vouches for).
func anonymousCSRF(key []byte, page, binding, subject string) string {
	return base64.RawURLEncoding.EncodeToString(mac(key, "tollgate csrf", page, binding, subject))
}

// formAction is the path a page's forms post to and its redirects point
// at: the request's path as the route matched it, cleaned (so "//host/.."
// or "/%2Fhost%2F.." cannot make it another origin) and escaped (so a
// backslash, which browsers read as a slash, stays a character). With the
// Content-Security-Policy form-action 'self' of every page, a form can
// only post back to this origin.
func formAction(r *http.Request) string {
	p := r.URL.Path
	if orig, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request); ok && orig.URL != nil {
		p = orig.URL.Path
	}
	p = path.Clean("/" + p)
	return (&url.URL{Path: p}).EscapedPath()
}
