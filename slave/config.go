package slave

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/enslavism/enslavism/bus"
)

// Defaults of [Config].
const (
	DefaultConnectTimeout = 15 * time.Second
	DefaultMaxPending     = 256
)

// Config configures [Start]. Only Handler is required; the zero value of every
// other field is a sensible default for a production slave on a machine with
// a reachable IP address.
type Config struct {
	// ID is the slave's ID on the bus and in every browser's slave list.
	// It must match ^[A-Za-z0-9_-]{1,64}$. Empty means a random ID
	// (bus.NewID). A second live slave with the same ID cannot start.
	ID string

	// UserData is the slave's public value, visible to every browser (a
	// name, a map, a player count...). It is marshalled with encoding/json;
	// a json.RawMessage passes through as it is. nil means JSON null. At most
	// bus.MaxUserDataSize bytes once encoded. Change it later with
	// [Slave.SetUserData].
	UserData any

	// Region says where the slave runs ("eu-west", "Frankfurt"...): it is
	// published with its presence and browsers see it as
	// SlaveConnection.region, e.g. to prefer the slaves of their gateway's
	// region. At most 64 bytes of printable UTF-8; empty means none.
	Region string

	// Subjects gives the subject prefix (and so the presence bucket name).
	// The zero value is the default prefix "enslavism".
	Subjects bus.Subjects

	// Presence is used when this slave is the first to open the presence
	// bucket and creates it (TTL, marker TTL, replicas, storage). Its
	// Subjects and Logger fields are ignored: the slave's own are used.
	Presence bus.PresenceConfig

	// MaxClients caps the number of clients, connected or being set up.
	// When it is reached, offers are rejected with the reason "full".
	// 0 means no limit. It is published as the "max" of the slave's load.
	MaxClients int

	// MaxPending caps the sessions being set up (offer received, peer not
	// connected yet), a guard against offer floods. Beyond it, offers get an
	// error with code rate_limited. 0 means DefaultMaxPending; negative
	// means no limit.
	MaxPending int

	// Accept, if set, decides whether to take an offer (the original's
	// `offer` event). It sees the session, the gateway and the identity the
	// gateway's client-auth hook returned for the browser. Return nil to
	// accept, a [*Rejection] (see [Reject]) to refuse with a reason the
	// browser sees; any other error refuses with the reason "rejected" and
	// is logged. A panic refuses the offer with an internal error.
	//
	// Accept runs on a goroutine of its own for each offer, concurrently
	// for different offers; it may block (look up a database) but the
	// browser waits meanwhile. ctx ends when the gateway cancels the
	// session, the slave closes, or ConnectTimeout passes.
	Accept func(ctx context.Context, o *Offer) error

	// Handler serves each client once its peer connection is connected
	// (the original's `connection` event). Required. See [Handler].
	Handler Handler

	// OnClientsChange, if set, is called with the number of connected
	// clients (see [Slave.NumClients]) after it changed: typically to
	// publish a player count with [Slave.SetUserData]. Calls come one at a
	// time from one goroutine of the slave and are coalesced: after a
	// burst of connections it is called once with the latest count, and it
	// is never called twice in a row with the same count. It may block,
	// but must return: [Slave.Close] waits for it. It is not called after
	// Shutdown or Close began.
	OnClientsChange func(s *Slave, n int)

	// ICE configures addresses, ports and servers (STUN/TURN). The zero
	// value gathers host candidates on every interface with ephemeral UDP
	// ports and no STUN server: right for a slave with a public IP.
	ICE ICEConfig

	// Transport tunes DTLS and SCTP. The zero value is the fast-connect
	// configuration (one round trip less than pion's defaults).
	Transport TransportConfig

	// ConnectTimeout drops a session whose peer connection did not connect
	// within it after the offer arrived. 0 means DefaultConnectTimeout.
	ConnectTimeout time.Duration

	// ConfigureSettingEngine, if set, is applied last to the pion
	// SettingEngine the slave built from ICE and Transport: the escape hatch
	// for what they do not cover. The one webrtc.API built from it serves
	// every peer connection of the slave.
	ConfigureSettingEngine func(*webrtc.SettingEngine)

	// Logger receives the slave's logs (with "component"="slave" and the
	// slave ID) and pion's (with "component"="pion", an error of pion
	// logged at Info, everything else at Debug). nil means slog.Default().
	Logger *slog.Logger
}

