package gateway

import (
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/enslavism/enslavism/bus"
)

// fakeSlave is the NATS side of a slave without WebRTC: it records what the
// gateway sends to "<prefix>.slave.<id>.>" and answers by hand. It tests the
// relay, not WebRTC (the pion and browser tests use real slaves).
type fakeSlave struct {
	t    testing.TB
	e    *env
	nc   *nats.Conn
	id   string
	msgs chan *nats.Msg
}

func (e *env) fakeSlave(id string) *fakeSlave {
	e.t.Helper()
	f := &fakeSlave{t: e.t, e: e, nc: e.connect(), id: id, msgs: make(chan *nats.Msg, 256)}
	subject, err := bus.Subjects{}.SlaveWildcard(id)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := f.nc.ChanSubscribe(subject, f.msgs); err != nil {
		e.t.Fatal(err)
	}
	if err := f.nc.Flush(); err != nil {
		e.t.Fatal(err)
	}
	return f
}

// next returns the next message, which must be of kind; session is the
// gateway-scoped key of ICE and cancel subjects.
func (f *fakeSlave) next(kind bus.Kind) (msg *nats.Msg, session string) {
	f.t.Helper()
	select {
	case msg = <-f.msgs:
	case <-time.After(5 * time.Second):
		f.t.Fatalf("slave %s: no %v message", f.id, kind)
	}
	id, k, session, err := bus.Subjects{}.ParseSlaveSubject(msg.Subject)
	if err != nil || id != f.id || k != kind {
		f.t.Fatalf("slave %s got %s %s, want a %v", f.id, msg.Subject, msg.Data, kind)
	}
	return msg, session
}

// offer waits for an offer request and decodes it.
func (f *fakeSlave) offer() (*nats.Msg, bus.OfferRequest) {
	f.t.Helper()
	msg, _ := f.next(bus.KindOffer)
	req, err := bus.DecodeOfferRequest(msg.Data)
	if err != nil {
		f.t.Fatalf("invalid offer request %s: %v", msg.Data, err)
	}
	return msg, req
}

func (f *fakeSlave) expectNothing(d time.Duration) {
	f.t.Helper()
	select {
	case msg := <-f.msgs:
		f.t.Fatalf("slave %s got %s %s, want nothing", f.id, msg.Subject, msg.Data)
	case <-time.After(d):
	}
}

func (f *fakeSlave) reply(msg *nats.Msg, data string) {
	f.t.Helper()
	if err := msg.Respond([]byte(data)); err != nil {
		f.t.Fatal(err)
	}
}

// sendICE publishes a slave candidate for a session to the gateway.
func (f *fakeSlave) sendICE(session, data string) {
	f.t.Helper()
	subject, err := bus.Subjects{}.GatewayICE(f.e.gateway().ID(), session)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := f.nc.Publish(subject, []byte(data)); err != nil {
		f.t.Fatal(err)
	}
}

func offerMsg(session, slave string) map[string]any {
	return map[string]any{"type": TypeOffer, "session": session, "slave": slave, "sdp": "v=0 offer"}
}

func iceMsgFor(session string, candidate any) map[string]any {
	return map[string]any{"type": TypeICE, "session": session, "candidate": candidate}
}

const candidateJSON = `{"candidate":"candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"abcd"}`

