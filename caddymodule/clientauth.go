package caddymodule

import (
	"encoding/json"
	"mime"
	"net/http"
	"net/url"

	"github.com/tollgate/tollgate/caddymodule/oauth"
)

// maxFormBytes bounds the bodies of the OAuth endpoints: every legitimate
// request is a few hundred bytes.
const maxFormBytes = 64 << 10

// readForm parses the body of a token or revocation request: form-encoded
// (RFC 6749 §3.2; parameters in the query string are not read, so secrets
// in URLs are never honoured) or, for clients that are allowed it, a JSON
// object of strings (the Dash style). isJSON tells the caller which, so it
// can refuse JSON from clients not registered for it.
func readForm(w http.ResponseWriter, r *http.Request) (form url.Values, isJSON bool, oerr *oauth.Error) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		e := oauth.Errorf(oauth.InvalidRequest, "use POST")
		e.Status = http.StatusMethodNotAllowed
		return nil, false, e
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch mt {
	case "application/x-www-form-urlencoded":
		if err := r.ParseForm(); err != nil {
			return nil, false, oauth.Errorf(oauth.InvalidRequest, "the body could not be parsed")
		}
	case "application/json":
		var obj map[string]any
		if err := json.NewDecoder(r.Body).Decode(&obj); err != nil {
			return nil, true, oauth.Errorf(oauth.InvalidRequest, "the body is not a JSON object")
		}
		r.PostForm = make(url.Values, len(obj))
		for k, v := range obj {
			str, ok := v.(string)
			if !ok {
				return nil, true, oauth.Errorf(oauth.InvalidRequest, "%s must be a string", k)
			}
			r.PostForm[k] = []string{str}
		}
		isJSON = true
	default:
		return nil, false, oauth.Errorf(oauth.InvalidRequest, "the body must be application/x-www-form-urlencoded")
	}
	// Each parameter this endpoint reads must occur once (RFC 6749 §3.2);
	// empty values count as absent and unknown parameters are ignored.
	form = make(url.Values, len(tokenParams))
	for _, k := range tokenParams {
		v, dup := oauth.Single(r.PostForm[k])
		if dup {
			return nil, isJSON, oauth.Errorf(oauth.InvalidRequest, "%s was given more than once", k)
		}
		if v != "" {
			form[k] = []string{v}
		}
	}
	return form, isJSON, nil
}

// tokenParams are the parameters the token and revocation endpoints read.
var tokenParams = []string{
	"grant_type", "code", "redirect_uri", "code_verifier", "refresh_token", "scope",
	"client_id", "client_secret", "token", "token_type_hint",
}

// writeCredentialJSON sends v, an answer that holds or describes a
// credential, as JSON that no cache keeps (RFC 6749 §5.1, RFC 7662 §4).
func writeCredentialJSON(w http.ResponseWriter, v any) error {
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json;charset=UTF-8")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("Pragma", "no-cache")
	return json.NewEncoder(w).Encode(v)
}

// readClientForm reads the body of a request to an endpoint the client
// authenticates at (token, revocation, introspection: RFC 6749 §2.3.1,
// RFC 7009 §2.1, RFC 7662 §2.1) and authenticates the client that sent it.
func (a *App) readClientForm(w http.ResponseWriter, r *http.Request) (url.Values, *oauth.Client, *oauth.Error) {
	form, isJSON, oerr := readForm(w, r)
	if oerr != nil {
		return nil, nil, oerr
	}
	client, oerr := a.authenticateClient(r, form, isJSON)
	if oerr != nil {
		return nil, nil, oerr
	}
	return form, client, nil
}

// authenticateClient identifies the client by client_secret_basic or
// client_secret_post (RFC 6749 §2.3.1); using both at once is refused. An
// unknown client_id costs the same hash and comparison as a known one, so
// the timing tells nothing about which client ids exist.
func (a *App) authenticateClient(r *http.Request, form url.Values, isJSON bool) (*oauth.Client, *oauth.Error) {
	if len(r.Header.Values("Authorization")) > 1 {
		// Two credentials are ambiguous; Go's BasicAuth would read the
		// first and ignore the second (RFC 9110 §11.6.2 has one).
		return nil, oauth.Errorf(oauth.InvalidRequest, "more than one Authorization header")
	}
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
	if !c.CheckTokenHeader(r.Header.Get(c.TokenHeader)) {
		e := oauth.Errorf(oauth.InvalidClient, "client authentication failed: the %s header is missing or wrong", c.TokenHeader)
		e.Basic = basic
		return nil, e
	}
	if isJSON && !c.JSONBody {
		return nil, oauth.Errorf(oauth.InvalidRequest, "the body must be application/x-www-form-urlencoded")
	}
	return c, nil
}

// unknownClient absorbs the comparison for a client_id that does not exist.
var unknownClient = &oauth.Client{}
