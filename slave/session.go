package slave

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/pion/webrtc/v4"

	"github.com/enslavism/enslavism/bus"
)

// Causes of a session's end that are not exported: the offer was refused.
var (
	errOfferRefused = errors.New("slave: offer refused")
	errHandlerPanic = errors.New("slave: handler panicked")
)

// sessionState is where a session is in its life; guarded by Slave.mu.
type sessionState int

const (
	statePending   sessionState = iota // offer received, peer not connected yet
	stateConnected                     // peer connected, handler running
	stateClosed                        // gone
)

// session is one offer and, once accepted, its peer connection: the state
// behind a [Client].
//
// Lock order: never hold session.mu while taking Slave.mu.
type session struct {
	s        *Slave
	id       string
	gateway  string
	identity json.RawMessage
	iceTo    string // where the slave's candidates go
	log      *slog.Logger
	ctx      context.Context // the client's context, see Client.Context
	cancel   context.CancelCauseFunc
	client   *Client
	timer    *time.Timer // ConnectTimeout

	state sessionState // guarded by s.mu

	mu        sync.Mutex
	pc        *webrtc.PeerConnection
	replied   bool     // the answer went out: local candidates may follow
	localQ    [][]byte // local candidates gathered before the answer went out
	remoteSet bool     // the remote description is set: candidates may be added
	draining  bool     // a goroutine is adding remoteQ to pc
	remoteQ   []webrtc.ICECandidateInit
	nRemote   int // remote candidates received in all
	control   *webrtc.DataChannel
	channels  []*webrtc.DataChannel // the browser's channels, flushed on close
}

// newSession creates the session of an offer. s.mu is held.
func newSession(s *Slave, req *bus.OfferRequest, log *slog.Logger) *session {
	ctx, cancel := context.WithCancelCause(context.Background())
	iceTo, _ := s.subj.GatewayICE(req.Gateway, req.Session) // both IDs are validated
	ss := &session{
		s:        s,
		id:       req.Session,
		gateway:  req.Gateway,
		identity: req.Identity,
		iceTo:    iceTo,
		log:      log,
		ctx:      ctx,
		cancel:   cancel,
	}
	ss.client = &Client{sess: ss, dcReady: make(chan struct{})}
	ss.timer = time.AfterFunc(s.cfg.ConnectTimeout, ss.connectTimedOut)
	return ss
}

// run handles the offer, on a goroutine of its own: accept hook, peer
// connection, answer, reply, then the remote candidates that arrived
// meanwhile. Any failure is replied and ends the session.
func (ss *session) run(replyTo string, req *bus.OfferRequest) {
	if refuse := ss.accept(req); refuse != nil {
		ss.s.reply(replyTo, refuse)
		_ = ss.close(errOfferRefused)
		return
	}
	answer, refuse := ss.answer(req.SDP)
	if refuse != nil {
		ss.s.reply(replyTo, refuse)
		_ = ss.close(errOfferRefused)
		return
	}

	// Reply, then let the local candidates gathered meanwhile follow it, in
	// order, under ss.mu so that onLocalCandidate cannot overtake them.
	ss.mu.Lock()
	if ss.ctx.Err() != nil {
		ss.mu.Unlock()
		ss.s.reply(replyTo, replyForCause(context.Cause(ss.ctx)))
		return
	}
	ss.s.reply(replyTo, &bus.OfferReply{SDP: answer})
	ss.replied = true
	for _, b := range ss.localQ {
		ss.publish(b)
	}
	ss.localQ = nil
	ss.remoteSet = true
	drain := !ss.draining && len(ss.remoteQ) > 0
	ss.draining = drain
	ss.mu.Unlock()
	ss.log.Debug("offer answered")
	if drain {
		ss.drainRemote()
	}
}

