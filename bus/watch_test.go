package bus_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"testing"
	"time"

	"github.com/enslavism/enslavism/bus"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// drain reads events until none arrives for quiet, applying them to state.
func drain(t *testing.T, w *bus.Watcher, state map[string]string, quiet time.Duration) int {
	t.Helper()
	n := 0
	for {
		select {
		case ev, ok := <-w.Events():
			if !ok {
				t.Fatalf("events closed: %v", w.Err())
			}
			n++
			_, had := state[ev.Slave.ID]
			switch ev.Kind {
			case bus.SlaveAdded:
				if had {
					t.Errorf("added %s twice", ev.Slave.ID)
				}
				state[ev.Slave.ID] = string(ev.Slave.UserData)
			case bus.SlaveUpdated:
				if !had {
					t.Errorf("updated unknown %s", ev.Slave.ID)
				}
				state[ev.Slave.ID] = string(ev.Slave.UserData)
			case bus.SlaveRemoved:
				if !had {
					t.Errorf("removed unknown %s", ev.Slave.ID)
				}
				delete(state, ev.Slave.ID)
			}
		case <-time.After(quiet):
			return n
		}
	}
}

// TestWatchSlowConsumer checks that a consumer that reads nothing for a while
// loses no change: it later receives exactly the difference, coalesced.
func TestWatchSlowConsumer(t *testing.T) {
	s := startServer(t)
	ctx := testCtx(t)
	_, js := connect(t, s)
	p, err := bus.OpenPresence(ctx, js, bus.PresenceConfig{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := p.Watch(ctx, bus.WatchOptions{Buffer: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	regs := map[string]*bus.Registration{}
	for i := range 30 {
		id := fmt.Sprintf("s%02d", i)
		r, err := p.Register(ctx, bus.SlaveInfo{ID: id}, bus.RegisterOptions{})
		if err != nil {
			t.Fatal(err)
		}
		regs[id] = r
	}
	for round := range 5 {
		for id, r := range regs {
			if err := r.SetUserData(ctx, json.RawMessage(fmt.Sprint(round))); err != nil {
				t.Fatal(id, err)
			}
		}
	}
	for i := range 10 { // ten leave again
		id := fmt.Sprintf("s%02d", i)
		if err := regs[id].Deregister(ctx); err != nil {
			t.Fatal(err)
		}
		delete(regs, id)
	}
	time.Sleep(500 * time.Millisecond) // the consumer is asleep

	state := map[string]string{}
	n := drain(t, w, state, 1500*time.Millisecond)
	want := map[string]string{}
	for id := range regs {
		want[id] = "4"
	}
	if !maps.Equal(state, want) {
		t.Errorf("consumer state %v, want %v", state, want)
	}
	// 30 adds + 150 updates + 10 removals happened; coalescing delivers far fewer.
	if n >= 190 {
		t.Errorf("%d events delivered to a slow consumer, want them coalesced", n)
	}
	t.Logf("%d events delivered for 190 changes", n)
	for _, r := range regs {
		_ = r.Deregister(ctx)
	}
}

// TestWatchWithoutMarkers checks the fallback: on a bucket created without
// LimitMarkerTTL (expiry invisible to watchers), a crashed slave still leaves
// through the watcher's stale-key resync.
func TestWatchWithoutMarkers(t *testing.T) {
	s := startServer(t)
	ctx := testCtx(t)
	_, js := connect(t, s)
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "enslavism-slaves", TTL: time.Second, Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	p, err := bus.OpenPresence(ctx, js, bus.PresenceConfig{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := p.Watch(ctx, bus.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	reg, err := p.Register(ctx, bus.SlaveInfo{ID: "quiet"}, bus.RegisterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ev, _ := nextEvent(t, w, 2*time.Second); ev.Kind != bus.SlaveAdded {
		t.Fatalf("got %v, want added", ev.Kind)
	}
	reg.Stop()
	ev, took := nextEvent(t, w, 10*time.Second)
	if ev.Kind != bus.SlaveRemoved || ev.Slave.ID != "quiet" {
		t.Fatalf("got %v %s, want removed quiet", ev.Kind, ev.Slave.ID)
	}
	t.Logf("removed %v after the last heartbeat stopped", took)
}

// TestWatchSurvivesServerRestart restarts the server under a watcher and a
// slave: the slave's presence is restored and the watcher keeps delivering.
func TestWatchSurvivesServerRestart(t *testing.T) {
	dir := t.TempDir()
	opts := &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir, NoSigs: true, NoLog: true}
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("not ready")
	}
	url := s.ClientURL()
	port := s.Addr().(*net.TCPAddr).Port
	defer func() { s.Shutdown(); s.WaitForShutdown() }()
	ctx := testCtx(t)
	reconnect := []nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(100 * time.Millisecond)}
	nc, err := nats.Connect(url, reconnect...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	p, err := bus.OpenPresence(ctx, js, bus.PresenceConfig{TTL: time.Second, FileStorage: true})
	if err != nil {
		t.Fatal(err)
	}
	w, err := p.Watch(ctx, bus.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	reg, err := p.Register(ctx, bus.SlaveInfo{ID: "phoenix"}, bus.RegisterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = reg.Deregister(ctx) }()
	if ev, _ := nextEvent(t, w, 2*time.Second); ev.Kind != bus.SlaveAdded {
		t.Fatalf("got %v, want added", ev.Kind)
	}

	s.Shutdown()
	s.WaitForShutdown()
	time.Sleep(2 * time.Second) // longer than the TTL
	opts2 := *opts
	opts2.Port = port
	s, err = server.NewServer(&opts2)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("not ready after restart")
	}
	// Presence is alive again: either the key outlived the outage (file
	// storage) and heartbeats go on, or it expired and was re-created.
	waitListed := func() {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			list, err := p.List(ctx)
			if err == nil && len(list) == 1 && list[0].ID == "phoenix" {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("presence not restored after the restart: %v %v", list, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitListed()
	time.Sleep(2 * time.Second) // past the TTL: still there means heartbeats work
	waitListed()
	// A new slave after the restart reaches the old watcher.
	reg2, err := p.Register(ctx, bus.SlaveInfo{ID: "newcomer"}, bus.RegisterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = reg2.Deregister(ctx) }()
	state := map[string]string{"phoenix": "null"}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		drain(t, w, state, 300*time.Millisecond)
		if _, ok := state["newcomer"]; ok {
			if _, ok := state["phoenix"]; ok {
				return
			}
		}
	}
	t.Fatalf("after restart the watcher's state is %v, want phoenix and newcomer", state)
}
