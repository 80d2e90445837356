package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/time/rate"

	"github.com/enslavism/enslavism/bus"
)

// closeGrace is how long a browser has to answer a close frame.
const closeGrace = time.Second

// A conn is one browser's WebSocket. Its reader runs on a goroutine of its
// own, started once the upgrade is done (ServeHTTP then returns). There is no
// long-lived writer goroutine: frames go to a small queue, and a writer
// goroutine is started when the queue turns non-empty and ends when it is
// drained, so an idle browser costs one goroutine, no timer and no write
// buffer. Only one writer runs at a time (gorilla allows one concurrent
// writer); pings come from the gateway's pinger through the same queue.
type conn struct {
	g        *Gateway
	ws       *websocket.Conn
	info     *Client
	identity json.RawMessage // ClientAuth's identity as JSON, passed with offers
	offers   *rate.Limiter   // nil: no offer limit
	msgs     *rate.Limiter   // nil: no flood limit

	// sessions maps the browser's session IDs to its sessions in the
	// signaling window, pending counts those not answered yet. Guarded by
	// g.sessMu; sessions is nil until the first offer.
	sessions map[string]*session
	pending  int

	mu       sync.Mutex // guards what follows
	queue    []outFrame
	writing  bool  // a writer goroutine is running
	closing  bool  // a close frame is queued or sent: nothing more is queued
	closeErr error // why the gateway closed the connection
	dead     bool  // the connection is gone: nothing more is queued
}

type frameKind uint8

const (
	frameText frameKind = iota
	framePing
	frameClose
)

type outFrame struct {
	kind frameKind
	data []byte
}

// serveClients handles an upgrade request on /enslavism/clients.
func (g *Gateway) serveClients(w http.ResponseWriter, r *http.Request) {
	if !websocket.IsWebSocketUpgrade(r) {
		w.Header().Set("Upgrade", "websocket")
		http.Error(w, "gateway: this is the browsers' WebSocket endpoint; expected a WebSocket upgrade", http.StatusUpgradeRequired)
		return
	}
	if g.isClosing() {
		g.stats.refused.Add(1)
		http.Error(w, "gateway: shutting down", http.StatusServiceUnavailable)
		return
	}
	if !g.checkOrigin(r) {
		g.stats.refused.Add(1)
		g.log.Debug("origin refused", keyRemote, r.RemoteAddr, "origin", r.Header.Get("Origin"))
		http.Error(w, "gateway: origin not allowed", http.StatusForbidden)
		return
	}
	identity, identityJSON, ok := g.authenticate(w, r)
	if !ok {
		g.stats.refused.Add(1)
		return
	}
	// A slot counted against MaxConnections is held until the connection
	// has ended, by the reader's goroutine once it runs.
	full := false
	release := func() {}
	if max := g.cfg.MaxConnections; max > 0 {
		full = g.reserved.Add(1) > int64(max)
		release = func() { g.reserved.Add(-1) }
	}
	handedOff := false
	defer func() {
		if !handedOff {
			release()
		}
	}()
	ws, err := g.upgrader.Upgrade(w, r, nil)
	if err != nil {
		// The upgrader has answered with an HTTP error.
		g.stats.refused.Add(1)
		g.log.Debug("upgrade failed", keyRemote, r.RemoteAddr, keyErr, err)
		return
	}
	if full {
		g.stats.refused.Add(1)
		refuse(ws, g.cfg.WriteTimeout, bus.CodeTooMany, fmt.Sprintf("the gateway is full (%d browsers); try again later", g.cfg.MaxConnections), websocket.CloseTryAgainLater)
		return
	}
	c := &conn{
		g:        g,
		ws:       ws,
		info:     &Client{ID: g.nextConnID.Add(1), RemoteAddr: r.RemoteAddr, Identity: identity},
		identity: identityJSON,
	}
	if g.cfg.OffersPerSecond > 0 {
		c.offers = rate.NewLimiter(rate.Limit(g.cfg.OffersPerSecond), g.cfg.OfferBurst)
	}
	if g.cfg.MessagesPerSecond > 0 {
		c.msgs = rate.NewLimiter(rate.Limit(g.cfg.MessagesPerSecond), g.cfg.MessageBurst)
	}
	if !g.register(c) {
		g.stats.refused.Add(1)
		refuse(ws, g.cfg.WriteTimeout, bus.CodeUnavailable, "the gateway is shutting down", websocket.CloseGoingAway)
		return
	}
	g.stats.accepted.Add(1)
	g.log.Debug("browser connected", keyConn, c.info.ID, keyRemote, c.info.RemoteAddr)
	if g.cfg.OnConnect != nil {
		g.cfg.OnConnect(c.info)
	}
	// The reader gets a goroutine of its own and the handler returns, so
	// that net/http frees what it holds for the request (the grown stack
	// of its goroutine, its buffers): an idle browser then costs about
	// half as much (see BenchmarkIdleClients).
	handedOff = true
	go func() {
		defer g.connWG.Done()
		defer release()
		c.finish(c.readLoop())
	}()
}

