package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/enslavism/enslavism/internal/browsertest"
	"github.com/enslavism/enslavism/internal/directsignal"
	"github.com/enslavism/enslavism/web"
)

// benchPage connects n times to one slave with the browser library and
// returns the connect() durations in ms (SlaveConnection.connect() → its
// peer connection up, then close()).
const benchPage = `<!doctype html><meta charset="utf-8"><script src="/enslavism/client.js"></script>
<script>
async function bench(slaveID, n) {
	const m = new MasterConnection();
	if (!m.connected) await new Promise((r) => m.addEventListener('open', r, { once: true }));
	const sc = m.slaves.find((s) => s.id === slaveID);
	if (!sc) throw new Error('no slave ' + slaveID);
	const out = [];
	for (let i = 0; i < n; i++) {
		const t0 = performance.now();
		await sc.connect();
		out.push(performance.now() - t0);
		sc.close();
		await new Promise((r) => setTimeout(r, 20));
	}
	m.close();
	return out;
}
</script>`

func servePage(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write([]byte(benchPage))
}

func serveLibrary(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	_, _ = w.Write(web.ClassicScript())
}

func findChromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// benchChromium measures the browser library's connect() in headless
// Chromium through gateway + NATS and with the direct signaling page,
// alternating batches so that both see the same machine.
func benchChromium(ctx context.Context, e *env, short bool) ([]Result, error) {
	path := findChromium()
	if path == "" {
		fmt.Fprintf(os.Stderr, "chromium: not found, skipped (install it with: %s)\n", browsertest.InstallHint)
		return nil, nil
	}
	batches, per := 6, 10
	if short {
		batches, per = 2, 8
	}
	dir, err := os.MkdirTemp("", "enslavism-bench-chromium-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, append(browsertest.Flags(dir), chromedp.ExecPath(path))...)
	defer cancelAlloc()
	bctx, cancel := chromedp.NewContext(allocCtx)
	defer cancel()
	// Start the browser on bctx itself: a browser first started under a
	// timeout context would close with it.
	if err := chromedp.Do(bctx); err != nil {
		return nil, fmt.Errorf("starting Chromium: %w", err)
	}

	gwBase := "http://" + e.gwAddr
	dirBase := "http://" + e.directAddr
	runBatch := func(base, slaveID string, n int) ([]float64, error) {
		tctx, cancel := context.WithTimeout(bctx, 60*time.Second)
		defer cancel()
		if err := chromedp.Do(tctx, chromedp.Navigate(base+"/bench.html")); err != nil {
			return nil, err
		}
		return chromedp.Run(tctx, chromedp.Evaluate[[]float64](fmt.Sprintf("bench(%q, %d)", slaveID, n), chromedp.EvalAwaitPromise))
	}
	// Warm up both pages (Chromium's first peer connection is slow).
	if _, err := runBatch(gwBase, "echo", 3); err != nil {
		return nil, fmt.Errorf("via gateway: %w", err)
	}
	if _, err := runBatch(dirBase, directsignal.SlaveID, 3); err != nil {
		return nil, fmt.Errorf("direct: %w", err)
	}
	var gw, dir2 []time.Duration
	for range batches {
		for _, side := range []string{"gw", "direct"} {
			base, id := gwBase, "echo"
			if side == "direct" {
				base, id = dirBase, directsignal.SlaveID
			}
			ms, err := runBatch(base, id, per)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", side, err)
			}
			for _, v := range ms {
				d := time.Duration(v * float64(time.Millisecond))
				if side == "gw" {
					gw = append(gw, d)
				} else {
					dir2 = append(dir2, d)
				}
			}
		}
	}
	if len(gw) == 0 || len(dir2) == 0 {
		return nil, errors.New("no samples")
	}
	n := batches * per
	o50, b50 := quantile(gw, 0.5), quantile(dir2, 0.5)
	o99, b99 := quantile(gw, 0.99), quantile(dir2, 0.99)
	return []Result{
		{Scenario: "chromium", Metric: "connect() p50, headless Chromium", Unit: "ms", Ours: o50, Baseline: b50, Ratio: ratio(o50, b50), Target: "≤ 1.0×", N: n},
		{Scenario: "chromium", Metric: "connect() p99, headless Chromium", Unit: "ms", Ours: o99, Baseline: b99, Ratio: ratio(o99, b99), N: n},
	}, nil
}
