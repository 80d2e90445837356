// Package embedded runs a nats-server with JetStream inside the current
// process.
//
// The all-in-one binary uses it so that a single machine needs no separate
// NATS server, and every test of the project uses it as a real, fast bus:
//
//	srv, err := embedded.Start(ctx, embedded.Config{}) // random port, ephemeral JetStream
//	if err != nil { … }
//	defer srv.Close()
//	nc, err := srv.Connect() // in-process, no socket
//
// Other processes (slaves, the nats CLI) reach it at ClientURL. Auth lets
// the embedding program decide which of them may connect.
package embedded

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

const (
	// defaultStartTimeout bounds Start when ctx has no earlier deadline.
	defaultStartTimeout = 10 * time.Second
	// defaultCloseTimeout bounds Close.
	defaultCloseTimeout = 30 * time.Second
	// readyPoll is how long one ReadyForConnections call waits; above
	// 25 ms nats-server sleeps between checks instead of spinning.
	readyPoll = 50 * time.Millisecond
)

// Config configures Start. The zero value is a server for tests: listening
// on a random port of 127.0.0.1, ephemeral JetStream, no monitoring, no
// authentication, logging to slog.Default().
type Config struct {
	// Host is the interface the client listener (and the monitoring
	// listener) binds to. "" means "127.0.0.1": only this machine can
	// connect. "0.0.0.0" opens the server to the network; set Auth then.
	Host string

	// Port is the client port. 0 or -1 picks a random free port (tests);
	// read it back from ClientURL. The all-in-one binary passes 4222.
	Port int

	// DontListen starts the server with no TCP listener at all: only
	// in-process connections (Connect) reach it, and ClientURL is "".
	// Host and Port are ignored.
	DontListen bool

	// StoreDir is where JetStream keeps its file-backed streams (KV buckets
	// are file-backed by default), surviving restarts. "" makes JetStream
	// ephemeral: memory streams stay in memory, file streams go to a private
	// temporary directory that Shutdown removes.
	StoreDir string

	// MonitorPort is the port of nats-server's HTTP monitoring endpoints
	// (/varz, /connz, /jsz, /healthz …) on Host. 0 turns monitoring off, -1
	// picks a random free port (read it back from MonitorURL). The endpoints
	// are not authenticated: keep Host on loopback when they are on.
	MonitorPort int

	// ServerName is the server's name in logs, monitoring and cluster
	// metadata. "" lets nats-server use its generated ID.
	ServerName string

	// JetStreamMaxMemory caps the memory JetStream may use for memory
	// streams, in bytes. 0 keeps nats-server's default (75% of the
	// machine's memory).
	JetStreamMaxMemory int64

	// Logger receives nats-server's own logs with "component"="nats-server",
	// and this package's logs (refused clients) with "component"="embedded".
	// nil means slog.Default(). Notices are logged at Info, warnings at
	// Warn, errors and fatal errors at Error (a fatal error never exits the
	// process: Start returns it instead).
	Logger *slog.Logger

	// Debug and Trace turn on nats-server's debug and protocol trace lines,
	// both logged at slog.LevelDebug (traces with trace=true). Trace is
	// very verbose: every protocol message of every client.
	Debug, Trace bool

	// Auth, when set, decides which clients may connect (see AuthFunc).
	// nil means no authentication: anyone who reaches the listener may
	// connect. Server.Connect is always allowed.
	Auth AuthFunc

	// Cluster, when set, makes this server one node of a NATS cluster, with
	// JetStream clustered across the nodes (a presence bucket can then have
	// 3 replicas and survive the loss of any one node). nil is a standalone
	// server.
	Cluster *Cluster

	// Users are accounts checked before Auth: a client presenting one of
	// these user names must present its password, and then gets its
	// Permissions (nil: no limits). With Users set and Auth nil, any other
	// client is refused. Server.Connect is always allowed.
	Users []User

	// ConfigureOptions, when set, is applied last to the nats-server
	// options Start built, before the server is created: the escape hatch
	// for what Config does not cover (cluster name and routes, leaf nodes,
	// limits, TLS). Options that change authentication or accounts may
	// lock out Connect or move clients out of the JetStream-enabled global
	// account; Start does not check them.
	ConfigureOptions func(*server.Options)
}

