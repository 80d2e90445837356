package bus_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/enslavism/enslavism/bus"
)

// nextEvent waits for one event up to d.
func nextEvent(t *testing.T, w *bus.Watcher, d time.Duration) (bus.Event, time.Duration) {
	t.Helper()
	start := time.Now()
	select {
	case ev, ok := <-w.Events():
		if !ok {
			t.Fatalf("events closed: %v", w.Err())
		}
		return ev, time.Since(start)
	case <-time.After(d):
		t.Fatalf("no event within %v", d)
	}
	return bus.Event{}, 0
}

// noEvent fails when an event arrives within d.
func noEvent(t *testing.T, w *bus.Watcher, d time.Duration) {
	t.Helper()
	select {
	case ev := <-w.Events():
		t.Fatalf("unexpected event %v %s %s", ev.Kind, ev.Slave.ID, ev.Slave.UserData)
	case <-time.After(d):
	}
}

func TestPresenceLifecycle(t *testing.T) {
	s := startServer(t)
	ctx := testCtx(t)
	_, js := connect(t, s)
	p, err := bus.OpenPresence(ctx, js, bus.PresenceConfig{TTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := p.Bucket(), "enslavism-slaves"; got != want {
		t.Errorf("bucket %q, want %q", got, want)
	}
	w, err := p.Watch(ctx, bus.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if n := len(w.Snapshot()); n != 0 {
		t.Fatalf("snapshot has %d slaves, want 0", n)
	}

	// Registered → added within 100 ms.
	reg, err := p.Register(ctx, bus.SlaveInfo{ID: "s1", UserData: json.RawMessage(`{"players":0}`)}, bus.RegisterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ev, took := nextEvent(t, w, 2*time.Second)
	if ev.Kind != bus.SlaveAdded || ev.Slave.ID != "s1" || string(ev.Slave.UserData) != `{"players":0}` {
		t.Fatalf("got %v %+v, want added s1", ev.Kind, ev.Slave)
	}
	if took > 100*time.Millisecond {
		t.Errorf("added after %v, want ≤ 100ms", took)
	}

	// Heartbeats alone (TTL/3 ≈ 667 ms) produce no events over 2 s.
	noEvent(t, w, 2*time.Second)

	// One userData update → one update event.
	if err := reg.SetUserData(ctx, json.RawMessage(`{"players":1}`)); err != nil {
		t.Fatal(err)
	}
	ev, _ = nextEvent(t, w, 2*time.Second)
	if ev.Kind != bus.SlaveUpdated || string(ev.Slave.UserData) != `{"players":1}` {
		t.Fatalf("got %v %s, want updated players 1", ev.Kind, ev.Slave.UserData)
	}
	// Setting the same value again is not a change.
	if err := reg.SetUserData(ctx, json.RawMessage(`{"players":1}`)); err != nil {
		t.Fatal(err)
	}
	noEvent(t, w, 1500*time.Millisecond)

	// Graceful deregister → removed within 100 ms.
	if err := reg.Deregister(ctx); err != nil {
		t.Fatal(err)
	}
	ev, took = nextEvent(t, w, 2*time.Second)
	if ev.Kind != bus.SlaveRemoved || ev.Slave.ID != "s1" {
		t.Fatalf("got %v %s, want removed s1", ev.Kind, ev.Slave.ID)
	}
	if took > 100*time.Millisecond {
		t.Errorf("removed after %v, want ≤ 100ms", took)
	}
	if err := reg.Deregister(ctx); err != nil {
		t.Errorf("second Deregister: %v", err)
	}
	if err := reg.SetUserData(ctx, nil); !errors.Is(err, bus.ErrClosed) {
		t.Errorf("SetUserData after Deregister: %v, want ErrClosed", err)
	}
}

func TestPresenceCrashExpires(t *testing.T) {
	s := startServer(t)
	ctx := testCtx(t)
	_, js := connect(t, s)
	const ttl = 2 * time.Second
	p, err := bus.OpenPresence(ctx, js, bus.PresenceConfig{TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	w, err := p.Watch(ctx, bus.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	// The slave has its own connection; closing it is the crash.
	slaveNC, slaveJS := connect(t, s)
	sp, err := bus.OpenPresence(ctx, slaveJS, bus.PresenceConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if sp.TTL() != ttl {
		t.Fatalf("opened bucket TTL %v, want the creator's %v", sp.TTL(), ttl)
	}
	reg, err := sp.Register(ctx, bus.SlaveInfo{ID: "crashy"}, bus.RegisterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Stop()
	if ev, _ := nextEvent(t, w, 2*time.Second); ev.Kind != bus.SlaveAdded {
		t.Fatalf("got %v, want added", ev.Kind)
	}
	time.Sleep(ttl) // a few heartbeats
	slaveNC.Close()
	crashed := time.Now()
	ev, _ := nextEvent(t, w, ttl+5*time.Second)
	if ev.Kind != bus.SlaveRemoved || ev.Slave.ID != "crashy" {
		t.Fatalf("got %v %s, want removed crashy", ev.Kind, ev.Slave.ID)
	}
	if took := time.Since(crashed); took > ttl+time.Second {
		t.Errorf("crashed slave removed after %v, want ≤ TTL+1s = %v", took, ttl+time.Second)
	}
}

func TestPresenceDuplicateID(t *testing.T) {
	s := startServer(t)
	ctx := testCtx(t)
	_, js := connect(t, s)
	p, err := bus.OpenPresence(ctx, js, bus.PresenceConfig{TTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	first, err := p.Register(ctx, bus.SlaveInfo{ID: "dup"}, bus.RegisterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Register(ctx, bus.SlaveInfo{ID: "dup"}, bus.RegisterOptions{})
	if !errors.Is(err, bus.ErrDuplicateID) {
		t.Fatalf("second live registration: %v, want ErrDuplicateID", err)
	}
	// Let the first one expire, then the ID is free again.
	first.Stop()
	deadline := time.Now().Add(10 * time.Second)
	for {
		second, err := p.Register(ctx, bus.SlaveInfo{ID: "dup"}, bus.RegisterOptions{})
		if err == nil {
			if err := second.Deregister(ctx); err != nil {
				t.Fatal(err)
			}
			break
		}
		if !errors.Is(err, bus.ErrDuplicateID) || time.Now().After(deadline) {
			t.Fatalf("registration after expiry: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestWatchSnapshotOf50(t *testing.T) {
	s := startServer(t)
	ctx := testCtx(t)
	_, js := connect(t, s)
	p, err := bus.OpenPresence(ctx, js, bus.PresenceConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var regs []*bus.Registration
	for i := range 50 {
		r, err := p.Register(ctx, bus.SlaveInfo{ID: fmt.Sprintf("slave-%02d", i), UserData: json.RawMessage(fmt.Sprint(i))}, bus.RegisterOptions{})
		if err != nil {
			t.Fatal(err)
		}
		regs = append(regs, r)
	}
	defer func() {
		for _, r := range regs {
			_ = r.Deregister(ctx)
		}
	}()
	w, err := p.Watch(ctx, bus.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	snap := w.Snapshot()
	if len(snap) != 50 {
		t.Fatalf("snapshot has %d slaves, want 50", len(snap))
	}
	for i, si := range snap {
		if want := fmt.Sprintf("slave-%02d", i); si.ID != want || string(si.UserData) != fmt.Sprint(i) {
			t.Errorf("snapshot[%d] = %s %s, want %s %d", i, si.ID, si.UserData, want, i)
		}
	}
	list, err := p.List(ctx)
	if err != nil || len(list) != 50 {
		t.Fatalf("List: %d slaves, %v", len(list), err)
	}
	noEvent(t, w, 1500*time.Millisecond)
}

// TestRegisterFailureLeavesNoOrphan cancels Register at once, over and over:
// whatever the server stored of a failed registration must not stay listed.
func TestRegisterFailureLeavesNoOrphan(t *testing.T) {
	s := startServer(t)
	ctx := testCtx(t)
	_, js := connect(t, s)
	p, err := bus.OpenPresence(ctx, js, bus.PresenceConfig{TTL: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		cctx, cancel := context.WithTimeout(ctx, time.Duration(i*20)*time.Microsecond)
		reg, err := p.Register(cctx, bus.SlaveInfo{ID: fmt.Sprintf("o%d", i)}, bus.RegisterOptions{})
		cancel()
		if err == nil {
			if err := reg.Deregister(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	// With a 30 s TTL, a leftover key would still be listed; abandoned
	// writes are cleaned up in the background, within moments.
	deadline := time.Now().Add(5 * time.Second)
	for {
		list, err := p.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d orphan keys listed after failed registrations: %v", len(list), list)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestHeartbeatAfterLostAck simulates a heartbeat stored by the server whose
// acknowledgement was lost (a timeout under load): the key holds our value at
// a revision the registration does not know. The next heartbeat must adopt
// it, not report the ID as taken by another slave nor let the key expire.
func TestHeartbeatAfterLostAck(t *testing.T) {
	s := startServer(t)
	ctx := testCtx(t)
	_, js := connect(t, s)
	p, err := bus.OpenPresence(ctx, js, bus.PresenceConfig{TTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	lost := make(chan error, 1)
	reg, err := p.Register(ctx, bus.SlaveInfo{ID: "busy"}, bus.RegisterOptions{OnLost: func(err error) { lost <- err }})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = reg.Deregister(ctx) }()
	w, err := p.Watch(ctx, bus.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	e, err := p.KeyValue().Get(ctx, "busy")
	if err != nil {
		t.Fatal(err)
	}
	for range 3 { // "our" writes the registration never heard back from
		if _, err := p.KeyValue().Put(ctx, "busy", e.Value()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	select {
	case err := <-lost:
		t.Fatalf("heartbeat reported the key lost: %v", err)
	case <-time.After(2500 * time.Millisecond): // several heartbeats and past the TTL
	}
	noEvent(t, w, 500*time.Millisecond)
}
