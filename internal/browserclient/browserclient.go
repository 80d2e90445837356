// Package browserclient is a Go client of the browser protocol: it speaks
// to a gateway over the WebSocket as the browser library does, and opens
// real pion peer connections to slaves through it (the control channel
// first, then the user's channels, trickle ICE both ways). The benchmarks
// and load tools use it to measure what a browser would see, without a
// browser.
package browserclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"

	"github.com/enslavism/enslavism/bus"
)

// Frame is one message of the browser protocol, either way (the union of
// the fields of every message type).
type Frame struct {
	Type       string          `json:"type"`
	Version    int             `json:"version,omitempty"`
	Gateway    string          `json:"gateway,omitempty"`
	Slaves     []Slave         `json:"slaves,omitempty"`
	Slave      json.RawMessage `json:"slave,omitempty"`
	ID         string          `json:"id,omitempty"`
	Session    string          `json:"session,omitempty"`
	SDP        string          `json:"sdp,omitempty"`
	Reason     string          `json:"reason,omitempty"`
	Code       string          `json:"code,omitempty"`
	Message    string          `json:"message,omitempty"`
	Candidate  json.RawMessage `json:"candidate,omitempty"`
	ReceivedAt time.Time       `json:"-"`
}

// Slave is a listed slave.
type Slave struct {
	ID       string          `json:"id"`
	UserData json.RawMessage `json:"userData"`
}

// Client is one browser's WebSocket to a gateway.
type Client struct {
	ws      *websocket.Conn
	frames  chan Frame
	dropped atomic.Int64
	done    chan struct{}
	err     error

	// Hello and Slaves are the gateway's first two frames.
	Hello  Frame
	Slaves []Slave

	wmu      sync.Mutex
	mu       sync.Mutex
	sessions map[string]chan Frame
}

// Dial opens the WebSocket (url ends with /enslavism/clients) and reads
// hello and the slave list. dialer may be nil.
func Dial(ctx context.Context, dialer *websocket.Dialer, url string, header http.Header) (*Client, error) {
	if dialer == nil {
		dialer = &websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	}
	ws, _, err := dialer.DialContext(ctx, url, header)
	if err != nil {
		return nil, err
	}
	c := &Client{ws: ws, frames: make(chan Frame, frameBuffer), done: make(chan struct{}), sessions: map[string]chan Frame{}}
	go c.read()
	for _, want := range []string{"hello", "slaves"} {
		f, err := c.Next(ctx)
		if err != nil || f.Type != want {
			c.Close()
			return nil, fmt.Errorf("browserclient: want %s, got %q: %v", want, f.Type, err)
		}
		if want == "hello" {
			c.Hello = f
		} else {
			c.Slaves = f.Slaves
		}
	}
	return c, nil
}

func (c *Client) read() {
	defer close(c.done)
	defer close(c.frames)
	for {
		_, data, err := c.ws.ReadMessage()
		if err != nil {
			c.err = err
			return
		}
		var f Frame
		if err := json.Unmarshal(data, &f); err != nil {
			c.err = fmt.Errorf("browserclient: invalid JSON from the gateway: %w", err)
			return
		}
		f.ReceivedAt = time.Now()
		c.mu.Lock()
		ch := c.sessions[f.Session]
		c.mu.Unlock()
		if ch != nil && f.Session != "" {
			select {
			case ch <- f:
			default:
			}
			continue
		}
		// Never block the reader: session frames must get through even
		// when nobody reads the list events.
		select {
		case c.frames <- f:
		default:
			c.dropped.Add(1)
		}
	}
}

// frameBuffer is how many frames not addressed to a session wait for Next;
// beyond it they are dropped (see Dropped).
const frameBuffer = 1 << 16

// Dropped returns how many frames were dropped because Next was not called
// fast enough.
func (c *Client) Dropped() int64 { return c.dropped.Load() }

// Next returns the next frame not addressed to a session of Connect.
func (c *Client) Next(ctx context.Context) (Frame, error) {
	select {
	case f, ok := <-c.frames:
		if !ok {
			return Frame{}, fmt.Errorf("browserclient: connection closed: %w", c.err)
		}
		return f, nil
	case <-ctx.Done():
		return Frame{}, ctx.Err()
	}
}

// Send sends one frame.
func (c *Client) Send(v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return c.ws.WriteMessage(websocket.TextMessage, data)
}

// Close closes the WebSocket and waits for the reader.
func (c *Client) Close() {
	_ = c.ws.Close()
	<-c.done
}

