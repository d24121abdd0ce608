package caddymodule

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// conditionalWriter answers conditional GETs in front of an upstream that
// knows nothing of them (RFC 9110 §13.1.2). With an upstream ETag it only
// compares; without one it buffers the body, up to max bytes, to compute a
// strong ETag from it. A body larger than max streams through untouched.
type conditionalWriter struct {
	*caddyhttp.ResponseWriterWrapper
	r           *http.Request
	max         int
	status      int
	mode        writeMode
	buf         bytes.Buffer
	notModified bool
	// onNotModified, when set, adjusts the headers of a 304 before it is
	// sent.
	onNotModified func(http.Header)
}

type writeMode uint8

const (
	undecided writeMode = iota
	passthrough
	buffering
	discarding
)

func newConditionalWriter(w http.ResponseWriter, r *http.Request, max int) *conditionalWriter {
	return &conditionalWriter{ResponseWriterWrapper: &caddyhttp.ResponseWriterWrapper{ResponseWriter: w}, r: r, max: max}
}

// WriteHeader decides how the response is handled.
func (cw *conditionalWriter) WriteHeader(status int) {
	if cw.mode != undecided || status < 200 {
		if status < 200 {
			cw.ResponseWriter.WriteHeader(status)
		}
		return
	}
	cw.status = status
	h := cw.Header()
	switch {
	case status == http.StatusNotModified:
		// The upstream answered the conditional request itself.
		cw.notModified = true
		cw.mode = passthrough
		if cw.onNotModified != nil {
			cw.onNotModified(h)
		}
	case status != http.StatusOK:
		cw.mode = passthrough
	case h.Get("ETag") != "":
		if noneMatch(cw.r.Header.Get("If-None-Match"), h.Get("ETag")) {
			cw.answerNotModified()
			cw.mode = discarding
			return
		}
		cw.mode = passthrough
	case h.Get("Content-Encoding") != "" || strings.HasPrefix(h.Get("Content-Type"), "text/event-stream"):
		cw.mode = passthrough
	default:
		cw.mode = buffering
		return
	}
	cw.ResponseWriter.WriteHeader(status)
}

// Write buffers, passes or discards the body.
func (cw *conditionalWriter) Write(b []byte) (int, error) {
	if cw.mode == undecided {
		cw.WriteHeader(http.StatusOK)
	}
	switch cw.mode {
	case discarding:
		return len(b), nil
	case buffering:
		if cw.buf.Len()+len(b) <= cw.max {
			return cw.buf.Write(b)
		}
		// Too large to hash: send what we have and stream the rest.
		cw.mode = passthrough
		cw.ResponseWriter.WriteHeader(cw.status)
		if _, err := cw.ResponseWriter.Write(cw.buf.Bytes()); err != nil {
			return 0, err
		}
		cw.buf = bytes.Buffer{}
	}
	return cw.ResponseWriter.Write(b)
}

// FlushError keeps a proxy's flush from sending the headers of a body that
// is still being buffered; http.ResponseController calls it before Unwrap.
func (cw *conditionalWriter) FlushError() error {
	if cw.mode != passthrough {
		return nil
	}
	return http.NewResponseController(cw.ResponseWriter).Flush()
}

// finish sends a buffered body, or 304 when its ETag matches.
func (cw *conditionalWriter) finish() error {
	if cw.mode != buffering {
		return nil
	}
	sum := sha256.Sum256(cw.buf.Bytes())
	// A strong validator: the same bytes always give the same tag, on
	// every gateway instance (RFC 9110 §8.8.1).
	etag := `"` + base64.RawURLEncoding.EncodeToString(sum[:18]) + `"`
	cw.Header().Set("ETag", etag)
	if noneMatch(cw.r.Header.Get("If-None-Match"), etag) {
		cw.answerNotModified()
		return nil
	}
	cw.ResponseWriter.WriteHeader(cw.status)
	_, err := cw.ResponseWriter.Write(cw.buf.Bytes())
	return err
}

func (cw *conditionalWriter) answerNotModified() {
	cw.notModified = true
	h := cw.Header()
	// RFC 9110 §15.4.5: a 304 has no content; validators and caching
	// fields stay, the body's own fields go.
	h.Del("Content-Length")
	h.Del("Content-Type")
	if cw.onNotModified != nil {
		cw.onNotModified(h)
	}
	cw.ResponseWriter.WriteHeader(http.StatusNotModified)
}

// noneMatch reports whether an If-None-Match field matches etag by the weak
// comparison RFC 9110 §13.1.2 prescribes for it.
func noneMatch(field, etag string) bool {
	if field == "" {
		return false
	}
	tag := strings.TrimPrefix(etag, "W/")
	for _, cand := range strings.Split(field, ",") {
		cand = strings.TrimSpace(cand)
		if cand == "*" || strings.TrimPrefix(cand, "W/") == tag {
			return true
		}
	}
	return false
}
