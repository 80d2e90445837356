package slave

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/pion/webrtc/v4"

	"github.com/enslavism/enslavism/bus"
)

// Bounds on remote candidates the slave holds.
const (
	// maxOrphanSessions is how many unknown sessions may have candidates
	// waiting for their offer at once.
	maxOrphanSessions = 64
	// maxOrphanCandidates is how many candidates one unknown session may
	// have waiting.
	maxOrphanCandidates = 32
	// orphanTTL is how long candidates for an unknown session wait.
	orphanTTL = 5 * time.Second
	// maxSessionCandidates is how many remote candidates one session
	// accepts in all (queued or added).
	maxSessionCandidates = 256
)

// Timeouts of the slave's own NATS calls.
const (
	closeDeregisterTimeout = 2 * time.Second
	startFlushTimeout      = 10 * time.Second
	shutdownPollInterval   = 20 * time.Millisecond
	loadWriteTimeout       = 2 * time.Second
)

// Slave is a running slave: it is listed in every browser's slave list and
// answers their offers. Create it with [Start]; end it with
// [Slave.Shutdown] or [Slave.Close]. Its methods are safe for concurrent use.
type Slave struct {
	id      string
	cfg     Config
	nc      *nats.Conn
	subj    bus.Subjects
	log     *slog.Logger
	api     *webrtc.API
	mux     io.Closer
	certs   certCache
	reg     *bus.Registration
	sub     *nats.Subscription
	stopped chan struct{} // closed when Shutdown or Close begins
	notify  chan struct{} // OnClientsChange wake-up, capacity 1
	quit    chan struct{} // closed by Close: the notifier ends
	notDone chan struct{} // closed when the notifier has ended
	loadCh  chan struct{} // load publisher wake-up, capacity 1
	loadEnd chan struct{} // closed when the load publisher has ended

	mu        sync.Mutex
	sessions  map[string]*session
	pending   int // sessions not connected yet
	connected int
	stopping  bool // Shutdown or Close began: offers are refused
	closed    bool // Close began: no goroutine may start
	orphans   map[string]*orphan
	wg        sync.WaitGroup // the slave's own goroutines

	closeOnce sync.Once
	closeErr  error
}

// orphan holds candidates for a session whose offer has not been seen.
type orphan struct {
	since time.Time
	cands []webrtc.ICECandidateInit
}

// Start starts a slave on nc, which the caller owns (and closes after the
// slave): it opens the presence bucket (creating it with cfg.Presence if no
// gateway or slave did yet), subscribes to the slave's subjects with one
// wildcard subscription, then registers the slave's presence, so that every
// gateway lists it within moments, and returns.
//
// Start returns an error matching [ErrInvalidConfig] for a bad cfg,
// bus.ErrDuplicateID when a live slave holds cfg.ID, or the NATS error that
// prevented it; nothing is left running then. ctx bounds Start only, not the
// slave's life.
func Start(ctx context.Context, nc *nats.Conn, cfg Config) (*Slave, error) {
	if nc == nil {
		return nil, fmt.Errorf("%w: nil NATS connection", ErrInvalidConfig)
	}
	userData, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	s := &Slave{
		id:       cfg.ID,
		cfg:      cfg,
		nc:       nc,
		subj:     cfg.Subjects,
		log:      cfg.Logger.With(logKeyComponent, "slave", logKeySlave, cfg.ID),
		stopped:  make(chan struct{}),
		notify:   make(chan struct{}, 1),
		quit:     make(chan struct{}),
		notDone:  make(chan struct{}),
		loadCh:   make(chan struct{}, 1),
		loadEnd:  make(chan struct{}),
		sessions: make(map[string]*session),
		orphans:  make(map[string]*orphan),
	}
	s.api, s.mux, err = newAPI(&s.cfg, pionLoggerFactory{log: cfg.Logger.With(logKeyComponent, "pion", logKeySlave, cfg.ID)})
	if err != nil {
		return nil, err
	}
	if err := s.start(ctx, userData); err != nil {
		if s.sub != nil {
			_ = s.sub.Unsubscribe()
		}
		if s.mux != nil {
			_ = s.mux.Close()
		}
		return nil, err
	}
	go s.loadPublisher()
	if s.cfg.OnClientsChange != nil {
		go s.notifier()
	} else {
		close(s.notDone)
	}
	s.log.Info("slave started", "subject", mustSubject(s.subj.SlaveWildcard(s.id)))
	return s, nil
}

