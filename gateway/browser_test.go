package gateway

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/enslavism/enslavism/internal/browsertest"
	"github.com/enslavism/enslavism/slave"
)

// browser is a headless Chromium tab (internal/browsertest) on a test page
// that records the MasterConnection's events.
type browser struct {
	*browsertest.Browser
	t *testing.T
}

func newBrowser(t *testing.T, url string) *browser {
	t.Helper()
	return &browser{Browser: browsertest.New(t, url), t: t}
}

// dumpLogs logs the page's console when the test failed.
func (b *browser) dumpLogs() {
	if b.t.Failed() {
		b.DumpLogs()
	}
}

// eval evaluates expr in the page, awaiting a promise, within timeout.
func eval[T any](b *browser, timeout time.Duration, expr string) T {
	b.t.Helper()
	b.Use(b.t)
	return browsertest.Eval[T](b.Browser, timeout, expr)
}

// poll waits until expr is truthy in the page.
func (b *browser) poll(timeout time.Duration, what, expr string) {
	b.t.Helper()
	if err := b.Poll(timeout, expr); err != nil {
		b.DumpLogs()
		got, _ := chromedp.Run(b.Context(), chromedp.Evaluate[string](`JSON.stringify({slaves: slaveIDs(), events})`))
		b.t.Fatalf("waiting for %s (%s): %v; page state: %s", what, expr, err, got)
	}
}

// testPage loads the classic script like the original's users did and
// records every event of the MasterConnection.
const testPage = `<!doctype html>
<meta charset="utf-8">
<title>enslavism test page</title>
<script src="/enslavism/client.js"></script>
<script>
window.events = [];
window.master = new MasterConnection(undefined, {minReconnectDelay: 50, maxReconnectDelay: 400, connectTimeout: 8000});
for (const type of ['slaveadded', 'slaveupdated', 'slaveremoved']) {
	master.addEventListener(type, sc => events.push({type, id: sc.id, userData: sc.userData, isSlaveConnection: sc instanceof SlaveConnection}));
}
master.addEventListener('open', m => events.push({type: 'open', gateway: m.gateway}));
master.addEventListener('close', info => events.push({type: 'close', code: info.code, reconnecting: info.reconnecting}));
window.slaveIDs = () => master.slaves.map(s => s.id).sort().join(',');
window.find = id => master.slaves.find(s => s.id === id);
window.has = (type, id) => events.some(e => e.type === type && (id === undefined || e.id === id));
window.echo = (dc, msg) => new Promise((resolve, reject) => {
	const t = setTimeout(() => reject(new Error('no echo on ' + dc.label)), 5000);
	dc.addEventListener('message', e => { clearTimeout(t); resolve(e.data); }, {once: true});
	dc.send(msg);
});
</script>
`

func (e *env) serveTestPage() string {
	e.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(testPage))
	})
	return e.http.URL + "/"
}

