package embedded

import "errors"

// ErrInvalidConfig is returned by Start when a Config field is out of range
// (a negative port other than -1, a port above 65535, a negative memory limit).
var ErrInvalidConfig = errors.New("embedded: invalid config")

// ErrListen is returned by Start when the server cannot open one of its
// listeners (client or monitoring), typically because the port is already in
// use. The error text names the address; the underlying network error, when
// nats-server reports one, is wrapped too (errors.Is(err, syscall.EADDRINUSE)).
var ErrListen = errors.New("embedded: cannot listen")

// ErrStart is returned by Start when nats-server refuses its options or fails
// to start for another reason than a listener (JetStream store, not ready
// before the deadline, …).
var ErrStart = errors.New("embedded: cannot start server")

// ErrClosed is returned by Connect once Shutdown or Close has been called.
var ErrClosed = errors.New("embedded: server shut down")
