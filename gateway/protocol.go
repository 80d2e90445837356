package gateway

import (
	"bytes"
	"encoding/json"
	"fmt"
	"unicode/utf8"

	"github.com/enslavism/enslavism/bus"
)

// ProtocolVersion is the version of the browser protocol, sent in hello.
const ProtocolVersion = 1

// The message types of the browser protocol (the "type" field of every JSON
// text frame). This is the Go side's one list; the browser library keeps the
// same list in its frozen MessageType object and a test fails when they
// differ.
//
// Gateway → browser:
//
//	hello        {version, gateway, iceServers, region?}
//	slaves       {slaves: [slave]}   the full list, right after hello
//	slaveadded   {slave}
//	slaveupdated {slave}             userData, load or region changed
//	slaveremoved {id}
//	answer       {session, sdp}
//	rejected     {session, reason}
//	ice          {session, candidate}          candidate null: end of candidates
//	error        {session?, code, message}
//
// Browser → gateway:
//
//	offer  {session, slave, sdp}
//	ice    {session, candidate}
//	cancel {session}
//
// where slave is {id, userData, load?, region?} and load is {clients, max?,
// accepting} (see bus.Load).
const (
	TypeHello        = "hello"
	TypeSlaves       = "slaves"
	TypeSlaveAdded   = "slaveadded"
	TypeSlaveUpdated = "slaveupdated"
	TypeSlaveRemoved = "slaveremoved"
	TypeAnswer       = "answer"
	TypeRejected     = "rejected"
	TypeICE          = "ice"
	TypeError        = "error"
	TypeOffer        = "offer"
	TypeCancel       = "cancel"
)

// messageTypes maps the browser library's MessageType keys to the Go
// constants; the protocol test compares it with the JavaScript source.
var messageTypes = map[string]string{
	"HELLO":         TypeHello,
	"SLAVES":        TypeSlaves,
	"SLAVE_ADDED":   TypeSlaveAdded,
	"SLAVE_UPDATED": TypeSlaveUpdated,
	"SLAVE_REMOVED": TypeSlaveRemoved,
	"ANSWER":        TypeAnswer,
	"REJECTED":      TypeRejected,
	"ICE":           TypeICE,
	"ERROR":         TypeError,
	"OFFER":         TypeOffer,
	"CANCEL":        TypeCancel,
}

// ICEServer is one STUN or TURN server handed to browsers in hello, with the
// JSON shape of the browser's RTCIceServer.
type ICEServer struct {
	// URLs such as "stun:stun.example.com:3478" or "turn:turn.example.com?transport=udp".
	URLs []string `json:"urls"`
	// Username and Credential authenticate to a TURN server; empty for STUN.
	Username   string `json:"username,omitempty"`
	Credential string `json:"credential,omitempty"`
}

// clientMessage is a decoded browser → gateway message. Only the fields of
// its type are set.
type clientMessage struct {
	Type    string
	Session string
	Slave   string
	SDP     string
	// Candidate is the candidate of an ice message; nil means end of
	// candidates.
	Candidate *bus.ICECandidate
}

// wireClientMessage is the JSON shape accepted from browsers.
type wireClientMessage struct {
	Type      string          `json:"type"`
	Session   string          `json:"session"`
	Slave     string          `json:"slave"`
	SDP       string          `json:"sdp"`
	Candidate json.RawMessage `json:"candidate"`
}

