package bus_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/enslavism/enslavism/bus"
	"github.com/enslavism/enslavism/embedded"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestPermissions runs a slave and a gateway as NATS users restricted to the
// permissions of their roles, against a real server that enforces them:
// everything the contract needs works, and what another role or another
// slave owns is refused.
func TestPermissions(t *testing.T) {
	ctx := testCtx(t)
	var s bus.Subjects
	sp, err := s.SlavePermissions("s1")
	if err != nil {
		t.Fatal(err)
	}
	gp, err := s.GatewayPermissions("g1")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := embedded.Start(ctx, embedded.Config{
		Logger: slog.New(slog.DiscardHandler),
		Users: []embedded.User{
			{Name: "s1", Password: "pw-s1", Permissions: new(embedded.Permissions(sp))},
			{Name: "g1", Password: "pw-g1", Permissions: new(embedded.Permissions(gp))},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	// An unrestricted observer records every subject that gets through.
	obs, err := srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer obs.Close()
	var mu sync.Mutex
	seen := map[string]bool{}
	if _, err := obs.Subscribe(">", func(m *nats.Msg) { mu.Lock(); seen[m.Subject] = true; mu.Unlock() }); err != nil {
		t.Fatal(err)
	}
	_ = obs.Flush()

	type user struct {
		nc     *nats.Conn
		js     jetstream.JetStream
		denied chan string
	}
	login := func(role, id, pw string) user {
		inbox, err := bus.InboxPrefix(role, id)
		if err != nil {
			t.Fatal(err)
		}
		u := user{denied: make(chan string, 16)}
		u.nc, err = nats.Connect(srv.ClientURL(), nats.UserInfo(id, pw), nats.CustomInboxPrefix(inbox),
			nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
				if errors.Is(err, nats.ErrPermissionViolation) || strings.Contains(err.Error(), "Permissions Violation") {
					select {
					case u.denied <- err.Error():
					default:
					}
				}
			}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(u.nc.Close)
		u.js, _ = jetstream.New(u.nc)
		return u
	}
	expectDenied := func(u user, what string) {
		t.Helper()
		select {
		case msg := <-u.denied:
			t.Logf("%s refused: %s", what, msg)
		case <-time.After(3 * time.Second):
			t.Errorf("%s was not refused", what)
		}
	}

	gw := login("gateway", "g1", "pw-g1")
	sl := login("slave", "s1", "pw-s1")

	// Allowed: the gateway creates and watches the bucket.
	gwP, err := bus.OpenPresence(ctx, gw.js, bus.PresenceConfig{})
	if err != nil {
		t.Fatal("gateway opens presence:", err)
	}
	w, err := gwP.Watch(ctx, bus.WatchOptions{})
	if err != nil {
		t.Fatal("gateway watches presence:", err)
	}
	defer w.Stop()

	// Allowed: the slave registers itself, updates, answers offers.
	slP, err := bus.OpenPresence(ctx, sl.js, bus.PresenceConfig{})
	if err != nil {
		t.Fatal("slave opens presence:", err)
	}
	reg, err := slP.Register(ctx, bus.SlaveInfo{ID: "s1"}, bus.RegisterOptions{})
	if err != nil {
		t.Fatal("slave registers itself:", err)
	}
	if ev, _ := nextEvent(t, w, 3*time.Second); ev.Kind != bus.SlaveAdded || ev.Slave.ID != "s1" {
		t.Fatalf("got %v %s, want added s1", ev.Kind, ev.Slave.ID)
	}
	offerSubj, _ := s.SlaveOffer("s1")
	slaveSub, _ := s.SlaveWildcard("s1")
	if _, err := sl.nc.Subscribe(slaveSub, func(m *nats.Msg) {
		if m.Reply != "" {
			_ = m.Respond([]byte(`{"sdp":"answer"}`))
		}
	}); err != nil {
		t.Fatal(err)
	}
	gwSub, _ := s.GatewayWildcard("g1")
	gotICE := make(chan string, 1)
	if _, err := gw.nc.Subscribe(gwSub, func(m *nats.Msg) { gotICE <- m.Subject }); err != nil {
		t.Fatal(err)
	}
	_ = sl.nc.Flush()
	_ = gw.nc.Flush()
	reply, err := gw.nc.Request(offerSubj, []byte(`{}`), 3*time.Second)
	if err != nil || string(reply.Data) != `{"sdp":"answer"}` {
		t.Fatalf("offer request through permissions: %v", err)
	}
	iceSubj, _ := s.GatewayICE("g1", "k1")
	if err := sl.nc.Publish(iceSubj, []byte(`{"candidate":null}`)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-gotICE:
	case <-time.After(3 * time.Second):
		t.Fatal("slave's candidate did not reach the gateway")
	}
	if err := reg.SetUserData(ctx, []byte(`{"n":1}`)); err != nil {
		t.Fatal("slave updates its userData:", err)
	}

	// Refused: a slave writing another slave's presence.
	shortCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
	if _, err := slP.Register(shortCtx, bus.SlaveInfo{ID: "s2"}, bus.RegisterOptions{}); err == nil {
		t.Error("slave s1 registered presence for s2")
	}
	cancel()
	expectDenied(sl, "slave s1 writing presence of s2")
	// Refused: a slave reading another slave's subjects or all inboxes.
	other, _ := s.SlaveWildcard("s2")
	for _, subj := range []string{other, "_INBOX.>", "$KV.>"} {
		if _, err := sl.nc.Subscribe(subj, func(*nats.Msg) {}); err != nil {
			t.Fatal(err)
		}
		expectDenied(sl, "slave subscribing to "+subj)
	}
	// Refused: a slave sending offers; a gateway writing presence or reading
	// another gateway's candidates.
	otherOffer, _ := s.SlaveOffer("s2")
	_ = sl.nc.Publish(otherOffer, []byte(`{}`))
	expectDenied(sl, "slave publishing an offer")
	_ = gw.nc.Publish("$KV.enslavism-slaves.fake", []byte(`{"id":"fake"}`))
	expectDenied(gw, "gateway writing presence")
	otherGW, _ := s.GatewayWildcard("g2")
	if _, err := gw.nc.Subscribe(otherGW, func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	expectDenied(gw, "gateway subscribing to another gateway")

	if err := reg.Deregister(ctx); err != nil {
		t.Fatal("slave deregisters:", err)
	}
	for {
		ev, _ := nextEvent(t, w, 3*time.Second)
		if ev.Kind == bus.SlaveRemoved && ev.Slave.ID == "s1" {
			break
		}
		if ev.Slave.ID != "s1" {
			t.Fatalf("watcher saw %v %s", ev.Kind, ev.Slave.ID)
		}
	}
	_ = obs.Flush()
	mu.Lock()
	defer mu.Unlock()
	for _, forbidden := range []string{"$KV.enslavism-slaves.s2", "$KV.enslavism-slaves.fake", otherOffer} {
		if seen[forbidden] {
			t.Errorf("%s got through", forbidden)
		}
	}
}
