// Package gateway is the Enslavism gateway (the original's master): an
// http.Handler that serves the browser library and the browsers' WebSocket,
// keeps every browser's slave list in sync with the presence bucket, and
// relays WebRTC signaling between browsers and slaves over NATS.
//
// Mount it on your own server or mux:
//
//	g, err := gateway.New(ctx, nc, gateway.Config{})
//	if err != nil { … }
//	defer g.Close()
//	mux.Handle("/enslavism/", g)
//
// It serves:
//
//	GET /enslavism/client.js    the browser library as a classic script (globals MasterConnection, SlaveConnection)
//	GET /enslavism/client.mjs   the same as an ES module
//	GET /enslavism/client.d.ts  its TypeScript declarations
//	GET /enslavism/clients      the browsers' WebSocket (JSON protocol, see the Type constants)
//
// The gateway is stateless: the slave list comes from the presence bucket
// (one KV watch per gateway, fanned out to every browser), and a session
// lives only while it is being signaled. Any number of gateways can serve the
// same slaves; a browser that loses its gateway reconnects to any of them.
//
// Sessions are scoped per connection: a browser names its sessions, and the
// gateway maps (connection, session) to a fresh key used on NATS, so no
// browser can reach another's session.
package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/enslavism/enslavism/bus"
	"github.com/enslavism/enslavism/web"
)

// readBufferSize is the read buffer of each browser connection.
const readBufferSize = 512

// Log attribute keys.
const (
	keyConn    = "conn"
	keyRemote  = "remote"
	keyReason  = "reason"
	keySlave   = "slave"
	keySession = "session"
	keyErr     = "err"
)

// Gateway is a running gateway. It implements http.Handler; its methods are
// safe for concurrent use.
type Gateway struct {
	nc        *nats.Conn
	cfg       Config
	log       *slog.Logger
	subjects  bus.Subjects
	presence  *bus.Presence
	watcher   *bus.Watcher
	stopWatch context.CancelFunc

	iceSub, replySub *nats.Subscription
	replyPrefix      string

	upgrader websocket.Upgrader
	assets   map[string]asset
	hello    []byte

	mu       sync.Mutex // guards what follows; taken before conn.mu
	conns    map[*conn]struct{}
	slaves   map[string]slaveJSON // slave ID → what browsers know of it
	snapshot []byte               // cached "slaves" frame; nil after a change
	closing  bool

	sessMu   sync.Mutex
	sessions map[string]*session // gateway-scoped key → session

	connWG   sync.WaitGroup // browser connections and their writers
	bgWG     sync.WaitGroup // fan-out and pinger
	stop     chan struct{}  // closed when shutting down
	shutOnce sync.Once
	shutDone chan struct{}
	shutErr  error
	closed   atomic.Bool

	nextConnID atomic.Uint64
	reserved   atomic.Int64 // connections counted against MaxConnections
	stats      counters
}

type asset struct {
	body        []byte
	contentType string
	etag        string
}

type counters struct {
	accepted, refused, slow, abuse, offers atomic.Uint64
}

// Stats is a snapshot of a gateway's counters, for health checks and metrics.
type Stats struct {
	// Connections is the number of browsers connected now.
	Connections int
	// Slaves is the number of slaves listed now.
	Slaves int
	// Sessions is the number of sessions in the signaling window now.
	Sessions int
	// Accepted counts the browser connections accepted since New.
	Accepted uint64
	// Refused counts the upgrade requests refused (origin, ClientAuth,
	// MaxConnections, shutdown, invalid handshake) since New.
	Refused uint64
	// SlowConsumers counts the browsers dropped because their send queue
	// was full.
	SlowConsumers uint64
	// Abusive counts the browsers closed for an oversized frame or a flood.
	Abusive uint64
	// Offers counts the offers relayed to slaves.
	Offers uint64
}