func (s *Slave) start(ctx context.Context, userData []byte) error {
	js, err := jetstream.New(s.nc)
	if err != nil {
		return fmt.Errorf("slave: jetstream: %w", err)
	}
	pcfg := s.cfg.Presence
	pcfg.Subjects = s.subj
	pcfg.Logger = s.cfg.Logger
	presence, err := bus.OpenPresence(ctx, js, pcfg)
	if err != nil {
		return err
	}
	// A live slave with this ID must not see our subscription answer its
	// offers even briefly: look before subscribing. Register's Create
	// closes the remaining race.
	if _, err := presence.KeyValue().Get(ctx, s.id); err == nil {
		return fmt.Errorf("%w: %s", bus.ErrDuplicateID, s.id)
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("slave: presence lookup: %w", err)
	}
	// Subscribe before registering: a gateway may send an offer as soon as
	// it sees the slave.
	wildcard, err := s.subj.SlaveWildcard(s.id)
	if err != nil {
		return err
	}
	s.sub, err = s.nc.Subscribe(wildcard, s.handleMsg)
	if err != nil {
		return fmt.Errorf("slave: subscribe %s: %w", wildcard, err)
	}
	fctx, cancel := ctx, context.CancelFunc(func() {})
	if _, ok := ctx.Deadline(); !ok {
		fctx, cancel = context.WithTimeout(ctx, startFlushTimeout) // FlushWithContext needs one
	}
	defer cancel()
	if err := s.nc.FlushWithContext(fctx); err != nil {
		return fmt.Errorf("slave: subscribe %s: %w", wildcard, err)
	}
	load := s.Load()
	s.reg, err = presence.Register(ctx, bus.SlaveInfo{ID: s.id, UserData: userData, Load: &load, Region: s.cfg.Region}, bus.RegisterOptions{
		OnLost: func(err error) {
			s.log.Error("another slave took this slave's ID; browsers may reach either", logKeyErr, err)
		},
		OnRestored: func() {
			s.log.Info("presence restored after it had expired")
		},
	})
	return err
}

func mustSubject(subject string, err error) string {
	if err != nil {
		return "?"
	}
	return subject
}

// ID returns the slave's ID.
func (s *Slave) ID() string { return s.id }

// SetUserData replaces the slave's userData (see Config.UserData) and
// publishes it at once: every browser receives one `slaveupdated`. Setting
// the value it already has publishes nothing. It returns an error matching
// bus.ErrTooLarge or bus.ErrMalformed for a bad value, [ErrClosed] after
// Shutdown or Close began, or the NATS error of the write (the value is then
// kept and published by the next heartbeat that gets through).
func (s *Slave) SetUserData(ctx context.Context, v any) error {
	b, err := encodeUserData(v)
	if err != nil {
		return err
	}
	if s.isStopping() {
		return ErrClosed
	}
	if err := s.reg.SetUserData(ctx, b); err != nil {
		if errors.Is(err, bus.ErrClosed) {
			return ErrClosed
		}
		return err
	}
	return nil
}

// NumClients returns the number of connected clients: those whose handler is
// running.
func (s *Slave) NumClients() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.connected
}

// Clients returns the connected clients, in no particular order.
func (s *Slave) Clients() []*Client {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*Client, 0, s.connected)
	for _, ss := range s.sessions {
		if ss.state == stateConnected {
			out = append(out, ss.client)
		}
	}
	return out
}

// Stopping returns a channel closed when Shutdown or Close begins: a handler
// can select on it to say goodbye to its client and return, which lets
// Shutdown finish early.
func (s *Slave) Stopping() <-chan struct{} { return s.stopped }

