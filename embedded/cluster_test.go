package embedded

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestCluster starts three nodes, creates an R3 bucket through one node and
// reads it through another after the first is gone.
func TestCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	nodes, err := StartCluster(ctx, 3, Config{Logger: quietLogger(), Cluster: &Cluster{Name: "test"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range nodes {
		defer s.Close()
	}
	var nc *nats.Conn
	if u := nodes[0].ClusterURL(); u == "" {
		t.Fatal("no cluster URL")
	}
	nc, err = nats.Connect(nodes[0].ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	var kv jetstream.KeyValue
	for { // the JetStream meta leader is elected shortly after start
		actx, acancel := context.WithTimeout(ctx, 5*time.Second)
		kv, err = js.CreateKeyValue(actx, jetstream.KeyValueConfig{Bucket: "b", Replicas: 3})
		acancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, err := kv.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	if err := nodes[0].Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	nc2, err := nats.Connect(nodes[2].ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc2.Close()
	js2, _ := jetstream.New(nc2)
	for {
		actx, acancel := context.WithTimeout(ctx, 5*time.Second)
		kv2, err := js2.KeyValue(actx, "b")
		if err == nil {
			var e jetstream.KeyValueEntry
			e, err = kv2.Get(actx, "k")
			if err == nil {
				if string(e.Value()) != "v" {
					t.Fatalf("got %q", e.Value())
				}
				acancel()
				return
			}
		}
		acancel()
		if ctx.Err() != nil {
			t.Fatalf("R3 bucket unreadable after losing a node: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestClusterConfigInvalid(t *testing.T) {
	for _, c := range []Config{
		{Cluster: &Cluster{}},
		{Cluster: &Cluster{Name: "x", Port: 70000}},
		{Cluster: &Cluster{Name: "x"}, DontListen: true},
		{Cluster: &Cluster{Name: "x", Routes: []string{"::bad"}}},
	} {
		if s, err := Start(context.Background(), c); err == nil {
			s.Close()
			t.Errorf("Start(%+v) accepted", *c.Cluster)
		}
	}
}
