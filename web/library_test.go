package web

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestLibraryInNode runs the library's logic in Node.js with stand-ins for
// WebSocket and RTCPeerConnection: the snapshot diff after a reconnect,
// backoff, every promise settling (answer, rejected, error, timeout, close,
// lost gateway, removed slave), cancel being sent when giving up, candidates
// queued until the offer is sent and until the answer is set. The browser
// tests of ./gateway run the same library in Chromium against real slaves.
func TestLibraryInNode(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not found: the browser tests of ./gateway cover the library in Chromium")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "client.mjs"), Module(), 0o644); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(dir, "library.mjs")
	if err := os.WriteFile(script, []byte(nodeLibraryTest), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(node, script).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "all ok") {
		t.Fatalf("node: %v\n%s", err, out)
	}
}

const nodeLibraryTest = `
import assert from 'node:assert/strict';

const sockets = [];
class FakeWS {
	constructor(url) { this.url = url; this.readyState = 0; this.sent = []; sockets.push(this); }
	send(d) { assert.equal(this.readyState, 1, 'send on a socket not open'); this.sent.push(JSON.parse(d)); }
	close(code) { if (this.readyState === 3) return; this.readyState = 3; setTimeout(() => this.onclose && this.onclose({ code: code || 1005, reason: '', wasClean: true }), 0); }
	open() { this.readyState = 1; }
	recv(m) { this.onmessage({ data: JSON.stringify(m) }); }
	drop(code) { this.readyState = 3; this.onclose({ code, reason: '', wasClean: false }); }
	take() { const s = this.sent; this.sent = []; return s; }
}
const pcs = [];
class FakeDC extends EventTarget {
	constructor(label, opts) { super(); this.label = label; this.opts = opts; this.readyState = 'connecting'; }
	_open() { if (this.readyState !== 'connecting') return; this.readyState = 'open'; if (this.onopen) this.onopen(); this.dispatchEvent(new Event('open')); }
	close() { if (this.readyState === 'closed') return; this.readyState = 'closed'; if (this.onclose) this.onclose(); this.dispatchEvent(new Event('close')); }
}
class FakePC {
	constructor(cfg) { this.cfg = cfg; this.channels = []; this.closed = false; this.added = []; this.connectionState = 'new'; pcs.push(this); }
	createDataChannel(label, opts) { const dc = new FakeDC(label, opts); this.channels.push(dc); return dc; }
	async createOffer() { return { type: 'offer', sdp: 'v=0 offer' }; }
	async setLocalDescription(d) {
		this.localDescription = d;
		// Candidates are gathered right away, possibly before the offer is sent.
		if (this.onicecandidate) this.onicecandidate({ candidate: { toJSON: () => ({ candidate: 'c1', sdpMid: '0', sdpMLineIndex: 0 }) } });
		setTimeout(() => this.onicecandidate && this.onicecandidate({ candidate: null }), 0);
	}
	async setRemoteDescription(d) { this.remoteDescription = d; }
	async addIceCandidate(c) { assert.ok(this.remoteDescription, 'candidate added before the answer'); this.added.push(c === undefined ? null : c); }
	close() { this.closed = true; for (const dc of this.channels) dc.close(); }
	up() { for (const dc of this.channels) dc._open(); }
}
globalThis.WebSocket = FakeWS;
globalThis.RTCPeerConnection = FakePC;
globalThis.location = { href: 'http://page.test/' };

const { MasterConnection, SlaveConnection, ErrorCode } = await import('./client.mjs');
const tick = (ms = 0) => new Promise(r => setTimeout(r, ms));
const settle = p => p.then(v => ({ ok: true, v }), e => ({ ok: false, e }));

const events = [];
const m = new MasterConnection('ws://gw.test', { minReconnectDelay: 20, maxReconnectDelay: 80, connectTimeout: 300 });
for (const type of ['slaveadded', 'slaveupdated', 'slaveremoved', 'open', 'close', 'error']) {
	m.addEventListener(type, x => events.push(type + ':' + (x instanceof SlaveConnection ? x.id : type === 'close' ? x.code + '/' + x.reconnecting + '/' + x.delay : '')));
}
const take = () => events.splice(0, events.length);
let ws = sockets[0];
assert.equal(ws.url, 'ws://gw.test/enslavism/clients');
ws.open();
ws.recv({ type: 'hello', version: 1, gateway: 'g1', iceServers: [{ urls: ['stun:s.test'] }] });
ws.recv({ type: 'slaves', slaves: [{ id: 'a', userData: 1 }, { id: 'b', userData: { n: 2 } }] });
assert.deepEqual(take(), ['slaveadded:a', 'slaveadded:b', 'open:']);
assert.equal(m.gateway, 'g1');
assert.ok(m.connected);
const [a, b] = m.slaves;

// createDataChannel: one offer, candidates after it, remote candidates
// queued until the answer, resolves with the open channel.
const pdc = a.createDataChannel('game', { ordered: false, maxRetransmits: 0 });
assert.equal(a.connect(), a.connect(), 'connect() is idempotent');
await tick(5);
const pc = pcs[0];
assert.deepEqual(pc.cfg.iceServers, [{ urls: ['stun:s.test'] }]);
assert.deepEqual(pc.channels.map(d => d.label + ':' + JSON.stringify(d.opts)), ['enslavism:{"negotiated":true,"id":0}', 'game:{"ordered":false,"maxRetransmits":0}']);
let sent = ws.take();
assert.deepEqual(sent.map(s => s.type), ['offer', 'ice', 'ice']);
const session = sent[0].session;
assert.match(session, /^[A-Za-z0-9]{16}$/);
assert.deepEqual(sent[0], { type: 'offer', session, slave: 'a', sdp: 'v=0 offer' });
assert.deepEqual(sent[2], { type: 'ice', session, candidate: null });
ws.recv({ type: 'ice', session, candidate: { candidate: 'r1', sdpMid: '0', sdpMLineIndex: 0 } });
ws.recv({ type: 'answer', session, sdp: 'v=0 answer' });
ws.recv({ type: 'ice', session, candidate: null });
await tick(5);
assert.deepEqual(pc.added.map(c => c === null ? null : c.candidate), ['r1', null]);
pc.up();
const dc = await pdc;
assert.equal(dc.label, 'game');
assert.equal(a.state, 'connected');
await a.connect();
const second = a.createDataChannel('chat');
await tick(1);
assert.equal(pcs.length, 1, 'a second channel shares the peer connection');
pc.channels[2]._open();
assert.equal((await second).label, 'chat');
assert.deepEqual(ws.take(), [], 'no renegotiation');

// Rejected: the promise rejects, the event fires, no cancel.
let reason = null;
b.addEventListener('rejected', r => { reason = r; });
let p = settle(b.createDataChannel('x'));
await tick(5);
let s = ws.take()[0].session;
ws.recv({ type: 'rejected', session: s, reason: 'full' });
let r = await p;
assert.equal(r.ok, false);
assert.equal(r.e.code, ErrorCode.REJECTED);
assert.equal(reason, 'full');
assert.ok(r.e.message.includes('full'));
assert.deepEqual(ws.take(), []);
assert.equal(b.state, 'new');

// A gateway error with a code.
p = settle(b.connect());
await tick(5);
s = ws.take()[0].session;
ws.recv({ type: 'error', session: s, code: 'no_such_slave', message: 'no slave "b"' });
r = await p;
assert.equal(r.e.code, 'no_such_slave');

// Timeout: rejects and tells the gateway to cancel.
p = settle(b.createDataChannel('x'));
await tick(5);
s = ws.take()[0].session;
r = await p;
assert.equal(r.e.code, ErrorCode.TIMEOUT);
assert.deepEqual(ws.take(), [{ type: 'cancel', session: s }]);

// close() while signaling: cancel, closed.
p = settle(b.connect());
await tick(5);
s = ws.take()[0].session;
b.close();
r = await p;
assert.equal(r.e.code, ErrorCode.CLOSED);
assert.deepEqual(ws.take(), [{ type: 'cancel', session: s }]);
assert.ok(pcs.at(-1).closed);
// A late answer for it is ignored.
ws.recv({ type: 'answer', session: s, sdp: 'late' });

// An error not tied to a session is an error event.
take();
ws.recv({ type: 'error', code: 'rate_limited', message: 'slow down' });
assert.deepEqual(take(), ['error:']);

// Live updates.
ws.recv({ type: 'slaveupdated', slave: { id: 'a', userData: 5 } });
ws.recv({ type: 'slaveadded', slave: { id: 'a', userData: 5 } }); // no change: no event
assert.deepEqual(take(), ['slaveupdated:a']);
assert.equal(a.userData, 5);

// The gateway goes away while b is signaling: b's promise rejects, a's
// direct connection survives, the socket reconnects with backoff, and the
// new list is diffed exactly: b removed, c added, a kept (same object, no
// event since its userData is unchanged).
p = settle(b.connect());
await tick(5);
ws.take();
ws.drop(1006);
r = await p;
assert.equal(r.e.code, ErrorCode.UNAVAILABLE);
assert.equal(a.state, 'connected');
const firstClose = take();
assert.equal(firstClose.length, 1);
const [, code, reconnecting, delay] = firstClose[0].match(/^close:(\d+)\/(\w+)\/(\d+)$/);
assert.equal(code, '1006');
assert.equal(reconnecting, 'true');
assert.ok(delay >= 10 && delay <= 20, 'first delay within [min/2, min]: ' + delay);
// While disconnected, connect() waits for the gateway.
const waiting = settle(b.connect());
assert.equal(b.state, 'connecting');
await tick(25);
assert.equal(sockets.length, 2);
ws = sockets[1];
ws.drop(1006); // the next attempt fails too: the delay doubles
const second2 = take()[0].match(/\/(\d+)$/)[1];
assert.ok(second2 >= 20 && second2 <= 40, 'second delay within [20, 40]: ' + second2);
await tick(45);
ws = sockets[2];
ws.open();
ws.recv({ type: 'hello', version: 1, gateway: 'g2', iceServers: [] });
ws.recv({ type: 'slaves', slaves: [{ id: 'a', userData: 5 }, { id: 'c', userData: null }] });
assert.deepEqual(take(), ['slaveremoved:b', 'slaveadded:c', 'open:']);
assert.deepEqual(m.slaves.map(x => x.id), ['a', 'c']);
assert.equal(m.slaves[0], a, 'unchanged slaves keep their SlaveConnection');
assert.equal(m.gateway, 'g2');
r = await waiting;
assert.equal(r.e.code, ErrorCode.NO_SUCH_SLAVE, 'b was removed while its connect() waited');
assert.equal(b.state, 'removed');
assert.equal((await settle(b.connect())).e.code, ErrorCode.NO_SUCH_SLAVE);

// A slave removed while connected: closed, channels closed, event.
ws.recv({ type: 'slaveremoved', id: 'a' });
assert.deepEqual(take(), ['slaveremoved:a']);
assert.ok(pc.closed);
assert.equal(dc.readyState, 'closed');
assert.equal(a.state, 'removed');

// close(): no reconnection, pending promises reject.
const c = m.slaves[0];
p = settle(c.createDataChannel('x'));
await tick(5);
s = ws.take()[0].session;
m.close();
r = await p;
assert.equal(r.e.code, ErrorCode.CLOSED);
assert.deepEqual(take(), ['close:1000/false/0']);
await tick(100);
assert.equal(sockets.length, 3, 'no reconnection after close()');
console.log('all ok');
`