// Cluster configures a node's part in a NATS cluster.
type Cluster struct {
	// Name is the cluster's name, the same on every node. Required.
	Name string
	// Host is the interface the route listener binds to; "" means
	// Config.Host.
	Host string
	// Port is the route port; 0 or -1 picks a random free port (read it back
	// from Server.ClusterURL).
	Port int
	// Routes are the route URLs of other nodes
	// ("nats-route://127.0.0.1:6222"). A node learns the rest of the
	// cluster from any one of them; the first node may have none.
	Routes []string
}

// Server is a running embedded nats-server. Its methods are safe for
// concurrent use.
type Server struct {
	ns         *server.Server
	log        *slog.Logger
	clientURL  string
	monitorURL string
	token      string // internal token for Connect; "" when no Auth
	tmpDir     string // store dir created by Start; "" when Config.StoreDir was set

	mu    sync.Mutex
	fatal error // first fatal error nats-server reported

	closing      atomic.Bool // Shutdown has been called
	shutdownOnce sync.Once
	shutdownDone chan struct{} // closed when the shutdown finished
	shutdownErr  error         // set before shutdownDone is closed
}

// Start starts a nats-server with JetStream as cfg describes and returns
// once it is ready for connections. Start waits at most until ctx is done
// or 10 s have passed, whichever comes first.
//
// On failure nothing is left running and the error wraps ErrInvalidConfig,
// ErrListen (a port already in use: the error names the address, and wraps
// the network error) or ErrStart (with ctx's error when ctx ended first).
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if err := context.Cause(ctx); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStart, err)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	s := &Server{
		log:          logger.With(keyComponent, componentEmbedded),
		shutdownDone: make(chan struct{}),
	}

	opts, err := s.options(cfg)
	if err != nil {
		s.removeTmpDir()
		return nil, err
	}
	clientAddr := net.JoinHostPort(opts.Host, strconv.Itoa(max(opts.Port, 0)))
	monitorAddr := net.JoinHostPort(opts.HTTPHost, strconv.Itoa(max(opts.HTTPPort, 0)))
	dontListen := opts.DontListen

	ns, err := server.NewServer(opts)
	if err != nil {
		s.removeTmpDir()
		return nil, fmt.Errorf("%w: %w", ErrStart, err)
	}
	s.ns = ns
	ns.SetLogger(&serverLogger{
		log:   logger.With(keyComponent, componentServer),
		fatal: s.recordFatal,
	}, cfg.Debug, cfg.Trace)

	ctx, cancel := context.WithTimeout(ctx, defaultStartTimeout)
	defer cancel()
	if err := s.start(ctx); err != nil {
		s.abort()
		return nil, err
	}
	if err := s.fatalErr(); err != nil {
		s.abort()
		return nil, classifyFatal(err, clientAddr, monitorAddr)
	}
	if err := s.waitReady(ctx); err != nil {
		s.abort()
		return nil, err
	}

	if !dontListen {
		if a, ok := ns.Addr().(*net.TCPAddr); ok {
			s.clientURL = (&url.URL{Scheme: "nats", Host: dialable(a)}).String()
		}
	}
	if a := ns.MonitorAddr(); a != nil {
		s.monitorURL = (&url.URL{Scheme: "http", Host: dialable(a)}).String()
	}
	return s, nil
}

func (cfg *Config) validate() error {
	if cfg.Port < -1 || cfg.Port > 65535 {
		return fmt.Errorf("%w: Port %d out of range [-1, 65535]", ErrInvalidConfig, cfg.Port)
	}
	if cfg.MonitorPort < -1 || cfg.MonitorPort > 65535 {
		return fmt.Errorf("%w: MonitorPort %d out of range [-1, 65535]", ErrInvalidConfig, cfg.MonitorPort)
	}
	for i, u := range cfg.Users {
		if u.Name == "" || u.Password == "" {
			return fmt.Errorf("%w: Users[%d] needs a name and a password", ErrInvalidConfig, i)
		}
	}
	if c := cfg.Cluster; c != nil {
		if c.Name == "" {
			return fmt.Errorf("%w: Cluster.Name is empty", ErrInvalidConfig)
		}
		if c.Port < -1 || c.Port > 65535 {
			return fmt.Errorf("%w: Cluster.Port %d out of range [-1, 65535]", ErrInvalidConfig, c.Port)
		}
		if cfg.DontListen {
			return fmt.Errorf("%w: a cluster node needs its listeners (DontListen is set)", ErrInvalidConfig)
		}
	}
	if cfg.JetStreamMaxMemory < 0 {
		return fmt.Errorf("%w: JetStreamMaxMemory %d is negative", ErrInvalidConfig, cfg.JetStreamMaxMemory)
	}
	return nil
}

