package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/enslavism/enslavism/bus"
	"github.com/enslavism/enslavism/internal/browserclient"
)

// benchPresence measures slave start → slaveadded at a browser, for k
// slaves starting at once, then crash → slaveremoved and graceful stop →
// slaveremoved.
func benchPresence(ctx context.Context, e *env, short bool) ([]Result, error) {
	sizes := []int{1, 100, 1000}
	if short {
		sizes = []int{1, 100}
	}
	nc, err := nats.Connect(e.ns.ClientURL())
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	p, err := bus.OpenPresence(ctx, js, bus.PresenceConfig{Logger: e.log})
	if err != nil {
		return nil, err
	}
	c, err := browserclient.Dial(ctx, nil, e.gwURL, nil)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	var res []Result
	round := 0
	for _, k := range sizes {
		round++
		starts := make(map[string]time.Time, k)
		var mu sync.Mutex
		regs := make([]*bus.Registration, k)
		var wg sync.WaitGroup
		errs := make(chan error, k)
		for i := range k {
			id := fmt.Sprintf("p%d-%d", round, i)
			wg.Go(func() {
				mu.Lock()
				starts[id] = time.Now()
				mu.Unlock()
				r, err := p.Register(ctx, bus.SlaveInfo{ID: id}, bus.RegisterOptions{})
				if err != nil {
					errs <- err
					return
				}
				regs[i] = r
			})
		}
		var lat []time.Duration
		deadline, cancel := context.WithTimeout(ctx, 30*time.Second)
		for len(lat) < k {
			f, err := c.Next(deadline)
			if err != nil {
				cancel()
				return nil, fmt.Errorf("%d of %d slaves seen: %w", len(lat), k, err)
			}
			if f.Type != "slaveadded" {
				continue
			}
			var s browserclient.Slave
			_ = jsonUnmarshal(f.Slave, &s)
			mu.Lock()
			t0, ok := starts[s.ID]
			mu.Unlock()
			if ok {
				lat = append(lat, f.ReceivedAt.Sub(t0))
			}
		}
		cancel()
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			return nil, err
		}
		target := ""
		if k == 1000 {
			target = "p99 ≤ 50 ms"
		}
		res = append(res,
			Result{Scenario: "presence", Metric: fmt.Sprintf("start → listed p50, %d slaves at once", k), Unit: "ms", Ours: quantile(lat, 0.5), N: k},
			Result{Scenario: "presence", Metric: fmt.Sprintf("start → listed p99, %d slaves at once", k), Unit: "ms", Ours: quantile(lat, 0.99), Target: target, N: k})
		for _, r := range regs {
			_ = r.Deregister(ctx)
		}
		if err := awaitRemoved(ctx, c, k); err != nil {
			return nil, err
		}
	}

	// Crash: the heartbeat stops (a crashed process), measured from the stop.
	reg, err := p.Register(ctx, bus.SlaveInfo{ID: "crash"}, bus.RegisterOptions{})
	if err != nil {
		return nil, err
	}
	if err := awaitType(ctx, c, "slaveadded"); err != nil {
		return nil, err
	}
	time.Sleep(p.TTL()) // heartbeats run
	reg.Stop()
	t0 := time.Now()
	if err := awaitType(ctx, c, "slaveremoved"); err != nil {
		return nil, err
	}
	crash := time.Since(t0)
	// Graceful stop.
	reg, err = p.Register(ctx, bus.SlaveInfo{ID: "graceful"}, bus.RegisterOptions{})
	if err != nil {
		return nil, err
	}
	if err := awaitType(ctx, c, "slaveadded"); err != nil {
		return nil, err
	}
	t0 = time.Now()
	if err := reg.Deregister(ctx); err != nil {
		return nil, err
	}
	if err := awaitType(ctx, c, "slaveremoved"); err != nil {
		return nil, err
	}
	graceful := time.Since(t0)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	res = append(res,
		Result{Scenario: "presence", Metric: fmt.Sprintf("crash → removed (TTL %v)", p.TTL()), Unit: "ms", Ours: ms(crash), Target: "≤ 3000 ms", N: 1},
		Result{Scenario: "presence", Metric: "graceful stop → removed", Unit: "ms", Ours: ms(graceful), Target: "at once", N: 1})
	return res, nil
}

func awaitType(ctx context.Context, c *browserclient.Client, typ string) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	for {
		f, err := c.Next(ctx)
		if err != nil {
			return fmt.Errorf("waiting for %s: %w", typ, err)
		}
		if f.Type == typ {
			return nil
		}
	}
}

func awaitRemoved(ctx context.Context, c *browserclient.Client, k int) error {
	for range k {
		if err := awaitType(ctx, c, "slaveremoved"); err != nil {
			return errors.Join(fmt.Errorf("removals"), err)
		}
	}
	return nil
}
