package embedded

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"go.uber.org/goleak"
)

func TestStartRandomPort(t *testing.T) {
	s := startServer(t, Config{})
	u, err := url.Parse(s.ClientURL())
	if err != nil {
		t.Fatalf("ClientURL %q: %v", s.ClientURL(), err)
	}
	if u.Scheme != "nats" || u.Hostname() != "127.0.0.1" || u.Port() == "" || u.Port() == "4222" {
		t.Errorf("ClientURL() = %q, want nats://127.0.0.1:<random port>", s.ClientURL())
	}
	if got := s.MonitorURL(); got != "" {
		t.Errorf("MonitorURL() = %q, want \"\" (monitoring off)", got)
	}
	nc := connectURL(t, s.ClientURL())
	kvRoundTrip(t, nc, "tcp")
}

func TestStartMemoryStoreRemovesTmpDir(t *testing.T) {
	s := startServer(t, Config{DontListen: true})
	if s.tmpDir == "" {
		t.Fatal("no temporary store dir")
	}
	kvRoundTrip(t, connectInProcess(t, s), "mem")
	if _, err := os.Stat(s.tmpDir); err != nil {
		t.Fatalf("temporary store dir while running: %v", err)
	}
	if err := s.Shutdown(t.Context()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if _, err := os.Stat(s.tmpDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary store dir after Shutdown: Stat error = %v, want not exist", err)
	}
}

func TestStoreDirSurvivesRestart(t *testing.T) {
	dir := t.TempDir()

	s1 := startServer(t, Config{DontListen: true, StoreDir: dir})
	if s1.tmpDir != "" {
		t.Errorf("tmpDir = %q with StoreDir set, want \"\"", s1.tmpDir)
	}
	nc1 := connectInProcess(t, s1)
	kvPut(t, openKV(t, nc1, "durable"), "k", "kept")
	nc1.Close()
	if err := s1.Shutdown(t.Context()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}

	s2 := startServer(t, Config{DontListen: true, StoreDir: dir})
	if got, want := kvGet(t, openKV(t, connectInProcess(t, s2), "durable"), "k"), "kept"; got != want {
		t.Errorf("after restart Get(k) = %q, want %q", got, want)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Errorf("StoreDir after Shutdown: %v (must be kept)", err)
	}
}

func TestDontListen(t *testing.T) {
	s := startServer(t, Config{DontListen: true})
	if got := s.ClientURL(); got != "" {
		t.Errorf("ClientURL() = %q, want \"\"", got)
	}
	if a := s.NATSServer().Addr(); a != nil {
		t.Errorf("listener address %v, want none", a)
	}
	nc := connectInProcess(t, s)
	if err := nc.Publish("x", nil); err != nil {
		t.Errorf("Publish: %v", err)
	}
	if err := nc.Flush(); err != nil {
		t.Errorf("Flush: %v", err)
	}
}

func TestMonitor(t *testing.T) {
	s := startServer(t, Config{DontListen: true, MonitorPort: -1})
	if !strings.HasPrefix(s.MonitorURL(), "http://127.0.0.1:") {
		t.Fatalf("MonitorURL() = %q, want http://127.0.0.1:<port>", s.MonitorURL())
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	resp, err := client.Get(s.MonitorURL() + "/varz")
	if err != nil {
		t.Fatalf("GET /varz: %v", err)
	}
	resp.Body.Close()
	if got, want := resp.StatusCode, http.StatusOK; got != want {
		t.Errorf("GET /varz: status %d, want %d", got, want)
	}
}

func TestBusyPort(t *testing.T) {
	first, err := Start(t.Context(), Config{Logger: quietLogger()})
	if err != nil {
		t.Fatalf("Start first: %v", err)
	}
	defer first.Close()
	u, _ := url.Parse(first.ClientURL())
	port, _ := strconv.Atoi(u.Port())

	second, err := Start(t.Context(), Config{Port: port, Logger: quietLogger()})
	if err == nil {
		second.Close()
		t.Fatal("second Start on a busy port succeeded")
	}
	if !errors.Is(err, ErrListen) {
		t.Errorf("error %q does not match ErrListen", err)
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("error %q does not match syscall.EADDRINUSE", err)
	}
	if addr := net.JoinHostPort("127.0.0.1", u.Port()); !strings.Contains(err.Error(), addr) {
		t.Errorf("error %q does not mention %s", err, addr)
	}

	if err := first.Close(); err != nil {
		t.Fatalf("Close first: %v", err)
	}
	goleak.VerifyNone(t)
}

func TestBusyMonitorPort(t *testing.T) {
	first := startServer(t, Config{DontListen: true, MonitorPort: -1})
	u, _ := url.Parse(first.MonitorURL())
	port, _ := strconv.Atoi(u.Port())

	// The client listener would be fine: the error must name the monitoring one.
	_, err := Start(t.Context(), Config{MonitorPort: port, Logger: quietLogger()})
	if !errors.Is(err, ErrListen) {
		t.Fatalf("Start on a busy monitor port: error %v, want ErrListen", err)
	}
	if addr := u.Host; !strings.Contains(err.Error(), addr) {
		t.Errorf("error %q does not mention %s", err, addr)
	}
}

func TestJetStreamStoreFails(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Start(t.Context(), Config{StoreDir: filepath.Join(file, "store"), Logger: quietLogger()})
	if !errors.Is(err, ErrStart) || errors.Is(err, ErrListen) {
		t.Errorf("Start with a store dir under a file: error %v, want ErrStart", err)
	}
}

func TestInvalidConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"port", Config{Port: -2}},
		{"port too big", Config{Port: 70000}},
		{"monitor port", Config{MonitorPort: -5}},
		{"memory", Config{JetStreamMaxMemory: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Start(t.Context(), tt.cfg)
			if err == nil {
				s.Close()
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("Start: error %v, want ErrInvalidConfig", err)
			}
		})
	}
}

func TestConfigureOptionsAppliedLast(t *testing.T) {
	s := startServer(t, Config{
		DontListen: true,
		ServerName: "from-config",
		ConfigureOptions: func(o *server.Options) {
			if o.ServerName != "from-config" {
				t.Errorf("ConfigureOptions sees ServerName %q, want from-config", o.ServerName)
			}
			o.ServerName = "from-hook"
		},
	})
	if got, want := s.NATSServer().Name(), "from-hook"; got != want {
		t.Errorf("server name %q, want %q", got, want)
	}
}

func TestShutdownIdempotent(t *testing.T) {
	s, err := Start(t.Context(), Config{Logger: quietLogger()})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	connectInProcess(t, s) // a client still connected does not hold Shutdown up

	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			if err := s.Shutdown(t.Context()); err != nil {
				t.Errorf("Shutdown: %v", err)
			}
		})
	}
	wg.Wait()
	if err := s.Shutdown(t.Context()); err != nil {
		t.Errorf("Shutdown again: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close after Shutdown: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close again: %v", err)
	}
	if s.NATSServer().Running() {
		t.Error("nats-server still running")
	}
	if _, err := s.Connect(); !errors.Is(err, ErrClosed) {
		t.Errorf("Connect after Shutdown: error %v, want ErrClosed", err)
	}
}

func TestShutdownContextDone(t *testing.T) {
	s := startServer(t, Config{DontListen: true})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	// Either the shutdown was already done (a fast machine) or ctx's
	// error: never blocks.
	if err := s.Shutdown(ctx); err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("Shutdown(cancelled ctx) = %v, want nil or context.Canceled", err)
	}
	if err := s.Shutdown(t.Context()); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}