// decodeClientMessage decodes and validates one text frame from a browser.
// On error it returns a *bus.Error with code bad_request and, in the message,
// the session when the frame carried a valid one (so that the browser can
// tell which attempt failed). Nothing it accepts can put an invalid ID into a
// subject or an oversized value on the bus.
func decodeClientMessage(data []byte) (clientMessage, error) {
	var w wireClientMessage
	if !utf8.Valid(data) {
		return clientMessage{}, badRequest("", "the frame is not valid UTF-8")
	}
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return clientMessage{}, badRequest("", "a message is one JSON object")
	}
	if err := json.Unmarshal(data, &w); err != nil {
		return clientMessage{}, badRequest("", "invalid JSON: %v", err)
	}
	session := ""
	if bus.ValidateID(w.Session) == nil {
		session = w.Session
	}
	m := clientMessage{Type: w.Type, Session: session}
	switch w.Type {
	case TypeOffer, TypeICE, TypeCancel:
	case "":
		return m, badRequest(session, `the "type" field is missing`)
	default:
		return m, badRequest(session, "unknown message type %.32q", w.Type)
	}
	if session == "" {
		return m, badRequest("", `"session" must match ^[A-Za-z0-9_-]{1,64}$`)
	}
	switch w.Type {
	case TypeOffer:
		if err := bus.ValidateID(w.Slave); err != nil {
			return m, badRequest(session, `"slave" must match ^[A-Za-z0-9_-]{1,64}$`)
		}
		if w.SDP == "" {
			return m, badRequest(session, `"sdp" is missing`)
		}
		if len(w.SDP) > bus.MaxSDPSize {
			return m, badRequest(session, "the sdp has %d bytes, at most %d", len(w.SDP), bus.MaxSDPSize)
		}
		m.Slave, m.SDP = w.Slave, w.SDP
	case TypeICE:
		if w.Candidate == nil {
			return m, badRequest(session, `"candidate" is missing (null ends the candidates)`)
		}
		var ice bus.ICE
		if err := json.Unmarshal(w.Candidate, &ice.Candidate); err != nil {
			return m, badRequest(session, "invalid candidate: %v", err)
		}
		if err := ice.Validate(); err != nil {
			return m, badRequest(session, "invalid candidate: %v", err)
		}
		m.Candidate = ice.Candidate
	}
	return m, nil
}

// badRequest returns a bad_request wire error; session, when not empty, is
// the session the error belongs to.
func badRequest(session, format string, args ...any) error {
	return &protocolError{session: session, err: bus.NewError(bus.CodeBadRequest, format, args...)}
}

// protocolError is a wire error about one browser message.
type protocolError struct {
	session string
	err     *bus.Error
}

func (e *protocolError) Error() string { return e.err.Error() }
func (e *protocolError) Unwrap() error { return e.err }

// Outgoing messages.

type slaveJSON struct {
	ID       string          `json:"id"`
	UserData json.RawMessage `json:"userData"`
	Load     *bus.Load       `json:"load,omitempty"`
	Region   string          `json:"region,omitempty"`
}

// slaveFromInfo is what browsers are told about a slave.
func slaveFromInfo(info bus.SlaveInfo) slaveJSON {
	return slaveJSON{ID: info.ID, UserData: userDataOrNull(info.UserData), Load: info.Load, Region: info.Region}
}

// equal reports whether browsers would see no difference between a and b.
func (a slaveJSON) equal(b slaveJSON) bool {
	if a.ID != b.ID || a.Region != b.Region || !bytes.Equal(a.UserData, b.UserData) || (a.Load == nil) != (b.Load == nil) {
		return false
	}
	return a.Load == nil || *a.Load == *b.Load
}

type helloMsg struct {
	Type       string      `json:"type"`
	Version    int         `json:"version"`
	Gateway    string      `json:"gateway"`
	ICEServers []ICEServer `json:"iceServers"`
	Region     string      `json:"region,omitempty"`
}

type slavesMsg struct {
	Type   string      `json:"type"`
	Slaves []slaveJSON `json:"slaves"`
}

type slaveMsg struct {
	Type  string    `json:"type"`
	Slave slaveJSON `json:"slave"`
}

type slaveRemovedMsg struct {
	Type string `json:"type"`
	ID   string `json:"id"`
}

type answerMsg struct {
	Type    string `json:"type"`
	Session string `json:"session"`
	SDP     string `json:"sdp"`
}

type rejectedMsg struct {
	Type    string `json:"type"`
	Session string `json:"session"`
	Reason  string `json:"reason"`
}

type iceMsg struct {
	Type      string            `json:"type"`
	Session   string            `json:"session"`
	Candidate *bus.ICECandidate `json:"candidate"`
}

type errorMsg struct {
	Type    string   `json:"type"`
	Session string   `json:"session,omitempty"`
	Code    bus.Code `json:"code"`
	Message string   `json:"message"`
}

// encodeFrame marshals an outgoing message. The messages are built from
// validated values, so an error is a bug.
func encodeFrame(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("gateway: encoding %T: %v", v, err))
	}
	return b
}

func errorFrame(session string, code bus.Code, message string) []byte {
	if len(message) > bus.MaxReasonSize {
		message = message[:bus.MaxReasonSize]
	}
	return encodeFrame(errorMsg{Type: TypeError, Session: session, Code: code, Message: message})
}

func userDataOrNull(v json.RawMessage) json.RawMessage {
	if len(v) == 0 {
		return json.RawMessage("null")
	}
	return v
}