// Shutdown stops the slave gracefully:
//
//  1. it deregisters the slave, so that every browser sees it go at once;
//  2. it refuses new offers (error code "unavailable") and drops the
//     sessions that are not connected yet;
//  3. it waits until the handlers of connected clients have returned, or ctx
//     is done;
//  4. it closes what is left, like Close.
//
// It returns ctx's error when ctx ended before every handler returned, else
// the error of deregistering or closing. Deregistering is attempted even
// with a ctx already done (then within 1 s), since that is what makes
// browsers drop the slave at once. Calling Shutdown or Close again is safe.
func (s *Slave) Shutdown(ctx context.Context) error {
	s.beginStop()
	dctx := ctx
	if ctx.Err() != nil {
		var cancel context.CancelFunc
		dctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
	}
	errDereg := s.reg.Deregister(dctx)
	if errDereg != nil {
		s.log.Warn("deregister failed: browsers will drop the slave when its presence expires", logKeyErr, errDereg)
	}

	// Drop the sessions still being set up.
	for _, ss := range s.sessionsIn(statePending) {
		s.goTracked(func() { _ = ss.close(ErrClosed) })
	}

	var errWait error
	t := time.NewTicker(shutdownPollInterval)
	defer t.Stop()
wait:
	for {
		s.mu.Lock()
		n := len(s.sessions)
		s.mu.Unlock()
		if n == 0 {
			break
		}
		select {
		case <-ctx.Done():
			errWait = ctx.Err()
			break wait
		case <-t.C:
		}
	}
	errClose := s.Close()
	if errWait != nil {
		return errWait
	}
	return errors.Join(errDereg, errClose)
}

// Close stops the slave at once: it deregisters it (waiting at most 2 s for
// NATS), unsubscribes, closes every peer connection (cancelling each client's
// context with [ErrClosed]), waits for the slave's own goroutines, closes the
// UDP mux and returns. It does not wait for handlers to return: they see
// their context cancelled. Close is idempotent: later calls return the first
// call's result.
func (s *Slave) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.close() })
	return s.closeErr
}

func (s *Slave) close() error {
	s.beginStop()
	ctx, cancel := context.WithTimeout(context.Background(), closeDeregisterTimeout)
	errDereg := s.reg.Deregister(ctx)
	cancel()
	errUnsub := s.sub.Unsubscribe()
	if errors.Is(errUnsub, nats.ErrConnectionClosed) || errors.Is(errUnsub, nats.ErrBadSubscription) {
		errUnsub = nil // the owner closed the connection: nothing left to undo
	}

	s.mu.Lock()
	s.closed = true
	sessions := make([]*session, 0, len(s.sessions))
	for _, ss := range s.sessions {
		sessions = append(sessions, ss)
	}
	s.orphans = nil
	s.mu.Unlock()

	// Close the peer connections a few at a time: pion's Close takes a
	// while (it waits for its transports), and a slave may have thousands.
	work := make(chan *session)
	var wg sync.WaitGroup
	for range min(8, len(sessions)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ss := range work {
				_ = ss.close(ErrClosed)
			}
		}()
	}
	for _, ss := range sessions {
		work <- ss
	}
	close(work)
	wg.Wait()

	s.wg.Wait()
	close(s.quit)
	<-s.notDone
	<-s.loadEnd
	var errMux error
	if s.mux != nil {
		errMux = s.mux.Close()
	}
	s.log.Info("slave closed")
	if errDereg != nil {
		errDereg = fmt.Errorf("slave: deregister: %w", errDereg)
	}
	return errors.Join(errDereg, errUnsub, errMux)
}

// beginStop refuses new offers and closes the Stopping channel, once.
func (s *Slave) beginStop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.stopping {
		s.stopping = true
		close(s.stopped)
	}
}

func (s *Slave) isStopping() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopping
}

// sessionsIn returns the sessions in state st.
func (s *Slave) sessionsIn(st sessionState) []*session {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*session
	for _, ss := range s.sessions {
		if ss.state == st {
			out = append(out, ss)
		}
	}
	return out
}

// track counts a goroutine of the slave about to start, unless Close began;
// it reports whether the goroutine may start. The goroutine must call
// s.wg.Done.
func (s *Slave) track() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	return true
}

// goTracked runs f on a goroutine Close waits for, unless Close began.
func (s *Slave) goTracked(f func()) bool {
	if !s.track() {
		return false
	}
	go func() {
		defer s.wg.Done()
		f()
	}()
	return true
}

