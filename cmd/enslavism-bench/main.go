// Command enslavism-bench measures Enslavism against its baselines in one
// run, side by side, and prints a markdown table (and JSON with -json):
//
//   - connect: a Go browser-protocol client (WebSocket + pion) opening a
//     DataChannel through gateway + NATS + slave, vs the same client and
//     the same pion settings with signaling answered directly (no gateway,
//     no NATS), interleaved;
//   - chromium: the browser library's connect() in headless Chromium (when
//     installed) through gateway + NATS vs a direct signaling page served
//     by the bench itself;
//   - original: the Node.js original (npm enslavism 0.9.0, bench/original,
//     when Node.js and its node_modules are there) in the same Chromium
//     with the same page, vs ours through gateway + NATS;
//   - rtt: DataChannel echo round trip and throughput through the slave
//     library vs raw pion;
//   - presence: slave start → seen by a browser at 1, 100 (and 1000)
//     slaves; crash → removal; graceful stop → removal;
//   - capacity: many concurrent peers on one slave (a child process):
//     setups per second, the slave's RSS per peer.
//
// Everything runs in this process on 127.0.0.1. -short finishes in well
// under a minute, for CI-style regression checks by ratio.
//
//	go run ./cmd/enslavism-bench            # full
//	go run ./cmd/enslavism-bench -short -json bench.json
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(os.Args) == 3 && os.Args[1] == childSlaveFlag {
		if err := runChildSlave(os.Args[2]); err != nil {
			fmt.Fprintf(os.Stderr, "enslavism-bench child slave: %v\n", err)
			os.Exit(1)
		}
		return
	}
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "enslavism-bench: %v\n", err)
		os.Exit(1)
	}
}

// Report is the machine-readable result of a run.
type Report struct {
	Date    time.Time `json:"date"`
	Short   bool      `json:"short"`
	GOOS    string    `json:"goos"`
	GOARCH  string    `json:"goarch"`
	CPUs    int       `json:"cpus"`
	Go      string    `json:"go"`
	Results []Result  `json:"results"`
}

// Result is one measured figure, with its baseline when it has one.
type Result struct {
	Scenario string  `json:"scenario"`
	Metric   string  `json:"metric"`
	Unit     string  `json:"unit"`
	Ours     float64 `json:"ours"`
	Baseline float64 `json:"baseline,omitempty"`
	Ratio    float64 `json:"ratio,omitempty"` // ours / baseline
	Target   string  `json:"target,omitempty"`
	N        int     `json:"n"`
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("enslavism-bench", flag.ContinueOnError)
	short := fs.Bool("short", false, "a quick run (< 60 s) for regression checks by ratio")
	jsonOut := fs.String("json", "", "also write the results as JSON to `FILE`")
	svgOut := fs.String("svg", "", "also draw the presence scaling curve (start → listed vs slaves) as SVG to `FILE`")
	only := fs.String("only", "", "run one scenario: connect, chromium, original, rtt, presence, capacity, netns (root: emulated 50 ms link) or netns-pick (root: pickSlave by ping over two emulated links)")
	verbose := fs.Bool("v", false, "log what happens")
	if err := fs.Parse(args); err != nil {
		return err
	}
	level := slog.LevelError + 4
	if *verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	rep := &Report{Date: time.Now().UTC(), Short: *short, GOOS: runtime.GOOS, GOARCH: runtime.GOARCH, CPUs: runtime.NumCPU(), Go: runtime.Version()}

	e, err := newEnv(ctx, log)
	if err != nil {
		return err
	}
	defer e.close()

	scenarios := []struct {
		name string
		fn   func(context.Context, *env, bool) ([]Result, error)
	}{
		{"connect", benchConnect},
		{"chromium", benchChromium},
		{"original", benchOriginal},
		{"rtt", benchRTT},
		{"presence", benchPresence},
		{"capacity", benchCapacity},
		{"netns", benchNetns},
		{"netns-pick", benchNetnsPick},
	}
	for _, s := range scenarios {
		if *only != "" && *only != s.name {
			continue
		}
		fmt.Fprintf(os.Stderr, "running %s…\n", s.name)
		res, err := s.fn(ctx, e, *short)
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		rep.Results = append(rep.Results, res...)
	}
	writeMarkdown(stdout, rep)
	if *svgOut != "" {
		ss := presenceSeries(rep.Results)
		if ss == nil {
			return errors.New("-svg: the presence scenario did not run")
		}
		f, err := os.Create(*svgOut)
		if err != nil {
			return err
		}
		writeSVG(f, "Slave start → listed at a browser, slaves starting at once", "slaves starting at once", "ms", ss)
		if err := f.Close(); err != nil {
			return err
		}
	}
	if *jsonOut != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(*jsonOut, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func writeMarkdown(w io.Writer, rep *Report) {
	mode := "full"
	if rep.Short {
		mode = "short"
	}
	fmt.Fprintf(w, "Run %s (%s mode), %s/%s, %d CPUs, %s\n\n", rep.Date.Format(time.RFC3339), mode, rep.GOOS, rep.GOARCH, rep.CPUs, rep.Go)
	fmt.Fprintln(w, "| scenario | metric | ours | baseline | ratio | target | n |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	for _, r := range rep.Results {
		base, ratio := "", ""
		if r.Baseline != 0 {
			base = fmt.Sprintf("%.3g %s", r.Baseline, r.Unit)
			ratio = fmt.Sprintf("%.2f", r.Ratio)
		}
		fmt.Fprintf(w, "| %s | %s | %.3g %s | %s | %s | %s | %d |\n", r.Scenario, r.Metric, r.Ours, r.Unit, base, ratio, r.Target, r.N)
	}
}

func ratio(ours, base float64) float64 {
	if base == 0 {
		return 0
	}
	return ours / base
}