// Offer is a browser's offer as the accept hook sees it.
type Offer struct {
	// Session is the gateway-scoped session key, unique across gateways.
	Session string
	// Gateway is the ID of the gateway relaying the session.
	Gateway string
	// Identity is what the gateway's client-auth hook returned for this
	// browser (any JSON value), nil when there is none.
	Identity json.RawMessage
	// SDP is the browser's SDP offer.
	SDP string
}

// ICEConfig configures how the slave gathers ICE candidates: which addresses
// and ports browsers are told to reach it on.
type ICEConfig struct {
	// Servers are STUN and TURN servers. A slave behind NAT without a
	// fixed public IP needs a STUN server to learn its public address;
	// with NAT1To1IPs set, no STUN server is needed. nil means none.
	Servers []webrtc.ICEServer

	// UDPMuxPort, when not 0, serves every peer connection on this one UDP
	// port (ICE UDP mux): the only port to open in a firewall or publish
	// from a container. 0 means one ephemeral port per peer connection
	// (see PortMin/PortMax). The mux is closed by Close.
	UDPMuxPort int

	// UDPMuxAddr is the IP address the mux listens on. Empty means one
	// socket per address of every interface kept by InterfaceFilter,
	// IPFilter and NetworkTypes. Ignored when UDPMuxPort is 0.
	UDPMuxAddr string

	// NAT1To1IPs are the public IPs of a 1:1 NAT in front of the slave
	// (a cloud VM's elastic IP, a container's published address). They
	// replace the private addresses in host candidates (or are added as
	// server-reflexive candidates, see NAT1To1CandidateType) so browsers
	// are only given addresses they can reach. One IP per address family,
	// or "public/private" pairs when the slave has several private IPs.
	NAT1To1IPs []string

	// NAT1To1CandidateType is webrtc.ICECandidateTypeHost (the zero value
	// means host too: replace the private addresses) or
	// webrtc.ICECandidateTypeSrflx (keep host candidates, add the public IP
	// as a server-reflexive candidate; incompatible with STUN servers).
	NAT1To1CandidateType webrtc.ICECandidateType

	// AddressRewriteRules are pion's finer-grained address rewrites
	// (per interface, CIDR or local address), applied after NAT1To1IPs.
	AddressRewriteRules []webrtc.ICEAddressRewriteRule

	// PortMin and PortMax bound the ephemeral UDP ports used when
	// UDPMuxPort is 0. Zero means any port.
	PortMin, PortMax uint16

	// InterfaceFilter, if set, keeps only the network interfaces (by name)
	// for which it returns true. It is called concurrently by gathering
	// peer connections and must not block.
	InterfaceFilter func(name string) bool

	// IPFilter, if set, keeps only the local IPs for which it returns true:
	// advertise only addresses browsers can reach (an unreachable host
	// candidate costs browsers time). It is called concurrently and must
	// not block.
	IPFilter func(ip net.IP) bool

	// NetworkTypes restricts candidates to these network types (such as
	// webrtc.NetworkTypeUDP4). nil means pion's default (UDP over IPv4 and
	// IPv6).
	NetworkTypes []webrtc.NetworkType

	// Loopback is for tests and single-machine demos: gather only
	// 127.0.0.1 over UDP (loopback candidates included), which is what
	// connects on a machine with no other interface. It overrides
	// NetworkTypes and narrows IPFilter to loopback addresses.
	Loopback bool

	// EnableMDNS turns pion's mDNS on (query only): the slave can then
	// resolve browsers' ".local" host candidates. Off by default: a server
	// does not need it (browsers reach it through its own candidates; pion
	// learns theirs as peer-reflexive), and it costs goroutines and
	// multicast traffic per peer connection.
	EnableMDNS bool

	// DisconnectedTimeout, FailedTimeout and KeepAliveInterval are ICE's
	// timers: a peer silent for DisconnectedTimeout is "disconnected", for
	// FailedTimeout "failed" (its client is then closed, see
	// [Client.Context]); keepalives are sent every KeepAliveInterval. Zero
	// means pion's defaults: 5 s, 25 s and 2 s. A game may want a shorter
	// FailedTimeout to free a crashed player's slot sooner.
	DisconnectedTimeout, FailedTimeout, KeepAliveInterval time.Duration
}

