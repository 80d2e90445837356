package web

import (
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// braceBody returns the text between the '{' that ends the first match of re
// in src and its matching '}'. The sources it reads keep braces balanced
// outside strings, which the test checks by failing on a mismatch.
func braceBody(t *testing.T, src string, re *regexp.Regexp) string {
	t.Helper()
	loc := re.FindStringIndex(src)
	if loc == nil {
		t.Fatalf("no match for %v", re)
	}
	open := strings.LastIndex(src[:loc[1]], "{")
	depth := 0
	for i := open; i < len(src); i++ {
		switch src[i] {
		case '{':
			depth++
		case '}':
			depth--
			if depth == 0 {
				return src[open+1 : i]
			}
		}
	}
	t.Fatalf("unbalanced braces after %v", re)
	return ""
}

// dtsMembers returns the names of the members declared at the first indent
// level of a .d.ts class or interface body.
func dtsMembers(body string) []string {
	re := regexp.MustCompile(`(?m)^\t(?:readonly )?([A-Za-z_$][\w$]*)\??[(:<]`)
	var out []string
	for _, m := range re.FindAllStringSubmatch(body, -1) {
		if m[1] != "constructor" && !slices.Contains(out, m[1]) {
			out = append(out, m[1])
		}
	}
	return out
}

// TestTypeScriptMatchesSource fails when enslavism.d.ts declares a class
// member, an event, a constant or an export that enslavism.js does not have.
func TestTypeScriptMatchesSource(t *testing.T) {
	js, dts := source, typeScript
	emitter := braceBody(t, js, regexp.MustCompile(`\nclass Emitter \{`))

	for _, class := range []string{"MasterConnection", "SlaveConnection"} {
		t.Run(class, func(t *testing.T) {
			jsBody := braceBody(t, js, regexp.MustCompile(`\nclass `+class+` extends Emitter \{`))
			dtsBody := braceBody(t, dts, regexp.MustCompile(`export declare class `+class+` \{`))
			members := dtsMembers(dtsBody)
			if len(members) < 5 {
				t.Fatalf("found only %v in the declarations of %s", members, class)
			}
			for _, name := range members {
				method := regexp.MustCompile(`(?m)^\t(?:get )?` + regexp.QuoteMeta(name) + `\(`)
				field := regexp.MustCompile(`this\.` + regexp.QuoteMeta(name) + ` = `)
				if !method.MatchString(jsBody) && !field.MatchString(jsBody) && !method.MatchString(emitter) {
					t.Errorf("%s.%s is declared in enslavism.d.ts but not defined in enslavism.js", class, name)
				}
			}
			events := dtsMembers(braceBody(t, dts, regexp.MustCompile(`export interface `+class+`EventMap \{`)))
			if len(events) < 3 {
				t.Fatalf("found only events %v for %s", events, class)
			}
			for _, ev := range events {
				if !strings.Contains(jsBody, "this._emit('"+ev+"'") {
					t.Errorf("event %s of %s is declared in enslavism.d.ts but never emitted by enslavism.js", ev, class)
				}
			}
			// And the other way: every event the JS emits is declared.
			emitted := regexp.MustCompile(`this\._emit\('(\w+)'`).FindAllStringSubmatch(jsBody, -1)
			for _, m := range emitted {
				if !slices.Contains(events, m[1]) {
					t.Errorf("%s emits %q, which enslavism.d.ts does not declare", class, m[1])
				}
			}
		})
	}

	for name, want := range map[string]map[string]string{"MessageType": messageTypes, "ErrorCode": errorCodes} {
		t.Run(name, func(t *testing.T) {
			body := braceBody(t, dts, regexp.MustCompile(`export declare const `+name+`: Readonly<\{`))
			got := map[string]string{}
			for _, m := range regexp.MustCompile(`(?m)^\t([A-Z_]+): '([^']*)';`).FindAllStringSubmatch(body, -1) {
				got[m[1]] = m[2]
			}
			if !maps.Equal(got, want) {
				t.Errorf("enslavism.d.ts %s = %v, enslavism.js has %v", name, got, want)
			}
		})
	}

	t.Run("exports", func(t *testing.T) {
		for _, name := range append(slices.Clone(exported), "protocolVersion") {
			if !regexp.MustCompile(`export declare (?:class|const) ` + name + `\b`).MatchString(dts) {
				t.Errorf("export %s is missing from enslavism.d.ts", name)
			}
		}
		for _, m := range regexp.MustCompile(`export declare (?:class|const) (\w+)`).FindAllStringSubmatch(dts, -1) {
			if m[1] != "protocolVersion" && !slices.Contains(exported, m[1]) {
				t.Errorf("enslavism.d.ts declares export %s, which the module does not export", m[1])
			}
		}
	})
}

func TestFrozenObjects(t *testing.T) {
	if len(messageTypes) != 11 {
		t.Errorf("MessageType has %d entries, want 11: %v", len(messageTypes), messageTypes)
	}
	if got, want := MessageTypes()["SLAVE_ADDED"], "slaveadded"; got != want {
		t.Errorf(`MessageTypes()["SLAVE_ADDED"] = %q, want %q`, got, want)
	}
	if got, want := ErrorCodes()["NO_SUCH_SLAVE"], "no_such_slave"; got != want {
		t.Errorf(`ErrorCodes()["NO_SUCH_SLAVE"] = %q, want %q`, got, want)
	}
	for _, bad := range []string{
		"const X = 1;",
		"const X = Object.freeze({\n\tA: 'a',\n",
		"const X = Object.freeze({\n\tA: 1,\n});",
	} {
		if _, err := frozenObject(bad, "X"); err == nil {
			t.Errorf("frozenObject(%q) = nil error, want one", bad)
		}
	}
}

func TestWrappers(t *testing.T) {
	for _, tc := range []struct {
		name, got string
		want      []string
	}{
		{"classic", string(ClassicScript()), []string{"global.MasterConnection = MasterConnection;", "global.SlaveConnection = SlaveConnection;", "global.Enslavism = "}},
		{"module", string(Module()), []string{"export { MasterConnection, SlaveConnection, EnslavismError, MessageType, ErrorCode, protocolVersion };"}},
	} {
		if !strings.Contains(tc.got, source) {
			t.Errorf("%s: does not contain the source", tc.name)
		}
		for _, w := range tc.want {
			if !strings.Contains(tc.got, w) {
				t.Errorf("%s: missing %q", tc.name, w)
			}
		}
	}
	b := ClassicScript()
	b[0] = 'X'
	if ClassicScript()[0] == 'X' {
		t.Error("ClassicScript returned shared memory")
	}
}

// TestScriptsRunInNode loads both forms in Node.js, when it is installed,
// with stand-ins for the browser globals: a syntax error, a missing export or
// a global that is not defined fails here, without a browser.
func TestScriptsRunInNode(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not found: the browser tests of ./gateway load the library in Chromium")
	}
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("client.js", string(ClassicScript()))
	write("client.mjs", string(Module()))
	check := write("check.mjs", nodeCheck)
	out, err := exec.Command(node, check).CombinedOutput()
	if err != nil {
		t.Fatalf("node %s: %v\n%s", check, err, out)
	}
	if !strings.Contains(string(out), "ok") {
		t.Fatalf("node printed %q, want ok", out)
	}
}

