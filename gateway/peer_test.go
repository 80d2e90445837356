package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"

	"github.com/enslavism/enslavism/bus"
)

// loopbackAPI is a pion API that connects on a loopback-only machine (see
// FIELD-NOTES.md): UDP4 on 127.0.0.1, loopback candidates, no mDNS.
func loopbackAPI() *webrtc.API {
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	return webrtc.NewAPI(webrtc.WithSettingEngine(se))
}

// channelSpec is a DataChannel the Go peer opens.
type channelSpec struct {
	label string
	init  *webrtc.DataChannelInit
}

// goPeer is what the browser library does, in Go: one pion peer connection
// with the pre-negotiated control channel, the user's channels on it, and
// trickle signaling over the browser protocol.
type goPeer struct {
	pc       *webrtc.PeerConnection
	control  *webrtc.DataChannel
	channels []*webrtc.DataChannel
	session  string
}

func (p *goPeer) close() {
	if p != nil && p.pc != nil {
		_ = p.pc.Close()
	}
}

// signalError is a rejection or an error frame the gateway sent for a
// session.
type signalError struct{ f frame }

func (e *signalError) Error() string { return "signaling: " + e.f.raw }

// connectPeer connects to slaveID through the browser protocol on c and
// returns once the control channel and every requested channel are open.
// It returns a *signalError for a rejected or error frame.
func connectPeer(ctx context.Context, api *webrtc.API, c *wsClient, slaveID string, specs ...channelSpec) (*goPeer, error) {
	session := bus.NewID()
	frames := c.session(session)
	defer c.endSession(session)

	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	p := &goPeer{pc: pc, session: session}
	negotiated, zero := true, uint16(0)
	if p.control, err = pc.CreateDataChannel("enslavism", &webrtc.DataChannelInit{Negotiated: &negotiated, ID: &zero}); err != nil {
		p.close()
		return nil, err
	}
	opened := make(chan struct{}, 1+len(specs))
	p.control.OnOpen(func() { opened <- struct{}{} })
	for _, s := range specs {
		dc, err := pc.CreateDataChannel(s.label, s.init)
		if err != nil {
			p.close()
			return nil, err
		}
		dc.OnOpen(func() { opened <- struct{}{} })
		p.channels = append(p.channels, dc)
	}

	// Local candidates wait until the offer is sent.
	var mu sync.Mutex
	offerSent := false
	var queued []*webrtc.ICECandidateInit
	sendICE := func(ci *webrtc.ICECandidateInit) {
		_ = c.send(map[string]any{"type": TypeICE, "session": session, "candidate": ci})
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
	err = c.send(map[string]any{"type": TypeOffer, "session": session, "slave": slaveID, "sdp": offer.SDP})
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
	want := 1 + len(specs)
	for want > 0 {
		select {
		case <-ctx.Done():
			_ = c.send(map[string]any{"type": TypeCancel, "session": session})
			p.close()
			return nil, ctx.Err()
		case <-c.done:
			p.close()
			return nil, fmt.Errorf("the gateway closed the WebSocket: %v", c.err)
		case <-opened:
			want--
		case f := <-frames:
			switch f.Type {
			case TypeAnswer:
				if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: f.SDP}); err != nil {
					p.close()
					return nil, err
				}
				remoteSet = true
				for _, ci := range remote {
					_ = pc.AddICECandidate(ci)
				}
				remote = nil
			case TypeICE:
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
			case TypeRejected, TypeError:
				p.close()
				return nil, &signalError{f}
			}
		}
	}
	return p, nil
}

// roundTrip sends msg on dc and waits for the next message.
func roundTrip(ctx context.Context, dc *webrtc.DataChannel, msg string) (string, error) {
	got := make(chan string, 1)
	dc.OnMessage(func(m webrtc.DataChannelMessage) {
		select {
		case got <- string(m.Data):
		default:
		}
	})
	if err := dc.SendText(msg); err != nil {
		return "", err
	}
	select {
	case s := <-got:
		return s, nil
	case <-ctx.Done():
		return "", errors.New("no reply on " + dc.Label())
	}
}
