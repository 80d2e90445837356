package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/enslavism/enslavism/bus"
	"github.com/enslavism/enslavism/embedded"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestRunListsAndStops(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	srv, err := embedded.Start(ctx, embedded.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	nc, err := srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	p, err := bus.OpenPresence(ctx, js, bus.PresenceConfig{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := p.Watch(ctx, bus.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	runCtx, stop := context.WithCancel(ctx) // stands for SIGINT/SIGTERM
	defer stop()
	var logs syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(runCtx, []string{"-nats", srv.ClientURL(), "-name", "test echo", "-id", "echo-test", "-loopback", "-max-clients", "3", "-v"}, &logs)
	}()
	next := func() bus.Event {
		t.Helper()
		select {
		case ev := <-w.Events():
			return ev
		case err := <-done:
			t.Fatalf("run ended: %v (ctx %v, runCtx %v)\n%s", err, ctx.Err(), runCtx.Err(), logs.String())
		case <-ctx.Done():
			t.Fatalf("no presence event\n%s", logs.String())
		}
		return bus.Event{}
	}
	ev := next()
	if ev.Kind != bus.SlaveAdded || ev.Slave.ID != "echo-test" || string(ev.Slave.UserData) != `{"name":"test echo","clients":0}` {
		t.Fatalf("got %v %s %s, want added echo-test with name and clients", ev.Kind, ev.Slave.ID, ev.Slave.UserData)
	}
	// Start has returned (the presence write may be seen before its ack).
	for !strings.Contains(logs.String(), "echo slave running") {
		time.Sleep(5 * time.Millisecond)
	}
	stop()
	if ev := next(); ev.Kind != bus.SlaveRemoved {
		t.Fatalf("got %v, want removed", ev.Kind)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("run did not return after its context ended")
	}
}

func TestFlags(t *testing.T) {
	ctx := context.Background()
	var out syncBuffer
	if err := run(ctx, []string{"-h"}, &out); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v, want flag.ErrHelp", err)
	}
	if err := run(ctx, []string{"-nat-ip", "not-an-ip"}, &out); err == nil {
		t.Error("-nat-ip not-an-ip: no error")
	}
	if err := run(ctx, []string{"-nats", "nats://127.0.0.1:1"}, &out); err == nil {
		t.Error("unreachable NATS: no error")
	}
}