// nodeCheck runs in Node.js next to client.js and client.mjs.
const nodeCheck = `
import { readFileSync } from 'node:fs';
import vm from 'node:vm';
import assert from 'node:assert/strict';
import * as mod from './client.mjs';

globalThis.location = { href: 'http://example.test:8081/app/page.html' };
const sockets = [];
globalThis.WebSocket = class { constructor(url) { this.url = url; this.readyState = 0; sockets.push(this); } send() {} close() {} };

// Classic script: defines the globals.
const ctx = vm.createContext({ location: globalThis.location, WebSocket: globalThis.WebSocket, setTimeout, clearTimeout, URL, crypto });
vm.runInContext(readFileSync(new URL('./client.js', import.meta.url), 'utf8'), ctx);
for (const name of ['MasterConnection', 'SlaveConnection', 'Enslavism']) {
	assert.equal(vm.runInContext('typeof ' + name, ctx), name === 'Enslavism' ? 'object' : 'function', name);
}
assert.equal(vm.runInContext('Enslavism.MessageType.SLAVE_ADDED', ctx), 'slaveadded');

// Module: exports and URL handling.
for (const name of ['MasterConnection', 'SlaveConnection', 'EnslavismError', 'MessageType', 'ErrorCode', 'protocolVersion']) {
	assert.ok(name in mod, name);
}
const cases = [
	[undefined, 'ws://example.test:8081/enslavism/clients'],
	['ws://localhost:8081', 'ws://localhost:8081/enslavism/clients'],
	['http://localhost:8081/', 'ws://localhost:8081/enslavism/clients'],
	['https://gw.example.test/base/', 'wss://gw.example.test/base/enslavism/clients'],
	['wss://gw.example.test/enslavism/clients', 'wss://gw.example.test/enslavism/clients'],
	['/gw', 'ws://example.test:8081/gw/enslavism/clients'],
];
for (const [input, want] of cases) {
	const m = new mod.MasterConnection(input, { reconnect: false });
	assert.equal(m.url, want, String(input));
	m.close();
}
const multi = new mod.MasterConnection(['ws://a.test', 'ws://b.test'], { reconnect: false });
assert.equal(multi.url, 'ws://a.test/enslavism/clients');
multi.close();
assert.throws(() => new mod.MasterConnection('ftp://x.test'), TypeError);
const e = new mod.EnslavismError('timeout', 'too slow');
assert.ok(e instanceof Error);
assert.equal(e.code, 'timeout');
console.log('ok');
process.exit(0);
`

// TestTypeScriptCompiles type-checks enslavism.d.ts and a usage of both forms
// with tsc when it is installed (npm install -g typescript).
func TestTypeScriptCompiles(t *testing.T) {
	tsc, err := exec.LookPath("tsc")
	if err != nil {
		t.Skip("tsc not found; install it with: npm install -g typescript")
	}
	dir := t.TempDir()
	files := map[string]string{
		"client.d.ts": typeScript,
		"use_module.ts": `import { MasterConnection, SlaveConnection, EnslavismError, ErrorCode } from './client';
const m = new MasterConnection('ws://localhost:8081', { connectTimeout: 5000 });
m.addEventListener('slaveadded', sc => {
	const id: string = sc.id;
	sc.createDataChannel('x', { ordered: false, maxRetransmits: 0 })
		.then(dc => dc.send(id))
		.catch((e: EnslavismError) => { if (e.code === ErrorCode.REJECTED) { m.close(); } });
});
m.addEventListener('close', info => { const r: boolean = info.reconnecting; return r; });
const s: SlaveConnection[] = m.slaves;
export { s };
`,
		"use_global.ts": `/// <reference path="./client.d.ts" />
const m2 = new MasterConnection();
const v: number = Enslavism.protocolVersion + m2.slaves.length;
m2.addEventListener('slaveremoved', sc => console.log(sc.userData, v));
`,
	}
	var args []string
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, name)
	}
	cmd := exec.Command(tsc, append([]string{"--noEmit", "--strict", "--lib", "es2020,dom", "--target", "es2020", "--moduleResolution", "node"}, args...)...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tsc: %v\n%s", err, out)
	}
}
