// Package directsignal is the baseline the benchmarks compare the gateway
// with: a minimal signaling server speaking the browser protocol over one
// WebSocket, that answers every offer itself with a pion peer connection of
// the same settings as a slave (DTLS server without HelloVerify, SCTP SNAP,
// no interceptors), with no gateway and no NATS in between. Every user
// channel echoes.
package directsignal

import (
	"encoding/json"
	"net"
	"net/http"
	"sync"

	"github.com/gorilla/websocket"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"
)

// SlaveID is the one slave the server lists.
const SlaveID = "direct"

// API returns the pion API of the direct answerer: loopback UDP4, mDNS off,
// DTLS server without HelloVerify, SCTP SNAP, no interceptors.
func API() *webrtc.API {
	var se webrtc.SettingEngine
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	_ = se.SetAnsweringDTLSRole(webrtc.DTLSRoleServer)
	se.SetDTLSInsecureSkipHelloVerify(true)
	se.EnableSctpSnap(true)
	return webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(&webrtc.MediaEngine{}),
		webrtc.WithInterceptorRegistry(&interceptor.Registry{}))
}

// Handler returns the signaling endpoint (mount it at /enslavism/clients so
// that the browser library can use it unchanged).
func Handler(api *webrtc.API) http.Handler {
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		serve(ws, api)
	})
}

type frame struct {
	Type      string                   `json:"type"`
	Session   string                   `json:"session"`
	SDP       string                   `json:"sdp"`
	Candidate *webrtc.ICECandidateInit `json:"candidate"`
}

func serve(ws *websocket.Conn, api *webrtc.API) {
	defer ws.Close()
	var wmu sync.Mutex
	send := func(v any) {
		wmu.Lock()
		defer wmu.Unlock()
		_ = ws.WriteJSON(v)
	}
	send(map[string]any{"type": "hello", "version": 1, "gateway": "direct", "iceServers": []any{}})
	send(map[string]any{"type": "slaves", "slaves": []any{map[string]any{"id": SlaveID, "userData": nil}}})
	var pmu sync.Mutex
	pcs := map[string]*webrtc.PeerConnection{}
	get := func(s string) *webrtc.PeerConnection {
		pmu.Lock()
		defer pmu.Unlock()
		return pcs[s]
	}
	drop := func(s string, pc *webrtc.PeerConnection) {
		pmu.Lock()
		if pcs[s] == pc {
			delete(pcs, s)
		}
		pmu.Unlock()
		_ = pc.Close()
	}
	defer func() {
		pmu.Lock()
		defer pmu.Unlock()
		for _, pc := range pcs {
			_ = pc.Close()
		}
	}()
	for {
		_, data, err := ws.ReadMessage()
		if err != nil {
			return
		}
		var m frame
		if json.Unmarshal(data, &m) != nil {
			continue
		}
		switch m.Type {
		case "offer":
			pc, err := api.NewPeerConnection(webrtc.Configuration{})
			if err != nil {
				return
			}
			if old := get(m.Session); old != nil {
				drop(m.Session, old)
			}
			pmu.Lock()
			pcs[m.Session] = pc
			pmu.Unlock()
			session := m.Session
			pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
				if st == webrtc.PeerConnectionStateClosed || st == webrtc.PeerConnectionStateFailed || st == webrtc.PeerConnectionStateDisconnected {
					go drop(session, pc)
				}
			})
			negotiated, zero := true, uint16(0)
			_, _ = pc.CreateDataChannel("enslavism", &webrtc.DataChannelInit{Negotiated: &negotiated, ID: &zero})
			pc.OnDataChannel(func(dc *webrtc.DataChannel) {
				dc.OnMessage(func(msg webrtc.DataChannelMessage) {
					if msg.IsString {
						_ = dc.SendText(string(msg.Data))
					} else {
						_ = dc.Send(msg.Data)
					}
				})
			})
			pc.OnICECandidate(func(c *webrtc.ICECandidate) {
				var ci *webrtc.ICECandidateInit
				if c != nil {
					j := c.ToJSON()
					ci = &j
				}
				send(map[string]any{"type": "ice", "session": session, "candidate": ci})
			})
			if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: m.SDP}); err != nil {
				continue
			}
			answer, err := pc.CreateAnswer(nil)
			if err == nil {
				err = pc.SetLocalDescription(answer)
			}
			if err != nil {
				continue
			}
			send(map[string]any{"type": "answer", "session": session, "sdp": answer.SDP})
		case "ice":
			if pc := get(m.Session); pc != nil && m.Candidate != nil {
				_ = pc.AddICECandidate(*m.Candidate)
			}
		case "cancel":
			if pc := get(m.Session); pc != nil {
				drop(m.Session, pc)
			}
		}
	}
}
