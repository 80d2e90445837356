package slave_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/pion/webrtc/v4"

	"github.com/enslavism/enslavism/bus"
	"github.com/enslavism/enslavism/embedded"
	"github.com/enslavism/enslavism/slave"
)

// A slave on an in-process NATS server: it is listed in the presence bucket
// (what every gateway watches) while it runs, and gone at once after
// Shutdown.
func Example() {
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := embedded.Start(ctx, embedded.Config{Logger: quiet})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	nc, err := srv.Connect()
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()

	s, err := slave.Start(ctx, nc, slave.Config{
		ID:       "echo-1",
		UserData: map[string]any{"name": "echo", "clients": 0},
		Logger:   quiet,
		Handler: slave.HandlerFunc(func(ctx context.Context, c *slave.Client) {
			c.OnDataChannel(func(dc *webrtc.DataChannel) {
				dc.OnMessage(func(m webrtc.DataChannelMessage) { _ = dc.Send(m.Data) })
			})
			<-ctx.Done()
		}),
	})
	if err != nil {
		log.Fatal(err)
	}

	js, _ := jetstream.New(nc)
	presence, err := bus.OpenPresence(ctx, js, bus.PresenceConfig{})
	if err != nil {
		log.Fatal(err)
	}
	list := func() {
		slaves, _ := presence.List(ctx)
		fmt.Println(len(slaves), "slave(s)")
		for _, si := range slaves {
			fmt.Println(si.ID, string(si.UserData))
		}
	}
	list()

	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.Shutdown(sctx); err != nil {
		log.Fatal(err)
	}
	list()
	// Output:
	// 1 slave(s)
	// echo-1 {"clients":0,"name":"echo"}
	// 0 slave(s)
}

// A handler that greets each client on every channel it opens and echoes
// its messages, and a player count published as userData.
func ExampleHandlerFunc() {
	nc, err := nats.Connect(nats.DefaultURL) // the caller owns the connection
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	type info struct {
		Name    string `json:"name"`
		Players int    `json:"players"`
	}
	s, err := slave.Start(context.Background(), nc, slave.Config{
		UserData: info{Name: "room 1"},
		Handler: slave.HandlerFunc(func(ctx context.Context, c *slave.Client) {
			log.Printf("client %s connected, identity %s", c.Session(), c.Identity())
			c.OnDataChannel(func(dc *webrtc.DataChannel) {
				// Set handlers here: nothing is read from dc before this
				// function returns.
				dc.OnOpen(func() { _ = dc.SendText("welcome to " + dc.Label()) })
				dc.OnMessage(func(m webrtc.DataChannelMessage) { _ = dc.Send(m.Data) })
			})
			<-ctx.Done() // the peer went away, or the slave is closing
			log.Printf("client %s gone: %v", c.Session(), context.Cause(ctx))
		}),
		OnClientsChange: func(s *slave.Slave, n int) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_ = s.SetUserData(ctx, info{Name: "room 1", Players: n})
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
}

// Accepting only some browsers, by the identity the gateway's client-auth
// hook gave them, and at most 16 at a time.
func ExampleReject() {
	allowed := func(identity []byte) bool { return len(identity) > 0 }
	cfg := slave.Config{
		MaxClients: 16, // then offers are rejected with "full"
		Accept: func(ctx context.Context, o *slave.Offer) error {
			if !allowed(o.Identity) {
				return slave.Reject("sign in first")
			}
			return nil
		},
	}
	_ = cfg
}

// The ICE configuration of a slave in a container whose UDP port 3478 is
// published on the host's public IP 203.0.113.10: every peer on that one
// port, and browsers told only the public address.
func ExampleICEConfig() {
	cfg := slave.Config{
		ICE: slave.ICEConfig{
			UDPMuxPort: 3478,
			NAT1To1IPs: []string{"203.0.113.10"},
			IPFilter:   func(ip net.IP) bool { return ip.To4() != nil && !ip.IsLoopback() },
			Servers:    []webrtc.ICEServer{{URLs: []string{"turn:turn.example.org:3478"}, Username: "u", Credential: "p"}},
		},
	}
	_ = cfg
}
