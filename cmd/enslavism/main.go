// Command enslavism runs Enslavism on one machine: an embedded NATS server
// (or a connection to an existing NATS cluster), the gateway that browsers
// connect to, and optionally demo slaves.
//
//	go run ./cmd/enslavism -demo 3
//
// then open http://localhost:8081/. Every flag is also an ENSLAVISM_*
// environment variable; see -help and docs/operations.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	switch {
	case errors.Is(err, flag.ErrHelp):
	case err != nil:
		fmt.Fprintf(os.Stderr, "enslavism: %v\n", err)
		os.Exit(1)
	}
}
