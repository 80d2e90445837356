package main

// The two child processes of the netns scenario: "server" (in the server
// namespace: NATS + gateway + echo slave, and the direct baseline, all with
// ICE on 198.18.0.1 only) and "driver" (in the client namespace: headless
// Chromium loading the page afresh for every measurement), and their
// netns-pick variants "server-pick" and "driver-pick".

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/nats-io/nats.go"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/logging"
	"github.com/pion/webrtc/v4"

	"github.com/enslavism/enslavism/embedded"
	"github.com/enslavism/enslavism/gateway"
	"github.com/enslavism/enslavism/internal/browserclient"
	"github.com/enslavism/enslavism/internal/browsertest"
	"github.com/enslavism/enslavism/internal/directsignal"
	"github.com/enslavism/enslavism/slave"
)

// netnsPage measures one WebSocket open → DataChannel open: from new
// MasterConnection() until the first createDataChannel() resolves (open),
// and the part of it after the MasterConnection's 'open' event.
const netnsPage = `<!doctype html><meta charset="utf-8"><script src="/enslavism/client.js"></script>
<script>
async function once(slaveID) {
	const t0 = performance.now();
	const m = new MasterConnection();
	if (!m.connected) await new Promise((r) => m.addEventListener('open', r, { once: true }));
	const t1 = performance.now();
	const sc = m.slaves.find((s) => s.id === slaveID);
	if (!sc) throw new Error('no slave ' + slaveID);
	await sc.createDataChannel('bench');
	const t2 = performance.now();
	m.close();
	return [t2 - t0, t2 - t1];
}
// pick (netns-pick): what pickSlave picks by load and by ping between "far"
// and "near", then n ping()s to each (the slave answers ≤ 10 a second).
async function pick(n) {
	const m = new MasterConnection();
	if (!m.connected) await new Promise((r) => m.addEventListener('open', r, { once: true }));
	const ids = () => m.slaves.map((s) => s.id);
	for (let i = 0; !(ids().includes('far') && ids().includes('near')); i++) {
		if (i > 200) throw new Error('slaves listed: ' + ids());
		await new Promise((r) => setTimeout(r, 50));
	}
	const probes = {}; // what pickSlave's own pings measured
	const probeErrs = {};
	for (const sc of m.slaves) {
		sc.ping = function () {
			const p = Object.getPrototypeOf(this).ping.call(this);
			p.then((v) => { probes[this.id] = v; }, (e) => { probeErrs[this.id] = String(e); });
			return p;
		};
	}
	const byLoad = await m.pickSlave({ by: 'load' });
	const byPing = await m.pickSlave({ by: 'ping', probe: 2 });
	for (const sc of m.slaves) delete sc.ping;
	const res = { order: ids(), byLoad: byLoad && byLoad.id, byPing: byPing && byPing.id, probes, probeErrs, far: [], near: [] };
	res.loads = Object.fromEntries(m.slaves.map((s) => [s.id, s.load ? s.load.clients + '/' + (s.load.max || '∞') : 'none']));
	for (const id of ['far', 'near']) {
		const sc = m.slaves.find((s) => s.id === id);
		for (let i = 0; i < n; i++) {
			res[id].push(await sc.ping());
			await new Promise((r) => setTimeout(r, 120));
		}
	}
	m.close();
	return res;
}
</script>`

func serveNetnsPage(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write([]byte(netnsPage))
}

func netnsChildMain(mode string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch mode {
	case "server":
		err = netnsServer(ctx, false)
	case "driver":
		err = netnsDriver(ctx)
	case "server-pick":
		err = netnsServer(ctx, true)
	case "driver-pick":
		err = netnsPickDriver(ctx)
	default:
		err = fmt.Errorf("unknown mode %q", mode)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "enslavism-bench netns %s: %v\n", mode, err)
		return 1
	}
	return 0
}

func netnsOnlySrv(ip net.IP) bool  { return ip.Equal(net.ParseIP(netnsSrvIP)) }
func netnsOnlyNear(ip net.IP) bool { return ip.Equal(net.ParseIP(netnsNearIP)) }

