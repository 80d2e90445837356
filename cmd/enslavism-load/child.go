package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/enslavism/enslavism/bus"
	"github.com/enslavism/enslavism/embedded"
	"github.com/enslavism/enslavism/gateway"
)

// childArg is the first argument of the -self child process.
const childArg = "-internal-child"

// runChild runs an embedded NATS server, a gateway on 127.0.0.1 and n
// presence-only slaves, prints "READY <ws URL> <NATS URL>" and runs until
// ctx is done.
func runChild(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("child", flag.ContinueOnError)
	n := fs.Int("slaves", 500, "presence-only slaves")
	prefix := fs.String("prefix", "", "subject prefix")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if _, err := raiseNoFile(); err != nil {
		return err
	}
	quiet := slog.New(slog.DiscardHandler)
	srv, err := embedded.Start(ctx, embedded.Config{Logger: quiet})
	if err != nil {
		return err
	}
	defer srv.Close()
	nc, err := srv.Connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	subj, err := bus.NewSubjects(*prefix)
	if err != nil {
		return err
	}
	g, err := gateway.New(ctx, nc, gateway.Config{Subjects: subj, Logger: quiet})
	if err != nil {
		return err
	}
	defer g.Close()

	// The slaves: presence only, on their own connection.
	snc, err := srv.Connect()
	if err != nil {
		return err
	}
	defer snc.Close()
	js, err := jetstream.New(snc)
	if err != nil {
		return err
	}
	pres, err := bus.OpenPresence(ctx, js, bus.PresenceConfig{Subjects: subj, Logger: quiet})
	if err != nil {
		return err
	}
	regs := make([]*bus.Registration, 0, *n)
	defer func() {
		for _, r := range regs {
			r.Stop()
		}
	}()
	for i := range *n {
		ud, _ := json.Marshal(map[string]any{"name": fmt.Sprintf("room %d", i), "players": i % 17, "map": "de_dust2"})
		r, err := pres.Register(ctx, bus.SlaveInfo{ID: fmt.Sprintf("load-%05d", i), UserData: ud}, bus.RegisterOptions{})
		if err != nil {
			return fmt.Errorf("register slave %d: %w", i, err)
		}
		regs = append(regs, r)
	}
	deadline := time.Now().Add(30 * time.Second)
	for g.Stats().Slaves < *n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: g, ReadHeaderTimeout: 30 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	defer hs.Close()
	fmt.Fprintf(stdout, "READY ws://%s/enslavism/clients %s\n", ln.Addr(), srv.ClientURL())
	<-ctx.Done()
	return nil
}
