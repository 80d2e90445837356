// Command enslavism-load opens many browser-protocol WebSockets to a gateway
// and measures what one gateway costs per browser and how fast a change of
// the slave list reaches all of them.
//
// Against a running gateway (the probe slave whose userData is updated needs
// the NATS URL the gateway uses):
//
//	enslavism-load -url ws://127.0.0.1:8081/enslavism/clients -nats nats://127.0.0.1:4222 \
//	    -clients 10000 -ramp 2000 -hold 30s -sources 127.0.0.1,127.0.0.2
//
// Self-contained (-self M): a child process runs an embedded NATS server, the
// gateway and M presence-only slaves (bus.Presence.Register, no WebRTC), so
// that the child's RSS (/proc/<pid>/status VmRSS) is the gateway's, not the
// load generator's:
//
//	enslavism-load -self 500 -clients 10000 -ramp 2000 -hold 10s
//
// The tool connects N clients at R per second, each from the next address of
// -sources (net.Dialer.LocalAddr: every source address has its own ephemeral
// port range), waits until each has its hello and slave list, then updates
// the userData of a probe slave every -interval until -hold has passed and
// reports, for each update, the time until every client got its slaveupdated
// (p50, p99, max over clients). It raises its own RLIMIT_NOFILE to the hard
// limit.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/enslavism/enslavism/bus"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	if len(os.Args) > 1 && os.Args[1] == childArg {
		err = runChild(ctx, os.Args[2:], os.Stdout)
	} else {
		err = run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	}
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "enslavism-load:", err)
		os.Exit(1)
	}
}

type options struct {
	url      string
	natsURL  string
	clients  int
	ramp     float64
	hold     time.Duration
	interval time.Duration
	sources  []net.IP
	self     int
	prefix   string
}

func parse(args []string, out io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("enslavism-load", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&o.url, "url", "", "gateway WebSocket URL (ws://host:port/enslavism/clients); not with -self")
	fs.StringVar(&o.natsURL, "nats", "", "NATS URL of the gateway's cluster, for the probe slave; not with -self")
	fs.IntVar(&o.clients, "clients", 1000, "WebSocket clients to connect")
	fs.Float64Var(&o.ramp, "ramp", 1000, "new connections per second")
	fs.DurationVar(&o.hold, "hold", 10*time.Second, "how long to keep the clients connected once all are in")
	fs.DurationVar(&o.interval, "interval", 2*time.Second, "time between two userData updates of the probe slave during -hold")
	sources := fs.String("sources", "", "local addresses to connect from, comma-separated (default: the kernel's choice)")
	fs.IntVar(&o.self, "self", 0, "run a gateway, an embedded NATS server and this many presence-only slaves in a child process and load it (0: use -url)")
	fs.StringVar(&o.prefix, "prefix", "", "subject prefix (default enslavism)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	for _, s := range strings.Split(*sources, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		ip := net.ParseIP(s)
		if ip == nil {
			return o, fmt.Errorf("-sources: %q is not an IP address", s)
		}
		o.sources = append(o.sources, ip)
	}
	switch {
	case o.clients < 1 || o.ramp <= 0 || o.interval <= 0:
		return o, errors.New("-clients, -ramp and -interval must be positive")
	case o.self > 0 && (o.url != "" || o.natsURL != ""):
		return o, errors.New("-self runs its own gateway: no -url or -nats with it")
	case o.self == 0 && (o.url == "" || o.natsURL == ""):
		return o, errors.New("give -url and -nats, or -self M")
	}
	return o, nil
}