func TestRelayAnswerAndICE(t *testing.T) {
	e := newEnv(t, Config{ClientAuth: func(*http.Request) (any, error) { return []int{1, 2}, nil }})
	f := e.fakeSlave("s1")
	c, _ := e.mustDial(nil)

	// The browser sends its candidates right after the offer: they reach
	// the slave after the offer request, never before.
	c.mustSend(offerMsg("browser-1", "s1"))
	c.mustSend(iceMsgFor("browser-1", json.RawMessage(candidateJSON)))
	c.mustSend(iceMsgFor("browser-1", nil))
	msg, req := f.offer()
	if req.Session == "browser-1" || bus.ValidateID(req.Session) != nil || req.Gateway != e.gateway().ID() || req.SDP != "v=0 offer" || string(req.Identity) != "[1,2]" {
		t.Errorf("offer request = %+v; want a fresh session key, gateway %s, the sdp and identity [1,2]", req, e.gateway().ID())
	}
	ice, session := f.next(bus.KindICE)
	if session != req.Session || string(ice.Data) != `{"candidate":`+candidateJSON+`}` {
		t.Errorf("candidate on %s: %s", ice.Subject, ice.Data)
	}
	end, _ := f.next(bus.KindICE)
	if string(end.Data) != `{"candidate":null}` {
		t.Errorf("end of candidates = %s, want {\"candidate\":null}", end.Data)
	}

	// Slave candidates may come before the answer: they are forwarded.
	f.sendICE(req.Session, `{"candidate":`+candidateJSON+`}`)
	if got, want := c.expect(TypeICE).raw, `{"type":"ice","session":"browser-1","candidate":`+candidateJSON+`}`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	f.reply(msg, `{"sdp":"v=0 answer"}`)
	if got, want := c.expect(TypeAnswer).raw, `{"type":"answer","session":"browser-1","sdp":"v=0 answer"}`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	f.sendICE(req.Session, `{"candidate":null}`)
	if got, want := c.expect(TypeICE).raw, `{"type":"ice","session":"browser-1","candidate":null}`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	// Invalid slave messages are dropped.
	f.sendICE(req.Session, `{"nope":1}`)
	f.sendICE(req.Session, `garbage`)
	f.sendICE("unknown", `{"candidate":null}`)
	c.expectNothing(100 * time.Millisecond)
	if n := e.gateway().Stats().Sessions; n != 1 {
		t.Errorf("%d sessions, want 1 in its signaling window", n)
	}
}

func TestRelayOutcomes(t *testing.T) {
	var mu sync.Mutex
	var errs []error
	e := newEnv(t, Config{OnError: func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}})
	f := e.fakeSlave("s1")
	c, _ := e.mustDial(nil)
	for _, tc := range []struct {
		reply string
		want  string
	}{
		{`{"rejected":"full"}`, `{"type":"rejected","session":"S","reason":"full"}`},
		{`{"error":{"code":"rate_limited","message":"busy"}}`, `{"type":"error","session":"S","code":"rate_limited","message":"busy"}`},
		{`{"error":{"code":"Not A Code","message":"x"}}`, `{"type":"error","session":"S","code":"internal","message":"x"}`},
		{`garbage`, `{"type":"error","session":"S","code":"internal","message":"the slave sent an invalid reply"}`},
		{`{"sdp":"a","rejected":"b"}`, `{"type":"error","session":"S","code":"internal","message":"the slave sent an invalid reply"}`},
	} {
		c.mustSend(offerMsg("S", "s1"))
		msg, _ := f.offer()
		f.reply(msg, tc.reply)
		if got, ok := c.next(5 * time.Second); !ok || got.raw != tc.want {
			t.Errorf("reply %s: got %s, want %s", tc.reply, got.raw, tc.want)
		}
		// The session ID is free again once its outcome is known.
	}
	mu.Lock()
	if len(errs) != 2 {
		t.Errorf("OnError got %v, want the 2 invalid replies", errs)
	}
	mu.Unlock()

	// No slave at all: no_such_slave at once (no responders), not a timeout.
	start := time.Now()
	c.mustSend(offerMsg("S", "ghost"))
	c.expectError(bus.CodeNoSuchSlave, "S")
	if d := time.Since(start); d > time.Second {
		t.Errorf("no_such_slave took %v", d)
	}
	// A second reply to the same request is ignored.
	c.mustSend(offerMsg("T", "s1"))
	msg, _ := f.offer()
	f.reply(msg, `{"sdp":"one"}`)
	f.reply(msg, `{"sdp":"two"}`)
	if got := c.expect(TypeAnswer); got.SDP != "one" {
		t.Errorf("answer %v", got)
	}
	c.expectNothing(100 * time.Millisecond)
	if e.gateway().Stats().Sessions != 1 {
		t.Errorf("sessions %d, want 1", e.gateway().Stats().Sessions)
	}
}