// netnsServer runs until its stdin closes or it is signalled; it prints
// the servers' addresses as one JSON line. With pick (the netns-pick
// scenario) it runs two echo slaves instead of one and no direct baseline:
// "far" on 198.18.0.1 and "near" on 198.18.0.5, the latter with
// MaxClients 10 and one Go client joined, so that it is the more
// loaded (not 2: the previous page loads' sessions may not be gone yet).
func netnsServer(ctx context.Context, pick bool) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); cancel() }()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError + 4}))

	ns, err := embedded.Start(ctx, embedded.Config{Logger: log})
	if err != nil {
		return err
	}
	defer func() {
		sctx, c := context.WithTimeout(context.Background(), 5*time.Second)
		defer c()
		_ = ns.Shutdown(sctx)
	}()
	gwNC, err := ns.Connect()
	if err != nil {
		return err
	}
	defer gwNC.Close()
	slaveNC, err := nats.Connect(ns.ClientURL())
	if err != nil {
		return err
	}
	defer slaveNC.Close()
	gw, err := gateway.New(ctx, gwNC, gateway.Config{Logger: log, OffersPerSecond: -1, MessagesPerSecond: -1, MaxPendingSessions: -1})
	if err != nil {
		return err
	}
	defer func() {
		sctx, c := context.WithTimeout(context.Background(), 5*time.Second)
		defer c()
		_ = gw.Shutdown(sctx)
	}()
	mux := http.NewServeMux()
	mux.Handle("/enslavism/", gw)
	mux.HandleFunc("/netns.html", serveNetnsPage)
	if pick {
		return netnsPickServer(ctx, log, slaveNC, mux)
	}
	echo, err := slave.Start(ctx, slaveNC, slave.Config{
		ID:      "echo",
		Handler: slave.HandlerFunc(echoHandler),
		ICE:     slave.ICEConfig{IPFilter: netnsOnlySrv, NetworkTypes: []webrtc.NetworkType{webrtc.NetworkTypeUDP4}},
		Logger:  log,
	})
	if err != nil {
		return err
	}
	defer echo.Close()

	// The direct baseline: directsignal.API's settings, on 198.18.0.1.
	var se webrtc.SettingEngine
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIPFilter(netnsOnlySrv)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	_ = se.SetAnsweringDTLSRole(webrtc.DTLSRoleServer)
	se.SetDTLSInsecureSkipHelloVerify(true)
	se.EnableSctpSnap(true)
	// Quiet: the page closes right after its DataChannel opens, which pion
	// logs as errors.
	se.LoggerFactory = &logging.DefaultLoggerFactory{DefaultLogLevel: logging.LogLevelDisabled}
	api := webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(&webrtc.MediaEngine{}),
		webrtc.WithInterceptorRegistry(&interceptor.Registry{}))

	dmux := http.NewServeMux()
	dmux.Handle("/enslavism/clients", directsignal.Handler(api))
	dmux.HandleFunc("/enslavism/client.js", serveLibrary)
	dmux.HandleFunc("/netns.html", serveNetnsPage)
	var addrs []string
	for _, h := range []http.Handler{mux, dmux} {
		ln, err := net.Listen("tcp4", netnsSrvIP+":0")
		if err != nil {
			return err
		}
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
		addrs = append(addrs, ln.Addr().String())
	}
	b, _ := json.Marshal(netnsAddrs{Gateway: addrs[0], Direct: addrs[1]})
	if _, err := fmt.Printf("%s\n", b); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

type netnsDriverArgs struct {
	Gateway string `json:"gateway"` // http://host:port
	Direct  string `json:"direct"`
	Loads   int    `json:"loads"`
}

type netnsVariant struct {
	Name    string    `json:"name"`    // "stock" or "snap"
	Gateway []float64 `json:"gateway"` // ms from new MasterConnection()
	Direct  []float64 `json:"direct"`
	// The same loads, from the MasterConnection's 'open' event.
	GatewayAfterOpen []float64 `json:"gatewayAfterOpen"`
	DirectAfterOpen  []float64 `json:"directAfterOpen"`
}

type netnsDriverResult struct {
	Variants []netnsVariant `json:"variants"`
}

