package main

// The two child processes of the netns scenario: "server" (in the server
// namespace: NATS + gateway + echo slave, and the direct baseline, all with
// ICE on 198.18.0.1 only) and "driver" (in the client namespace: headless
// Chromium loading the page afresh for every measurement).

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
		err = netnsServer(ctx)
	case "driver":
		err = netnsDriver(ctx)
	default:
		err = fmt.Errorf("unknown mode %q", mode)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "enslavism-bench netns %s: %v\n", mode, err)
		return 1
	}
	return 0
}

func netnsOnlySrv(ip net.IP) bool { return ip.Equal(net.ParseIP(netnsSrvIP)) }

// netnsServer runs until its stdin closes or it is signalled; it prints
// the servers' addresses as one JSON line.
func netnsServer(ctx context.Context) error {
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

	mux := http.NewServeMux()
	mux.Handle("/enslavism/", gw)
	mux.HandleFunc("/netns.html", serveNetnsPage)
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
