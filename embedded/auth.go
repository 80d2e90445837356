package embedded

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"

	"github.com/nats-io/nats-server/v2/server"
)

// Credentials is what a connecting client presented in its CONNECT message:
// the user and password of nats.UserInfo, the token of nats.Token, the name
// of nats.Name (each "" when absent), and the address it connects from.
type Credentials struct {
	User     string
	Password string
	Token    string
	Name     string
	// RemoteAddr is the client's address: a *net.TCPAddr for TCP clients,
	// an address whose Network() is "pipe" for in-process connections made
	// outside Server.Connect, nil if unknown.
	RemoteAddr net.Addr
}

// AuthFunc decides whether a client (typically a slave process) may connect:
// a nil error allows it, a non-nil error refuses it; the refusal is logged at
// Info with the error text as "reason" and the client gets nats-server's
// "Authorization Violation" (nats.ErrAuthorization in nats.go).
//
// An allowed client lands in nats-server's global account, where JetStream
// is enabled, with no permission limits.
//
// AuthFunc is called on nats-server's goroutine for the connection, while
// the client waits for its CONNECT to be answered: it must not block long. It
// may be called concurrently for different clients, and again for a client
// already connected when the server's configuration is reloaded. A panic in
// AuthFunc refuses the client and is logged at Error.
//
// Connections made by Server.Connect never reach it. Other in-process
// connections (nats.InProcessServer) do; refusing one takes nats-server's
// 10 s write deadline to complete, as it blocks writing its error to the
// synchronous pipe. Only client connections reach it: a leaf node
// connection that matches none of the configured leaf node users is refused
// without calling it.
type AuthFunc func(Credentials) error

// User is a client account of the embedded server (Config.Users).
type User struct {
	Name     string
	Password string
	// Permissions limits what the user may publish and subscribe to; nil
	// means no limits. For the roles of Enslavism, convert the output of
	// bus.Subjects.SlavePermissions or GatewayPermissions:
	// embedded.Permissions(perms).
	Permissions *Permissions
}

// Permissions limits what a client may publish and subscribe to (subjects
// may hold wildcards), and whether it may publish to the reply subjects of
// requests it received (one reply per request, within two minutes).
type Permissions struct {
	Publish        []string
	Subscribe      []string
	AllowResponses bool
}

// serverPermissions converts p for nats-server.
func (p *Permissions) serverPermissions() *server.Permissions {
	if p == nil {
		return nil
	}
	sp := &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: append([]string(nil), p.Publish...)},
		Subscribe: &server.SubjectPermission{Allow: append([]string(nil), p.Subscribe...)},
	}
	if p.AllowResponses {
		sp.Response = &server.ResponsePermission{MaxMsgs: server.DEFAULT_ALLOW_RESPONSE_MAX_MSGS, Expires: server.DEFAULT_ALLOW_RESPONSE_EXPIRATION}
	}
	return sp
}

// authenticator implements server.Authentication: the internal token, then
// the users, then the AuthFunc.
type authenticator struct {
	users map[string]User
	fn    AuthFunc
	token string // internal token of Server.Connect's in-process connections
	log   *slog.Logger
}

var _ server.Authentication = (*authenticator)(nil)

func newAuthenticator(cfg Config, token string, log *slog.Logger) *authenticator {
	a := &authenticator{fn: cfg.Auth, token: token, log: log}
	if len(cfg.Users) > 0 {
		a.users = make(map[string]User, len(cfg.Users))
		for _, u := range cfg.Users {
			a.users[u.Name] = u
		}
	}
	return a
}

// newInternalToken returns a random token for in-process connections.
func newInternalToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("embedded: internal token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// Check implements server.Authentication. nats-server calls it for client
// connections and for leaf node connections that match none of the leaf
// node users; only clients (server.CLIENT) are handed to the AuthFunc, any
// other kind is refused.
func (a *authenticator) Check(c server.ClientAuthentication) bool {
	if kind := c.Kind(); kind != server.CLIENT {
		a.log.Info("connection refused", keyReason, fmt.Sprintf("connection kind %d is not a client", kind), keyRemote, addrString(c.RemoteAddress()))
		return false
	}
	opts := c.GetOpts()
	addr := c.RemoteAddress()
	if opts == nil {
		return false
	}
	if a.isInternal(opts.Token, addr) {
		return true
	}
	if u, ok := a.users[opts.Username]; ok {
		if subtle.ConstantTimeCompare([]byte(opts.Password), []byte(u.Password)) != 1 {
			a.log.Info("client refused", keyReason, "wrong password", keyRemote, addrString(addr), keyUser, opts.Username)
			return false
		}
		c.RegisterUser(&server.User{Username: u.Name, Permissions: u.Permissions.serverPermissions()})
		a.log.Debug("user allowed", keyRemote, addrString(addr), keyUser, u.Name)
		return true
	}
	if a.fn == nil {
		a.log.Info("client refused", keyReason, "unknown user", keyRemote, addrString(addr), keyUser, opts.Username)
		return false
	}
	creds := Credentials{
		User:       opts.Username,
		Password:   opts.Password,
		Token:      opts.Token,
		Name:       opts.Name,
		RemoteAddr: addr,
	}
	if err := a.call(creds); err != nil {
		a.log.Info("client refused", keyReason, err.Error(), keyRemote, addrString(addr), keyUser, creds.User, keyName, creds.Name)
		return false
	}
	a.log.Debug("client allowed", keyRemote, addrString(addr), keyUser, creds.User, keyName, creds.Name)
	return true
}

// isInternal reports whether a connection is one of Server.Connect's: an
// in-process pipe that presents the internal token.
func (a *authenticator) isInternal(token string, addr net.Addr) bool {
	if addr == nil || addr.Network() != "pipe" || token == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(token), []byte(a.token)) == 1
}

// call runs the AuthFunc, turning a panic into a refusal.
func (a *authenticator) call(creds Credentials) (err error) {
	defer func() {
		if r := recover(); r != nil {
			a.log.Error("auth func panicked", "panic", r, keyRemote, addrString(creds.RemoteAddr))
			err = fmt.Errorf("auth func panicked: %v", r)
		}
	}()
	return a.fn(creds)
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}
