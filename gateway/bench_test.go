package gateway

import (
	"bufio"
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/enslavism/enslavism/internal/directsignal"
	"github.com/enslavism/enslavism/slave"
)

// benchConnect measures, per iteration, what a browser waits for on an open
// gateway WebSocket: a new peer connection, the offer, signaling, ICE, DTLS,
// SCTP, until the control channel and one user channel are open. It reports
// the median and the 99th percentile.
func benchConnect(b *testing.B, c *wsClient, slaveID string) {
	api := loopbackAPI()
	var times []time.Duration
	b.ResetTimer()
	for b.Loop() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		start := time.Now()
		p, err := connectPeer(ctx, api, c, slaveID, channelSpec{label: "game"})
		times = append(times, time.Since(start))
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		p.close()
		b.StartTimer()
	}
	b.StopTimer()
	slices.Sort(times)
	b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(times[len(times)*99/100].Microseconds())/1000, "p99-ms")
}

// BenchmarkConnectViaGateway: Go WebSocket client + pion peer → gateway →
// NATS (embedded, in-process) → slave (slave package), until the
// DataChannels are open.
func BenchmarkConnectViaGateway(b *testing.B) {
	e := newEnv(b, Config{OffersPerSecond: -1, MessagesPerSecond: -1})
	e.startSlave(slave.Config{ID: "bench"})
	c, _, err := dial(b, e.wsURL(), nil)
	if err != nil {
		b.Fatal(err)
	}
	waitForSlaveB(b, c, "bench")
	benchConnect(b, c, "bench")
}

// BenchmarkConnectDirect: the same Go client and pion settings, with
// signaling over a WebSocket to a minimal handler that answers with pion
// itself (the slave package's transport settings), no gateway, no NATS.
func BenchmarkConnectDirect(b *testing.B) {
	srv := httptest.NewServer(directsignal.Handler(directsignal.API()))
	defer srv.Close()
	c, _, err := dial(b, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		b.Fatal(err)
	}
	benchConnect(b, c, directsignal.SlaveID)
	c.close()
}

// waitForSlaveB reads list frames until id is listed.
func waitForSlaveB(b *testing.B, c *wsClient, id string) {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		f, ok := c.next(time.Until(deadline))
		if !ok {
			break
		}
		if f.Type == TypeSlaves && slices.ContainsFunc(f.Slaves, func(s slaveJSON) bool { return s.ID == id }) ||
			f.Type == TypeSlaveAdded && f.Slave.ID == id {
			return
		}
	}
	b.Fatalf("slave %s never listed", id)
}

// idleClientsEnv is set in the helper process that holds the idle clients
// of BenchmarkIdleClients.
const idleClientsEnv = "ENSLAVISM_IDLE_CLIENTS"

// TestIdleClientsHelper is not a test: run by BenchmarkIdleClients in a
// child process, it opens N WebSockets to the URL in $ENSLAVISM_IDLE_CLIENTS
// ("N URL"), prints "ready", and holds them until its stdin closes, so that
// the clients' memory is not counted in the gateway's process.
func TestIdleClientsHelper(t *testing.T) {
	spec := os.Getenv(idleClientsEnv)
	if spec == "" {
		t.Skip("helper process of BenchmarkIdleClients")
	}
	var n int
	var url string
	if _, err := fmt.Sscan(spec, &n, &url); err != nil {
		t.Fatal(err)
	}
	conns := make([]*websocket.Conn, 0, n)
	d := websocket.Dialer{HandshakeTimeout: 30 * time.Second, ReadBufferSize: 256, WriteBufferSize: 256}
	for range n {
		ws, _, err := d.Dial(url, nil)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, ws)
	}
	// Read every connection (hello, slaves, pings) from few goroutines.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, ws := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if _, _, err := ws.ReadMessage(); err != nil {
					return
				}
			}
		}()
	}
	fmt.Println("ready")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	close(stop)
	for _, ws := range conns {
		_ = ws.Close()
	}
	wg.Wait()
}

// BenchmarkIdleClients measures the gateway's memory per idle browser at
// 5,000 WebSocket clients held by a child process: Go heap and stacks, RSS,
// and goroutines per client, as deltas from before the clients connected.
func BenchmarkIdleClients(b *testing.B) {
	const n = 5000
	e := newEnv(b, Config{})
	for b.Loop() {
		runtime.GC()
		before := memSample()
		cmd := exec.Command(os.Args[0], "-test.run=^TestIdleClientsHelper$", "-test.v")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d %s", idleClientsEnv, n, e.wsURL()))
		stdin, _ := cmd.StdinPipe()
		stdout, _ := cmd.StdoutPipe()
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		for sc.Scan() && sc.Text() != "ready" {
		}
		waitFor(b, 30*time.Second, "the clients", func() bool { return e.gateway().Stats().Connections == n })
		time.Sleep(500 * time.Millisecond) // let writers finish and stacks settle
		runtime.GC()
		after := memSample()
		b.ReportMetric(float64(after.heap-before.heap)/n, "heap-B/client")
		b.ReportMetric(float64(after.stack-before.stack)/n, "stack-B/client")
		b.ReportMetric(float64(after.rss-before.rss)/n, "rss-B/client")
		b.ReportMetric(float64(after.goroutines-before.goroutines)/n, "goroutines/client")
		_ = stdin.Close()
		go func() { _, _ = sc.Scan(), sc.Text() }()
		_ = cmd.Wait()
		waitFor(b, 30*time.Second, "no clients", func() bool { return e.gateway().Stats().Connections == 0 })
	}
}

type memStats struct {
	heap, stack, rss int64
	goroutines       int
}

func memSample() memStats {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s := memStats{heap: int64(ms.HeapInuse), stack: int64(ms.StackInuse), goroutines: runtime.NumGoroutine()}
	if data, err := os.ReadFile("/proc/self/status"); err == nil {
		for line := range strings.Lines(string(data)) {
			if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
				s.rss = kb << 10
			}
		}
	}
	return s
}