func TestTimeoutCancelsAtSlave(t *testing.T) {
	e := newEnv(t, Config{OfferTimeout: 200 * time.Millisecond})
	f := e.fakeSlave("s1")
	c, _ := e.mustDial(nil)
	c.mustSend(offerMsg("S", "s1"))
	msg, req := f.offer()
	start := time.Now()
	c.expectError(bus.CodeTimeout, "S")
	if d := time.Since(start); d > time.Second {
		t.Errorf("timeout after %v, want about 200ms", d)
	}
	cancel, session := f.next(bus.KindCancel)
	if session != req.Session || string(cancel.Data) != "{}" {
		t.Errorf("cancel %s %s", cancel.Subject, cancel.Data)
	}
	// A late answer goes nowhere.
	f.reply(msg, `{"sdp":"late"}`)
	c.expectNothing(100 * time.Millisecond)

	// After an answer, the session stays routable for OfferTimeout, then
	// is forgotten without a cancel.
	c.mustSend(offerMsg("U", "s1"))
	msg, req = f.offer()
	f.reply(msg, `{"sdp":"ok"}`)
	c.expect(TypeAnswer)
	waitFor(t, 2*time.Second, "the window to close", func() bool { return e.gateway().Stats().Sessions == 0 })
	c.mustSend(iceMsgFor("U", nil)) // unknown now: dropped silently
	f.sendICE(req.Session, `{"candidate":null}`)
	c.expectNothing(100 * time.Millisecond)
	f.expectNothing(100 * time.Millisecond)
}

func TestCancelAndDisconnect(t *testing.T) {
	e := newEnv(t, Config{})
	f := e.fakeSlave("s1")
	c, _ := e.mustDial(nil)

	c.mustSend(offerMsg("A", "s1"))
	msg, req := f.offer()
	c.mustSend(map[string]any{"type": TypeCancel, "session": "A"})
	_, session := f.next(bus.KindCancel)
	if session != req.Session {
		t.Errorf("cancel for %s, want %s", session, req.Session)
	}
	f.reply(msg, `{"sdp":"too late"}`)
	c.mustSend(map[string]any{"type": TypeCancel, "session": "A"}) // unknown now: ignored
	c.expectNothing(100 * time.Millisecond)
	f.expectNothing(50 * time.Millisecond)

	// The browser goes away with two sessions pending (one answered):
	// both are cancelled at the slave.
	c.mustSend(offerMsg("B", "s1"))
	c.mustSend(offerMsg("C", "s1"))
	mb, rb := f.offer()
	_, rc := f.offer()
	f.reply(mb, `{"sdp":"b"}`)
	c.expect(TypeAnswer)
	c.close()
	got := map[string]bool{}
	for range 2 {
		_, s := f.next(bus.KindCancel)
		got[s] = true
	}
	if !got[rb.Session] || !got[rc.Session] {
		t.Errorf("cancels for %v, want %s and %s", got, rb.Session, rc.Session)
	}
	waitFor(t, 2*time.Second, "no sessions", func() bool { return e.gateway().Stats().Sessions == 0 })
}

// TestSessionScoping: two browsers using the same session ID get separate
// sessions; neither can send candidates into, cancel, or receive the
// candidates of the other's.
func TestSessionScoping(t *testing.T) {
	e := newEnv(t, Config{})
	f := e.fakeSlave("s1")
	alice, _ := e.mustDial(nil)
	mallory, _ := e.mustDial(nil)

	alice.mustSend(offerMsg("same", "s1"))
	_, ra := f.offer()
	mallory.mustSend(offerMsg("same", "s1"))
	_, rm := f.offer()
	if ra.Session == rm.Session {
		t.Fatalf("both browsers got session key %s", ra.Session)
	}
	// Mallory's candidates and cancel go to Mallory's session only.
	mallory.mustSend(iceMsgFor("same", nil))
	_, s := f.next(bus.KindICE)
	mallory.mustSend(map[string]any{"type": TypeCancel, "session": "same"})
	_, s2 := f.next(bus.KindCancel)
	if s != rm.Session || s2 != rm.Session {
		t.Errorf("mallory reached %s and %s, want only %s", s, s2, rm.Session)
	}
	// Nor can Mallory name Alice's key.
	mallory.mustSend(iceMsgFor(ra.Session, nil))
	mallory.mustSend(map[string]any{"type": TypeCancel, "session": ra.Session})
	f.expectNothing(100 * time.Millisecond)
	// The slave's candidates for Alice's key reach Alice only.
	f.sendICE(ra.Session, `{"candidate":null}`)
	if got := alice.expect(TypeICE); got.Session != "same" {
		t.Errorf("alice got %v", got)
	}
	mallory.expectNothing(100 * time.Millisecond)
}

