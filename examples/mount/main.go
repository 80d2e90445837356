// Command mount shows the gateway mounted on an existing http.ServeMux, next
// to the application's own pages, with a cookie-based client authentication
// whose identity reaches the slave with every offer.
//
//	go run ./examples/mount
//
// then open http://localhost:8082/, pick a name, and join the slave: it
// greets you by the name the gateway authenticated, not by anything the
// page claims.
package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"regexp"
	"syscall"
	"time"

	"github.com/enslavism/enslavism/embedded"
	"github.com/enslavism/enslavism/gateway"
	"github.com/enslavism/enslavism/slave"
	"github.com/pion/webrtc/v4"
)

//go:embed index.html
var indexHTML []byte

// identity is what the gateway's ClientAuth returns and the slave receives.
type identity struct {
	Player string `json:"player"`
}

var validName = regexp.MustCompile(`^[A-Za-z0-9 _-]{1,20}$`)

// clientAuth admits browsers that carry a "player" cookie set by /login.
// A real application would check a signed session cookie here.
func clientAuth(r *http.Request) (any, error) {
	c, err := r.Cookie("player")
	if err != nil || !validName.MatchString(c.Value) {
		return nil, gateway.Reject(http.StatusUnauthorized, "log in first")
	}
	return identity{Player: c.Value}, nil
}

// greeter is the slave's business logic: it greets each player by the
// identity the gateway passed along, and echoes what they say.
func greeter(ctx context.Context, c *slave.Client) {
	var who identity
	_ = json.Unmarshal(c.Identity(), &who)
	c.OnDataChannel(func(dc *webrtc.DataChannel) {
		dc.OnOpen(func() {
			_ = dc.SendText(fmt.Sprintf("hello %s, the slave knows you from the gateway's auth", who.Player))
		})
		dc.OnMessage(func(m webrtc.DataChannelMessage) { _ = dc.SendText(who.Player + " said: " + string(m.Data)) })
	})
	<-ctx.Done()
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8082", "HTTP listen address")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *addr, log); err != nil {
		log.Error("mount example failed", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, addr string, log *slog.Logger) error {
	// One process: NATS in memory, without a listener.
	ns, err := embedded.Start(ctx, embedded.Config{DontListen: true, Logger: log})
	if err != nil {
		return err
	}
	defer ns.Close()
	gwNC, err := ns.Connect()
	if err != nil {
		return err
	}
	defer gwNC.Close()
	slaveNC, err := ns.Connect()
	if err != nil {
		return err
	}
	defer slaveNC.Close()

	gw, err := gateway.New(ctx, gwNC, gateway.Config{ClientAuth: clientAuth, Logger: log})
	if err != nil {
		return err
	}
	s, err := slave.Start(ctx, slaveNC, slave.Config{
		ID:       "greeter",
		UserData: map[string]string{"name": "Greeter"},
		Accept: func(_ context.Context, o *slave.Offer) error {
			var who identity
			if json.Unmarshal(o.Identity, &who) != nil || who.Player == "" {
				return slave.Reject("who are you?")
			}
			if who.Player == "mallory" {
				return slave.Reject("mallory is banned from this server")
			}
			return nil
		},
		Handler:                slave.HandlerFunc(greeter),
		ConfigureSettingEngine: func(se *webrtc.SettingEngine) { se.SetIncludeLoopbackCandidate(true) },
		ICE:                    slave.ICEConfig{NetworkTypes: []webrtc.NetworkType{webrtc.NetworkTypeUDP4}},
		Logger:                 log,
	})
	if err != nil {
		return err
	}

	// The application's own mux: its pages, its login, and the gateway.
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(indexHTML)
	})
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		name := r.FormValue("name")
		if !validName.MatchString(name) {
			http.Error(w, "a name of 1 to 20 letters, digits, spaces, _ or -", http.StatusBadRequest)
			return
		}
		http.SetCookie(w, &http.Cookie{Name: "player", Value: name, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
		http.Redirect(w, r, "/", http.StatusSeeOther)
	})
	mux.Handle("/enslavism/", gw)

	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Info("open the page", "url", "http://"+addr+"/")
	select {
	case <-ctx.Done():
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			return err
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = gw.Shutdown(sctx)
	_ = srv.Shutdown(sctx)
	return s.Shutdown(sctx)
}
