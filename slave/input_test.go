package slave_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/pion/webrtc/v4"

	"github.com/enslavism/enslavism/bus"
	"github.com/enslavism/enslavism/slave"
	"github.com/enslavism/enslavism/slave/internal/testclient"
)

// rawOffer returns the SDP offer of a pion peer connection with the control
// channel (withData) or nothing at all, then closes it: an offer that never
// connects.
func rawOffer(t testing.TB, withData bool) string {
	t.Helper()
	pc, err := testclient.NewAPI(false).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if withData {
		negotiated, id := true, testclient.ControlID
		if _, err := pc.CreateDataChannel(testclient.ControlLabel, &webrtc.DataChannelInit{Negotiated: &negotiated, ID: &id}); err != nil {
			t.Fatal(err)
		}
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	return offer.SDP
}

// request sends payload to subject and decodes the offer reply.
func request(t testing.TB, nc *nats.Conn, subject string, payload []byte) bus.OfferReply {
	t.Helper()
	m, err := nc.Request(subject, payload, 5*time.Second)
	if err != nil {
		t.Fatalf("request %s: %v", subject, err)
	}
	r, err := bus.DecodeOfferReply(m.Data)
	if err != nil {
		t.Fatalf("reply %s: %v", m.Data, err)
	}
	return r
}

func offerJSON(t testing.TB, session, sdp string) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]string{"session": session, "gateway": "gw", "sdp": sdp})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBadOffers(t *testing.T) {
	srv := startServer(t)
	nc := connect(t, srv)
	ctx := testCtx(t, 20*time.Second)
	s := startSlave(t, nc, slave.Config{})
	subj, _ := bus.Subjects{}.SlaveOffer(s.ID())
	good := rawOffer(t, true)
	tests := []struct {
		name    string
		payload []byte
	}{
		{"empty", nil},
		{"null", []byte(`null`)},
		{"not json", []byte(`offer please`)},
		{"array", []byte(`[1,2]`)},
		{"empty object", []byte(`{}`)},
		{"bad session", offerJSON(t, "not a valid id", good)},
		{"subject injection", offerJSON(t, "a.>", good)},
		{"no sdp", offerJSON(t, "s1", "")},
		{"garbage sdp", offerJSON(t, "s2", "garbage")},
		{"truncated sdp", offerJSON(t, "s3", good[:len(good)/2])},
		{"no data section", offerJSON(t, "s4", rawOffer(t, false))},
		{"identity not json", []byte(`{"session":"s5","gateway":"gw","sdp":"v=0","identity":nope}`)},
		{"too large", offerJSON(t, "s6", good+strings.Repeat("a", bus.MaxMessageSize))},
		{"wrong types", []byte(`{"session":1,"gateway":true,"sdp":{}}`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := request(t, nc, subj, tt.payload)
			if r.Error == nil || r.Error.Code != bus.CodeBadRequest {
				t.Fatalf("reply %+v, want error bad_request", r)
			}
			t.Logf("message: %s", r.Error.Message)
		})
	}

	// A session key already in use.
	p, err := testclient.Dial(ctx, nc, s.ID(), testclient.Options{Session: "taken"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if r := request(t, nc, subj, offerJSON(t, "taken", good)); r.Error == nil || r.Error.Code != bus.CodeBadRequest {
		t.Errorf("duplicate session: %+v, want bad_request", r)
	}

	// A subject of no known shape, as a request: an error reply.
	wild, _ := bus.Subjects{}.SlaveWildcard(s.ID())
	if r := request(t, nc, strings.TrimSuffix(wild, ">")+"what", []byte(`{}`)); r.Error == nil || r.Error.Code != bus.CodeBadRequest {
		t.Errorf("unknown subject: %+v, want bad_request", r)
	}

	// An offer published without a reply subject is dropped.
	if err := nc.Publish(subj, offerJSON(t, "noreply", good)); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if n := s.NumSessions(); n != 1 {
		t.Errorf("%d sessions, want 1 (the connected one)", n)
	}
	_ = p.Close()
	eventually(t, 5*time.Second, "sessions forgotten", func() bool { return s.NumSessions() == 0 })
}

func TestBadCandidatesAndCancels(t *testing.T) {
	srv := startServer(t)
	nc := connect(t, srv)
	ctx := testCtx(t, 20*time.Second)
	s := startSlave(t, nc, slave.Config{})
	p, err := testclient.Dial(ctx, nc, s.ID(), testclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	sub := bus.Subjects{}
	wild, _ := sub.SlaveWildcard(s.ID())
	prefix := strings.TrimSuffix(wild, ">")
	payloads := [][]byte{
		nil, []byte(`{}`), []byte(`nope`), []byte(`{"candidate":5}`), []byte(`{"candidate":{"candidate":7}}`),
		[]byte(`{"candidate":{"candidate":"candidate:garbage"}}`),
		[]byte(`{"candidate":{"candidate":"candidate:1 1 udp 1 10.0.0.1 9 typ host","sdpMLineIndex":70000}}`),
		[]byte(`{"candidate":{"candidate":"` + strings.Repeat("x", 5000) + `"}}`),
		[]byte(`{"candidate":null}`),
	}
	// Garbage for the connected session, for unknown sessions, and on
	// subjects of the wrong shape: never a panic, never a reply.
	for i, pl := range payloads {
		for _, subj := range []string{
			prefix + "session." + p.Session + ".ice",
			prefix + "session.unknown" + strconv.Itoa(i) + ".ice",
			prefix + "session." + p.Session + ".cancel",
			prefix + "session.bad..ice",
			prefix + "session.x.y.ice",
			prefix + "session",
		} {
			if err := nc.Publish(subj, pl); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A flood of candidates for sessions the slave never saw stays bounded.
	for i := range 500 {
		subj, _ := sub.SlaveICE(s.ID(), fmt.Sprint("ghost", i))
		if err := nc.Publish(subj, []byte(`{"candidate":{"candidate":"candidate:1 1 udp 1 127.0.0.1 9 typ host"}}`)); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if n := s.NumOrphans(); n > 64 {
		t.Errorf("%d unknown sessions kept, want at most 64", n)
	}
	// A cancel for a connected session is ignored: the client still echoes.
	if err := p.Channel.SendText("alive"); err != nil {
		t.Fatal(err)
	}
	if m, err := testclient.Recv(ctx, p.Messages); err != nil || string(m.Data) != "alive" {
		t.Fatalf("echo after garbage: %q, %v", m.Data, err)
	}
	if n := s.NumClients(); n != 1 {
		t.Errorf("%d clients, want 1", n)
	}
}

func TestCancel(t *testing.T) {
	srv := startServer(t)
	nc := connect(t, srv)
	s := startSlave(t, nc, slave.Config{})
	subj, _ := bus.Subjects{}.SlaveOffer(s.ID())
	r := request(t, nc, subj, offerJSON(t, "never", rawOffer(t, true)))
	if r.SDP == "" {
		t.Fatalf("reply %+v, want an answer", r)
	}
	if n := s.NumPending(); n != 1 {
		t.Fatalf("%d pending sessions, want 1", n)
	}
	cancel, _ := bus.Subjects{}.SlaveCancel(s.ID(), "never")
	if err := nc.Publish(cancel, []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 3*time.Second, "cancelled session dropped", func() bool { return s.NumSessions() == 0 })
}

func TestConnectTimeout(t *testing.T) {
	srv := startServer(t)
	nc := connect(t, srv)
	s := startSlave(t, nc, slave.Config{ConnectTimeout: 300 * time.Millisecond})
	subj, _ := bus.Subjects{}.SlaveOffer(s.ID())
	start := time.Now()
	if r := request(t, nc, subj, offerJSON(t, "never", rawOffer(t, true))); r.SDP == "" {
		t.Fatalf("reply %+v, want an answer", r)
	}
	eventually(t, 5*time.Second, "session that never connected dropped", func() bool { return s.NumSessions() == 0 })
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Errorf("dropped after %v, before the timeout", took)
	}
}

func TestAcceptOutlivesTimeout(t *testing.T) {
	srv := startServer(t)
	nc := connect(t, srv)
	ctx := testCtx(t, 10*time.Second)
	s := startSlave(t, nc, slave.Config{
		ConnectTimeout: 200 * time.Millisecond,
		Accept: func(ctx context.Context, o *slave.Offer) error {
			<-ctx.Done() // a slow database
			return ctx.Err()
		},
	})
	_, err := testclient.Dial(ctx, nc, s.ID(), testclient.Options{})
	if !errors.Is(err, bus.ErrTimeout) {
		t.Fatalf("got %v, want timeout", err)
	}
	eventually(t, 3*time.Second, "session dropped", func() bool { return s.NumSessions() == 0 })
}

func TestMaxPending(t *testing.T) {
	srv := startServer(t)
	nc := connect(t, srv)
	s := startSlave(t, nc, slave.Config{MaxPending: 2})
	subj, _ := bus.Subjects{}.SlaveOffer(s.ID())
	sdp := rawOffer(t, true)
	for i := range 2 {
		if r := request(t, nc, subj, offerJSON(t, fmt.Sprint("p", i), sdp)); r.SDP == "" {
			t.Fatalf("reply %+v, want an answer", r)
		}
	}
	if r := request(t, nc, subj, offerJSON(t, "p3", sdp)); r.Error == nil || r.Error.Code != bus.CodeRateLimited {
		t.Fatalf("reply %+v, want rate_limited", r)
	}
}

func TestEarlyCandidates(t *testing.T) {
	srv := startServer(t)
	nc := connect(t, srv)
	ctx := testCtx(t, 10*time.Second)
	s := startSlave(t, nc, slave.Config{})
	p, err := testclient.Dial(ctx, nc, s.ID(), testclient.Options{EarlyCandidates: true})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if n := s.NumOrphans(); n != 0 {
		t.Errorf("%d unknown sessions kept; the offer should have taken its candidates", n)
	}
}

func TestUDPMux(t *testing.T) {
	for _, addr := range []string{"", "127.0.0.1"} {
		t.Run("addr="+addr, func(t *testing.T) {
			srv := startServer(t)
			nc := connect(t, srv)
			ctx := testCtx(t, 20*time.Second)
			port := freeUDPPort(t)
			var mu sync.Mutex
			var localPorts []int
			s := startSlave(t, nc, slave.Config{
				ICE: slave.ICEConfig{UDPMuxPort: port, UDPMuxAddr: addr},
				Handler: slave.HandlerFunc(func(ctx context.Context, c *slave.Client) {
					c.OnDataChannel(echo)
					if pair, err := c.PeerConnection().SCTP().Transport().ICETransport().GetSelectedCandidatePair(); err == nil && pair != nil {
						mu.Lock()
						localPorts = append(localPorts, int(pair.Local.Port))
						mu.Unlock()
					}
					<-ctx.Done()
				}),
			})
			for range 3 {
				p, err := testclient.Dial(ctx, nc, s.ID(), testclient.Options{})
				if err != nil {
					t.Fatal(err)
				}
				defer p.Close()
			}
			mu.Lock()
			for _, lp := range localPorts {
				if lp != port {
					t.Errorf("a peer connected on port %d, want the mux port %d", lp, port)
				}
			}
			if len(localPorts) != 3 {
				t.Errorf("%d selected pairs, want 3", len(localPorts))
			}
			mu.Unlock()
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			// Close released the port.
			c, err := net.ListenPacket("udp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
			if err != nil {
				t.Fatalf("mux port still taken after Close: %v", err)
			}
			_ = c.Close()
		})
	}
}

func TestNAT1To1(t *testing.T) {
	for _, ips := range [][]string{{"203.0.113.7"}, {"203.0.113.7/127.0.0.1"}} {
		t.Run(ips[0], func(t *testing.T) { testNAT1To1(t, ips) })
	}
}

func testNAT1To1(t *testing.T, ips []string) {
	srv := startServer(t)
	nc := connect(t, srv)
	s := startSlave(t, nc, slave.Config{ICE: slave.ICEConfig{NAT1To1IPs: ips}})
	gw := bus.NewID()
	wild, _ := bus.Subjects{}.GatewayWildcard(gw)
	cands := make(chan bus.ICE, 16)
	sub, err := nc.Subscribe(wild, func(m *nats.Msg) {
		if ice, err := bus.DecodeICE(m.Data); err == nil {
			cands <- ice
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	req, _ := json.Marshal(map[string]string{"session": "nat", "gateway": gw, "sdp": rawOffer(t, true)})
	subj, _ := bus.Subjects{}.SlaveOffer(s.ID())
	if r := request(t, nc, subj, req); r.SDP == "" {
		t.Fatalf("reply %+v, want an answer", r)
	}
	var got []string
	timeout := time.After(5 * time.Second)
	for {
		select {
		case c := <-cands:
			if c.Candidate == nil {
				if len(got) == 0 {
					t.Fatal("no candidate before end-of-candidates")
				}
				for _, c := range got {
					if !strings.Contains(c, " 203.0.113.7 ") || strings.Contains(c, "127.0.0.1") {
						t.Errorf("candidate %q: want the NAT address only", c)
					}
				}
				return
			}
			got = append(got, c.Candidate.Candidate)
		case <-timeout:
			t.Fatalf("no end-of-candidates; got %q", got)
		}
	}
}
