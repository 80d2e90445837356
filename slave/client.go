package slave

import (
	"context"
	"encoding/json"
	"sync"

	"github.com/pion/webrtc/v4"
)

// Handler serves one client, like an http.Handler serves one request: the
// handler's lifetime is the client's.
//
// ServeClient is called once per client, on a goroutine of its own, as soon
// as the client's peer connection is connected (ICE and DTLS done). ctx is
// the client's context: it is cancelled when the peer goes away (the browser
// closed the connection, or ICE failed), when the client is closed, and when
// the slave closes. When ServeClient returns, the client is closed, after the
// messages it sent have reached the browser (at most 1 s): a handler may send
// a goodbye and return. Calls for different clients run concurrently. A panic
// is recovered, logged and closes the client.
type Handler interface {
	ServeClient(ctx context.Context, c *Client)
}

// HandlerFunc adapts a function to a [Handler].
type HandlerFunc func(ctx context.Context, c *Client)

// ServeClient calls f(ctx, c).
func (f HandlerFunc) ServeClient(ctx context.Context, c *Client) { f(ctx, c) }

// Client is one browser connected to the slave: one peer connection, on which
// the browser opens as many DataChannels as it likes. Its methods are safe
// for concurrent use.
type Client struct {
	sess *session

	mu      sync.Mutex
	onDC    func(*webrtc.DataChannel)
	dcReady chan struct{} // closed by the first OnDataChannel call
}

// Session returns the gateway-scoped session key of the client.
func (c *Client) Session() string { return c.sess.id }

// Gateway returns the ID of the gateway that relayed the client's offer.
func (c *Client) Gateway() string { return c.sess.gateway }

// Identity returns what the gateway's client-auth hook returned for the
// browser (any JSON value), nil when there is none. Do not modify it.
func (c *Client) Identity() json.RawMessage { return c.sess.identity }

// PeerConnection returns the client's pion peer connection, for what this
// package does not cover (stats, the selected candidate pair...). Do not
// replace its OnDataChannel, OnICECandidate or OnConnectionStateChange
// handlers: the slave relies on them; use [Client.OnDataChannel] and
// [Client.Context] instead. Do not close it: use [Client.Close].
func (c *Client) PeerConnection() *webrtc.PeerConnection {
	c.sess.mu.Lock()
	defer c.sess.mu.Unlock()
	return c.sess.pc
}

// Context returns the client's context, the one ServeClient receives. It is
// cancelled when the peer goes away or the client or the slave is closed;
// context.Cause tells which: [ErrPeerGone], [ErrClientClosed], [ErrClosed].
func (c *Client) Context() context.Context { return c.sess.ctx }

// OnDataChannel sets f to be called for each DataChannel the browser opens
// (the original's `datachannel` event): every channel its createDataChannel
// makes, never the control channel. The channel's label, protocol, ordered,
// maxRetransmits and maxPacketLifeTime are those the browser chose.
//
// f is called before the slave reads anything from the channel: set the
// channel's OnMessage (and OnClose) inside f and no message is lost. Channels
// the browser opened before OnDataChannel was called wait for it (their
// messages are held, not dropped), so calling it first thing in ServeClient
// is always in time. If OnDataChannel is never called, the browser's channels
// open but nothing they send is read.
//
// f runs on the peer connection's channel-accepting goroutine, one channel
// at a time in the order the browser opened them; until it returns, later
// channels of this client wait. It may block briefly; a long job belongs on
// a goroutine of its own. A later call replaces f for the channels still to
// come. f == nil closes the channels opened afterwards. A panic in f is
// recovered, logged and closes the channel.
func (c *Client) OnDataChannel(f func(dc *webrtc.DataChannel)) {
	if f == nil {
		f = closeDataChannel
	}
	c.mu.Lock()
	c.onDC = f
	select {
	case <-c.dcReady:
	default:
		close(c.dcReady)
	}
	c.mu.Unlock()
}

func closeDataChannel(dc *webrtc.DataChannel) { _ = dc.Close() }

// dataChannelHandler waits until OnDataChannel was called and returns its f,
// or nil when the client's context ends first.
func (c *Client) dataChannelHandler() func(*webrtc.DataChannel) {
	select {
	case <-c.dcReady:
	case <-c.sess.ctx.Done():
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.onDC
}

// Stopping returns the slave's [Slave.Stopping] channel, closed when
// Shutdown or Close begins: a handler selects on it (besides its context) to
// say goodbye and return, which lets Shutdown finish early.
func (c *Client) Stopping() <-chan struct{} { return c.sess.s.Stopping() }

// Close cancels the client's context with [ErrClientClosed], waits until the
// messages sent on its channels have reached the browser (at most 1 s), and
// closes its peer connection: the browser sees its channels close. It is
// idempotent and may be called from any goroutine, including the handler
// and the channels' callbacks; it returns the error of closing the peer
// connection, the first time.
func (c *Client) Close() error { return c.sess.close(ErrClientClosed) }
