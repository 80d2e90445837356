package bus_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/enslavism/enslavism/bus"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func ExampleSubjects() {
	var s bus.Subjects // zero value: prefix "enslavism"
	offer, _ := s.SlaveOffer("game-1")
	ice, _ := s.GatewayICE("gw-1", "k42")
	fmt.Println(offer)
	fmt.Println(ice)
	fmt.Println(s.Bucket())
	if _, err := s.SlaveOffer("a.>"); errors.Is(err, bus.ErrInvalidID) {
		fmt.Println("refused:", err)
	}
	// Output:
	// enslavism.slave.game-1.offer
	// enslavism.gateway.gw-1.session.k42.ice
	// enslavism-slaves
	// refused: slave: bus: invalid id: "a.>" has a character other than A-Z a-z 0-9 _ -
}

func ExamplePresence_Watch() {
	ns, _ := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: tempDir(), NoSigs: true, NoLog: true})
	go ns.Start()
	ns.ReadyForConnections(10 * time.Second)
	defer ns.WaitForShutdown()
	defer ns.Shutdown()
	nc, _ := nats.Connect(ns.ClientURL())
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := context.Background()

	p, err := bus.OpenPresence(ctx, js, bus.PresenceConfig{})
	if err != nil {
		fmt.Println(err)
		return
	}
	w, _ := p.Watch(ctx, bus.WatchOptions{})
	defer w.Stop()

	reg, _ := p.Register(ctx, bus.SlaveInfo{ID: "room-1", UserData: json.RawMessage(`{"players":0}`)}, bus.RegisterOptions{})
	_ = reg.SetUserData(ctx, json.RawMessage(`{"players":1}`))
	_ = reg.Deregister(ctx)
	for range 3 {
		ev := <-w.Events()
		fmt.Println(ev.Kind, ev.Slave.ID, string(ev.Slave.UserData))
	}
	// Output:
	// added room-1 {"players":0}
	// updated room-1 {"players":1}
	// removed room-1 {"players":1}
}
