package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/pion/webrtc/v4"

	"github.com/enslavism/enslavism/embedded"
	"github.com/enslavism/enslavism/gateway"
	"github.com/enslavism/enslavism/internal/directsignal"
	"github.com/enslavism/enslavism/slave"
)

// env is what every scenario measures against: an embedded NATS server
// over TCP, a gateway, an echo slave, and the direct signaling baseline.
type env struct {
	log        *slog.Logger
	ns         *embedded.Server
	gwNC       *nats.Conn
	slaveNC    *nats.Conn
	gw         *gateway.Gateway
	echo       *slave.Slave
	gwURL      string // ws://…/enslavism/clients
	directURL  string
	gwAddr     string // host:port of the gateway's HTTP server
	directAddr string
	servers    []*http.Server
}

// echoHandler echoes every message on every channel.
func echoHandler(ctx context.Context, c *slave.Client) {
	c.OnDataChannel(func(dc *webrtc.DataChannel) {
		dc.OnMessage(func(m webrtc.DataChannelMessage) {
			if m.IsString {
				_ = dc.SendText(string(m.Data))
			} else {
				_ = dc.Send(m.Data)
			}
		})
	})
	<-ctx.Done()
}

func newEnv(ctx context.Context, log *slog.Logger) (e *env, err error) {
	e = &env{log: log}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	if e.ns, err = embedded.Start(ctx, embedded.Config{Logger: log}); err != nil {
		return e, err
	}
	// The gateway on an in-process connection, as in the all-in-one binary;
	// the slave over TCP, as a slave in its own process.
	if e.gwNC, err = e.ns.Connect(); err != nil {
		return e, err
	}
	if e.slaveNC, err = nats.Connect(e.ns.ClientURL()); err != nil {
		return e, err
	}
	if e.gw, err = gateway.New(ctx, e.gwNC, gateway.Config{Logger: log, OffersPerSecond: -1, MessagesPerSecond: -1, MaxPendingSessions: -1}); err != nil {
		return e, err
	}
	if e.echo, err = slave.Start(ctx, e.slaveNC, slave.Config{
		ID:      "echo",
		Handler: slave.HandlerFunc(echoHandler),
		ICE:     slave.ICEConfig{Loopback: true},
		Logger:  log,
	}); err != nil {
		return e, err
	}
	mux := http.NewServeMux()
	mux.Handle("/enslavism/", e.gw)
	mux.HandleFunc("/bench.html", servePage)
	mux.HandleFunc("/bench-original.html", serveOriginalPage)
	if e.gwAddr, err = e.serve(mux); err != nil {
		return e, err
	}
	dmux := http.NewServeMux()
	dmux.Handle("/enslavism/clients", directsignal.Handler(directsignal.API()))
	dmux.HandleFunc("/enslavism/client.js", serveLibrary)
	dmux.HandleFunc("/bench.html", servePage)
	if e.directAddr, err = e.serve(dmux); err != nil {
		return e, err
	}
	e.gwURL = "ws://" + e.gwAddr + "/enslavism/clients"
	e.directURL = "ws://" + e.directAddr + "/enslavism/clients"
	return e, nil
}

// serve serves h on 127.0.0.1 and returns its address.
func (e *env) serve(h http.Handler) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	e.servers = append(e.servers, srv)
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			e.log.Error("serve", "err", err)
		}
	}()
	return ln.Addr().String(), nil
}

func (e *env) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if e.gw != nil {
		_ = e.gw.Shutdown(ctx)
	}
	for _, s := range e.servers {
		_ = s.Shutdown(ctx)
	}
	if e.echo != nil {
		_ = e.echo.Close()
	}
	for _, nc := range []*nats.Conn{e.gwNC, e.slaveNC} {
		if nc != nil {
			nc.Close()
		}
	}
	if e.ns != nil {
		_ = e.ns.Shutdown(ctx)
	}
}
