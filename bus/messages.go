package bus

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
	"unicode"
	"unicode/utf8"
)

// Size limits of the contract. A message over its limit is refused with an
// error matching ErrTooLarge.
const (
	MaxSDPSize       = 48 << 10 // an offer or answer SDP
	MaxCandidateSize = 1 << 10  // one ICE candidate line
	MaxUserDataSize  = 16 << 10 // a slave's userData (JSON)
	MaxIdentitySize  = 4 << 10  // the identity a gateway passes with an offer (JSON)
	MaxReasonSize    = 512      // a rejection reason or error message
	MaxMessageSize   = 64 << 10 // any message of the contract
)

// Message is implemented by every message type of the contract.
type Message interface {
	// Validate reports whether the message respects the contract: IDs,
	// required fields, size limits.
	Validate() error
}

// Encode validates m and returns its JSON encoding.
func Encode(m Message) ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal(m)
}

// decode unmarshals data into m and validates it.
func decode(data []byte, m Message) error {
	if len(data) > MaxMessageSize {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrTooLarge, len(data), MaxMessageSize)
	}
	if err := json.Unmarshal(data, m); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return m.Validate()
}

// OfferRequest is what a gateway sends on [Subjects.SlaveOffer]: a browser's
// SDP offer for a new session.
type OfferRequest struct {
	// Session is the gateway-scoped session key, unique across gateways.
	Session string `json:"session"`
	// Gateway is the ID of the gateway relaying the session; the slave sends
	// its ICE candidates to [Subjects.GatewayICE] of that gateway.
	Gateway string `json:"gateway"`
	// SDP is the browser's offer.
	SDP string `json:"sdp"`
	// Identity is what the gateway's client-auth hook returned for this
	// browser: any JSON value, absent when there is none.
	Identity json.RawMessage `json:"identity,omitempty"`
}

// Validate implements Message.
func (m *OfferRequest) Validate() error {
	if err := ValidateID(m.Session); err != nil {
		return fmt.Errorf("session: %w", err)
	}
	if err := ValidateID(m.Gateway); err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	if err := checkSDP(m.SDP); err != nil {
		return err
	}
	return checkJSON("identity", m.Identity, MaxIdentitySize, true)
}

// DecodeOfferRequest decodes and validates an offer request.
func DecodeOfferRequest(data []byte) (OfferRequest, error) {
	var m OfferRequest
	err := decode(data, &m)
	return m, err
}

// OfferReply is a slave's reply to an [OfferRequest]: exactly one of SDP (the
// answer), Rejected (the slave's accept hook or capacity said no, with a
// reason for people) or Error (the request could not be handled).
type OfferReply struct {
	SDP      string `json:"sdp,omitempty"`
	Rejected string `json:"rejected,omitempty"`
	Error    *Error `json:"error,omitempty"`
}

// Validate implements Message.
func (m *OfferReply) Validate() error {
	n := 0
	if m.SDP != "" {
		n++
		if err := checkSDP(m.SDP); err != nil {
			return err
		}
	}
	if m.Rejected != "" {
		n++
		if len(m.Rejected) > MaxReasonSize {
			return fmt.Errorf("%w: rejection reason of %d bytes, at most %d", ErrTooLarge, len(m.Rejected), MaxReasonSize)
		}
	}
	if m.Error != nil {
		n++
		if m.Error.Code == "" {
			return fmt.Errorf("%w: error without a code", ErrMalformed)
		}
		if len(m.Error.Message) > MaxReasonSize {
			return fmt.Errorf("%w: error message of %d bytes, at most %d", ErrTooLarge, len(m.Error.Message), MaxReasonSize)
		}
	}
	if n != 1 {
		return fmt.Errorf("%w: an offer reply holds exactly one of sdp, rejected, error (has %d)", ErrMalformed, n)
	}
	return nil
}

// DecodeOfferReply decodes and validates an offer reply.
func DecodeOfferReply(data []byte) (OfferReply, error) {
	var m OfferReply
	err := decode(data, &m)
	return m, err
}

// ICECandidate is an ICE candidate as the browser's RTCIceCandidateInit
// carries it (the JSON of webrtc.ICECandidateInit has the same shape).
type ICECandidate struct {
	Candidate        string  `json:"candidate"`
	SDPMid           *string `json:"sdpMid,omitempty"`
	SDPMLineIndex    *uint16 `json:"sdpMLineIndex,omitempty"`
	UsernameFragment *string `json:"usernameFragment,omitempty"`
}

// ICE is the message on [Subjects.SlaveICE] and [Subjects.GatewayICE]. A nil
// Candidate (JSON null) means the end of candidates. The "candidate" field
// must be present.
type ICE struct {
	Candidate *ICECandidate `json:"candidate"`
}

// Validate implements Message.
func (m *ICE) Validate() error {
	c := m.Candidate
	if c == nil {
		return nil
	}
	if len(c.Candidate) > MaxCandidateSize {
		return fmt.Errorf("%w: candidate of %d bytes, at most %d", ErrTooLarge, len(c.Candidate), MaxCandidateSize)
	}
	if c.SDPMid != nil && len(*c.SDPMid) > 64 {
		return fmt.Errorf("%w: sdpMid of %d bytes", ErrTooLarge, len(*c.SDPMid))
	}
	if c.UsernameFragment != nil && len(*c.UsernameFragment) > 256 {
		return fmt.Errorf("%w: usernameFragment of %d bytes", ErrTooLarge, len(*c.UsernameFragment))
	}
	return nil
}

