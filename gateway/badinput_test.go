package gateway

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"

	"github.com/enslavism/enslavism/bus"
)

// busObserver records every message on "enslavism.>" and checks that each
// one is part of the contract: a subject the bus parses with valid IDs, and
// a payload that decodes.
type busObserver struct {
	mu       sync.Mutex
	subjects []string
	bad      []string
}

func (e *env) observeBus() *busObserver {
	e.t.Helper()
	o := &busObserver{}
	nc := e.connect()
	if _, err := nc.Subscribe("enslavism.>", o.check); err != nil {
		e.t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		_ = nc.Flush()
		o.mu.Lock()
		defer o.mu.Unlock()
		for _, b := range o.bad {
			e.t.Errorf("invalid message on the bus: %s", b)
		}
	})
	return o
}

func (o *busObserver) check(msg *nats.Msg) {
	s := bus.Subjects{}
	var err error
	if _, kind, _, perr := s.ParseSlaveSubject(msg.Subject); perr == nil {
		switch kind {
		case bus.KindOffer:
			_, err = bus.DecodeOfferRequest(msg.Data)
			if err == nil && !strings.HasPrefix(msg.Reply, "_INBOX.") {
				err = errAssert("reply subject " + msg.Reply)
			}
		case bus.KindICE:
			_, err = bus.DecodeICE(msg.Data)
		case bus.KindCancel:
			_, err = bus.DecodeCancel(msg.Data)
		}
	} else if _, _, gerr := s.ParseGatewaySubject(msg.Subject); gerr == nil {
		_, err = bus.DecodeICE(msg.Data)
	} else {
		err = perr
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.subjects = append(o.subjects, msg.Subject)
	if err != nil {
		o.bad = append(o.bad, msg.Subject+" "+string(msg.Data)+": "+err.Error())
	}
}

func (o *busObserver) seen() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.subjects...)
}

type errAssert string

func (e errAssert) Error() string { return string(e) }

// TestBadInput sends a battery of bad frames on one WebSocket: each gets an
// error with a code (and the session when it had a valid one) or is dropped
// silently when the contract says so, the connection stays usable, nothing
// invalid reaches NATS, and another browser is served meanwhile.
func TestBadInput(t *testing.T) {
	e := newEnv(t, Config{MaxFrameSize: 8 << 10})
	obs := e.observeBus()
	f := e.fakeSlave("s1")
	bystander, _ := e.mustDial(nil)
	c, _ := e.mustDial(nil)

	type want struct {
		code    bus.Code // "" means: no answer at all
		session string
	}
	bad := want{bus.CodeBadRequest, ""}
	badS1 := want{bus.CodeBadRequest, "s1"}
	silent := want{}
	cases := []struct {
		name string
		typ  int
		data string
		want want
	}{
		{"binary frame", websocket.BinaryMessage, `{"type":"cancel","session":"s1"}`, bad},
		{"not json", websocket.TextMessage, `hello gateway`, bad},
		{"truncated json", websocket.TextMessage, `{"type":"offer","session":"s1"`, bad},
		{"array", websocket.TextMessage, `[{"type":"cancel"}]`, bad},
		{"number", websocket.TextMessage, `42`, bad},
		{"null", websocket.TextMessage, `null`, bad},
		{"empty frame", websocket.TextMessage, ``, bad},
		{"invalid utf-8", websocket.TextMessage, "{\"type\":\"cancel\",\"session\":\"\xc3\x28\"}", bad},
		{"nul bytes", websocket.TextMessage, "{\"type\":\"offer\",\"session\":\"s1\",\"slave\":\"a\x00b\",\"sdp\":\"x\"}", bad},
		{"deep nesting", websocket.TextMessage, `{"type":"cancel","session":"s1","x":` + strings.Repeat("[", 2000) + strings.Repeat("]", 2000) + `}`, silent},
		{"missing type", websocket.TextMessage, `{"session":"s1"}`, badS1},
		{"type is a number", websocket.TextMessage, `{"type":1,"session":"s1"}`, bad},
		{"gateway-only type", websocket.TextMessage, `{"type":"answer","session":"s1","sdp":"x"}`, badS1},
		{"unknown type", websocket.TextMessage, `{"type":"` + strings.Repeat("z", 500) + `","session":"s1"}`, badS1},
		{"session is an object", websocket.TextMessage, `{"type":"offer","session":{},"slave":"s1","sdp":"x"}`, bad},
		{"session with a dot", websocket.TextMessage, `{"type":"offer","session":"a.b","slave":"s1","sdp":"x"}`, bad},
		{"session wildcard", websocket.TextMessage, `{"type":"ice","session":">","candidate":null}`, bad},
		{"session too long", websocket.TextMessage, `{"type":"cancel","session":"` + strings.Repeat("a", 65) + `"}`, bad},
		{"empty session", websocket.TextMessage, `{"type":"cancel","session":""}`, bad},
		{"slave wildcard", websocket.TextMessage, `{"type":"offer","session":"s1","slave":"*","sdp":"x"}`, badS1},
		{"slave subject injection", websocket.TextMessage, `{"type":"offer","session":"s1","slave":"s1.offer","sdp":"x"}`, badS1},
		{"slave with spaces", websocket.TextMessage, `{"type":"offer","session":"s1","slave":"s 1","sdp":"x"}`, badS1},
		{"sdp missing", websocket.TextMessage, `{"type":"offer","session":"s1","slave":"s1"}`, badS1},
		{"sdp is a number", websocket.TextMessage, `{"type":"offer","session":"s1","slave":"s1","sdp":5}`, bad},
		{"candidate missing", websocket.TextMessage, `{"type":"ice","session":"s1"}`, badS1},
		{"candidate is a number", websocket.TextMessage, `{"type":"ice","session":"s1","candidate":7}`, badS1},
		{"candidate field types", websocket.TextMessage, `{"type":"ice","session":"s1","candidate":{"candidate":1}}`, badS1},
		{"candidate too long", websocket.TextMessage, `{"type":"ice","session":"s1","candidate":{"candidate":"` + strings.Repeat("c", 2000) + `"}}`, badS1},
		{"ice for an unknown session", websocket.TextMessage, `{"type":"ice","session":"nobody","candidate":null}`, silent},
		{"cancel for an unknown session", websocket.TextMessage, `{"type":"cancel","session":"nobody"}`, silent},
	}
	for _, tc := range cases {
		if err := c.sendRaw(tc.typ, []byte(tc.data)); err != nil {
			t.Fatalf("%s: send: %v", tc.name, err)
		}
		if tc.want.code == "" {
			c.expectNothing(50 * time.Millisecond)
			continue
		}
		got, ok := c.next(2 * time.Second)
		if !ok || got.Type != TypeError || got.Code != tc.want.code || got.Session != tc.want.session || got.Message == "" {
			t.Errorf("%s: got %v, want error %s for session %q", tc.name, got, tc.want.code, tc.want.session)
		}
	}

	// The connection still works, and so does the bystander's.
	c.mustSend(offerMsg("ok", "s1"))
	msg, _ := f.offer()
	f.reply(msg, `{"sdp":"fine"}`)
	if got := c.expect(TypeAnswer); got.Session != "ok" {
		t.Errorf("after the battery: %v", got)
	}
	bystander.mustSend(offerMsg("b", "s1"))
	msg, _ = f.offer()
	f.reply(msg, `{"rejected":"no"}`)
	bystander.expect(TypeRejected)
	f.expectNothing(50 * time.Millisecond)

	// Abuse closes: an oversized frame with 1009…
	if err := c.sendRaw(websocket.TextMessage, []byte(`{"type":"offer","session":"s1","slave":"s1","sdp":"`+strings.Repeat("v", 9<<10)+`"}`)); err != nil {
		t.Fatal(err)
	}
	if code := c.expectClose(2 * time.Second); code != websocket.CloseMessageTooBig {
		t.Errorf("oversized frame: close code %d, want 1009", code)
	}
	// … the bystander is still served …
	bystander.mustSend(map[string]any{"type": TypeCancel, "session": "none"})
	bystander.mustSend(`not even an object`)
	bystander.expectError(bus.CodeBadRequest, "")
	if st := e.gateway().Stats(); st.Abusive != 1 || st.Connections != 1 {
		t.Errorf("Stats = %+v, want 1 abusive, 1 connection", st)
	}
	// Only the 2 valid offers reached the bus, and the cancel of the closed
	// browser's session (answered, still in its signaling window).
	waitFor(t, 2*time.Second, "the cancel", func() bool { return len(obs.seen()) >= 3 })
	seen := obs.seen()
	if len(seen) != 3 || seen[0] != "enslavism.slave.s1.offer" || seen[1] != "enslavism.slave.s1.offer" ||
		!strings.HasPrefix(seen[2], "enslavism.slave.s1.session.") || !strings.HasSuffix(seen[2], ".cancel") {
		t.Errorf("on the bus: %v, want 2 offers and a cancel", seen)
	}
}

