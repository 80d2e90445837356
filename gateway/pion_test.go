package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/enslavism/enslavism/bus"
	"github.com/enslavism/enslavism/slave"
)

// TestPionThroughGateway connects a Go WebSocket client with a pion peer,
// through the gateway and NATS, to a real slave: a reliable and an
// unordered/unreliable channel share the one peer connection, and both echo.
func TestPionThroughGateway(t *testing.T) {
	e := newEnv(t, Config{ClientAuth: func(*http.Request) (any, error) {
		return map[string]string{"user": "alice"}, nil
	}})
	var identity atomic.Value
	s, _ := e.startSlave(slave.Config{
		ID:       "echo",
		UserData: map[string]any{"name": "echo"},
		Accept: func(_ context.Context, o *slave.Offer) error {
			identity.Store(string(o.Identity))
			return nil
		},
	})
	c, list := e.mustDial(nil)
	waitForSlave(t, c, list, s.ID())

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	unordered, zero := false, uint16(0)
	p, err := connectPeer(ctx, loopbackAPI(), c, s.ID(),
		channelSpec{label: "reliable"},
		channelSpec{label: "fast", init: &webrtc.DataChannelInit{Ordered: &unordered, MaxRetransmits: &zero}},
	)
	if err != nil {
		t.Fatalf("connectPeer: %v", err)
	}
	defer p.close()
	for _, dc := range p.channels {
		got, err := roundTrip(ctx, dc, "hello")
		if err != nil {
			t.Fatal(err)
		}
		if want := dc.Label() + ":hello"; got != want {
			t.Errorf("echo on %s = %q, want %q", dc.Label(), got, want)
		}
	}
	if got, want := identity.Load(), `{"user":"alice"}`; got != want {
		t.Errorf("identity at the slave = %v, want %s", got, want)
	}
	if n := len(s.Clients()); n != 1 {
		t.Errorf("slave has %d clients, want 1 (channels share one peer connection)", n)
	}
	// The session leaves the gateway once its signaling window is over,
	// and the peer connection, direct, stays up.
	if st := e.gateway().Stats(); st.Offers != 1 || st.Connections != 1 || st.Slaves != 1 {
		t.Errorf("Stats = %+v, want 1 offer, 1 connection, 1 slave", st)
	}
}

// waitForSlave reads list frames until id is listed; list is the initial
// snapshot (nil: none read yet).
func waitForSlave(t *testing.T, c *wsClient, list []slaveJSON, id string) {
	t.Helper()
	for _, s := range list {
		if s.ID == id {
			return
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		f, ok := c.next(time.Until(deadline))
		if !ok {
			break
		}
		switch f.Type {
		case TypeSlaves:
			for _, s := range f.Slaves {
				if s.ID == id {
					return
				}
			}
		case TypeSlaveAdded:
			if f.Slave.ID == id {
				return
			}
		}
	}
	t.Fatalf("slave %s never listed", id)
}

func TestPionRejectedAndNoSuchSlave(t *testing.T) {
	e := newEnv(t, Config{})
	e.startSlave(slave.Config{
		ID: "picky",
		Accept: func(context.Context, *slave.Offer) error {
			return slave.Reject("not invited")
		},
	})
	c, list := e.mustDial(nil)
	waitForSlave(t, c, list, "picky")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	_, err := connectPeer(ctx, loopbackAPI(), c, "picky")
	var se *signalError
	if !errors.As(err, &se) || se.f.Type != TypeRejected || se.f.Reason != "not invited" {
		t.Fatalf("connectPeer(picky) = %v, want rejected with reason %q", err, "not invited")
	}
	_, err = connectPeer(ctx, loopbackAPI(), c, "nobody")
	if !errors.As(err, &se) || se.f.Type != TypeError || se.f.Code != bus.CodeNoSuchSlave {
		t.Fatalf("connectPeer(nobody) = %v, want error no_such_slave", err)
	}
	var raw json.RawMessage = []byte(se.f.raw)
	if !json.Valid(raw) {
		t.Errorf("invalid frame %s", raw)
	}
}
