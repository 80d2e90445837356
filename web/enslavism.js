// Enslavism browser library: the one source of truth.
//
// The gateway serves this file wrapped twice (see web.go): as a classic script
// (GET /enslavism/client.js, defines the globals MasterConnection,
// SlaveConnection and Enslavism) and as an ES module (GET
// /enslavism/client.mjs, exports the same names). Plain modern JavaScript, no
// build step, no dependency. Type declarations: enslavism.d.ts.
//
// Protocol (JSON text frames, one object each, every one with a "type"):
//   gateway -> browser: hello, slaves, slaveadded, slaveupdated, slaveremoved,
//                       answer, rejected, ice, error
//   browser -> gateway: offer, ice, cancel
//
// Peer connections: every SlaveConnection owns at most one RTCPeerConnection.
// It first creates a pre-negotiated control channel ("enslavism",
// {negotiated: true, id: 0}) so that the offer carries an m=application
// section; every channel from createDataChannel() is then created on that same
// peer connection and opens in-band (DCEP) once SCTP is up: no renegotiation,
// one offer per connection whatever the number of channels.

// PROTOCOL_VERSION is the version of the browser <-> gateway protocol this
// library speaks (hello.version).
const PROTOCOL_VERSION = 1;

// CLIENTS_PATH is the path of the gateway's browser WebSocket.
const CLIENTS_PATH = '/enslavism/clients';

// MessageType holds every message type of the browser <-> gateway protocol.
// The Go side keeps the same list (gateway/protocol.go); a Go test parses this
// object and fails when the two differ.
const MessageType = Object.freeze({
	HELLO: 'hello',
	SLAVES: 'slaves',
	SLAVE_ADDED: 'slaveadded',
	SLAVE_UPDATED: 'slaveupdated',
	SLAVE_REMOVED: 'slaveremoved',
	ANSWER: 'answer',
	REJECTED: 'rejected',
	ICE: 'ice',
	ERROR: 'error',
	OFFER: 'offer',
	CANCEL: 'cancel',
});

// ErrorCode holds the codes an EnslavismError can carry: the wire codes the
// gateway sends (the same as Go's bus.Code*), then codes of this library.
const ErrorCode = Object.freeze({
	BAD_REQUEST: 'bad_request',
	NO_SUCH_SLAVE: 'no_such_slave',
	TIMEOUT: 'timeout',
	RATE_LIMITED: 'rate_limited',
	UNAUTHORIZED: 'unauthorized',
	UNAVAILABLE: 'unavailable',
	INTERNAL: 'internal',
	TOO_MANY: 'too_many',
	// Codes of this library.
	REJECTED: 'rejected', // the slave refused the connection (reason in message)
	CLOSED: 'closed', // close() was called, or the peer connection closed
	CONNECTION_FAILED: 'connection_failed', // ICE/DTLS failed, or the browser refused an argument
});

const DEFAULT_OPTIONS = Object.freeze({
	connectTimeout: 15000, // ms, bounds connect() and createDataChannel()
	reconnect: true,
	minReconnectDelay: 250, // ms, first delay after a lost gateway connection
	maxReconnectDelay: 30000, // ms, cap of the exponential backoff
	rtcConfiguration: null, // merged into RTCPeerConnection's configuration
	pingTimeout: 5000, // ms, bounds a ping() once the connection is up
});

// EnslavismError is the Error every Promise of this library rejects with; its
// code is one of ErrorCode.
class EnslavismError extends Error {
	constructor(code, message) {
		super(message || code);
		this.name = 'EnslavismError';
		this.code = code;
	}
}

function reportError(e) {
	// A listener threw: report it like an uncaught exception without breaking
	// the library's own flow.
	setTimeout(() => { throw e; }, 0);
}

// Emitter is a minimal event target whose listeners receive the value itself
// (the original enslavism's calling convention: a slaveadded listener gets the
// SlaveConnection), not an Event.
class Emitter {
	constructor() {
		this._listeners = new Map();
	}

