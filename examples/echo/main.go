// Command echo is an Enslavism slave in its own process: it echoes every
// message on every DataChannel a browser opens, and publishes its name and
// its number of connected clients as userData.
//
//	go run ./cmd/enslavism                                # gateway + NATS on 127.0.0.1:4222
//	go run ./examples/echo -nats nats://127.0.0.1:4222 -name "echo 1" -loopback
//
// It stops gracefully on SIGINT or SIGTERM: browsers see it leave at once,
// connected clients are closed, and it exits with status 0.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/pion/webrtc/v4"

	"github.com/enslavism/enslavism/slave"
)

// shutdownTimeout is how long connected clients get to finish on SIGTERM.
const shutdownTimeout = 5 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "echo:", err)
		}
		os.Exit(1)
	}
}

// userData is what browsers see of this slave.
type userData struct {
	Name    string `json:"name"`
	Clients int    `json:"clients"`
}

// run runs the slave until ctx is done, then shuts it down.
func run(ctx context.Context, args []string, logOut io.Writer) error {
	fs := flag.NewFlagSet("echo", flag.ContinueOnError)
	fs.SetOutput(logOut)
	natsURL := fs.String("nats", "nats://127.0.0.1:4222", "URL of the NATS server (the all-in-one binary's embedded one by default)")
	name := fs.String("name", "echo", "name shown to browsers in userData")
	id := fs.String("id", "", "slave ID (letters, digits, _ and -; default: random)")
	maxClients := fs.Int("max-clients", 0, "most clients at once; more are rejected with \"full\" (0: no limit)")
	udpPort := fs.Int("udp-port", 0, "serve every peer on this one UDP port (0: an ephemeral port per peer)")
	natIPs := fs.String("nat-ip", "", "public IP(s) to advertise instead of the local ones, comma-separated (1:1 NAT, containers)")
	stun := fs.String("stun", "", "STUN server URL(s), comma-separated, e.g. stun:stun.l.google.com:19302")
	loopback := fs.Bool("loopback", false, "advertise 127.0.0.1 only: for a browser on this machine")
	verbose := fs.Bool("v", false, "debug logs (pion's included)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: level}))

	cfg := slave.Config{
		ID:         *id,
		UserData:   userData{Name: *name},
		MaxClients: *maxClients,
		Logger:     log,
		Handler:    slave.HandlerFunc(serveClient(log)),
		OnClientsChange: func(s *slave.Slave, n int) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if err := s.SetUserData(ctx, userData{Name: *name, Clients: n}); err != nil {
				log.Warn("cannot publish the client count", "err", err)
			}
		},
		ICE: slave.ICEConfig{
			UDPMuxPort: *udpPort,
			Loopback:   *loopback,
		},
	}
	for _, ip := range splitList(*natIPs) {
		if net.ParseIP(ip) == nil {
			return fmt.Errorf("-nat-ip: %q is not an IP address", ip)
		}
		cfg.ICE.NAT1To1IPs = append(cfg.ICE.NAT1To1IPs, ip)
	}
	if urls := splitList(*stun); len(urls) > 0 {
		cfg.ICE.Servers = []webrtc.ICEServer{{URLs: urls}}
	}

	nc, err := nats.Connect(*natsURL,
		nats.Name("enslavism-echo "+*name),
		nats.MaxReconnects(-1), // a slave outlives NATS restarts
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil: our own Close
				log.Warn("NATS disconnected; reconnecting", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("NATS reconnected", "url", nc.ConnectedUrl()) }),
	)
	if err != nil {
		return fmt.Errorf("connect to NATS at %s: %w", *natsURL, err)
	}
	defer nc.Close()

	s, err := slave.Start(ctx, nc, cfg)
	if err != nil {
		return err
	}
	log.Info("echo slave running", "id", s.ID(), "name", *name, "nats", nc.ConnectedUrl())

	<-ctx.Done()
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := s.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("stopped")
	return nil
}

// serveClient echoes every message of every channel of a client, text as
// text and binary as binary, until the browser goes away or the slave stops.
func serveClient(log *slog.Logger) func(ctx context.Context, c *slave.Client) {
	return func(ctx context.Context, c *slave.Client) {
		log := log.With("session", c.Session())
		log.Info("client connected", "identity", string(c.Identity()))
		c.OnDataChannel(func(dc *webrtc.DataChannel) {
			log.Info("channel opened", "label", dc.Label(), "ordered", dc.Ordered())
			dc.OnMessage(func(m webrtc.DataChannelMessage) {
				var err error
				if m.IsString {
					err = dc.SendText(string(m.Data))
				} else {
					err = dc.Send(m.Data)
				}
				if err != nil {
					log.Debug("echo failed", "label", dc.Label(), "err", err)
				}
			})
		})
		<-ctx.Done()
		log.Info("client gone", "cause", context.Cause(ctx))
	}
}

func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}
