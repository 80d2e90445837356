package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"

	"github.com/enslavism/enslavism/internal/browserclient"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func noEnv(string) string { return "" }

func TestParseOptions(t *testing.T) {
	env := map[string]string{"ENSLAVISM_ADDR": ":9000", "ENSLAVISM_DEMO": "2", "ENSLAVISM_ORIGINS": "https://a.example, https://b.example"}
	o, err := parseOptions([]string{"-demo", "4", "-ice-servers", "stun:s.example:3478,turn:t.example:3478", "-turn-user", "u", "-turn-credential", "c", "-slave-users", "game-1:pw1,game-2:pw2"},
		func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.addr != ":9000" {
		t.Errorf("addr %q, want the environment's :9000", o.addr)
	}
	if o.demo != 4 {
		t.Errorf("demo %d, want the flag's 4 over the environment's 2", o.demo)
	}
	if len(o.origins) != 2 || o.origins[1] != "https://b.example" {
		t.Errorf("origins %q", o.origins)
	}
	if len(o.iceServers) != 2 || o.iceServers[0].Username != "" || o.iceServers[1].Username != "u" || o.iceServers[1].Credential != "c" {
		t.Errorf("ice servers %+v", o.iceServers)
	}
	if o.slaveUsers["game-2"] != "pw2" {
		t.Errorf("slave users %v", o.slaveUsers)
	}

	for _, bad := range [][]string{
		{"-log-level", "loud"},
		{"-prefix", "a.b"},
		{"-gateway-id", "*"},
		{"-demo", "-1"},
		{"-nats-addr", "nowhere"},
		{"-ice-servers", "http://x"},
		{"-slave-users", "game-1"},
		{"-slave-users", "bad.id:pw"},
		{"-nats", "nats://x:4222", "-slave-token", "t"},
		{"extra"},
		{"-no-such-flag"},
	} {
		if _, err := parseOptions(bad, noEnv, io.Discard); err == nil {
			t.Errorf("parseOptions(%q) accepted", bad)
		}
	}
	if _, err := parseOptions(nil, func(k string) string {
		if k == "ENSLAVISM_DEMO" {
			return "many"
		}
		return ""
	}, io.Discard); err == nil || !strings.Contains(err.Error(), "ENSLAVISM_DEMO") {
		t.Errorf("bad environment value: %v, want an error naming ENSLAVISM_DEMO", err)
	}
	if _, err := parseOptions([]string{"-help"}, noEnv, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-help: %v", err)
	}
}

var openLine = regexp.MustCompile(`Open (http://\S+)/ in a browser`)

// startRun runs the binary's run in-process and returns its base URL.
func startRun(t *testing.T, args ...string) (base string, stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := run(ctx, args, noEnv, pw, io.Discard)
		pw.CloseWithError(io.EOF)
		done <- err
	}()
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		if m := openLine.FindStringSubmatch(sc.Text()); m != nil {
			base = m[1]
			break
		}
	}
	if base == "" {
		cancel()
		t.Fatalf("no banner; run returned %v", <-done)
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	return base, func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(30 * time.Second):
			return errors.New("run did not return after cancel")
		}
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestRunEndpoints starts the whole binary in-process with two demo slaves
// and checks every endpoint, then a graceful stop.
func TestRunEndpoints(t *testing.T) {
	base, stop := startRun(t, "-addr", "127.0.0.1:0", "-nats-addr", "127.0.0.1:0", "-demo", "2", "-log-level", "warn")
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := get(t, base+"/healthz")
		if code == 200 && strings.Contains(body, `"slaves":2`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("healthz %d %s", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	code, body := get(t, base+"/metrics")
	if code != 200 || !strings.Contains(body, "enslavism_gateway_slaves 2") || !strings.Contains(body, "enslavism_gateway_presence_watch_up 1") {
		t.Errorf("metrics %d:\n%s", code, body)
	}
	for path, want := range map[string]string{
		"/enslavism/client.js":   "MasterConnection",
		"/enslavism/client.mjs":  "export",
		"/enslavism/client.d.ts": "declare class SlaveConnection",
		"/":                      "<script src=\"/enslavism/client.js\">",
		"/demo.js":               "createDataChannel",
	} {
		if code, body := get(t, base+path); code != 200 || !strings.Contains(body, want) {
			t.Errorf("GET %s: %d, body without %q", path, code, want)
		}
	}
	if err := stop(); err != nil {
		t.Fatalf("graceful stop: %v", err)
	}
}

func TestRunStaticDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "index.html"), []byte("my own game page"), 0o644); err != nil {
		t.Fatal(err)
	}
	base, stop := startRun(t, "-addr", "127.0.0.1:0", "-nats-addr", "127.0.0.1:0", "-static", dir, "-log-level", "error")
	if code, body := get(t, base+"/"); code != 200 || body != "my own game page" {
		t.Errorf("GET / = %d %q", code, body)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

func TestRunClearErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	addr := busy.Addr().String()
	ctx := t.Context()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-addr", addr, "-nats-addr", "127.0.0.1:0"}, "cannot listen on " + addr + ": bind: address already in use"},
		{[]string{"-addr", "127.0.0.1:0", "-nats-addr", addr}, "cannot start the embedded NATS server on " + addr},
		{[]string{"-addr", "127.0.0.1:0", "-nats", "nats://127.0.0.1:1"}, "cannot connect to NATS at nats://127.0.0.1:1"},
	} {
		err := run(ctx, tc.args, noEnv, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("run(%q) = %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
}

// TestREADMECommands runs the README's commands as a new user would: the
// run command builds and starts (ports moved by environment variables so
// that it cannot collide with anything), its endpoints answer, and SIGTERM
// stops it cleanly with status 0.
func TestREADMECommands(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"go run ./cmd/enslavism -demo 3", "go test ./..."} {
		if !strings.Contains(string(readme), cmd) {
			t.Fatalf("README.md does not show %q", cmd)
		}
	}
	bin := filepath.Join(t.TempDir(), "enslavism")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "-demo", "3")
	cmd.Env = append(os.Environ(), "ENSLAVISM_ADDR=127.0.0.1:0", "ENSLAVISM_NATS_ADDR=127.0.0.1:0", "ENSLAVISM_LOG_LEVEL=warn")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill() }()
	sc := bufio.NewScanner(out)
	base := ""
	for sc.Scan() {
		if m := openLine.FindStringSubmatch(sc.Text()); m != nil {
			base = m[1]
			break
		}
	}
	if base == "" {
		t.Fatal("the binary printed no URL to open")
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		code, body := get(t, base+"/healthz")
		if code == 200 && strings.Contains(body, `"slaves":3`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("healthz %d %s", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err := <-waited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v, want status 0", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the binary did not exit after SIGTERM")
	}
}

