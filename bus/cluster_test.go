package bus_test

import (
	"context"
	"log/slog"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/enslavism/enslavism/bus"
	"github.com/enslavism/enslavism/embedded"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestPresenceOnClusterSurvivesNodeLoss runs presence on a 3-node cluster
// with an R3 bucket, kills the node that serves the watcher, and checks that
// no change is lost: a slave that crashes meanwhile is removed, one that
// registers meanwhile is added, one that lives on stays.
func TestPresenceOnClusterSurvivesNodeLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	nodes, err := embedded.StartCluster(ctx, 3, embedded.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, n := range nodes {
			_ = n.Close()
		}
	}()
	urls := make([]string, len(nodes))
	for i, n := range nodes {
		urls[i] = n.ClientURL()
	}
	conn := func(first int) (*nats.Conn, jetstream.JetStream) {
		order := append([]string{urls[first]}, append(append([]string{}, urls[:first]...), urls[first+1:]...)...)
		nc, err := nats.Connect(strings.Join(order, ","), nats.DontRandomize(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		js, _ := jetstream.New(nc)
		return nc, js
	}
	open := func(js jetstream.JetStream) *bus.Presence {
		for {
			actx, acancel := context.WithTimeout(ctx, 5*time.Second)
			p, err := bus.OpenPresence(actx, js, bus.PresenceConfig{Replicas: 3})
			acancel()
			if err == nil {
				return p
			}
			if ctx.Err() != nil {
				t.Fatal(err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	_, gwJS := conn(0)
	gw := open(gwJS)
	w, err := gw.Watch(ctx, bus.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	_, aliveJS := conn(2)
	alive, err := open(aliveJS).Register(ctx, bus.SlaveInfo{ID: "alive"}, bus.RegisterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = alive.Deregister(context.Background()) }()
	doomedNC, doomedJS := conn(2)
	doomed, err := open(doomedJS).Register(ctx, bus.SlaveInfo{ID: "doomed"}, bus.RegisterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer doomed.Stop()

	state := map[string]string{}
	for len(state) < 2 {
		drain(t, w, state, 500*time.Millisecond)
		if ctx.Err() != nil {
			t.Fatalf("state %v before the fault", state)
		}
	}

	// Kill the node serving the watcher, then crash a slave and start another.
	if err := nodes[0].Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	doomedNC.Close()
	_, lateJS := conn(1)
	var late *bus.Registration
	for late == nil {
		actx, acancel := context.WithTimeout(ctx, 5*time.Second)
		late, err = open(lateJS).Register(actx, bus.SlaveInfo{ID: "late"}, bus.RegisterOptions{})
		acancel()
		if err != nil && ctx.Err() != nil {
			t.Fatal(err)
		}
	}
	defer func() { _ = late.Deregister(context.Background()) }()

	want := map[string]string{"alive": "null", "late": "null"}
	start := time.Now()
	for !maps.Equal(state, want) {
		drain(t, w, state, 300*time.Millisecond)
		if time.Since(start) > 30*time.Second {
			t.Fatalf("watcher state %v, want %v", state, want)
		}
	}
	t.Logf("watcher exact again %v after the node loss", time.Since(start).Round(time.Millisecond))
}