// DecodeICE decodes and validates an ICE message. A message without a
// "candidate" field is malformed; "candidate": null is the end of candidates.
func DecodeICE(data []byte) (ICE, error) {
	var probe struct {
		Candidate json.RawMessage `json:"candidate"`
	}
	if len(data) > MaxMessageSize {
		return ICE{}, fmt.Errorf("%w: %d bytes, at most %d", ErrTooLarge, len(data), MaxMessageSize)
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return ICE{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if probe.Candidate == nil {
		return ICE{}, fmt.Errorf("%w: no candidate field", ErrMalformed)
	}
	var m ICE
	err := decode(data, &m)
	return m, err
}

// Cancel is the message on [Subjects.SlaveCancel]: drop the session if it is
// not connected yet. Its JSON is {}.
type Cancel struct{}

// Validate implements Message.
func (*Cancel) Validate() error { return nil }

// DecodeCancel decodes a cancel message. An empty payload is accepted as {}
// so that `nats pub <subject> ""` works.
func DecodeCancel(data []byte) (Cancel, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return Cancel{}, nil
	}
	var m Cancel
	err := decode(data, &m)
	return m, err
}

// SlaveInfo is the presence value of a slave, stored under its ID in the
// presence bucket and sent to browsers (id, userData, load, region).
type SlaveInfo struct {
	ID string `json:"id"`
	// UserData is the slave's public JSON value, visible to every browser
	// (a name, a player count...). Empty means null.
	UserData json.RawMessage `json:"userData"`
	// StartedAt is when the slave registered.
	StartedAt time.Time `json:"startedAt"`
	// Load is how busy the slave is, maintained by the slave library;
	// nil when the slave does not publish it.
	Load *Load `json:"load,omitempty"`
	// Region is where the slave runs (see [ValidateRegion]); empty when
	// unknown.
	Region string `json:"region,omitempty"`
}

// Load is a slave's load as published in its presence value:
// {"clients":N,"max":M,"accepting":bool}, max omitted when unlimited.
type Load struct {
	// Clients is the number of connected clients.
	Clients int `json:"clients"`
	// Max is the slave's client limit; 0 (omitted) means unlimited.
	Max int `json:"max,omitempty"`
	// Accepting is false while the slave refuses new clients (full, or
	// shutting down).
	Accepting bool `json:"accepting"`
}

// MaxRegionLen is the longest region name, in bytes.
const MaxRegionLen = 64

// ValidateRegion checks a region name: at most MaxRegionLen bytes of
// printable UTF-8 (letters, digits, punctuation, symbols, spaces). Empty is
// valid (no region).
func ValidateRegion(region string) error {
	if len(region) > MaxRegionLen {
		return fmt.Errorf("%w: region of %d bytes, at most %d", ErrTooLarge, len(region), MaxRegionLen)
	}
	if !utf8.ValidString(region) {
		return fmt.Errorf("%w: region is not valid UTF-8", ErrMalformed)
	}
	for _, r := range region {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("%w: region %q has a non-printable character", ErrMalformed, region)
		}
	}
	return nil
}

// Validate checks a load: no negative count.
func (l *Load) Validate() error {
	if l.Clients < 0 || l.Max < 0 {
		return fmt.Errorf("%w: load with a negative count", ErrMalformed)
	}
	return nil
}

// Validate implements Message.
func (m *SlaveInfo) Validate() error {
	if err := ValidateID(m.ID); err != nil {
		return fmt.Errorf("id: %w", err)
	}
	if y := m.StartedAt.Year(); y < 0 || y > 9999 {
		return fmt.Errorf("%w: startedAt year %d", ErrMalformed, y)
	}
	if m.Load != nil {
		if err := m.Load.Validate(); err != nil {
			return err
		}
	}
	if err := ValidateRegion(m.Region); err != nil {
		return err
	}
	return checkJSON("userData", m.UserData, MaxUserDataSize, true)
}

// DecodeSlaveInfo decodes and validates a presence value.
func DecodeSlaveInfo(data []byte) (SlaveInfo, error) {
	var m SlaveInfo
	err := decode(data, &m)
	if len(m.UserData) == 0 {
		m.UserData = json.RawMessage("null")
	}
	return m, err
}

func checkSDP(sdp string) error {
	if sdp == "" {
		return fmt.Errorf("%w: empty sdp", ErrMalformed)
	}
	if len(sdp) > MaxSDPSize {
		return fmt.Errorf("%w: sdp of %d bytes, at most %d", ErrTooLarge, len(sdp), MaxSDPSize)
	}
	return nil
}

// checkJSON checks a raw JSON field: its size and that it is valid JSON.
func checkJSON(field string, v json.RawMessage, limit int, optional bool) error {
	if len(v) == 0 {
		if optional {
			return nil
		}
		return fmt.Errorf("%w: %s missing", ErrMalformed, field)
	}
	if len(v) > limit {
		return fmt.Errorf("%w: %s of %d bytes, at most %d", ErrTooLarge, field, len(v), limit)
	}
	if !json.Valid(v) {
		return fmt.Errorf("%w: %s is not valid JSON", ErrMalformed, field)
	}
	return nil
}
