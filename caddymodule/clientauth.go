package caddymodule

import (
	"mime"
	"net/http"
	"net/url"

	"github.com/tollgate/tollgate/caddymodule/oauth"
)

// maxFormBytes bounds the bodies of the OAuth endpoints: every legitimate
// request is a few hundred bytes.
const maxFormBytes = 64 << 10

// readForm parses an application/x-www-form-urlencoded body (RFC 6749 §3.2:
// token requests are POSTed form-encoded; parameters in the query string
// are not read, so secrets in URLs are never honoured).
func readForm(w http.ResponseWriter, r *http.Request) (url.Values, *oauth.Error) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		e := oauth.Errorf(oauth.InvalidRequest, "use POST")
		e.Status = http.StatusMethodNotAllowed
		return nil, e
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "application/x-www-form-urlencoded" {
		return nil, oauth.Errorf(oauth.InvalidRequest, "the body must be application/x-www-form-urlencoded")
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		return nil, oauth.Errorf(oauth.InvalidRequest, "the body could not be parsed")
	}
	// Each parameter this endpoint reads must occur once (RFC 6749 §3.2);
	// empty values count as absent and unknown parameters are ignored.
	form := make(url.Values, len(tokenParams))
	for _, k := range tokenParams {
		v, dup := oauth.Single(r.PostForm[k])
		if dup {
			return nil, oauth.Errorf(oauth.InvalidRequest, "%s was given more than once", k)
		}
		if v != "" {
			form[k] = []string{v}
		}
	}
	return form, nil
}

// tokenParams are the parameters the token and revocation endpoints read.
var tokenParams = []string{
	"grant_type", "code", "redirect_uri", "code_verifier", "refresh_token", "scope",
	"client_id", "client_secret", "token", "token_type_hint",
}

// authenticateClient identifies the client by client_secret_basic or
// client_secret_post (RFC 6749 §2.3.1); using both at once is refused. An
// unknown client_id costs the same hash and comparison as a known one, so
// the timing tells nothing about which client ids exist.
func (a *App) authenticateClient(r *http.Request, form url.Values) (*oauth.Client, *oauth.Error) {
	id, secret, basic := r.BasicAuth()
	if basic {
		if form.Get("client_secret") != "" {
			return nil, oauth.Errorf(oauth.InvalidRequest, "use one client authentication method, not both")
		}
		// RFC 6749 §2.3.1: both parts are form-urlencoded before Basic.
		var err1, err2 error
		id, err1 = url.QueryUnescape(id)
		secret, err2 = url.QueryUnescape(secret)
		if err1 != nil || err2 != nil {
			return nil, &oauth.Error{Code: oauth.InvalidClient, Description: "malformed Basic credentials", Status: http.StatusUnauthorized, Basic: true}
		}
		if fid := form.Get("client_id"); fid != "" && fid != id {
			return nil, oauth.Errorf(oauth.InvalidRequest, "client_id in the body differs from the authenticated client")
		}
	} else {
		id, secret = form.Get("client_id"), form.Get("client_secret")
	}
	c := a.Client(id)
	ok := unknownClient.Authenticate(secret)
	if c != nil {
		ok = c.Authenticate(secret)
	}
	if c == nil || !ok || secret == "" {
		e := oauth.Errorf(oauth.InvalidClient, "client authentication failed: wrong client_id or client_secret")
		e.Basic = basic
		return nil, e
	}
	return c, nil
}

// unknownClient absorbs the comparison for a client_id that does not exist.
var unknownClient = &oauth.Client{}
