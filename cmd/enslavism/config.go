package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/enslavism/enslavism/bus"
	"github.com/enslavism/enslavism/gateway"
)

// options are the binary's settings: each flag is also an ENSLAVISM_*
// environment variable (the flag wins).
type options struct {
	addr         string
	natsURL      string
	natsCreds    string
	natsAddr     string
	natsMonitor  int
	store        string
	demo         int
	static       string
	logLevel     slog.Level
	logJSON      bool
	prefix       string
	gatewayID    string
	region       string
	presenceTTL  time.Duration
	replicas     int
	iceServers   []gateway.ICEServer
	origins      []string
	offerTimeout time.Duration
	maxConns     int
	slaveUsers   map[string]string // slave ID → password, embedded server only
	slaveToken   string
	drain        time.Duration
}

// envName returns the environment variable of a flag: -nats-addr → ENSLAVISM_NATS_ADDR.
func envName(flagName string) string {
	return "ENSLAVISM_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseOptions reads args and the environment (through getenv).
func parseOptions(args []string, getenv func(string) string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("enslavism", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: enslavism [flags]\n\n"+
			"Runs an embedded NATS server (or joins an existing cluster with -nats), the gateway\n"+
			"that browsers connect to, and optionally demo slaves. Every flag can also be set\n"+
			"with an environment variable: -nats-addr is ENSLAVISM_NATS_ADDR.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	var logLevel, iceServers, turnUser, turnCred, origins, slaveUsers string
	fs.StringVar(&o.addr, "addr", ":8081", "HTTP listen address of the gateway (browser library, WebSocket, demo page, /healthz, /metrics)")
	fs.StringVar(&o.natsURL, "nats", "", "URL(s) of an existing NATS cluster, comma-separated; no embedded server is started then")
	fs.StringVar(&o.natsCreds, "nats-creds", "", "NATS credentials file (JWT + nkey) for -nats")
	fs.StringVar(&o.natsAddr, "nats-addr", "127.0.0.1:4222", "client listen address of the embedded NATS server (slaves in other processes connect here)")
	fs.IntVar(&o.natsMonitor, "nats-monitor-port", 0, "HTTP monitoring port of the embedded NATS server (0: off)")
	fs.StringVar(&o.store, "store", "", "JetStream store directory of the embedded server (default: in memory)")
	fs.IntVar(&o.demo, "demo", 0, "run `N` demo slaves in-process (chat rooms with a real-time toy)")
	fs.StringVar(&o.static, "static", "", "serve the files of `DIR` at / instead of the demo page")
	fs.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.BoolVar(&o.logJSON, "log-json", false, "log in JSON instead of text")
	fs.StringVar(&o.prefix, "prefix", bus.DefaultPrefix, "NATS subject prefix shared by gateways and slaves")
	fs.StringVar(&o.gatewayID, "gateway-id", "", "this gateway's ID on NATS (default: random)")
	fs.StringVar(&o.region, "region", "", "region of this gateway and its demo slaves, sent to browsers (hello.region, each slave's region)")
	fs.DurationVar(&o.presenceTTL, "presence-ttl", bus.DefaultTTL, "presence TTL used when creating the bucket: a crashed slave leaves every list within it")
	fs.IntVar(&o.replicas, "replicas", 1, "replicas of the presence bucket when creating it (3 on a 3-node cluster)")
	fs.StringVar(&iceServers, "ice-servers", "", "STUN/TURN URLs handed to browsers, comma-separated (e.g. stun:stun.example.com:3478,turn:turn.example.com:3478)")
	fs.StringVar(&turnUser, "turn-user", "", "username for the turn: URLs of -ice-servers")
	fs.StringVar(&turnCred, "turn-credential", "", "credential for the turn: URLs of -ice-servers")
	fs.StringVar(&origins, "origins", "", "origins allowed to open the WebSocket, comma-separated, or * (default: same origin only)")
	fs.DurationVar(&o.offerTimeout, "offer-timeout", gateway.DefaultOfferTimeout, "how long the gateway waits for a slave's answer")
	fs.IntVar(&o.maxConns, "max-connections", 0, "maximum browsers connected at once (0: no limit)")
	fs.StringVar(&slaveUsers, "slave-users", "", "embedded server only: `ID:PASSWORD,...` slaves allowed to connect, each limited to its own presence and subjects")
	fs.StringVar(&o.slaveToken, "slave-token", "", "embedded server only: a token any slave may connect with (no per-slave limits)")
	fs.DurationVar(&o.drain, "drain-timeout", 10*time.Second, "how long a graceful shutdown may take")

	// Environment first, flags over it.
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if v := getenv(envName(f.Name)); v != "" && envErr == nil {
			if err := f.Value.Set(v); err != nil {
				envErr = fmt.Errorf("%s=%q: %w", envName(f.Name), v, err)
			}
		}
	})
	if envErr != nil {
		return nil, envErr
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (flags start with -)", fs.Arg(0))
	}

	if err := o.logLevel.UnmarshalText([]byte(logLevel)); err != nil {
		return nil, fmt.Errorf("-log-level %q: want debug, info, warn or error", logLevel)
	}
	if _, err := bus.NewSubjects(o.prefix); err != nil {
		return nil, fmt.Errorf("-prefix: %w", err)
	}
	if o.gatewayID != "" {
		if err := bus.ValidateID(o.gatewayID); err != nil {
			return nil, fmt.Errorf("-gateway-id: %w", err)
		}
	}
	if o.demo < 0 || o.demo > 1000 {
		return nil, fmt.Errorf("-demo %d: want 0 to 1000", o.demo)
	}
	if o.natsURL == "" {
		if _, _, err := splitHostPort(o.natsAddr); err != nil {
			return nil, fmt.Errorf("-nats-addr %q: %w", o.natsAddr, err)
		}
	} else if slaveUsers != "" || o.slaveToken != "" || o.store != "" {
		return nil, errors.New("-slave-users, -slave-token and -store configure the embedded server: not with -nats (configure your cluster's users instead, see docs/operations.md)")
	}
	for _, u := range splitList(iceServers) {
		s := gateway.ICEServer{URLs: []string{u}}
		if strings.HasPrefix(u, "turn:") || strings.HasPrefix(u, "turns:") {
			s.Username, s.Credential = turnUser, turnCred
		} else if !strings.HasPrefix(u, "stun:") && !strings.HasPrefix(u, "stuns:") {
			return nil, fmt.Errorf("-ice-servers: %q is not a stun:, stuns:, turn: or turns: URL", u)
		}
		o.iceServers = append(o.iceServers, s)
	}
	o.origins = splitList(origins)
	if slaveUsers != "" {
		o.slaveUsers = map[string]string{}
		for _, pair := range splitList(slaveUsers) {
			id, pw, ok := strings.Cut(pair, ":")
			if !ok || pw == "" {
				return nil, fmt.Errorf("-slave-users: %q is not ID:PASSWORD", pair)
			}
			if err := bus.ValidateID(id); err != nil {
				return nil, fmt.Errorf("-slave-users: %w", err)
			}
			o.slaveUsers[id] = pw
		}
	}
	return o, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// splitHostPort splits "host:port" into a host and a port number.
func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("port %q out of range", p)
	}
	return host, port, nil
}