func TestSessionLimits(t *testing.T) {
	e := newEnv(t, Config{MaxPendingSessions: 2, OffersPerSecond: 1, OfferBurst: 4})
	f := e.fakeSlave("s1")
	c, _ := e.mustDial(nil)
	c.mustSend(offerMsg("A", "s1"))
	c.mustSend(offerMsg("A", "s1"))
	c.expectError(bus.CodeBadRequest, "A") // in use
	c.mustSend(offerMsg("B", "s1"))
	c.mustSend(offerMsg("C", "s1"))
	c.expectError(bus.CodeTooMany, "C")
	f.offer()
	f.offer()
	// The burst of 4 is spent (refused offers count too): rate limited.
	c.mustSend(map[string]any{"type": TypeCancel, "session": "A"})
	c.mustSend(offerMsg("D", "s1"))
	c.expectError(bus.CodeRateLimited, "D")
	if c.readErr() != nil {
		t.Fatalf("connection closed: %v", c.readErr())
	}
}

func TestOnOffer(t *testing.T) {
	var mu sync.Mutex
	var results []OfferResult
	e := newEnv(t, Config{OfferTimeout: 200 * time.Millisecond, OnOffer: func(r OfferResult) {
		mu.Lock()
		results = append(results, r)
		mu.Unlock()
	}})
	f := e.fakeSlave("s1")
	c, _ := e.mustDial(nil)
	for _, reply := range []string{`{"sdp":"x"}`, `{"rejected":"no"}`, `{"error":{"code":"unavailable","message":"bye"}}`} {
		c.mustSend(offerMsg(bus.NewID(), "s1"))
		msg, _ := f.offer()
		f.reply(msg, reply)
		c.next(2 * time.Second)
	}
	c.mustSend(offerMsg("ghost", "nobody"))
	c.expectError(bus.CodeNoSuchSlave, "ghost")
	c.mustSend(offerMsg("slow", "s1"))
	f.offer()
	c.expectError(bus.CodeTimeout, "slow")
	f.next(bus.KindCancel)
	c.mustSend(offerMsg("cancelled", "s1"))
	f.offer()
	c.mustSend(map[string]any{"type": TypeCancel, "session": "cancelled"})
	f.next(bus.KindCancel)
	c.mustSend(offerMsg("left", "s1"))
	f.offer()
	c.close()
	want := []string{"answered", "rejected", "error:unavailable", "no_such_slave:no_such_slave", "timeout:timeout", "cancelled", "cancelled"}
	waitFor(t, 2*time.Second, "7 results", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(results) == len(want)
	})
	mu.Lock()
	defer mu.Unlock()
	for i, r := range results {
		got := r.Outcome
		if r.Code != "" {
			got += ":" + string(r.Code)
		}
		if got != want[i] || r.Latency <= 0 || r.Latency > 5*time.Second {
			t.Errorf("result %d = %+v, want %s", i, r, want[i])
		}
		if r.Slave != "s1" && r.Outcome != OutcomeNoSuchSlave {
			t.Errorf("result %d for slave %q", i, r.Slave)
		}
	}
}

func TestHealthy(t *testing.T) {
	e := newEnv(t, Config{})
	g := e.gateway()
	if err := g.Healthy(); err != nil {
		t.Fatalf("Healthy() = %v", err)
	}
	e.nc.Close()
	if err := g.Healthy(); !errors.Is(err, ErrUnhealthy) {
		t.Errorf("Healthy() with NATS closed = %v, want ErrUnhealthy", err)
	}
	// Offers fail fast with unavailable while the bus is down.
	c, _ := e.mustDial(nil)
	c.mustSend(offerMsg("s", "s1"))
	c.expectError(bus.CodeUnavailable, "s")
	_ = g.Close()
	if err := g.Healthy(); !errors.Is(err, ErrClosed) {
		t.Errorf("Healthy() after Close = %v, want ErrClosed", err)
	}
}
