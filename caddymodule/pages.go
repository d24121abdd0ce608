package caddymodule

import (
	"bytes"
	"html/template"
	"net/http"
	"net/url"
	"strings"

	"go.uber.org/zap"

	"github.com/tollgate/tollgate/caddymodule/oauth"
)

// The authorization pages are small, self-contained and script-free. They
// must not be framed (clickjacking a consent button, RFC 6819 §4.4.1.9) nor
// cached, and they load nothing from elsewhere. Their forms post only to
// this origin (form-action 'self'); the consent form, whose answer is a 303
// to the client, also allows the redirect URI's origin, since browsers
// apply form-action to the redirects that follow a submission.
func setPageHeaders(h http.Header, redirectOrigin string) {
	formAction := "'self'"
	if redirectOrigin != "" {
		formAction += " " + redirectOrigin
	}
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; form-action "+formAction+"; frame-ancestors 'none'")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
}

func renderPage(w http.ResponseWriter, status int, t *template.Template, data any) {
	renderPageTo(w, status, t, data, "")
}

// unavailablePage answers a page whose store call failed: 503 with
// Retry-After, asking the user to try again in a moment, never a page that
// the missing answer would make wrong (docs/architecture.md §8.1). logMsg
// names what failed in the log.
func (a *App) unavailablePage(w http.ResponseWriter, logMsg string, err error) {
	a.logger.Error(logMsg, zap.Error(err))
	w.Header().Set("Retry-After", "5")
	renderPage(w, http.StatusServiceUnavailable, errorPage, oauth.Errorf(oauth.TemporarilyUnavailable, "The service is temporarily unavailable. Please try again in a moment."))
}

// renderPageTo is renderPage for a page whose form is answered with a
// redirect to redirectURI.
func renderPageTo(w http.ResponseWriter, status int, t *template.Template, data any, redirectURI string) {
	var buf bytes.Buffer
	if err := t.Execute(&buf, data); err != nil {
		http.Error(w, "page rendering failed", http.StatusInternalServerError)
		return
	}
	setPageHeaders(w.Header(), cspOrigin(redirectURI))
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// cspOrigin is the CSP source expression (CSP3 §2.3.1) of a registered
// redirect URI: scheme://host[:port], or scheme: for a URI without a host
// (a native app's private-use scheme). "" when there is none to allow.
func cspOrigin(uri string) string {
	u, err := url.Parse(uri)
	if err != nil || u.Scheme == "" {
		return ""
	}
	src := u.Scheme + ":"
	if u.Host != "" {
		src += "//" + u.Host
	}
	for _, c := range src {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("+-.:/[]", c)) {
			return ""
		}
	}
	return src
}

const pageHead = `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{template "title" .}}</title>
<style>
body{font-family:system-ui,sans-serif;background:#f4f6f8;color:#1d2733;margin:0}
main{max-width:26rem;margin:4rem auto;background:#fff;border-radius:.5rem;padding:2rem;box-shadow:0 1px 4px #0002}
h1{font-size:1.3rem;margin-top:0} label{display:block;margin:.8rem 0 .3rem}
input[type=text],input[type=password]{width:100%;box-sizing:border-box;padding:.5rem;font-size:1rem}
button{font-size:1rem;padding:.55rem 1.2rem;margin:1rem .5rem 0 0;border-radius:.3rem;border:1px solid #345;cursor:pointer}
button.primary{background:#1f5fa8;color:#fff;border-color:#1f5fa8}
.error{color:#a11;background:#fdecec;padding:.5rem;border-radius:.3rem}
ul{padding-left:1.2rem} li{margin:.3rem 0} small{color:#567}
h2{font-size:1.1rem;margin:1.2rem 0 .3rem} section.app{border-top:1px solid #dde;padding-top:.4rem}
</style></head><body><main>`

const pageFoot = `</main></body></html>`

// signInFields end both sign-in forms, the authorization pages' and the
// connections page's.
const signInFields = `
<label for="username">Username</label>
<input type="text" id="username" name="username" autocomplete="username" required autofocus>
<label for="password">Password</label>
<input type="password" id="password" name="password" autocomplete="current-password" required>
<button class="primary" type="submit">Sign in</button>
</form>`

var loginPage = template.Must(template.New("login").Parse(`{{define "title"}}Sign in{{end}}` + pageHead + `
<h1>Sign in to continue to {{.ClientName}}</h1>
{{if .Error}}<p class="error" role="alert">{{.Error}}</p>{{end}}
<form method="post" action="{{.Action}}">
<input type="hidden" name="tx" value="{{.TX}}">
<input type="hidden" name="csrf" value="{{.CSRF}}">` + signInFields + pageFoot))

var consentPage = template.Must(template.New("consent").Parse(`{{define "title"}}Allow access?{{end}}` + pageHead + `
<h1>{{.ClientName}} wants to access your account</h1>
<p>Signed in as <strong>{{.Subject}}</strong>. If you allow it, {{.ClientName}} will be able to read:</p>
<ul>{{range .Scopes}}<li>{{.Description}} <small>({{.Name}})</small></li>{{end}}</ul>
<p><small>You can disconnect it at any time.</small></p>
<form method="post" action="{{.Action}}">
<input type="hidden" name="tx" value="{{.TX}}">
<input type="hidden" name="csrf" value="{{.CSRF}}">
<button class="primary" type="submit" name="decision" value="allow">Allow</button>
<button type="submit" name="decision" value="deny">Deny</button>
</form>` + pageFoot))

var errorPage = template.Must(template.New("error").Parse(`{{define "title"}}Authorization error{{end}}` + pageHead + `
<h1>This authorization request cannot continue</h1>
<p class="error">{{.Description}}</p>
<p><small>Error: {{.Code}}. Return to the application you came from and try again; if it keeps happening, tell its developers.</small></p>` + pageFoot))

var connectionsLoginPage = template.Must(template.New("connections-login").Parse(`{{define "title"}}Sign in{{end}}` + pageHead + `
<h1>Sign in to see your connected apps</h1>
{{if .Error}}<p class="error" role="alert">{{.Error}}</p>{{end}}
<form method="post" action="{{.Action}}">
<input type="hidden" name="csrf" value="{{.CSRF}}">` + signInFields + pageFoot))

var connectionsPage = template.Must(template.New("connections").Parse(`{{define "title"}}Connected apps{{end}}` + pageHead + `
<h1>Connected apps</h1>
<p>Signed in as <strong>{{.Subject}}</strong>. These apps can read your data until you disconnect them.</p>
{{range .Connections}}
<section class="app">
<h2>{{.ClientName}}</h2>
<ul>{{range .Scopes}}<li>{{.Description}} <small>({{.Name}})</small></li>{{end}}</ul>
<p><small>Connected {{.GrantedAt.UTC.Format "2 Jan 2006 15:04 MST"}} · last used {{.LastUsedAt.UTC.Format "2 Jan 2006 15:04 MST"}}</small></p>
<form method="post" action="{{$.Action}}">
<input type="hidden" name="csrf" value="{{$.CSRF}}">
<button type="submit" name="disconnect" value="{{.ClientID}}">Disconnect {{.ClientName}}</button>
</form>
</section>
{{else}}
<p>No app is connected to your account.</p>
{{end}}` + pageFoot))
