package oauth

import (
	"net/url"
	"slices"
)

// AuthorizeRequest is a validated authorization request (RFC 6749 §4.1.1
// with the PKCE parameters of RFC 7636 §4.3).
type AuthorizeRequest struct {
	Client      *Client
	RedirectURI string
	Scopes      []string
	State       string
	Challenge   string
}

// AuthorizeError is a refused authorization request. When Redirect is
// false the client or its redirect_uri could not be trusted: the user must
// be shown an error page and never be redirected (RFC 6749 §4.1.2.1, RFC
// 9700 §4.11: no open redirector).
type AuthorizeError struct {
	*Error
	Redirect    bool
	RedirectURI string
	State       string
}

// The largest authorization request accepted (README, "Security"): the
// whole query, and each parameter that is not checked against a fixed
// format. Longer values are refused with an error page, never echoed back
// in a redirect.
const (
	MaxAuthorizeQuery = 8 << 10
	MaxClientID       = 255
	MaxRedirectURI    = 2048
	MaxState          = 1024
	MaxScope          = 1024
)

// Catalogue is what ParseAuthorize needs to know of the configuration.
type Catalogue interface {
	Client(id string) *Client
	HasScope(scope string) bool
}

// ParseAuthorize validates the query of an authorization request. The
// order of the checks matters: client_id and redirect_uri first, because
// until both are trusted no error may be redirected.
func ParseAuthorize(q url.Values, cat Catalogue) (*AuthorizeRequest, *AuthorizeError) {
	page := func(format string, args ...any) *AuthorizeError {
		return &AuthorizeError{Error: Errorf(InvalidRequest, format, args...)}
	}
	clientID, dup := param(q, "client_id")
	switch {
	case dup:
		return nil, page("client_id was given more than once")
	case clientID == "":
		return nil, page("client_id is missing")
	case len(clientID) > MaxClientID:
		return nil, page("client_id is longer than %d characters", MaxClientID)
	}
	client := cat.Client(clientID)
	if client == nil {
		return nil, &AuthorizeError{Error: Errorf(InvalidClient, "unknown client_id")}
	}
	redirectURI, dup := param(q, "redirect_uri")
	switch {
	case dup:
		return nil, page("redirect_uri was given more than once")
	case len(redirectURI) > MaxRedirectURI:
		return nil, page("redirect_uri is longer than %d characters", MaxRedirectURI)
	case redirectURI == "" && client.RedirectURIOptional:
		// The client's primary redirect URI (the Dash style).
		redirectURI = client.PrimaryRedirectURI()
	case redirectURI == "":
		return nil, page("redirect_uri is missing")
	case !client.HasRedirectURI(redirectURI):
		return nil, page("redirect_uri does not exactly match any URI registered for this client")
	}

	// From here on the redirect URI is trusted: errors go back to the client.
	state, dupState := param(q, "state")
	if len(state) > MaxState {
		// Not redirected: the client would get its state cut, and an
		// attacker's huge value has no business in a Location header.
		return nil, page("state is longer than %d characters", MaxState)
	}
	fail := func(code, format string, args ...any) (*AuthorizeRequest, *AuthorizeError) {
		e := &AuthorizeError{Error: Errorf(code, format, args...), Redirect: true, RedirectURI: redirectURI}
		if !dupState {
			e.State = state
		}
		return nil, e
	}
	if dupState {
		return fail(InvalidRequest, "state was given more than once")
	}
	for _, name := range []string{"response_type", "scope", "code_challenge", "code_challenge_method"} {
		if _, dup := param(q, name); dup {
			return fail(InvalidRequest, "%s was given more than once", name)
		}
	}
	switch rt, _ := param(q, "response_type"); rt {
	case "code":
	case "":
		return fail(InvalidRequest, "response_type is missing")
	default:
		return fail(UnsupportedResponseType, "response_type must be code")
	}
	switch {
	case state == "" && !client.StateOptional:
		return fail(InvalidRequest, "state is missing")
	case state != "" && len(state) < client.StateMinLength:
		return fail(InvalidRequest, "state must be at least %d characters", client.StateMinLength)
	}
	rawScope, _ := param(q, "scope")
	if len(rawScope) > MaxScope {
		return fail(InvalidScope, "scope is longer than %d characters", MaxScope)
	}
	scopes := ParseScope(rawScope)
	if len(scopes) == 0 {
		scopes = client.DefaultScopes
	}
	if len(scopes) == 0 {
		// RFC 6749 §3.3: with no default scope, an omitted scope fails as
		// invalid_scope.
		return fail(InvalidScope, "scope is missing")
	}
	for _, s := range scopes {
		if !cat.HasScope(s) {
			return fail(InvalidScope, "unknown scope %q", s)
		}
		if !slices.Contains(client.Scopes, s) {
			return fail(InvalidScope, "scope %q is not allowed for this client", s)
		}
	}
	challenge, _ := param(q, "code_challenge")
	method, _ := param(q, "code_challenge_method")
	switch {
	case challenge == "" && client.PKCEOptional:
		if method != "" {
			return fail(InvalidRequest, "code_challenge_method without code_challenge")
		}
	case challenge == "":
		return fail(InvalidRequest, "code_challenge is missing (PKCE is required)")
	case method != "S256":
		// RFC 7636 §4.3: an absent method means plain, which we refuse.
		return fail(InvalidRequest, "code_challenge_method must be S256")
	case !ValidChallenge(challenge):
		return fail(InvalidRequest, "code_challenge must be 43 base64url characters (S256)")
	}
	return &AuthorizeRequest{
		Client:      client,
		RedirectURI: redirectURI,
		Scopes:      scopes,
		State:       state,
		Challenge:   challenge,
	}, nil
}

// param returns the value of name. An empty value counts as absent (RFC
// 6749 §3.1: "treated as if they were omitted"); a parameter that still
// occurs more than once is reported (§3.1: "MUST NOT be included more than
// once").
func param(q url.Values, name string) (value string, dup bool) {
	return Single(q[name])
}

// Single returns the one non-empty value of vs, or dup when there are
// several.
func Single(vs []string) (value string, dup bool) {
	for _, v := range vs {
		if v == "" {
			continue
		}
		if value != "" {
			return "", true
		}
		value = v
	}
	return value, false
}

// ErrorRedirect returns the URI the user agent is sent to for e: the
// registered redirect URI with error, error_description and state added to
// its query (RFC 6749 §4.1.2.1), keeping any query it already had.
func ErrorRedirect(e *AuthorizeError) string {
	v := url.Values{"error": {e.Code}}
	if e.Description != "" {
		v.Set("error_description", e.Description)
	}
	if e.State != "" {
		v.Set("state", e.State)
	}
	return AddQuery(e.RedirectURI, v)
}

// AddQuery appends v to the query of the registered URI uri.
func AddQuery(uri string, v url.Values) string {
	u, err := url.Parse(uri)
	if err != nil {
		// Registered URIs are validated at provision time.
		return uri
	}
	q := u.Query()
	for k, vs := range v {
		q[k] = vs
	}
	u.RawQuery = q.Encode()
	return u.String()
}
