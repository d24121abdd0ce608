package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
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

// obtainToken runs the partner flow against a gateway over HTTP, as a
// browser and a partner's backend would, and returns the access token:
// GET /oauth/authorize with PKCE → sign-in form → POST credentials →
// consent form → POST allow → 303 to the redirect URI with a code → POST
// /oauth/token.
func obtainToken(ctx context.Context, base string) (string, error) {
	jar, err := cookiejar.New(nil)
	if err != nil {
		return "", err
	}
	c := &http.Client{
		Jar:     jar,
		Timeout: 15 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
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
	status, _, body, err := do(ctx, c, http.MethodGet, base+"/oauth/authorize?"+q.Encode(), nil)
	if err != nil {
		return "", fmt.Errorf("authorize: %w", err)
	}
	if status != http.StatusOK {
		return "", fmt.Errorf("authorize: status %d: %.300s", status, body)
	}
	login, err := parseForm(body)
	if err != nil {
		return "", fmt.Errorf("sign-in page: %w", err)
	}

	login.values.Set("username", username)
	login.values.Set("password", password)
	status, _, body, err = do(ctx, c, http.MethodPost, resolve(base, login.action), login.values)
	if err != nil {
		return "", fmt.Errorf("sign-in: %w", err)
	}
	if status != http.StatusOK {
		return "", fmt.Errorf("sign-in: status %d: %.300s", status, body)
	}
	consent, err := parseForm(body)
	if err != nil {
		return "", fmt.Errorf("consent page: %w", err)
	}

	consent.values.Set("decision", "allow")
	status, hdr, body, err := do(ctx, c, http.MethodPost, resolve(base, consent.action), consent.values)
	if err != nil {
		return "", fmt.Errorf("consent: %w", err)
	}
	if status != http.StatusSeeOther {
		return "", fmt.Errorf("consent: status %d, want 303: %.300s", status, body)
	}
	loc, err := url.Parse(hdr.Get("Location"))
	if err != nil {
		return "", fmt.Errorf("consent: Location: %w", err)
	}
	code := loc.Query().Get("code")
	if code == "" || loc.Query().Get("state") != state {
		return "", fmt.Errorf("consent: redirected to %s, want a code and state %s", loc, state)
	}

	status, _, body, err = do(ctx, c, http.MethodPost, base+"/oauth/token", url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"redirect_uri":  {redirectURI},
		"client_id":     {clientID},
		"client_secret": {clientSecret},
		"code_verifier": {verifier},
	})
	if err != nil {
		return "", fmt.Errorf("token: %w", err)
	}
	if status != http.StatusOK {
		return "", fmt.Errorf("token: status %d: %.300s", status, body)
	}
	var tr struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
	}
	if err := json.Unmarshal(body, &tr); err != nil || tr.AccessToken == "" || !strings.EqualFold(tr.TokenType, "Bearer") {
		return "", fmt.Errorf("token: unexpected response %.300s", body)
	}
	return tr.AccessToken, nil
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
