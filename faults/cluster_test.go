package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/pion/webrtc/v4"

	"github.com/enslavism/enslavism/bus"
	"github.com/enslavism/enslavism/embedded"
	"github.com/enslavism/enslavism/gateway"
	"github.com/enslavism/enslavism/internal/tcpproxy"
	"github.com/enslavism/enslavism/slave"
)

// clusterTTL is the presence TTL of the cluster test: the product's default
// (3 s, a heartbeat every second), long enough that a JetStream leader
// election after a node loss does not let a live slave's key expire. With
// 2 s the test saw a false removal once on a loaded 2-core machine.
const clusterTTL = bus.DefaultTTL

// echoHandler echoes every message on every channel.
var echoHandler = slave.HandlerFunc(func(ctx context.Context, c *slave.Client) {
	c.OnDataChannel(func(dc *webrtc.DataChannel) {
		dc.OnMessage(func(m webrtc.DataChannelMessage) {
			if m.IsString {
				_ = dc.SendText(string(m.Data))
			} else {
				_ = dc.Send(m.Data)
			}
		})
	})
	<-ctx.Done()
})

// connectNATS connects to urls in that order (the first is the preferred
// node), reconnecting forever, 50 ms apart. The cleanup closes it.
func connectNATS(t *testing.T, urls []string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	opts = append([]nats.Option{
		nats.DontRandomize(),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(50 * time.Millisecond),
		nats.ReconnectJitter(0, 0),
		nats.Timeout(2 * time.Second),
	}, opts...)
	nc, err := nats.Connect(strings.Join(urls, ","), opts...)
	if err != nil {
		t.Fatalf("connect %v: %v", urls, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// rotate returns urls starting at i.
func rotate(urls []string, i int) []string {
	return append(append([]string(nil), urls[i:]...), urls[:i]...)
}

// startGateway starts a gateway on nc behind an httptest server on
// 127.0.0.1 and returns it with its WebSocket URL.
// A zero cfg.Presence is the cluster's (R3, clusterTTL).
func startGateway(t *testing.T, nc *nats.Conn, cfg gateway.Config) (*gateway.Gateway, *httptest.Server, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	if cfg.Presence == (bus.PresenceConfig{}) {
		cfg.Presence = bus.PresenceConfig{Replicas: 3, TTL: clusterTTL}
	}
	cfg.Logger = testLogger()
	g, err := gateway.New(ctx, nc, cfg)
	if err != nil {
		t.Fatalf("gateway.New(%s): %v", cfg.ID, err)
	}
	t.Cleanup(func() { _ = g.Close() })
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	return g, srv, "ws" + strings.TrimPrefix(srv.URL, "http") + "/enslavism/clients"
}

// startSlave starts a slave on nc with loopback ICE; the cleanup closes it.
// A zero cfg.Presence is the cluster's (R3, clusterTTL).
func startSlave(t *testing.T, nc *nats.Conn, cfg slave.Config) *slave.Slave {
	t.Helper()
	if cfg.Handler == nil {
		cfg.Handler = echoHandler
	}
	cfg.ICE.Loopback = true
	if cfg.Presence == (bus.PresenceConfig{}) {
		cfg.Presence = bus.PresenceConfig{Replicas: 3, TTL: clusterTTL}
	}
	cfg.Logger = testLogger()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	s, err := slave.Start(ctx, nc, cfg)
	if err != nil {
		t.Fatalf("slave.Start(%s): %v", cfg.ID, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// exactList fails unless b lists exactly the slaves of the presence bucket,
// with the same userData.
func exactList(t *testing.T, p *bus.Presence, b *browser) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	want, err := p.List(ctx)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	got := b.snapshot()
	if len(got) != len(want) {
		t.Fatalf("browser lists %v, bucket holds %d slaves", got, len(want))
	}
	for _, s := range want {
		ud, ok := got[s.ID]
		if !ok || !jsonEqual(ud, string(s.UserData)) {
			t.Fatalf("browser lists %s as %q (listed: %v), bucket holds %s", s.ID, ud, ok, s.UserData)
		}
	}
}

func jsonEqual(a, b string) bool {
	var x, y bytes.Buffer
	if json.Compact(&x, []byte(a)) != nil || json.Compact(&y, []byte(b)) != nil {
		return a == b
	}
	return x.String() == y.String()
}

// TestClusterFaults runs a 3-node NATS cluster (presence bucket R3), gateway
// A on node 0, gateway B on node 1, and slaves on node 2 (one through a TCP
// proxy), then breaks one thing at a time and checks what browsers see:
//
//	(a) gateway A shut down: an in-flight offer ends with the WebSocket's
//	    close, not a hang, and is cancelled at the slave; the browser
//	    reconnects to gateway B and gets the exact list; its DataChannel,
//	    direct to the slave, keeps echoing.
//	(b) node 1 (gateway B's) killed: gateway B reconnects to another node,
//	    its watch resumes, no slave is reported gone, a new DataChannel to
//	    the slave works.
//	(c) the slave's NATS connection flaps, briefly then for longer than the
//	    TTL: presence is restored and existing DataChannels keep echoing.
func TestClusterFaults(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	nodes, err := embedded.StartCluster(ctx, 3, embedded.Config{Logger: testLogger()})
	if err != nil {
		t.Fatalf("StartCluster: %v", err)
	}
	for _, n := range nodes {
		t.Cleanup(func() { _ = n.Close() })
	}
	urls := make([]string, len(nodes))
	for i, n := range nodes {
		urls[i] = n.ClientURL()
	}

	// The test's own view of the bucket, from node 0 (never killed).
	obs := connectNATS(t, urls[:1])
	js, err := jetstream.New(obs)
	if err != nil {
		t.Fatal(err)
	}
	presence, err := bus.OpenPresence(ctx, js, bus.PresenceConfig{Replicas: 3, TTL: clusterTTL, Logger: testLogger()})
	if err != nil {
		t.Fatalf("OpenPresence: %v", err)
	}

	gwA, srvA, urlA := startGateway(t, connectNATS(t, rotate(urls, 0)), gateway.Config{ID: "gwA"})
	ncB := connectNATS(t, rotate(urls, 1))
	gwB, _, urlB := startGateway(t, ncB, gateway.Config{ID: "gwB"})

	// The echo slave reaches node 2 through a proxy we can cut, and only
	// through it (no discovered servers).
	proxy := tcpproxy.New(t, strings.TrimPrefix(urls[2], "nats://"))
	ncS := connectNATS(t, []string{proxy.URL()}, nats.IgnoreDiscoveredServers())
	echo := startSlave(t, ncS, slave.Config{ID: "echo-c", UserData: map[string]any{"players": 0}})
	// A slave that never answers: its offers stay in flight.
	entered := make(chan struct{}, 4)
	cancelled := make(chan time.Time, 4)
	startSlave(t, connectNATS(t, urls[2:]), slave.Config{ID: "slow-c", Accept: func(ctx context.Context, _ *slave.Offer) error {
		entered <- struct{}{}
		<-ctx.Done()
		cancelled <- time.Now()
		return ctx.Err()
	}})

	a := mustDial(t, urlA)
	waitFor(t, 5*time.Second, "both slaves listed on gateway A", func() bool { return a.has("echo-c") && a.has("slow-c") })
	exactList(t, presence, a)
	cctx, ccancel := context.WithTimeout(t.Context(), 10*time.Second)
	p1, err := connect(cctx, a, "echo-c")
	ccancel()
	if err != nil {
		t.Fatalf("connect through gateway A: %v", err)
	}
	defer p1.close()
	if err := p1.roundTrip(5*time.Second, "before"); err != nil {
		t.Fatal(err)
	}

	parent := t
	var b *browser
	var p2 *peer
	t.Run("gateway down", func(t *testing.T) {
		inflight := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			p, err := connect(ctx, a, "slow-c")
			p.close()
			inflight <- err
		}()
		select {
		case <-entered:
		case <-time.After(5 * time.Second):
			t.Fatal("the offer never reached slow-c")
		}
		start := time.Now()
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = gwA.Shutdown(ctx)
			srvA.Close()
		}()
		select {
		case err := <-inflight:
			if !errors.Is(err, errWebSocketClosed) {
				t.Fatalf("in-flight offer ended with %v, want the WebSocket closed", err)
			}
			t.Logf("in-flight offer failed %v after gateway A began shutting down (bound 5s)", time.Since(start).Round(time.Millisecond))
		case <-time.After(5 * time.Second):
			t.Fatal("in-flight offer still pending 5s after gateway A went down")
		}
		select {
		case at := <-cancelled:
			t.Logf("slow-c's offer cancelled %v after gateway A began shutting down (bound 5s)", at.Sub(start).Round(time.Millisecond))
		case <-time.After(5 * time.Second):
			t.Fatal("slow-c's offer not cancelled 5s after its gateway went down")
		}
		// The browser reconnects to the other gateway and resyncs.
		start = time.Now()
		b = mustDial(parent, urlB) // outlives this subtest
		t.Logf("reconnected to gateway B and synced in %v", time.Since(start).Round(time.Millisecond))
		exactList(t, presence, b)
		// Direct DataChannels do not need the gateway.
		if err := p1.roundTrip(5*time.Second, "after gateway A"); err != nil {
			t.Fatal(err)
		}
		// A list change still reaches the browser, through gateway B.
		if err := echo.SetUserData(t.Context(), map[string]any{"players": 1}); err != nil {
			t.Fatal(err)
		}
		d := waitFor(t, 5*time.Second, "slaveupdated through gateway B", func() bool { return jsonEqual(b.userData("echo-c"), `{"players":1}`) })
		t.Logf("userData update reached the browser on gateway B in %v (bound 5s)", d.Round(time.Millisecond))
	})
	if t.Failed() {
		return
	}

	t.Run("NATS node down", func(t *testing.T) {
		killed := time.Now()
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		if err := nodes[1].Shutdown(ctx); err != nil {
			t.Fatalf("Shutdown node 1: %v", err)
		}
		d := waitFor(t, 10*time.Second, "gateway B on another node", func() bool {
			return ncB.IsConnected() && ncB.ConnectedUrl() != urls[1] && gwB.Healthy() == nil
		})
		t.Logf("gateway B reconnected to %s and healthy %v after node 1 died (bound 10s)", ncB.ConnectedUrl(), d.Round(time.Millisecond))

		// The watch resumed: a new change reaches the browser.
		waitFor(t, 15*time.Second, "a userData update through gateway B", func() bool {
			uctx, ucancel := context.WithTimeout(t.Context(), time.Second)
			defer ucancel()
			if err := echo.SetUserData(uctx, map[string]any{"players": 2}); err != nil {
				return false // the stream may be electing a leader
			}
			return jsonEqual(b.userData("echo-c"), `{"players":2}`) ||
				waitQuiet(time.Second, func() bool { return jsonEqual(b.userData("echo-c"), `{"players":2}`) })
		})
		t.Logf("userData update reached the browser %v after node 1 died (bound 15s)", time.Since(killed).Round(time.Millisecond))

		// A new DataChannel through gateway B.
		cctx, ccancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer ccancel()
		start := time.Now()
		var err error
		p2, err = connect(cctx, b, "echo-c")
		if err != nil {
			t.Fatalf("connect through gateway B after the node loss: %v", err)
		}
		if err := p2.roundTrip(5*time.Second, "after node 1"); err != nil {
			t.Fatal(err)
		}
		t.Logf("new DataChannel through gateway B open and echoing in %v", time.Since(start).Round(time.Millisecond))

		// Presence survived: one TTL and a half later, nobody was reported gone.
		if rest := clusterTTL*3/2 - time.Since(killed); rest > 0 {
			time.Sleep(rest)
		}
		if n := b.removals("echo-c") + b.removals("slow-c"); n != 0 {
			t.Errorf("the browser saw %d slaveremoved during the node loss, want 0", n)
		}
		exactList(t, presence, b)
	})
	if t.Failed() {
		return
	}
	defer p2.close()

	t.Run("slave NATS flap", func(t *testing.T) {
		// A short flap: the connection is cut and comes back at once.
		reconnects := ncS.Stats().Reconnects
		start := time.Now()
		proxy.Cut(false)
		d := waitFor(t, 5*time.Second, "the slave's NATS reconnect", func() bool {
			return ncS.Stats().Reconnects > reconnects && ncS.IsConnected()
		})
		t.Logf("short flap: slave reconnected in %v (bound 5s)", d.Round(time.Millisecond))
		for _, p := range []*peer{p1, p2} {
			if err := p.roundTrip(5*time.Second, "flap"); err != nil {
				t.Fatal(err)
			}
		}
		if rest := clusterTTL*3/2 - time.Since(start); rest > 0 {
			time.Sleep(rest)
		}
		if n := b.removals("echo-c"); n != 0 {
			t.Fatalf("a short flap removed the slave (%d slaveremoved)", n)
		}

		// A long outage: the key expires, the browser sees the slave leave,
		// its DataChannels keep echoing; NATS comes back, presence is
		// restored.
		proxy.Cut(true)
		d = waitFor(t, clusterTTL+2*time.Second, "the slave's expiry", func() bool { return !b.has("echo-c") })
		t.Logf("long outage: the browser saw the slave leave %v after the cut (TTL %v, bound TTL+2s)", d.Round(time.Millisecond), clusterTTL)
		for _, p := range []*peer{p1, p2} {
			if err := p.roundTrip(5*time.Second, "during outage"); err != nil {
				t.Fatal(err)
			}
		}
		proxy.SetDown(false)
		d = waitFor(t, 5*time.Second, "presence restored", func() bool { return b.has("echo-c") })
		t.Logf("long outage: presence restored in the browser's list %v after NATS came back (bound 5s)", d.Round(time.Millisecond))
		exactList(t, presence, b)
		for _, p := range []*peer{p1, p2} {
			if err := p.roundTrip(5*time.Second, "after outage"); err != nil {
				t.Fatal(err)
			}
		}
		if n := len(echo.Clients()); n != 2 {
			t.Errorf("echo-c has %d clients after the outage, want 2", n)
		}
		cctx, ccancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer ccancel()
		p3, err := connect(cctx, b, "echo-c")
		if err != nil {
			t.Fatalf("new connection after the outage: %v", err)
		}
		defer p3.close()
		if err := p3.roundTrip(5*time.Second, "new"); err != nil {
			t.Fatal(err)
		}
	})
}

// waitQuiet polls cond for up to d.
func waitQuiet(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}
