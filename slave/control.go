package slave

import (
	"encoding/json"

	"github.com/pion/webrtc/v4"
	"golang.org/x/time/rate"
)

// The control channel: one pre-negotiated DataChannel on every peer
// connection, created by both ends before the offer/answer (which is what
// puts the m=application section in the browser's offer). The browser opens
// the user's channels in-band afterwards, on the same peer connection.
const (
	// ControlLabel is the label of the control channel.
	ControlLabel = "enslavism"
	// ControlID is the SCTP stream ID of the control channel (negotiated).
	ControlID uint16 = 0
)

// Limits of the control channel, per peer connection.
const (
	controlRate       = 10   // ping probes answered per second
	controlBurst      = 10   // ping probes answered in a burst
	maxControlMessage = 1024 // longer messages are ignored
)

// newControlChannel creates the negotiated control channel on pc and starts
// answering ping probes on it.
func newControlChannel(pc *webrtc.PeerConnection) (*webrtc.DataChannel, error) {
	negotiated := true
	id := ControlID
	dc, err := pc.CreateDataChannel(ControlLabel, &webrtc.DataChannelInit{Negotiated: &negotiated, ID: &id})
	if err != nil {
		return nil, err
	}
	lim := rate.NewLimiter(controlRate, controlBurst)
	dc.OnMessage(func(m webrtc.DataChannelMessage) {
		// Runs on the channel's read loop: cheap checks first.
		if !m.IsString || len(m.Data) > maxControlMessage || !lim.Allow() {
			return
		}
		if reply, ok := controlReply(m.Data); ok {
			_ = dc.SendText(string(reply)) // a text message; a closing channel is no error worth reporting
		}
	})
	return dc, nil
}

// controlReply returns the reply to a control message, if it deserves one.
// The protocol: the text message {"type":"ping","t":<number>} is answered by
// {"type":"pong","t":<the same number, byte for byte>}; anything else
// (other types, t missing or not a number, bad JSON) is ignored.
func controlReply(msg []byte) ([]byte, bool) {
	var m struct {
		Type string          `json:"type"`
		T    json.RawMessage `json:"t"`
	}
	if err := json.Unmarshal(msg, &m); err != nil || m.Type != "ping" || !isJSONNumber(m.T) {
		return nil, false
	}
	reply := make([]byte, 0, len(`{"type":"pong","t":}`)+len(m.T))
	reply = append(reply, `{"type":"pong","t":`...)
	reply = append(reply, m.T...)
	reply = append(reply, '}')
	return reply, true
}

// isJSONNumber reports whether v, a valid JSON value as json.Unmarshal
// delivers it, is a number: only numbers start with '-' or a digit.
func isJSONNumber(v json.RawMessage) bool {
	return len(v) > 0 && (v[0] == '-' || v[0] >= '0' && v[0] <= '9')
}
