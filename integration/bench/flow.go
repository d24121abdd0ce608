package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// tokenPair is a token endpoint's answer.
type tokenPair struct {
	Access  string
	Refresh string
}

// browser is one user agent: its cookies (the sign-in session once signed
// in) and its connections to one gateway.
type browser struct {
	base string
	c    *http.Client
}

// newBrowser returns a browser for the gateway at base. Browsers share
// one keep-alive transport, large enough for every flow worker.
func newBrowser(base string) (*browser, error) {
	jar, err := cookiejar.New(nil)
	if err != nil {
		return nil, err
	}
	return &browser{base: base, c: &http.Client{
		Jar:       jar,
		Transport: flowTransport,
		Timeout:   15 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}}, nil
}

var flowTransport = &http.Transport{
	Proxy:               nil,
	MaxIdleConns:        256,
	MaxIdleConnsPerHost: 256,
	IdleConnTimeout:     90 * time.Second,
}

// obtainToken runs the partner flow against a gateway over HTTP, signing
// in as alice, and returns the access token (see browser.flow).
func obtainToken(ctx context.Context, base string) (string, error) {
	b, err := newBrowser(base)
	if err != nil {
		return "", err
	}
	p, err := b.flow(ctx, username)
	return p.Access, err
}

// flow runs the partner flow as a browser and a partner's backend would:
// GET /oauth/authorize with PKCE → (the sign-in form → POST credentials of
// user, when the browser has no session yet) → consent form → POST allow
// → 303 to the redirect URI with a code → POST /oauth/token. user is
// whom to sign in as; "" when the browser must already be signed in.
func (b *browser) flow(ctx context.Context, user string) (tokenPair, error) {
	verifier := randomString(48)
	sum := sha256.Sum256([]byte(verifier))
	challenge := base64.RawURLEncoding.EncodeToString(sum[:])
	state := randomString(16)

	q := url.Values{
		"response_type":         {"code"},
		"client_id":             {clientID},
		"redirect_uri":          {redirectURI},
		"scope":                 {scope},
		"state":                 {state},
		"code_challenge":        {challenge},
		"code_challenge_method": {"S256"},
	}
	status, _, body, err := do(ctx, b.c, http.MethodGet, b.base+"/oauth/authorize?"+q.Encode(), nil)
	if err != nil {
		return tokenPair{}, fmt.Errorf("authorize: %w", err)
	}
	if status != http.StatusOK {
		return tokenPair{}, fmt.Errorf("authorize: status %d: %.300s", status, body)
	}
	page, err := parseForm(body)
	if err != nil {
		return tokenPair{}, fmt.Errorf("authorize page: %w", err)
	}
	if bytes.Contains(body, []byte(`name="password"`)) {
		if user == "" {
			return tokenPair{}, errors.New("authorize: the sign-in form, but this browser should be signed in")
		}
		page.values.Set("username", user)
		page.values.Set("password", password)
		status, _, body, err = do(ctx, b.c, http.MethodPost, resolve(b.base, page.action), page.values)
		if err != nil {
			return tokenPair{}, fmt.Errorf("sign-in: %w", err)
		}
		if status != http.StatusOK {
			return tokenPair{}, fmt.Errorf("sign-in: status %d: %.300s", status, body)
		}
		if page, err = parseForm(body); err != nil {
			return tokenPair{}, fmt.Errorf("consent page: %w", err)
		}
	}

	page.values.Set("decision", "allow")
	status, hdr, body, err := do(ctx, b.c, http.MethodPost, resolve(b.base, page.action), page.values)
	if err != nil {
		return tokenPair{}, fmt.Errorf("consent: %w", err)
	}
	if status != http.StatusSeeOther {
		return tokenPair{}, fmt.Errorf("consent: status %d, want 303: %.300s", status, body)
	}
	loc, err := url.Parse(hdr.Get("Location"))
	if err != nil {
		return tokenPair{}, fmt.Errorf("consent: Location: %w", err)
	}
	code := loc.Query().Get("code")
	if code == "" || loc.Query().Get("state") != state {
		return tokenPair{}, fmt.Errorf("consent: redirected to %s, want a code and state %s", loc, state)
	}
	return b.token(ctx, url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"redirect_uri":  {redirectURI},
		"code_verifier": {verifier},
	})
}

// refresh rotates a refresh token (RFC 6749 §6): the answer is a new pair.
func (b *browser) refresh(ctx context.Context, refreshToken string) (tokenPair, error) {
	p, err := b.token(ctx, url.Values{
		"grant_type":    {"refresh_token"},
		"refresh_token": {refreshToken},
	})
	if err == nil && p.Refresh == refreshToken {
		err = errors.New("refresh: the same refresh token back, not rotated")
	}
	return p, err
}

// token calls the token endpoint as the client (client_secret_post) and
// requires a bearer pair back.
func (b *browser) token(ctx context.Context, form url.Values) (tokenPair, error) {
	form.Set("client_id", clientID)
	form.Set("client_secret", clientSecret)
	status, _, body, err := do(ctx, b.c, http.MethodPost, b.base+"/oauth/token", form)
	if err != nil {
		return tokenPair{}, fmt.Errorf("token (%s): %w", form.Get("grant_type"), err)
	}
	if status != http.StatusOK {
		return tokenPair{}, fmt.Errorf("token (%s): status %d: %.300s", form.Get("grant_type"), status, body)
	}
	var tr struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
		TokenType    string `json:"token_type"`
	}
	if err := json.Unmarshal(body, &tr); err != nil || tr.AccessToken == "" || tr.RefreshToken == "" || !strings.EqualFold(tr.TokenType, "Bearer") {
		return tokenPair{}, fmt.Errorf("token (%s): unexpected response %.300s", form.Get("grant_type"), body)
	}
	return tokenPair{Access: tr.AccessToken, Refresh: tr.RefreshToken}, nil
}

func do(ctx context.Context, c *http.Client, method, u string, form url.Values) (int, http.Header, []byte, error) {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return 0, nil, nil, err
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, resp.Header, b, err
}

type form struct {
	action string
	values url.Values
}

var (
	formAction  = regexp.MustCompile(`<form[^>]*\baction="([^"]*)"`)
	hiddenInput = regexp.MustCompile(`<input[^>]*\btype="hidden"[^>]*\bname="([^"]+)"[^>]*\bvalue="([^"]*)"`)
)

// parseForm reads the action and hidden inputs (tx, csrf) of the sign-in
// or consent page.
func parseForm(page []byte) (form, error) {
	m := formAction.FindSubmatch(page)
	if m == nil {
		return form{}, fmt.Errorf("no form in %.300s", page)
	}
	f := form{action: html.UnescapeString(string(m[1])), values: url.Values{}}
	for _, in := range hiddenInput.FindAllSubmatch(page, -1) {
		f.values.Set(html.UnescapeString(string(in[1])), html.UnescapeString(string(in[2])))
	}
	if f.values.Get("tx") == "" || f.values.Get("csrf") == "" {
		return form{}, fmt.Errorf("the form has no tx or csrf input: %.300s", page)
	}
	return f, nil
}

func resolve(base, ref string) string {
	b, err := url.Parse(base)
	if err != nil {
		return ref
	}
	r, err := url.Parse(ref)
	if err != nil {
		return ref
	}
	return b.ResolveReference(r).String()
}

// randomString returns n bytes of randomness, base64url-encoded.
func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
