package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/enslavism/enslavism/bus"
)

// Rejection is the error a Config.ClientAuth hook returns to refuse a
// browser: the upgrade request is answered with Status and Reason (as plain
// text), like the original's clientauth reject(reason).
type Rejection struct {
	// Status is the HTTP status, 401 (Unauthorized) or 403 (Forbidden)
	// usually; anything outside 400–599 is sent as 401.
	Status int
	// Reason is sent as the response body, for people.
	Reason string
}

// Reject returns a *Rejection with status and reason, for Config.ClientAuth:
//
//	return nil, gateway.Reject(http.StatusForbidden, "banned")
func Reject(status int, reason string) *Rejection {
	return &Rejection{Status: status, Reason: reason}
}

// Error implements error.
func (r *Rejection) Error() string {
	return fmt.Sprintf("gateway: client rejected (%d): %s", r.status(), r.Reason)
}

// Is makes errors.Is(err, bus.ErrUnauthorized) hold for every Rejection.
func (r *Rejection) Is(target error) bool { return target == bus.ErrUnauthorized }

func (r *Rejection) status() int {
	if r.Status < 400 || r.Status > 599 {
		return http.StatusUnauthorized
	}
	return r.Status
}

// Client describes a connected browser to OnConnect and OnDisconnect.
type Client struct {
	// ID is unique among the connections of this gateway (for logs).
	ID uint64
	// RemoteAddr is the network address of the browser (or of the proxy
	// in front of the gateway), from http.Request.RemoteAddr.
	RemoteAddr string
	// Identity is what Config.ClientAuth returned; nil without it.
	Identity any
}

// checkOrigin reports whether the request's Origin is allowed.
func (g *Gateway) checkOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	if len(g.cfg.AllowedOrigins) == 0 {
		u, err := url.Parse(origin)
		return err == nil && strings.EqualFold(u.Host, r.Host)
	}
	for _, allowed := range g.cfg.AllowedOrigins {
		if allowed == "*" || strings.EqualFold(strings.TrimRight(allowed, "/"), origin) {
			return true
		}
	}
	return false
}

// authenticate runs ClientAuth and marshals the identity. It writes the HTTP
// answer itself and returns ok=false when the browser is refused.
func (g *Gateway) authenticate(w http.ResponseWriter, r *http.Request) (identity any, raw json.RawMessage, ok bool) {
	if g.cfg.ClientAuth == nil {
		return nil, nil, true
	}
	identity, err := g.cfg.ClientAuth(r)
	if err != nil {
		var rej *Rejection
		if errors.As(err, &rej) {
			http.Error(w, rej.Reason, rej.status())
			g.log.Debug("browser rejected", keyRemote, r.RemoteAddr, keyReason, rej.Reason)
			return nil, nil, false
		}
		g.onError(fmt.Errorf("gateway: client auth: %w", err))
		http.Error(w, "gateway: authentication failed", http.StatusInternalServerError)
		return nil, nil, false
	}
	if identity == nil {
		return nil, nil, true
	}
	raw, err = json.Marshal(identity)
	if err == nil && len(raw) > bus.MaxIdentitySize {
		err = fmt.Errorf("%d bytes, at most %d", len(raw), bus.MaxIdentitySize)
	}
	if err != nil {
		g.onError(fmt.Errorf("gateway: client auth: identity for %s: %w", r.RemoteAddr, err))
		http.Error(w, "gateway: authentication failed", http.StatusInternalServerError)
		return nil, nil, false
	}
	if string(raw) == "null" {
		raw = nil
	}
	return identity, raw, true
}