// netnsDriver runs headless Chromium, stock and then with the SCTP SNAP
// field trial, and prints the samples as JSON.
func netnsDriver(ctx context.Context) error {
	var args netnsDriverArgs
	if err := json.Unmarshal([]byte(os.Getenv("ENSLAVISM_BENCH_NETNS_ARGS")), &args); err != nil {
		return err
	}
	var res netnsDriverResult
	for _, name := range []string{"stock", "snap"} {
		v, err := netnsChromium(ctx, args, name)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		res.Variants = append(res.Variants, v)
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

func netnsChromium(ctx context.Context, args netnsDriverArgs, name string) (netnsVariant, error) {
	v := netnsVariant{Name: name}
	dir, err := os.MkdirTemp("", "enslavism-bench-netns-")
	if err != nil {
		return v, err
	}
	defer os.RemoveAll(dir)
	opts := append(browsertest.Flags(dir),
		chromedp.ExecPath(findChromium()),
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND , EXCLUDE "+netnsSrvIP),
	)
	if name == "snap" {
		opts = append(opts, chromedp.Flag("force-fieldtrials", "WebRTC-Sctp-Snap/Enabled/"))
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	bctx, cancel := chromedp.NewContext(allocCtx)
	defer cancel()
	if err := chromedp.Do(bctx); err != nil {
		return v, fmt.Errorf("starting Chromium: %w", err)
	}
	load := func(base, slaveID string) ([]float64, error) {
		tctx, cancel := context.WithTimeout(bctx, 30*time.Second)
		defer cancel()
		if err := chromedp.Do(tctx, chromedp.Navigate(base+"/netns.html")); err != nil {
			return nil, err
		}
		return chromedp.Run(tctx, chromedp.Evaluate[[]float64](fmt.Sprintf("once(%q)", slaveID), chromedp.EvalAwaitPromise))
	}
	// Warm-up: Chromium's first peer connection is slow.
	for range 2 {
		if _, err := load(args.Gateway, "echo"); err != nil {
			return v, fmt.Errorf("via gateway: %w", err)
		}
		if _, err := load(args.Direct, directsignal.SlaveID); err != nil {
			return v, fmt.Errorf("direct: %w", err)
		}
	}
	for range args.Loads {
		ms, err := load(args.Gateway, "echo")
		if err != nil {
			return v, fmt.Errorf("via gateway: %w", err)
		}
		if len(ms) != 2 {
			return v, errors.New("via gateway: bad result")
		}
		v.Gateway, v.GatewayAfterOpen = append(v.Gateway, ms[0]), append(v.GatewayAfterOpen, ms[1])
		if ms, err = load(args.Direct, directsignal.SlaveID); err != nil {
			return v, fmt.Errorf("direct: %w", err)
		}
		if len(ms) != 2 {
			return v, errors.New("direct: bad result")
		}
		v.Direct, v.DirectAfterOpen = append(v.Direct, ms[0]), append(v.DirectAfterOpen, ms[1])
	}
	if len(v.Gateway) == 0 {
		return v, errors.New("no samples")
	}
	return v, nil
}

// netnsPickServer is netnsServer's netns-pick part: the two slaves, the
// near one's Go client, and the gateway's HTTP server on 198.18.0.1.
func netnsPickServer(ctx context.Context, log *slog.Logger, nc *nats.Conn, mux *http.ServeMux) error {
	for _, c := range []struct {
		id     string
		filter func(net.IP) bool
		max    int
	}{{"far", netnsOnlySrv, 0}, {"near", netnsOnlyNear, 10}} {
		s, err := slave.Start(ctx, nc, slave.Config{
			ID:         c.id,
			Handler:    slave.HandlerFunc(echoHandler),
			ICE:        slave.ICEConfig{IPFilter: c.filter, NetworkTypes: []webrtc.NetworkType{webrtc.NetworkTypeUDP4}},
			MaxClients: c.max,
			Logger:     log,
		})
		if err != nil {
			return err
		}
		defer s.Close()
	}
	ln, err := net.Listen("tcp4", netnsSrvIP+":0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	// One Go client on "near" (over 198.18.0.5, inside this namespace), so
	// that pickSlave({by: 'load'}) would pick "far".
	var se webrtc.SettingEngine
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIPFilter(netnsOnlyNear)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.LoggerFactory = &logging.DefaultLoggerFactory{DefaultLogLevel: logging.LogLevelDisabled}
	api := webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithInterceptorRegistry(&interceptor.Registry{}))
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	bc, err := browserclient.Dial(cctx, nil, "ws://"+ln.Addr().String()+"/enslavism/clients", nil)
	if err != nil {
		return fmt.Errorf("the Go client: %w", err)
	}
	defer bc.Close()
	p, err := bc.Connect(cctx, api, "near", browserclient.Channel{Label: "load"})
	if err != nil {
		return fmt.Errorf("the Go client on near: %w", err)
	}
	defer p.Close()

	b, _ := json.Marshal(netnsAddrs{Gateway: ln.Addr().String()})
	if _, err := fmt.Printf("%s\n", b); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

type netnsPickTrial struct {
	Order  []string `json:"order"` // the page's MasterConnection.slaves
	ByLoad string   `json:"byLoad"`
	ByPing string   `json:"byPing"`
	// pickSlave's own probe ping per slave ID, ms.
	Probes    map[string]float64 `json:"probes"`
	ProbeErrs map[string]string  `json:"probeErrs"`
	Loads     map[string]string  `json:"loads"` // clients/max as the page saw them
	Far       []float64          `json:"far"`   // ping() ms
	Near      []float64          `json:"near"`
}

type netnsPickResult struct {
	Trials []netnsPickTrial `json:"trials"`
}

// netnsPickDriver runs headless Chromium, loads the page Trials times and
// prints what pick() found each time as JSON.
func netnsPickDriver(ctx context.Context) error {
	var args netnsDriverArgs
	if err := json.Unmarshal([]byte(os.Getenv("ENSLAVISM_BENCH_NETNS_ARGS")), &args); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "enslavism-bench-netns-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	opts := append(browsertest.Flags(dir),
		chromedp.ExecPath(findChromium()),
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND , EXCLUDE "+netnsSrvIP),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	bctx, cancel := chromedp.NewContext(allocCtx)
	defer cancel()
	if err := chromedp.Do(bctx); err != nil {
		return fmt.Errorf("starting Chromium: %w", err)
	}
	var res netnsPickResult
	for range args.Loads {
		tctx, cancel := context.WithTimeout(bctx, 60*time.Second)
		err := chromedp.Do(tctx, chromedp.Navigate(args.Gateway+"/netns.html"))
		var t netnsPickTrial
		if err == nil {
			t, err = chromedp.Run(tctx, chromedp.Evaluate[netnsPickTrial]("pick(5)", chromedp.EvalAwaitPromise))
		}
		cancel()
		if err != nil {
			return err
		}
		res.Trials = append(res.Trials, t)
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}
