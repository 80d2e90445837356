package slave_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"

	"github.com/enslavism/enslavism/bus"
	"github.com/enslavism/enslavism/slave"
	"github.com/enslavism/enslavism/slave/internal/testclient"
)

func TestControlChannelContract(t *testing.T) {
	if slave.ControlLabel != testclient.ControlLabel || slave.ControlID != testclient.ControlID {
		t.Fatalf("control channel %q/%d, test client %q/%d", slave.ControlLabel, slave.ControlID, testclient.ControlLabel, testclient.ControlID)
	}
}

func TestEcho(t *testing.T) {
	srv := startServer(t)
	nc := connect(t, srv)
	ctx := testCtx(t, 20*time.Second)

	type seen struct {
		session, gateway, identity string
		labels                     []string
	}
	got := make(chan seen, 1)
	s := startSlave(t, nc, slave.Config{
		Handler: slave.HandlerFunc(func(ctx context.Context, c *slave.Client) {
			var mu sync.Mutex
			var labels []string
			c.OnDataChannel(func(dc *webrtc.DataChannel) {
				mu.Lock()
				labels = append(labels, dc.Label())
				mu.Unlock()
				echo(dc)
			})
			if c.PeerConnection() == nil || c.Context() != ctx {
				t.Error("client without peer connection or with another context")
			}
			<-ctx.Done()
			mu.Lock()
			got <- seen{c.Session(), c.Gateway(), string(c.Identity()), labels}
			mu.Unlock()
		}),
	})

	p, err := testclient.Dial(ctx, nc, s.ID(), testclient.Options{Identity: json.RawMessage(`{"user":"ann"}`), Label: "chat"})
	if err != nil {
		t.Fatal(err)
	}
	// Text and binary, both ways.
	if err := p.Channel.SendText("hello"); err != nil {
		t.Fatal(err)
	}
	if err := p.Channel.Send([]byte{0, 1, 2}); err != nil {
		t.Fatal(err)
	}
	m, err := testclient.Recv(ctx, p.Messages)
	if err != nil || !m.IsString || string(m.Data) != "hello" {
		t.Fatalf("got %q (string %v), %v; want text hello", m.Data, m.IsString, err)
	}
	m, err = testclient.Recv(ctx, p.Messages)
	if err != nil || m.IsString || string(m.Data) != "\x00\x01\x02" {
		t.Fatalf("got %q (string %v), %v; want binary 0 1 2", m.Data, m.IsString, err)
	}
	if n := s.NumClients(); n != 1 {
		t.Errorf("NumClients %d, want 1", n)
	}
	if cs := s.Clients(); len(cs) != 1 || cs[0].Session() != p.Session {
		t.Errorf("Clients() = %v, want the one client", cs)
	}

	// The peer goes away: the handler's context ends.
	_ = p.Close()
	select {
	case g := <-got:
		if g.session != p.Session || g.gateway != p.Gateway || g.identity != `{"user":"ann"}` {
			t.Errorf("handler saw session %q gateway %q identity %s; want %q %q {\"user\":\"ann\"}", g.session, g.gateway, g.identity, p.Session, p.Gateway)
		}
		if len(g.labels) != 1 || g.labels[0] != "chat" {
			t.Errorf("handler saw channels %q, want [chat] (never the control channel)", g.labels)
		}
	case <-ctx.Done():
		t.Fatal("handler context not cancelled after the peer closed")
	}
	eventually(t, 5*time.Second, "session forgotten", func() bool { return s.NumSessions() == 0 && s.NumClients() == 0 })
}