	addEventListener(type, listener, options) {
		if (typeof listener !== 'function') return;
		let list = this._listeners.get(type);
		if (!list) {
			list = [];
			this._listeners.set(type, list);
		}
		if (list.some(l => l.fn === listener)) return;
		list.push({ fn: listener, once: !!(options && options.once) });
	}

	removeEventListener(type, listener) {
		const list = this._listeners.get(type);
		if (!list) return;
		const i = list.findIndex(l => l.fn === listener);
		if (i >= 0) list.splice(i, 1);
	}

	_emit(type, arg) {
		const list = this._listeners.get(type);
		if (!list || list.length === 0) return;
		for (const l of list.slice()) {
			if (l.once) this.removeEventListener(type, l.fn);
			try {
				l.fn.call(this, arg);
			} catch (e) {
				reportError(e);
			}
		}
	}
}

const ID_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

// newSessionID returns 16 random alphanumeric characters: a valid session ID
// for the gateway (^[A-Za-z0-9_-]{1,64}$).
function newSessionID() {
	const bytes = new Uint8Array(16);
	crypto.getRandomValues(bytes);
	let s = '';
	for (const b of bytes) s += ID_ALPHABET[b % ID_ALPHABET.length];
	return s;
}

// clientsURL turns what the user gave MasterConnection into the WebSocket URL
// of the gateway: http(s) becomes ws(s), a relative or absent URL means the
// page's own host, and /enslavism/clients is appended unless already there.
function clientsURL(url) {
	const base = typeof location !== 'undefined' ? location.href : undefined;
	let u;
	if (url === undefined || url === null || url === '') {
		if (base === undefined) throw new TypeError('MasterConnection: a gateway URL is required outside a page');
		u = new URL('/', base);
	} else {
		u = new URL(String(url), base);
	}
	if (u.protocol === 'http:') u.protocol = 'ws:';
	else if (u.protocol === 'https:') u.protocol = 'wss:';
	else if (u.protocol !== 'ws:' && u.protocol !== 'wss:') {
		throw new TypeError('MasterConnection: unsupported URL scheme ' + u.protocol);
	}
	const path = u.pathname.replace(/\/+$/, '');
	u.pathname = path.endsWith(CLIENTS_PATH) ? path : path + CLIENTS_PATH;
	u.hash = '';
	return u.href;
}

function sameJSON(a, b) {
	return JSON.stringify(a) === JSON.stringify(b);
}

function validSlave(s) {
	return s !== null && typeof s === 'object' && typeof s.id === 'string' && s.id !== '';
}

// slaveLoad returns the load of a slave message ({clients, max, accepting},
// max null when unlimited), or null when absent or malformed.
function slaveLoad(info) {
	const l = info.load;
	if (l === null || typeof l !== 'object' || !Number.isFinite(l.clients)) return null;
	return Object.freeze({
		clients: l.clients,
		max: Number.isFinite(l.max) && l.max > 0 ? l.max : null,
		accepting: l.accepting !== false,
	});
}

// loadRank orders slaves for pickSlave: by clients/max (0 when unlimited),
// then by clients; slaves that publish no load come last.
function loadRank(sc) {
	const l = sc.load;
	if (!l) return [Infinity, Infinity];
	return [l.max ? l.clients / l.max : 0, l.clients];
}

function byLoad(a, b) {
	const ra = loadRank(a);
	const rb = loadRank(b);
	if (ra[0] !== rb[0]) return ra[0] < rb[0] ? -1 : 1;
	if (ra[1] !== rb[1]) return ra[1] < rb[1] ? -1 : 1;
	return 0;
}

