package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"
	"github.com/pion/webrtc/v4"

	"github.com/enslavism/enslavism/bus"
	"github.com/enslavism/enslavism/embedded"
	"github.com/enslavism/enslavism/slave"
)

// testLogger discards logs unless ENSLAVISM_TEST_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("ENSLAVISM_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// testPresence is the presence config of the tests: a 1 s TTL, so that a
// crashed slave leaves within about a second.
var testPresence = bus.PresenceConfig{TTL: time.Second}

// env is a test deployment: an embedded NATS server, a gateway on its own
// connection, and an HTTP server on 127.0.0.1 serving the gateway under
// /enslavism/ and test pages under /.
type env struct {
	t    testing.TB
	srv  *embedded.Server
	nc   *nats.Conn // the gateway's connection
	http *httptest.Server
	mux  *http.ServeMux

	gw atomic.Pointer[Gateway] // nil while the gateway is down
}

func newEnv(t testing.TB, cfg Config) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	srv, err := embedded.Start(ctx, embedded.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("embedded.Start: %v", err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	e := &env{t: t, srv: srv, mux: http.NewServeMux()}
	e.nc = e.connect()
	e.mux.HandleFunc("/enslavism/", func(w http.ResponseWriter, r *http.Request) {
		if g := e.gw.Load(); g != nil {
			g.ServeHTTP(w, r)
			return
		}
		http.Error(w, "gateway down", http.StatusServiceUnavailable)
	})
	e.http = httptest.NewServer(e.mux)
	t.Cleanup(e.http.Close)
	e.startGateway(cfg)
	return e
}

// connect opens a NATS connection that the test's cleanup closes.
func (e *env) connect() *nats.Conn {
	e.t.Helper()
	nc, err := e.srv.Connect()
	if err != nil {
		e.t.Fatalf("Connect: %v", err)
	}
	e.t.Cleanup(nc.Close)
	return nc
}

// startGateway starts a gateway and mounts it; the cleanup closes it.
func (e *env) startGateway(cfg Config) *Gateway {
	e.t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger()
	}
	if cfg.Presence == (bus.PresenceConfig{}) {
		cfg.Presence = testPresence
	}
	ctx, cancel := context.WithTimeout(e.t.Context(), 10*time.Second)
	defer cancel()
	g, err := New(ctx, e.nc, cfg)
	if err != nil {
		e.t.Fatalf("New: %v", err)
	}
	e.t.Cleanup(func() { _ = g.Close() })
	e.gw.Store(g)
	return g
}

// stopGateway unmounts the gateway and shuts it down.
func (e *env) stopGateway() {
	e.t.Helper()
	g := e.gw.Swap(nil)
	if g == nil {
		return
	}
	ctx, cancel := context.WithTimeout(e.t.Context(), 5*time.Second)
	defer cancel()
	if err := g.Shutdown(ctx); err != nil {
		e.t.Errorf("Shutdown: %v", err)
	}
}

func (e *env) gateway() *Gateway { return e.gw.Load() }

func (e *env) wsURL() string {
	return "ws" + strings.TrimPrefix(e.http.URL, "http") + "/enslavism/clients"
}

// startSlave starts a real slave on its own NATS connection; the cleanup
// closes both. handler nil means an echo handler.
func (e *env) startSlave(cfg slave.Config) (*slave.Slave, *nats.Conn) {
	e.t.Helper()
	nc, err := e.srv.Connect()
	if err != nil {
		e.t.Fatalf("Connect: %v", err)
	}
	if cfg.Handler == nil {
		cfg.Handler = echoHandler
	}
	cfg.ICE.Loopback = true
	if cfg.Logger == nil {
		cfg.Logger = testLogger()
	}
	cfg.Presence = testPresence
	ctx, cancel := context.WithTimeout(e.t.Context(), 10*time.Second)
	defer cancel()
	s, err := slave.Start(ctx, nc, cfg)
	if err != nil {
		nc.Close()
		e.t.Fatalf("slave.Start: %v", err)
	}
	e.t.Cleanup(func() {
		_ = s.Close()
		nc.Close()
	})
	return s, nc
}

// echoHandler echoes every message on every channel, prefixed with the
// channel's label.
var echoHandler = slave.HandlerFunc(func(ctx context.Context, c *slave.Client) {
	c.OnDataChannel(func(dc *webrtc.DataChannel) {
		dc.OnMessage(func(m webrtc.DataChannelMessage) {
			if m.IsString {
				_ = dc.SendText(dc.Label() + ":" + string(m.Data))
			} else {
				_ = dc.Send(m.Data)
			}
		})
	})
	<-ctx.Done()
})

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// frame is any gateway → browser message, as a test reads it.
type frame struct {
	Type       string          `json:"type"`
	Version    int             `json:"version"`
	Gateway    string          `json:"gateway"`
	ICEServers []ICEServer     `json:"iceServers"`
	Slaves     []slaveJSON     `json:"slaves"`
	Slave      *slaveJSON      `json:"slave"`
	ID         string          `json:"id"`
	Session    string          `json:"session"`
	SDP        string          `json:"sdp"`
	Reason     string          `json:"reason"`
	Code       bus.Code        `json:"code"`
	Message    string          `json:"message"`
	Candidate  json.RawMessage `json:"candidate"`

	raw string
}