// TestFloods: a browser flooding messages is closed with 1008; one flooding
// offers gets rate_limited errors and stays connected; the gateway serves
// the others meanwhile.
func TestFloods(t *testing.T) {
	e := newEnv(t, Config{MessagesPerSecond: 50, MessageBurst: 100, OffersPerSecond: 2, OfferBurst: 2})
	obs := e.observeBus()
	e.fakeSlave("s1")
	flooder, _ := e.mustDial(nil)
	for i := 0; i < 300; i++ {
		if err := flooder.send(map[string]any{"type": TypeICE, "session": "x", "candidate": nil}); err != nil {
			break // closed already
		}
	}
	if code := flooder.expectClose(3 * time.Second); code != websocket.ClosePolicyViolation {
		t.Errorf("flood: close code %d, want 1008", code)
	}

	pinger, _ := e.mustDial(nil)
	for i := 0; i < 300; i++ {
		if err := pinger.ws.WriteControl(websocket.PingMessage, []byte("x"), time.Now().Add(time.Second)); err != nil {
			break
		}
	}
	if code := pinger.expectClose(3 * time.Second); code != websocket.ClosePolicyViolation {
		t.Errorf("ping flood: close code %d, want 1008", code)
	}

	offers, _ := e.mustDial(nil)
	limited := 0
	for i := range 10 {
		offers.mustSend(offerMsg("o"+string(rune('a'+i)), "s1"))
	}
	for limited < 8 {
		f, ok := offers.next(2 * time.Second)
		if !ok {
			break
		}
		if f.Type == TypeError && f.Code == bus.CodeRateLimited {
			limited++
		}
	}
	offers.expectNothing(50 * time.Millisecond)
	if limited != 8 {
		t.Errorf("%d offers rate limited, want 8 of 10 (burst 2)", limited)
	}
	if offers.readErr() != nil {
		t.Errorf("rate-limited browser closed: %v", offers.readErr())
	}
	other, _ := e.mustDial(nil)
	other.mustSend(`{}`)
	other.expectError(bus.CodeBadRequest, "")
	if n := len(obs.seen()); n != 2 {
		t.Errorf("%d messages on the bus, want the 2 offers within the burst", n)
	}
}