// raiseNoFile raises RLIMIT_NOFILE to its hard limit.
func raiseNoFile() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	return lim.Cur, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parse(args, stderr)
	if err != nil {
		return err
	}
	nofile, err := raiseNoFile()
	if err != nil {
		return fmt.Errorf("raise RLIMIT_NOFILE: %w", err)
	}
	if nofile < uint64(o.clients)+100 {
		return fmt.Errorf("RLIMIT_NOFILE hard limit %d is too low for %d clients", nofile, o.clients)
	}

	childPID := 0
	if o.self > 0 {
		child, err := startChild(ctx, o, stderr)
		if err != nil {
			return err
		}
		defer child.stop()
		o.url, o.natsURL, childPID = child.wsURL, child.natsURL, child.cmd.Process.Pid
		fmt.Fprintf(stdout, "child pid %d: gateway %s, NATS %s, %d presence-only slaves\n", childPID, o.url, o.natsURL, o.self)
	}

	// The probe slave: registered here, its userData updated to time fan-out.
	nc, err := nats.Connect(o.natsURL, nats.Name("enslavism-load probe"))
	if err != nil {
		return fmt.Errorf("connect to NATS: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	subj, err := bus.NewSubjects(o.prefix)
	if err != nil {
		return err
	}
	pres, err := bus.OpenPresence(ctx, js, bus.PresenceConfig{Subjects: subj})
	if err != nil {
		return err
	}
	probeID := "load-probe-" + bus.NewID()[:6]
	reg, err := pres.Register(ctx, bus.SlaveInfo{ID: probeID, UserData: json.RawMessage(`{"seq":0}`)}, bus.RegisterOptions{})
	if err != nil {
		return fmt.Errorf("register the probe slave: %w", err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = reg.Deregister(dctx)
	}()

	var rssBase int64
	if childPID != 0 {
		time.Sleep(500 * time.Millisecond) // the child settles after registering its slaves
		rssBase, _ = vmRSS(childPID)
		fmt.Fprintf(stdout, "gateway process RSS before clients: %.1f MiB\n", float64(rssBase)/(1<<20))
	}

	// Connect the clients at the ramp rate.
	l := &load{probe: probeID, clients: make([]*client, o.clients)}
	start := time.Now()
	tick := time.NewTicker(time.Duration(float64(time.Second) / o.ramp))
	var wg sync.WaitGroup
	for i := range o.clients {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		c := &client{id: i}
		l.clients[i] = c
		var src net.IP
		if len(o.sources) > 0 {
			src = o.sources[i%len(o.sources)]
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.dial(ctx, c, o.url, src)
		}()
		if i > 0 && i%1000 == 0 {
			fmt.Fprintf(stdout, "%6.1fs: %d dialled, %d synced, %d failed\n", time.Since(start).Seconds(), i, l.synced.Load(), l.failed.Load())
		}
	}
	tick.Stop()
	wg.Wait() // every dial has synced or failed
	fmt.Fprintf(stdout, "%6.1fs: %d clients synced (hello + list of %d slaves), %d failed\n",
		time.Since(start).Seconds(), l.synced.Load(), l.listSize(), l.failed.Load())
	if l.synced.Load() == 0 {
		return errors.New("no client connected")
	}
	if childPID != 0 {
		time.Sleep(time.Second)
		rss, _ := vmRSS(childPID)
		fmt.Fprintf(stdout, "gateway process RSS with %d clients: %.1f MiB, %.1f KiB per client\n",
			l.synced.Load(), float64(rss)/(1<<20), float64(rss-rssBase)/1024/float64(l.synced.Load()))
	}

	// Fan-out: update the probe's userData every interval during hold.
	var all []time.Duration
	holdEnd := time.Now().Add(o.hold)
	for seq := 1; ; seq++ {
		lat, missing := l.update(ctx, reg, seq, 10*time.Second)
		all = append(all, lat...)
		p50, p99, mx := percentiles(lat)
		fmt.Fprintf(stdout, "update %d: %d clients got slaveupdated: p50 %v p99 %v max %v; missing %d; connected %d\n",
			seq, len(lat), p50, p99, mx, missing, l.connected())
		if time.Now().Add(o.interval).After(holdEnd) || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(o.interval):
		}
	}
	p50, p99, mx := percentiles(all)
	fmt.Fprintf(stdout, "fan-out over all updates (%d deliveries): p50 %v p99 %v max %v\n", len(all), p50, p99, mx)
	if childPID != 0 {
		rss, _ := vmRSS(childPID)
		fmt.Fprintf(stdout, "gateway process RSS at the end: %.1f MiB, %.1f KiB per client\n",
			float64(rss)/(1<<20), float64(rss-rssBase)/1024/float64(l.synced.Load()))
	}
	fmt.Fprintf(stdout, "clients still connected at the end: %d of %d\n", l.connected(), l.synced.Load())
	l.closeAll()
	return nil
}

// load is the set of clients.
type load struct {
	probe   string
	clients []*client
	synced  atomic.Int64
	failed  atomic.Int64
	lists   atomic.Int64 // size of the last list received
}

func (l *load) listSize() int64 { return l.lists.Load() }

// client is one browser-protocol WebSocket.
type client struct {
	id     int
	ws     *websocket.Conn
	closed atomic.Bool
	// got holds the arrival time (UnixNano) of the probe's userData seq
	// this client last saw, and seq itself.
	seq atomic.Int64
	at  atomic.Int64
}

var dialer = websocket.Dialer{HandshakeTimeout: 30 * time.Second, ReadBufferSize: 1024, WriteBufferSize: 256}

func (l *load) dial(ctx context.Context, c *client, url string, src net.IP) {
	d := dialer
	nd := &net.Dialer{Timeout: 30 * time.Second}
	if src != nil {
		nd.LocalAddr = &net.TCPAddr{IP: src}
	}
	d.NetDialContext = nd.DialContext
	ws, _, err := d.DialContext(ctx, url, http.Header{})
	if err != nil {
		l.failed.Add(1)
		c.closed.Store(true)
		return
	}
	c.ws = ws
	// hello, then the list.
	for range 2 {
		_ = ws.SetReadDeadline(time.Now().Add(30 * time.Second))
		_, data, err := ws.ReadMessage()
		if err != nil {
			l.failed.Add(1)
			c.closed.Store(true)
			_ = ws.Close()
			return
		}
		var f struct {
			Type   string            `json:"type"`
			Slaves []json.RawMessage `json:"slaves"`
		}
		_ = json.Unmarshal(data, &f)
		if f.Type == "slaves" {
			l.lists.Store(int64(len(f.Slaves)))
		}
	}
	_ = ws.SetReadDeadline(time.Time{})
	l.synced.Add(1)
	go l.read(c)
}

// read handles the list events of one client, recording the probe's updates.
func (l *load) read(c *client) {
	defer c.closed.Store(true)
	for {
		_, data, err := c.ws.ReadMessage()
		if err != nil {
			return
		}
		now := time.Now().UnixNano()
		if !strings.Contains(string(data), l.probe) {
			continue
		}
		var f struct {
			Type  string `json:"type"`
			Slave struct {
				ID       string `json:"id"`
				UserData struct {
					Seq int64 `json:"seq"`
				} `json:"userData"`
			} `json:"slave"`
		}
		if json.Unmarshal(data, &f) == nil && f.Type == "slaveupdated" && f.Slave.ID == l.probe {
			c.at.Store(now)
			c.seq.Store(f.Slave.UserData.Seq)
		}
	}
}

func (l *load) connected() int {
	n := 0
	for _, c := range l.clients {
		if c != nil && c.ws != nil && !c.closed.Load() {
			n++
		}
	}
	return n
}

// update publishes seq as the probe's userData and waits until every
// connected client saw it (or timeout); it returns each client's latency.
func (l *load) update(ctx context.Context, reg *bus.Registration, seq int, timeout time.Duration) ([]time.Duration, int) {
	t0 := time.Now()
	if err := reg.SetUserData(ctx, json.RawMessage(`{"seq":`+strconv.Itoa(seq)+`}`)); err != nil {
		fmt.Fprintln(os.Stderr, "update:", err)
	}
	deadline := t0.Add(timeout)
	for {
		waiting := 0
		for _, c := range l.clients {
			if c != nil && c.ws != nil && !c.closed.Load() && c.seq.Load() < int64(seq) {
				waiting++
			}
		}
		if waiting == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	var lat []time.Duration
	missing := 0
	for _, c := range l.clients {
		if c == nil || c.ws == nil {
			continue
		}
		if c.seq.Load() >= int64(seq) {
			lat = append(lat, time.Duration(c.at.Load()-t0.UnixNano()))
		} else {
			missing++
		}
	}
	return lat, missing
}

func (l *load) closeAll() {
	for _, c := range l.clients {
		if c != nil && c.ws != nil {
			_ = c.ws.Close()
		}
	}
}

// percentiles returns p50, p99 and max, rounded to 10 µs.
func percentiles(d []time.Duration) (p50, p99, mx time.Duration) {
	if len(d) == 0 {
		return 0, 0, 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	at := func(q float64) time.Duration {
		return s[min(len(s)-1, int(q*float64(len(s))))].Round(10 * time.Microsecond)
	}
	return at(0.50), at(0.99), s[len(s)-1].Round(10 * time.Microsecond)
}

// vmRSS reads VmRSS of a process, in bytes.
func vmRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS in /proc status")
}

// childProc is the -self child: gateway, NATS, slaves.
type childProc struct {
	cmd     *exec.Cmd
	wsURL   string
	natsURL string
	done    chan struct{}
}

func startChild(ctx context.Context, o options, stderr io.Writer) (*childProc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, childArg, "-slaves", strconv.Itoa(o.self), "-prefix", o.prefix)
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &childProc{cmd: cmd, done: make(chan struct{})}
	lines := bufio.NewScanner(out)
	ready := make(chan error, 1)
	go func() {
		for lines.Scan() {
			if f := strings.Fields(lines.Text()); len(f) == 3 && f[0] == "READY" {
				c.wsURL, c.natsURL = f[1], f[2]
				ready <- nil
			}
		}
		ready <- errors.New("the child process ended before it was ready")
		_ = cmd.Wait()
		close(c.done)
	}()
	select {
	case err := <-ready:
		if err != nil {
			return nil, err
		}
		return c, nil
	case <-time.After(60 * time.Second):
		c.stop()
		return nil, errors.New("the child process was not ready within 60s")
	case <-ctx.Done():
		c.stop()
		return nil, ctx.Err()
	}
}

func (c *childProc) stop() {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}
