package gateway

import (
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/enslavism/enslavism/bus"
	"github.com/enslavism/enslavism/web"
)

// TestMessageTypesMatchBrowser fails when the browser library's MessageType
// object and the Go constants differ.
func TestMessageTypesMatchBrowser(t *testing.T) {
	js := web.MessageTypes()
	if !maps.Equal(js, messageTypes) {
		t.Errorf("web/enslavism.js MessageType = %v\ngateway/protocol.go has      %v", js, messageTypes)
	}
	values := slices.Collect(maps.Values(messageTypes))
	for _, typ := range []string{TypeHello, TypeSlaves, TypeSlaveAdded, TypeSlaveUpdated, TypeSlaveRemoved,
		TypeAnswer, TypeRejected, TypeICE, TypeError, TypeOffer, TypeCancel} {
		if !slices.Contains(values, typ) {
			t.Errorf("constant %q is missing from messageTypes", typ)
		}
	}
	if len(values) != 11 {
		t.Errorf("messageTypes has %d entries, want the 11 constants", len(values))
	}
}

// TestErrorCodesKnownToBrowser fails when the gateway can send a wire code
// the browser library does not list.
func TestErrorCodesKnownToBrowser(t *testing.T) {
	js := slices.Collect(maps.Values(web.ErrorCodes()))
	for _, code := range []bus.Code{bus.CodeBadRequest, bus.CodeNoSuchSlave, bus.CodeTimeout, bus.CodeRateLimited,
		bus.CodeUnauthorized, bus.CodeUnavailable, bus.CodeInternal, bus.CodeTooMany} {
		if !slices.Contains(js, string(code)) {
			t.Errorf("bus code %q is missing from the browser's ErrorCode", code)
		}
	}
}

func TestDecodeClientMessage(t *testing.T) {
	long := strings.Repeat("a", 65)
	for _, tc := range []struct {
		name, in string
		ok       bool
		session  string // expected in the error, or in the message
	}{
		{"offer", `{"type":"offer","session":"s1","slave":"x","sdp":"v=0"}`, true, "s1"},
		{"ice", `{"type":"ice","session":"s1","candidate":{"candidate":"c","sdpMid":"0","sdpMLineIndex":0}}`, true, "s1"},
		{"ice end", `{"type":"ice","session":"s1","candidate":null}`, true, "s1"},
		{"cancel", `{"type":"cancel","session":"s1"}`, true, "s1"},
		{"unknown fields ignored", `{"type":"cancel","session":"s1","extra":[1,2]}`, true, "s1"},
		{"not json", `hello`, false, ""},
		{"array", `[1,2]`, false, ""},
		{"string", `"offer"`, false, ""},
		{"null", `null`, false, ""},
		{"empty", ``, false, ""},
		{"trailing data", `{"type":"cancel","session":"s1"} {}`, false, ""},
		{"invalid utf8", "{\"type\":\"cancel\",\"session\":\"s1\xff\"}", false, ""},
		{"missing type", `{"session":"s1"}`, false, "s1"},
		{"unknown type", `{"type":"hello","session":"s1"}`, false, "s1"},
		{"type not a string", `{"type":5,"session":"s1"}`, false, ""},
		{"session not a string", `{"type":"cancel","session":5}`, false, ""},
		{"session missing", `{"type":"cancel"}`, false, ""},
		{"session with a dot", `{"type":"cancel","session":"a.b"}`, false, ""},
		{"session wildcard", `{"type":"cancel","session":">"}`, false, ""},
		{"session too long", `{"type":"cancel","session":"` + long + `"}`, false, ""},
		{"slave missing", `{"type":"offer","session":"s1","sdp":"v=0"}`, false, "s1"},
		{"slave wildcard", `{"type":"offer","session":"s1","slave":"*","sdp":"v=0"}`, false, "s1"},
		{"slave with space", `{"type":"offer","session":"s1","slave":"a b","sdp":"v=0"}`, false, "s1"},
		{"sdp missing", `{"type":"offer","session":"s1","slave":"x"}`, false, "s1"},
		{"sdp not a string", `{"type":"offer","session":"s1","slave":"x","sdp":{}}`, false, ""},
		{"sdp too large", `{"type":"offer","session":"s1","slave":"x","sdp":"` + strings.Repeat("v", bus.MaxSDPSize+1) + `"}`, false, "s1"},
		{"candidate missing", `{"type":"ice","session":"s1"}`, false, "s1"},
		{"candidate string", `{"type":"ice","session":"s1","candidate":"c"}`, false, "s1"},
		{"candidate wrong field type", `{"type":"ice","session":"s1","candidate":{"sdpMLineIndex":"0"}}`, false, "s1"},
		{"candidate index overflow", `{"type":"ice","session":"s1","candidate":{"sdpMLineIndex":70000}}`, false, "s1"},
		{"candidate too long", `{"type":"ice","session":"s1","candidate":{"candidate":"` + strings.Repeat("c", bus.MaxCandidateSize+1) + `"}}`, false, "s1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := decodeClientMessage([]byte(tc.in))
			if tc.ok {
				if err != nil {
					t.Fatalf("decode(%s) = %v", tc.in, err)
				}
				if m.Session != tc.session {
					t.Errorf("session %q, want %q", m.Session, tc.session)
				}
				return
			}
			var pe *protocolError
			if !errors.As(err, &pe) || !errors.Is(err, bus.ErrBadRequest) {
				t.Fatalf("decode(%.80s) = %v, want a bad_request protocol error", tc.in, err)
			}
			if pe.session != tc.session {
				t.Errorf("error session %q, want %q", pe.session, tc.session)
			}
			if pe.err.Message == "" || len(pe.err.Message) > 300 {
				t.Errorf("error message %q", pe.err.Message)
			}
		})
	}
}

