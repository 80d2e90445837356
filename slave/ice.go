package slave

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/logging"
	"github.com/pion/webrtc/v4"
)

// pion's ICE timer defaults, used for the fields of ICEConfig left at zero.
const (
	defaultDisconnectedTimeout = 5 * time.Second
	defaultFailedTimeout       = 25 * time.Second
	defaultKeepAliveInterval   = 2 * time.Second
)

// newAPI builds the one webrtc.API of a slave from its configuration. The
// returned closer, when not nil, is the UDP mux: close it after every peer
// connection is closed.
func newAPI(cfg *Config, lf logging.LoggerFactory) (*webrtc.API, io.Closer, error) {
	ic := cfg.ICE
	var se webrtc.SettingEngine
	se.LoggerFactory = lf

	if !ic.EnableMDNS {
		se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	}
	networks := ic.NetworkTypes
	ipFilter := ic.IPFilter
	if ic.Loopback {
		networks = []webrtc.NetworkType{webrtc.NetworkTypeUDP4}
		user := ic.IPFilter
		ipFilter = func(ip net.IP) bool {
			return ip.IsLoopback() && (user == nil || user(ip))
		}
		se.SetIncludeLoopbackCandidate(true)
	}
	if len(networks) > 0 {
		se.SetNetworkTypes(networks)
	}
	if ipFilter != nil {
		se.SetIPFilter(ipFilter)
	}
	if ic.InterfaceFilter != nil {
		se.SetInterfaceFilter(ic.InterfaceFilter)
	}
	if ic.PortMin != 0 || ic.PortMax != 0 {
		if err := se.SetEphemeralUDPPortRange(ic.PortMin, ic.PortMax); err != nil {
			return nil, nil, fmt.Errorf("%w: ICE port range %d-%d: %w", ErrInvalidConfig, ic.PortMin, ic.PortMax, err)
		}
	}
	var rules []webrtc.ICEAddressRewriteRule
	if len(ic.NAT1To1IPs) > 0 {
		typ := ic.NAT1To1CandidateType
		if typ == webrtc.ICECandidateTypeUnknown {
			typ = webrtc.ICECandidateTypeHost
		}
		if typ != webrtc.ICECandidateTypeHost && typ != webrtc.ICECandidateTypeSrflx {
			return nil, nil, fmt.Errorf("%w: ICE.NAT1To1CandidateType %s: host or srflx only", ErrInvalidConfig, typ)
		}
		if typ == webrtc.ICECandidateTypeSrflx && len(ic.Servers) > 0 {
			return nil, nil, fmt.Errorf("%w: ICE.NAT1To1IPs as srflx candidates cannot be combined with ICE servers", ErrInvalidConfig)
		}
		var catchAll []string
		for _, ip := range ic.NAT1To1IPs {
			// "public/private" pins a public IP to one private address.
			if public, private, ok := strings.Cut(ip, "/"); ok {
				rules = append(rules, webrtc.ICEAddressRewriteRule{External: []string{public}, Local: private, AsCandidateType: typ})
				continue
			}
			catchAll = append(catchAll, ip)
		}
		if len(catchAll) > 0 {
			rules = append(rules, webrtc.ICEAddressRewriteRule{External: catchAll, AsCandidateType: typ})
		}
	}
	rules = append(rules, ic.AddressRewriteRules...)
	if len(rules) > 0 {
		if err := se.SetICEAddressRewriteRules(rules...); err != nil {
			return nil, nil, fmt.Errorf("%w: ICE address rewrite: %w", ErrInvalidConfig, err)
		}
	}
	if ic.DisconnectedTimeout != 0 || ic.FailedTimeout != 0 || ic.KeepAliveInterval != 0 {
		se.SetICETimeouts(
			orDefault(ic.DisconnectedTimeout, defaultDisconnectedTimeout),
			orDefault(ic.FailedTimeout, defaultFailedTimeout),
			orDefault(ic.KeepAliveInterval, defaultKeepAliveInterval),
		)
	}

	tc := cfg.Transport
	if !tc.DTLSClient {
		if err := se.SetAnsweringDTLSRole(webrtc.DTLSRoleServer); err != nil {
			return nil, nil, err
		}
		se.SetDTLSInsecureSkipHelloVerify(!tc.HelloVerify)
	}
	se.EnableSctpSnap(!tc.DisableSCTPSnap)
	if tc.SCTPMaxReceiveBufferSize != 0 {
		se.SetSCTPMaxReceiveBufferSize(tc.SCTPMaxReceiveBufferSize)
	}
	if tc.SCTPMaxMessageSize != 0 {
		se.SetSCTPMaxMessageSize(tc.SCTPMaxMessageSize)
	}

	var mux ice.UDPMux
	if ic.UDPMuxPort != 0 {
		var err error
		mux, err = newUDPMux(ic, networks, ipFilter, lf)
		if err != nil {
			return nil, nil, err
		}
		se.SetICEUDPMux(mux)
	}

	if cfg.ConfigureSettingEngine != nil {
		cfg.ConfigureSettingEngine(&se)
	}
	api := webrtc.NewAPI(
		webrtc.WithSettingEngine(se),
		webrtc.WithMediaEngine(&webrtc.MediaEngine{}),
		// Data channels only: no RTP interceptors (NACK, reports, TWCC), each
		// of which would cost goroutines and timers per peer connection.
		webrtc.WithInterceptorRegistry(&interceptor.Registry{}),
	)
	if mux == nil {
		return api, nil, nil
	}
	return api, mux, nil
}

