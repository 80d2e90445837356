package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/enslavism/enslavism/internal/browserclient"
	"github.com/enslavism/enslavism/slave"
)

// childSlaveFlag makes the binary run only an echo slave (in a child
// process, so that its memory can be read alone).
const childSlaveFlag = "-child-slave"

// runChildSlave runs the echo slave "capacity" on natsURL until stdin closes.
func runChildSlave(natsURL string) error {
	raiseFileLimit()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		return err
	}
	defer nc.Close()
	log := slog.New(slog.DiscardHandler)
	s, err := slave.Start(context.Background(), nc, slave.Config{
		ID: "capacity", Handler: slave.HandlerFunc(echoHandler), ICE: slave.ICEConfig{Loopback: true},
		ConnectTimeout: time.Minute, MaxPending: -1, Logger: log,
	})
	if err != nil {
		return err
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	return s.Close()
}

// raiseFileLimit lifts the open-files soft limit to the hard limit: every
// peer connection holds a UDP socket.
func raiseFileLimit() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) == nil && l.Cur < l.Max {
		l.Cur = l.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}

// rssKiB reads a process's resident set size.
func rssKiB(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		}
	}
	return 0, errors.New("no VmRSS")
}

// benchCapacity holds many concurrent peers on one slave (a child process):
// setups per second through the gateway, and the slave's RSS per peer.
func benchCapacity(ctx context.Context, e *env, short bool) ([]Result, error) {
	peers, parallel := 1000, 16
	if short {
		peers = 100
	}
	raiseFileLimit()
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, exe, childSlaveFlag, e.ns.ClientURL())
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	defer func() {
		_ = stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}()
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "ready\n" {
		return nil, fmt.Errorf("child slave: %q %v", line, err)
	}
	c, err := browserclient.Dial(ctx, nil, e.gwURL, nil)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	// Wait until the gateway lists it.
	for !listed(c, "capacity") {
		f, err := c.Next(ctx)
		if err != nil {
			return nil, err
		}
		if f.Type == "slaveadded" && strings.Contains(string(f.Slave), `"capacity"`) {
			break
		}
	}
	time.Sleep(500 * time.Millisecond)
	before, err := rssKiB(cmd.Process.Pid)
	if err != nil {
		return nil, err
	}
	api := browserclient.LoopbackAPI()
	var mu sync.Mutex
	var all []*browserclient.Peer
	defer func() {
		for _, p := range all {
			p.Close()
		}
	}()
	work := make(chan int)
	errc := make(chan error, parallel)
	start := time.Now()
	var wg sync.WaitGroup
	for range parallel {
		wg.Go(func() {
			for range work {
				cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				p, err := c.Connect(cctx, api, "capacity", browserclient.Channel{Label: "load"})
				cancel()
				if err != nil {
					select {
					case errc <- err:
					default:
					}
					continue
				}
				mu.Lock()
				all = append(all, p)
				mu.Unlock()
			}
		})
	}
	for i := range peers {
		select {
		case work <- i:
		case err := <-errc:
			close(work)
			wg.Wait()
			return nil, fmt.Errorf("after %d peers: %w", len(all), err)
		}
	}
	close(work)
	wg.Wait()
	took := time.Since(start)
	select {
	case err := <-errc:
		return nil, fmt.Errorf("after %d peers: %w", len(all), err)
	default:
	}
	time.Sleep(time.Second)
	after, err := rssKiB(cmd.Process.Pid)
	if err != nil {
		return nil, err
	}
	n := len(all)
	return []Result{
		{Scenario: "capacity", Metric: fmt.Sprintf("setups per second, %d in parallel", parallel), Unit: "/s", Ours: float64(n) / took.Seconds(), Target: "≥ 150/s", N: n},
		{Scenario: "capacity", Metric: fmt.Sprintf("slave RSS per peer at %d peers", n), Unit: "KiB", Ours: float64(after-before) / float64(n), Target: "≤ 150 KiB", N: n},
	}, nil
}

func listed(c *browserclient.Client, id string) bool {
	for _, s := range c.Slaves {
		if s.ID == id {
			return true
		}
	}
	return false
}