// LoopbackAPI returns a pion API for a loopback-only machine (FIELD-NOTES):
// UDP4 on 127.0.0.1, mDNS off, no interceptors.
func LoopbackAPI() *webrtc.API {
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	return webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithInterceptorRegistry(&interceptor.Registry{}))
}

// Channel asks for one user DataChannel.
type Channel struct {
	Label string
	Init  *webrtc.DataChannelInit
}

// Peer is a peer connection to a slave with its channels open.
type Peer struct {
	PC       *webrtc.PeerConnection
	Control  *webrtc.DataChannel
	Channels []*webrtc.DataChannel
	Session  string
}

// Close closes the peer connection.
func (p *Peer) Close() { _ = p.PC.Close() }

// SignalError is a rejected or error frame answering an offer.
type SignalError struct{ Frame Frame }

func (e *SignalError) Error() string {
	if e.Frame.Type == "rejected" {
		return "browserclient: rejected: " + e.Frame.Reason
	}
	return fmt.Sprintf("browserclient: error %s: %s", e.Frame.Code, e.Frame.Message)
}

// Connect opens a peer connection to slaveID through the gateway, like the
// browser library: the negotiated control channel, the user channels, the
// offer, trickle ICE both ways. It returns once every channel is open.
func (c *Client) Connect(ctx context.Context, api *webrtc.API, slaveID string, channels ...Channel) (*Peer, error) {
	session := bus.NewID()
	frames := make(chan Frame, 64)
	c.mu.Lock()
	c.sessions[session] = frames
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.sessions, session)
		c.mu.Unlock()
	}()
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	p := &Peer{PC: pc, Session: session}
	fail := func(err error) (*Peer, error) {
		p.Close()
		return nil, err
	}
	negotiated, zero := true, uint16(0)
	if p.Control, err = pc.CreateDataChannel("enslavism", &webrtc.DataChannelInit{Negotiated: &negotiated, ID: &zero}); err != nil {
		return fail(err)
	}
	opened := make(chan struct{}, 1+len(channels))
	p.Control.OnOpen(func() { opened <- struct{}{} })
	for _, ch := range channels {
		dc, err := pc.CreateDataChannel(ch.Label, ch.Init)
		if err != nil {
			return fail(err)
		}
		dc.OnOpen(func() { opened <- struct{}{} })
		p.Channels = append(p.Channels, dc)
	}
	var mu sync.Mutex
	offerSent := false
	var queued []*webrtc.ICECandidateInit
	sendICE := func(ci *webrtc.ICECandidateInit) {
		_ = c.Send(map[string]any{"type": "ice", "session": session, "candidate": ci})
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
		return fail(err)
	}
	mu.Lock()
	err = c.Send(map[string]any{"type": "offer", "session": session, "slave": slaveID, "sdp": offer.SDP})
	offerSent = true
	for _, ci := range queued {
		sendICE(ci)
	}
	mu.Unlock()
	if err != nil {
		return fail(err)
	}
	remoteSet := false
	var remote []webrtc.ICECandidateInit
	for want := 1 + len(channels); want > 0; {
		select {
		case <-ctx.Done():
			_ = c.Send(map[string]any{"type": "cancel", "session": session})
			return fail(ctx.Err())
		case <-c.done:
			return fail(fmt.Errorf("browserclient: the gateway closed the WebSocket: %w", c.err))
		case <-opened:
			want--
		case f := <-frames:
			switch f.Type {
			case "answer":
				if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: f.SDP}); err != nil {
					return fail(err)
				}
				remoteSet = true
				for _, ci := range remote {
					_ = pc.AddICECandidate(ci)
				}
				remote = nil
			case "ice":
				if len(f.Candidate) == 0 || string(f.Candidate) == "null" {
					continue
				}
				var ci webrtc.ICECandidateInit
				if err := json.Unmarshal(f.Candidate, &ci); err != nil {
					return fail(fmt.Errorf("browserclient: bad candidate: %w", err))
				}
				if remoteSet {
					_ = pc.AddICECandidate(ci)
				} else {
					remote = append(remote, ci)
				}
			case "rejected", "error":
				return fail(&SignalError{f})
			}
		}
	}
	return p, nil
}

// RoundTrip sends msg on dc and waits for the next message on it.
func RoundTrip(ctx context.Context, dc *webrtc.DataChannel, msg []byte) ([]byte, error) {
	got := make(chan []byte, 1)
	dc.OnMessage(func(m webrtc.DataChannelMessage) {
		select {
		case got <- m.Data:
		default:
		}
	})
	if err := dc.Send(msg); err != nil {
		return nil, err
	}
	select {
	case b := <-got:
		return b, nil
	case <-ctx.Done():
		return nil, errors.New("browserclient: no reply on " + dc.Label())
	}
}
