package gateway

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/enslavism/enslavism/slave"
)

// TestLoadEvents: browsers get each slave's load and region with the list,
// and each load change as exactly one slaveupdated, never one per
// heartbeat.
func TestLoadEvents(t *testing.T) {
	e := newEnv(t, Config{Region: "eu-west"})
	s, _ := e.startSlave(slave.Config{ID: "busy", MaxClients: 4, Region: "eu-west", UserData: "room"})
	waitFor(t, 5*time.Second, "the slave listed", func() bool { return e.gateway().Stats().Slaves == 1 })

	c, _, err := dial(t, e.wsURL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if hello := c.expect(TypeHello); !strings.HasSuffix(hello.raw, `"region":"eu-west"}`) {
		t.Errorf("hello = %s, want region eu-west", hello.raw)
	}
	want := `{"type":"slaves","slaves":[{"id":"busy","userData":"room","load":{"clients":0,"max":4,"accepting":true},"region":"eu-west"}]}`
	if got := c.expect(TypeSlaves).raw; got != want {
		t.Errorf("slaves = %s\nwant     %s", got, want)
	}

	// A client connects (signaling on another browser connection, so that
	// c sees only the list's frames): exactly one slaveupdated.
	signaling, list := e.mustDial(nil)
	waitForSlave(t, signaling, list, "busy")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	p, err := connectPeer(ctx, loopbackAPI(), signaling, "busy")
	if err != nil {
		t.Fatalf("connectPeer: %v", err)
	}
	updated := func(clients int) {
		t.Helper()
		want := fmt.Sprintf(`{"type":"slaveupdated","slave":{"id":"busy","userData":"room","load":{"clients":%d,"max":4,"accepting":true},"region":"eu-west"}}`, clients)
		if got := c.expect(TypeSlaveUpdated).raw; got != want {
			t.Errorf("got %s\nwant %s", got, want)
		}
	}
	updated(1)
	// Idle: heartbeats every TTL/3 (333 ms) for 3 s reach no browser.
	c.expectNothing(3 * time.Second)

	p.close()
	waitFor(t, 10*time.Second, "the client gone", func() bool { return s.NumClients() == 0 })
	updated(0)
	c.expectNothing(1500 * time.Millisecond)
}

func TestRegionConfig(t *testing.T) {
	e := newEnv(t, Config{})
	for _, region := range []string{strings.Repeat("r", 65), "eu\twest", "\x00"} {
		g, err := New(context.Background(), e.nc, Config{Region: region})
		if !errors.Is(err, ErrInvalidConfig) {
			if g != nil {
				_ = g.Close()
			}
			t.Errorf("Region %q: %v, want ErrInvalidConfig", region, err)
		}
	}
}