// MasterConnection is the connection to the gateway (the original's master):
// it keeps .slaves in sync, relays signaling for the SlaveConnections and
// reconnects by itself with exponential backoff and jitter.
//
// Events (the listener receives the value shown):
//   slaveadded   SlaveConnection  a slave appeared (also once per slave of the first list)
//   slaveupdated SlaveConnection  its userData, load or region changed
//   slaveremoved SlaveConnection  it left; its connection has been closed
//   open         MasterConnection the gateway said hello and its list was applied
//   close        {code, reason, wasClean, reconnecting, delay} the WebSocket closed
//   error        EnslavismError   an error from the gateway not tied to a session
class MasterConnection extends Emitter {
	constructor(url, options) {
		super();
		const urls = Array.isArray(url) ? url.slice() : [url];
		if (urls.length === 0) urls.push(undefined);
		this._urls = urls.map(clientsURL);
		this.options = Object.assign({}, DEFAULT_OPTIONS, options || {});
		this.slaves = [];
		this.gateway = null;
		this.region = null;
		this.iceServers = [];
		this._byID = new Map(); // slave id -> SlaveConnection
		this._sessions = new Map(); // session -> SlaveConnection
		this._waiting = new Set(); // SlaveConnections waiting for the gateway
		this._ws = null;
		this._url = this._urls[0];
		this._next = 0;
		this._open = false;
		this._closed = false;
		this._attempt = 0;
		this._timer = null;
		this._helloTimer = null;
		this._dial();
	}

	// url is the gateway URL in use (or about to be tried).
	get url() {
		return this._url;
	}

	// connected is true between 'open' and 'close'.
	get connected() {
		return this._open;
	}

	// close closes the WebSocket for good (no reconnection) and every
	// SlaveConnection; pending promises reject with code 'closed'.
	close() {
		if (this._closed) return;
		this._closed = true;
		clearTimeout(this._timer);
		clearTimeout(this._helloTimer);
		// Cancel what is still signaling while the socket is open, then close.
		for (const sc of this.slaves) sc._shutdown(new EnslavismError(ErrorCode.CLOSED, 'the MasterConnection was closed'));
		this._waiting.clear();
		const ws = this._ws;
		this._ws = null;
		const wasOpen = this._open;
		this._open = false;
		if (ws) {
			ws.onmessage = ws.onclose = ws.onerror = null;
			try { ws.close(1000); } catch (e) { /* already closed */ }
		}
		if (ws || wasOpen) this._emit('close', { code: 1000, reason: 'closed by close()', wasClean: true, reconnecting: false, delay: 0 });
	}

	_dial() {
		this._timer = null;
		if (this._closed) return;
		this._url = this._urls[this._next % this._urls.length];
		this._next++;
		let ws;
		try {
			ws = new WebSocket(this._url);
		} catch (e) {
			this._emit('error', new EnslavismError(ErrorCode.UNAVAILABLE, 'cannot open ' + this._url + ': ' + e.message));
			this._scheduleReconnect({ code: 1006, reason: e.message, wasClean: false });
			return;
		}
		this._ws = ws;
		ws.onmessage = ev => this._onMessage(ws, ev.data);
		ws.onclose = ev => this._onClose(ws, ev);
		ws.onerror = () => { /* a close event follows */ };
		// A gateway that accepts the socket but never says hello is as good
		// as down: give up on it after connectTimeout.
		clearTimeout(this._helloTimer);
		this._helloTimer = setTimeout(() => {
			if (this._ws === ws && !this._open) {
				try { ws.close(4000, 'no hello'); } catch (e) { /* ignore */ }
				this._onClose(ws, { code: 4000, reason: 'the gateway did not say hello in time', wasClean: false });
			}
		}, this.options.connectTimeout);
	}

	_onClose(ws, ev) {
		if (ws !== this._ws) return;
		ws.onmessage = ws.onclose = ws.onerror = null;
		this._ws = null;
		this._open = false;
		clearTimeout(this._helloTimer);
		// Sessions still signaling are lost with the socket (the gateway
		// cancels them at the slave); established peer connections are
		// direct and survive.
		// Attempts not started yet wait for the next gateway connection.
		const lost = new EnslavismError(ErrorCode.UNAVAILABLE, 'lost the gateway connection while connecting');
		for (const sc of this.slaves) sc._gatewayLost(lost);
		this._scheduleReconnect(ev);
	}

