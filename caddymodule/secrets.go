package caddymodule

import "go.uber.org/zap"

// warnInlineSecrets logs, once per config load, each secret of the client
// written in clear in the JSON config, which Caddy's /config API serves and
// autosave.json keeps (README "Security"). The Caddyfile adapter
// writes inline client secrets and token_header values as digests, so from
// a Caddyfile only an inline webhook secret gets here: it must be kept in
// clear to sign (Standard Webhooks HMAC), so it can only be moved out of
// the config, into a placeholder. The log names the client, never the secret.
func (cc *ClientConfig) warnInlineSecrets(logger *zap.Logger) {
	if cc.Secret != "" && !hasPlaceholder(cc.Secret) {
		logger.Warn("client secret written in clear in the config, which the /config API and autosave.json show; give secret_sha256 or {env.NAME}",
			zap.String("client_id", cc.ClientID))
	}
	if th := cc.TokenHeader; th != nil && th.Value != "" && !hasPlaceholder(th.Value) {
		logger.Warn("token_header value written in clear in the config, which the /config API and autosave.json show; give value_sha256 or {env.NAME}",
			zap.String("client_id", cc.ClientID))
	}
	if cc.WebhookSecret != "" && !hasPlaceholder(cc.WebhookSecret) {
		logger.Warn("webhook secret written in clear in the config, which the /config API and autosave.json show; give it as {env.NAME}",
			zap.String("client_id", cc.ClientID))
	}
}
