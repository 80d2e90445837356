// An echo slave written with the original enslavism API (npm enslavism
// 0.9.0): every message on every DataChannel is sent back unchanged.
//
//   node slave.js [masterURL]    # or MASTER=ws://127.0.0.1:8081; that is the default
//
// Prints "ready" once registered with the master.
'use strict';

const { Slave } = require('enslavism');

const masterURL = process.argv[2] || process.env.MASTER || 'ws://127.0.0.1:8081';

new Slave(masterURL, { name: 'echo' }).then((slave) => {
	slave.ws.on('close', () => {
		console.error('master closed the connection');
		process.exit(1);
	});
	slave.on('connection', (clCo) => {
		clCo.on('datachannel', (dc) => {
			dc.addEventListener('message', (msg) => {
				dc.send(msg.data);
			});
			// The original never closes a client's peer connection (its
			// 'connections' list only grows); close it when the browser
			// goes, so that a long bench does not pile up peer connections.
			dc.addEventListener('close', () => {
				try { clCo.clientCon.close(); } catch (e) { /* ignore */ }
			});
		});
	});
	console.log('ready');
}).catch((err) => {
	console.error('cannot connect to the master:', err);
	process.exit(1);
});
