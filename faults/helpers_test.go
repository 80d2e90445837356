package faults

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"

	"github.com/enslavism/enslavism/bus"
	"github.com/enslavism/enslavism/gateway"
)

// testLogger discards logs unless ENSLAVISM_TEST_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("ENSLAVISM_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// waitFor polls cond every 5 ms until it holds and returns how long that
// took, or fails the test after timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

// frame is any gateway → browser message.
type frame struct {
	Type      string          `json:"type"`
	Gateway   string          `json:"gateway"`
	Slaves    []slaveJSON     `json:"slaves"`
	Slave     *slaveJSON      `json:"slave"`
	ID        string          `json:"id"`
	Session   string          `json:"session"`
	SDP       string          `json:"sdp"`
	Reason    string          `json:"reason"`
	Code      bus.Code        `json:"code"`
	Message   string          `json:"message"`
	Candidate json.RawMessage `json:"candidate"`

	raw string
}

type slaveJSON struct {
	ID       string          `json:"id"`
	UserData json.RawMessage `json:"userData"`
}

// browser is a Go client of the browser protocol: it keeps the slave list
// the way the browser library does (snapshot, then added/updated/removed),
// records every list event, and routes session frames to the session's
// channel.
type browser struct {
	t  testing.TB
	ws *websocket.Conn

	done chan struct{}
	err  error // why the reader ended; read after done

	wmu sync.Mutex

	mu       sync.Mutex
	hello    frame
	synced   bool                       // the snapshot arrived
	list     map[string]json.RawMessage // id → userData
	events   []frame                    // every list frame, in order
	others   []frame                    // error frames without a known session
	sessions map[string]chan frame
}

// dialBrowser opens the WebSocket; the cleanup closes it.
func dialBrowser(t testing.TB, url string, header http.Header) (*browser, *http.Response, error) {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	ws, resp, err := d.Dial(url, header)
	if err != nil {
		return nil, resp, err
	}
	b := &browser{t: t, ws: ws, done: make(chan struct{}), list: map[string]json.RawMessage{}, sessions: map[string]chan frame{}}
	go b.read()
	t.Cleanup(b.close)
	return b, resp, nil
}

// mustDial dials and waits for hello and the snapshot.
func mustDial(t testing.TB, url string) *browser {
	t.Helper()
	b, _, err := dialBrowser(t, url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	waitFor(t, 5*time.Second, "hello and the slave list", b.isSynced)
	return b
}

func (b *browser) read() {
	defer close(b.done)
	for {
		_, data, err := b.ws.ReadMessage()
		if err != nil {
			b.err = err
			return
		}
		var f frame
		if err := json.Unmarshal(data, &f); err != nil {
			b.err = fmt.Errorf("invalid JSON %q: %w", data, err)
			return
		}
		f.raw = string(data)
		b.mu.Lock()
		switch f.Type {
		case gateway.TypeHello:
			b.hello = f
		case gateway.TypeSlaves:
			b.list = map[string]json.RawMessage{}
			for _, s := range f.Slaves {
				b.list[s.ID] = s.UserData
			}
			b.synced = true
			b.events = append(b.events, f)
		case gateway.TypeSlaveAdded, gateway.TypeSlaveUpdated:
			b.list[f.Slave.ID] = f.Slave.UserData
			b.events = append(b.events, f)
		case gateway.TypeSlaveRemoved:
			delete(b.list, f.ID)
			b.events = append(b.events, f)
		default:
			if ch := b.sessions[f.Session]; ch != nil && f.Session != "" {
				select {
				case ch <- f:
				default:
				}
			} else {
				b.others = append(b.others, f)
			}
		}
		b.mu.Unlock()
	}
}

func (b *browser) close() {
	_ = b.ws.Close()
	<-b.done
}

func (b *browser) isSynced() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.synced
}

// has reports whether id is listed.
func (b *browser) has(id string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, ok := b.list[id]
	return ok
}

// userData returns id's userData as listed.
func (b *browser) userData(id string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.list[id])
}

// snapshot returns the list: id → userData.
func (b *browser) snapshot() map[string]string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string]string, len(b.list))
	for k, v := range b.list {
		out[k] = string(v)
	}
	return out
}

// removals counts the slaveremoved frames for id so far.
func (b *browser) removals(id string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, f := range b.events {
		if f.Type == gateway.TypeSlaveRemoved && f.ID == id {
			n++
		}
	}
	return n
}

func (b *browser) send(v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	b.wmu.Lock()
	defer b.wmu.Unlock()
	_ = b.ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
	return b.ws.WriteMessage(websocket.TextMessage, data)
}

func (b *browser) session(id string) chan frame {
	ch := make(chan frame, 256)
	b.mu.Lock()
	b.sessions[id] = ch
	b.mu.Unlock()
	return ch
}

func (b *browser) endSession(id string) {
	b.mu.Lock()
	delete(b.sessions, id)
	b.mu.Unlock()
}