// TestShutdownWithPlayers stops the binary while a player is in a demo
// room: the room lets the player go (and says so on the chat) and the
// graceful stop succeeds within the drain timeout.
func TestShutdownWithPlayers(t *testing.T) {
	base, stop := startRun(t, "-addr", "127.0.0.1:0", "-nats-addr", "127.0.0.1:0", "-demo", "1", "-log-level", "error", "-drain-timeout", "8s")
	ctx := t.Context()
	wsURL := "ws" + strings.TrimPrefix(base, "http") + "/enslavism/clients"
	c, err := browserclient.Dial(ctx, nil, wsURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	p, err := c.Connect(cctx, browserclient.LoopbackAPI(), "demo-1", browserclient.Channel{Label: "chat"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	got := make(chan string, 16)
	p.Channels[0].OnMessage(func(m webrtc.DataChannelMessage) {
		select {
		case got <- string(m.Data):
		default:
		}
	})
	start := time.Now()
	if err := stop(); err != nil {
		t.Fatalf("stop with a player in a room: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("stop took %v with a player in a room", took)
	}
	deadline := time.After(5 * time.Second)
	for {
		select {
		case m := <-got:
			if strings.Contains(m, "shutting down") {
				return
			}
		case <-deadline:
			t.Fatal("the player was not told that the room shuts down")
		}
	}
}
