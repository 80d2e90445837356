package gateway

import (
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/enslavism/enslavism/bus"
)

// Defaults of Config.
const (
	DefaultOfferTimeout       = 10 * time.Second
	DefaultMaxFrameSize       = 64 << 10
	DefaultOffersPerSecond    = 10
	DefaultOfferBurst         = 20
	DefaultMessagesPerSecond  = 200
	DefaultMessageBurst       = 400
	DefaultMaxPendingSessions = 32
	DefaultPingInterval       = 30 * time.Second
	DefaultWriteTimeout       = 10 * time.Second
	DefaultSendQueue          = 256
)

// Config configures New. The zero value is a working gateway for pages served
// by the same host: a random ID, the default subjects and presence bucket, no
// ICE servers, no client authentication, same-origin pages only, and the
// limits below.
type Config struct {
	// ID identifies the gateway on NATS (slaves send it candidates on
	// "<prefix>.gateway.<ID>.>") and is sent to browsers as hello.gateway.
	// It must match ^[A-Za-z0-9_-]{1,64}$ and be unique among the gateways
	// sharing a NATS cluster. "" means a random ID (bus.NewID).
	ID string

	// Subjects gives the subject prefix shared with the slaves. The zero
	// value uses bus.DefaultPrefix.
	Subjects bus.Subjects

	// Presence configures the presence bucket the gateway opens, or creates
	// when it comes first. Its Subjects field, when zero, is set to
	// Subjects, and its Logger, when nil, to Logger. The zero value is the
	// contract's default.
	Presence bus.PresenceConfig

	// ICEServers are the STUN/TURN servers handed to every browser in hello,
	// which the browser library uses for its peer connections. nil sends an
	// empty list (fine on a LAN or when slaves have public addresses).
	ICEServers []ICEServer

	// Region says where the gateway runs; it is sent to browsers in
	// hello.region (MasterConnection.region), so that a page can prefer
	// the slaves of the same region (SlaveConnection.region). At most 64
	// bytes of printable UTF-8; empty sends none.
	Region string

	// ClientAuth, when set, decides whether a browser may connect, from its
	// upgrade request (cookies, headers, query parameters: the original's
	// clientauth). It returns the browser's identity, marshalled to JSON
	// once (at most bus.MaxIdentitySize bytes) and passed to slaves with
	// each of the browser's offers (OfferRequest.Identity; nil passes none),
	// or an error: a *Rejection (see Reject) answers the upgrade with its
	// HTTP status and reason; any other error answers 500 and goes to
	// OnError. It runs on the request's goroutine, before the upgrade, and
	// may block (the browser waits). nil accepts every browser, with no
	// identity.
	ClientAuth func(r *http.Request) (identity any, err error)

	// AllowedOrigins lists the origins (such as "https://game.example.com")
	// of pages allowed to open the WebSocket, compared without regard to
	// case. nil or empty means same-origin only: the Origin header's host
	// must equal the request's Host. "*" allows any origin. Requests
	// without an Origin header (non-browser clients) are always allowed;
	// authenticate those with ClientAuth.
	AllowedOrigins []string

	// OfferTimeout is how long the gateway waits for a slave's answer; a
	// slave that does not answer in time gets a cancel and the browser an
	// error with code timeout. It is also how long after the answer the
	// session stays routable for ICE candidates (the signaling window).
	// Zero means DefaultOfferTimeout.
	OfferTimeout time.Duration

	// MaxFrameSize is the largest text frame accepted from a browser, in
	// bytes; a larger one closes the connection with 1009 (message too
	// big). Zero means DefaultMaxFrameSize (64 KiB, enough for any offer).
	MaxFrameSize int64

	// OffersPerSecond and OfferBurst limit the offers of one browser
	// connection (a token bucket): an offer past the limit gets an error
	// with code rate_limited and the connection stays open. Zero means
	// DefaultOffersPerSecond and DefaultOfferBurst; a negative
	// OffersPerSecond disables the limit.
	OffersPerSecond float64
	OfferBurst      int

	// MessagesPerSecond and MessageBurst limit every message of one browser
	// connection: a browser past this limit is flooding and its connection
	// is closed with 1008 (policy violation). Zero means
	// DefaultMessagesPerSecond and DefaultMessageBurst; a negative
	// MessagesPerSecond disables the limit.
	MessagesPerSecond float64
	MessageBurst      int

	// MaxPendingSessions is how many offers of one browser connection may
	// wait for their slave's answer at once; one more offer gets an error
	// with code too_many. (Answered sessions stay routable for OfferTimeout
	// but do not count; OffersPerSecond bounds them.) Zero means
	// DefaultMaxPendingSessions; negative means no limit.
	MaxPendingSessions int

	// MaxConnections is how many browsers may be connected at once; one
	// more gets an error frame with code too_many and a close with 1013
	// (try again later), and the browser library retries with backoff. Zero
	// means no limit.
	MaxConnections int

	// PingInterval is how often each browser is pinged; a browser that
	// sends nothing, not even a pong, for two intervals is disconnected.
	// Zero means DefaultPingInterval.
	PingInterval time.Duration

	// WriteTimeout bounds every write to a browser; a browser that does not
	// take a frame within it is disconnected. Zero means
	// DefaultWriteTimeout.
	WriteTimeout time.Duration

	// SendQueue is how many frames may wait to be written to one browser.
	// A browser whose queue is full is a slow consumer: it is disconnected
	// (close 1013, counted in Stats.SlowConsumers) so that it never delays
	// the others; it reconnects and gets a fresh list. Zero means
	// DefaultSendQueue.
	SendQueue int

	// OnConnect, when set, is called once per accepted browser, after the
	// upgrade and after hello and the slave list have been queued for it.
	// It runs on the goroutine of the upgrade request, before the gateway
	// reads anything from that browser: it may block, which delays only
	// that browser's messages. Calls for different browsers are
	// concurrent; OnConnect returns before that browser's OnDisconnect is
	// called.
	OnConnect func(*Client)

	// OnDisconnect, when set, is called once per accepted browser when its
	// connection has ended and its pending sessions have been cancelled.
	// err is nil when the browser closed normally, otherwise the reason
	// (ErrSlowConsumer, ErrFlood, ErrFrameTooLarge, ErrKeepalive,
	// ErrShutdown, a network error…). It runs on that browser's goroutine
	// and may block; Shutdown waits for it.
	OnDisconnect func(c *Client, err error)

	// OnOffer, when set, is called once per offer relayed to a slave, when
	// its outcome is known (for metrics): answered, rejected, no such
	// slave, timeout, error, or cancelled by the browser before the answer.
	// It is called from the gateway's NATS handlers, timers and connection
	// goroutines, possibly concurrently, and must not block.
	OnOffer func(OfferResult)

	// OnError, when set, receives the errors nobody else sees: a slave's
	// invalid reply, a failed publish, a ClientAuth failure that is not a
	// Rejection. It is called from the gateway's NATS handlers and
	// connection goroutines, possibly concurrently, and must not block.
	OnError func(error)

	// Logger receives the gateway's logs, with "component"="gateway". nil
	// means slog.Default().
	Logger *slog.Logger
}

