package gateway

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/enslavism/enslavism/bus"
)

// A session is one browser's attempt to connect to one slave, from its offer
// until OfferTimeout after the slave's answer (the signaling window). The
// browser names it (id); on NATS it is known by a fresh gateway-scoped key, so
// a browser can only ever reach its own sessions.
type session struct {
	start    time.Time
	key      string // gateway-scoped key, the session on NATS
	id       string // the browser's session ID
	slave    string
	conn     *conn
	answered bool
	deadline time.Time   // end of the window once answered
	timer    *time.Timer // fires at the offer timeout, then at deadline
}

// noResponders is the status nats-server sends to the reply subject of a
// request nobody subscribes to.
const noResponders = "503"

// offer relays a browser's offer to the slave as a NATS request whose reply
// comes to the gateway's inbox. The request is published on the reader's
// goroutine before this returns, so the browser's candidates, published by
// the same goroutine afterwards, always follow it on the connection.
func (g *Gateway) offer(c *conn, m *clientMessage) {
	if c.offers != nil && !c.offers.Allow() {
		c.sendError(m.Session, bus.CodeRateLimited, fmt.Sprintf("too many offers: at most %g per second", g.cfg.OffersPerSecond))
		return
	}
	if !g.nc.IsConnected() {
		c.sendError(m.Session, bus.CodeUnavailable, "the bus is unavailable; try again")
		return
	}
	subject, err := g.subjects.SlaveOffer(m.Slave)
	if err != nil {
		c.sendError(m.Session, bus.CodeBadRequest, err.Error())
		return
	}
	s := &session{start: time.Now(), key: bus.NewID(), id: m.Session, slave: m.Slave, conn: c}
	data, err := bus.Encode(&bus.OfferRequest{Session: s.key, Gateway: g.cfg.ID, SDP: m.SDP, Identity: c.identity})
	if err != nil {
		c.sendError(m.Session, bus.CodeBadRequest, err.Error())
		return
	}

	g.sessMu.Lock()
	if _, taken := c.sessions[m.Session]; taken {
		g.sessMu.Unlock()
		c.sendError(m.Session, bus.CodeBadRequest, "session already in use; pick a new session ID per offer")
		return
	}
	if max := g.cfg.MaxPendingSessions; max > 0 && c.pending >= max {
		g.sessMu.Unlock()
		c.sendError(m.Session, bus.CodeTooMany, fmt.Sprintf("too many offers waiting for an answer (at most %d)", max))
		return
	}
	if c.sessions == nil {
		c.sessions = map[string]*session{}
	}
	c.sessions[s.id] = s
	c.pending++
	g.sessions[s.key] = s
	s.timer = time.AfterFunc(g.cfg.OfferTimeout, func() { g.expire(s) })
	g.sessMu.Unlock()

	err = g.nc.PublishMsg(&nats.Msg{Subject: subject, Reply: g.replyPrefix + s.key, Data: data})
	if err != nil {
		if g.forget(s) {
			c.sendError(s.id, bus.CodeUnavailable, "the bus is unavailable; try again")
			g.reportOffer(s, OutcomeError, bus.CodeUnavailable)
		}
		g.onError(fmt.Errorf("gateway: publishing offer to %s: %w", subject, err))
		return
	}
	g.stats.offers.Add(1)
	g.log.Debug("offer relayed", keyConn, c.info.ID, keySlave, s.slave, keySession, s.key)
}

// onReply handles a slave's reply to an offer (or nats-server's no-responders
// status), on the reply subscription's goroutine.
func (g *Gateway) onReply(msg *nats.Msg) {
	key, ok := strings.CutPrefix(msg.Subject, g.replyPrefix)
	if !ok {
		return
	}
	g.sessMu.Lock()
	s := g.sessions[key]
	if s == nil || s.answered {
		g.sessMu.Unlock()
		return // cancelled, expired, or a duplicate reply
	}
	var frame []byte
	var outcome string
	var code bus.Code
	if len(msg.Data) == 0 && msg.Header.Get("Status") == noResponders {
		outcome, code = OutcomeNoSuchSlave, bus.CodeNoSuchSlave
		frame = errorFrame(s.id, code, fmt.Sprintf("no slave %q", s.slave))
	} else if reply, err := bus.DecodeOfferReply(msg.Data); err != nil {
		outcome, code = OutcomeError, bus.CodeInternal
		frame = errorFrame(s.id, code, "the slave sent an invalid reply")
		defer g.onError(fmt.Errorf("%w: slave %s: %v", ErrBadReply, s.slave, err))
	} else {
		switch {
		case reply.SDP != "":
			outcome = OutcomeAnswered
			frame = encodeFrame(answerMsg{Type: TypeAnswer, Session: s.id, SDP: reply.SDP})
		case reply.Rejected != "":
			outcome = OutcomeRejected
			frame = encodeFrame(rejectedMsg{Type: TypeRejected, Session: s.id, Reason: reply.Rejected})
		default:
			outcome, code = OutcomeError, reply.Error.Code
			if !validCode.MatchString(string(code)) {
				code = bus.CodeInternal
			}
			frame = errorFrame(s.id, code, reply.Error.Message)
		}
	}
	if outcome == OutcomeAnswered {
		// The session stays routable for candidates until the end of
		// its signaling window.
		s.answered = true
		s.conn.pending--
		s.deadline = time.Now().Add(g.cfg.OfferTimeout)
		s.timer.Reset(g.cfg.OfferTimeout)
	} else {
		g.removeLocked(s)
	}
	g.sessMu.Unlock()
	s.conn.enqueue(frame)
	g.reportOffer(s, outcome, code)
}