// New starts a gateway on nc, which the caller owns and closes after the
// gateway: it opens (or creates) the presence bucket, reads the slave list,
// and subscribes to the gateway's subject and to its reply inbox. ctx bounds
// this setup only; the gateway then runs until Shutdown or Close.
//
// New returns an error matching ErrInvalidConfig for a bad cfg, or the error
// of the bus (JetStream unavailable, NATS closed…).
func New(ctx context.Context, nc *nats.Conn, cfg Config) (*Gateway, error) {
	if nc == nil {
		return nil, fmt.Errorf("%w: nil NATS connection", ErrInvalidConfig)
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	g := &Gateway{
		nc:       nc,
		cfg:      cfg,
		log:      cfg.Logger.With("gateway", cfg.ID),
		subjects: cfg.Subjects,
		conns:    map[*conn]struct{}{},
		slaves:   map[string]slaveJSON{},
		sessions: map[string]*session{},
		stop:     make(chan struct{}),
		shutDone: make(chan struct{}),
	}
	g.upgrader = websocket.Upgrader{
		HandshakeTimeout: cfg.WriteTimeout,
		// A small read buffer (frames larger than it are read in several
		// calls) and write buffers from a pool, so that an idle
		// connection holds 512 bytes of buffers.
		WriteBufferPool: &sync.Pool{},
		ReadBufferSize:  readBufferSize,
		CheckOrigin:     func(*http.Request) bool { return true }, // checked before
	}
	g.assets = map[string]asset{
		"/client.js":   newAsset(web.ClassicScript(), "text/javascript; charset=utf-8"),
		"/client.mjs":  newAsset(web.Module(), "text/javascript; charset=utf-8"),
		"/client.d.ts": newAsset(web.TypeScript(), "application/typescript; charset=utf-8"),
	}
	iceServers := cfg.ICEServers
	if iceServers == nil {
		iceServers = []ICEServer{}
	}
	g.hello = encodeFrame(helloMsg{Type: TypeHello, Version: ProtocolVersion, Gateway: cfg.ID, ICEServers: iceServers, Region: cfg.Region})

	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("gateway: jetstream: %w", err)
	}
	if g.presence, err = bus.OpenPresence(ctx, js, cfg.Presence); err != nil {
		return nil, fmt.Errorf("gateway: presence: %w", err)
	}
	// The watch lives as long as the gateway, not as long as ctx; ctx
	// still aborts its start.
	watchCtx, stopWatch := context.WithCancel(context.WithoutCancel(ctx))
	stopAfter := context.AfterFunc(ctx, stopWatch)
	g.watcher, err = g.presence.Watch(watchCtx, bus.WatchOptions{})
	if !stopAfter() || err != nil {
		stopWatch()
		if g.watcher != nil {
			g.watcher.Stop()
		}
		if err == nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("gateway: watching presence: %w", err)
	}
	g.stopWatch = stopWatch
	for _, s := range g.watcher.Snapshot() {
		g.slaves[s.ID] = slaveFromInfo(s)
	}

	if err := g.subscribe(ctx); err != nil {
		g.stopWatch()
		g.watcher.Stop()
		return nil, err
	}
	g.bgWG.Add(2)
	go g.fanOut()
	go g.pinger()
	g.log.Info("gateway started", "slaves", len(g.slaves), "bucket", g.presence.Bucket())
	return g, nil
}

// subscribe creates the gateway's two subscriptions: its subject, where
// slaves send ICE candidates, and its reply inbox for offers.
func (g *Gateway) subscribe(ctx context.Context) error {
	wildcard, err := g.subjects.GatewayWildcard(g.cfg.ID)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidConfig, err)
	}
	if g.iceSub, err = g.nc.Subscribe(wildcard, g.onSlaveICE); err != nil {
		return fmt.Errorf("gateway: subscribing to %s: %w", wildcard, err)
	}
	g.replyPrefix = g.nc.NewInbox() + "."
	if g.replySub, err = g.nc.Subscribe(g.replyPrefix+"*", g.onReply); err != nil {
		_ = g.iceSub.Unsubscribe()
		return fmt.Errorf("gateway: subscribing to replies: %w", err)
	}
	for _, sub := range []*nats.Subscription{g.iceSub, g.replySub} {
		_ = sub.SetPendingLimits(-1, 64<<20)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Second) // nats requires a deadline
		defer cancel()
	}
	if err := g.nc.FlushWithContext(ctx); err != nil {
		_ = g.iceSub.Unsubscribe()
		_ = g.replySub.Unsubscribe()
		return fmt.Errorf("gateway: subscribing: %w", err)
	}
	return nil
}