	_scheduleReconnect(ev) {
		const reconnecting = !this._closed && this.options.reconnect !== false;
		let delay = 0;
		if (reconnecting) {
			const o = this.options;
			const base = Math.min(o.maxReconnectDelay, o.minReconnectDelay * Math.pow(2, this._attempt));
			delay = Math.round(base / 2 + Math.random() * base / 2); // equal jitter
			this._attempt++;
			this._timer = setTimeout(() => this._dial(), delay);
		}
		this._emit('close', { code: ev.code, reason: ev.reason || '', wasClean: !!ev.wasClean, reconnecting, delay });
	}

	_send(msg) {
		const ws = this._ws;
		if (!ws || !this._open || ws.readyState !== 1) return false;
		try {
			ws.send(JSON.stringify(msg));
			return true;
		} catch (e) {
			return false;
		}
	}

	_onMessage(ws, data) {
		if (ws !== this._ws || typeof data !== 'string') return;
		let m;
		try {
			m = JSON.parse(data);
		} catch (e) {
			return;
		}
		if (m === null || typeof m !== 'object') return;
		switch (m.type) {
		case MessageType.HELLO:
			this.gateway = typeof m.gateway === 'string' ? m.gateway : null;
			this.region = typeof m.region === 'string' && m.region !== '' ? m.region : null;
			this.iceServers = Array.isArray(m.iceServers) ? m.iceServers : [];
			return;
		case MessageType.SLAVES:
			this._applySnapshot(Array.isArray(m.slaves) ? m.slaves : []);
			if (!this._open) {
				this._open = true;
				this._attempt = 0;
				clearTimeout(this._helloTimer);
				this._emit('open', this);
				for (const sc of Array.from(this._waiting)) sc._gatewayReady();
			}
			return;
		case MessageType.SLAVE_ADDED:
		case MessageType.SLAVE_UPDATED:
			if (validSlave(m.slave)) this._upsert(m.slave);
			return;
		case MessageType.SLAVE_REMOVED:
			if (typeof m.id === 'string') this._remove(m.id);
			return;
		case MessageType.ANSWER:
		case MessageType.REJECTED:
		case MessageType.ICE:
		case MessageType.ERROR: {
			const sc = typeof m.session === 'string' ? this._sessions.get(m.session) : undefined;
			if (sc) {
				sc._onSignal(m);
			} else if (m.type === MessageType.ERROR && m.session === undefined) {
				this._emit('error', new EnslavismError(m.code || ErrorCode.INTERNAL, m.message || m.code));
			}
			return;
		}
		default:
			// Unknown types are ignored: newer gateways may send more.
		}
	}

	// _applySnapshot diffs a full list against .slaves: removed ones are
	// closed and reported, new ones added, changed ones updated, unchanged
	// SlaveConnection objects (and their open peer connections) kept.
	_applySnapshot(list) {
		const seen = new Set();
		const next = [];
		const added = [];
		const updated = [];
		for (const info of list) {
			if (!validSlave(info) || seen.has(info.id)) continue;
			seen.add(info.id);
			let sc = this._byID.get(info.id);
			if (!sc) {
				sc = new SlaveConnection(this, info.id, null);
				sc._setInfo(info);
				this._byID.set(info.id, sc);
				added.push(sc);
			} else if (sc._setInfo(info)) {
				updated.push(sc);
			}
			next.push(sc);
		}
		const removed = this.slaves.filter(sc => !seen.has(sc.id));
		for (const sc of removed) this._byID.delete(sc.id);
		this.slaves.splice(0, this.slaves.length, ...next);
		for (const sc of removed) {
			sc._shutdown(new EnslavismError(ErrorCode.NO_SUCH_SLAVE, 'slave ' + sc.id + ' was removed'));
			this._emit('slaveremoved', sc);
		}
		for (const sc of added) this._emit('slaveadded', sc);
		for (const sc of updated) this._emit('slaveupdated', sc);
	}

	_upsert(info) {
		const sc = this._byID.get(info.id);
		if (!sc) {
			const fresh = new SlaveConnection(this, info.id, null);
			fresh._setInfo(info);
			this._byID.set(info.id, fresh);
			this.slaves.push(fresh);
			this._emit('slaveadded', fresh);
		} else if (sc._setInfo(info)) {
			this._emit('slaveupdated', sc);
		}
	}

