package redisstore

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/caddymodule/store"
)

// subjectKey is the subject's index of grants: a hash of grant id -> the
// nonce of the grant incarnation that wrote the entry. It is its own slot,
// never touched by a grant's scripts (docs/architecture.md §6.5, last
// paragraph: indexes that span grants are updated after the grant). The
// subject is hashed so that the key name neither leaks it (it may be an
// email address) nor carries its braces into the hash tag.
//
// The nonce makes removals conditional: RevokeGrant and ListGrants drop an
// entry only if it still names the incarnation they saw die, so a consent
// that re-creates the grant in between keeps its entry.
//
// The key has no TTL: a grant's life is extended by scripts that cannot
// touch this key, so no TTL set here could be trusted to outlive the
// grants. It holds one entry per client the subject consented to (grant
// ids are per client and subject), and entries of dead grants are dropped
// by RevokeGrant and ListGrants.

// index records the grant incarnation nonce under the subject.
func (s *Store) index(ctx context.Context, subject, grantID, nonce string) error {
	if err := s.client.HSet(ctx, s.k().subject(subject), grantID, nonce).Err(); err != nil {
		return fmt.Errorf("indexing grant: %w", err)
	}
	return nil
}

// unindex drops the grant's entry if it still names that incarnation. It
// is best effort: a stale entry is pruned by ListGrants.
func (s *Store) unindex(ctx context.Context, subject, grantID, nonce string) {
	_ = s.scripts.unindex.Run(ctx, s.client, []string{s.k().subject(subject)}, grantID, nonce).Err()
}

// ListGrants returns the subject's live grants, newest first: one HGETALL
// of the index, then one pipelined round trip reading every grant it names
// (on a Cluster, go-redis splits the pipeline by node). Entries whose grant
// is gone, expired or now another subject's are skipped and then pruned.
func (s *Store) ListGrants(ctx context.Context, subject string) ([]store.Grant, error) {
	key := s.k().subject(subject)
	entries, err := s.client.HGetAll(ctx, key).Result()
	if err != nil {
		return nil, fmt.Errorf("redis list grants: %w", err)
	}
	out := make([]store.Grant, 0, len(entries))
	if len(entries) == 0 {
		return out, nil
	}
	ids := make([]string, 0, len(entries))
	for id := range entries {
		ids = append(ids, id)
	}
	cmds := make([]*redis.SliceCmd, len(ids))
	if _, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.HMGet(ctx, s.k().grant(id), grantFields...)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("redis list grants: %w", err)
	}
	now := s.nowMillis()
	var stale []any
	for i, id := range ids {
		g, exp, err := decodeGrant(id, cmds[i].Val())
		if err != nil {
			return nil, fmt.Errorf("redis list grants: %w", err)
		}
		if exp <= now || g.Subject != subject {
			stale = append(stale, id, entries[id])
			continue
		}
		out = append(out, g)
	}
	if len(stale) > 0 {
		// Best effort: the next listing prunes what this one could not.
		_ = s.scripts.unindex.Run(ctx, s.client, []string{key}, stale...).Err()
	}
	store.SortGrants(out)
	return out, nil
}

// luaUnindex deletes each named entry whose value is still the given nonce.
//
// KEYS: subject index. ARGV: grant id, nonce, grant id, nonce, ...
const luaUnindex = `
local index_key = KEYS[1]
for i = 1, #ARGV, 2 do
  local id, nonce = ARGV[i], ARGV[i + 1]
  if redis.call('HGET', index_key, id) == nonce then
    redis.call('HDEL', index_key, id)
  end
end
return 1
`
