package slave_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/enslavism/enslavism/embedded"
	"github.com/enslavism/enslavism/slave"
	"github.com/enslavism/enslavism/slave/internal/testclient"
)

// The memory benchmark runs its browsers in a child process (this test
// binary, re-executed), so that the slave's process holds only the slave.
const (
	benchChildEnv = "SLAVE_BENCH_CHILD" // "1" in the child
	benchURLEnv   = "SLAVE_BENCH_URL"
	benchIDEnv    = "SLAVE_BENCH_ID"
	benchNEnv     = "SLAVE_BENCH_N"
	benchPeers    = 500
)

// BenchmarkMemoryPerPeer measures what one connected client costs the slave
// at 500 clients: heap in use and goroutines, per peer. Run it with
// -benchtime=1x: one iteration takes a few seconds.
func BenchmarkMemoryPerPeer(b *testing.B) {
	for _, mux := range []bool{false, true} {
		name := "ephemeral-ports"
		if mux {
			name = "udp-mux"
		}
		b.Run(name, func(b *testing.B) {
			for range b.N {
				measurePeers(b, benchPeers, mux)
			}
		})
	}
}

func measurePeers(b *testing.B, n int, mux bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := embedded.Start(ctx, embedded.Config{Logger: testLogger()})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	nc, err := srv.Connect()
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	cfg := slave.Config{Handler: echoHandler(), Logger: testLogger()}
	cfg.ICE.Loopback = true
	if mux {
		cfg.ICE.UDPMuxPort = freeUDPPort(b)
		cfg.ICE.UDPMuxAddr = "127.0.0.1"
	}
	s, err := slave.Start(ctx, nc, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()

	var before runtime.MemStats
	settle()
	runtime.ReadMemStats(&before)
	g0 := runtime.NumGoroutine()

	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), benchChildEnv+"=1", benchURLEnv+"="+srv.ClientURL(), benchIDEnv+"="+s.ID(), fmt.Sprintf("%s=%d", benchNEnv, n))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		_ = stdin.Close()
		_ = cmd.Wait()
		b.Fatalf("child: %q, %v", line, err)
	}
	connectAll := time.Since(start)
	eventually(b, 30*time.Second, "every client served", func() bool { return s.NumClients() == n })
	time.Sleep(time.Second) // gathering and SCTP setup done
	var after runtime.MemStats
	settle()
	runtime.ReadMemStats(&after)
	g1 := runtime.NumGoroutine()

	b.ReportMetric(float64(int64(after.HeapInuse)-int64(before.HeapInuse))/float64(n), "heap-B/peer")
	b.ReportMetric(float64(g1-g0)/float64(n), "goroutines/peer")
	b.ReportMetric(connectAll.Seconds(), "s-to-connect-all")

	_ = stdin.Close()
	if err := cmd.Wait(); err != nil {
		b.Errorf("child: %v", err)
	}
	eventually(b, 60*time.Second, "every session gone", func() bool { return s.NumSessions() == 0 })
}

func settle() {
	runtime.GC()
	runtime.GC()
}

func freeUDPPort(t testing.TB) int {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// benchChild is the child of the memory benchmark: it connects N browsers to
// the slave, prints "ready", waits for its stdin to close, and closes them.
func benchChild() int {
	n, _ := strconv.Atoi(os.Getenv(benchNEnv))
	nc, err := nats.Connect(os.Getenv(benchURLEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	api := testclient.NewAPI(false)
	peers := make([]*testclient.Peer, n)
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			p, err := testclient.Dial(ctx, nc, os.Getenv(benchIDEnv), testclient.Options{API: api})
			if err != nil {
				mu.Lock()
				firstErr = err
				mu.Unlock()
				return
			}
			peers[i] = p
		}()
	}
	wg.Wait()
	if firstErr != nil {
		fmt.Fprintln(os.Stderr, "child:", firstErr)
		fmt.Println("error")
		return 1
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	for _, p := range peers {
		_ = p.Close()
	}
	return 0
}
