package faults

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// buildBin builds the main package pkg (relative to the module root) into a
// temporary directory.
func buildBin(t *testing.T, pkg string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	return bin
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// proc is a child process the cleanup kills.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func startProc(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "ENSLAVISM_LOG_LEVEL=warn")
	if os.Getenv("ENSLAVISM_TEST_LOG") != "" {
		cmd.Stderr = os.Stderr
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(p.kill)
	return p
}

func (p *proc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// TestAllInOneRestart runs the all-in-one binary (embedded NATS + gateway)
// and examples/echo as processes, SIGKILLs the all-in-one binary and starts
// it again on the same ports: the slave process reconnects to the new
// embedded server (an empty, in-memory bucket) and is listed again, and a
// browser connects to it through the new gateway.
func TestAllInOneRestart(t *testing.T) {
	allInOne := buildBin(t, "./cmd/enslavism")
	echoBin := buildBin(t, "./examples/echo")
	httpAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	natsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	args := []string{"-addr", httpAddr, "-nats-addr", natsAddr, "-presence-ttl", "2s"}
	healthy := func() bool {
		resp, err := http.Get("http://" + httpAddr + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	ws := "ws://" + httpAddr + "/enslavism/clients"

	server := startProc(t, allInOne, args...)
	waitFor(t, 15*time.Second, "the all-in-one binary healthy", healthy)
	startProc(t, echoBin, "-nats", "nats://"+natsAddr, "-id", "restart-echo", "-loopback")
	b := mustDial(t, ws)
	waitFor(t, 10*time.Second, "the echo process listed", func() bool { return b.has("restart-echo") })

	killed := time.Now()
	server.kill()
	startProc(t, allInOne, args...)
	d := waitFor(t, 15*time.Second, "the restarted binary healthy", healthy)
	t.Logf("all-in-one binary healthy again %v after the restart began", d.Round(time.Millisecond))
	b2 := mustDial(t, ws)
	waitFor(t, 10*time.Second, "the echo process listed by the new instance", func() bool { return b2.has("restart-echo") })
	t.Logf("echo process listed by the restarted instance %v after the kill (bound 25s; nats.go reconnects every 2 s by default)", time.Since(killed).Round(time.Millisecond))

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	p, err := connect(ctx, b2, "restart-echo")
	if err != nil {
		t.Fatalf("connect after the restart: %v", err)
	}
	defer p.close()
	if err := p.roundTrip(5*time.Second, "after restart"); err != nil {
		t.Fatal(err)
	}
}