// TestBrowser runs the browser library in headless Chromium against the
// gateway and real Go slaves.
func TestBrowser(t *testing.T) {
	e := newEnv(t, Config{OfferTimeout: time.Second})
	echo, echoNC := e.startSlave(slave.Config{ID: "echo", UserData: map[string]any{"players": 0}})
	e.startSlave(slave.Config{ID: "lat"})
	_, ghostNC := e.startSlave(slave.Config{ID: "ghost"})
	e.startSlave(slave.Config{ID: "picky", Accept: func(context.Context, *slave.Offer) error {
		return slave.Reject("not invited")
	}})
	e.startSlave(slave.Config{ID: "sleepy", Accept: func(ctx context.Context, _ *slave.Offer) error {
		<-ctx.Done() // never answers before the gateway's OfferTimeout
		return ctx.Err()
	}})
	b := newBrowser(t, e.serveTestPage())
	defer b.dumpLogs()

	t.Run("list", func(t *testing.T) {
		b.t = t
		b.poll(5*time.Second, "the slave list", `slaveIDs() === 'echo,ghost,lat,picky,sleepy' && has('open')`)
		got := eval[string](b, 5*time.Second, `JSON.stringify([
			events.filter(e => e.type === 'slaveadded').map(e => e.id + ':' + e.isSlaveConnection).sort(),
			find('echo').userData, master.gateway, Array.isArray(master.slaves)])`)
		want := fmt.Sprintf(`[["echo:true","ghost:true","lat:true","picky:true","sleepy:true"],{"players":0},%q,true]`, e.gateway().ID())
		if got != want {
			t.Errorf("page state = %s, want %s", got, want)
		}
	})

	t.Run("channels", func(t *testing.T) {
		b.t = t
		got := eval[string](b, 10*time.Second, `(async () => {
			const sc = find('echo');
			const [rel, fast] = await Promise.all([
				sc.createDataChannel('reliable'),
				sc.createDataChannel('fast', {ordered: false, maxRetransmits: 0}),
			]);
			window.keep = {rel, fast, sc};
			const again = await sc.connect(); // idempotent, same peer connection
			return [await echo(rel, 'hello'), await echo(fast, 'quick'), rel.readyState, rel.ordered,
				fast.ordered, fast.maxRetransmits, sc.state, again === undefined].join('|');
		})()`)
		if want := "reliable:hello|fast:quick|open|true|false|0|connected|true"; got != want {
			t.Errorf("channels: got %s, want %s", got, want)
		}
		if n := echo.NumClients(); n != 1 {
			t.Errorf("echo has %d clients, want 1: the channels share one peer connection", n)
		}
	})

	t.Run("connect latency", func(t *testing.T) {
		b.t = t
		// connect() → control channel open, then close(), 20 times: a
		// new peer connection and a full signaling round each time.
		got := eval[[]float64](b, 20*time.Second, `(async () => {
			const sc = find('lat');
			const times = [];
			for (let i = 0; i < 20; i++) {
				const start = performance.now();
				await sc.connect();
				times.push(performance.now() - start);
				sc.close();
			}
			return times.sort((a, b) => a - b);
		})()`)
		t.Logf("Chromium connect() through gateway+NATS to a Go slave: p50 %.1f ms, max %.1f ms", got[len(got)/2], got[len(got)-1])
	})

	t.Run("rejected", func(t *testing.T) {
		b.t = t
		got := eval[string](b, 10*time.Second, `(async () => {
			const sc = find('picky');
			let reason = null;
			sc.addEventListener('rejected', r => { reason = r; });
			try {
				await sc.createDataChannel('x');
				return 'resolved';
			} catch (e) {
				return [e.name, e.code, e.message, reason, sc.state].join('|');
			}
		})()`)
		if want := "EnslavismError|rejected|slave picky rejected the connection: not invited|not invited|new"; got != want {
			t.Errorf("rejection: got %s, want %s", got, want)
		}
	})

	t.Run("timeout", func(t *testing.T) {
		b.t = t
		got := eval[string](b, 10*time.Second, `(async () => {
			try {
				await find('sleepy').createDataChannel('x');
				return 'resolved';
			} catch (e) {
				return [e.code, e.message].join('|');
			}
		})()`)
		if !strings.HasPrefix(got, "timeout|") {
			t.Errorf("timeout: got %s, want code timeout", got)
		}
	})

	t.Run("unknown slave", func(t *testing.T) {
		b.t = t
		// The slave's process is gone but it is still listed (its key
		// lives until the TTL): the gateway answers no_such_slave at once
		// (NATS no responders), or the list drops it first; either way
		// the promise rejects with no_such_slave.
		ghostNC.Close()
		got := eval[string](b, 5*time.Second, `(async () => {
			const start = performance.now();
			try {
				await find('ghost').createDataChannel('x');
				return 'resolved';
			} catch (e) {
				return [e.code, performance.now() - start < 1000].join('|');
			}
		})()`)
		if want := "no_such_slave|true"; got != want {
			t.Errorf("unknown slave: got %s, want %s", got, want)
		}
	})

	t.Run("module", func(t *testing.T) {
		b.t = t
		got := eval[string](b, 5*time.Second, `import('/enslavism/client.mjs').then(m =>
			[typeof m.MasterConnection, typeof m.SlaveConnection, m.MessageType.SLAVE_ADDED, m.protocolVersion].join('|'))`)
		if want := "function|function|slaveadded|1"; got != want {
			t.Errorf("module: got %s, want %s", got, want)
		}
	})

	t.Run("slaveupdated", func(t *testing.T) {
		b.t = t
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		if err := echo.SetUserData(ctx, map[string]any{"players": 1}); err != nil {
			t.Fatal(err)
		}
		b.poll(5*time.Second, "slaveupdated", `events.some(e => e.type === 'slaveupdated' && e.id === 'echo' && e.userData.players === 1) && find('echo').userData.players === 1`)
	})

	t.Run("killed slave", func(t *testing.T) {
		b.t = t
		// A crash: the slave's NATS connection goes away without
		// deregistering; its key expires within the TTL.
		echoNC.Close()
		start := time.Now()
		b.poll(5*time.Second, "slaveremoved", `has('slaveremoved', 'echo') && slaveIDs() === 'lat,picky,sleepy'`)
		t.Logf("slaveremoved %v after the crash (TTL %v)", time.Since(start).Round(time.Millisecond), testPresence.TTL)
		got := eval[string](b, 5*time.Second, `[keep.sc.state, keep.rel.readyState === 'closed' || keep.rel.readyState === 'closing',
			events.find(e => e.type === 'slaveremoved').isSlaveConnection].join('|')`)
		if want := "removed|true|true"; got != want {
			t.Errorf("after slaveremoved: got %s, want %s", got, want)
		}
		got = eval[string](b, 5*time.Second, `keep.sc.connect().then(() => 'resolved', e => e.code)`)
		if got != "no_such_slave" {
			t.Errorf("connect() on a removed slave: got %s, want no_such_slave", got)
		}
	})
}

