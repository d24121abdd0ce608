#!/usr/bin/env bash
# The proof behind the README's "Add it to your Caddy" section: xcaddy
# (https://github.com/caddyserver/xcaddy) builds stock Caddy, at the version
# go.mod requires, with this checkout as the plugin; the binary must list
# every module Tollgate registers, and adapt and validate Caddyfile.example.
# `make xcaddy` runs it, and so does `make test`.
#
# Network: only the Go module proxy (for xcaddy itself, Caddy and their
# dependencies). GOTOOLCHAIN=local: the Go installed here builds, never a
# downloaded toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
XCADDY_VERSION=v0.4.5
export GOTOOLCHAIN=local

caddy_version=$($GO list -m -f '{{.Version}}' github.com/caddyserver/caddy/v2)
gobin=$($GO env GOPATH)/bin
echo "xcaddy: installing xcaddy $XCADDY_VERSION into $gobin"
GOBIN=$gobin $GO install "github.com/caddyserver/xcaddy/cmd/xcaddy@$XCADDY_VERSION"
xcaddy=$gobin/xcaddy
"$xcaddy" version | grep -q "^$XCADDY_VERSION\b" || { echo "xcaddy: $xcaddy is not $XCADDY_VERSION"; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The module github.com/tollgate/tollgate comes from this checkout (the
# "=." below, which xcaddy turns into a replace), but while resolving imports the go command still asks
# the proxy about github.com/tollgate/tollgate and .../caddymodule. It
# treats only a 404 or 410 answer as "no such module"; any other refusal
# (some proxies answer 403) stops the build, and after a ","
# the next GOPROXY entry is tried only on 404 or 410. So the proxy is
# followed by "|off": on any error the lookup ends as "not found", and the
# replacement is used. Modules the proxy serves are unaffected.
# See https://go.dev/ref/mod#goproxy-protocol and `go help goproxy`.
proxy=$($GO env GOPROXY)
first=${proxy%%[,|]*}
case $first in
direct | off | "") ;;
*) proxy="$first|off" ;;
esac

# xcaddy's default flags (-trimpath, its own build tags) would compile all
# of Caddy again; with plain build flags the packages `make vet` and the
# integration build already compiled come from Go's build cache.
# XCADDY_GO_BUILD_FLAGS: https://github.com/caddyserver/xcaddy#environment-variables
start=$(date +%s)
echo "xcaddy: building Caddy $caddy_version with github.com/tollgate/tollgate=$(pwd)"
if ! GOPROXY=$proxy XCADDY_SKIP_CLEANUP=0 XCADDY_GO_BUILD_FLAGS="-ldflags='-w -s'" \
	"$xcaddy" build "$caddy_version" \
	--with github.com/tollgate/tollgate=. \
	--output "$work/caddy" >"$work/build.log" 2>&1; then
	cat "$work/build.log"
	echo "xcaddy: build failed"
	exit 1
fi
echo "xcaddy: built in $(($(date +%s) - start))s"

caddy=$work/caddy
"$caddy" version | grep -q "^$caddy_version " || {
	echo "xcaddy: built $("$caddy" version), want $caddy_version"
	exit 1
}

# Every module ID Tollgate registers, read from the source (the ID of each
# caddy.ModuleInfo literal outside tests) so that a new module is checked
# without editing this script.
sources=$(find caddymodule -name '*.go' ! -name '*_test.go' | sort)
mapfile -t want < <(awk '/caddy\.ModuleInfo\{/ { m = 1 }
	m && match($0, /ID: *"[^"]+"/) { id = substr($0, RSTART, RLENGTH); sub(/^ID: *"/, "", id); sub(/"$/, "", id); print id; m = 0 }' $sources | sort)
registered=$(cat $sources | grep -c 'caddy.RegisterModule(')
if [ "${#want[@]}" -ne "$registered" ] || [ "$registered" -eq 0 ]; then
	echo "xcaddy: found ${#want[@]} module IDs but $registered caddy.RegisterModule calls under caddymodule/"
	exit 1
fi
"$caddy" list-modules >"$work/modules"
missing=0
for id in "${want[@]}"; do
	if grep -qx "$id" "$work/modules"; then
		echo "xcaddy: module $id"
	else
		echo "xcaddy: module $id MISSING from caddy list-modules"
		missing=1
	fi
done
[ "$missing" = 0 ] || exit 1

# The example with its defaults: no TOLLGATE_* variable set. Caddy's data
# and config directories go to the scratch directory, not $HOME.
for v in $(compgen -e | grep '^TOLLGATE_' || true); do unset "$v"; done
export XDG_DATA_HOME=$work/data XDG_CONFIG_HOME=$work/config
"$caddy" adapt --config Caddyfile.example >"$work/adapted.json" 2>"$work/adapt.log" || {
	cat "$work/adapt.log"
	echo "xcaddy: caddy adapt --config Caddyfile.example failed"
	exit 1
}
"$caddy" validate --config Caddyfile.example >"$work/validate.log" 2>&1 || {
	cat "$work/validate.log"
	echo "xcaddy: caddy validate --config Caddyfile.example failed"
	exit 1
}
echo "xcaddy: caddy adapt and caddy validate accept Caddyfile.example"
