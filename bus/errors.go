package bus

import (
	"errors"
	"fmt"
)

// Sentinel errors returned by this package. Match them with errors.Is.
var (
	// ErrInvalidID is returned for an ID (slave, session, gateway, prefix)
	// that does not match ^[A-Za-z0-9_-]{1,64}$.
	ErrInvalidID = errors.New("bus: invalid id")
	// ErrMalformed is returned when a message cannot be decoded or misses a
	// required field.
	ErrMalformed = errors.New("bus: malformed message")
	// ErrTooLarge is returned when a message or a userData value exceeds its limit.
	ErrTooLarge = errors.New("bus: message too large")
	// ErrDuplicateID is returned by [Presence.Register] when a live slave
	// already holds the ID.
	ErrDuplicateID = errors.New("bus: slave id already registered")
	// ErrNotSubject is returned when a subject does not belong to the
	// contract (wrong prefix, wrong shape).
	ErrNotSubject = errors.New("bus: subject not part of the contract")
	// ErrClosed is returned by a [Registration] or [Watcher] used after it ended.
	ErrClosed = errors.New("bus: closed")
)

// Code is a wire error code, shared by the browser protocol and the NATS
// replies of slaves.
type Code string

// The wire error codes.
const (
	CodeBadRequest   Code = "bad_request"   // the message is malformed or invalid
	CodeNoSuchSlave  Code = "no_such_slave" // no live slave has that ID
	CodeTimeout      Code = "timeout"       // the slave did not answer in time
	CodeRateLimited  Code = "rate_limited"  // too many requests; slow down
	CodeUnauthorized Code = "unauthorized"  // authentication refused
	CodeUnavailable  Code = "unavailable"   // the service is shutting down or the bus is down
	CodeInternal     Code = "internal"      // an unexpected failure on the other side
	CodeTooMany      Code = "too_many"      // a per-connection limit (pending sessions, connections) is reached
)

// Error is a wire error: a code other programs can act on and a message for
// people. Two Errors match with errors.Is when their codes are equal, so
// errors.Is(err, bus.ErrTimeout) holds for any timeout whatever its message.
type Error struct {
	Code    Code   `json:"code"`
	Message string `json:"message,omitempty"`
}

// Error implements the error interface.
func (e *Error) Error() string {
	if e.Message == "" {
		return "bus: " + string(e.Code)
	}
	return fmt.Sprintf("bus: %s: %s", e.Code, e.Message)
}

// Is reports whether target is an *Error with the same code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t != nil && t.Code == e.Code
}

// NewError returns an *Error with the code and a formatted message.
func NewError(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Wire errors to match with errors.Is, one per code.
var (
	ErrBadRequest   = &Error{Code: CodeBadRequest}
	ErrNoSuchSlave  = &Error{Code: CodeNoSuchSlave}
	ErrTimeout      = &Error{Code: CodeTimeout}
	ErrRateLimited  = &Error{Code: CodeRateLimited}
	ErrUnauthorized = &Error{Code: CodeUnauthorized}
	ErrUnavailable  = &Error{Code: CodeUnavailable}
	ErrInternal     = &Error{Code: CodeInternal}
	ErrTooMany      = &Error{Code: CodeTooMany}
)
