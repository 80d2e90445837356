package slave

import (
	"errors"
	"fmt"
)

// Sentinel errors of this package. Match them with errors.Is.
var (
	// ErrInvalidConfig is returned by [Start] for a Config it cannot use.
	ErrInvalidConfig = errors.New("slave: invalid config")
	// ErrClosed is returned by methods of a [Slave] after Shutdown or Close
	// began, and is the cause of the contexts of the clients it closes.
	ErrClosed = errors.New("slave: closed")
	// ErrRejected matches every [*Rejection].
	ErrRejected = errors.New("slave: offer rejected")
	// ErrCancelled is the context cause of a session the gateway cancelled
	// before it connected (the browser gave up or went away).
	ErrCancelled = errors.New("slave: session cancelled")
	// ErrConnectTimeout is the context cause of a session that did not
	// connect within Config.ConnectTimeout.
	ErrConnectTimeout = errors.New("slave: session did not connect in time")
	// ErrPeerGone is the context cause of a client whose peer connection
	// closed or failed (the browser closed it, went away, or stopped
	// answering ICE checks).
	ErrPeerGone = errors.New("slave: peer connection closed or failed")
	// ErrClientClosed is the context cause of a client closed by
	// [Client.Close] or because its handler returned.
	ErrClientClosed = errors.New("slave: client closed")
)

// Rejection is the error an accept hook returns to refuse an offer with a
// reason the browser sees (its `rejected` event). Create one with [Reject].
type Rejection struct {
	// Reason is shown to the browser; empty means "rejected". It is cut to
	// bus.MaxReasonSize bytes.
	Reason string
}

// Reject returns a *Rejection with reason, for Config.Accept:
//
//	if !allowed(o.Identity) {
//		return slave.Reject("not invited")
//	}
func Reject(reason string) error { return &Rejection{Reason: reason} }

// Error implements the error interface.
func (r *Rejection) Error() string {
	return fmt.Sprintf("slave: offer rejected: %s", r.reason())
}

// Is reports whether target is ErrRejected, so that errors.Is(err,
// ErrRejected) holds for every rejection.
func (r *Rejection) Is(target error) bool { return target == ErrRejected }

// reason returns the reason as sent on the wire: never empty, never over
// the contract's limit, valid UTF-8.
func (r *Rejection) reason() string { return wireReason(r.Reason) }
