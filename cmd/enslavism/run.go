package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/enslavism/enslavism/bus"
	"github.com/enslavism/enslavism/embedded"
	"github.com/enslavism/enslavism/gateway"
	"github.com/enslavism/enslavism/slave"
	"github.com/enslavism/enslavism/web"
	"github.com/nats-io/nats.go"
	"github.com/pion/webrtc/v4"
)

// app is a running binary: what run started, in the order it stops them.
type app struct {
	opts    *options
	log     *slog.Logger
	nats    *embedded.Server // nil with -nats
	natsURL string           // what other processes connect to
	nc      *nats.Conn       // the gateway's connection
	gw      *gateway.Gateway
	slaves  []*slave.Slave
	slaveNC []*nats.Conn
	http    *http.Server
	ln      net.Listener
	metrics *metrics
	stopBg  context.CancelFunc
	bg      sync.WaitGroup
}

// run starts everything, prints where it listens, serves until ctx ends, then
// shuts down gracefully.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	o, err := parseOptions(args, getenv, stderr)
	if err != nil {
		return err
	}
	a, err := start(ctx, o, stderr)
	if err != nil {
		return err
	}
	a.banner(stdout)
	serveErr := make(chan error, 1)
	go func() { serveErr <- a.http.Serve(a.ln) }()
	select {
	case <-ctx.Done():
		a.log.Info("shutting down", "timeout", o.drain)
	case err = <-serveErr:
		a.log.Error("HTTP server failed", "err", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), o.drain)
	defer cancel()
	if serr := a.shutdown(sctx); err == nil {
		err = serr
	}
	return err
}

// start brings every part up; on failure what was started is stopped.
func start(ctx context.Context, o *options, stderr io.Writer) (a *app, err error) {
	var h slog.Handler = slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: o.logLevel})
	if o.logJSON {
		h = slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: o.logLevel})
	}
	a = &app{opts: o, log: slog.New(h)}
	defer func() {
		if err != nil {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = a.shutdown(sctx)
			a = nil
		}
	}()
	subjects := bus.Subjects{Prefix: o.prefix}

	// Listen first: a busy HTTP port is the most common mistake.
	a.ln, err = net.Listen("tcp", o.addr)
	if err != nil {
		return a, fmt.Errorf("cannot listen on %s: %w", o.addr, unwrapSyscall(err))
	}

	if err := a.startNATS(ctx, subjects); err != nil {
		return a, err
	}

	gwCfg := gateway.Config{
		ID:             o.gatewayID,
		Region:         o.region,
		Subjects:       subjects,
		Presence:       bus.PresenceConfig{Subjects: subjects, TTL: o.presenceTTL, Replicas: o.replicas, FileStorage: o.store != ""},
		ICEServers:     o.iceServers,
		AllowedOrigins: o.origins,
		OfferTimeout:   o.offerTimeout,
		MaxConnections: o.maxConns,
		Logger:         a.log,
	}
	a.metrics = newMetrics(&gwCfg)
	a.gw, err = gateway.New(ctx, a.nc, gwCfg)
	if err != nil {
		return a, fmt.Errorf("gateway: %w", err)
	}
	a.metrics.register(a.gw)

	bgCtx, stopBg := context.WithCancel(context.Background())
	a.stopBg = stopBg
	for i := range o.demo {
		if err := a.startDemoSlave(ctx, bgCtx, i, subjects); err != nil {
			return a, fmt.Errorf("demo slave %d: %w", i, err)
		}
	}

	mux := http.NewServeMux()
	mux.Handle("/enslavism/", a.gw)
	mux.HandleFunc("GET /healthz", a.healthz)
	mux.Handle("GET /metrics", a.metrics.handler())
	if o.static != "" {
		mux.Handle("/", http.FileServer(http.Dir(o.static)))
	} else {
		mux.Handle("/", demoPage())
	}
	a.http = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelDebug),
	}
	return a, nil
}

