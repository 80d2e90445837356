package embedded_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/enslavism/enslavism/embedded"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func ExampleStart() {
	ctx := context.Background()
	srv, err := embedded.Start(ctx, embedded.Config{
		Logger: slog.New(slog.DiscardHandler), // nats-server is chatty
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()

	nc, err := srv.Connect() // in-process: no socket
	if err != nil {
		fmt.Println(err)
		return
	}
	defer nc.Close()

	js, err := jetstream.New(nc)
	if err != nil {
		fmt.Println(err)
		return
	}
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "example"})
	if err != nil {
		fmt.Println(err)
		return
	}
	if _, err := kv.Put(ctx, "greeting", []byte("hello")); err != nil {
		fmt.Println(err)
		return
	}
	e, err := kv.Get(ctx, "greeting")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%s = %s\n", e.Key(), e.Value())
	fmt.Println("other processes connect to nats://127.0.0.1:<port>:", strings.HasPrefix(srv.ClientURL(), "nats://127.0.0.1:"))
	// Output:
	// greeting = hello
	// other processes connect to nats://127.0.0.1:<port>: true
}

func ExampleAuthFunc() {
	srv, err := embedded.Start(context.Background(), embedded.Config{
		Logger: slog.New(slog.DiscardHandler),
		Auth: func(c embedded.Credentials) error {
			if c.User == "slave1" && c.Password == "secret" {
				return nil
			}
			return errors.New("unknown slave")
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()

	if _, err := nats.Connect(srv.ClientURL(), nats.UserInfo("slave1", "wrong")); errors.Is(err, nats.ErrAuthorization) {
		fmt.Println("wrong password: refused")
	}
	if nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo("slave1", "secret")); err == nil {
		fmt.Println("slave1: connected")
		nc.Close()
	}
	if nc, err := srv.Connect(); err == nil {
		fmt.Println("in-process: connected")
		nc.Close()
	}
	// Output:
	// wrong password: refused
	// slave1: connected
	// in-process: connected
}