func TestDataChannelOptions(t *testing.T) {
	srv := startServer(t)
	nc := connect(t, srv)
	ctx := testCtx(t, 20*time.Second)

	type params struct {
		label, protocol string
		ordered         bool
		retransmits     *uint16
		lifetime        *uint16
	}
	seen := make(chan params, 16)
	s := startSlave(t, nc, slave.Config{
		Handler: slave.HandlerFunc(func(ctx context.Context, c *slave.Client) {
			c.OnDataChannel(func(dc *webrtc.DataChannel) {
				seen <- params{dc.Label(), dc.Protocol(), dc.Ordered(), dc.MaxRetransmits(), dc.MaxPacketLifeTime()}
				echo(dc)
			})
			<-ctx.Done()
		}),
	})

	u16 := func(v uint16) *uint16 { return &v }
	f, tr := false, true
	tests := []struct {
		name string
		init *webrtc.DataChannelInit
		want params
	}{
		{"reliable", nil, params{ordered: true}},
		{"unordered", &webrtc.DataChannelInit{Ordered: &f}, params{}},
		{"game", &webrtc.DataChannelInit{Ordered: &f, MaxRetransmits: u16(0), Protocol: ptr("JumpSuit")}, params{protocol: "JumpSuit", retransmits: u16(0)}},
		{"rexmit-ordered", &webrtc.DataChannelInit{Ordered: &tr, MaxRetransmits: u16(3)}, params{ordered: true, retransmits: u16(3)}},
		{"lifetime", &webrtc.DataChannelInit{MaxPacketLifeTime: u16(150)}, params{ordered: true, lifetime: u16(150)}},
		{"lifetime-unordered", &webrtc.DataChannelInit{Ordered: &f, MaxPacketLifeTime: u16(20)}, params{lifetime: u16(20)}},
	}
	// The first channel comes with the offer; the others are opened in-band
	// on the same peer connection, as the browser library does.
	p, err := testclient.Dial(ctx, nc, s.ID(), testclient.Options{Label: tests[0].name, Init: tests[0].init})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dc, msgs := p.Channel, p.Messages
			if i > 0 {
				dc, msgs, err = p.OpenChannel(ctx, tt.name, tt.init)
				if err != nil {
					t.Fatal(err)
				}
			}
			var got params
			select {
			case got = <-seen:
			case <-ctx.Done():
				t.Fatal("slave never saw the channel")
			}
			tt.want.label = tt.name
			if got.label != tt.want.label || got.protocol != tt.want.protocol || got.ordered != tt.want.ordered ||
				!eqPtr(got.retransmits, tt.want.retransmits) || !eqPtr(got.lifetime, tt.want.lifetime) {
				t.Errorf("slave saw %s, want %s", fmtParams(got.label, got.protocol, got.ordered, got.retransmits, got.lifetime),
					fmtParams(tt.want.label, tt.want.protocol, tt.want.ordered, tt.want.retransmits, tt.want.lifetime))
			}
			if err := dc.SendText("ping " + tt.name); err != nil {
				t.Fatal(err)
			}
			m, err := testclient.Recv(ctx, msgs)
			if err != nil || string(m.Data) != "ping "+tt.name {
				t.Fatalf("echo %q, %v", m.Data, err)
			}
		})
	}
	if n := s.NumClients(); n != 1 {
		t.Errorf("%d clients, want 1 (every channel on one peer connection)", n)
	}
}

func ptr[T any](v T) *T { return &v }

func eqPtr(a, b *uint16) bool { return a == nil && b == nil || a != nil && b != nil && *a == *b }

func fmtParams(label, protocol string, ordered bool, rexmit, lifetime *uint16) string {
	f := func(p *uint16) string {
		if p == nil {
			return "nil"
		}
		return fmt.Sprint(*p)
	}
	return fmt.Sprintf("{label %q protocol %q ordered %v maxRetransmits %s maxPacketLifeTime %s}", label, protocol, ordered, f(rexmit), f(lifetime))
}