// validCode is the shape of wire error codes the gateway forwards from a
// slave; anything else becomes internal.
var validCode = regexp.MustCompile(`^[a-z][a-z_]{0,31}$`)

// expire runs when a session's timer fires: without an answer, the slave
// timed out (the browser gets an error, the slave a cancel); with one, the
// signaling window is over and the session is forgotten.
func (g *Gateway) expire(s *session) {
	g.sessMu.Lock()
	if g.sessions[s.key] != s || (s.answered && time.Now().Before(s.deadline)) {
		g.sessMu.Unlock()
		return
	}
	answered := s.answered
	g.removeLocked(s)
	g.sessMu.Unlock()
	if answered {
		return
	}
	g.log.Debug("offer timed out", keySlave, s.slave, keySession, s.key)
	s.conn.sendError(s.id, bus.CodeTimeout, fmt.Sprintf("slave %q did not answer within %v", s.slave, g.cfg.OfferTimeout))
	g.publishCancel(s)
	g.reportOffer(s, OutcomeTimeout, bus.CodeTimeout)
}

// onSlaveICE forwards a slave's candidate to the browser of the session, on
// the gateway subscription's goroutine. Anything that is not a valid ICE
// message for a live session is dropped.
func (g *Gateway) onSlaveICE(msg *nats.Msg) {
	gatewayID, key, err := g.subjects.ParseGatewaySubject(msg.Subject)
	if err != nil || gatewayID != g.cfg.ID {
		g.log.Debug("ignoring message", "subject", msg.Subject, keyErr, err)
		return
	}
	ice, err := bus.DecodeICE(msg.Data)
	if err != nil {
		g.log.Debug("ignoring invalid candidate", "subject", msg.Subject, keyErr, err)
		return
	}
	g.sessMu.Lock()
	s := g.sessions[key]
	g.sessMu.Unlock()
	if s == nil {
		return // late: the window is over
	}
	s.conn.enqueue(encodeFrame(iceMsg{Type: TypeICE, Session: s.id, Candidate: ice.Candidate}))
}

// browserICE publishes a browser's candidate to the slave of the session;
// a candidate for an unknown session is dropped silently (it may be late).
func (g *Gateway) browserICE(c *conn, m *clientMessage) {
	g.sessMu.Lock()
	s := c.sessions[m.Session]
	g.sessMu.Unlock()
	if s == nil {
		return
	}
	subject, err := g.subjects.SlaveICE(s.slave, s.key)
	if err != nil {
		return
	}
	data, err := bus.Encode(&bus.ICE{Candidate: m.Candidate})
	if err != nil {
		c.sendError(s.id, bus.CodeBadRequest, err.Error())
		return
	}
	if err := g.nc.Publish(subject, data); err != nil {
		g.onError(fmt.Errorf("gateway: publishing candidate to %s: %w", subject, err))
	}
}

// browserCancel drops a session at the browser's request and tells the
// slave; an unknown session is ignored.
func (g *Gateway) browserCancel(c *conn, m *clientMessage) {
	g.sessMu.Lock()
	s := c.sessions[m.Session]
	answered := false
	if s != nil {
		answered = s.answered
		g.removeLocked(s)
	}
	g.sessMu.Unlock()
	if s != nil {
		g.publishCancel(s)
		if !answered {
			g.reportOffer(s, OutcomeCancelled, "")
		}
	}
}

// dropSessions cancels every session of a connection that went away.
func (g *Gateway) dropSessions(c *conn) {
	type dropped struct {
		s        *session
		answered bool
	}
	g.sessMu.Lock()
	list := make([]dropped, 0, len(c.sessions))
	for _, s := range c.sessions {
		list = append(list, dropped{s, s.answered})
		g.removeLocked(s)
	}
	c.sessions = nil
	g.sessMu.Unlock()
	for _, d := range list {
		g.publishCancel(d.s)
		if !d.answered {
			g.reportOffer(d.s, OutcomeCancelled, "")
		}
	}
}

// reportOffer calls OnOffer with the outcome of an offer.
func (g *Gateway) reportOffer(s *session, outcome string, code bus.Code) {
	if g.cfg.OnOffer != nil {
		g.cfg.OnOffer(OfferResult{Slave: s.slave, Outcome: outcome, Code: code, Latency: time.Since(s.start)})
	}
}

// forget removes s and reports whether it was still there.
func (g *Gateway) forget(s *session) bool {
	g.sessMu.Lock()
	defer g.sessMu.Unlock()
	if g.sessions[s.key] != s {
		return false
	}
	g.removeLocked(s)
	return true
}

// removeLocked removes s from both maps and stops its timer. g.sessMu must
// be held.
func (g *Gateway) removeLocked(s *session) {
	s.timer.Stop()
	if g.sessions[s.key] != s {
		return
	}
	delete(g.sessions, s.key)
	delete(s.conn.sessions, s.id)
	if !s.answered {
		s.conn.pending--
	}
}

func (g *Gateway) publishCancel(s *session) {
	subject, err := g.subjects.SlaveCancel(s.slave, s.key)
	if err != nil {
		return
	}
	if err := g.nc.Publish(subject, []byte("{}")); err != nil && !g.isClosing() {
		g.onError(fmt.Errorf("gateway: publishing cancel to %s: %w", subject, err))
	}
}
