# Caddy with the Tollgate plugin, built the way the official image documents
# for custom modules (https://hub.docker.com/_/caddy, "Adding custom Caddy
# modules"): xcaddy in the builder image, the binary copied into the plain
# image. See the README, "Docker".
#
#   docker build -t tollgate .
#   docker run --rm -p 8080:8080 tollgate
#
# The tags match the Caddy version in go.mod (v2.11.9).

FROM caddy:2.11.9-builder AS builder

# The plugin's source: this checkout (.dockerignore keeps .git, node_modules
# and benchmark output out of it).
COPY . /src

# The module root holds no Go package, so the plugin is named by its package
# (github.com/tollgate/tollgate/caddymodule) and the module is replaced by
# /src: the same command `make xcaddy` runs (README, "Add it to your Caddy").
# GOPROXY "…|off": only the module proxy, and an unknown module (this one,
# which comes from /src) is "not found" rather than an error, see
# https://go.dev/ref/mod#goproxy-protocol. GOTOOLCHAIN=auto: go.mod asks for
# Go 1.26.8; if the builder's Go is older, the go command fetches that
# toolchain from the proxy (https://go.dev/doc/toolchain).
ARG GOPROXY=https://proxy.golang.org|off
ENV GOTOOLCHAIN=auto
RUN xcaddy build \
	--with github.com/tollgate/tollgate=/src \
	--output /usr/bin/caddy

FROM caddy:2.11.9

COPY --from=builder /usr/bin/caddy /usr/bin/caddy
COPY Caddyfile.example /etc/caddy/Caddyfile

# A non-root user. Caddy keeps its state under XDG_DATA_HOME=/data and its
# autosaved config under XDG_CONFIG_HOME=/config (both set, and declared as
# volumes, by the base image: https://hub.docker.com/_/caddy), so the user
# must own them (BuildKit keeps what a build step changes in a declared
# volume: https://docs.docker.com/reference/dockerfile/#volume). The gateway
# listens on 8080, so no capability to bind ports below 1024 is needed.
RUN addgroup -S -g 10001 tollgate \
	&& adduser -S -D -H -u 10001 -G tollgate tollgate \
	&& mkdir -p /data/caddy /config/caddy \
	&& chown -R tollgate:tollgate /data /config

# The settings Caddyfile.example reads (its header; README, "Docker"):
#   TOLLGATE_HOST         empty here: the gateway answers any host name, not
#                         only localhost (unset → localhost)
#   TOLLGATE_PORT         the gateway's port (default 8080)
#   TOLLGATE_STORE        unset → embedded memory store (one node, lost on
#                         restart); redis://host:6379/0 → Redis
#   TOLLGATE_LEGACY_PORT  the fake legacy API's port, loopback only (default 8090)
#   TOLLGATE_LEGACY_UPSTREAM  host:port of the legacy API (default 127.0.0.1:8090,
#                         the fake one)
#   TOLLGATE_ADMIN        Caddy's admin endpoint (default localhost:2019, inside
#                         the container)
#   TOLLGATE_RATE_LIMIT   each grant's budget, <count>/<duration> (default 5000/1h)
#   TOLLGATE_STORE_TIMEOUT  how long one store call may take (default 250ms)
#   TOLLGATE_WEBHOOK_URL  the demo partner's webhook receiver
#                         (default http://localhost:9999/webhooks/dss)
# The example's issuer is http://localhost:8080 and its client, users and
# secrets are demo values: mount your own Caddyfile over /etc/caddy/Caddyfile
# for anything real.
ENV TOLLGATE_HOST=""
ENV TOLLGATE_PORT=8080

# Numeric, so that a runtime can check it is not root.
USER 10001:10001
EXPOSE 8080
WORKDIR /srv
CMD ["caddy", "run", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile"]
