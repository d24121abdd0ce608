package integration

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// browser is a crew member's user agent: it keeps cookies, submits the
// HTML forms it is shown and, unlike a real browser, stops at every
// redirect so the test can read the Location the gateway chose.
type browser struct {
	t      *testing.T
	gw     *gateway
	jar    *cookiejar.Jar
	client *http.Client
}

func newBrowser(t *testing.T, gw *gateway) *browser {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &browser{
		t:   t,
		gw:  gw,
		jar: jar,
		client: &http.Client{
			Jar:     jar,
			Timeout: 10 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
	}
}

// page is one response as the browser saw it.
type page struct {
	req    string // "GET <url>" or "POST <url> <body>", for failure messages
	url    *url.URL
	status int
	header http.Header
	body   string
	doc    *html.Node // nil unless the response parsed as HTML
}

// String describes the exchange for a failure message.
func (p *page) String() string {
	body := p.body
	if len(body) > 2000 {
		body = body[:2000] + "…"
	}
	return fmt.Sprintf("%s\n→ %d %s\nLocation: %q\nSet-Cookie: %q\n%s",
		p.req, p.status, p.header.Get("Content-Type"), p.header.Get("Location"), p.header.Values("Set-Cookie"), body)
}

func (b *browser) get(rawURL string) *page {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.do(req, "GET "+rawURL)
}

func (b *browser) post(rawURL string, form url.Values) *page {
	b.t.Helper()
	body := form.Encode()
	req, err := http.NewRequest(http.MethodPost, rawURL, strings.NewReader(body))
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	// What a browser sends with a same-origin form post.
	req.Header.Set("Origin", b.gw.base)
	return b.do(req, "POST "+rawURL+" "+redactForm(form))
}

func (b *browser) do(req *http.Request, desc string) *page {
	b.t.Helper()
	resp, err := b.client.Do(req)
	if err != nil {
		b.t.Fatalf("%s: %v", desc, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatalf("%s: reading body: %v", desc, err)
	}
	p := &page{req: desc, url: req.URL, status: resp.StatusCode, header: resp.Header, body: string(raw)}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		if doc, err := html.Parse(bytes.NewReader(raw)); err == nil {
			p.doc = doc
		}
	}
	return p
}

// cookie returns the value the jar holds for name at the gateway, or "".
func (b *browser) cookie(name string) string {
	u, _ := url.Parse(b.gw.base + "/oauth/authorize")
	for _, c := range b.jar.Cookies(u) {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

func (b *browser) setCookie(name, value string) {
	u, _ := url.Parse(b.gw.base + "/")
	b.jar.SetCookies(u, []*http.Cookie{{Name: name, Value: value, Path: "/"}})
}

// form is the first <form method="post"> of a page.
type form struct {
	action  string
	hidden  url.Values        // every <input type="hidden">
	inputs  map[string]string // every named <input>: name → type
	buttons []string          // every submit control as "name=value"
}

func (p *page) form() *form {
	if p.doc == nil {
		return nil
	}
	var found *form
	var walk func(n *html.Node, in *form)
	walk = func(n *html.Node, in *form) {
		if n.Type == html.ElementNode {
			switch n.DataAtom {
			case atom.Form:
				if found == nil && strings.EqualFold(attr(n, "method"), "post") {
					found = &form{action: attr(n, "action"), hidden: url.Values{}, inputs: map[string]string{}}
					in = found
				} else {
					in = nil
				}
			case atom.Input:
				if in != nil && attr(n, "name") != "" {
					typ := strings.ToLower(attr(n, "type"))
					if typ == "" {
						typ = "text"
					}
					in.inputs[attr(n, "name")] = typ
					switch typ {
					case "hidden":
						in.hidden.Add(attr(n, "name"), attr(n, "value"))
					case "submit":
						in.buttons = append(in.buttons, attr(n, "name")+"="+attr(n, "value"))
					}
				}
			case atom.Button:
				typ := strings.ToLower(attr(n, "type"))
				if in != nil && (typ == "" || typ == "submit") {
					in.buttons = append(in.buttons, attr(n, "name")+"="+attr(n, "value"))
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c, in)
		}
	}
	walk(p.doc, nil)
	return found
}

func (f *form) hasButton(nameValue string) bool {
	for _, b := range f.buttons {
		if b == nameValue {
			return true
		}
	}
	return false
}

// isLogin reports whether the page is the sign-in form the contract
// describes: inputs named username and password.
func (p *page) isLogin() bool {
	f := p.form()
	return f != nil && f.inputs["username"] != "" && f.inputs["password"] == "password"
}

// isConsent reports whether the page is the consent form: submit buttons
// decision=allow and decision=deny.
func (p *page) isConsent() bool {
	f := p.form()
	return f != nil && f.hasButton("decision=allow") && f.hasButton("decision=deny")
}

// text is the page's visible text with whitespace collapsed.
func (p *page) text() string {
	if p.doc == nil {
		return ""
	}
	var sb strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && (n.DataAtom == atom.Script || n.DataAtom == atom.Style) {
			return
		}
		if n.Type == html.TextNode {
			sb.WriteString(n.Data)
			sb.WriteByte(' ')
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(p.doc)
	return strings.Join(strings.Fields(sb.String()), " ")
}

// submit posts the page's form: its hidden inputs, overridden or extended
// by fields, to its action resolved against the page URL.
func (b *browser) submit(p *page, fields url.Values) *page {
	b.t.Helper()
	action, values := b.formPost(p, fields)
	return b.post(action.String(), values)
}

// formPost returns where the page's form posts (resolved against the page
// URL) and what: its hidden inputs, overridden or extended by fields.
func (b *browser) formPost(p *page, fields url.Values) (*url.URL, url.Values) {
	b.t.Helper()
	f := p.form()
	if f == nil {
		b.t.Fatalf("no <form method=post> on the page:\n%s", p)
	}
	action, err := p.url.Parse(f.action)
	if err != nil {
		b.t.Fatalf("form action %q: %v", f.action, err)
	}
	values := url.Values{}
	for k, vs := range f.hidden {
		values[k] = append([]string(nil), vs...)
	}
	for k, vs := range fields {
		values[k] = vs
	}
	return action, values
}

func attr(n *html.Node, name string) string {
	for _, a := range n.Attr {
		if a.Key == name {
			return a.Val
		}
	}
	return ""
}

// redactForm hides the password in failure messages.
func redactForm(v url.Values) string {
	if _, ok := v["password"]; !ok {
		return v.Encode()
	}
	c := url.Values{}
	for k, vs := range v {
		c[k] = vs
	}
	c.Set("password", "***")
	return c.Encode()
}
