# make run   — the gateway on Caddyfile.example (embedded store)
# make test  — every test, installing redis-server, chromium, node and npm first when missing
# make fuzz  — every fuzz target for a few seconds (part of make test)
# make bench — the gateway benchmark of integration/
# make xcaddy — build stock Caddy with this checkout through xcaddy and check it (part of make test)

GO ?= go

.PHONY: run test deps vet unit fuzz integration bench build xcaddy

run:
	$(GO) run ./cmd/tollgate run --config Caddyfile.example

build:
	$(GO) build -o tollgate ./cmd/tollgate

# The tests start their own redis-server on a free loopback port, the page
# tests drive Debian's headless Chromium (/usr/bin/chromium), and
# TestOAuth4WebAPIClient runs a Node script (node 18 or later, npm); they
# never skip for lack of any, so install what is missing here.
deps:
	@missing=; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	command -v node >/dev/null 2>&1 || missing="$$missing nodejs"; \
	command -v npm >/dev/null 2>&1 || missing="$$missing npm"; \
	[ -z "$$missing" ] || { \
		echo "installing$$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq $$missing >/dev/null; }; \
	node -e 'process.exit(+process.versions.node.split(".")[0] >= 18 ? 0 : 1)' || \
		{ echo "node $$(node --version) is older than 18, which integration/oauth4webapi needs"; exit 1; }

vet:
	@test -z "$$(gofmt -l caddymodule cmd integration)" || { gofmt -l caddymodule cmd integration; echo "gofmt needed"; exit 1; }
	$(GO) vet ./...

unit:
	$(GO) test -race -count=1 ./caddymodule/...

# README, "Add it to your Caddy": xcaddy v0.4.5 builds Caddy (go.mod's
# version) with this checkout, then the binary must list every Tollgate
# module and adapt and validate Caddyfile.example. Needs the Go module
# proxy; installs xcaddy into $(go env GOPATH)/bin.
xcaddy:
	GO=$(GO) ./integration/xcaddy.sh

integration:
	$(GO) test -count=1 -timeout 20m ./integration/...

# go test -fuzz takes one target per run, so loop over package:target
# pairs. A run fails only on a real finding (a failing input written):
# Go 1.26's coordinator can end a duration-bounded run with a bare
# "context deadline exceeded" (https://go.dev/issue/75804). FUZZTIME per target; a failing input is written under the
# package's testdata/fuzz/<Target>/ and then replays in make unit.
FUZZTIME ?= 4s
FUZZ_TARGETS = \
	caddymodule/oauth:FuzzParseAuthorize \
	caddymodule/oauth:FuzzRedirectURI \
	caddymodule/oauth:FuzzParseToken \
	caddymodule/oauth:FuzzParseScope \
	caddymodule/oauth:FuzzPKCE \
	caddymodule:FuzzTokenRequestBody \
	caddymodule:FuzzClientBasic \
	caddymodule:FuzzBearerToken \
	caddymodule:FuzzCaddyfile \
	caddymodule:FuzzFormAction \
	caddymodule:FuzzConnectionNames \
	caddymodule:FuzzStripCookies \
	caddymodule/store/redisstore:FuzzDecodeToken

fuzz:
	@set -e; for pt in $(FUZZ_TARGETS); do \
		pkg=$${pt%%:*}; target=$${pt##*:}; \
		echo "fuzz $$pkg $$target ($(FUZZTIME))"; \
		log=$$(mktemp); \
		if ! $(GO) test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) ./$$pkg >$$log 2>&1; then \
			if grep -q 'Failing input written' $$log || ! grep -q 'context deadline exceeded' $$log; then cat $$log; rm -f $$log; exit 1; fi; \
			grep '^fuzz: elapsed' $$log | tail -n 1; \
			echo "fuzz $$target: 'context deadline exceeded' with no failing input: the Go 1.26 fuzz coordinator's race at the end of -fuzztime (https://go.dev/issue/75804, fixed in Go 1.27), not a finding"; \
		else tail -n 2 $$log; fi; \
		rm -f $$log; \
	done

test: deps vet unit xcaddy fuzz integration

# Plain reverse_proxy, Caddyfile.example with and without tollgate_protect,
# Tollgate on memory, Redis and a Redis Cluster, forward_auth; flows/s,
# refreshes/s and a grant's Redis bytes; pinned to two CPUs. Needs wrk
# (installed here when missing) and taskset (util-linux). BENCHFLAGS adds
# flags, e.g. make bench BENCHFLAGS="-pin=false -quiet-wait 10s".
BENCHFLAGS ?=
bench: deps
	@command -v wrk >/dev/null 2>&1 || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); $$SUDO apt-get install -y -qq wrk >/dev/null; }
	$(GO) run ./integration/bench -duration 10s -rounds 3 -out integration/bench-results/bench.md $(BENCHFLAGS)