// FuzzDecodeClientMessage checks that no input panics and that whatever the
// decoder accepts is safe for the bus: valid IDs, sizes in limits, and
// messages that bus.Encode accepts.
func FuzzDecodeClientMessage(f *testing.F) {
	for _, seed := range []string{
		`{"type":"offer","session":"s1","slave":"x","sdp":"v=0"}`,
		`{"type":"ice","session":"s1","candidate":{"candidate":"c","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"u"}}`,
		`{"type":"ice","session":"s1","candidate":null}`,
		`{"type":"cancel","session":"s1"}`,
		`{"type":"offer","session":"a.b","slave":">","sdp":""}`,
		`{"TYPE":"cancel","Session":"x"}`,
		`[]`, `null`, `{`, "\xff",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := decodeClientMessage(data)
		if err != nil {
			var pe *protocolError
			if !errors.As(err, &pe) || pe.err.Code != bus.CodeBadRequest {
				t.Fatalf("error %v is not a bad_request protocol error", err)
			}
			if pe.session != "" && bus.ValidateID(pe.session) != nil {
				t.Fatalf("error carries invalid session %q", pe.session)
			}
			if _, err := json.Marshal(errorMsg{Type: TypeError, Session: pe.session, Code: pe.err.Code, Message: pe.err.Message}); err != nil {
				t.Fatal(err)
			}
			return
		}
		if err := bus.ValidateID(m.Session); err != nil {
			t.Fatalf("accepted session %q", m.Session)
		}
		switch m.Type {
		case TypeOffer:
			if _, err := (bus.Subjects{}).SlaveOffer(m.Slave); err != nil {
				t.Fatalf("accepted slave %q: %v", m.Slave, err)
			}
			if _, err := bus.Encode(&bus.OfferRequest{Session: bus.NewID(), Gateway: "g", SDP: m.SDP}); err != nil {
				t.Fatalf("accepted sdp that the bus refuses: %v", err)
			}
		case TypeICE:
			if _, err := bus.Encode(&bus.ICE{Candidate: m.Candidate}); err != nil {
				t.Fatalf("accepted candidate that the bus refuses: %v", err)
			}
		case TypeCancel:
		default:
			t.Fatalf("accepted type %q", m.Type)
		}
	})
}
