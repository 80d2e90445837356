package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/enslavism/enslavism/bus"
	"github.com/enslavism/enslavism/web"
)

// register publishes a presence entry as a slave would (without WebRTC);
// the cleanup deregisters it.
func (e *env) register(id string, userData string) *bus.Registration {
	e.t.Helper()
	js, err := jetstream.New(e.connect())
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(e.t.Context(), 5*time.Second)
	defer cancel()
	p, err := bus.OpenPresence(ctx, js, testPresence)
	if err != nil {
		e.t.Fatal(err)
	}
	r, err := p.Register(ctx, bus.SlaveInfo{ID: id, UserData: json.RawMessage(userData)}, bus.RegisterOptions{})
	if err != nil {
		e.t.Fatalf("Register(%s): %v", id, err)
	}
	e.t.Cleanup(func() { _ = r.Deregister(context.Background()) })
	return r
}

func TestHelloAndSlaveEvents(t *testing.T) {
	ice := []ICEServer{{URLs: []string{"stun:stun.example.test:3478"}}, {URLs: []string{"turn:turn.example.test"}, Username: "u", Credential: "p"}}
	e := newEnv(t, Config{ID: "gw-1", ICEServers: ice})
	e.register("b", `{"n":1}`)
	e.register("a", `"plain"`)
	waitFor(t, 5*time.Second, "two slaves", func() bool { return e.gateway().Stats().Slaves == 2 })

	c, _, err := dial(t, e.wsURL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	hello := c.expect(TypeHello)
	if want := `{"type":"hello","version":1,"gateway":"gw-1","iceServers":[{"urls":["stun:stun.example.test:3478"]},{"urls":["turn:turn.example.test"],"username":"u","credential":"p"}]}`; hello.raw != want {
		t.Errorf("hello = %s\nwant    %s", hello.raw, want)
	}
	if got, want := c.expect(TypeSlaves).raw, `{"type":"slaves","slaves":[{"id":"a","userData":"plain"},{"id":"b","userData":{"n":1}}]}`; got != want {
		t.Errorf("slaves = %s, want %s", got, want)
	}

	ctx := t.Context()
	r := e.register("c", `null`)
	if got, want := c.expect(TypeSlaveAdded).raw, `{"type":"slaveadded","slave":{"id":"c","userData":null}}`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	if err := r.SetUserData(ctx, json.RawMessage(`{"players":3}`)); err != nil {
		t.Fatal(err)
	}
	if got, want := c.expect(TypeSlaveUpdated).raw, `{"type":"slaveupdated","slave":{"id":"c","userData":{"players":3}}}`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	// Heartbeats (every TTL/3) change nothing and reach no browser.
	c.expectNothing(testPresence.TTL)
	if err := r.Deregister(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := c.expect(TypeSlaveRemoved).raw, `{"type":"slaveremoved","id":"c"}`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	// A crashed slave (heartbeats stop) is removed within the TTL.
	crashed := e.register("d", `1`)
	c.expect(TypeSlaveAdded)
	crashed.Stop()
	start := time.Now()
	if f := c.expect(TypeSlaveRemoved); f.ID != "d" {
		t.Errorf("got %v, want slaveremoved d", f)
	}
	t.Logf("crashed slave removed after %v", time.Since(start).Round(time.Millisecond))
}

// TestFanOutConsistency connects browsers while the list changes: each one's
// snapshot plus its events must equal the final list, with no event lost or
// duplicated between the snapshot and the stream.
func TestFanOutConsistency(t *testing.T) {
	e := newEnv(t, Config{})
	var wg sync.WaitGroup
	type view struct {
		c    *wsClient
		list map[string]bool
	}
	views := make(chan view, 40)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 20 {
			c, list := e.mustDial(nil)
			m := map[string]bool{}
			for _, s := range list {
				m[s.ID] = true
			}
			views <- view{c, m}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	var regs []*bus.Registration
	for i := range 10 {
		regs = append(regs, e.register("s"+string(rune('a'+i)), `0`))
	}
	for _, r := range regs[:4] {
		if err := r.Deregister(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	close(views)
	waitFor(t, 5*time.Second, "6 slaves", func() bool { return e.gateway().Stats().Slaves == 6 })
	want := "se,sf,sg,sh,si,sj"
	for v := range views {
		deadline := time.Now().Add(3 * time.Second)
		for join(v.list) != want && time.Now().Before(deadline) {
			f, ok := v.c.next(time.Until(deadline))
			if !ok {
				break
			}
			switch f.Type {
			case TypeSlaveAdded:
				if v.list[f.Slave.ID] {
					t.Errorf("duplicate slaveadded %s", f.Slave.ID)
				}
				v.list[f.Slave.ID] = true
			case TypeSlaveRemoved:
				if !v.list[f.ID] {
					t.Errorf("slaveremoved %s, which was not listed", f.ID)
				}
				delete(v.list, f.ID)
			}
		}
		if got := join(v.list); got != want {
			t.Errorf("a browser's list = %s, want %s", got, want)
		}
	}
}

func join(m map[string]bool) string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return strings.Join(out, ",")
}

func TestAssets(t *testing.T) {
	e := newEnv(t, Config{})
	for _, tc := range []struct {
		path, contentType string
		body              []byte
	}{
		{"/enslavism/client.js", "text/javascript; charset=utf-8", web.ClassicScript()},
		{"/enslavism/client.mjs", "text/javascript; charset=utf-8", web.Module()},
		{"/enslavism/client.d.ts", "application/typescript; charset=utf-8", web.TypeScript()},
	} {
		resp, err := http.Get(e.http.URL + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != tc.contentType || string(body) != string(tc.body) {
			t.Errorf("GET %s = %d %q (%d bytes), want 200 %q (%d bytes)", tc.path, resp.StatusCode, resp.Header.Get("Content-Type"), len(body), tc.contentType, len(tc.body))
		}
		etag := resp.Header.Get("ETag")
		req, _ := http.NewRequest(http.MethodGet, e.http.URL+tc.path, nil)
		req.Header.Set("If-None-Match", etag)
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if etag == "" || resp.StatusCode != http.StatusNotModified {
			t.Errorf("GET %s with If-None-Match %s = %d, want 304", tc.path, etag, resp.StatusCode)
		}
	}
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/enslavism/nothing", 404},
		{"POST", "/enslavism/client.js", 405},
		{"HEAD", "/enslavism/client.js", 200},
		{"GET", "/enslavism/clients", http.StatusUpgradeRequired},
	} {
		req, _ := http.NewRequest(tc.method, e.http.URL+tc.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s %s = %d, want %d", tc.method, tc.path, resp.StatusCode, tc.want)
		}
	}
}

func TestOrigins(t *testing.T) {
	for _, tc := range []struct {
		name    string
		allowed []string
		origin  string
		ok      bool
	}{
		{"no origin", nil, "", true},
		{"same origin", nil, "http://HOST", true},
		{"other origin", nil, "http://evil.example", false},
		{"listed", []string{"https://game.example"}, "https://GAME.example", true},
		{"not listed", []string{"https://game.example"}, "http://HOST", false},
		{"any", []string{"*"}, "http://evil.example", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Config{AllowedOrigins: tc.allowed})
			h := http.Header{}
			if tc.origin != "" {
				h.Set("Origin", strings.Replace(tc.origin, "HOST", strings.TrimPrefix(e.http.URL, "http://"), 1))
			}
			_, resp, err := dial(t, e.wsURL(), h)
			if tc.ok && err != nil {
				t.Fatalf("dial: %v", err)
			}
			if !tc.ok && (err == nil || resp == nil || resp.StatusCode != http.StatusForbidden) {
				t.Fatalf("dial: %v (%v), want 403", err, resp)
			}
		})
	}
}

func TestClientAuth(t *testing.T) {
	var errs []error
	var mu sync.Mutex
	e := newEnv(t, Config{
		ClientAuth: func(r *http.Request) (any, error) {
			switch r.URL.Query().Get("token") {
			case "good":
				return map[string]any{"user": "alice"}, nil
			case "anonymous":
				return nil, nil
			case "banned":
				return nil, Reject(http.StatusForbidden, "you are banned")
			case "broken":
				return nil, errors.New("database down")
			case "huge":
				return strings.Repeat("x", bus.MaxIdentitySize), nil
			}
			if c, err := r.Cookie("session"); err == nil && c.Value == "s3cret" {
				return "cookie-user", nil
			}
			return nil, Reject(0, "log in first")
		},
		OnError: func(err error) {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		},
	})
	for _, tc := range []struct {
		query, cookie string
		status        int
		body          string
	}{
		{"?token=good", "", 101, ""},
		{"?token=anonymous", "", 101, ""},
		{"", "s3cret", 101, ""},
		{"", "", 401, "log in first\n"},
		{"?token=banned", "", 403, "you are banned\n"},
		{"?token=broken", "", 500, "gateway: authentication failed\n"},
		{"?token=huge", "", 500, "gateway: authentication failed\n"},
	} {
		h := http.Header{}
		if tc.cookie != "" {
			h.Set("Cookie", "session="+tc.cookie)
		}
		c, resp, err := dial(t, e.wsURL()+tc.query, h)
		if tc.status == 101 {
			if err != nil {
				t.Errorf("%s %s: %v", tc.query, tc.cookie, err)
				continue
			}
			c.expect(TypeHello)
			continue
		}
		if err == nil || resp == nil {
			t.Errorf("%s: connected, want %d", tc.query, tc.status)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != tc.status || string(body) != tc.body {
			t.Errorf("%s %s: %d %q, want %d %q", tc.query, tc.cookie, resp.StatusCode, body, tc.status, tc.body)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(errs) != 2 {
		t.Errorf("OnError got %v, want the 2 failures that are not rejections", errs)
	}
	if st := e.gateway().Stats(); st.Refused != 4 || st.Accepted != 3 {
		t.Errorf("Stats = %+v, want 4 refused, 3 accepted", st)
	}
	if !errors.Is(Reject(403, "x"), bus.ErrUnauthorized) {
		t.Error("a Rejection does not match bus.ErrUnauthorized")
	}
}

func TestMaxConnections(t *testing.T) {
	e := newEnv(t, Config{MaxConnections: 2})
	first, _ := e.mustDial(nil)
	e.mustDial(nil)
	c, _, err := dial(t, e.wsURL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	c.expectError(bus.CodeTooMany, "")
	if code := c.expectClose(5 * time.Second); code != websocket.CloseTryAgainLater {
		t.Errorf("close code %d, want %d", code, websocket.CloseTryAgainLater)
	}
	first.close()
	waitFor(t, 5*time.Second, "a free slot", func() bool { return e.gateway().Stats().Connections == 1 })
	e.mustDial(nil)
}

// TestSlowConsumer fills the socket of a browser that stops reading: the
// gateway drops it and counts it, and the other browsers get every event
// meanwhile.
func TestSlowConsumer(t *testing.T) {
	var reasons sync.Map
	e := newEnv(t, Config{SendQueue: 4, WriteTimeout: 500 * time.Millisecond, OnDisconnect: func(c *Client, err error) {
		reasons.Store(c.ID, err)
	}})
	// A tiny receive buffer on the slow browser's socket, so that the
	// gateway's writes block soon.
	control := smallReceiveBuffer()
	if control == nil {
		t.Skip("no way to shrink a socket's receive buffer on this system")
	}
	d := websocket.Dialer{NetDialContext: (&net.Dialer{Control: control}).DialContext}
	slow, _, err := d.Dial(e.wsURL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	fast, _ := e.mustDial(nil)
	waitFor(t, 5*time.Second, "two browsers", func() bool { return e.gateway().Stats().Connections == 2 })

	r := e.register("big", `0`)
	fast.expect(TypeSlaveAdded)
	big := json.RawMessage(`"` + strings.Repeat("x", 8<<10) + `"`)
	for i := 0; e.gateway().Stats().SlowConsumers == 0; i++ {
		if i == 2000 {
			t.Fatal("the slow browser was never dropped")
		}
		big[1] = byte('a' + i%26)
		if err := r.SetUserData(t.Context(), big); err != nil {
			t.Fatal(err)
		}
		if f := fast.expect(TypeSlaveUpdated); f.Slave.UserData[1] != big[1] {
			t.Fatalf("the fast browser got %s…", f.Slave.UserData[:8])
		}
	}
	waitFor(t, 5*time.Second, "the slow browser gone", func() bool { return e.gateway().Stats().Connections == 1 })
	found := false
	reasons.Range(func(_, v any) bool {
		found = found || errors.Is(v.(error), ErrSlowConsumer)
		return true
	})
	if !found {
		t.Error("OnDisconnect did not get ErrSlowConsumer")
	}
}

func TestKeepalive(t *testing.T) {
	var keepalive atomic.Bool
	e := newEnv(t, Config{PingInterval: 250 * time.Millisecond, OnDisconnect: func(_ *Client, err error) {
		keepalive.Store(errors.Is(err, ErrKeepalive))
	}})
	alive, _ := e.mustDial(nil)
	deaf, _, err := dial(t, e.wsURL(), nil, func(ws *websocket.Conn) {
		ws.SetPingHandler(func(string) error { return nil }) // never pongs
	})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	deaf.expectClose(3 * time.Second)
	waitFor(t, 2*time.Second, "OnDisconnect", keepalive.Load)
	t.Logf("the deaf browser was dropped after %v (2 ping intervals: 500ms)", time.Since(start).Round(time.Millisecond))
	// The browser that answers pings stays connected.
	time.Sleep(750 * time.Millisecond)
	if alive.readErr() != nil || e.gateway().Stats().Connections != 1 {
		t.Errorf("the live browser was dropped: %v, %+v", alive.readErr(), e.gateway().Stats())
	}
}

func TestShutdown(t *testing.T) {
	var mu sync.Mutex
	var reasons []error
	var connects atomic.Int32
	e := newEnv(t, Config{
		OnConnect: func(*Client) { connects.Add(1) },
		OnDisconnect: func(_ *Client, err error) {
			mu.Lock()
			reasons = append(reasons, err)
			mu.Unlock()
		},
	})
	g := e.gateway()
	var clients []*wsClient
	for range 3 {
		c, _ := e.mustDial(nil)
		clients = append(clients, c)
	}
	waitFor(t, 5*time.Second, "OnConnect", func() bool { return connects.Load() == 3 })
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := g.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	for _, c := range clients {
		if code := c.expectClose(time.Second); code != websocket.CloseGoingAway {
			t.Errorf("close code %d, want 1001", code)
		}
	}
	mu.Lock()
	if len(reasons) != 3 || !errors.Is(reasons[0], ErrShutdown) {
		t.Errorf("OnDisconnect reasons %v, want 3 × ErrShutdown", reasons)
	}
	mu.Unlock()
	_, resp, err := dial(t, e.wsURL(), nil)
	if err == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("dial after Shutdown: %v, want 503", err)
	}
	if err := g.Shutdown(ctx); err != nil {
		t.Errorf("second Shutdown = %v, want nil", err)
	}
	if err := g.Close(); err != nil {
		t.Errorf("Close after Shutdown = %v", err)
	}
}

func TestCloseCutsEverything(t *testing.T) {
	e := newEnv(t, Config{})
	g := e.gateway()
	c, _ := e.mustDial(nil)
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	c.expectClose(2 * time.Second)
	if err := g.Shutdown(t.Context()); !errors.Is(err, ErrClosed) {
		t.Errorf("Shutdown after Close = %v, want ErrClosed", err)
	}
	if err := g.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

func TestNewErrors(t *testing.T) {
	e := newEnv(t, Config{})
	for _, cfg := range []Config{
		{ID: "bad id"},
		{Subjects: bus.Subjects{Prefix: "a.b"}},
		{OfferTimeout: -1},
		{MaxConnections: -1},
		{ICEServers: []ICEServer{{}}},
	} {
		if _, err := New(t.Context(), e.nc, cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("New(%+v) = %v, want ErrInvalidConfig", cfg, err)
		}
	}
	if _, err := New(t.Context(), nil, Config{}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("New(nil conn) = %v, want ErrInvalidConfig", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := New(ctx, e.nc, Config{}); err == nil {
		t.Error("New with a cancelled context succeeded")
	}
}
