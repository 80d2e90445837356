package main

import (
	"context"
	"fmt"
	"time"

	"github.com/enslavism/enslavism/internal/browserclient"
	"github.com/enslavism/enslavism/internal/directsignal"
)

// benchConnect measures request → DataChannel open for a Go browser client,
// through gateway + NATS and with direct signaling, interleaved so that
// both see the same machine noise.
func benchConnect(ctx context.Context, e *env, short bool) ([]Result, error) {
	n := 300
	if short {
		n = 60
	}
	api := browserclient.LoopbackAPI()
	viaGW, err := browserclient.Dial(ctx, nil, e.gwURL, nil)
	if err != nil {
		return nil, err
	}
	defer viaGW.Close()
	direct, err := browserclient.Dial(ctx, nil, e.directURL, nil)
	if err != nil {
		return nil, err
	}
	defer direct.Close()
	once := func(c *browserclient.Client, slaveID string) (time.Duration, error) {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		start := time.Now()
		p, err := c.Connect(cctx, api, slaveID, browserclient.Channel{Label: "bench"})
		took := time.Since(start)
		if err != nil {
			return 0, err
		}
		p.Close()
		return took, nil
	}
	for range 10 { // warm up both paths
		if _, err := once(viaGW, "echo"); err != nil {
			return nil, fmt.Errorf("via gateway: %w", err)
		}
		if _, err := once(direct, directsignal.SlaveID); err != nil {
			return nil, fmt.Errorf("direct: %w", err)
		}
	}
	var gw, dir []time.Duration
	for i := range n {
		first, second := viaGW, direct
		if i%2 == 1 {
			first, second = direct, viaGW
		}
		for _, c := range []*browserclient.Client{first, second} {
			id := "echo"
			if c == direct {
				id = directsignal.SlaveID
			}
			d, err := once(c, id)
			if err != nil {
				return nil, err
			}
			if c == direct {
				dir = append(dir, d)
			} else {
				gw = append(gw, d)
			}
		}
	}
	res := []Result{}
	for _, q := range []struct {
		name   string
		q      float64
		target string
	}{{"connect p50 (Go client)", 0.5, "≤ 1.2×"}, {"connect p99 (Go client)", 0.99, ""}} {
		o, b := quantile(gw, q.q), quantile(dir, q.q)
		res = append(res, Result{Scenario: "connect", Metric: q.name, Unit: "ms", Ours: o, Baseline: b, Ratio: ratio(o, b), Target: q.target, N: n})
	}
	return res, nil
}
