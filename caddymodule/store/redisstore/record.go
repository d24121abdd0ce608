package redisstore

import (
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate/caddymodule/store"
)

// Token records are read on a token's first use by a gateway (and every
// 30 s after), often enough that they are not JSON: decoding
// JSON into a store.Token cost about ten allocations per call, two thirds of
// what Authenticate allocated beyond go-redis itself. A token's fields live
// in its grant's hash (scripts.go); the scripts that read a token reply with
// a record made of them: a version tag followed by length-prefixed fields
// ("<len>:<bytes>"), which holds any byte in any field and decodes into
// substrings of the one string go-redis already allocated:
//
//	t2;<client_id><subject><pair><expires_at ms><limit count><limit window ms><scope>...
//
// e.g. t2;3:app5:alice3:rt113:18934560000004:50007:36000004:read
// The digest is not in it: the caller asked by digest. The scopes are
// stored in the hash already encoded (encodeScopes), so the script only
// concatenates. When each of the six other fields is shorter than 256
// bytes, as it always is in practice, the scripts send t3 instead, whose
// six lengths are one byte each, before the fields (Lua makes a byte with
// string.char far faster than a decimal):
//
//	t3;<6 length bytes><client_id><subject><pair><expires_at ms><limit count><limit window ms><scope>...
const (
	tokenFormat      = "t2;"
	tokenFormatShort = "t3;"
)

var errBadRecord = errors.New("malformed token record")

// encodeScopes is a token's scopes as the grant hash keeps them.
func encodeScopes(scopes []string) []byte {
	n := 0
	for _, s := range scopes {
		n += len(s) + 4
	}
	b := make([]byte, 0, n)
	for _, s := range scopes {
		b = appendField(b, s)
	}
	return b
}

// encodeToken is the record a script replies with for t (the tests' and
// the fuzzer's reference; the scripts build it themselves).
func encodeToken(t store.Token) []byte {
	b := make([]byte, 0, len(tokenFormat)+len(t.ClientID)+len(t.Subject)+len(t.Pair)+6*4+3*20)
	b = append(b, tokenFormat...)
	b = appendField(b, t.ClientID)
	b = appendField(b, t.Subject)
	b = appendField(b, t.Pair)
	var num [20]byte
	b = appendField(b, string(strconv.AppendInt(num[:0], t.ExpiresAt.UnixMilli(), 10)))
	b = appendField(b, string(strconv.AppendInt(num[:0], t.Limit.Count, 10)))
	b = appendField(b, string(strconv.AppendInt(num[:0], t.Limit.Window.Milliseconds(), 10)))
	return append(b, encodeScopes(t.Scopes)...)
}

func appendField(b []byte, s string) []byte {
	b = strconv.AppendInt(b, int64(len(s)), 10)
	b = append(b, ':')
	return append(b, s...)
}

// decodeToken parses the record of the token with that digest; the strings
// it returns share rec's memory.
func decodeToken(digest, rec string) (store.Token, error) {
	var f [6]string
	rest, ok := strings.CutPrefix(rec, tokenFormatShort)
	if ok {
		if len(rest) < len(f) {
			return store.Token{}, errBadRecord
		}
		lens := rest[:len(f)]
		rest = rest[len(f):]
		for i := range f {
			n := int(lens[i])
			if n > len(rest) {
				return store.Token{}, errBadRecord
			}
			f[i], rest = rest[:n], rest[n:]
		}
	} else {
		if rest, ok = strings.CutPrefix(rec, tokenFormat); !ok {
			return store.Token{}, errBadRecord
		}
		for i := range f {
			if f[i], rest, ok = nextField(rest); !ok {
				return store.Token{}, errBadRecord
			}
		}
	}
	exp, err1 := strconv.ParseInt(f[3], 10, 64)
	count, err2 := strconv.ParseInt(f[4], 10, 64)
	window, err3 := strconv.ParseInt(f[5], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return store.Token{}, errBadRecord
	}
	t := store.Token{
		Digest: digest, ClientID: f[0], Subject: f[1], Pair: f[2], ExpiresAt: time.UnixMilli(exp),
		Limit: store.Limit{Count: count, Window: time.Duration(window) * time.Millisecond},
	}
	if rest == "" {
		return t, nil
	}
	n := 0
	for r := rest; r != ""; n++ {
		if _, r, ok = nextField(r); !ok {
			return store.Token{}, errBadRecord
		}
	}
	t.Scopes = make([]string, n)
	for i := range t.Scopes {
		t.Scopes[i], rest, _ = nextField(rest)
	}
	return t, nil
}

// nextField splits "<len>:<bytes>..." into the field and what follows.
func nextField(s string) (field, rest string, ok bool) {
	colon := strings.IndexByte(s, ':')
	if colon < 1 {
		return "", "", false
	}
	n, err := strconv.Atoi(s[:colon])
	if err != nil || n < 0 || n > len(s)-colon-1 {
		return "", "", false
	}
	s = s[colon+1:]
	return s[:n], s[n:], true
}
