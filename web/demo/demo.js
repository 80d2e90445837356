// The Enslavism demo page: a live server list (load bars from each slave's
// published load, the joined room's ping over the control channel, a "Pick
// best" button), and in a room a chat over a reliable channel and shared dots
// over an unordered, unreliable one.
'use strict';

const master = new MasterConnection(); // the gateway of this page's host
const rows = new Map(); // slave id -> {tr, slaveCo, rtt}
let room = null; // {slaveCo, chat, dots, timer, dotsState: []}

const $ = (sel) => document.querySelector(sel);
const statusEl = $('#gateway-status');

master.addEventListener('open', () => {
	statusEl.textContent = `connected to gateway ${master.gateway}`;
	statusEl.className = 'status ok';
});
master.addEventListener('close', (info) => {
	statusEl.textContent = info.reconnecting
		? `gateway connection lost, reconnecting in ${Math.round(info.delay)} ms…`
		: 'gateway connection closed';
	statusEl.className = 'status down';
});
master.addEventListener('slaveadded', addRow);
master.addEventListener('slaveupdated', updateRow);
master.addEventListener('slaveremoved', (slaveCo) => {
	const row = rows.get(slaveCo.id);
	if (row && row.slaveCo === slaveCo) {
		row.tr.remove();
		rows.delete(slaveCo.id);
	}
	if (room && room.slaveCo === slaveCo) leave('the server went away');
	$('#no-servers').hidden = rows.size > 0;
});

// info is what a row shows: the load the slave publishes itself
// (slaveCo.load), or else the players/capacity of its userData.
function info(slaveCo) {
	const d = slaveCo.userData && typeof slaveCo.userData === 'object' ? slaveCo.userData : {};
	const load = slaveCo.load;
	return {
		name: typeof d.name === 'string' ? d.name : slaveCo.id,
		players: load ? load.clients
			: Number.isFinite(d.players) ? d.players : (Number.isFinite(d.clients) ? d.clients : null),
		capacity: load ? load.max : Number.isFinite(d.capacity) ? d.capacity : null,
		accepting: load ? load.accepting : true,
		region: slaveCo.region,
	};
}

function addRow(slaveCo) {
	const tr = document.createElement('tr');
	tr.dataset.slaveId = slaveCo.id;
	tr.innerHTML = '<td><span class="name"></span> <span class="region"></span></td>' +
		'<td><span class="load"><span></span></span><span class="count"></span></td>' +
		'<td class="latency">—</td><td><button class="join">Join</button></td>';
	tr.querySelector('.join').addEventListener('click', () => {
		if (room && room.slaveCo === slaveCo) leave();
		else join(slaveCo);
	});
	slaveCo.addEventListener('rejected', (reason) => system(`${info(slaveCo).name} refused: ${reason}`));
	rows.set(slaveCo.id, { tr, slaveCo, rtt: null });
	$('#servers tbody').append(tr);
	$('#no-servers').hidden = true;
	updateRow(slaveCo);
}

function updateRow(slaveCo) {
	const row = rows.get(slaveCo.id);
	if (!row) return;
	const { name, players, capacity, accepting, region } = info(slaveCo);
	row.tr.querySelector('.name').textContent = name;
	const regionEl = row.tr.querySelector('.region');
	regionEl.textContent = region || '';
	regionEl.classList.toggle('here', !!region && region === master.region);
	const load = row.tr.querySelector('.load');
	const frac = players !== null && capacity ? Math.min(1, players / capacity) : 0;
	load.firstChild.style.width = `${Math.round(frac * 100)}%`;
	load.classList.toggle('full', frac >= 1 || !accepting);
	load.hidden = capacity === null;
	load.title = capacity === null ? '' : `${players} of ${capacity} players${accepting ? '' : ' (not accepting)'}`;
	row.tr.querySelector('.count').textContent =
		players === null ? '' : capacity === null ? `${players}` : `${players}/${capacity}`;
	row.tr.querySelector('.latency').textContent = row.rtt === null ? '—' : `${row.rtt.toFixed(1)} ms`;
	const btn = row.tr.querySelector('.join');
	const here = room && room.slaveCo === slaveCo;
	btn.textContent = here ? (room.ready ? 'Leave' : 'Joining…') : 'Join';
	btn.classList.toggle('secondary', !!here);
}