// refuse sends an error frame and a close frame to a connection that is not
// registered, then closes it.
func refuse(ws *websocket.Conn, timeout time.Duration, code bus.Code, message string, closeCode int) {
	_ = ws.SetWriteDeadline(time.Now().Add(timeout))
	_ = ws.WriteMessage(websocket.TextMessage, errorFrame("", code, message))
	_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(closeCode, string(code)), time.Now().Add(timeout))
	_ = ws.Close()
}

// readLoop reads the browser's frames until the connection fails or closes,
// and returns why.
func (c *conn) readLoop() error {
	g := c.g
	idle := 2 * g.cfg.PingInterval
	c.ws.SetReadLimit(g.cfg.MaxFrameSize)
	_ = c.ws.SetReadDeadline(time.Now().Add(idle))
	c.ws.SetPongHandler(func(string) error {
		if c.isClosing() {
			return nil // keep the close deadline
		}
		return c.ws.SetReadDeadline(time.Now().Add(idle))
	})
	// Pings count against the flood limit like messages; otherwise as
	// gorilla's default handler: answer with a pong, ignoring timeouts.
	c.ws.SetPingHandler(func(data string) error {
		if c.msgs != nil && !c.msgs.Allow() {
			c.flood()
			return nil
		}
		err := c.ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(closeGrace))
		var ne net.Error
		if err == nil || errors.Is(err, websocket.ErrCloseSent) || errors.As(err, &ne) {
			return nil
		}
		return err
	})
	for {
		typ, data, err := c.ws.ReadMessage()
		if err != nil {
			return err
		}
		if c.isClosing() {
			continue // waiting for the browser's close frame
		}
		_ = c.ws.SetReadDeadline(time.Now().Add(idle))
		if c.msgs != nil && !c.msgs.Allow() {
			c.flood()
			continue
		}
		if typ != websocket.TextMessage {
			c.sendError("", bus.CodeBadRequest, "binary frames are not part of the protocol; send JSON text frames")
			continue
		}
		c.handle(data)
	}
}

// flood closes a browser that sends more than MessagesPerSecond allows.
func (c *conn) flood() {
	if c.isClosing() {
		return
	}
	c.g.stats.abuse.Add(1)
	c.g.log.Info("browser flooding; closing", keyConn, c.info.ID, keyRemote, c.info.RemoteAddr)
	c.closeWith(websocket.ClosePolicyViolation, "message flood", ErrFlood)
}

// handle decodes and dispatches one message.
func (c *conn) handle(data []byte) {
	m, err := decodeClientMessage(data)
	if err != nil {
		var pe *protocolError
		if errors.As(err, &pe) {
			c.sendError(pe.session, pe.err.Code, pe.err.Message)
		} else {
			c.sendError("", bus.CodeBadRequest, err.Error())
		}
		return
	}
	switch m.Type {
	case TypeOffer:
		c.g.offer(c, &m)
	case TypeICE:
		c.g.browserICE(c, &m)
	case TypeCancel:
		c.g.browserCancel(c, &m)
	}
}

func (c *conn) sendError(session string, code bus.Code, message string) {
	c.enqueue(errorFrame(session, code, message))
}

// enqueue queues a text frame. A full queue makes the browser a slow
// consumer: its queue is dropped and it is closed with 1013. It never
// blocks, and may be called with g.mu held.
func (c *conn) enqueue(frame []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing || c.dead {
		return
	}
	if len(c.queue) >= c.g.cfg.SendQueue {
		c.queue = nil
		c.g.stats.slow.Add(1)
		c.g.log.Info("slow browser; closing", keyConn, c.info.ID, keyRemote, c.info.RemoteAddr)
		c.closeLocked(websocket.CloseTryAgainLater, "slow consumer", ErrSlowConsumer)
		return
	}
	c.pushLocked(outFrame{kind: frameText, data: frame})
}

