package main

import (
	"context"
	"crypto/rand"
	"errors"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/enslavism/enslavism/internal/browserclient"
	"github.com/enslavism/enslavism/internal/directsignal"
)

// benchRTT measures a 64-byte echo round trip and echo throughput through
// the slave library and through raw pion (the direct answerer).
func benchRTT(ctx context.Context, e *env, short bool) ([]Result, error) {
	n, bulk := 2000, 16<<20
	if short {
		n, bulk = 300, 2<<20
	}
	api := browserclient.LoopbackAPI()
	measure := func(url, slaveID string) (rtts []time.Duration, mbps float64, err error) {
		c, err := browserclient.Dial(ctx, nil, url, nil)
		if err != nil {
			return nil, 0, err
		}
		defer c.Close()
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		p, err := c.Connect(cctx, api, slaveID, browserclient.Channel{Label: "rtt"})
		if err != nil {
			return nil, 0, err
		}
		defer p.Close()
		dc := p.Channels[0]
		got := make(chan int, 1024)
		dc.OnMessage(func(m webrtc.DataChannelMessage) { got <- len(m.Data) })
		msg := make([]byte, 64)
		for i := range n + 50 {
			start := time.Now()
			if err := dc.Send(msg); err != nil {
				return nil, 0, err
			}
			select {
			case <-got:
			case <-time.After(5 * time.Second):
				return nil, 0, errors.New("no echo")
			}
			if i >= 50 {
				rtts = append(rtts, time.Since(start))
			}
		}
		// Throughput: keep at most 512 KiB in flight, count echoed bytes.
		chunk := make([]byte, 16<<10)
		_, _ = rand.Read(chunk)
		dc.SetBufferedAmountLowThreshold(128 << 10)
		low := make(chan struct{}, 1)
		dc.OnBufferedAmountLow(func() {
			select {
			case low <- struct{}{}:
			default:
			}
		})
		start := time.Now()
		sent, recv := 0, 0
		for recv < bulk {
			for sent < bulk && dc.BufferedAmount() < 256<<10 && sent-recv < 512<<10 {
				if err := dc.Send(chunk); err != nil {
					return nil, 0, err
				}
				sent += len(chunk)
			}
			select {
			case k := <-got:
				recv += k
			case <-low:
			case <-time.After(10 * time.Second):
				return nil, 0, errors.New("throughput stalled")
			}
		}
		secs := time.Since(start).Seconds()
		return rtts, float64(bulk) / secs / 1e6, nil
	}
	ours, oursTP, err := measure(e.gwURL, "echo")
	if err != nil {
		return nil, err
	}
	base, baseTP, err := measure(e.directURL, directsignal.SlaveID)
	if err != nil {
		return nil, err
	}
	o50, b50 := quantile(ours, 0.5), quantile(base, 0.5)
	o99, b99 := quantile(ours, 0.99), quantile(base, 0.99)
	return []Result{
		{Scenario: "rtt", Metric: "64 B echo RTT p50", Unit: "ms", Ours: o50, Baseline: b50, Ratio: ratio(o50, b50), Target: "≤ 1.1×", N: n},
		{Scenario: "rtt", Metric: "64 B echo RTT p99", Unit: "ms", Ours: o99, Baseline: b99, Ratio: ratio(o99, b99), N: n},
		{Scenario: "rtt", Metric: "echo throughput (16 KiB messages, reliable)", Unit: "MB/s", Ours: oursTP, Baseline: baseTP, Ratio: ratio(oursTP, baseTP), N: bulk >> 20},
	}, nil
}