func newAsset(body []byte, contentType string) asset {
	sum := sha256.Sum256(body)
	return asset{body: body, contentType: contentType, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
}

// ID returns the gateway's ID, the one in its NATS subject and in hello.
func (g *Gateway) ID() string { return g.cfg.ID }

// ServeHTTP serves the browser library and the browsers' WebSocket under
// /enslavism/ (client.js, client.mjs, client.d.ts, clients); the paths are
// also recognised with the /enslavism prefix stripped. Other paths get 404.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := strings.TrimPrefix(r.URL.Path, "/enslavism")
	if p == "/clients" {
		g.serveClients(w, r)
		return
	}
	a, ok := g.assets[p]
	if !ok {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	h := w.Header()
	h.Set("Content-Type", a.contentType)
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", a.etag)
	h.Set("X-Content-Type-Options", "nosniff")
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
}

// Stats returns the gateway's counters.
func (g *Gateway) Stats() Stats {
	g.mu.Lock()
	conns, slaves := len(g.conns), len(g.slaves)
	g.mu.Unlock()
	g.sessMu.Lock()
	sessions := len(g.sessions)
	g.sessMu.Unlock()
	return Stats{
		Connections:   conns,
		Slaves:        slaves,
		Sessions:      sessions,
		Accepted:      g.stats.accepted.Load(),
		Refused:       g.stats.refused.Load(),
		SlowConsumers: g.stats.slow.Load(),
		Abusive:       g.stats.abuse.Load(),
		Offers:        g.stats.offers.Load(),
	}
}

// Outcomes of an offer, in OfferResult.Outcome.
const (
	OutcomeAnswered    = "answered"      // the slave answered; the browser got the answer
	OutcomeRejected    = "rejected"      // the slave refused (its accept hook or capacity)
	OutcomeNoSuchSlave = "no_such_slave" // no slave has that ID (NATS no responders)
	OutcomeTimeout     = "timeout"       // no answer within Config.OfferTimeout
	OutcomeError       = "error"         // an error reply, an invalid reply, or the bus failed
	OutcomeCancelled   = "cancelled"     // the browser cancelled or left before the answer
)

// OfferResult is what Config.OnOffer receives for each offer.
type OfferResult struct {
	// Slave is the ID of the slave the offer was for.
	Slave string
	// Outcome is one of the Outcome constants.
	Outcome string
	// Code is the wire error code sent to the browser for OutcomeError
	// (and no_such_slave, timeout for those outcomes); "" otherwise.
	Code bus.Code
	// Latency is the time from the browser's offer to the outcome.
	Latency time.Duration
}

// Healthy returns nil while the gateway can serve: its NATS connection is
// connected and its presence watch runs. Otherwise it returns an error
// matching ErrUnhealthy that says what is wrong, or ErrClosed once Shutdown
// or Close has begun. For health endpoints; it does not block.
func (g *Gateway) Healthy() error {
	if g.isClosing() {
		return ErrClosed
	}
	if !g.nc.IsConnected() {
		return fmt.Errorf("%w: NATS connection %v", ErrUnhealthy, g.nc.Status())
	}
	select {
	case <-g.watcher.Done():
		return fmt.Errorf("%w: the presence watch ended: %v", ErrUnhealthy, g.watcher.Err())
	default:
	}
	return nil
}

// Shutdown stops the gateway gracefully: new upgrades get 503, every browser
// is closed with 1001 (going away) so that the browser library reconnects at
// once, to this gateway's successor or another one; sessions still signaling
// are cancelled at their slaves. It waits until every connection has ended,
// then stops the watch and the subscriptions. When ctx ends first, the
// remaining connections are cut and Shutdown returns ctx's error after they
// are gone. It does not close the NATS connection.
//
// Calling Shutdown again waits for the first call and returns its result;
// after Close it returns ErrClosed.
func (g *Gateway) Shutdown(ctx context.Context) error {
	if g.closed.Load() {
		<-g.shutDone
		return ErrClosed
	}
	g.shutOnce.Do(func() { g.shutdown(ctx, true) })
	<-g.shutDone
	return g.shutErr
}

// Close stops the gateway at once: every browser connection is cut (a close
// frame is attempted without waiting), sessions still signaling are
// cancelled at their slaves, the watch and the subscriptions are stopped.
// It returns when everything the gateway started has ended. It is
// idempotent and returns nil.
func (g *Gateway) Close() error {
	g.closed.Store(true)
	g.shutOnce.Do(func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		g.shutdown(ctx, false)
		g.shutErr = ErrClosed
	})
	<-g.shutDone
	return nil
}

func (g *Gateway) shutdown(ctx context.Context, graceful bool) {
	defer close(g.shutDone)
	g.mu.Lock()
	g.closing = true
	conns := make([]*conn, 0, len(g.conns))
	for c := range g.conns {
		conns = append(conns, c)
	}
	g.mu.Unlock()
	close(g.stop)
	g.stopWatch()
	g.watcher.Stop()
	g.bgWG.Wait()

	reason := ErrShutdown
	if !graceful {
		reason = ErrClosed
	}
	for _, c := range conns {
		c.closeWith(websocket.CloseGoingAway, "gateway shutting down", reason)
		if !graceful {
			c.cut()
		}
	}
	done := make(chan struct{})
	go func() {
		g.connWG.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		if graceful {
			g.shutErr = ctx.Err()
		}
		for _, c := range conns {
			c.cut()
		}
		<-done
	}
	_ = g.iceSub.Unsubscribe()
	_ = g.replySub.Unsubscribe()
	// Publish the cancels of the last sessions before returning, as far as
	// the connection allows.
	flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	_ = g.nc.FlushWithContext(flushCtx)
	cancel()
	g.sessMu.Lock()
	for key, s := range g.sessions {
		s.timer.Stop()
		delete(g.sessions, key)
	}
	g.sessMu.Unlock()
	g.log.Info("gateway stopped", "graceful", graceful)
}

func (g *Gateway) onError(err error) {
	g.log.Warn("gateway error", keyErr, err)
	if g.cfg.OnError != nil {
		g.cfg.OnError(err)
	}
}

// isClosing reports whether Shutdown or Close has begun.
func (g *Gateway) isClosing() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closing
}
