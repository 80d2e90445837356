package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestShortRun runs the short benchmark as CI would and checks its ratios
// against generous regression bounds (a loaded 2-core machine is noisy:
// the bounds catch a regression by a factor, not a few percent).
func TestShortRun(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the benchmark")
	}
	out := filepath.Join(t.TempDir(), "bench.json")
	var md bytes.Buffer
	for _, only := range []string{"connect", "presence"} {
		if err := run(t.Context(), []string{"-short", "-only", only, "-json", out}, &md); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		var rep Report
		if err := json.Unmarshal(b, &rep); err != nil {
			t.Fatal(err)
		}
		if len(rep.Results) == 0 {
			t.Fatalf("%s: no results", only)
		}
		for _, r := range rep.Results {
			t.Logf("%s %s: %.3g %s (baseline %.3g, ratio %.2f)", r.Scenario, r.Metric, r.Ours, r.Unit, r.Baseline, r.Ratio)
			switch {
			case r.Scenario == "connect" && strings.Contains(r.Metric, "p50") && r.Ratio > 2:
				t.Errorf("connect through gateway+NATS is %.2f× direct signaling (regression bound 2×)", r.Ratio)
			case strings.HasPrefix(r.Metric, "crash") && r.Ours > float64((3*time.Second+time.Second)/time.Millisecond):
				t.Errorf("crash removal took %.0f ms (bound TTL + 1 s)", r.Ours)
			case strings.HasPrefix(r.Metric, "graceful") && r.Ours > 500:
				t.Errorf("graceful removal took %.0f ms (bound 500 ms)", r.Ours)
			}
		}
	}
	if !strings.Contains(md.String(), "| connect | connect p50") {
		t.Errorf("markdown table missing:\n%s", md.String())
	}
}