// accept runs the accept hook; it returns the refusal to reply, or nil.
func (ss *session) accept(req *bus.OfferRequest) (refuse *bus.OfferReply) {
	hook := ss.s.cfg.Accept
	if hook == nil {
		return nil
	}
	err := func() (err error) {
		defer func() {
			if r := recover(); r != nil {
				ss.log.Error("accept hook panicked", "panic", r, "stack", string(debug.Stack()))
				refuse = &bus.OfferReply{Error: bus.NewError(bus.CodeInternal, "accept hook failed")}
			}
		}()
		return hook(ss.ctx, &Offer{Session: req.Session, Gateway: req.Gateway, Identity: req.Identity, SDP: req.SDP})
	}()
	var rej *Rejection
	switch {
	case refuse != nil:
		return refuse
	case ss.ctx.Err() != nil:
		return replyForCause(context.Cause(ss.ctx))
	case err == nil:
		return nil
	case errors.As(err, &rej):
		ss.log.Debug("offer rejected", logKeyReason, rej.reason())
		return &bus.OfferReply{Rejected: rej.reason()}
	default:
		ss.log.Warn("accept hook failed: offer rejected", logKeyErr, err)
		return &bus.OfferReply{Rejected: wireReason("")}
	}
}

// answer creates the peer connection and returns the SDP answer, set as
// local description, or the refusal to reply.
func (ss *session) answer(sdp string) (string, *bus.OfferReply) {
	s := ss.s
	offer := webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: sdp}
	parsed, err := offer.Unmarshal()
	if err != nil {
		ss.log.Info("bad offer SDP", logKeyErr, err)
		return "", badRequest("bad SDP: %v", err)
	}
	hasData := false
	for _, md := range parsed.MediaDescriptions {
		hasData = hasData || md.MediaName.Media == "application"
	}
	if !hasData {
		ss.log.Info("offer without a data channel section")
		return "", badRequest("the offer has no data channel (m=application) section")
	}
	certs, err := s.certs.get()
	if err != nil {
		ss.log.Error("cannot create a peer connection", logKeyErr, err)
		return "", internalError()
	}
	pc, err := s.api.NewPeerConnection(webrtc.Configuration{ICEServers: s.cfg.ICE.Servers, Certificates: certs})
	if err != nil {
		ss.log.Error("cannot create a peer connection", logKeyErr, err)
		return "", internalError()
	}
	ss.mu.Lock()
	if ss.ctx.Err() != nil {
		ss.mu.Unlock()
		_ = pc.Close()
		return "", replyForCause(context.Cause(ss.ctx))
	}
	ss.pc = pc // from now on, close closes it
	ss.mu.Unlock()

	control, err := newControlChannel(pc)
	if err != nil {
		ss.log.Error("cannot create the control channel", logKeyErr, err)
		return "", internalError()
	}
	ss.mu.Lock()
	ss.control = control
	ss.mu.Unlock()
	pc.OnICECandidate(ss.onLocalCandidate)
	pc.OnConnectionStateChange(ss.onStateChange)
	pc.OnDataChannel(ss.onDataChannel)
	if err := pc.SetRemoteDescription(offer); err != nil {
		ss.log.Info("offer not accepted by pion", logKeyErr, err)
		return "", badRequest("bad SDP: %v", err)
	}
	ans, err := pc.CreateAnswer(nil)
	if err != nil {
		ss.log.Info("cannot answer the offer", logKeyErr, err)
		return "", badRequest("cannot answer the offer: %v", err)
	}
	if err := pc.SetLocalDescription(ans); err != nil {
		ss.log.Error("cannot set the answer", logKeyErr, err)
		return "", internalError()
	}
	return ans.SDP, nil
}

func badRequest(format string, args ...any) *bus.OfferReply {
	return &bus.OfferReply{Error: bus.NewError(bus.CodeBadRequest, "%s", truncate(fmt.Sprintf(format, args...)))}
}

func internalError() *bus.OfferReply {
	return &bus.OfferReply{Error: bus.NewError(bus.CodeInternal, "the slave could not set up the connection")}
}

// replyForCause is the reply to an offer whose session ended before its
// answer went out.
func replyForCause(cause error) *bus.OfferReply {
	switch {
	case errors.Is(cause, ErrClosed):
		return &bus.OfferReply{Error: bus.NewError(bus.CodeUnavailable, "slave shutting down")}
	case errors.Is(cause, ErrConnectTimeout):
		return &bus.OfferReply{Error: bus.NewError(bus.CodeTimeout, "the offer was not answered in time")}
	case errors.Is(cause, ErrCancelled):
		return &bus.OfferReply{Rejected: "cancelled"}
	default:
		return internalError()
	}
}