// loopbackAPI is a pion API that connects on a loopback-only machine
// (FIELD-NOTES.md): UDP4 on 127.0.0.1, loopback candidates, no mDNS.
func loopbackAPI() *webrtc.API {
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	return webrtc.NewAPI(webrtc.WithSettingEngine(se))
}

// peer is what the browser library does, in Go: one pion peer connection
// with the pre-negotiated control channel and one user channel "echo".
type peer struct {
	pc   *webrtc.PeerConnection
	echo *webrtc.DataChannel
	in   chan string // messages received on echo
}

func (p *peer) close() {
	if p != nil && p.pc != nil {
		_ = p.pc.Close()
	}
}

// signalError is a rejected or error frame for the session.
type signalError struct{ f frame }

func (e *signalError) Error() string { return "signaling: " + e.f.raw }

// errWebSocketClosed is returned by connect when the gateway closes the
// WebSocket before the peer is connected.
var errWebSocketClosed = errors.New("the gateway closed the WebSocket")

// connect offers to slaveID over b and returns once the control channel
// and the "echo" channel are open. Rejections and error frames come back as
// *signalError, a closed WebSocket as errWebSocketClosed.
func connect(ctx context.Context, b *browser, slaveID string) (*peer, error) {
	return connectSession(ctx, b, slaveID, bus.NewID())
}

// connectSession is connect with the browser's session name chosen.
func connectSession(ctx context.Context, b *browser, slaveID, session string) (*peer, error) {
	frames := b.session(session)
	defer b.endSession(session)

	pc, err := loopbackAPI().NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	p := &peer{pc: pc, in: make(chan string, 64)}
	negotiated, zero := true, uint16(0)
	control, err := pc.CreateDataChannel("enslavism", &webrtc.DataChannelInit{Negotiated: &negotiated, ID: &zero})
	if err == nil {
		p.echo, err = pc.CreateDataChannel("echo", nil)
	}
	if err != nil {
		p.close()
		return nil, err
	}
	opened := make(chan struct{}, 2)
	control.OnOpen(func() { opened <- struct{}{} })
	p.echo.OnOpen(func() { opened <- struct{}{} })
	p.echo.OnMessage(func(m webrtc.DataChannelMessage) {
		select {
		case p.in <- string(m.Data):
		default:
		}
	})

	var mu sync.Mutex
	offerSent := false
	var queued []*webrtc.ICECandidateInit
	sendICE := func(ci *webrtc.ICECandidateInit) {
		_ = b.send(map[string]any{"type": gateway.TypeICE, "session": session, "candidate": ci})
	}
	pc.OnICECandidate(func(cand *webrtc.ICECandidate) {
		var ci *webrtc.ICECandidateInit
		if cand != nil {
			j := cand.ToJSON()
			ci = &j
		}
		mu.Lock()
		defer mu.Unlock()
		if !offerSent {
			queued = append(queued, ci)
			return
		}
		sendICE(ci)
	})
	offer, err := pc.CreateOffer(nil)
	if err == nil {
		err = pc.SetLocalDescription(offer)
	}
	if err != nil {
		p.close()
		return nil, err
	}
	mu.Lock()
	err = b.send(map[string]any{"type": gateway.TypeOffer, "session": session, "slave": slaveID, "sdp": offer.SDP})
	offerSent = true
	for _, ci := range queued {
		sendICE(ci)
	}
	mu.Unlock()
	if err != nil {
		p.close()
		return nil, err
	}

	remoteSet := false
	var remote []webrtc.ICECandidateInit
	for want := 2; want > 0; {
		select {
		case <-ctx.Done():
			_ = b.send(map[string]any{"type": gateway.TypeCancel, "session": session})
			p.close()
			return nil, ctx.Err()
		case <-b.done:
			p.close()
			return nil, fmt.Errorf("%w: %v", errWebSocketClosed, b.err)
		case <-opened:
			want--
		case f := <-frames:
			switch f.Type {
			case gateway.TypeAnswer:
				if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: f.SDP}); err != nil {
					p.close()
					return nil, err
				}
				remoteSet = true
				for _, ci := range remote {
					_ = pc.AddICECandidate(ci)
				}
				remote = nil
			case gateway.TypeICE:
				if string(f.Candidate) == "null" {
					continue
				}
				var ci webrtc.ICECandidateInit
				if err := json.Unmarshal(f.Candidate, &ci); err != nil {
					p.close()
					return nil, fmt.Errorf("bad candidate %s: %w", f.Candidate, err)
				}
				if remoteSet {
					_ = pc.AddICECandidate(ci)
				} else {
					remote = append(remote, ci)
				}
			case gateway.TypeRejected, gateway.TypeError:
				p.close()
				return nil, &signalError{f}
			}
		}
	}
	return p, nil
}

// roundTrip sends msg on the echo channel and waits for its echo.
func (p *peer) roundTrip(timeout time.Duration, msg string) error {
	if err := p.echo.SendText(msg); err != nil {
		return err
	}
	deadline := time.After(timeout)
	for {
		select {
		case got := <-p.in:
			if got == msg {
				return nil
			}
		case <-deadline:
			return fmt.Errorf("no echo of %q within %v", msg, timeout)
		}
	}
}