// Load returns the slave's current load, as its presence publishes it:
// connected clients, MaxClients, and whether it accepts new clients (not
// while full or shutting down).
func (s *Slave) Load() bus.Load {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.loadLocked()
}

func (s *Slave) loadLocked() bus.Load {
	full := s.cfg.MaxClients > 0 && len(s.sessions) >= s.cfg.MaxClients
	return bus.Load{Clients: s.connected, Max: s.cfg.MaxClients, Accepting: !s.stopping && !full}
}

// loadChangedLocked wakes the load publisher up; s.mu is held (it only
// touches a channel).
func (s *Slave) loadChangedLocked() {
	select {
	case s.loadCh <- struct{}{}:
	default:
	}
}

// loadPublisher writes the slave's load into its presence value when it
// changed, one write at a time: changes arriving during a write are
// coalesced into the next one, and an unchanged load writes nothing (the
// registration compares the encoded values). A failed write is not
// retried: the registration keeps the value and its next heartbeat
// publishes it.
func (s *Slave) loadPublisher() {
	defer close(s.loadEnd)
	for {
		select {
		case <-s.quit:
			return
		case <-s.loadCh:
		}
		if s.isStopping() {
			// Shutdown and Close deregister at once: browsers see the
			// slave leave, which says more than accepting=false.
			continue
		}
		load := s.Load()
		ctx, cancel := context.WithTimeout(context.Background(), loadWriteTimeout)
		err := s.reg.SetLoad(ctx, &load)
		cancel()
		if err != nil && !errors.Is(err, bus.ErrClosed) {
			s.log.Debug("load not published yet; the next heartbeat will", logKeyErr, err)
		}
	}
}

// clientsChanged wakes the notifier up.
func (s *Slave) clientsChanged() {
	if s.cfg.OnClientsChange == nil {
		return
	}
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// notifier calls OnClientsChange, one call at a time, coalescing changes.
func (s *Slave) notifier() {
	defer close(s.notDone)
	last := 0
	for {
		select {
		case <-s.quit:
			return
		case <-s.notify:
		}
		if s.isStopping() {
			continue
		}
		n := s.NumClients()
		if n == last {
			continue
		}
		last = n
		func() {
			defer func() {
				if r := recover(); r != nil {
					s.log.Error("OnClientsChange panicked", "panic", r, "stack", string(debug.Stack()))
				}
			}()
			s.cfg.OnClientsChange(s, n)
		}()
	}
}

// handleMsg receives every message of the slave's wildcard subscription, in
// order, on the subscription's goroutine. It never blocks on a peer
// connection: offers are answered on goroutines of their own.
func (s *Slave) handleMsg(m *nats.Msg) {
	_, kind, sessID, err := s.subj.ParseSlaveSubject(m.Subject)
	if err != nil {
		s.log.Debug("message on an unknown subject", "subject", m.Subject, logKeyErr, err)
		if m.Reply != "" {
			s.reply(m.Reply, &bus.OfferReply{Error: bus.NewError(bus.CodeBadRequest, "unknown subject")})
		}
		return
	}
	switch kind {
	case bus.KindOffer:
		s.handleOffer(m)
	case bus.KindICE:
		s.handleICE(sessID, m.Data)
	case bus.KindCancel:
		s.handleCancel(sessID, m.Data)
	}
}

// reply sends a reply to an offer request; a failure is only logged (the
// requester then times out).
func (s *Slave) reply(to string, r *bus.OfferReply) {
	b, err := bus.Encode(r)
	if err != nil {
		s.log.Error("cannot encode offer reply", logKeyErr, err)
		b = []byte(`{"error":{"code":"internal","message":"cannot encode reply"}}`)
	}
	if err := s.nc.Publish(to, b); err != nil {
		s.log.Debug("cannot send offer reply", logKeyErr, err)
	}
}

func (s *Slave) handleOffer(m *nats.Msg) {
	if m.Reply == "" {
		s.log.Warn("offer without a reply subject dropped (use a request)")
		return
	}
	req, err := bus.DecodeOfferRequest(m.Data)
	if err != nil {
		s.log.Info("bad offer request", logKeyErr, err)
		s.reply(m.Reply, &bus.OfferReply{Error: bus.NewError(bus.CodeBadRequest, "%s", truncate(err.Error()))})
		return
	}
	log := s.log.With(logKeySession, req.Session, logKeyGateway, req.Gateway)
	s.mu.Lock()
	var refuse *bus.OfferReply
	switch {
	case s.stopping:
		refuse = &bus.OfferReply{Error: bus.NewError(bus.CodeUnavailable, "slave shutting down")}
	case s.sessions[req.Session] != nil:
		refuse = &bus.OfferReply{Error: bus.NewError(bus.CodeBadRequest, "session already exists")}
	case s.cfg.MaxClients > 0 && len(s.sessions) >= s.cfg.MaxClients:
		refuse = &bus.OfferReply{Rejected: "full"}
	case s.cfg.MaxPending > 0 && s.pending >= s.cfg.MaxPending:
		refuse = &bus.OfferReply{Error: bus.NewError(bus.CodeRateLimited, "too many sessions being set up")}
	}
	if refuse != nil {
		s.mu.Unlock()
		log.Debug("offer refused", logKeyReason, refuseReason(refuse))
		s.reply(m.Reply, refuse)
		return
	}
	ss := newSession(s, &req, log)
	s.sessions[req.Session] = ss
	s.pending++
	s.loadChangedLocked()
	if o := s.orphans[req.Session]; o != nil {
		ss.remoteQ, ss.nRemote = o.cands, len(o.cands)
		delete(s.orphans, req.Session)
	}
	s.wg.Add(1) // not closed: stopping is set before closed
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		ss.run(m.Reply, &req)
	}()
}

