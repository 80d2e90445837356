package slave_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/enslavism/enslavism/bus"
	"github.com/enslavism/enslavism/slave"
	"github.com/enslavism/enslavism/slave/internal/testclient"
)

// TestLoadPresence checks the load a slave publishes with its presence:
// one update per change, none from heartbeats, full means not accepting.
func TestLoadPresence(t *testing.T) {
	srv := startServer(t)
	nc := connect(t, srv)
	ctx := testCtx(t, 30*time.Second)
	w := watch(t, nc, 0) // default TTL 3 s: a heartbeat every second
	s := startSlave(t, nc, slave.Config{MaxClients: 3, Region: "eu-west"})

	ev, _ := nextEvent(t, w, s.ID(), 5*time.Second)
	if ev.Kind != bus.SlaveAdded || ev.Slave.Load == nil || *ev.Slave.Load != (bus.Load{Clients: 0, Max: 3, Accepting: true}) || ev.Slave.Region != "eu-west" {
		t.Fatalf("got %v %+v (load %+v), want added with load {0 3 true} in eu-west", ev.Kind, ev.Slave, ev.Slave.Load)
	}

	// One client connects: exactly one update, with clients 1.
	p1, err := testclient.Dial(ctx, nc, s.ID(), testclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p1.Close()
	ev, _ = nextEvent(t, w, s.ID(), 5*time.Second)
	if ev.Kind != bus.SlaveUpdated || *ev.Slave.Load != (bus.Load{Clients: 1, Max: 3, Accepting: true}) {
		t.Fatalf("got %v load %+v, want updated {1 3 true}", ev.Kind, ev.Slave.Load)
	}
	// Idle for three heartbeats: no event at all.
	expectQuiet(t, w, 3200*time.Millisecond)

	// Two more: the slave is full and says so; the last update is the
	// final state (intermediate ones may be coalesced).
	p2, err := testclient.Dial(ctx, nc, s.ID(), testclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	p3, err := testclient.Dial(ctx, nc, s.ID(), testclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p3.Close()
	waitLoad(t, w, s.ID(), bus.Load{Clients: 3, Max: 3, Accepting: false})
	if got := s.Load(); got != (bus.Load{Clients: 3, Max: 3, Accepting: false}) {
		t.Errorf("Load() = %+v", got)
	}
	expectQuiet(t, w, 1500*time.Millisecond)

	// One leaves: accepting again.
	_ = p2.Close()
	waitLoad(t, w, s.ID(), bus.Load{Clients: 2, Max: 3, Accepting: true})
}

// expectQuiet fails on any presence event within d.
func expectQuiet(t *testing.T, w *bus.Watcher, d time.Duration) {
	t.Helper()
	select {
	case ev := <-w.Events():
		t.Fatalf("unexpected presence event %v %s (load %+v)", ev.Kind, ev.Slave.ID, ev.Slave.Load)
	case <-time.After(d):
	}
}

// waitLoad reads updates of slave id until its load is want.
func waitLoad(t *testing.T, w *bus.Watcher, id string, want bus.Load) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ev, _ := nextEvent(t, w, id, time.Until(deadline))
		if ev.Kind != bus.SlaveUpdated {
			t.Fatalf("got %v, want updates", ev.Kind)
		}
		if ev.Slave.Load != nil && *ev.Slave.Load == want {
			return
		}
	}
}

func TestRegionConfig(t *testing.T) {
	srv := startServer(t)
	nc := connect(t, srv)
	ctx := testCtx(t, 10*time.Second)
	for _, region := range []string{strings.Repeat("x", 65), "eu\nwest", "bad\x00", "\xff"} {
		s, err := slave.Start(ctx, nc, slave.Config{Handler: echoHandler(), Region: region})
		if !errors.Is(err, slave.ErrInvalidConfig) {
			if s != nil {
				_ = s.Close()
			}
			t.Errorf("Region %q: %v, want ErrInvalidConfig", region, err)
		}
	}
	s := startSlave(t, nc, slave.Config{Region: strings.Repeat("é", 32)}) // 64 bytes
	if s == nil {
		t.Fatal("no slave")
	}
}