// startNATS starts the embedded server or connects to -nats.
func (a *app) startNATS(ctx context.Context, subjects bus.Subjects) error {
	o := a.opts
	natsOpts := []nats.Option{
		nats.Name("enslavism-gateway"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(100*time.Millisecond, time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				a.log.Warn("NATS disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { a.log.Info("NATS reconnected", "server", nc.ConnectedUrlRedacted()) }),
	}
	if o.natsURL != "" {
		if o.natsCreds != "" {
			natsOpts = append(natsOpts, nats.UserCredentials(o.natsCreds))
		}
		nc, err := nats.Connect(o.natsURL, append(natsOpts, nats.Timeout(5*time.Second))...)
		if err != nil {
			return fmt.Errorf("cannot connect to NATS at %s: %w", o.natsURL, err)
		}
		a.nc, a.natsURL = nc, o.natsURL
		return nil
	}
	host, port, _ := splitHostPort(o.natsAddr)
	cfg := embedded.Config{
		Host:        host,
		Port:        port,
		StoreDir:    o.store,
		MonitorPort: o.natsMonitor,
		ServerName:  "enslavism",
		Logger:      a.log.With("component", "nats"),
	}
	if cfg.Port == 0 {
		cfg.Port = -1
	}
	for id, pw := range o.slaveUsers {
		perms, err := subjects.SlavePermissions(id)
		if err != nil {
			return err
		}
		cfg.Users = append(cfg.Users, embedded.User{Name: id, Password: pw, Permissions: new(embedded.Permissions(perms))})
	}
	if tok := o.slaveToken; tok != "" {
		cfg.Auth = func(c embedded.Credentials) error {
			if c.Token != tok {
				return errors.New("wrong or missing token")
			}
			return nil
		}
	}
	srv, err := embedded.Start(ctx, cfg)
	if err != nil {
		if errors.Is(err, embedded.ErrListen) {
			return fmt.Errorf("cannot start the embedded NATS server on %s: the port is busy (another enslavism or nats-server? use -nats-addr or -nats)", o.natsAddr)
		}
		return fmt.Errorf("embedded NATS server: %w", err)
	}
	a.nats, a.natsURL = srv, srv.ClientURL()
	a.nc, err = srv.Connect(natsOpts...)
	if err != nil {
		return fmt.Errorf("connect to the embedded NATS server: %w", err)
	}
	return nil
}

// startDemoSlave starts one demo room on its own NATS connection.
func (a *app) startDemoSlave(ctx, bgCtx context.Context, i int, subjects bus.Subjects) error {
	var nc *nats.Conn
	var err error
	opts := []nats.Option{nats.Name("enslavism-demo-slave"), nats.MaxReconnects(-1), nats.ReconnectWait(250 * time.Millisecond)}
	if a.nats != nil {
		nc, err = a.nats.Connect(opts...)
	} else {
		if a.opts.natsCreds != "" {
			opts = append(opts, nats.UserCredentials(a.opts.natsCreds))
		}
		nc, err = nats.Connect(a.natsURL, opts...)
	}
	if err != nil {
		return err
	}
	a.slaveNC = append(a.slaveNC, nc)
	name := demoName(i)
	r := newRoom(name, a.log)
	s, err := slave.Start(ctx, nc, slave.Config{
		ID:         fmt.Sprintf("demo-%d", i+1),
		UserData:   demoUserData{Name: name, Capacity: demoCapacity, Demo: true},
		Subjects:   subjects,
		Presence:   bus.PresenceConfig{TTL: a.opts.presenceTTL, Replicas: a.opts.replicas, FileStorage: a.opts.store != ""},
		MaxClients: demoCapacity,
		Region:     a.opts.region,
		Handler:    r,
		OnClientsChange: func(s *slave.Slave, n int) {
			uctx, cancel := context.WithTimeout(bgCtx, 5*time.Second)
			defer cancel()
			_ = s.SetUserData(uctx, demoUserData{Name: name, Players: n, Capacity: demoCapacity, Demo: true})
		},
		ICE: slave.ICEConfig{
			// The demo serves browsers on this machine (loopback) and on
			// the LAN (IPv4 interfaces).
			NetworkTypes: []webrtc.NetworkType{webrtc.NetworkTypeUDP4},
		},
		ConfigureSettingEngine: func(se *webrtc.SettingEngine) { se.SetIncludeLoopbackCandidate(true) },
		Logger:                 a.log,
	})
	if err != nil {
		return err
	}
	a.slaves = append(a.slaves, s)
	a.bg.Add(1)
	go func() {
		defer a.bg.Done()
		r.run(bgCtx)
	}()
	return nil
}

// banner prints what listens where.
func (a *app) banner(w io.Writer) {
	o := a.opts
	httpURL := "http://" + dialableAddr(a.ln.Addr())
	fmt.Fprintf(w, "Enslavism is running.\n\n")
	if a.nats != nil {
		store := "in memory"
		if o.store != "" {
			store = "in " + o.store
		}
		fmt.Fprintf(w, "  NATS      embedded server at %s (JetStream %s)\n", a.natsURL, store)
		if u := a.nats.MonitorURL(); u != "" {
			fmt.Fprintf(w, "            monitoring at %s\n", u)
		}
	} else {
		fmt.Fprintf(w, "  NATS      %s\n", a.nc.ConnectedUrlRedacted())
	}
	fmt.Fprintf(w, "  gateway   %s/enslavism/clients (id %s), library at %s/enslavism/client.js\n", strings.Replace(httpURL, "http", "ws", 1), a.gw.ID(), httpURL)
	fmt.Fprintf(w, "  health    %s/healthz   metrics %s/metrics\n", httpURL, httpURL)
	if len(a.slaves) > 0 {
		fmt.Fprintf(w, "  demo      %d slaves in this process\n", len(a.slaves))
	}
	fmt.Fprintf(w, "\nOpen %s/ in a browser.\n", httpURL)
	fmt.Fprintf(w, "Watch the bus:    nats sub '%s.>' -s %s\n", o.prefix, a.natsURL)
	fmt.Fprintf(w, "                  nats kv watch %s -s %s\n", bus.Subjects{Prefix: o.prefix}.Bucket(), a.natsURL)
	fmt.Fprintf(w, "Add a slave:      go run ./examples/echo -nats %s\n\n", a.natsURL)
}

// healthz answers 200 when NATS is connected and the presence watch is
// alive, 503 otherwise, with a small JSON body.
func (a *app) healthz(w http.ResponseWriter, r *http.Request) {
	st := a.gw.Stats()
	natsOK := a.nc.IsConnected()
	watchErr := a.gw.Healthy()
	status, code := "ok", http.StatusOK
	if !natsOK || watchErr != nil {
		status, code = "unavailable", http.StatusServiceUnavailable
	}
	watch := "ok"
	if watchErr != nil {
		watch = watchErr.Error()
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	fmt.Fprintf(w, `{"status":%q,"nats":%t,"watch":%q,"browsers":%d,"slaves":%d}`+"\n", status, natsOK, watch, st.Connections, st.Slaves)
}

// shutdown stops everything that was started, in order: browsers are told
// to reconnect elsewhere, demo slaves deregister, then NATS goes.
func (a *app) shutdown(ctx context.Context) error {
	var errs []error
	if a.gw != nil {
		errs = append(errs, a.gw.Shutdown(ctx))
	}
	if a.http != nil {
		errs = append(errs, a.http.Shutdown(ctx))
	} else if a.ln != nil {
		_ = a.ln.Close()
	}
	var wg sync.WaitGroup
	slaveErrs := make([]error, len(a.slaves))
	for i, s := range a.slaves {
		wg.Go(func() { slaveErrs[i] = s.Shutdown(ctx) })
	}
	wg.Wait()
	errs = append(errs, slaveErrs...)
	if a.stopBg != nil {
		a.stopBg()
	}
	a.bg.Wait()
	for _, nc := range a.slaveNC {
		nc.Close()
	}
	if a.nc != nil {
		if err := a.nc.Drain(); err != nil {
			a.nc.Close()
		}
	}
	if a.nats != nil {
		errs = append(errs, a.nats.Shutdown(ctx))
	}
	return errors.Join(errs...)
}

// dialableAddr turns a listener address into host:port a browser can open.
func dialableAddr(addr net.Addr) string {
	t, ok := addr.(*net.TCPAddr)
	if !ok {
		return addr.String()
	}
	if t.IP == nil || t.IP.IsUnspecified() {
		return net.JoinHostPort("localhost", fmt.Sprint(t.Port))
	}
	return t.String()
}

// unwrapSyscall shortens "listen tcp :8081: bind: address already in use"
// to its last part.
func unwrapSyscall(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}

// demoPage serves the demo page of package web.
func demoPage() http.Handler { return http.FileServerFS(web.Demo()) }