	// pickSlave chooses a slave to join. Candidates are the listed slaves
	// that pass options.filter (a function of the SlaveConnection, e.g.
	// sc => sc.region === master.region) and do not say they refuse clients
	// (load.accepting false). by 'load' (the default) resolves at once with
	// the least loaded: lowest clients/max (0 when unlimited), then fewest
	// clients, slaves without load last. by 'ping' pings the probe (default
	// 3) least loaded candidates in parallel and resolves with the one of
	// the lowest round-trip time; the connections opened only to probe are
	// closed afterwards (those already open are kept). It resolves with null
	// when no slave is a candidate, and rejects with an EnslavismError when
	// every probe failed.
	pickSlave(options) {
		const o = options || {};
		const by = o.by === undefined ? 'load' : o.by;
		if (by !== 'load' && by !== 'ping') {
			return Promise.reject(new TypeError('pickSlave: by must be "load" or "ping"'));
		}
		if (o.filter !== undefined && typeof o.filter !== 'function') {
			return Promise.reject(new TypeError('pickSlave: filter must be a function'));
		}
		let candidates;
		try {
			candidates = this.slaves.filter(sc => sc.state !== 'removed' && !(sc.load && !sc.load.accepting) && (!o.filter || o.filter(sc)));
		} catch (e) {
			return Promise.reject(e);
		}
		candidates.sort(byLoad); // stable: ties keep the list's order
		if (candidates.length === 0) return Promise.resolve(null);
		if (by === 'load') return Promise.resolve(candidates[0]);
		const k = Math.max(1, Math.floor(Number.isFinite(o.probe) ? o.probe : 3));
		const probed = candidates.slice(0, k).map(sc => {
			const wasUsed = sc.state !== 'new';
			const p = sc.ping();
			return { sc, p, attempt: wasUsed ? null : sc._c };
		});
		return Promise.allSettled(probed.map(x => x.p)).then(results => {
			let best = null;
			let bestRTT = Infinity;
			let lastErr = null;
			results.forEach((r, i) => {
				const x = probed[i];
				if (x.attempt && x.sc._c === x.attempt && x.attempt.channels.size === 0 && x.attempt.waiters.size === 0) {
					x.sc.close(); // opened only to probe, and nobody started using it meanwhile
				}
				if (r.status === 'fulfilled' && r.value < bestRTT) {
					best = x.sc;
					bestRTT = r.value;
				} else if (r.status === 'rejected') {
					lastErr = r.reason;
				}
			});
			if (best) return best;
			throw lastErr instanceof EnslavismError ? lastErr : new EnslavismError(ErrorCode.UNAVAILABLE, 'no slave answered the ping');
		});
	}

	_remove(id) {
		const sc = this._byID.get(id);
		if (!sc) return;
		this._byID.delete(id);
		const i = this.slaves.indexOf(sc);
		if (i >= 0) this.slaves.splice(i, 1);
		sc._shutdown(new EnslavismError(ErrorCode.NO_SUCH_SLAVE, 'slave ' + id + ' was removed'));
		this._emit('slaveremoved', sc);
	}
}

// SlaveConnection is one slave of the list and, once connect() or
// createDataChannel() is called, the peer connection to it.
//
// Events:
//   open      SlaveConnection the peer connection is up (control channel open)
//   rejected  string          the slave refused the connection (the reason)
//   close     SlaveConnection a started connection ended (close(), failure,
//                             slave removed); connect() may be called again
class SlaveConnection extends Emitter {
	constructor(master, id, userData) {
		super();
		this.master = master;
		this.id = id;
		this.userData = userData === undefined ? null : userData;
		this.load = null; // {clients, max, accepting} or null, see _setInfo
		this.region = null;
		this._c = null; // the current attempt, see connect()
		this._removed = false;
		this._pingSeq = 0;
	}