// options builds nats-server's options from cfg. It may create s.tmpDir.
func (s *Server) options(cfg Config) (*server.Options, error) {
	host := cfg.Host
	if host == "" {
		host = "127.0.0.1"
	}
	port := cfg.Port
	if port == 0 {
		port = server.RANDOM_PORT // for nats-server, 0 means 4222
	}
	opts := &server.Options{
		ServerName:         cfg.ServerName,
		Host:               host,
		Port:               port,
		DontListen:         cfg.DontListen,
		HTTPHost:           host,
		HTTPPort:           cfg.MonitorPort,
		JetStream:          true,
		StoreDir:           cfg.StoreDir,
		JetStreamMaxMemory: cfg.JetStreamMaxMemory,
		Debug:              cfg.Debug,
		Trace:              cfg.Trace,
		NoSigs:             true,
	}
	if opts.StoreDir == "" {
		// nats-server would otherwise use a directory under os.TempDir()
		// shared by every server on the machine.
		dir, err := os.MkdirTemp("", "enslavism-nats-")
		if err != nil {
			return nil, fmt.Errorf("%w: temporary store dir: %w", ErrStart, err)
		}
		s.tmpDir = dir
		opts.StoreDir = dir
	}
	if cfg.Auth != nil || len(cfg.Users) > 0 {
		token, err := newInternalToken()
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrStart, err)
		}
		s.token = token
		opts.CustomClientAuthentication = newAuthenticator(cfg, token, s.log)
	}
	if c := cfg.Cluster; c != nil {
		if err := s.clusterOptions(opts, c); err != nil {
			return nil, err
		}
	}
	if cfg.ConfigureOptions != nil {
		cfg.ConfigureOptions(opts)
	}
	return opts, nil
}

// start runs nats-server's Start (which does not block for long: it opens
// the listeners and recovers JetStream, then returns) bounded by ctx.
func (s *Server) start(ctx context.Context) error {
	started := make(chan struct{})
	go func() {
		defer close(started)
		s.ns.Start()
	}()
	select {
	case <-started:
		return nil
	case <-ctx.Done():
		// Stop it where it is; Start returns soon after the shutdown
		// flag is set. Wait for it so that nothing is left running.
		s.ns.Shutdown()
		<-started
		return fmt.Errorf("%w: not started in time: %w", ErrStart, context.Cause(ctx))
	}
}

// waitReady waits until the server accepts connections, a fatal error, or
// the end of ctx.
func (s *Server) waitReady(ctx context.Context) error {
	for {
		if s.ns.ReadyForConnections(readyPoll) {
			return nil
		}
		if err := s.fatalErr(); err != nil {
			return fmt.Errorf("%w: %w", ErrStart, err)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%w: not ready for connections in time: %w", ErrStart, context.Cause(ctx))
		}
	}
}

// recordFatal keeps the first fatal error nats-server reports. The
// underlying error, when one of the arguments is an error, stays wrapped.
func (s *Server) recordFatal(format string, v []any) {
	err := fatalError{msg: fmt.Sprintf(format, v...)}
	for _, a := range v {
		if e, ok := a.(error); ok {
			err.cause = e
			break
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fatal == nil {
		s.fatal = err
	}
}

func (s *Server) fatalErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fatal
}

// classifyFatal turns the fatal error that stopped nats-server's Start into
// Start's error. A listener that failed with a network error (client port,
// or a leaf node, websocket … port set by ConfigureOptions) or the
// monitoring listener give ErrListen with the address; anything else
// ErrStart.
func classifyFatal(err error, clientAddr, monitorAddr string) error {
	if opErr, ok := errors.AsType[*net.OpError](err); ok && opErr.Op == "listen" {
		addr := clientAddr
		if opErr.Addr != nil {
			addr = opErr.Addr.String()
		}
		return fmt.Errorf("%w on %s: %w", ErrListen, addr, opErr)
	}
	// nats-server flattens the monitoring listener's error to text.
	if msg := err.Error(); strings.Contains(msg, "monitor") && strings.Contains(msg, "listen") {
		return fmt.Errorf("%w on %s (monitoring): %w", ErrListen, monitorAddr, err)
	}
	return fmt.Errorf("%w: %w", ErrStart, err)
}

// fatalError is a fatal log line of nats-server turned into an error.
type fatalError struct {
	msg   string
	cause error
}

func (e fatalError) Error() string { return "nats-server: " + e.msg }
func (e fatalError) Unwrap() error { return e.cause }

// abort stops a server that failed to start and releases what Start made.
func (s *Server) abort() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
	s.removeTmpDir()
}

