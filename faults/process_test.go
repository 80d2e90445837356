package faults

import (
	"context"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/enslavism/enslavism/bus"
	"github.com/enslavism/enslavism/embedded"
	"github.com/enslavism/enslavism/gateway"
)

// TestSlaveProcessKilled runs examples/echo as a real process against an
// embedded NATS server, connects to it through a gateway, then SIGKILLs it:
// the browser's list drops it within the presence TTL (+1 s), with no
// deregistration to help.
func TestSlaveProcessKilled(t *testing.T) {
	const ttl = 2 * time.Second
	bin := buildBin(t, "./examples/echo")

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	srv, err := embedded.Start(ctx, embedded.Config{Logger: testLogger()})
	if err != nil {
		t.Fatalf("embedded.Start: %v", err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	nc, err := srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	// The gateway comes first and creates the bucket with the test's TTL.
	g, err := gateway.New(ctx, nc, gateway.Config{Presence: bus.PresenceConfig{TTL: ttl}, Logger: testLogger()})
	if err != nil {
		t.Fatalf("gateway.New: %v", err)
	}
	t.Cleanup(func() { _ = g.Close() })
	hs := httptest.NewServer(g)
	t.Cleanup(hs.Close)
	b := mustDial(t, "ws"+strings.TrimPrefix(hs.URL, "http")+"/enslavism/clients")

	cmd := exec.Command(bin, "-nats", srv.ClientURL(), "-id", "proc-echo", "-name", "process", "-loopback")
	if testing.Verbose() || os.Getenv("ENSLAVISM_TEST_LOG") != "" {
		cmd.Stderr = os.Stderr
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	d := waitFor(t, 10*time.Second, "the echo process listed", func() bool { return b.has("proc-echo") })
	t.Logf("echo process listed %v after start", d.Round(time.Millisecond))

	cctx, ccancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer ccancel()
	p, err := connect(cctx, b, "proc-echo")
	if err != nil {
		t.Fatalf("connect to the echo process: %v", err)
	}
	defer p.close()
	if err := p.roundTrip(5*time.Second, "hello process"); err != nil {
		t.Fatal(err)
	}
	// Its OnClientsChange publishes the count; wait for it so that no update
	// is in flight at the kill.
	waitFor(t, 5*time.Second, "clients:1 in userData", func() bool { return strings.Contains(b.userData("proc-echo"), `"clients":1`) })

	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	d = waitFor(t, ttl+time.Second, "the killed process to leave the list", func() bool { return !b.has("proc-echo") })
	t.Logf("SIGKILLed echo process left the browser's list %v after the kill (TTL %v, bound TTL+1s)", d.Round(time.Millisecond), ttl)
	<-exited
	if waitErr == nil {
		t.Error("the echo process exited cleanly after SIGKILL?")
	}
	if n := b.removals("proc-echo"); n != 1 {
		t.Errorf("%d slaveremoved for proc-echo, want 1", n)
	}
}
