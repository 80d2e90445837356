// Package web holds the Enslavism browser library and serves it in the three
// forms the gateway publishes:
//
//	GET /enslavism/client.js   ClassicScript: <script src="/enslavism/client.js"> defines
//	                           the globals MasterConnection, SlaveConnection and Enslavism
//	GET /enslavism/client.mjs  Module: import { MasterConnection } from '/enslavism/client.mjs'
//	GET /enslavism/client.d.ts TypeScript: declarations for both
//
// The library is one plain JavaScript file (enslavism.js, no build step)
// embedded with go:embed; the classic script and the module are that same
// source with a different wrapper, built once at init. The declarations
// (enslavism.d.ts) are written by hand and checked against the source by this
// package's tests; the message types of the protocol are checked against the
// gateway's by the gateway's tests.
//
// Browser API (the original enslavism's, kept):
//
//	const master = new MasterConnection('ws://localhost:8081'); // or no URL: this page's host
//	master.addEventListener('slaveadded', slaveCo => { … }); // the listener gets the SlaveConnection
//	master.addEventListener('slaveremoved', slaveCo => { … });
//	master.addEventListener('slaveupdated', slaveCo => { … }); // userData changed
//	const dc = await slaveCo.createDataChannel('game', {ordered: false, maxRetransmits: 0});
//
// Every promise settles: createDataChannel and connect reject with an
// EnslavismError whose code is rejected, no_such_slave, timeout, closed,
// unavailable, connection_failed, or a wire code of the gateway; the
// connectTimeout option (15 s) bounds each of them.
//
// # Channels share one peer connection
//
// A SlaveConnection owns at most one RTCPeerConnection. Before its offer it
// creates a pre-negotiated control channel (label "enslavism", negotiated,
// id 0), which puts the m=application section into the offer; every
// channel from createDataChannel is then created on that same peer
// connection and opens in-band (DCEP) once SCTP is up, with its own
// ordered/maxRetransmits/maxPacketLifeTime/protocol. So any number of
// channels cost one offer/answer and one peer connection on the slave, and
// no renegotiation. Channels requested while connecting are created at
// once and open with the connection. connect() resolves when the control
// channel opens; a second call returns the same promise; close() closes the
// peer connection and its channels (and sends cancel while still
// signaling); connect() works again afterwards.
//
// # Server browser: load, region, ping
//
// Every SlaveConnection has load ({clients, max, accepting}, max null when
// unlimited; null when the slave publishes none) and region (a string or
// null), updated with slaveupdated; MasterConnection.region is the
// gateway's. slaveCo.ping() resolves with the round-trip time in ms over
// the control channel (connecting if needed, reusing an open connection).
// master.pickSlave({filter, by: 'load' | 'ping', probe}) picks among the
// slaves that pass filter and accept clients: by load, the lowest
// clients/max (then fewest clients); by ping, the fastest of the probe
// least loaded, closing the connections it opened only to probe.
//
// # Reconnection and resync
//
// When the gateway WebSocket closes, MasterConnection reconnects by itself
// with exponential backoff and jitter (a delay drawn in [d/2, d], d doubling
// from minReconnectDelay up to maxReconnectDelay, reset once a gateway's
// hello and list have arrived), cycling through the URLs when given several. Every gateway sends
// the full slave list after hello; the library diffs it against .slaves:
// slaves gone are closed and reported with slaveremoved, new ones with
// slaveadded, changed userData with slaveupdated, and unchanged
// SlaveConnection objects are kept, with their peer connections: WebRTC is
// direct, so an open connection to a slave survives a gateway restart.
// Attempts still signaling when the WebSocket closes reject with code
// unavailable (the gateway cancels them at the slave); connect() calls made
// while disconnected wait for the next gateway, within connectTimeout.
package web

import (
	_ "embed"
	"fmt"
	"maps"
	"regexp"
	"strings"
)

//go:embed enslavism.js
var source string

//go:embed enslavism.d.ts
var typeScript string

// Exported names of the library, in the order the wrappers list them.
var exported = []string{"MasterConnection", "SlaveConnection", "EnslavismError", "MessageType", "ErrorCode"}