// TestBrowserReconnect restarts the gateway under a page: the page
// reconnects by itself, its list becomes exact again (a slave removed and
// one added while the gateway was down, one updated), and its open
// connection to a surviving slave keeps working, since WebRTC is direct.
func TestBrowserReconnect(t *testing.T) {
	cfg := Config{}
	e := newEnv(t, cfg)
	a, _ := e.startSlave(slave.Config{ID: "a", UserData: "v1"})
	bSlave, _ := e.startSlave(slave.Config{ID: "b"})
	b := newBrowser(t, e.serveTestPage())
	defer b.dumpLogs()
	b.poll(5*time.Second, "the slave list", `slaveIDs() === 'a,b'`)
	if got := eval[string](b, 10*time.Second, `find('a').createDataChannel('keep').then(dc => { window.keep = dc; return echo(dc, 'before'); })`); got != "keep:before" {
		t.Fatalf("echo before the restart = %q", got)
	}
	firstGateway := e.gateway().ID()

	e.stopGateway()
	b.poll(5*time.Second, "close with 1001", `events.some(e => e.type === 'close' && e.code === 1001 && e.reconnecting)`)

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := bSlave.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.SetUserData(ctx, "v2"); err != nil {
		t.Fatal(err)
	}
	e.startSlave(slave.Config{ID: "c"})
	eval[int](b, time.Second, `events.length = 0`)

	start := time.Now()
	g2 := e.startGateway(cfg)
	b.poll(5*time.Second, "the exact list after reconnecting",
		`slaveIDs() === 'a,c' && has('open') && has('slaveremoved', 'b') && has('slaveadded', 'c') && has('slaveupdated', 'a')`)
	t.Logf("list exact %v after the new gateway started", time.Since(start).Round(time.Millisecond))

	got := eval[string](b, 5*time.Second, `JSON.stringify([master.gateway, find('a').userData,
		events.filter(e => e.type.startsWith('slave')).map(e => e.type + ':' + e.id).sort()])`)
	want := fmt.Sprintf(`[%q,"v2",["slaveadded:c","slaveremoved:b","slaveupdated:a"]]`, g2.ID())
	if got != want {
		t.Errorf("after reconnecting: %s, want %s", got, want)
	}
	if g2.ID() == firstGateway {
		t.Errorf("the new gateway has the old one's ID %s", firstGateway)
	}
	if got := eval[string](b, 5*time.Second, `echo(keep, 'after')`); got != "keep:after" {
		t.Errorf("echo after the restart = %q, want keep:after", got)
	}
}
