// Package oauth holds the OAuth 2.0 protocol rules of Tollgate, free of
// Caddy: request validation, PKCE, token formats, scope sets and the mapping
// of failures to RFC 6749 error responses. The Caddy handlers in the parent
// package are thin adapters around it.
package oauth

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// Error codes of RFC 6749 §4.1.2.1 and §5.2.
const (
	InvalidRequest          = "invalid_request"
	InvalidClient           = "invalid_client"
	InvalidGrant            = "invalid_grant"
	UnauthorizedClient      = "unauthorized_client"
	UnsupportedGrantType    = "unsupported_grant_type"
	UnsupportedResponseType = "unsupported_response_type"
	InvalidScope            = "invalid_scope"
	AccessDenied            = "access_denied"
	ServerError             = "server_error"
	TemporarilyUnavailable  = "temporarily_unavailable"
)

// Error is a protocol error: what the client is told. Description is
// written for the partner's developer and must never contain a secret.
type Error struct {
	Code        string
	Description string
	// Status is the HTTP status of a token-endpoint answer.
	Status int
	// Basic is set when the client authenticated with HTTP Basic, so that
	// an invalid_client answer carries WWW-Authenticate (RFC 6749 §5.2).
	Basic bool
}

func (e *Error) Error() string { return e.Code + ": " + e.Description }

// Errorf builds an Error with the status RFC 6749 §5.2 gives its code.
func Errorf(code, format string, args ...any) *Error {
	status := http.StatusBadRequest
	switch code {
	case InvalidClient:
		status = http.StatusUnauthorized
	case ServerError:
		status = http.StatusInternalServerError
	case TemporarilyUnavailable:
		status = http.StatusServiceUnavailable
	}
	return &Error{Code: code, Description: fmt.Sprintf(format, args...), Status: status}
}

// WriteJSON writes e as the JSON body of RFC 6749 §5.2, uncacheable.
func (e *Error) WriteJSON(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "application/json;charset=UTF-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	if e.Code == TemporarilyUnavailable {
		h.Set("Retry-After", "5")
	}
	if e.Code == InvalidClient && e.Basic {
		h.Set("WWW-Authenticate", `Basic realm="tollgate", charset="UTF-8"`)
	}
	w.WriteHeader(e.Status)
	_ = json.NewEncoder(w).Encode(struct {
		Error       string `json:"error"`
		Description string `json:"error_description,omitempty"`
	}{e.Code, e.Description})
}
