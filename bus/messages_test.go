package bus_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/enslavism/enslavism/bus"
)

func TestDecodeOfferRequest(t *testing.T) {
	ok := `{"session":"k1","gateway":"g1","sdp":"v=0\r\n","identity":{"user":"ann"}}`
	m, err := bus.DecodeOfferRequest([]byte(ok))
	if err != nil {
		t.Fatal(err)
	}
	if m.Session != "k1" || m.Gateway != "g1" || m.SDP != "v=0\r\n" || string(m.Identity) != `{"user":"ann"}` {
		t.Errorf("decoded %+v", m)
	}
	for _, tc := range []struct {
		name, in string
		want     error
	}{
		{"not json", `{`, bus.ErrMalformed},
		{"array", `[]`, bus.ErrMalformed},
		{"wrong type", `{"session":1,"gateway":"g","sdp":"x"}`, bus.ErrMalformed},
		{"no session", `{"gateway":"g","sdp":"x"}`, bus.ErrInvalidID},
		{"subject injection", `{"session":"a.>","gateway":"g","sdp":"x"}`, bus.ErrInvalidID},
		{"bad gateway", `{"session":"k","gateway":"*","sdp":"x"}`, bus.ErrInvalidID},
		{"no sdp", `{"session":"k","gateway":"g"}`, bus.ErrMalformed},
		{"huge sdp", fmt.Sprintf(`{"session":"k","gateway":"g","sdp":%q}`, strings.Repeat("a", bus.MaxSDPSize+1)), bus.ErrTooLarge},
		{"huge identity", fmt.Sprintf(`{"session":"k","gateway":"g","sdp":"x","identity":%q}`, strings.Repeat("a", bus.MaxIdentitySize)), bus.ErrTooLarge},
		{"huge message", strings.Repeat(" ", bus.MaxMessageSize+1), bus.ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := bus.DecodeOfferRequest([]byte(tc.in)); !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestOfferReply(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     error
	}{
		{"answer", `{"sdp":"v=0"}`, nil},
		{"rejected", `{"rejected":"full"}`, nil},
		{"error", `{"error":{"code":"bad_request","message":"bad sdp"}}`, nil},
		{"empty", `{}`, bus.ErrMalformed},
		{"two", `{"sdp":"v=0","rejected":"no"}`, bus.ErrMalformed},
		{"error without code", `{"error":{}}`, bus.ErrMalformed},
		{"long reason", fmt.Sprintf(`{"rejected":%q}`, strings.Repeat("r", bus.MaxReasonSize+1)), bus.ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := bus.DecodeOfferReply([]byte(tc.in))
			if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
		})
	}
	r, _ := bus.DecodeOfferReply([]byte(`{"error":{"code":"timeout","message":"slow"}}`))
	if !errors.Is(r.Error, bus.ErrTimeout) || errors.Is(r.Error, bus.ErrNoSuchSlave) {
		t.Errorf("wire error %v does not match by code", r.Error)
	}
	if _, err := bus.Encode(&bus.OfferReply{}); !errors.Is(err, bus.ErrMalformed) {
		t.Errorf("Encode of an empty reply: %v, want ErrMalformed", err)
	}
}

func TestDecodeICE(t *testing.T) {
	m, err := bus.DecodeICE([]byte(`{"candidate":{"candidate":"candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host","sdpMid":"0","sdpMLineIndex":0}}`))
	if err != nil || m.Candidate == nil || *m.Candidate.SDPMid != "0" || *m.Candidate.SDPMLineIndex != 0 {
		t.Fatalf("decoded %+v, %v", m, err)
	}
	m, err = bus.DecodeICE([]byte(`{"candidate":null}`))
	if err != nil || m.Candidate != nil {
		t.Fatalf("end of candidates: %+v, %v", m, err)
	}
	out, err := bus.Encode(&bus.ICE{})
	if err != nil || string(out) != `{"candidate":null}` {
		t.Errorf("Encode(end of candidates) = %s, %v", out, err)
	}
	for _, in := range []string{`{}`, `{"candidate":1}`, `null`, `"x"`, fmt.Sprintf(`{"candidate":{"candidate":%q}}`, strings.Repeat("c", bus.MaxCandidateSize+1))} {
		if _, err := bus.DecodeICE([]byte(in)); err == nil {
			t.Errorf("DecodeICE(%.40s) accepted", in)
		}
	}
}

func TestDecodeCancelAndSlaveInfo(t *testing.T) {
	for _, in := range []string{``, `{}`, ` `, `{"x":1}`} {
		if _, err := bus.DecodeCancel([]byte(in)); err != nil {
			t.Errorf("DecodeCancel(%q) = %v", in, err)
		}
	}
	if _, err := bus.DecodeCancel([]byte(`[`)); !errors.Is(err, bus.ErrMalformed) {
		t.Errorf("DecodeCancel([) = %v", err)
	}
	si, err := bus.DecodeSlaveInfo([]byte(`{"id":"s1","startedAt":"2026-01-02T03:04:05Z"}`))
	if err != nil || string(si.UserData) != "null" {
		t.Errorf("no userData: %+v %v", si, err)
	}
	if _, err := bus.DecodeSlaveInfo([]byte(`{"id":"s.1"}`)); !errors.Is(err, bus.ErrInvalidID) {
		t.Errorf("invalid id: %v", err)
	}
	big := bus.SlaveInfo{ID: "s1", UserData: json.RawMessage(`"` + strings.Repeat("u", bus.MaxUserDataSize) + `"`)}
	if _, err := bus.Encode(&big); !errors.Is(err, bus.ErrTooLarge) {
		t.Errorf("big userData: %v", err)
	}
}

func TestWireErrors(t *testing.T) {
	err := fmt.Errorf("relay: %w", bus.NewError(bus.CodeNoSuchSlave, "slave %s", "s1"))
	if !errors.Is(err, bus.ErrNoSuchSlave) {
		t.Errorf("%v does not match ErrNoSuchSlave", err)
	}
	if errors.Is(err, bus.ErrTimeout) {
		t.Errorf("%v matches ErrTimeout", err)
	}
	var we *bus.Error
	if !errors.As(err, &we) || we.Code != bus.CodeNoSuchSlave || we.Message != "slave s1" {
		t.Errorf("errors.As: %+v", we)
	}
	if got, want := we.Error(), "bus: no_such_slave: slave s1"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}
