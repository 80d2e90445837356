package gateway

import "errors"

// Sentinel errors of the gateway. Match them with errors.Is.
var (
	// ErrInvalidConfig is returned by New for a Config field out of range
	// (an invalid ID or prefix, a negative limit, an ICE server without URL).
	ErrInvalidConfig = errors.New("gateway: invalid config")
	// ErrClosed is returned by Shutdown after Close, and is the reason given
	// to OnDisconnect for browsers dropped by Close.
	ErrClosed = errors.New("gateway: closed")
	// ErrShutdown is the reason given to OnDisconnect for browsers closed
	// with 1001 (going away) by Shutdown.
	ErrShutdown = errors.New("gateway: shutting down")
	// ErrSlowConsumer is the reason given to OnDisconnect for a browser
	// whose send queue was full.
	ErrSlowConsumer = errors.New("gateway: slow consumer")
	// ErrFlood is the reason given to OnDisconnect for a browser that sent
	// more messages than Config.MessagesPerSecond allows.
	ErrFlood = errors.New("gateway: message flood")
	// ErrFrameTooLarge is the reason given to OnDisconnect for a browser
	// that sent a frame over Config.MaxFrameSize (closed with 1009).
	ErrFrameTooLarge = errors.New("gateway: frame too large")
	// ErrKeepalive is the reason given to OnDisconnect for a browser that
	// answered no ping for two ping intervals, or did not take a frame
	// within the write timeout.
	ErrKeepalive = errors.New("gateway: keepalive timeout")
	// ErrUnhealthy is returned by Gateway.Healthy when the NATS connection
	// is down or the presence watch has ended.
	ErrUnhealthy = errors.New("gateway: unhealthy")
	// ErrBadReply is passed to OnError (wrapped) when a slave's reply to an
	// offer is not a valid bus.OfferReply.
	ErrBadReply = errors.New("gateway: invalid reply from slave")
)
