package bus_test

import (
	"encoding/json"
	"testing"

	"github.com/enslavism/enslavism/bus"
)

// Each fuzz target decodes arbitrary bytes: it must never panic, and what it
// accepts must re-encode and decode to the same message.

func FuzzDecodeOfferRequest(f *testing.F) {
	f.Add([]byte(`{"session":"k1","gateway":"g1","sdp":"v=0","identity":{"u":1}}`))
	f.Add([]byte(`{"session":"a.b","gateway":"*","sdp":""}`))
	f.Add([]byte(`{"identity":[`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := bus.DecodeOfferRequest(data)
		if err != nil {
			return
		}
		roundTrip(t, &m, func(b []byte) (any, error) { return bus.DecodeOfferRequest(b) })
	})
}

func FuzzDecodeOfferReply(f *testing.F) {
	f.Add([]byte(`{"sdp":"v=0"}`))
	f.Add([]byte(`{"rejected":"full"}`))
	f.Add([]byte(`{"error":{"code":"timeout","message":"m"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := bus.DecodeOfferReply(data)
		if err != nil {
			return
		}
		roundTrip(t, &m, func(b []byte) (any, error) { return bus.DecodeOfferReply(b) })
	})
}

func FuzzDecodeICE(f *testing.F) {
	f.Add([]byte(`{"candidate":{"candidate":"candidate:1 1 udp 1 127.0.0.1 1 typ host","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"u"}}`))
	f.Add([]byte(`{"candidate":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := bus.DecodeICE(data)
		if err != nil {
			return
		}
		roundTrip(t, &m, func(b []byte) (any, error) { return bus.DecodeICE(b) })
	})
}

func FuzzDecodeCancel(f *testing.F) {
	f.Add([]byte(`{}`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = bus.DecodeCancel(data)
	})
}

func FuzzDecodeSlaveInfo(f *testing.F) {
	f.Add([]byte(`{"id":"s1","userData":{"name":"x"},"startedAt":"2026-01-02T03:04:05Z"}`))
	f.Add([]byte(`{"id":"s1","userData":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := bus.DecodeSlaveInfo(data)
		if err != nil {
			return
		}
		if _, err := bus.Encode(&m); err != nil {
			t.Fatalf("accepted %q but cannot re-encode: %v", data, err)
		}
	})
}

func FuzzParseSlaveSubject(f *testing.F) {
	f.Add("enslavism.slave.s1.session.k1.ice")
	f.Add("enslavism.slave.s1.offer")
	f.Fuzz(func(t *testing.T, subject string) {
		var s bus.Subjects
		slave, kind, session, err := s.ParseSlaveSubject(subject)
		if err != nil {
			return
		}
		var rebuilt string
		switch kind {
		case bus.KindOffer:
			rebuilt, err = s.SlaveOffer(slave)
		case bus.KindICE:
			rebuilt, err = s.SlaveICE(slave, session)
		case bus.KindCancel:
			rebuilt, err = s.SlaveCancel(slave, session)
		}
		if err != nil || rebuilt != subject {
			t.Fatalf("parsed %q as %q %v %q, rebuilt %q %v", subject, slave, kind, session, rebuilt, err)
		}
	})
}

func roundTrip(t *testing.T, m bus.Message, decode func([]byte) (any, error)) {
	t.Helper()
	b, err := bus.Encode(m)
	if err != nil {
		t.Fatalf("accepted %+v but cannot re-encode: %v", m, err)
	}
	again, err := decode(b)
	if err != nil {
		t.Fatalf("re-encoded %s does not decode: %v", b, err)
	}
	b2, _ := json.Marshal(again)
	b1, _ := json.Marshal(m)
	if string(b1) != string(b2) {
		t.Fatalf("round trip changed %s into %s", b1, b2)
	}
}