var (
	classic = buildClassic()
	module  = buildModule()
)

func buildClassic() string {
	var b strings.Builder
	b.WriteString("// Enslavism browser library (classic script): defines the globals\n")
	b.WriteString("// MasterConnection, SlaveConnection and Enslavism.\n")
	b.WriteString("(function (global) {\n'use strict';\n")
	b.WriteString(source)
	b.WriteString("\nglobal.MasterConnection = MasterConnection;\n")
	b.WriteString("global.SlaveConnection = SlaveConnection;\n")
	b.WriteString("global.Enslavism = Object.freeze({ ")
	for _, name := range exported {
		b.WriteString(name + ", ")
	}
	b.WriteString("protocolVersion: PROTOCOL_VERSION });\n")
	b.WriteString("})(typeof globalThis !== 'undefined' ? globalThis : self);\n")
	return b.String()
}

func buildModule() string {
	var b strings.Builder
	b.WriteString("// Enslavism browser library (ES module).\n")
	b.WriteString(source)
	b.WriteString("\nconst protocolVersion = PROTOCOL_VERSION;\n")
	b.WriteString("export { " + strings.Join(exported, ", ") + ", protocolVersion };\n")
	return b.String()
}

// Source returns the library's source as written (enslavism.js), without a
// wrapper. Like every function of this package returning []byte, it returns
// a new copy on each call.
func Source() []byte { return []byte(source) }

// ClassicScript returns the library as a classic script, served as
// /enslavism/client.js: loading it defines the globals MasterConnection,
// SlaveConnection and Enslavism (a namespace with every exported name).
func ClassicScript() []byte { return []byte(classic) }

// Module returns the library as an ES module, served as /enslavism/client.mjs.
// It exports MasterConnection, SlaveConnection, EnslavismError, MessageType,
// ErrorCode and protocolVersion.
func Module() []byte { return []byte(module) }

// TypeScript returns the TypeScript declarations of the library, served as
// /enslavism/client.d.ts.
func TypeScript() []byte { return []byte(typeScript) }

// MessageTypes returns the message types of the browser protocol as the
// library's source declares them (its frozen MessageType object): key → wire
// string, such as "SLAVE_ADDED" → "slaveadded". The gateway's tests compare it
// with the gateway's own list.
func MessageTypes() map[string]string { return maps.Clone(messageTypes) }

// ErrorCodes returns the error codes the library knows (its frozen ErrorCode
// object): key → wire string, such as "NO_SUCH_SLAVE" → "no_such_slave".
func ErrorCodes() map[string]string { return maps.Clone(errorCodes) }

var (
	messageTypes = mustFrozenObject(source, "MessageType")
	errorCodes   = mustFrozenObject(source, "ErrorCode")
)

var entryRE = regexp.MustCompile(`^\s*([A-Z_]+):\s*'([^']*)',`)

// frozenObject parses `const <name> = Object.freeze({ KEY: 'value', … });`
// from JavaScript source: one entry per line, comments allowed.
func frozenObject(src, name string) (map[string]string, error) {
	start := strings.Index(src, "const "+name+" = Object.freeze({\n")
	if start < 0 {
		return nil, fmt.Errorf("web: no frozen object %s in the source", name)
	}
	body := src[start:]
	end := strings.Index(body, "\n});")
	if end < 0 {
		return nil, fmt.Errorf("web: frozen object %s is not closed", name)
	}
	out := map[string]string{}
	for _, line := range strings.Split(body[:end], "\n")[1:] {
		if t := strings.TrimSpace(line); t == "" || strings.HasPrefix(t, "//") {
			continue
		}
		m := entryRE.FindStringSubmatch(line)
		if m == nil {
			return nil, fmt.Errorf("web: %s: cannot parse %q", name, line)
		}
		out[m[1]] = m[2]
	}
	return out, nil
}

func mustFrozenObject(src, name string) map[string]string {
	m, err := frozenObject(src, name)
	if err != nil {
		panic(err)
	}
	return m
}
