package bus_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/enslavism/enslavism/bus"
)

func TestValidateRegion(t *testing.T) {
	for _, ok := range []string{"", "eu-west", "Frankfurt am Main", "東京", "a/b (1)", strings.Repeat("x", bus.MaxRegionLen)} {
		if err := bus.ValidateRegion(ok); err != nil {
			t.Errorf("ValidateRegion(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []struct {
		region string
		want   error
	}{
		{strings.Repeat("x", bus.MaxRegionLen+1), bus.ErrTooLarge},
		{strings.Repeat("é", 33), bus.ErrTooLarge}, // 66 bytes
		{"eu\nwest", bus.ErrMalformed},
		{"tab\there", bus.ErrMalformed},
		{"nul\x00", bus.ErrMalformed},
		{"\xff\xfe", bus.ErrMalformed},
		{"zero\u200bwidth", bus.ErrMalformed},
	} {
		if err := bus.ValidateRegion(bad.region); !errors.Is(err, bad.want) {
			t.Errorf("ValidateRegion(%q) = %v, want %v", bad.region, err, bad.want)
		}
	}
}

func TestSlaveInfoLoadRegion(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	info := bus.SlaveInfo{ID: "s1", UserData: json.RawMessage(`1`), StartedAt: at, Load: &bus.Load{Clients: 2}, Region: "eu"}
	b, err := bus.Encode(&info)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"s1","userData":1,"startedAt":"2026-01-02T03:04:05Z","load":{"clients":2,"accepting":false},"region":"eu"}`
	if string(b) != want {
		t.Errorf("encoded %s, want %s", b, want)
	}
	got, err := bus.DecodeSlaveInfo([]byte(`{"id":"s1","userData":null,"startedAt":"2026-01-02T03:04:05Z","load":{"clients":1,"max":8,"accepting":true}}`))
	if err != nil || got.Load == nil || *got.Load != (bus.Load{Clients: 1, Max: 8, Accepting: true}) || got.Region != "" {
		t.Errorf("decoded %+v (load %+v), %v", got, got.Load, err)
	}
	// Without load nor region (an older slave): both absent.
	b, _ = bus.Encode(&bus.SlaveInfo{ID: "s1", StartedAt: at})
	if strings.Contains(string(b), "load") || strings.Contains(string(b), "region") {
		t.Errorf("encoded %s, want no load nor region", b)
	}
	for _, bad := range []string{
		`{"id":"s1","load":{"clients":-1,"accepting":true}}`,
		`{"id":"s1","load":{"clients":1,"max":-2,"accepting":true}}`,
		`{"id":"s1","region":"a\nb"}`,
		`{"id":"s1","region":"` + strings.Repeat("x", 65) + `"}`,
	} {
		if _, err := bus.DecodeSlaveInfo([]byte(bad)); err == nil {
			t.Errorf("DecodeSlaveInfo(%s) accepted", bad)
		}
	}
}

// TestPresenceSetLoad: a load change is one update; setting the same load
// again, and heartbeats, are none.
func TestPresenceSetLoad(t *testing.T) {
	s := startServer(t)
	ctx := testCtx(t)
	_, js := connect(t, s)
	p, err := bus.OpenPresence(ctx, js, bus.PresenceConfig{TTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	w, err := p.Watch(ctx, bus.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	reg, err := p.Register(ctx, bus.SlaveInfo{ID: "s1", Load: &bus.Load{Accepting: true}, Region: "eu"}, bus.RegisterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = reg.Deregister(ctx) }()
	if ev, _ := nextEvent(t, w, 2*time.Second); ev.Kind != bus.SlaveAdded || ev.Slave.Region != "eu" || *ev.Slave.Load != (bus.Load{Accepting: true}) {
		t.Fatalf("got %v %+v", ev.Kind, ev.Slave)
	}
	load := &bus.Load{Clients: 1, Max: 4, Accepting: true}
	if err := reg.SetLoad(ctx, load); err != nil {
		t.Fatal(err)
	}
	load.Clients = 99 // SetLoad copied it
	ev, _ := nextEvent(t, w, 2*time.Second)
	if ev.Kind != bus.SlaveUpdated || *ev.Slave.Load != (bus.Load{Clients: 1, Max: 4, Accepting: true}) || ev.Slave.Region != "eu" {
		t.Fatalf("got %v %+v (load %+v), want updated clients 1", ev.Kind, ev.Slave, ev.Slave.Load)
	}
	if err := reg.SetLoad(ctx, &bus.Load{Clients: 1, Max: 4, Accepting: true}); err != nil {
		t.Fatal(err)
	}
	noEvent(t, w, 1500*time.Millisecond) // the same load, and four heartbeats
	if got := reg.Info().Load; got == nil || got.Clients != 1 {
		t.Errorf("Info().Load = %+v", got)
	}
	if err := reg.SetLoad(ctx, &bus.Load{Clients: -1}); !errors.Is(err, bus.ErrMalformed) {
		t.Errorf("negative load: %v, want ErrMalformed", err)
	}
}