// withDefaults returns cfg with every zero field set to its default, or an
// error matching ErrInvalidConfig.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.ID == "" {
		cfg.ID = bus.NewID()
	}
	if err := bus.ValidateID(cfg.ID); err != nil {
		return cfg, fmt.Errorf("%w: ID %.64q: %v", ErrInvalidConfig, cfg.ID, err)
	}
	subjects, err := bus.NewSubjects(cfg.Subjects.Prefix)
	if err != nil {
		return cfg, fmt.Errorf("%w: subject prefix: %v", ErrInvalidConfig, err)
	}
	cfg.Subjects = subjects
	if cfg.Presence.Subjects == (bus.Subjects{}) {
		cfg.Presence.Subjects = subjects
	}
	if err := bus.ValidateRegion(cfg.Region); err != nil {
		return cfg, fmt.Errorf("%w: Region: %v", ErrInvalidConfig, err)
	}
	for i, s := range cfg.ICEServers {
		if len(s.URLs) == 0 {
			return cfg, fmt.Errorf("%w: ICEServers[%d] has no URL", ErrInvalidConfig, i)
		}
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"OfferTimeout", &cfg.OfferTimeout, DefaultOfferTimeout},
		{"PingInterval", &cfg.PingInterval, DefaultPingInterval},
		{"WriteTimeout", &cfg.WriteTimeout, DefaultWriteTimeout},
	} {
		if *d.v < 0 {
			return cfg, fmt.Errorf("%w: negative %s", ErrInvalidConfig, d.name)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if cfg.MaxFrameSize < 0 || cfg.SendQueue < 0 || cfg.MaxConnections < 0 || cfg.OfferBurst < 0 || cfg.MessageBurst < 0 {
		return cfg, fmt.Errorf("%w: negative MaxFrameSize, SendQueue, MaxConnections, OfferBurst or MessageBurst", ErrInvalidConfig)
	}
	if cfg.MaxFrameSize == 0 {
		cfg.MaxFrameSize = DefaultMaxFrameSize
	}
	if cfg.SendQueue == 0 {
		cfg.SendQueue = DefaultSendQueue
	}
	if cfg.OffersPerSecond == 0 {
		cfg.OffersPerSecond = DefaultOffersPerSecond
	}
	if cfg.OfferBurst == 0 {
		cfg.OfferBurst = DefaultOfferBurst
	}
	if cfg.MessagesPerSecond == 0 {
		cfg.MessagesPerSecond = DefaultMessagesPerSecond
	}
	if cfg.MessageBurst == 0 {
		cfg.MessageBurst = DefaultMessageBurst
	}
	if cfg.MaxPendingSessions == 0 {
		cfg.MaxPendingSessions = DefaultMaxPendingSessions
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Presence.Logger == nil {
		cfg.Presence.Logger = cfg.Logger
	}
	cfg.Logger = cfg.Logger.With("component", "gateway")
	return cfg, nil
}
