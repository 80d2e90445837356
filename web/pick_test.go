package web

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoadPingPickInNode runs load, region, ping() and pickSlave in Node.js
// with the stand-ins of TestLibraryInNode (the gateway's browser tests run
// them in Chromium against real slaves).
func TestLoadPingPickInNode(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not found: the browser tests of ./gateway cover the library in Chromium")
	}
	fakes := nodeLibraryTest[:strings.Index(nodeLibraryTest, "const events = [];")]
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "client.mjs"), Module(), 0o644); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(dir, "pick.mjs")
	if err := os.WriteFile(script, []byte(fakes+nodePickTest), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(node, script).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "all ok") {
		t.Fatalf("node: %v\n%s", err, out)
	}
}

const nodePickTest = `
FakeDC.prototype.send = function (d) { assert.equal(this.readyState, 'open'); (this.sent = this.sent || []).push(JSON.parse(d)); };
const pong = (dc, delay) => setTimeout(() => {
	for (const p of dc.sent.splice(0)) dc.onmessage({ data: JSON.stringify({ type: 'pong', t: p.t }) });
}, delay);

const m = new MasterConnection('ws://gw.test', { connectTimeout: 5000, pingTimeout: 400 });
const ws = sockets[0];
ws.open();
ws.recv({ type: 'hello', version: 1, gateway: 'g1', iceServers: [], region: 'eu' });
ws.recv({ type: 'slaves', slaves: [
	{ id: 'a', userData: 'A', load: { clients: 2, max: 4, accepting: true }, region: 'eu' },
	{ id: 'b', userData: 'B', load: { clients: 1, max: 10, accepting: true }, region: 'eu' },
	{ id: 'full', userData: null, load: { clients: 1, max: 1, accepting: false }, region: 'eu' },
	{ id: 'nol', userData: null },
	{ id: 'far', userData: null, load: { clients: 0, max: 8, accepting: true }, region: 'us' },
	{ id: 'unl', userData: null, load: { clients: 0, accepting: true } },
] });
assert.equal(m.region, 'eu');
const byID = id => m.slaves.find(s => s.id === id);
const [a, b] = m.slaves;
assert.deepEqual({ ...a.load }, { clients: 2, max: 4, accepting: true });
assert.equal(a.region, 'eu');
assert.equal(byID('nol').load, null);
assert.equal(byID('nol').region, null);
assert.equal(byID('unl').load.max, null, 'max omitted: unlimited');

// By load: lowest clients/max, then clients, ties in list order; full
// never; slaves without load last.
assert.equal((await m.pickSlave()).id, 'far');
assert.equal((await m.pickSlave({ filter: s => s.id !== 'far' })).id, 'unl');
assert.equal((await m.pickSlave({ filter: s => s.region === m.region })).id, 'b');
assert.equal((await m.pickSlave({ filter: s => s.id === 'full' || s.id === 'nol' })).id, 'nol');
assert.equal(await m.pickSlave({ filter: s => s.id === 'full' }), null);
await assert.rejects(m.pickSlave({ by: 'fastest' }), TypeError);
await assert.rejects(m.pickSlave({ filter: () => { throw new Error('boom'); } }), /boom/);
assert.equal(pcs.length, 0, 'picking by load connects nothing');

// A load change is a slaveupdated, and changes the pick.
const updates = [];
m.addEventListener('slaveupdated', s => updates.push(s.id + ':' + s.load.clients));
ws.recv({ type: 'slaveupdated', slave: { id: 'b', userData: 'B', load: { clients: 9, max: 10, accepting: true }, region: 'eu' } });
ws.recv({ type: 'slaveupdated', slave: { id: 'b', userData: 'B', load: { clients: 9, max: 10, accepting: true }, region: 'eu' } }); // no change
assert.deepEqual(updates, ['b:9']);
assert.equal((await m.pickSlave({ filter: s => s.region === 'eu' })).id, 'a');

// establish answers the offer of the latest peer connection and opens it.
const establish = async () => {
	await tick(5);
	const offer = ws.take().find(x => x.type === 'offer');
	ws.recv({ type: 'answer', session: offer.session, sdp: 'v=0 answer' });
	await tick(5);
	const pc = pcs.at(-1);
	pc.up();
	return pc;
};

// ping(): connects, then measures over the control channel.
let p = a.ping();
const pcA = await establish();
await tick(1);
const ctlA = pcA.channels[0];
assert.equal(ctlA.label, 'enslavism');
assert.equal(ctlA.sent.length, 1);
assert.equal(ctlA.sent[0].type, 'ping');
pong(ctlA, 10);
const rtt = await p;
assert.ok(rtt >= 5 && rtt < 5000, 'rtt ' + rtt);
assert.equal(a.state, 'connected');
// Reused: no new peer connection; unanswered: timeout; closed: closed.
p = settle(a.ping());
await tick(1);
assert.equal(pcs.length, 1);
ctlA.sent.length = 0;
let r = await p;
assert.equal(r.e.code, ErrorCode.TIMEOUT);
p = settle(a.ping());
await tick(1);
a.close();
r = await p;
assert.equal(r.e.code, ErrorCode.CLOSED);
// A rejected connection rejects the ping.
p = settle(b.ping());
await tick(5);
ws.recv({ type: 'rejected', session: ws.take()[0].session, reason: 'full' });
r = await p;
assert.equal(r.e.code, ErrorCode.REJECTED);

// By ping: a is already connected (kept), b is opened to probe (closed
// afterwards); b answers faster and wins.
p = a.connect();
await establish();
await p;
const picked = m.pickSlave({ by: 'ping', probe: 2, filter: s => s.region === 'eu' });
const pcB = await establish();
await tick(1);
const pcA2 = pcs.at(-2); // a's connection, opened before probing
pong(pcA2.channels[0], 150);
pong(pcB.channels[0], 1);
const best = await picked;
assert.equal(best, b);
assert.equal(a.state, 'connected', 'a connection open before probing stays open');
assert.equal(b.state, 'new', 'the probing connection is closed');
assert.ok(pcB.closed);
assert.ok(!pcA2.closed);

// Every probe failing rejects with an EnslavismError.
a.close();
p = settle(m.pickSlave({ by: 'ping', probe: 1, filter: s => s.id === 'far' }));
await tick(5);
ws.recv({ type: 'error', session: ws.take()[0].session, code: 'no_such_slave', message: 'gone' });
r = await p;
assert.equal(r.ok, false);
assert.equal(r.e.code, 'no_such_slave');
m.close();
console.log('all ok');
`