func (s *Server) removeTmpDir() error {
	if s.tmpDir == "" {
		return nil
	}
	if err := os.RemoveAll(s.tmpDir); err != nil {
		return fmt.Errorf("embedded: remove temporary store dir: %w", err)
	}
	return nil
}

// dialable returns host:port for a listener's address, with an unspecified
// IP (0.0.0.0, ::) replaced by the loopback address so that it can be dialed.
func dialable(a *net.TCPAddr) string {
	ip := a.IP
	switch {
	case ip == nil || ip.Equal(net.IPv4zero):
		ip = net.IPv4(127, 0, 0, 1)
	case ip.Equal(net.IPv6unspecified):
		ip = net.IPv6loopback
	}
	return net.JoinHostPort(ip.String(), strconv.Itoa(a.Port))
}

// ClientURL returns the URL other processes connect to, such as
// "nats://127.0.0.1:4222" (an unspecified Host is reported as loopback), or
// "" when the server was started with DontListen.
func (s *Server) ClientURL() string { return s.clientURL }

// MonitorURL returns the base URL of the HTTP monitoring endpoints, such as
// "http://127.0.0.1:8222", or "" when monitoring is off.
func (s *Server) MonitorURL() string { return s.monitorURL }

// Connect opens an in-process connection to the server (no socket, works
// with DontListen) with nats.Connect and opts. It is always allowed, even
// when Config.Auth is set: it authenticates with an internal token that is
// never handed to the AuthFunc, so authentication options in opts are
// overridden. The caller owns the connection and closes it. Connect returns
// ErrClosed once Shutdown has been called, or nats.Connect's error.
func (s *Server) Connect(opts ...nats.Option) (*nats.Conn, error) {
	if s.closing.Load() {
		return nil, ErrClosed
	}
	opts = append(opts, nats.InProcessServer(s.ns))
	if s.token != "" {
		opts = append(opts, nats.Token(s.token), nats.UserInfo("", ""))
	}
	nc, err := nats.Connect("", opts...)
	if err != nil {
		return nil, fmt.Errorf("embedded: in-process connection: %w", err)
	}
	return nc, nil
}

// NATSServer returns the underlying nats-server, for what this package does
// not cover (monitoring data, account lookups, …). Do not call its Shutdown
// or Start: use the Server's.
func (s *Server) NATSServer() *server.Server { return s.ns }

// Shutdown stops the server: it closes every client connection (they see
// the server go away and, for nats.go, start reconnecting), stops
// JetStream after flushing its file store, and waits until every goroutine
// of the server has ended, then removes the temporary store directory Start
// created, if any.
//
// If ctx ends first, Shutdown returns ctx's error while the shutdown goes
// on in the background. Shutdown is idempotent and safe to call
// concurrently: every call waits for the same shutdown and returns the same
// result.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closing.Store(true)
	s.shutdownOnce.Do(func() {
		go func() {
			s.ns.Shutdown()
			s.ns.WaitForShutdown()
			s.shutdownErr = s.removeTmpDir()
			close(s.shutdownDone)
		}()
	})
	select {
	case <-s.shutdownDone:
		return s.shutdownErr
	case <-ctx.Done():
		return fmt.Errorf("embedded: shutdown: %w", context.Cause(ctx))
	}
}

// Close shuts the server down like Shutdown, waiting at most 30 s. It is
// idempotent; calling it after Shutdown is fine.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), defaultCloseTimeout)
	defer cancel()
	err := s.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("embedded: close: shutdown did not finish in %s", defaultCloseTimeout)
	}
	return err
}