// muxSocketBuffer is the socket buffer size asked for the UDP mux: every
// peer's packets go through that one socket, so bursts (many peers
// connecting or leaving at once) overflow the kernel's default.
const muxSocketBuffer = 4 << 20

// newUDPMux opens the single UDP port of ICEConfig.UDPMuxPort.
func newUDPMux(ic ICEConfig, networks []webrtc.NetworkType, ipFilter func(net.IP) bool, lf logging.LoggerFactory) (ice.UDPMux, error) {
	log := lf.NewLogger("udpmux")
	if ic.UDPMuxAddr != "" {
		ip := net.ParseIP(ic.UDPMuxAddr)
		if ip == nil {
			return nil, fmt.Errorf("%w: ICE.UDPMuxAddr %q is not an IP address", ErrInvalidConfig, ic.UDPMuxAddr)
		}
		conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip, Port: ic.UDPMuxPort})
		if err != nil {
			return nil, fmt.Errorf("slave: ICE UDP mux on %s: %w", net.JoinHostPort(ic.UDPMuxAddr, strconv.Itoa(ic.UDPMuxPort)), err)
		}
		// Best effort: the kernel caps it (net.core.rmem_max/wmem_max).
		_ = conn.SetReadBuffer(muxSocketBuffer)
		_ = conn.SetWriteBuffer(muxSocketBuffer)
		return webrtc.NewICEUDPMux(log, conn), nil
	}
	opts := []ice.UDPMuxFromPortOption{
		ice.UDPMuxFromPortWithLogger(log),
		ice.UDPMuxFromPortWithReadBufferSize(muxSocketBuffer),
		ice.UDPMuxFromPortWithWriteBufferSize(muxSocketBuffer),
	}
	if ic.InterfaceFilter != nil {
		opts = append(opts, ice.UDPMuxFromPortWithInterfaceFilter(ic.InterfaceFilter))
	}
	if ipFilter != nil {
		opts = append(opts, ice.UDPMuxFromPortWithIPFilter(ipFilter))
	}
	if ic.Loopback {
		opts = append(opts, ice.UDPMuxFromPortWithLoopback())
	}
	var nets []ice.NetworkType
	for _, n := range networks {
		switch n {
		case webrtc.NetworkTypeUDP4:
			nets = append(nets, ice.NetworkTypeUDP4)
		case webrtc.NetworkTypeUDP6:
			nets = append(nets, ice.NetworkTypeUDP6)
		}
	}
	if len(nets) > 0 {
		opts = append(opts, ice.UDPMuxFromPortWithNetworks(nets...))
	}
	mux, err := ice.NewMultiUDPMuxFromPort(ic.UDPMuxPort, opts...)
	if err != nil {
		return nil, fmt.Errorf("slave: ICE UDP mux on port %d: %w", ic.UDPMuxPort, err)
	}
	return mux, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// certRenewBefore is how long before its expiry a shared DTLS certificate is
// replaced (pion's certificates live a month).
const certRenewBefore = 7 * 24 * time.Hour

// certCache shares one DTLS certificate between the peer connections of a
// slave: generating an ECDSA key per peer costs CPU on every connect and
// buys nothing, since browsers check the certificate against the
// fingerprint of the SDP answer, not against a CA.
type certCache struct {
	mu   sync.Mutex
	cert *webrtc.Certificate
}

// get returns the current certificate, renewing it when it is about to
// expire.
func (c *certCache) get() ([]webrtc.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cert == nil || time.Until(c.cert.Expires()) < certRenewBefore {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("slave: DTLS key: %w", err)
		}
		cert, err := webrtc.GenerateCertificate(key)
		if err != nil {
			return nil, fmt.Errorf("slave: DTLS certificate: %w", err)
		}
		c.cert = cert
	}
	return []webrtc.Certificate{*c.cert}, nil
}