	// _setInfo applies a slave message of the gateway ({id, userData, load,
	// region}) and reports whether anything changed.
	_setInfo(info) {
		const userData = info.userData === undefined ? null : info.userData;
		const load = slaveLoad(info);
		const region = typeof info.region === 'string' && info.region !== '' ? info.region : null;
		const changed = !sameJSON(this.userData, userData) || !sameJSON(this.load, load) || this.region !== region;
		this.userData = userData;
		this.load = load;
		this.region = region;
		return changed;
	}

	// ping resolves with the round-trip time to the slave in milliseconds,
	// measured over the connection's control channel (connecting first if
	// needed; an open connection is reused and stays open). It rejects with
	// an EnslavismError when connecting fails, the connection closes, or no
	// answer comes within the pingTimeout option (the slave answers at most
	// 10 pings a second per connection and drops the rest).
	ping() {
		return this.connect().then(() => new Promise((resolve, reject) => {
			const c = this._c;
			if (!c || c.done || !c.control || c.control.readyState !== 'open') {
				reject(new EnslavismError(ErrorCode.CLOSED, 'the connection to slave ' + this.id + ' closed'));
				return;
			}
			const t = ++this._pingSeq;
			const p = { start: 0, resolve, reject, timer: null };
			p.timer = setTimeout(() => {
				if (c.pings.delete(t)) reject(new EnslavismError(ErrorCode.TIMEOUT, 'slave ' + this.id + ' did not answer the ping in time'));
			}, this.master.options.pingTimeout);
			c.pings.set(t, p);
			p.start = performance.now();
			try {
				c.control.send(JSON.stringify({ type: 'ping', t }));
			} catch (e) {
				c.pings.delete(t);
				clearTimeout(p.timer);
				reject(new EnslavismError(ErrorCode.CLOSED, 'ping: ' + e.message));
			}
		}));
	}

	_onControl(c, data) {
		if (typeof data !== 'string') return;
		let m;
		try {
			m = JSON.parse(data);
		} catch (e) {
			return;
		}
		if (m === null || typeof m !== 'object' || m.type !== 'pong') return;
		const p = c.pings.get(m.t);
		if (!p) return;
		c.pings.delete(m.t);
		clearTimeout(p.timer);
		p.resolve(Math.max(performance.now() - p.start, 0.001));
	}

	// state is 'new' (not connecting), 'connecting', 'connected', or
	// 'removed' (the slave left the list; nothing works anymore).
	get state() {
		if (this._removed) return 'removed';
		if (!this._c) return 'new';
		return this._c.connected ? 'connected' : 'connecting';
	}

	// peerConnection is the RTCPeerConnection to the slave, or null.
	get peerConnection() {
		return this._c ? this._c.pc : null;
	}

	// connect opens the peer connection. It resolves once the connection is
	// up and rejects with an EnslavismError (code rejected, no_such_slave,
	// timeout, closed, unavailable, connection_failed...). Calling it again
	// while connecting or connected returns the same promise.
	connect() {
		if (this._c) return this._c.promise;
		if (this._removed) {
			return Promise.reject(new EnslavismError(ErrorCode.NO_SUCH_SLAVE, 'slave ' + this.id + ' is no longer listed'));
		}
		if (this.master._closed) {
			return Promise.reject(new EnslavismError(ErrorCode.CLOSED, 'the MasterConnection was closed'));
		}
		const c = {
			session: newSessionID(),
			pc: null,
			control: null,
			connected: false,
			done: false,
			offerSent: false,
			remoteSet: false,
			remoteQueue: [],
			localQueue: [],
			channels: new Set(),
			waiters: new Set(), // pending createDataChannel calls
			pings: new Map(), // ping t -> pending ping()
			timer: null,
		};
		c.promise = new Promise((resolve, reject) => {
			c.resolve = resolve;
			c.reject = reject;
		});
		c.promise.catch(() => { /* rejections reach the caller; avoid duplicate reports */ });
		this._c = c;
		c.timer = setTimeout(() => {
			this._end(c, new EnslavismError(ErrorCode.TIMEOUT, 'connecting to slave ' + this.id + ' timed out'), true);
		}, this.master.options.connectTimeout);
		if (this.master._open) this._start(c);
		else this.master._waiting.add(this);
		return c.promise;
	}