func TestControlPing(t *testing.T) {
	srv := startServer(t)
	nc := connect(t, srv)
	ctx := testCtx(t, 20*time.Second)
	s := startSlave(t, nc, slave.Config{})
	p, err := testclient.Dial(ctx, nc, s.ID(), testclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	// Ignored: binary, unknown type, t not a number, bad JSON.
	for _, msg := range []string{`{"type":"hello"}`, `{"type":"ping","t":"1"}`, `{"type":"ping"}`, `{"type":"ping","t":null}`, `nope`} {
		if err := p.Control.SendText(msg); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Control.Send([]byte(`{"type":"ping","t":1}`)); err != nil {
		t.Fatal(err)
	}
	if err := p.Control.SendText(`{"type":"ping","t":12.5e3}`); err != nil {
		t.Fatal(err)
	}
	m, err := testclient.Recv(ctx, p.ControlMessages)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(m.Data), `{"type":"pong","t":12.5e3}`; got != want || !m.IsString {
		t.Fatalf("got %s (text %v), want text %s", got, m.IsString, want)
	}

	// Rate limit: of a burst of 60 pings, about 10 are answered (burst 10,
	// plus what the 10/s refill allows while they arrive).
	time.Sleep(1100 * time.Millisecond) // refill the bucket
	for i := range 60 {
		if err := p.Control.SendText(fmt.Sprintf(`{"type":"ping","t":%d}`, i)); err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	timeout := time.After(700 * time.Millisecond)
count:
	for {
		select {
		case <-p.ControlMessages:
			n++
		case <-timeout:
			break count
		}
	}
	if n < 10 || n > 20 {
		t.Errorf("%d pongs for a burst of 60 pings, want 10-20", n)
	}
}

func TestReject(t *testing.T) {
	srv := startServer(t)
	nc := connect(t, srv)
	ctx := testCtx(t, 20*time.Second)
	var sawIdentity sync.Map
	s := startSlave(t, nc, slave.Config{
		Accept: func(ctx context.Context, o *slave.Offer) error {
			sawIdentity.Store(o.Session, string(o.Identity))
			var id struct{ Mode string }
			_ = json.Unmarshal(o.Identity, &id)
			switch id.Mode {
			case "reason":
				return slave.Reject("not invited")
			case "empty":
				return slave.Reject("")
			case "error":
				return errors.New("database down")
			case "panic":
				panic("boom")
			}
			if o.Gateway == "" || o.SDP == "" {
				return slave.Reject("offer without gateway or sdp")
			}
			return nil
		},
	})
	tests := []struct {
		mode       string
		wantReason string
		wantCode   bus.Code
	}{
		{"reason", "not invited", ""},
		{"empty", "rejected", ""},
		{"error", "rejected", ""},
		{"panic", "", bus.CodeInternal},
		{"ok", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			identity := json.RawMessage(fmt.Sprintf(`{"mode":%q}`, tt.mode))
			p, err := testclient.Dial(ctx, nc, s.ID(), testclient.Options{Identity: identity})
			var rej *testclient.RejectedError
			var werr *bus.Error
			switch {
			case tt.wantReason != "":
				if !errors.As(err, &rej) || rej.Reason != tt.wantReason {
					t.Fatalf("got %v, want rejected %q", err, tt.wantReason)
				}
			case tt.wantCode != "":
				if !errors.As(err, &werr) || werr.Code != tt.wantCode {
					t.Fatalf("got %v, want error %s", err, tt.wantCode)
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
				_ = p.Close()
			}
		})
	}
	n := 0
	sawIdentity.Range(func(k, v any) bool {
		n++
		return true
	})
	if n != len(tests) {
		t.Errorf("accept hook saw %d offers, want %d", n, len(tests))
	}
	eventually(t, 5*time.Second, "sessions forgotten", func() bool { return s.NumSessions() == 0 })
}

func TestFull(t *testing.T) {
	srv := startServer(t)
	nc := connect(t, srv)
	ctx := testCtx(t, 20*time.Second)
	s := startSlave(t, nc, slave.Config{MaxClients: 2})
	p1, err := testclient.Dial(ctx, nc, s.ID(), testclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p2, err := testclient.Dial(ctx, nc, s.ID(), testclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	_, err = testclient.Dial(ctx, nc, s.ID(), testclient.Options{})
	var rej *testclient.RejectedError
	if !errors.As(err, &rej) || rej.Reason != "full" {
		t.Fatalf("third client: %v, want rejected full", err)
	}
	// A slot frees up when a client leaves.
	_ = p1.Close()
	eventually(t, 5*time.Second, "slot freed", func() bool { return s.NumClients() == 1 })
	p3, err := testclient.Dial(ctx, nc, s.ID(), testclient.Options{})
	if err != nil {
		t.Fatalf("after a client left: %v", err)
	}
	_ = p3.Close()
}

func TestHandlerPanicAndClose(t *testing.T) {
	srv := startServer(t)
	nc := connect(t, srv)
	ctx := testCtx(t, 20*time.Second)
	causes := make(chan error, 4)
	s := startSlave(t, nc, slave.Config{
		Handler: slave.HandlerFunc(func(ctx context.Context, c *slave.Client) {
			act := make(chan struct{}, 1)
			c.OnDataChannel(func(dc *webrtc.DataChannel) {
				dc.OnMessage(func(webrtc.DataChannelMessage) { act <- struct{}{} })
			})
			select {
			case <-act:
			case <-ctx.Done():
				return
			}
			switch string(c.Identity()) {
			case `"close"`:
				_ = c.Close()
				_ = c.Close() // idempotent
				<-ctx.Done()
				causes <- context.Cause(ctx)
			case `"panic"`:
				panic("handler bug")
			default:
				<-ctx.Done()
			}
		}),
	})
	for _, mode := range []string{"close", "panic"} {
		p, err := testclient.Dial(ctx, nc, s.ID(), testclient.Options{Identity: json.RawMessage(`"` + mode + `"`)})
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Channel.SendText("go"); err != nil {
			t.Fatal(err)
		}
		select {
		case <-p.Failed():
		case <-ctx.Done():
			t.Fatalf("%s: the browser's peer connection stayed up", mode)
		}
		_ = p.Close()
		eventually(t, 5*time.Second, mode+": session forgotten", func() bool { return s.NumSessions() == 0 })
	}
	if cause := <-causes; !errors.Is(cause, slave.ErrClientClosed) {
		t.Errorf("cause %v, want ErrClientClosed", cause)
	}
	// The slave still serves.
	p, err := testclient.Dial(ctx, nc, s.ID(), testclient.Options{Identity: json.RawMessage(`"fine"`)})
	if err != nil {
		t.Fatal(err)
	}
	_ = p.Close()
}

func TestManyClients(t *testing.T) {
	const n = 100
	srv := startServer(t)
	nc := connect(t, srv)
	ctx := testCtx(t, 45*time.Second)
	s := startSlave(t, nc, slave.Config{})
	baseline := runtimeGoroutines()
	leakOpt := goleak.IgnoreCurrent()

	peers := make([]*testclient.Peer, n)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := testclient.Dial(ctx, nc, s.ID(), testclient.Options{})
			if err != nil {
				errs <- fmt.Errorf("client %d: %w", i, err)
				return
			}
			peers[i] = p
			msg := fmt.Sprint("hi ", i)
			if err := p.Channel.SendText(msg); err != nil {
				errs <- err
				return
			}
			m, err := testclient.Recv(ctx, p.Messages)
			if err != nil || string(m.Data) != msg {
				errs <- fmt.Errorf("client %d: echo %q, %v", i, m.Data, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("%d clients connected and echoed in %v", n, time.Since(start))
	if got := s.NumClients(); got != n {
		t.Errorf("NumClients %d, want %d", got, n)
	}
	for _, p := range peers {
		if p != nil {
			_ = p.Close()
		}
	}
	eventually(t, 20*time.Second, "every session gone", func() bool { return s.NumSessions() == 0 })
	// Goroutines return to the baseline (the test's peers included: they
	// share the process).
	eventually(t, 20*time.Second, "goroutines back to baseline", func() bool { return runtimeGoroutines() <= baseline })
	goleak.VerifyNone(t, leakOpt)
}

func runtimeGoroutines() int { return runtime.NumGoroutine() }

// Every transport setting connects, with browsers that offer SCTP SNAP and
// browsers that do not.
func TestTransportVariants(t *testing.T) {
	srv := startServer(t)
	nc := connect(t, srv)
	ctx := testCtx(t, 20*time.Second)
	for _, tr := range []slave.TransportConfig{
		{},
		{HelloVerify: true},
		{DisableSCTPSnap: true},
		{DTLSClient: true, HelloVerify: true, DisableSCTPSnap: true},
		{SCTPMaxReceiveBufferSize: 64 << 10, SCTPMaxMessageSize: 16 << 10},
	} {
		s := startSlave(t, nc, slave.Config{Transport: tr})
		for _, snap := range []bool{false, true} {
			t.Run(fmt.Sprintf("%+v/snap=%v", tr, snap), func(t *testing.T) {
				p, err := testclient.Dial(ctx, nc, s.ID(), testclient.Options{API: testclient.NewAPI(snap)})
				if err != nil {
					t.Fatal(err)
				}
				defer p.Close()
				if err := p.Channel.SendText("x"); err != nil {
					t.Fatal(err)
				}
				if m, err := testclient.Recv(ctx, p.Messages); err != nil || string(m.Data) != "x" {
					t.Fatalf("echo %q, %v", m.Data, err)
				}
			})
		}
	}
}
