// Package faults holds the project's fault-injection tests (issue 6): a
// 3-node NATS cluster with two gateways and a slave, where gateways, NATS
// nodes and NATS connections are killed while a Go client playing the
// browser keeps its list and its DataChannels; a slave run as a real process
// and SIGKILLed; the all-in-one binary killed and restarted under a slave
// process; and the security properties that span several parts
// (sessions across gateways, refused browsers, origins).
//
// The package has no code outside its tests. Run it with
//
//	go test -race -v ./faults/
//
// Each test logs the time every recovery took next to the bound it checks.
package faults
