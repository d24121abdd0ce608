// Command tollgate is Caddy with the standard modules plus Tollgate.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/tollgate/tollgate/caddymodule"
)

func main() {
	caddycmd.Main()
}
