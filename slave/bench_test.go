package slave

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/enslavism/enslavism/embedded"
	"github.com/enslavism/enslavism/slave/internal/testclient"
)

// The connect benchmarks measure what a browser waits for: from CreateOffer
// to its user DataChannel open, through a real slave over NATS
// (BenchmarkConnectViaNATS), and between two pion peers with the same
// settings signalling by direct function calls (BenchmarkConnectDirect): the
// difference is the cost of the bus and of the slave's bookkeeping.

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func BenchmarkConnectViaNATS(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	srv, err := embedded.Start(ctx, embedded.Config{Logger: discardLogger()})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	nc, err := srv.Connect()
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	s, err := Start(ctx, nc, Config{
		ICE:    ICEConfig{Loopback: true},
		Logger: discardLogger(),
		Handler: HandlerFunc(func(ctx context.Context, c *Client) {
			c.OnDataChannel(func(*webrtc.DataChannel) {})
			<-ctx.Done()
		}),
	})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	api := testclient.NewAPI(false)

	var durs []time.Duration
	b.ResetTimer()
	for range b.N {
		p, err := testclient.Dial(ctx, nc, s.ID(), testclient.Options{API: api})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		durs = append(durs, p.OpenAt.Sub(p.OfferAt))
		_ = p.Close()
		for s.NumSessions() > 0 {
			time.Sleep(time.Millisecond)
		}
		b.StartTimer()
	}
	reportDurations(b, durs)
}

func BenchmarkConnectDirect(b *testing.B) {
	for _, tc := range []struct {
		name      string
		transport TransportConfig
	}{
		{"fast-connect", TransportConfig{}},
		{"pion-defaults", TransportConfig{DTLSClient: true, HelloVerify: true, DisableSCTPSnap: true}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			cfg := Config{ICE: ICEConfig{Loopback: true}, Transport: tc.transport}
			answererAPI, _, err := newAPI(&cfg, pionLoggerFactory{log: discardLogger()})
			if err != nil {
				b.Fatal(err)
			}
			var certs certCache
			offererAPI := testclient.NewAPI(false)
			var durs []time.Duration
			b.ResetTimer()
			for range b.N {
				d, closeAll := connectDirect(b, offererAPI, answererAPI, &certs)
				b.StopTimer()
				durs = append(durs, d)
				closeAll()
				b.StartTimer()
			}
			reportDurations(b, durs)
		})
	}
}

// connectDirect connects two peers as the browser and the slave would, with
// trickle ICE and the control channel, signalling by function calls. It
// returns the time from CreateOffer to the user channel open on the offerer.
func connectDirect(b *testing.B, offererAPI, answererAPI *webrtc.API, certs *certCache) (time.Duration, func()) {
	cs, err := certs.get()
	if err != nil {
		b.Fatal(err)
	}
	off, err := offererAPI.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		b.Fatal(err)
	}
	ans, err := answererAPI.NewPeerConnection(webrtc.Configuration{Certificates: cs})
	if err != nil {
		b.Fatal(err)
	}
	closeAll := func() {
		_ = off.Close()
		_ = ans.Close()
	}
	negotiated, id := true, ControlID
	ctrl := &webrtc.DataChannelInit{Negotiated: &negotiated, ID: &id}
	if _, err := off.CreateDataChannel(ControlLabel, ctrl); err != nil {
		b.Fatal(err)
	}
	if _, err := newControlChannel(ans); err != nil {
		b.Fatal(err)
	}
	ans.OnDataChannel(func(*webrtc.DataChannel) {})
	user, err := off.CreateDataChannel("user", nil)
	if err != nil {
		b.Fatal(err)
	}
	open := make(chan time.Time, 1)
	user.OnOpen(func() { open <- time.Now() })

	// Trickle both ways; candidates wait for the remote description.
	offQ, ansQ := newTrickle(off), newTrickle(ans)
	off.OnICECandidate(func(c *webrtc.ICECandidate) { ansQ.add(c) })
	ans.OnICECandidate(func(c *webrtc.ICECandidate) { offQ.add(c) })

	start := time.Now()
	offer, err := off.CreateOffer(nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := off.SetLocalDescription(offer); err != nil {
		b.Fatal(err)
	}
	if err := ans.SetRemoteDescription(offer); err != nil {
		b.Fatal(err)
	}
	answer, err := ans.CreateAnswer(nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := ans.SetLocalDescription(answer); err != nil {
		b.Fatal(err)
	}
	ansQ.ready()
	if err := off.SetRemoteDescription(answer); err != nil {
		b.Fatal(err)
	}
	offQ.ready()
	select {
	case at := <-open:
		return at.Sub(start), closeAll
	case <-time.After(10 * time.Second):
		b.Fatal("no open channel within 10 s")
	}
	return 0, closeAll
}

// trickle adds candidates to pc once its remote description is set.
type trickle struct {
	pc  *webrtc.PeerConnection
	mu  sync.Mutex
	set bool
	q   []webrtc.ICECandidateInit
}

func newTrickle(pc *webrtc.PeerConnection) *trickle { return &trickle{pc: pc} }

func (t *trickle) add(c *webrtc.ICECandidate) {
	var init webrtc.ICECandidateInit
	if c != nil {
		init = c.ToJSON()
	}
	t.mu.Lock()
	if !t.set {
		t.q = append(t.q, init)
		t.mu.Unlock()
		return
	}
	t.mu.Unlock()
	_ = t.pc.AddICECandidate(init)
}

func (t *trickle) ready() {
	t.mu.Lock()
	t.set = true
	q := t.q
	t.q = nil
	t.mu.Unlock()
	for _, c := range q {
		_ = t.pc.AddICECandidate(c)
	}
}

// reportDurations reports the median and 90th percentile connect times.
func reportDurations(b *testing.B, durs []time.Duration) {
	if len(durs) == 0 {
		return
	}
	slices.Sort(durs)
	b.ReportMetric(float64(durs[len(durs)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(durs[len(durs)*9/10].Microseconds())/1000, "p90-ms")
}