// onLocalCandidate publishes the slave's candidates to the gateway, in
// gathering order, after the answer (pion calls it on the ICE agent's
// goroutine, in order; nil is end-of-candidates).
func (ss *session) onLocalCandidate(c *webrtc.ICECandidate) {
	var msg bus.ICE
	if c != nil {
		j := c.ToJSON()
		msg.Candidate = &bus.ICECandidate{
			Candidate:        j.Candidate,
			SDPMid:           j.SDPMid,
			SDPMLineIndex:    j.SDPMLineIndex,
			UsernameFragment: j.UsernameFragment,
		}
	}
	b, err := bus.Encode(&msg)
	if err != nil {
		ss.log.Warn("local candidate not sent", logKeyErr, err)
		return
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	switch {
	case ss.ctx.Err() != nil:
	case !ss.replied:
		ss.localQ = append(ss.localQ, b)
	default:
		ss.publish(b)
	}
}

// publish sends an ICE message to the gateway. ss.mu is held (order).
func (ss *session) publish(b []byte) {
	if err := ss.s.nc.Publish(ss.iceTo, b); err != nil {
		ss.log.Debug("local candidate not sent", logKeyErr, err)
	}
}

// addRemote adds a browser candidate, or queues it until the remote
// description is set. It never blocks on the peer connection: it runs on
// the subscription's goroutine.
func (ss *session) addRemote(c webrtc.ICECandidateInit) {
	ss.mu.Lock()
	if ss.ctx.Err() != nil {
		ss.mu.Unlock()
		return
	}
	if ss.nRemote >= maxSessionCandidates {
		ss.mu.Unlock()
		ss.log.Debug("too many remote candidates: candidate dropped")
		return
	}
	ss.nRemote++
	ss.remoteQ = append(ss.remoteQ, c)
	start := ss.remoteSet && !ss.draining
	ss.draining = ss.draining || start
	ss.mu.Unlock()
	if start {
		ss.s.goTracked(ss.drainRemote)
	}
}

// drainRemote adds the queued remote candidates to the peer connection until
// the queue is empty.
func (ss *session) drainRemote() {
	for {
		ss.mu.Lock()
		if len(ss.remoteQ) == 0 || ss.ctx.Err() != nil {
			ss.draining = false
			ss.remoteQ = nil
			ss.mu.Unlock()
			return
		}
		q, pc := ss.remoteQ, ss.pc
		ss.remoteQ = nil
		ss.mu.Unlock()
		for _, c := range q {
			if err := pc.AddICECandidate(c); err != nil {
				ss.log.Debug("remote candidate refused", logKeyErr, err)
			}
		}
	}
}

// onStateChange follows the peer connection (pion calls it on a new
// goroutine for each change, so calls may come out of order: the state
// machine only moves forward).
func (ss *session) onStateChange(st webrtc.PeerConnectionState) {
	switch st {
	case webrtc.PeerConnectionStateConnected:
		ss.connected()
	case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
		_ = ss.close(ErrPeerGone)
	case webrtc.PeerConnectionStateDisconnected:
		ss.log.Debug("peer disconnected; waiting for ICE to recover or fail")
	}
}

// connected starts the handler of a session that just connected.
func (ss *session) connected() {
	s := ss.s
	s.mu.Lock()
	if ss.state != statePending {
		s.mu.Unlock()
		return
	}
	if s.stopping {
		s.mu.Unlock()
		_ = ss.close(ErrClosed)
		return
	}
	ss.state = stateConnected
	s.pending--
	s.connected++
	s.loadChangedLocked()
	s.mu.Unlock()
	ss.timer.Stop()
	s.clientsChanged()
	ss.log.Debug("client connected")
	go ss.serve()
}

// serve runs the handler; the client is closed when it returns.
func (ss *session) serve() {
	cause := ErrClientClosed
	defer func() {
		if r := recover(); r != nil {
			ss.log.Error("handler panicked", "panic", r, "stack", string(debug.Stack()))
			cause = errHandlerPanic
		}
		_ = ss.close(cause)
	}()
	ss.s.cfg.Handler.ServeClient(ss.ctx, ss.client)
}

// onDataChannel hands a channel the browser opened to the client's
// OnDataChannel function. pion runs it on the peer connection's accepting
// goroutine and starts reading the channel only when it returns.
func (ss *session) onDataChannel(dc *webrtc.DataChannel) {
	f := ss.client.dataChannelHandler()
	if f == nil {
		return // the client is gone
	}
	ss.mu.Lock()
	ss.channels = slices.DeleteFunc(ss.channels, func(dc *webrtc.DataChannel) bool {
		return dc.ReadyState() == webrtc.DataChannelStateClosed
	})
	ss.channels = append(ss.channels, dc)
	ss.mu.Unlock()
	defer func() {
		if r := recover(); r != nil {
			ss.log.Error("OnDataChannel function panicked", "panic", r, "stack", string(debug.Stack()), "label", dc.Label())
			_ = dc.Close()
		}
	}()
	f(dc)
}

// connectTimedOut drops the session if it is still not connected.
func (ss *session) connectTimedOut() {
	if !ss.s.track() {
		return
	}
	defer ss.s.wg.Done()
	if ss.closeIf(ErrConnectTimeout, true) {
		ss.log.Info("session dropped: not connected in time", "timeout", ss.s.cfg.ConnectTimeout)
	}
}

// cancelIfPending drops the session if it is not connected yet.
func (ss *session) cancelIfPending() {
	if ss.closeIf(ErrCancelled, true) {
		ss.log.Debug("session cancelled by the gateway")
	}
}

// close ends the session with cause: it is forgotten, its context is
// cancelled and its peer connection closed. It is idempotent and returns
// the peer connection's Close error, the first time.
func (ss *session) close(cause error) error {
	var err error
	ss.closeWith(cause, false, &err)
	return err
}

// closeIf is close, only if the session is pending when onlyPending is set.
// It reports whether it closed the session.
func (ss *session) closeIf(cause error, onlyPending bool) bool {
	return ss.closeWith(cause, onlyPending, nil)
}

func (ss *session) closeWith(cause error, onlyPending bool, errp *error) bool {
	s := ss.s
	s.mu.Lock()
	prev := ss.state
	if prev == stateClosed || onlyPending && prev != statePending {
		s.mu.Unlock()
		return false
	}
	ss.state = stateClosed
	if s.sessions[ss.id] == ss {
		delete(s.sessions, ss.id)
	}
	if prev == statePending {
		s.pending--
	} else {
		s.connected--
	}
	s.loadChangedLocked()
	s.mu.Unlock()

	ss.cancel(cause)
	ss.timer.Stop()
	if prev == stateConnected {
		s.clientsChanged()
	}
	ss.mu.Lock()
	pc := ss.pc
	ss.localQ, ss.remoteQ = nil, nil
	chans := append([]*webrtc.DataChannel{ss.control}, ss.channels...)
	ss.channels = nil
	ss.mu.Unlock()
	if prev == stateConnected && errors.Is(cause, ErrClientClosed) {
		// The handler returned or closed the client: what it sent last
		// (a goodbye) reaches the browser before the connection closes.
		flush(chans, closeFlushTimeout)
	}
	if pc != nil {
		if err := pc.Close(); err != nil {
			ss.log.Debug("peer connection close", logKeyErr, err)
			if errp != nil {
				*errp = err
			}
		}
	}
	if prev == stateConnected {
		ss.log.Debug("client closed", logKeyCause, cause)
	} else {
		ss.log.Debug("session ended before connecting", logKeyCause, cause)
	}
	return true
}

// closeFlushTimeout bounds how long closing a client waits for the messages
// it sent to be acknowledged by the browser.
const closeFlushTimeout = time.Second

// flush waits until the open channels among chans have no message waiting
// for the browser's acknowledgement, or d passed.
func flush(chans []*webrtc.DataChannel, d time.Duration) {
	deadline := time.Now().Add(d)
	for {
		pending := false
		for _, dc := range chans {
			if dc != nil && dc.ReadyState() == webrtc.DataChannelStateOpen && dc.BufferedAmount() > 0 {
				pending = true
				break
			}
		}
		if !pending || time.Now().After(deadline) {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// truncate cuts a message for the wire to bus.MaxReasonSize bytes of valid
// UTF-8.
func truncate(msg string) string {
	msg = strings.ToValidUTF8(msg, "?")
	if len(msg) <= bus.MaxReasonSize {
		return msg
	}
	cut := bus.MaxReasonSize
	for cut > 0 && !utf8.RuneStart(msg[cut]) {
		cut--
	}
	return msg[:cut]
}

// wireReason is a rejection reason as sent: never empty, never too long.
func wireReason(reason string) string {
	reason = truncate(reason)
	if reason == "" {
		return "rejected"
	}
	return reason
}
