// Package tollgate lets `xcaddy build --with github.com/tollgate/tollgate`
// add Tollgate to Caddy: xcaddy imports the path it is given, and this
// package imports the plugin, whose init functions register every module
// (README, "Add it to your Caddy"). The plugin itself is package caddymodule.
package tollgate

import (
	// Registers the tollgate app, its handlers, authenticators and admin routes.
	_ "github.com/tollgate/tollgate/caddymodule"
)