func (f frame) String() string { return f.raw }

// wsClient is a Go browser-protocol client: a reader goroutine decodes
// frames and routes those of a registered session to that session's channel,
// the others to frames.
type wsClient struct {
	t      testing.TB
	ws     *websocket.Conn
	frames chan frame
	done   chan struct{}
	err    error // why the reader ended; read after done

	wmu sync.Mutex // one writer at a time

	mu       sync.Mutex
	sessions map[string]chan frame
}

// dial opens a WebSocket to url with header; setup, if any, runs before
// the reader starts. The cleanup closes it.
func dial(t testing.TB, url string, header http.Header, setup ...func(*websocket.Conn)) (*wsClient, *http.Response, error) {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	ws, resp, err := d.Dial(url, header)
	if err != nil {
		return nil, resp, err
	}
	for _, f := range setup {
		f(ws)
	}
	c := &wsClient{t: t, ws: ws, frames: make(chan frame, 1024), done: make(chan struct{}), sessions: map[string]chan frame{}}
	go c.read()
	t.Cleanup(c.close)
	return c, resp, nil
}

// mustDial dials the env's gateway and checks hello and the slave list.
func (e *env) mustDial(header http.Header) (*wsClient, []slaveJSON) {
	e.t.Helper()
	c, _, err := dial(e.t, e.wsURL(), header)
	if err != nil {
		e.t.Fatalf("dial: %v", err)
	}
	hello := c.expect(TypeHello)
	if hello.Gateway != e.gateway().ID() || hello.Version != ProtocolVersion {
		e.t.Fatalf("hello = %v, want gateway %s version %d", hello, e.gateway().ID(), ProtocolVersion)
	}
	return c, c.expect(TypeSlaves).Slaves
}

func (c *wsClient) read() {
	defer close(c.done)
	defer close(c.frames)
	for {
		_, data, err := c.ws.ReadMessage()
		if err != nil {
			c.err = err
			return
		}
		var f frame
		if err := json.Unmarshal(data, &f); err != nil {
			c.err = fmt.Errorf("gateway sent invalid JSON %q: %w", data, err)
			return
		}
		f.raw = string(data)
		c.mu.Lock()
		ch := c.sessions[f.Session]
		c.mu.Unlock()
		if ch != nil && f.Session != "" {
			select {
			case ch <- f:
			default:
				c.err = fmt.Errorf("session %s: frame dropped", f.Session)
			}
			continue
		}
		c.frames <- f
	}
}

func (c *wsClient) close() {
	_ = c.ws.Close()
	<-c.done
}

// session registers a session's own frame channel.
func (c *wsClient) session(id string) chan frame {
	ch := make(chan frame, 256)
	c.mu.Lock()
	c.sessions[id] = ch
	c.mu.Unlock()
	return ch
}

func (c *wsClient) endSession(id string) {
	c.mu.Lock()
	delete(c.sessions, id)
	c.mu.Unlock()
}

func (c *wsClient) send(v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return c.sendRaw(websocket.TextMessage, data)
}

func (c *wsClient) sendRaw(typ int, data []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
	return c.ws.WriteMessage(typ, data)
}

func (c *wsClient) mustSend(v any) {
	c.t.Helper()
	if err := c.send(v); err != nil {
		c.t.Fatalf("send %v: %v", v, err)
	}
}

// next returns the next unrouted frame, or ok=false on timeout or close.
func (c *wsClient) next(timeout time.Duration) (frame, bool) {
	select {
	case f, ok := <-c.frames:
		return f, ok
	case <-time.After(timeout):
		return frame{}, false
	}
}

// expect returns the next unrouted frame and fails unless it has type typ.
func (c *wsClient) expect(typ string) frame {
	c.t.Helper()
	f, ok := c.next(5 * time.Second)
	if !ok {
		c.t.Fatalf("waiting for %s: no frame (reader: %v)", typ, c.readErr())
	}
	if f.Type != typ {
		c.t.Fatalf("got %v, want a %s frame", f, typ)
	}
	return f
}

// expectError expects an error frame with code (and session, when not "").
func (c *wsClient) expectError(code bus.Code, session string) frame {
	c.t.Helper()
	f := c.expect(TypeError)
	if f.Code != code || f.Session != session || f.Message == "" {
		c.t.Fatalf("got %v, want error code %s session %q with a message", f, code, session)
	}
	return f
}

// expectNothing fails if a frame arrives within d.
func (c *wsClient) expectNothing(d time.Duration) {
	c.t.Helper()
	if f, ok := c.next(d); ok {
		c.t.Fatalf("unexpected frame %v", f)
	}
}

// expectClose waits until the gateway closes the connection and returns the
// close code (-1 if the connection ended without a close frame).
func (c *wsClient) expectClose(timeout time.Duration) int {
	c.t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case <-c.frames:
		case <-c.done:
			var ce *websocket.CloseError
			if errors.As(c.err, &ce) {
				return ce.Code
			}
			return -1
		case <-deadline:
			c.t.Fatalf("the gateway did not close the connection within %v", timeout)
		}
	}
}

func (c *wsClient) readErr() error {
	select {
	case <-c.done:
		return c.err
	default:
		return nil
	}
}
