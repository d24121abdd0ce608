package webhook

import (
	"encoding/json"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/caddymodule/store"
)

func TestNewConsentRevoked(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 678_900_000, time.FixedZone("CET", 3600))
	g := store.Grant{ID: "g1", ClientID: "app", Subject: "alice", Scopes: []string{"profile:read", "vessels:read"}}
	e, err := NewConsentRevoked(g, now)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^evt_[A-Za-z0-9_-]{22}$`).MatchString(e.ID) {
		t.Errorf("id %q: want evt_ and 128 bits of base64url", e.ID)
	}
	if e.ClientID != "app" || !e.CreatedAt.Equal(now.Truncate(time.Millisecond)) {
		t.Errorf("event = %+v", e)
	}
	var body map[string]json.RawMessage
	if err := json.Unmarshal(e.Payload, &body); err != nil {
		t.Fatal(err)
	}
	if keys := slices.Sorted(maps.Keys(body)); !slices.Equal(keys, []string{"data", "id", "timestamp", "type"}) {
		t.Errorf("body keys %q", keys)
	}
	var env struct {
		ID, Type, Timestamp string
		Data                map[string]any
	}
	if err := json.Unmarshal(e.Payload, &env); err != nil {
		t.Fatal(err)
	}
	if env.ID != e.ID || env.Type != "user.consent.revoked" || env.Timestamp != "2030-01-02T02:04:05.678Z" {
		t.Errorf("envelope = %+v", env)
	}
	if keys := slices.Sorted(maps.Keys(env.Data)); !slices.Equal(keys, []string{"client_id", "scopes", "subject"}) {
		t.Errorf("data keys %q: want exactly client_id, subject, scopes (never a token)", keys)
	}
	if env.Data["client_id"] != "app" || env.Data["subject"] != "alice" {
		t.Errorf("data = %v", env.Data)
	}
	if s, _ := env.Data["scopes"].([]any); len(s) != 2 || s[0] != "profile:read" || s[1] != "vessels:read" {
		t.Errorf("scopes = %v", env.Data["scopes"])
	}

	again, err := NewConsentRevoked(store.Grant{ClientID: "app", Subject: "bob"}, now)
	if err != nil {
		t.Fatal(err)
	}
	if again.ID == e.ID {
		t.Error("two events got the same id")
	}
	if !strings.Contains(string(again.Payload), `"scopes":[]`) {
		t.Errorf("a grant without scopes: %s, want \"scopes\":[]", again.Payload)
	}
}
