package main

import (
	"bytes"
	"context"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/enslavism/enslavism/embedded"
	"github.com/enslavism/enslavism/gateway"
)

func TestParse(t *testing.T) {
	for _, args := range [][]string{
		{},                                   // neither -url nor -self
		{"-url", "ws://x/enslavism/clients"}, // -url without -nats
		{"-self", "5", "-url", "ws://x"},     // both
		{"-self", "5", "-clients", "0"},
		{"-self", "5", "-sources", "127.0.0.1,nope"},
	} {
		if _, err := parse(args, &bytes.Buffer{}); err == nil {
			t.Errorf("parse(%q) accepted", args)
		}
	}
	o, err := parse([]string{"-self", "5", "-sources", "127.0.0.1, 127.0.0.2"}, &bytes.Buffer{})
	if err != nil || len(o.sources) != 2 || o.self != 5 {
		t.Errorf("parse = %+v, %v", o, err)
	}
}

func TestPercentiles(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	p50, p99, mx := percentiles(d)
	if p50 != 51*time.Millisecond || p99 != 100*time.Millisecond || mx != 100*time.Millisecond {
		t.Errorf("percentiles = %v %v %v", p50, p99, mx)
	}
}

// TestRunAgainstGateway runs the tool's -url mode with a few clients
// against an in-process gateway: every client syncs and gets the update.
func TestRunAgainstGateway(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	quiet := slog.New(slog.DiscardHandler)
	srv, err := embedded.Start(ctx, embedded.Config{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	nc, err := srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	g, err := gateway.New(ctx, nc, gateway.Config{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	hs := httptest.NewServer(g)
	defer hs.Close()

	var out bytes.Buffer
	err = run(ctx, []string{
		"-url", "ws" + strings.TrimPrefix(hs.URL, "http") + "/enslavism/clients",
		"-nats", srv.ClientURL(),
		"-clients", "20", "-ramp", "1000", "-hold", "0s",
		"-sources", "127.0.0.1,127.0.0.2",
	}, &out, &out)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	for _, want := range []string{"20 clients synced", "update 1: 20 clients got slaveupdated", "missing 0", "still connected at the end: 20 of 20"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
