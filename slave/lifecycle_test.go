package slave_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/pion/webrtc/v4"

	"github.com/enslavism/enslavism/bus"
	"github.com/enslavism/enslavism/internal/tcpproxy"
	"github.com/enslavism/enslavism/slave"
	"github.com/enslavism/enslavism/slave/internal/testclient"
)

// watch opens the presence bucket (creating it with ttl) and watches it.
func watch(t *testing.T, nc *nats.Conn, ttl time.Duration) *bus.Watcher {
	t.Helper()
	ctx := testCtx(t, 10*time.Second)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	p, err := bus.OpenPresence(ctx, js, bus.PresenceConfig{TTL: ttl, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	w, err := p.Watch(context.Background(), bus.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	return w
}

// nextEvent returns the next presence event of slave id, within d.
func nextEvent(t *testing.T, w *bus.Watcher, id string, d time.Duration) (bus.Event, time.Duration) {
	t.Helper()
	start := time.Now()
	timeout := time.After(d)
	for {
		select {
		case ev, ok := <-w.Events():
			if !ok {
				t.Fatalf("watcher ended: %v", w.Err())
			}
			if ev.Slave.ID == id {
				return ev, time.Since(start)
			}
		case <-timeout:
			t.Fatalf("no presence event for %s within %v", id, d)
		}
	}
}

// nextAddRemove is nextEvent, skipping updates (the load the slave
// publishes changes as clients come and go).
func nextAddRemove(t *testing.T, w *bus.Watcher, id string, d time.Duration) (bus.Event, time.Duration) {
	t.Helper()
	start := time.Now()
	for {
		ev, _ := nextEvent(t, w, id, d-time.Since(start))
		if ev.Kind != bus.SlaveUpdated {
			return ev, time.Since(start)
		}
	}
}

func TestStartConfig(t *testing.T) {
	srv := startServer(t)
	nc := connect(t, srv)
	ctx := testCtx(t, 10*time.Second)
	h := echoHandler()
	tests := []struct {
		name string
		nc   *nats.Conn
		cfg  slave.Config
	}{
		{"no handler", nc, slave.Config{}},
		{"nil conn", nil, slave.Config{Handler: h}},
		{"bad id", nc, slave.Config{Handler: h, ID: "a b"}},
		{"bad prefix", nc, slave.Config{Handler: h, Subjects: bus.Subjects{Prefix: "a.b"}}},
		{"bad user data", nc, slave.Config{Handler: h, UserData: make(chan int)}},
		{"user data too large", nc, slave.Config{Handler: h, UserData: strings.Repeat("x", bus.MaxUserDataSize)}},
		{"negative max clients", nc, slave.Config{Handler: h, MaxClients: -1}},
		{"bad port range", nc, slave.Config{Handler: h, ICE: slave.ICEConfig{PortMin: 10, PortMax: 5}}},
		{"bad mux addr", nc, slave.Config{Handler: h, ICE: slave.ICEConfig{UDPMuxPort: 1, UDPMuxAddr: "nowhere"}}},
		{"srflx with stun", nc, slave.Config{Handler: h, ICE: slave.ICEConfig{NAT1To1IPs: []string{"203.0.113.1"}, NAT1To1CandidateType: webrtc.ICECandidateTypeSrflx, Servers: []webrtc.ICEServer{{URLs: []string{"stun:stun.example.org"}}}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := slave.Start(ctx, tt.nc, tt.cfg)
			if !errors.Is(err, slave.ErrInvalidConfig) {
				if s != nil {
					_ = s.Close()
				}
				t.Fatalf("got %v, want ErrInvalidConfig", err)
			}
		})
	}
}

func TestDuplicateID(t *testing.T) {
	srv := startServer(t)
	nc := connect(t, srv)
	ctx := testCtx(t, 10*time.Second)
	s1 := startSlave(t, nc, slave.Config{ID: "dup"})
	if s1.ID() != "dup" {
		t.Fatalf("ID %q, want dup", s1.ID())
	}
	_, err := slave.Start(ctx, nc, slave.Config{ID: "dup", Handler: echoHandler(), Logger: testLogger()})
	if !errors.Is(err, bus.ErrDuplicateID) {
		t.Fatalf("second slave: %v, want ErrDuplicateID", err)
	}
	// The first one is unharmed, and its ID is free once it closed.
	p, err := testclient.Dial(ctx, nc, "dup", testclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_ = p.Close()
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := startSlave(t, nc, slave.Config{ID: "dup"})
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestNoSuchSlave(t *testing.T) {
	srv := startServer(t)
	nc := connect(t, srv)
	ctx := testCtx(t, 10*time.Second)
	startSlave(t, nc, slave.Config{}) // some other slave exists
	subj, _ := bus.Subjects{}.SlaveOffer("nobody")
	start := time.Now()
	_, err := nc.RequestWithContext(ctx, subj, []byte(`{}`))
	if !errors.Is(err, nats.ErrNoResponders) {
		t.Fatalf("got %v, want no responders", err)
	}
	_, err = testclient.Dial(ctx, nc, "nobody", testclient.Options{})
	if !errors.Is(err, nats.ErrNoResponders) {
		t.Fatalf("test client: got %v, want no responders", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("failing took %v, want fast", took)
	}
}

func TestUserData(t *testing.T) {
	srv := startServer(t)
	nc := connect(t, srv)
	ctx := testCtx(t, 20*time.Second)
	w := watch(t, nc, 0)
	type info struct {
		Name    string `json:"name"`
		Clients int    `json:"clients"`
	}
	s := startSlave(t, nc, slave.Config{
		UserData: info{Name: "a"},
		OnClientsChange: func(s *slave.Slave, n int) {
			if err := s.SetUserData(ctx, info{Name: "a", Clients: n}); err != nil {
				t.Errorf("SetUserData: %v", err)
			}
		},
	})
	last := ""
	expect := func(kind bus.EventKind, userData string) {
		t.Helper()
		ev, _ := nextEvent(t, w, s.ID(), 5*time.Second)
		for ev.Kind == bus.SlaveUpdated && string(ev.Slave.UserData) == last {
			ev, _ = nextEvent(t, w, s.ID(), 5*time.Second) // a load update: the slave publishes its own
		}
		last = string(ev.Slave.UserData)
		if ev.Kind != kind || string(ev.Slave.UserData) != userData {
			t.Fatalf("got %v %s, want %v %s", ev.Kind, ev.Slave.UserData, kind, userData)
		}
	}
	expect(bus.SlaveAdded, `{"name":"a","clients":0}`)
	if err := s.SetUserData(ctx, json.RawMessage(` {"name": "b"} `)); err != nil {
		t.Fatal(err)
	}
	expect(bus.SlaveUpdated, `{"name":"b"}`)
	p, err := testclient.Dial(ctx, nc, s.ID(), testclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	expect(bus.SlaveUpdated, `{"name":"a","clients":1}`)
	_ = p.Close()
	expect(bus.SlaveUpdated, `{"name":"a","clients":0}`)

	if err := s.SetUserData(ctx, strings.Repeat("x", bus.MaxUserDataSize)); !errors.Is(err, bus.ErrTooLarge) {
		t.Errorf("large userData: %v, want ErrTooLarge", err)
	}
	if err := s.SetUserData(ctx, func() {}); !errors.Is(err, bus.ErrMalformed) {
		t.Errorf("unencodable userData: %v, want ErrMalformed", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	expect(bus.SlaveRemoved, `{"name":"a","clients":0}`)
	if err := s.SetUserData(ctx, 1); !errors.Is(err, slave.ErrClosed) {
		t.Errorf("after Close: %v, want ErrClosed", err)
	}
}

func TestKilledSlaveExpires(t *testing.T) {
	const ttl = time.Second
	srv := startServer(t)
	w := watch(t, connect(t, srv), ttl)
	ncSlave := connect(t, srv)
	s := startSlave(t, ncSlave, slave.Config{Presence: bus.PresenceConfig{TTL: ttl}})
	if ev, _ := nextEvent(t, w, s.ID(), 5*time.Second); ev.Kind != bus.SlaveAdded {
		t.Fatalf("got %v, want added", ev.Kind)
	}
	ncSlave.Close() // the slave's process is cut off, as if it crashed
	ev, took := nextEvent(t, w, s.ID(), 5*ttl)
	if ev.Kind != bus.SlaveRemoved {
		t.Fatalf("got %v, want removed", ev.Kind)
	}
	t.Logf("removed %v after the kill (TTL %v)", took, ttl)
	if took > ttl+500*time.Millisecond {
		t.Errorf("removed after %v, want within the TTL %v", took, ttl)
	}
}

func TestShutdown(t *testing.T) {
	srv := startServer(t)
	nc := connect(t, srv)
	w := watch(t, nc, 0) // default TTL: 3 s
	ctx := testCtx(t, 20*time.Second)

	t.Run("waits for handlers up to ctx", func(t *testing.T) {
		causes := make(chan error, 1)
		s := startSlave(t, nc, slave.Config{
			Handler: slave.HandlerFunc(func(ctx context.Context, c *slave.Client) {
				c.OnDataChannel(echo)
				<-ctx.Done() // ignores Stopping
				causes <- context.Cause(ctx)
			}),
		})
		nextEvent(t, w, s.ID(), 5*time.Second)
		p, err := testclient.Dial(ctx, nc, s.ID(), testclient.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()

		sctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
		defer cancel()
		done := make(chan error, 1)
		start := time.Now()
		go func() { done <- s.Shutdown(sctx) }()

		// Browsers see the slave go at once, not after the TTL.
		ev, took := nextAddRemove(t, w, s.ID(), 5*time.Second)
		if ev.Kind != bus.SlaveRemoved || took > time.Second {
			t.Fatalf("got %v after %v, want removed within 1 s (TTL 3 s)", ev.Kind, took)
		}
		select {
		case <-s.Stopping():
		default:
			t.Error("Stopping not closed")
		}
		// New offers are refused while it drains.
		_, err = testclient.Dial(ctx, nc, s.ID(), testclient.Options{})
		if !errors.Is(err, bus.ErrUnavailable) {
			t.Errorf("offer while shutting down: %v, want unavailable", err)
		}
		// The connected client still works.
		if err := p.Channel.SendText("still there"); err != nil {
			t.Fatal(err)
		}
		if m, err := testclient.Recv(ctx, p.Messages); err != nil || string(m.Data) != "still there" {
			t.Fatalf("echo while draining: %q, %v", m.Data, err)
		}
		if err := <-done; !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Shutdown: %v, want deadline exceeded", err)
		}
		if took := time.Since(start); took < time.Second {
			t.Errorf("Shutdown returned after %v, before its ctx ended", took)
		}
		if cause := <-causes; !errors.Is(cause, slave.ErrClosed) {
			t.Errorf("client context cause %v, want ErrClosed", cause)
		}
		select {
		case <-p.Failed():
		case <-time.After(5 * time.Second):
			t.Error("browser's peer connection still up after Shutdown")
		}
		if n := s.NumSessions(); n != 0 {
			t.Errorf("%d sessions left", n)
		}
		if err := s.Close(); err != nil {
			t.Errorf("Close after Shutdown: %v", err)
		}
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown again: %v", err)
		}
	})

	t.Run("handlers that watch Stopping", func(t *testing.T) {
		s := startSlave(t, nc, slave.Config{
			Handler: slave.HandlerFunc(func(ctx context.Context, c *slave.Client) {
				chs := make(chan *webrtc.DataChannel, 1)
				// Wait until the channel is open: a send before that fails.
				c.OnDataChannel(func(dc *webrtc.DataChannel) { dc.OnOpen(func() { chs <- dc }) })
				var ch *webrtc.DataChannel
				select {
				case ch = <-chs:
				case <-ctx.Done():
					return
				}
				select {
				case <-c.Stopping():
					_ = ch.SendText("bye")
				case <-ctx.Done():
				}
			}),
		})
		nextEvent(t, w, s.ID(), 5*time.Second)
		p, err := testclient.Dial(ctx, nc, s.ID(), testclient.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		eventually(t, 5*time.Second, "client served", func() bool { return s.NumClients() == 1 })
		start := time.Now()
		if err := s.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("Shutdown took %v", took)
		}
		if m, err := testclient.Recv(ctx, p.Messages); err != nil || string(m.Data) != "bye" {
			t.Errorf("got %q, %v; want bye", m.Data, err)
		}
		if ev, _ := nextAddRemove(t, w, s.ID(), 5*time.Second); ev.Kind != bus.SlaveRemoved {
			t.Errorf("got %v, want removed", ev.Kind)
		}
	})
}

func TestReconnect(t *testing.T) {
	const ttl = time.Second
	srv := startServer(t)
	nc := connect(t, srv)
	w := watch(t, nc, ttl)
	ctx := testCtx(t, 30*time.Second)
	px := tcpproxy.New(t, strings.TrimPrefix(srv.ClientURL(), "nats://"))
	ncSlave, err := nats.Connect(px.URL(), nats.ReconnectWait(50*time.Millisecond), nats.MaxReconnects(-1), nats.ReconnectJitter(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ncSlave.Close)
	s := startSlave(t, ncSlave, slave.Config{})
	nextEvent(t, w, s.ID(), 5*time.Second)

	// The link goes down for longer than the TTL: the slave is removed...
	px.Cut(true)
	if ev, _ := nextEvent(t, w, s.ID(), 5*ttl); ev.Kind != bus.SlaveRemoved {
		t.Fatalf("got %v, want removed", ev.Kind)
	}
	// ...and comes back when the link does, answering offers again.
	px.SetDown(false)
	if ev, took := nextEvent(t, w, s.ID(), 10*time.Second); ev.Kind != bus.SlaveAdded {
		t.Fatalf("got %v, want added", ev.Kind)
	} else {
		t.Logf("presence restored %v after the link came back", took)
	}
	p, err := testclient.Dial(ctx, nc, s.ID(), testclient.Options{})
	if err != nil {
		t.Fatalf("offer after reconnect: %v", err)
	}
	_ = p.Close()
}
