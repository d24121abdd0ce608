package caddymodule

import (
	"fmt"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"golang.org/x/crypto/bcrypt"
)

func init() {
	caddy.RegisterModule(StaticUsers{})
	caddy.RegisterModule(CaddyAuthUsers{})
}

// Authenticator tells the authorization pages who the user is. It is one of
// two kinds: a PasswordAuthenticator, for which Tollgate shows its own login
// form, or a RequestAuthenticator, which reads an identity established
// before the request reached Tollgate.
type Authenticator interface {
	// Profile returns the profile fields of a subject (name, role,
	// country, picture), or nil when the authenticator does not know them.
	Profile(subject string) map[string]string
}

// PasswordAuthenticator checks a username and password from the login form.
type PasswordAuthenticator interface {
	Authenticator
	// Login returns the subject of the user, or ok=false.
	Login(username, password string) (subject string, ok bool)
}

// RequestAuthenticator reads the user from the request itself.
type RequestAuthenticator interface {
	Authenticator
	// Identify returns the subject and profile of the signed-in user, or
	// an empty subject when nobody is signed in.
	Identify(r *http.Request) (subject string, profile map[string]string)
}

// StaticUsers declares the users in the config, with bcrypt password hashes
// (make them with `caddy hash-password`).
type StaticUsers struct {
	// Users are the accounts that may sign in.
	Users []StaticUser `json:"users,omitempty"`

	byName map[string]*StaticUser
	fake   []byte
}

// StaticUser is one declared user. The username is the subject.
type StaticUser struct {
	Username string `json:"username"`
	// Password is the bcrypt hash of the password.
	Password string `json:"password"`
	Name     string `json:"name,omitempty"`
	Role     string `json:"role,omitempty"`
	Country  string `json:"country,omitempty"`
	// Picture is the URL of the user's photo.
	Picture string `json:"picture,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (StaticUsers) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "tollgate.authenticators.static",
		New: func() caddy.Module { return new(StaticUsers) },
	}
}

// Provision indexes the users and checks their hashes.
func (s *StaticUsers) Provision(caddy.Context) error {
	s.byName = make(map[string]*StaticUser, len(s.Users))
	for i := range s.Users {
		u := &s.Users[i]
		if !safeSubject(u.Username) {
			return fmt.Errorf("user %q: a username is 1 to 256 of A-Z a-z 0-9 . _ @ + - (and not . or ..)", u.Username)
		}
		if _, dup := s.byName[u.Username]; dup {
			return fmt.Errorf("user %s is declared twice", u.Username)
		}
		if _, err := bcrypt.Cost([]byte(u.Password)); err != nil {
			return fmt.Errorf("user %s: password must be a bcrypt hash (caddy hash-password): %w", u.Username, err)
		}
		s.byName[u.Username] = u
	}
	// An unknown username is still checked against a hash of the usual
	// cost, so that the answer time does not tell which usernames exist
	// (the same defence as caddyauth's fake password compare).
	cost := bcrypt.DefaultCost
	if len(s.Users) > 0 {
		cost, _ = bcrypt.Cost([]byte(s.Users[0].Password))
	}
	fake, err := bcrypt.GenerateFromPassword([]byte("tollgate fake password"), cost)
	if err != nil {
		return fmt.Errorf("preparing fake password hash: %w", err)
	}
	s.fake = fake
	return nil
}

// Login implements PasswordAuthenticator.
func (s *StaticUsers) Login(username, password string) (string, bool) {
	u, ok := s.byName[username]
	hash := s.fake
	if ok {
		hash = []byte(u.Password)
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(password)) != nil || !ok {
		return "", false
	}
	return u.Username, true
}

// Profile implements Authenticator.
func (s *StaticUsers) Profile(subject string) map[string]string {
	u, ok := s.byName[subject]
	if !ok {
		return nil
	}
	return map[string]string{"name": u.Name, "role": u.Role, "country": u.Country, "picture": u.Picture}
}

// CaddyAuthUsers takes the user signed in by a preceding Caddy
// authentication handler (basic_auth, forward_auth, a SSO plugin): the
// subject is {http.auth.user.id} and the profile fields are read from
// {http.auth.user.name}, {http.auth.user.role}, {http.auth.user.country}
// and {http.auth.user.picture} when that handler sets them. Only use it
// where every request to the authorize path passes that handler.
type CaddyAuthUsers struct{}

// CaddyModule returns the Caddy module information.
func (CaddyAuthUsers) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "tollgate.authenticators.caddy_auth",
		New: func() caddy.Module { return new(CaddyAuthUsers) },
	}
}

// Identify implements RequestAuthenticator.
func (CaddyAuthUsers) Identify(r *http.Request) (string, map[string]string) {
	repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if !ok {
		return "", nil
	}
	subject, _ := repl.GetString("http.auth.user.id")
	if !safeSubject(subject) {
		return "", nil
	}
	profile := make(map[string]string, len(profileFields))
	for _, f := range profileFields {
		if v, _ := repl.GetString("http.auth.user." + f); v != "" {
			profile[f] = v
		}
	}
	return subject, profile
}

// Profile implements Authenticator: the profile snapshot kept in the grant
// at consent is what /userinfo serves for these users.
func (CaddyAuthUsers) Profile(string) map[string]string { return nil }

// safeSubject reports whether a subject can be put in a URL path as is.
// Operators rewrite API calls onto legacy paths such as
// /legacy/users/{http.auth.user.id}/seatime, and Caddy's rewrite does not
// escape placeholder values: a subject with "/", "?" or ".." would let one
// user address another's records. Such subjects are refused at sign-in.
func safeSubject(s string) bool {
	if s == "" || len(s) > 256 || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '.', c == '_', c == '@', c == '+', c == '-':
		default:
			return false
		}
	}
	return true
}

// displayName is how the pages name the signed-in user: "Alice Mariner
// (alice)" when a name is known, else the subject.
func (a *App) displayName(subject string, profile map[string]string) string {
	name := profile["name"]
	if name == "" && a.users != nil {
		name = a.users.Profile(subject)["name"]
	}
	if name == "" || name == subject {
		return subject
	}
	return name + " (" + subject + ")"
}

// profileFields are the /userinfo claims besides sub.
var profileFields = []string{"name", "role", "country", "picture"}

// Interface guards
var (
	_ caddy.Provisioner     = (*StaticUsers)(nil)
	_ PasswordAuthenticator = (*StaticUsers)(nil)
	_ RequestAuthenticator  = (*CaddyAuthUsers)(nil)
)
