// Package bus is the NATS contract of Enslavism: the IDs, the subjects, the JSON
// messages exchanged between gateways and slaves, the wire errors, and the
// presence registry (a JetStream key-value bucket with a TTL) through which
// every gateway learns which slaves are alive.
//
// Every other part of the project (the slave library, the gateway, tools such
// as `nats sub 'enslavism.>'`) reads the contract through this package, so
// nothing here knows about WebRTC or WebSockets. The package depends on
// github.com/nats-io/nats.go only.
//
// Subjects, with the default prefix "enslavism":
//
//	enslavism.slave.<slaveID>.offer                      gateway → slave, request/reply
//	enslavism.slave.<slaveID>.session.<session>.ice      gateway → slave
//	enslavism.slave.<slaveID>.session.<session>.cancel   gateway → slave
//	enslavism.gateway.<gatewayID>.session.<session>.ice  slave → gateway
//
// IDs (slave IDs, session keys, gateway IDs, the prefix) must match
// ^[A-Za-z0-9_-]{1,64}$; the subject builders refuse anything else with an
// error matching [ErrInvalidID], so no unvalidated input ever reaches a subject.
package bus