	// createDataChannel resolves with an RTCDataChannel in the 'open' state,
	// created on this SlaveConnection's peer connection (connecting first if
	// needed); options go to RTCDataChannelInit unchanged (ordered,
	// maxRetransmits, maxPacketLifeTime, protocol...). It rejects with an
	// EnslavismError when the connection fails or the channel closes before
	// opening.
	createDataChannel(name, options) {
		const p = this.connect();
		const c = this._c;
		if (!c) return p;
		return new Promise((resolve, reject) => {
			const w = { dc: null, reject, timer: null, create: null };
			const fail = e => {
				if (!c.waiters.delete(w)) return;
				clearTimeout(w.timer);
				if (w.dc) {
					c.channels.delete(w.dc);
					try { w.dc.close(); } catch (e2) { /* ignore */ }
				}
				reject(e);
			};
			w.reject = fail;
			w.create = pc => {
				let dc;
				try {
					dc = pc.createDataChannel(String(name), options || {});
				} catch (e) {
					fail(new EnslavismError(ErrorCode.CONNECTION_FAILED, 'createDataChannel: ' + e.message));
					return;
				}
				w.dc = dc;
				c.channels.add(dc);
				dc.addEventListener('open', () => {
					if (!c.waiters.delete(w)) return;
					clearTimeout(w.timer);
					resolve(dc);
				});
				dc.addEventListener('close', () => {
					c.channels.delete(dc);
					fail(new EnslavismError(ErrorCode.CLOSED, 'data channel ' + name + ' closed before opening'));
				});
			};
			c.waiters.add(w);
			w.timer = setTimeout(() => {
				fail(new EnslavismError(ErrorCode.TIMEOUT, 'data channel ' + name + ' did not open in time'));
			}, this.master.options.connectTimeout);
			if (c.pc) w.create(c.pc);
		});
	}

	// close closes the peer connection and every channel opened on it, and
	// tells the slave to drop the session when it is still signaling.
	// connect() may be called again afterwards.
	close() {
		const c = this._c;
		if (!c) return;
		this._end(c, new EnslavismError(ErrorCode.CLOSED, 'closed by close()'), true);
	}

	_start(c) {
		this.master._waiting.delete(this);
		if (c !== this._c || c.done) return;
		let pc;
		try {
			const cfg = Object.assign({ iceServers: this.master.iceServers }, this.master.options.rtcConfiguration || {});
			pc = new RTCPeerConnection(cfg);
		} catch (e) {
			this._end(c, new EnslavismError(ErrorCode.CONNECTION_FAILED, 'RTCPeerConnection: ' + e.message), false);
			return;
		}
		c.pc = pc;
		const control = pc.createDataChannel('enslavism', { negotiated: true, id: 0 });
		c.control = control;
		control.onopen = () => this._connected(c);
		control.onclose = () => this._end(c, new EnslavismError(ErrorCode.CLOSED, 'the connection to slave ' + this.id + ' closed'), false);
		control.onmessage = ev => this._onControl(c, ev.data);
		pc.onicecandidate = ev => {
			const cand = ev.candidate ? ev.candidate.toJSON() : null;
			if (c.offerSent) this.master._send({ type: MessageType.ICE, session: c.session, candidate: cand });
			else c.localQueue.push(cand);
		};
		pc.onconnectionstatechange = () => {
			if (pc.connectionState === 'failed') {
				this._end(c, new EnslavismError(ErrorCode.CONNECTION_FAILED, 'the connection to slave ' + this.id + ' failed'), true);
			}
		};
		for (const w of c.waiters) w.create(pc);
		this.master._sessions.set(c.session, this);
		pc.createOffer()
			.then(offer => pc.setLocalDescription(offer))
			.then(() => {
				if (c !== this._c || c.done) return;
				const sent = this.master._send({ type: MessageType.OFFER, session: c.session, slave: this.id, sdp: pc.localDescription.sdp });
				if (!sent) {
					this._end(c, new EnslavismError(ErrorCode.UNAVAILABLE, 'lost the gateway connection while connecting'), false);
					return;
				}
				c.offerSent = true;
				for (const cand of c.localQueue) this.master._send({ type: MessageType.ICE, session: c.session, candidate: cand });
				c.localQueue = [];
			})
			.catch(e => this._end(c, new EnslavismError(ErrorCode.CONNECTION_FAILED, 'creating the offer: ' + e.message), false));
	}