// enqueuePing queues a ping unless the queue is busy (then the browser is
// receiving frames anyway and a full queue is handled by enqueue).
func (c *conn) enqueuePing() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing || c.dead || len(c.queue) > 0 {
		return
	}
	c.pushLocked(outFrame{kind: framePing})
}

// closeWith queues a close frame (after the frames already queued) and
// stops queueing; the browser then has closeGrace to answer it.
func (c *conn) closeWith(code int, text string, reason error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closeLocked(code, text, reason)
}

func (c *conn) closeLocked(code int, text string, reason error) {
	if c.closing || c.dead {
		return
	}
	c.closing = true
	c.closeErr = reason
	c.pushLocked(outFrame{kind: frameClose, data: websocket.FormatCloseMessage(code, text)})
}

func (c *conn) pushLocked(f outFrame) {
	c.queue = append(c.queue, f)
	if !c.writing {
		c.writing = true
		c.g.connWG.Add(1)
		go c.writeLoop()
	}
}

func (c *conn) isClosing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closing
}

// writeLoop writes the queued frames and ends when the queue is empty.
func (c *conn) writeLoop() {
	defer c.g.connWG.Done()
	for {
		c.mu.Lock()
		if len(c.queue) == 0 || c.dead {
			c.queue = nil
			c.writing = false
			c.mu.Unlock()
			return
		}
		f := c.queue[0]
		c.queue[0] = outFrame{}
		c.queue = c.queue[1:]
		c.mu.Unlock()

		deadline := time.Now().Add(c.g.cfg.WriteTimeout)
		var err error
		switch f.kind {
		case frameText:
			_ = c.ws.SetWriteDeadline(deadline)
			err = c.ws.WriteMessage(websocket.TextMessage, f.data)
		case framePing:
			err = c.ws.WriteControl(websocket.PingMessage, nil, deadline)
		case frameClose:
			_ = c.ws.WriteControl(websocket.CloseMessage, f.data, deadline)
			// The reader ends when the browser answers, or at this
			// deadline.
			_ = c.ws.NetConn().SetReadDeadline(time.Now().Add(closeGrace))
		}
		if err != nil {
			// The browser cannot be written to: drop what is queued,
			// queue nothing more, and cut the connection so that the
			// reader ends too.
			c.mu.Lock()
			if c.closeErr == nil {
				c.closeErr = writeError(err)
			}
			c.closing = true
			c.queue = nil
			c.writing = false
			c.mu.Unlock()
			c.cut()
			return
		}
	}
}

func writeError(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, websocket.ErrCloseSent) {
		return fmt.Errorf("%w: %v", ErrKeepalive, err)
	}
	return err
}

// cut closes the network connection at once: the reader and any writer fail
// and end.
func (c *conn) cut() {
	_ = c.ws.NetConn().Close()
}

// finish runs on the reader's goroutine once the reader has ended: it stops
// the queue, closes the connection, cancels the browser's sessions and
// reports the disconnection.
func (c *conn) finish(readErr error) {
	c.mu.Lock()
	c.dead = true
	c.queue = nil
	reason := c.closeErr
	c.mu.Unlock()
	_ = c.ws.Close()
	c.g.unregister(c)
	c.g.dropSessions(c)

	if reason == nil {
		reason = readReason(readErr)
	}
	if errors.Is(reason, ErrFrameTooLarge) {
		c.g.stats.abuse.Add(1)
	}
	c.g.log.Debug("browser disconnected", keyConn, c.info.ID, keyRemote, c.info.RemoteAddr, keyReason, reason)
	if c.g.cfg.OnDisconnect != nil {
		c.g.cfg.OnDisconnect(c.info, reason)
	}
}

// readReason turns the reader's error into the reason given to OnDisconnect:
// nil for a normal close by the browser.
func readReason(err error) error {
	var ce *websocket.CloseError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ce):
		switch ce.Code {
		case websocket.CloseNormalClosure, websocket.CloseGoingAway, websocket.CloseNoStatusReceived:
			return nil
		}
		return err
	case errors.Is(err, websocket.ErrReadLimit):
		return fmt.Errorf("%w: %v", ErrFrameTooLarge, err)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("%w: %v", ErrKeepalive, err)
	}
	return err
}