// TransportConfig tunes DTLS and SCTP. The zero value connects in fewer round
// trips than pion's defaults; each field restores a default of pion.
//
// By default the slave answers as DTLS server (the browser, which offers,
// sends the ClientHello as soon as ICE connects: no round trip is spent
// waiting for the slave's own ICE check), the DTLS server skips the
// HelloVerifyRequest exchange (a cookie round trip meant against spoofed
// source addresses: ICE's authenticated connectivity checks have already
// proved the browser's address, so it adds nothing here), and SCTP SNAP
// (sctp-init in SDP) is enabled for browsers that offer it.
type TransportConfig struct {
	// DTLSClient makes the slave answer as DTLS client (pion's default)
	// instead of DTLS server.
	DTLSClient bool
	// HelloVerify keeps DTLS's HelloVerifyRequest round trip when the slave
	// is the DTLS server.
	HelloVerify bool
	// DisableSCTPSnap turns SCTP SNAP off.
	DisableSCTPSnap bool
	// SCTPMaxReceiveBufferSize bounds each peer connection's SCTP receive
	// buffer, in bytes: the memory a slow handler lets one peer use.
	// 0 means pion's default (1 MiB).
	SCTPMaxReceiveBufferSize uint32
	// SCTPMaxMessageSize is the largest message the slave accepts on a
	// DataChannel, in bytes. 0 means pion's default (65535).
	SCTPMaxMessageSize uint32
}

// normalize fills defaults and validates cfg; it returns the encoded userData.
func (cfg *Config) normalize() (json.RawMessage, error) {
	if cfg.Handler == nil {
		return nil, fmt.Errorf("%w: Handler is nil", ErrInvalidConfig)
	}
	if cfg.ID == "" {
		cfg.ID = bus.NewID()
	}
	if err := bus.ValidateID(cfg.ID); err != nil {
		return nil, fmt.Errorf("%w: ID: %w", ErrInvalidConfig, err)
	}
	if err := bus.ValidateRegion(cfg.Region); err != nil {
		return nil, fmt.Errorf("%w: Region: %w", ErrInvalidConfig, err)
	}
	subj, err := bus.NewSubjects(cfg.Subjects.Prefix)
	if err != nil {
		return nil, fmt.Errorf("%w: Subjects: %w", ErrInvalidConfig, err)
	}
	cfg.Subjects = subj
	if cfg.MaxClients < 0 {
		return nil, fmt.Errorf("%w: MaxClients %d is negative", ErrInvalidConfig, cfg.MaxClients)
	}
	if cfg.MaxPending == 0 {
		cfg.MaxPending = DefaultMaxPending
	}
	if cfg.ConnectTimeout < 0 {
		return nil, fmt.Errorf("%w: ConnectTimeout %v is negative", ErrInvalidConfig, cfg.ConnectTimeout)
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if cfg.ICE.UDPMuxPort < 0 || cfg.ICE.UDPMuxPort > 65535 {
		return nil, fmt.Errorf("%w: ICE.UDPMuxPort %d out of range", ErrInvalidConfig, cfg.ICE.UDPMuxPort)
	}
	if cfg.ICE.PortMax < cfg.ICE.PortMin {
		return nil, fmt.Errorf("%w: ICE.PortMax %d below PortMin %d", ErrInvalidConfig, cfg.ICE.PortMax, cfg.ICE.PortMin)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	userData, err := encodeUserData(cfg.UserData)
	if err != nil {
		return nil, fmt.Errorf("%w: UserData: %w", ErrInvalidConfig, err)
	}
	return userData, nil
}

// encodeUserData marshals v and checks it against the contract.
func encodeUserData(v any) (json.RawMessage, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", bus.ErrMalformed, err)
	}
	if len(b) > bus.MaxUserDataSize {
		return nil, fmt.Errorf("%w: userData of %d bytes, at most %d", bus.ErrTooLarge, len(b), bus.MaxUserDataSize)
	}
	return b, nil
}
