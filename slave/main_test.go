package slave_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"

	"github.com/enslavism/enslavism/embedded"
	"github.com/enslavism/enslavism/slave"
)

func TestMain(m *testing.M) {
	if os.Getenv(benchChildEnv) != "" {
		os.Exit(benchChild())
	}
	goleak.VerifyTestMain(m)
}

// testLogger discards logs unless SLAVE_TEST_LOG is set (to "debug" for
// everything, pion included).
func testLogger() *slog.Logger {
	switch os.Getenv("SLAVE_TEST_LOG") {
	case "":
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	case "debug":
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	default:
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
}

func testCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// startServer starts an embedded nats-server with JetStream on a random
// port of 127.0.0.1, shut down at cleanup.
func startServer(t testing.TB) *embedded.Server {
	t.Helper()
	srv, err := embedded.Start(testCtx(t, 10*time.Second), embedded.Config{Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv
}

// connect opens an in-process connection to srv, closed at cleanup.
func connect(t testing.TB, srv *embedded.Server, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := srv.Connect(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// startSlave starts a slave in loopback mode with cfg, closed at cleanup.
func startSlave(t testing.TB, nc *nats.Conn, cfg slave.Config) *slave.Slave {
	t.Helper()
	cfg.ICE.Loopback = true
	if cfg.Logger == nil {
		cfg.Logger = testLogger()
	}
	if cfg.Handler == nil {
		cfg.Handler = echoHandler()
	}
	s, err := slave.Start(testCtx(t, 10*time.Second), nc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// echoHandler echoes every message on every channel.
func echoHandler() slave.Handler {
	return slave.HandlerFunc(func(ctx context.Context, c *slave.Client) {
		c.OnDataChannel(echo)
		<-ctx.Done()
	})
}

func echo(dc *webrtc.DataChannel) {
	dc.OnMessage(func(m webrtc.DataChannelMessage) {
		if m.IsString {
			_ = dc.SendText(string(m.Data))
		} else {
			_ = dc.Send(m.Data)
		}
	})
}

// eventually polls cond every 10 ms until it holds or d passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
