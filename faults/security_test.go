package faults

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/enslavism/enslavism/bus"
	"github.com/enslavism/enslavism/embedded"
	"github.com/enslavism/enslavism/gateway"
	"github.com/enslavism/enslavism/slave"
)

var singlePresence = bus.PresenceConfig{TTL: 2 * time.Second}

func startServer(t *testing.T) *embedded.Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	srv, err := embedded.Start(ctx, embedded.Config{Logger: testLogger()})
	if err != nil {
		t.Fatalf("embedded.Start: %v", err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv
}

func inProcess(t *testing.T, srv *embedded.Server) *nats.Conn {
	t.Helper()
	nc, err := srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// TestSessionsIsolatedAcrossGateways: while Alice's offer (through gateway
// A) waits in the slave's accept hook, Mallory, on gateway A and on gateway
// B, sends candidates and cancels naming Alice's session, both by the name
// Alice's browser chose and by the gateway-scoped key used on NATS (which a
// real browser never sees; the test reads it from the slave). None of it
// reaches Alice's session: the slave sees no cancel and Alice connects and
// echoes. The gateway package tests the same with one gateway and a fake
// slave; this is the whole path, with two gateways and a real slave.
func TestSessionsIsolatedAcrossGateways(t *testing.T) {
	srv := startServer(t)
	_, _, urlA := startGateway(t, inProcess(t, srv), gateway.Config{ID: "gwA", Presence: singlePresence})
	_, _, urlB := startGateway(t, inProcess(t, srv), gateway.Config{ID: "gwB", Presence: singlePresence})

	type entry struct {
		key string
		ctx context.Context
	}
	entered := make(chan entry, 1)
	release := make(chan struct{})
	cancelledAtRelease := make(chan error, 1)
	startSlave(t, inProcess(t, srv), slave.Config{ID: "guarded", Presence: singlePresence, Accept: func(ctx context.Context, o *slave.Offer) error {
		entered <- entry{o.Session, ctx}
		select {
		case <-release:
		case <-ctx.Done():
		}
		cancelledAtRelease <- ctx.Err()
		return nil
	}})

	alice := mustDial(t, urlA)
	malloryA := mustDial(t, urlA)
	malloryB := mustDial(t, urlB)
	waitFor(t, 5*time.Second, "guarded listed", func() bool { return alice.has("guarded") })

	type result struct {
		p   *peer
		err error
	}
	done := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
		defer cancel()
		p, err := connectSession(ctx, alice, "guarded", "alice-1")
		done <- result{p, err}
	}()
	var e entry
	select {
	case e = <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("Alice's offer never reached the slave")
	}

	bogus := map[string]any{"candidate": "candidate:1 1 udp 2130706431 127.0.0.1 9 typ host", "sdpMid": "0", "sdpMLineIndex": 0}
	for _, m := range []*browser{malloryA, malloryB} {
		for _, s := range []string{"alice-1", e.key} {
			for _, msg := range []map[string]any{
				{"type": gateway.TypeICE, "session": s, "candidate": bogus},
				{"type": gateway.TypeICE, "session": s, "candidate": nil},
				{"type": gateway.TypeCancel, "session": s},
			} {
				if err := m.send(msg); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	// Give the attack time to travel (it is dropped, so nothing to wait for).
	time.Sleep(300 * time.Millisecond)
	if err := e.ctx.Err(); err != nil {
		t.Fatalf("Alice's session was cancelled at the slave by Mallory: %v", err)
	}
	close(release)
	if err := <-cancelledAtRelease; err != nil {
		t.Fatalf("Alice's session ended before the slave answered: %v", err)
	}
	r := <-done
	if r.err != nil {
		t.Fatalf("Alice's connection: %v", r.err)
	}
	defer r.p.close()
	if err := r.p.roundTrip(5*time.Second, "still mine"); err != nil {
		t.Fatal(err)
	}
	for _, m := range []*browser{malloryA, malloryB} {
		m.mu.Lock()
		for _, f := range m.others {
			if f.Type == gateway.TypeAnswer || f.Type == gateway.TypeICE {
				t.Errorf("Mallory received %s", f.raw)
			}
		}
		m.mu.Unlock()
	}
}

// TestRefusedBrowsersSeeNothing: with slaves listed, a browser refused by
// ClientAuth or by the origin check gets an HTTP error whose body names no
// slave, and no WebSocket, so no hello and no list; the gateway counts it as
// refused and never as connected. An accepted browser on the same gateway
// gets the list.
func TestRefusedBrowsersSeeNothing(t *testing.T) {
	srv := startServer(t)
	g, hs, url := startGateway(t, inProcess(t, srv), gateway.Config{
		Presence:       singlePresence,
		AllowedOrigins: []string{"https://game.example"},
		ClientAuth: func(r *http.Request) (any, error) {
			if r.URL.Query().Get("token") != "good" {
				return nil, gateway.Reject(http.StatusUnauthorized, "log in first")
			}
			return "alice", nil
		},
	})
	startSlave(t, inProcess(t, srv), slave.Config{ID: "secret-room", UserData: map[string]any{"name": "secret-room-name"}, Presence: singlePresence})
	waitFor(t, 5*time.Second, "the slave listed at the gateway", func() bool { return g.Stats().Slaves == 1 })

	for _, tc := range []struct {
		name, query, origin string
		status              int
	}{
		{"no token", "", "https://game.example", http.StatusUnauthorized},
		{"bad token", "?token=bad", "", http.StatusUnauthorized},
		{"foreign origin", "?token=good", "https://evil.example", http.StatusForbidden},
		{"same host, not listed", "?token=good", hs.URL, http.StatusForbidden},
	} {
		h := http.Header{}
		if tc.origin != "" {
			h.Set("Origin", tc.origin)
		}
		b, resp, err := dialBrowser(t, url+tc.query, h)
		if err == nil {
			b.close()
			t.Errorf("%s: the WebSocket opened", tc.name)
			continue
		}
		if resp == nil {
			t.Errorf("%s: %v, want HTTP %d", tc.name, err, tc.status)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%s: HTTP %d, want %d", tc.name, resp.StatusCode, tc.status)
		}
		if strings.Contains(string(body), "secret-room") {
			t.Errorf("%s: the refusal names a slave: %q", tc.name, body)
		}
	}
	if st := g.Stats(); st.Refused != 4 || st.Accepted != 0 || st.Connections != 0 {
		t.Errorf("Stats = %+v, want 4 refused, none accepted", st)
	}
	h := http.Header{}
	h.Set("Origin", "https://game.example")
	ok, _, err := dialBrowser(t, url+"?token=good", h)
	if err != nil {
		t.Fatalf("accepted browser: %v", err)
	}
	waitFor(t, 5*time.Second, "the list", func() bool { return ok.has("secret-room") })
}