func refuseReason(r *bus.OfferReply) string {
	if r.Error != nil {
		return r.Error.Error()
	}
	return r.Rejected
}

func (s *Slave) handleICE(sessID string, data []byte) {
	msg, err := bus.DecodeICE(data)
	if err != nil {
		s.log.Debug("bad ICE message dropped", logKeySession, sessID, logKeyErr, err)
		return
	}
	var c webrtc.ICECandidateInit // the zero value is end-of-candidates
	if mc := msg.Candidate; mc != nil {
		c = webrtc.ICECandidateInit{
			Candidate:        mc.Candidate,
			SDPMid:           mc.SDPMid,
			SDPMLineIndex:    mc.SDPMLineIndex,
			UsernameFragment: mc.UsernameFragment,
		}
	}
	s.mu.Lock()
	ss := s.sessions[sessID]
	if ss == nil {
		s.addOrphanLocked(sessID, c)
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	ss.addRemote(c)
}

// addOrphanLocked keeps a candidate for a session not seen yet, within
// bounds: its offer may still come (a gateway on another connection), but
// most likely the session is over and the candidate late. s.mu must be held.
func (s *Slave) addOrphanLocked(sessID string, c webrtc.ICECandidateInit) {
	if s.orphans == nil {
		return // closed
	}
	now := time.Now()
	o := s.orphans[sessID]
	if o == nil {
		for id, o := range s.orphans {
			if now.Sub(o.since) > orphanTTL {
				delete(s.orphans, id)
			}
		}
		if len(s.orphans) >= maxOrphanSessions {
			s.log.Debug("candidate for an unknown session dropped", logKeySession, sessID)
			return
		}
		o = &orphan{since: now}
		s.orphans[sessID] = o
	}
	if len(o.cands) >= maxOrphanCandidates {
		return
	}
	o.cands = append(o.cands, c)
}

func (s *Slave) handleCancel(sessID string, data []byte) {
	if _, err := bus.DecodeCancel(data); err != nil {
		s.log.Debug("bad cancel message dropped", logKeySession, sessID, logKeyErr, err)
		return
	}
	s.mu.Lock()
	ss := s.sessions[sessID]
	if s.orphans != nil {
		delete(s.orphans, sessID)
	}
	pending := ss != nil && ss.state == statePending
	s.mu.Unlock()
	if !pending {
		return // unknown, or connected already: cancel means nothing then
	}
	// Closing a peer connection takes a moment: not on the subscription's
	// goroutine.
	s.goTracked(ss.cancelIfPending)
}
