// Package testclient plays a browser and its gateway over the NATS contract,
// for the tests and benchmarks of package slave: it makes a real pion peer
// connection with the negotiated control channel and a user channel, sends
// the offer as a NATS request, trickles candidates both ways and waits until
// the user channel is open.
package testclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"

	"github.com/enslavism/enslavism/bus"
)

// The control channel, as the slave package defines it (not imported, so
// that a test fails if the two disagree).
const (
	ControlLabel        = "enslavism"
	ControlID    uint16 = 0
)

// NewAPI returns the pion API of a test browser: loopback UDP4 candidates
// only, mDNS off, no interceptors; SCTP SNAP on when snap is set.
func NewAPI(snap bool) *webrtc.API {
	var se webrtc.SettingEngine
	Loopback(&se)
	se.EnableSctpSnap(snap)
	return webrtc.NewAPI(
		webrtc.WithSettingEngine(se),
		webrtc.WithMediaEngine(&webrtc.MediaEngine{}),
		webrtc.WithInterceptorRegistry(&interceptor.Registry{}),
	)
}

// Loopback sets se up for a loopback-only machine (see FIELD-NOTES.md).
func Loopback(se *webrtc.SettingEngine) {
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
}

// Options configures Dial. The zero value is fine.
type Options struct {
	Subjects bus.Subjects
	Gateway  string          // "" → random
	Session  string          // "" → random
	Identity json.RawMessage // passed with the offer
	Label    string          // the user channel's label; "" → "test"
	Init     *webrtc.DataChannelInit
	API      *webrtc.API // nil → NewAPI(false)
	// EarlyCandidates gathers every candidate first and publishes them
	// before the offer request: the slave sees candidates for a session it
	// does not know yet.
	EarlyCandidates bool
}

// RejectedError is returned by Dial when the slave rejected the offer.
type RejectedError struct{ Reason string }

func (e *RejectedError) Error() string { return "rejected: " + e.Reason }

// Peer is a connected test browser.
type Peer struct {
	PC       *webrtc.PeerConnection
	Control  *webrtc.DataChannel
	Channel  *webrtc.DataChannel // the user channel, open
	Session  string
	Gateway  string
	Messages chan webrtc.DataChannelMessage // received on Channel
	// ControlMessages are received on Control.
	ControlMessages chan webrtc.DataChannelMessage
	// OfferAt is when CreateOffer was called, OpenAt when the user channel
	// opened: the connect time a browser would see.
	OfferAt, OpenAt time.Time

	nc      *nats.Conn
	sub     *nats.Subscription
	iceTo   string
	mu      sync.Mutex
	sent    bool // the offer request went out
	localQ  [][]byte
	remote  bool // the answer is set
	remoteQ []webrtc.ICECandidateInit
	failed  chan struct{}
	fail    sync.Once
}

// Dial connects to slaveID over nc as a browser behind a gateway would.
// It returns a *RejectedError, a *bus.Error, nats.ErrNoResponders, or ctx's
// error when it does not get an open channel.
func Dial(ctx context.Context, nc *nats.Conn, slaveID string, o Options) (*Peer, error) {
	p, err := dial(ctx, nc, slaveID, o)
	if err != nil {
		if p != nil {
			_ = p.Close()
		}
		return nil, err
	}
	return p, nil
}

func dial(ctx context.Context, nc *nats.Conn, slaveID string, o Options) (*Peer, error) {
	if o.Gateway == "" {
		o.Gateway = bus.NewID()
	}
	if o.Session == "" {
		o.Session = bus.NewID()
	}
	if o.Label == "" {
		o.Label = "test"
	}
	if o.API == nil {
		o.API = NewAPI(false)
	}
	offerSubj, err := o.Subjects.SlaveOffer(slaveID)
	if err != nil {
		return nil, err
	}
	iceTo, err := o.Subjects.SlaveICE(slaveID, o.Session)
	if err != nil {
		return nil, err
	}
	gwWildcard, err := o.Subjects.GatewayWildcard(o.Gateway)
	if err != nil {
		return nil, err
	}
	pc, err := o.API.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	p := &Peer{
		PC:              pc,
		Session:         o.Session,
		Gateway:         o.Gateway,
		Messages:        make(chan webrtc.DataChannelMessage, 256),
		ControlMessages: make(chan webrtc.DataChannelMessage, 256),
		nc:              nc,
		iceTo:           iceTo,
		failed:          make(chan struct{}),
	}
	negotiated, id := true, ControlID
	p.Control, err = pc.CreateDataChannel(ControlLabel, &webrtc.DataChannelInit{Negotiated: &negotiated, ID: &id})
	if err != nil {
		return p, err
	}
	p.Control.OnMessage(func(m webrtc.DataChannelMessage) { offer(p.ControlMessages, m) })
	p.Channel, err = pc.CreateDataChannel(o.Label, o.Init)
	if err != nil {
		return p, err
	}
	open := make(chan struct{})
	var once sync.Once
	p.Channel.OnOpen(func() {
		once.Do(func() {
			p.OpenAt = time.Now()
			close(open)
		})
	})
	p.Channel.OnMessage(func(m webrtc.DataChannelMessage) { offer(p.Messages, m) })
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateFailed || s == webrtc.PeerConnectionStateClosed {
			p.fail.Do(func() { close(p.failed) })
		}
	})
	pc.OnICECandidate(p.onLocalCandidate)

	p.sub, err = nc.Subscribe(gwWildcard, func(m *nats.Msg) {
		_, sess, err := o.Subjects.ParseGatewaySubject(m.Subject)
		if err != nil || sess != p.Session {
			return
		}
		msg, err := bus.DecodeICE(m.Data)
		if err != nil {
			return
		}
		var c webrtc.ICECandidateInit
		if mc := msg.Candidate; mc != nil {
			c = webrtc.ICECandidateInit{Candidate: mc.Candidate, SDPMid: mc.SDPMid, SDPMLineIndex: mc.SDPMLineIndex, UsernameFragment: mc.UsernameFragment}
		}
		p.addRemote(c)
	})
	if err != nil {
		return p, err
	}

	p.OfferAt = time.Now()
	sdp, err := pc.CreateOffer(nil)
	if err != nil {
		return p, err
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(sdp); err != nil {
		return p, err
	}
	if o.EarlyCandidates {
		select {
		case <-gathered:
		case <-ctx.Done():
			return p, ctx.Err()
		}
		p.mu.Lock()
		for _, b := range p.localQ {
			_ = nc.Publish(iceTo, b)
		}
		p.localQ = nil
		p.mu.Unlock()
		if err := nc.Flush(); err != nil {
			return p, err
		}
	}
	req, err := bus.Encode(&bus.OfferRequest{Session: o.Session, Gateway: o.Gateway, SDP: sdp.SDP, Identity: o.Identity})
	if err != nil {
		return p, err
	}
	reply, err := p.request(ctx, offerSubj, req)
	if err != nil {
		return p, err
	}
	switch {
	case reply.Rejected != "":
		return p, &RejectedError{Reason: reply.Rejected}
	case reply.Error != nil:
		return p, reply.Error
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: reply.SDP}); err != nil {
		return p, fmt.Errorf("set answer: %w", err)
	}
	p.mu.Lock()
	p.remote = true
	q := p.remoteQ
	p.remoteQ = nil
	p.mu.Unlock()
	for _, c := range q {
		_ = pc.AddICECandidate(c)
	}
	select {
	case <-open:
		return p, nil
	case <-p.failed:
		return p, errors.New("peer connection failed")
	case <-ctx.Done():
		return p, ctx.Err()
	}
}