async function join(slaveCo) {
	if (room) leave();
	const r = { slaveCo, ready: false, dotsState: [] };
	room = r;
	$('#room-panel').hidden = false;
	$('#room-title').textContent = info(slaveCo).name;
	$('#chat-log').textContent = '';
	updateRow(slaveCo);
	try {
		const [chat, dots] = await Promise.all([
			slaveCo.createDataChannel('chat'),
			slaveCo.createDataChannel('dots', { ordered: false, maxRetransmits: 0 }),
		]);
		if (room !== r) return;
		Object.assign(r, { chat, dots, ready: true });
		chat.addEventListener('message', (e) => {
			let m;
			try { m = JSON.parse(e.data); } catch { return; }
			if (m.from) say(m.from, m.text);
			else system(m.text);
		});
		dots.addEventListener('message', (e) => {
			try { r.dotsState = JSON.parse(e.data).dots || []; } catch { /* ignore */ }
		});
		// The latency column: ping() over the connection's control channel,
		// once a second, smoothed.
		const probe = () => {
			if (room !== r) return;
			slaveCo.ping().then((rtt) => {
				const row = rows.get(slaveCo.id);
				if (room !== r || !row) return;
				row.rtt = row.rtt === null ? rtt : row.rtt * 0.7 + rtt * 0.3;
				updateRow(slaveCo);
			}, () => { /* a lost probe: the next one will tell */ });
		};
		probe();
		r.timer = setInterval(probe, 1000);
		slaveCo.addEventListener('close', () => { if (room === r) leave('disconnected'); }, { once: true });
		updateRow(slaveCo);
		draw();
	} catch (err) {
		if (room === r) leave(`could not join: ${err.message}`);
	}
}

function leave(why) {
	const r = room;
	if (!r) return;
	room = null;
	clearInterval(r.timer);
	r.slaveCo.close();
	const row = rows.get(r.slaveCo.id);
	if (row) { row.rtt = null; updateRow(r.slaveCo); }
	if (why) system(why);
	else $('#room-panel').hidden = true;
}

function say(from, text) {
	const p = document.createElement('div');
	const b = document.createElement('b');
	b.textContent = from + ': ';
	p.append(b, document.createTextNode(text));
	appendLog(p);
}

function system(text) {
	const p = document.createElement('div');
	p.className = 'system';
	p.textContent = text;
	appendLog(p);
}

function appendLog(el) {
	const log = $('#chat-log');
	log.append(el);
	while (log.childElementCount > 200) log.firstElementChild.remove();
	log.scrollTop = log.scrollHeight;
}

// Pick best: among the servers of the gateway's region (all of them when
// the gateway or the servers have none) that accept players, ping the three
// least loaded and join the fastest.
$('#pick-best').addEventListener('click', async () => {
	const btn = $('#pick-best');
	const out = $('#pick-status');
	btn.disabled = true;
	out.textContent = 'pinging the least loaded servers…';
	try {
		const sameRegion = (sc) => !master.region || !sc.region || sc.region === master.region;
		const best = await master.pickSlave({ by: 'ping', probe: 3, filter: sameRegion });
		if (!best) {
			out.textContent = 'no server accepts players right now';
		} else {
			out.textContent = `picked ${info(best).name}`;
			if (!room || room.slaveCo !== best) join(best);
		}
	} catch (err) {
		out.textContent = `could not pick: ${err.message}`;
	} finally {
		btn.disabled = false;
	}
});

$('#chat-form').addEventListener('submit', (e) => {
	e.preventDefault();
	const input = $('#chat-input');
	const text = input.value.trim();
	if (!text || !room || !room.ready || room.chat.readyState !== 'open') return;
	room.chat.send(text);
	input.value = '';
});

// Dots: send the mouse position at most 30 times a second.
const canvas = $('#dots');
let lastSent = 0;
canvas.addEventListener('pointermove', (e) => {
	if (!room || !room.ready || room.dots.readyState !== 'open') return;
	const now = performance.now();
	if (now - lastSent < 33) return;
	lastSent = now;
	const rect = canvas.getBoundingClientRect();
	const x = Math.min(1, Math.max(0, (e.clientX - rect.left) / rect.width));
	const y = Math.min(1, Math.max(0, (e.clientY - rect.top) / rect.height));
	room.dots.send(JSON.stringify({ x, y }));
});

function draw() {
	const ctx = canvas.getContext('2d');
	ctx.clearRect(0, 0, canvas.width, canvas.height);
	if (room) {
		for (const d of room.dotsState) {
			ctx.beginPath();
			ctx.fillStyle = `hsl(${d.hue} 80% 60%)`;
			ctx.arc(d.x * canvas.width, d.y * canvas.height, 9, 0, 2 * Math.PI);
			ctx.fill();
			ctx.fillStyle = '#fff';
			ctx.font = '11px system-ui';
			ctx.fillText(d.id, d.x * canvas.width + 12, d.y * canvas.height + 4);
		}
		requestAnimationFrame(draw);
	}
}
