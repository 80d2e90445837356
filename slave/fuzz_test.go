package slave

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/pion/webrtc/v4"

	"github.com/enslavism/enslavism/bus"
	"github.com/enslavism/enslavism/embedded"
	"github.com/enslavism/enslavism/slave/internal/testclient"
)

// fuzzSlave starts a real slave on an embedded server for a fuzz target; its
// messages are then fed straight into handleMsg, as the subscription would.
func fuzzSlave(f *testing.F) *Slave {
	f.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv, err := embedded.Start(ctx, embedded.Config{Logger: discardLogger(), DontListen: true})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = srv.Close() })
	nc, err := srv.Connect()
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(nc.Close)
	s, err := Start(ctx, nc, Config{
		ICE:            ICEConfig{Loopback: true},
		ConnectTimeout: 500 * time.Millisecond,
		MaxPending:     16,
		Logger:         discardLogger(),
		Handler: HandlerFunc(func(ctx context.Context, c *Client) {
			<-ctx.Done()
		}),
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = s.Close() })
	return s
}

// fuzzOffer is a real browser-like offer SDP.
func fuzzOffer(f *testing.F) string {
	f.Helper()
	pc, err := testclient.NewAPI(false).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		f.Fatal(err)
	}
	defer pc.Close()
	negotiated, id := true, ControlID
	if _, err := pc.CreateDataChannel(ControlLabel, &webrtc.DataChannelInit{Negotiated: &negotiated, ID: &id}); err != nil {
		f.Fatal(err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		f.Fatal(err)
	}
	return offer.SDP
}

func FuzzHandleOffer(f *testing.F) {
	s := fuzzSlave(f)
	subj, _ := s.subj.SlaveOffer(s.id)
	sdp := fuzzOffer(f)
	good, _ := json.Marshal(map[string]string{"session": "s1", "gateway": "gw", "sdp": sdp})
	f.Add(good)
	f.Add([]byte(strings.Replace(string(good), "m=application", "m=audio", 1)))
	f.Add([]byte(strings.Replace(string(good), "a=fingerprint", "a=fingerprint:x", 1)))
	f.Add([]byte(strings.Replace(string(good), "a=ice-ufrag", "a=ice-ufra", 1)))
	f.Add([]byte(strings.Replace(string(good), "UDP/DTLS/SCTP", "RTP/AVP", 1)))
	f.Add([]byte(`{"session":"s2","gateway":"gw","sdp":"v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"}`))
	f.Add([]byte(`{"session":"s3","gateway":"gw","sdp":"x","identity":{"a":[1,2,{"b":null}]}}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`null`))
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xfe, '{'})
	f.Fuzz(func(t *testing.T, data []byte) {
		// Unique sessions, so that valid offers are handled, not refused as
		// duplicates.
		data = bytes.Replace(data, []byte(`"s1"`), []byte(`"`+bus.NewID()+`"`), 1)
		s.handleMsg(&nats.Msg{Subject: subj, Reply: "fuzz.reply", Data: data})
		if n := s.NumSessions(); n > 16 {
			t.Fatalf("%d sessions, MaxPending is 16", n)
		}
	})
}

func FuzzHandleICE(f *testing.F) {
	s := fuzzSlave(f)
	// A pending session with its peer connection, to add candidates to.
	req := &bus.OfferRequest{Session: "known", Gateway: "gw", SDP: fuzzOffer(f)}
	s.handleOffer(&nats.Msg{Subject: "x", Reply: "fuzz.reply", Data: mustEncode(f, req)})
	f.Add("known", []byte(`{"candidate":{"candidate":"candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host","sdpMid":"0","sdpMLineIndex":0}}`))
	f.Add("known", []byte(`{"candidate":{"candidate":"candidate:1 1 udp 1 ::1 1 typ relay raddr x rport y"}}`))
	f.Add("known", []byte(`{"candidate":{"candidate":"candidate:1 1 tcp 1 host.local 9 typ host tcptype passive","usernameFragment":"zz"}}`))
	f.Add("known", []byte(`{"candidate":null}`))
	f.Add("unknown", []byte(`{"candidate":{"candidate":""}}`))
	f.Add("known", []byte(`{"candidate":{}}`))
	f.Add("known", []byte(`garbage`))
	f.Add("bad id", []byte(`{"candidate":null}`))
	f.Fuzz(func(t *testing.T, session string, data []byte) {
		subj, err := s.subj.SlaveICE(s.id, session)
		if err != nil {
			subj = "enslavism.slave." + s.id + ".session." + session + ".ice"
		}
		s.handleMsg(&nats.Msg{Subject: subj, Data: data})
		if n := s.NumOrphans(); n > maxOrphanSessions {
			t.Fatalf("%d orphan sessions, at most %d", n, maxOrphanSessions)
		}
	})
}

func FuzzHandleSubject(f *testing.F) {
	s := fuzzSlave(f)
	f.Add("enslavism.slave."+s.id+".session.a.cancel", []byte(`{}`))
	f.Add("enslavism.slave."+s.id+".session.a.b.cancel", []byte(``))
	f.Add("enslavism.slave."+s.id+".offer.x", []byte(`{}`))
	f.Add("enslavism.slave."+s.id, []byte(`{}`))
	f.Add("enslavism.slave."+s.id+".", []byte(`{}`))
	f.Add("other.slave."+s.id+".offer", []byte(`{}`))
	f.Fuzz(func(t *testing.T, subject string, data []byte) {
		s.handleMsg(&nats.Msg{Subject: subject, Reply: "fuzz.reply", Data: data})
	})
}

func FuzzControlReply(f *testing.F) {
	f.Add([]byte(`{"type":"ping","t":1}`))
	f.Add([]byte(`{"type":"ping","t":-1.5e300}`))
	f.Add([]byte(`{"type":"ping","t":"1"}`))
	f.Add([]byte(`{"type":"ping","t":[1]}`))
	f.Add([]byte(`{"type":"ping"}`))
	f.Add([]byte(`{"type":"pong","t":1}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, msg []byte) {
		reply, ok := controlReply(msg)
		if !ok {
			return
		}
		var r struct {
			Type string          `json:"type"`
			T    json.RawMessage `json:"t"`
		}
		if err := json.Unmarshal(reply, &r); err != nil {
			t.Fatalf("reply %s is not JSON: %v", reply, err)
		}
		var n json.Number
		if r.Type != "pong" || json.Unmarshal(r.T, &n) != nil || r.T[0] == '"' {
			t.Fatalf("reply %s to %s: want a pong with a number", reply, msg)
		}
	})
}

func mustEncode(f *testing.F, m bus.Message) []byte {
	f.Helper()
	b, err := bus.Encode(m)
	if err != nil {
		f.Fatal(err)
	}
	return b
}
