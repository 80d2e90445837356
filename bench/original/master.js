// The original enslavism Master (npm enslavism 0.9.0), for the side-by-side
// bench (cmd/enslavism-bench -only original). It serves its own
// /enslavism/client.js and the WebSocket paths /enslavism/slaves and
// /enslavism/clients on 127.0.0.1.
//
//   node master.js [port]        # or PORT=8081 node master.js; default 8081
//
// Prints "ready <port>" once listening.
'use strict';

const http = require('http');
const { Master } = require('enslavism');

const port = Number(process.argv[2] || process.env.PORT || 8081);
const host = process.env.HOST || '127.0.0.1';

const server = http.createServer((req, res) => {
	res.writeHead(404);
	res.end('404\nNot found');
});
const master = new Master(server); // adds GET /enslavism/client.js and the upgrades
master.on('error', (err) => console.error('master error:', err));
server.listen(port, host, () => {
	console.log('ready ' + server.address().port);
});