	_onSignal(m) {
		const c = this._c;
		if (!c || c.done || m.session !== c.session) return;
		switch (m.type) {
		case MessageType.ANSWER:
			if (c.remoteSet || typeof m.sdp !== 'string') return;
			c.pc.setRemoteDescription({ type: 'answer', sdp: m.sdp })
				.then(() => {
					c.remoteSet = true;
					const queued = c.remoteQueue;
					c.remoteQueue = [];
					for (const cand of queued) this._addRemote(c, cand);
				})
				.catch(e => this._end(c, new EnslavismError(ErrorCode.CONNECTION_FAILED, 'bad answer from slave ' + this.id + ': ' + e.message), true));
			return;
		case MessageType.ICE:
			if (m.candidate !== null && (typeof m.candidate !== 'object' || m.candidate === undefined)) return;
			if (c.remoteSet) this._addRemote(c, m.candidate);
			else c.remoteQueue.push(m.candidate);
			return;
		case MessageType.REJECTED: {
			const reason = typeof m.reason === 'string' ? m.reason : '';
			this._emit('rejected', reason);
			this._end(c, new EnslavismError(ErrorCode.REJECTED, 'slave ' + this.id + ' rejected the connection' + (reason ? ': ' + reason : '')), false);
			return;
		}
		case MessageType.ERROR:
			this._end(c, new EnslavismError(m.code || ErrorCode.INTERNAL, m.message || m.code || 'gateway error'), false);
			return;
		default:
		}
	}

	_addRemote(c, cand) {
		if (c.done) return;
		const p = cand === null ? c.pc.addIceCandidate() : c.pc.addIceCandidate(cand);
		p.catch(() => { /* a bad or late candidate is not fatal */ });
	}

	_connected(c) {
		if (c !== this._c || c.done || c.connected) return;
		c.connected = true;
		clearTimeout(c.timer);
		c.resolve();
		this._emit('open', this);
	}

	// _end finishes attempt c: rejects what is pending with err, closes the
	// peer connection, and sends cancel when asked and still signaling.
	_end(c, err, cancel) {
		if (c.done) return;
		c.done = true;
		clearTimeout(c.timer);
		if (this._c === c) this._c = null;
		this.master._waiting.delete(this);
		this.master._sessions.delete(c.session);
		if (cancel && c.offerSent && !c.connected) this.master._send({ type: MessageType.CANCEL, session: c.session });
		for (const w of Array.from(c.waiters)) w.reject(err);
		for (const p of c.pings.values()) {
			clearTimeout(p.timer);
			p.reject(err);
		}
		c.pings.clear();
		for (const dc of c.channels) {
			try { dc.close(); } catch (e) { /* ignore */ }
		}
		c.channels.clear();
		if (c.pc) {
			if (c.control) c.control.onclose = null;
			c.pc.onicecandidate = c.pc.onconnectionstatechange = null;
			try { c.pc.close(); } catch (e) { /* ignore */ }
		}
		const wasStarted = c.connected || c.pc !== null;
		c.reject(err);
		if (wasStarted) this._emit('close', this);
	}

	// _gatewayLost is called when the gateway WebSocket closes: an attempt
	// still signaling cannot finish (the gateway cancels it at the slave).
	_gatewayLost(err) {
		const c = this._c;
		if (c && c.pc && !c.connected) this._end(c, err, false);
	}

	_gatewayReady() {
		const c = this._c;
		if (c && !c.done && !c.pc) this._start(c);
	}

	// _shutdown closes everything for good: the slave left the list or the
	// MasterConnection was closed.
	_shutdown(err) {
		if (err.code === ErrorCode.NO_SUCH_SLAVE) this._removed = true;
		const c = this._c;
		if (c) this._end(c, err, true);
	}
}
