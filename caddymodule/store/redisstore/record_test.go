package redisstore

import (
	"slices"
	"testing"
	"time"

	"github.com/tollgate/tollgate/caddymodule/store"
)

func TestTokenRecord(t *testing.T) {
	for _, tok := range []store.Token{
		{Digest: "at1", ClientID: "app", Subject: "alice", Pair: "rt1", Scopes: []string{"read"},
			ExpiresAt: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC), Limit: store.Limit{Count: 5000, Window: time.Hour}},
		{Digest: "d", ExpiresAt: time.UnixMilli(-5)},
		{Digest: "d", ClientID: "a:b", Subject: "12:x\x00ü", Scopes: []string{"", "3:abc", "orders:read"}},
	} {
		rec := encodeToken(tok)
		got, err := decodeToken(tok.Digest, string(rec))
		if err != nil {
			t.Fatalf("decode %q: %v", rec, err)
		}
		if got.Digest != tok.Digest || got.ClientID != tok.ClientID || got.Subject != tok.Subject ||
			got.Pair != tok.Pair || !slices.Equal(got.Scopes, tok.Scopes) ||
			got.ExpiresAt.UnixMilli() != tok.ExpiresAt.UnixMilli() || got.Limit != tok.Limit {
			t.Errorf("round trip of %+v gave %+v", tok, got)
		}
	}
	if got := string(encodeToken(store.Token{Digest: "at1", ClientID: "app", Subject: "alice", Pair: "rt1",
		Scopes: []string{"read"}, ExpiresAt: time.UnixMilli(1893456000000), Limit: store.Limit{Count: 5000, Window: time.Hour},
	})); got != "t2;3:app5:alice3:rt113:18934560000004:50007:36000004:read" {
		t.Errorf("record = %q, want the documented example", got)
	}
	// The short form the scripts send: one byte per length.
	short := "t3;\x03\x05\x03\x0d\x04\x07" + "app" + "alice" + "rt1" + "1893456000000" + "5000" + "3600000" + "4:read"
	got, err := decodeToken("at1", short)
	if err != nil || got.ClientID != "app" || got.Subject != "alice" || got.Pair != "rt1" ||
		got.ExpiresAt.UnixMilli() != 1893456000000 || got.Limit != (store.Limit{Count: 5000, Window: time.Hour}) ||
		!slices.Equal(got.Scopes, []string{"read"}) {
		t.Errorf("decodeToken(%q) = %+v, %v", short, got, err)
	}
	for _, bad := range []string{"t3;", "t3;\x01\x01\x01\x01\x01", "t3;\x01\x01\x01\x01\x01\x01abcde1", "t3;\x01\x01\x01\x01\x01\x09abcdef",
		"t3;\x01\x01\x01\x01\x01\x01abcxyz", "t3;\x01\x01\x01\x01\x01\x01abc111" + "5:read",
	} {
		if _, err := decodeToken("d", bad); err == nil {
			t.Errorf("decodeToken(%q) succeeded", bad)
		}
	}
	for _, bad := range []string{"", "t2;", "t1;1:b1:c1:d1:11:01:0", "t2;1:b1:c1:d1:x1:01:0", "t2;1:b1:c1:d1:11:01:05:read",
		"t2;1:b1:c1:d1:11:01:0-1:", "t2;1:b1:c1:d1:11:01:0:", "t2;99:a", "t2;1:b1:c1:d1:1"} {
		if _, err := decodeToken("d", bad); err == nil {
			t.Errorf("decodeToken(%q) succeeded", bad)
		}
	}
}

func FuzzDecodeToken(f *testing.F) {
	f.Add("t2;3:app5:alice3:rt113:18934560000004:50007:36000004:read")
	f.Add("t2;0:0:0:1:01:01:0")
	f.Add("t3;\x03\x05\x03\x0d\x04\x07app" + "alicert1189345600000050003600000" + "4:read")
	f.Fuzz(func(t *testing.T, rec string) {
		tok, err := decodeToken("d", rec)
		if err != nil {
			return
		}
		again, err := decodeToken("d", string(encodeToken(tok)))
		if err != nil || again.Digest != tok.Digest || !slices.Equal(again.Scopes, tok.Scopes) ||
			again.Limit.Count != tok.Limit.Count {
			t.Fatalf("re-encoding %q does not round-trip", rec)
		}
	})
}
