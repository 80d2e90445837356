// Package slave is the Go library for Enslavism slaves: WebRTC servers (game
// servers, rooms, workers) that browsers discover through a gateway and
// connect to directly, over DataChannels.
//
// A slave connects to NATS with a connection its caller owns, publishes its
// presence (an ID and a public userData value) in the presence bucket with
// heartbeats, and answers browsers' offers relayed by any gateway:
//
//	nc, _ := nats.Connect(nats.DefaultURL)
//	s, err := slave.Start(ctx, nc, slave.Config{
//		UserData: map[string]any{"name": "room 1"},
//		Handler: slave.HandlerFunc(func(ctx context.Context, c *slave.Client) {
//			c.OnDataChannel(func(dc *webrtc.DataChannel) {
//				dc.OnMessage(func(m webrtc.DataChannelMessage) { _ = dc.Send(m.Data) })
//			})
//			<-ctx.Done() // the browser went away
//		}),
//	})
//	…
//	s.Shutdown(ctx) // deregister, drain, close
//
// Each accepted offer becomes one pion peer connection, and its [Client] is
// served by the Handler like an HTTP request by an http.Handler: the
// handler's context ends when the peer goes away. A browser opens any number
// of DataChannels on that one peer connection, each with its own label,
// ordering and reliability; [Client.OnDataChannel] receives them.
//
// # The NATS contract
//
// The slave holds one wildcard subscription, "<prefix>.slave.<id>.>":
//
//   - "<prefix>.slave.<id>.offer" (request): a bus.OfferRequest. The reply is
//     a bus.OfferReply: {"sdp": answer} once the answer is set as local
//     description (without waiting for candidate gathering), {"rejected":
//     reason} when the accept hook or MaxClients said no ("full"), or
//     {"error": {"code", "message"}}: bad_request (malformed request, bad
//     SDP, no m=application section, session already exists), unavailable
//     (shutting down), rate_limited (MaxPending sessions being set up),
//     timeout, internal.
//   - "<prefix>.slave.<id>.session.<session>.ice": a browser candidate,
//     {"candidate": null} for end-of-candidates. Candidates that arrive while
//     the offer is being handled are queued and added once the remote
//     description is set; candidates for a session the slave does not know
//     are kept briefly (bounded) in case its offer follows, then dropped.
//   - "<prefix>.slave.<id>.session.<session>.cancel": drop the session if it
//     is not connected yet; ignored otherwise.
//
// The slave's own candidates go to "<prefix>.gateway.<gateway>.session.
// <session>.ice" as they are gathered (trickle), after the answer, ending
// with {"candidate": null}.
//
// # Load and region
//
// The slave's presence value carries its load, which the library keeps
// itself: {"clients": connected clients, "max": MaxClients (omitted when
// unlimited), "accepting": false while full}. It is written only when it
// changes, one write at a time (a burst of connections is coalesced into
// the latest value), so browsers get one slaveupdated per change and none
// from heartbeats; Shutdown and Close remove the slave at once instead of
// publishing accepting=false. Config.Region, when set, is published too.
// See [Slave.Load].
//
// # The control channel
//
// Every peer connection carries one pre-negotiated DataChannel, label
// [ControlLabel] ("enslavism"), negotiated with stream ID [ControlID] (0),
// created by both ends before the offer; it is what puts the m=application
// section into the browser's offer, so the browser then opens the user's
// channels in-band without renegotiation. The slave answers the text
// message {"type":"ping","t":<number>} with {"type":"pong","t":<the same
// number>}, at most 10 per second per peer (burst 10; the excess is dropped
// silently), and ignores every other message. Handlers never see this
// channel.
//
// # ICE
//
// [ICEConfig] covers what a deployment needs: STUN/TURN servers, one UDP
// port for every peer (UDPMuxPort), NAT 1:1 addresses for servers behind a
// NAT or in containers, port ranges, interface and IP filters, and a
// loopback mode for tests. mDNS is off and the interceptor registry empty:
// a data-only peer needs neither, and both cost goroutines per peer.
package slave
