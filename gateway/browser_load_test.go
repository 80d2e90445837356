package gateway

import (
	"context"
	"maps"
	"testing"
	"time"

	"github.com/enslavism/enslavism/slave"
)

// TestBrowserLoadAndPing runs the server-browser features in headless
// Chromium: every slave's load and region, ping(), and pickSlave by load
// and by ping, against Go slaves loaded by Go clients.
func TestBrowserLoadAndPing(t *testing.T) {
	e := newEnv(t, Config{Region: "eu-west"})
	// Loads (clients/max): a 2/4, b 1/10, c 1/2, full 1/1 (not accepting),
	// far 0/8 but in another region.
	slaves := map[string]*slave.Slave{}
	for _, sc := range []struct {
		id      string
		max     int
		region  string
		clients int
	}{
		{"a", 4, "eu-west", 2},
		{"b", 10, "eu-west", 1},
		{"c", 2, "eu-west", 1},
		{"full", 1, "eu-west", 1},
		{"far", 8, "us-east", 0},
	} {
		s, _ := e.startSlave(slave.Config{ID: sc.id, MaxClients: sc.max, Region: sc.region})
		slaves[sc.id] = s
		signaling, list := e.mustDial(nil)
		waitForSlave(t, signaling, list, sc.id)
		for range sc.clients {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			p, err := connectPeer(ctx, loopbackAPI(), signaling, sc.id)
			cancel()
			if err != nil {
				t.Fatalf("connecting a Go client to %s: %v", sc.id, err)
			}
			t.Cleanup(p.close)
		}
		waitFor(t, 5*time.Second, "the Go clients of "+sc.id, func() bool { return s.NumClients() == sc.clients })
	}
	numClients := func() map[string]int {
		out := map[string]int{}
		for id, s := range slaves {
			out[id] = s.NumClients()
		}
		return out
	}
	before := numClients()

	b := newBrowser(t, e.serveTestPage())
	defer b.dumpLogs()
	b.poll(10*time.Second, "every load", `slaveIDs() === 'a,b,c,far,full' && master.region === 'eu-west' &&
		find('a').load.clients === 2 && find('b').load.clients === 1 && find('c').load.clients === 1 &&
		find('full').load.clients === 1 && find('full').load.accepting === false && find('far').load.clients === 0`)
	got := eval[string](b, 5*time.Second, `JSON.stringify([find('a').load, find('far').load, find('far').region, find('b').region])`)
	if want := `[{"clients":2,"max":4,"accepting":true},{"clients":0,"max":8,"accepting":true},"us-east","eu-west"]`; got != want {
		t.Errorf("loads = %s, want %s", got, want)
	}

	t.Run("pick by load", func(t *testing.T) {
		b.t = t
		got := eval[string](b, 5*time.Second, `(async () => {
			const any = await master.pickSlave({by: 'load'});
			const near = await master.pickSlave({filter: sc => sc.region === master.region});
			const none = await master.pickSlave({filter: sc => sc.id === 'full'});
			return [any.id, near.id, none, master.slaves.map(s => s.state).join(',')].join('|');
		})()`)
		// far (0/8) is the least loaded; in eu-west, b (1/10); full is
		// never a candidate; picking by load connects nothing.
		if want := "far|b||new,new,new,new,new"; got != want {
			t.Errorf("pickSlave by load: got %s, want %s", got, want)
		}
	})

	t.Run("ping", func(t *testing.T) {
		b.t = t
		got := eval[[]float64](b, 15*time.Second, `(async () => {
			const sc = find('b');
			const rtts = [];
			for (let i = 0; i < 5; i++) rtts.push(await sc.ping()); // connects once, then reuses
			rtts.push(sc.state === 'connected' ? 1 : 0);
			return rtts;
		})()`)
		for i, rtt := range got[:5] {
			if rtt <= 0 || rtt > 1000 {
				t.Errorf("ping %d = %v ms, want a positive number", i, rtt)
			}
		}
		if got[5] != 1 {
			t.Error("the SlaveConnection is not connected after ping()")
		}
		t.Logf("ping RTTs (ms) through the control channel: %v", got[:5])
		if n := slaves["b"].NumClients(); n != before["b"]+1 {
			t.Errorf("b has %d clients after ping(), want %d (one reused connection)", n, before["b"]+1)
		}
		got2 := eval[string](b, 10*time.Second, `(async () => {
			const sc = find('b');
			sc.close();
			try { await find('far').ping(); } finally { find('far').close(); }
			let err = null;
			try { await find('full').ping(); } catch (e) { err = e; }
			return [sc.state, err && err.name, err && err.code].join('|');
		})()`)
		if want := "new|EnslavismError|rejected"; got2 != want {
			t.Errorf("after close, ping of a full slave: got %s, want %s", got2, want)
		}
		waitFor(t, 10*time.Second, "the clients of ping() gone", func() bool { return maps.Equal(numClients(), before) })
	})

	t.Run("pick by ping", func(t *testing.T) {
		b.t = t
		// c is already connected (by the page): probing must keep it.
		eval[bool](b, 10*time.Second, `find('c').connect().then(() => true)`)
		waitFor(t, 5*time.Second, "c's browser client", func() bool { return slaves["c"].NumClients() == before["c"]+1 })
		got := eval[string](b, 15*time.Second, `(async () => {
			const start = performance.now();
			const best = await master.pickSlave({by: 'ping', probe: 3, filter: sc => sc.region === master.region});
			return [best instanceof SlaveConnection, ['a', 'b', 'c'].includes(best.id),
				master.slaves.map(s => s.id + ':' + s.state).join(','), Math.round(performance.now() - start)].join('|');
		})()`)
		t.Logf("pickSlave by ping: %s", got)
		want := "true|true|a:new,b:new,c:connected,far:new,full:new|"
		if len(got) < len(want) || got[:len(want)] != want {
			t.Errorf("pickSlave by ping: got %s, want %s…", got, want)
		}
		// No peer connection opened for probing stays open on the slaves.
		after := maps.Clone(before)
		after["c"]++
		waitFor(t, 10*time.Second, "the probing connections closed", func() bool { return maps.Equal(numClients(), after) })
		eval[bool](b, 5*time.Second, `(find('c').close(), true)`)
		waitFor(t, 10*time.Second, "c's browser client gone", func() bool { return maps.Equal(numClients(), before) })
		// And the presence agrees: the browser sees the loads back.
		b.poll(10*time.Second, "the loads back", `find('a').load.clients === 2 && find('b').load.clients === 1 && find('c').load.clients === 1`)
	})
}