// request sends the offer request and, right after it (as a gateway does,
// without waiting for the answer), the candidates gathered so far.
func (p *Peer) request(ctx context.Context, subj string, req []byte) (bus.OfferReply, error) {
	inbox := p.nc.NewRespInbox()
	rsub, err := p.nc.SubscribeSync(inbox)
	if err != nil {
		return bus.OfferReply{}, err
	}
	defer func() { _ = rsub.Unsubscribe() }()
	p.mu.Lock()
	err = p.nc.PublishRequest(subj, inbox, req)
	p.sent = true
	for _, b := range p.localQ {
		_ = p.nc.Publish(p.iceTo, b)
	}
	p.localQ = nil
	p.mu.Unlock()
	if err != nil {
		return bus.OfferReply{}, err
	}
	m, err := rsub.NextMsgWithContext(ctx)
	if err != nil {
		return bus.OfferReply{}, err
	}
	if m.Header.Get("Status") == "503" {
		return bus.OfferReply{}, nats.ErrNoResponders
	}
	return bus.DecodeOfferReply(m.Data)
}

func (p *Peer) onLocalCandidate(c *webrtc.ICECandidate) {
	var msg bus.ICE
	if c != nil {
		j := c.ToJSON()
		msg.Candidate = &bus.ICECandidate{Candidate: j.Candidate, SDPMid: j.SDPMid, SDPMLineIndex: j.SDPMLineIndex, UsernameFragment: j.UsernameFragment}
	}
	b, err := bus.Encode(&msg)
	if err != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.sent {
		p.localQ = append(p.localQ, b)
		return
	}
	_ = p.nc.Publish(p.iceTo, b)
}

func (p *Peer) addRemote(c webrtc.ICECandidateInit) {
	p.mu.Lock()
	if !p.remote {
		p.remoteQ = append(p.remoteQ, c)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	_ = p.PC.AddICECandidate(c)
}

// OpenChannel opens another channel in-band on the same peer connection and
// waits until it is open. Its messages arrive on the returned channel.
func (p *Peer) OpenChannel(ctx context.Context, label string, init *webrtc.DataChannelInit) (*webrtc.DataChannel, chan webrtc.DataChannelMessage, error) {
	dc, err := p.PC.CreateDataChannel(label, init)
	if err != nil {
		return nil, nil, err
	}
	msgs := make(chan webrtc.DataChannelMessage, 256)
	open := make(chan struct{})
	var once sync.Once
	dc.OnOpen(func() { once.Do(func() { close(open) }) })
	dc.OnMessage(func(m webrtc.DataChannelMessage) { offer(msgs, m) })
	select {
	case <-open:
		return dc, msgs, nil
	case <-p.failed:
		return nil, nil, errors.New("peer connection failed")
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
}

// Failed is closed when the peer connection failed or closed.
func (p *Peer) Failed() <-chan struct{} { return p.failed }

// Recv returns the next message of ch, or ctx's error.
func Recv(ctx context.Context, ch <-chan webrtc.DataChannelMessage) (webrtc.DataChannelMessage, error) {
	select {
	case m := <-ch:
		return m, nil
	case <-ctx.Done():
		return webrtc.DataChannelMessage{}, ctx.Err()
	}
}

// Close closes the peer connection and the gateway subscription.
func (p *Peer) Close() error {
	if p.sub != nil {
		_ = p.sub.Unsubscribe()
	}
	return p.PC.Close()
}

// offer sends m on ch unless ch is full.
func offer(ch chan webrtc.DataChannelMessage, m webrtc.DataChannelMessage) {
	select {
	case ch <- m:
	default:
	}
}
