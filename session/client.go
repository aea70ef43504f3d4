package session

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/midge-mqtt/midge/codec"
)

// Transport is what a Client needs of its connection. Wake and Close are
// called from any goroutine.
type Transport interface {
	// Wake asks the owner loop to call Client.Drain and write its output soon.
	Wake()
	// Close closes the connection after writing what is already queued.
	Close()
	// RemoteAddr is the peer's address, for logs.
	RemoteAddr() string
}

// Client is one network connection's protocol state machine. All its methods
// except kick are loop-only: they run on the goroutine that owns the
// connection, one at a time.
type Client struct {
	// Fields are grouped by size so that the struct packs without padding:
	// one Client is held per connection, idle or not.
	b   *Broker
	t   Transport
	pol *Policy
	s   *Session // nil until CONNECT is accepted
	// rd is who this client is (client id, username) under which policy;
	// nil until CONNECT. Immutable once set, so the session shares it for
	// its ACL checks on delivery.
	rd    *reader
	will  *will
	extra *clientExtra // what few connections use; nil until needed
	acks  []pendingAck // acknowledgements waiting for the store (in order)

	waitingOn atomic.Pointer[Session] // the queue whose drain will wake it, if held back
	kicked    atomic.Uint32           // reason+1 set by another goroutine (takeover, shutdown)

	expiry       uint32 // session expiry interval, seconds (v5; v3 persistent: neverExpires)
	clientMaxPkt uint32 // largest packet the client accepts (v5; 0: no limit)
	keepalive    uint16 // seconds, as granted (0: none)
	clientRecv   uint16 // client's receive maximum (v5; our outgoing window)
	version      byte
	connected    bool
	resend       bool // resend the inflight window (DUP) on the next drain
	disconnected bool // DISCONNECT received (the will is dropped unless 0x04)
	slow         bool // a subscriber asked for this publisher to be slowed
}

// clientExtra is the state of a connection that only some connections
// need: kept out of Client so that an idle connection does not pay for it.
type clientExtra struct {
	// identity is what the transport verified of the peer (SetIdentity).
	identity string
	aliases  [][]byte // inbound topic aliases (v5)
}

// more returns the client's extra state, making it on first use.
func (c *Client) more() *clientExtra {
	if c.extra == nil {
		c.extra = new(clientExtra)
	}
	return c.extra
}

// Disconnect is the error Handle and Drain return when the connection must
// be closed: the output (CONNACK or v5 DISCONNECT with Reason) has been queued.
type Disconnect struct {
	Reason byte
	Msg    string
}

func (d *Disconnect) Error() string {
	return fmt.Sprintf("session: %s (reason 0x%02X)", d.Msg, d.Reason)
}

// ErrClosed is returned when the connection should close with nothing more to say.
var ErrClosed = errors.New("session: connection closed")

// NewClient makes the state machine of a new connection, under the policy
// of the listener it came in on (nil: the broker's options).
func (b *Broker) NewClient(t Transport, pol *Policy) *Client {
	c := new(Client)
	b.InitClient(c, t, pol)
	return c
}

// InitClient sets up a zero Client as NewClient does, for a transport that
// holds the Client inside its own per-connection state: one allocation per
// connection instead of two.
func (b *Broker) InitClient(c *Client, t Transport, pol *Policy) {
	b.Stats.ConnectionsOpened.Add(1)
	if pol == nil {
		pol = &b.policy
	}
	c.b, c.t, c.pol = b, t, pol
}

// SetIdentity records the peer's verified identity (the CN of its TLS
// client certificate), the username under Policy.IdentityAsUsername. Call it
// before the CONNECT is handled. Loop-only.
func (c *Client) SetIdentity(name string) { c.more().identity = name }

// TakeSlow reports (and clears) whether a message this client published went
// to a subscriber whose queue is filling: the transport should stop reading
// from this connection for a while (back-pressure). Loop-only.
func (c *Client) TakeSlow() bool {
	s := c.slow
	c.slow = false
	return s
}

// Connected reports whether CONNECT was accepted.
func (c *Client) Connected() bool { return c.connected }

// Version is the negotiated protocol level (0 before CONNECT).
func (c *Client) Version() byte { return c.version }

// Keepalive is the granted keepalive in seconds (0: none). The transport
// closes the connection after 1.5 times that without a packet [MQTT-3.1.2-24].
func (c *Client) Keepalive() uint16 { return c.keepalive }

// ID is the client identifier ("" before CONNECT).
func (c *Client) ID() string {
	if c.rd == nil {
		return ""
	}
	return c.rd.info.ClientID
}

// Handle processes one decoded packet, appending replies to out. A non-nil
// error means: write out, then close the connection.
func (c *Client) Handle(p *codec.Packet, out *Output) error {
	c.b.Stats.MessagesReceived.Add(1)
	if !c.connected {
		if p.Type != codec.CONNECT {
			return &Disconnect{Reason: codec.ProtocolError, Msg: "first packet is not CONNECT"} // [MQTT-3.1.0-1]
		}
		return c.handleConnect(p, out)
	}
	switch p.Type {
	case codec.PUBLISH:
		return c.handlePublish(p, out)
	case codec.PUBACK:
		c.handlePuback(p, out)
	case codec.PUBREC:
		c.handlePubrec(p, out)
	case codec.PUBREL:
		c.handlePubrel(p, out)
	case codec.PUBCOMP:
		c.handlePubcomp(p, out)
	case codec.SUBSCRIBE:
		return c.handleSubscribe(p, out)
	case codec.UNSUBSCRIBE:
		c.handleUnsubscribe(p, out)
	case codec.PINGREQ:
		c.sendSimple(out, codec.PINGRESP, 0, 0)
	case codec.DISCONNECT:
		return c.handleDisconnect(p, out)
	case codec.CONNECT:
		return c.protocolError(out, "second CONNECT") // [MQTT-3.1.0-2]
	case codec.AUTH:
		// No authentication method is supported, so no AUTH exchange can be
		// under way [MQTT-4.12.0-1].
		return c.protocolError(out, "AUTH without an authentication method")
	default:
		return c.protocolError(out, "unexpected "+p.Type.String())
	}
	return nil
}

// HandleError turns a decoding error into the reply the client gets (v5:
// DISCONNECT with the reason code, or CONNACK while connecting) and the error
// to log. The caller closes the connection after writing out.
func (c *Client) HandleError(err error, out *Output) error {
	var ce *codec.Error
	if !errors.As(err, &ce) {
		return err
	}
	if !c.connected {
		if ce.ConnackV3 != 0 && c.version != codec.Version5 {
			c.sendConnack(out, codec.Version311, false, ce.ConnackV3, nil)
		} else if c.version == codec.Version5 {
			c.sendConnack(out, codec.Version5, false, ce.Reason, nil)
		}
		return err
	}
	c.sendDisconnect(out, ce.Reason)
	return err
}

// SetDecoderVersion lets the transport tell the client which protocol level
// the decoder saw in a CONNECT that failed to decode, so that the refusal is
// sent in the right form.
func (c *Client) SetDecoderVersion(v byte) {
	if !c.connected {
		c.version = v
	}
}

func (c *Client) protocolError(out *Output, msg string) error {
	c.sendDisconnect(out, codec.ProtocolError)
	return &Disconnect{Reason: codec.ProtocolError, Msg: msg}
}

// sendDisconnect queues a v5 DISCONNECT; v3 has no server DISCONNECT.
func (c *Client) sendDisconnect(out *Output, reason byte) {
	if c.version != codec.Version5 {
		return
	}
	c.sendSimple(out, codec.DISCONNECT, 0, reason)
}

// sendSimple queues a packet made of a type, a packet id and a reason code.
func (c *Client) sendSimple(out *Output, t codec.PacketType, id uint16, reason byte) {
	p := &out.pkt
	p.Reset()
	p.Type, p.PacketID, p.ReasonCode = t, id, reason
	if t == codec.PUBREL {
		p.Flags = 0x02
	}
	out.appendPacket(p, c.version)
	c.b.Stats.MessagesSent.Add(1)
}

func (c *Client) handleDisconnect(p *codec.Packet, out *Output) error {
	if c.version == codec.Version5 && p.Props.Has(codec.PropSessionExpiry) {
		if c.expiry == 0 && p.Props.SessionExpiry != 0 {
			// [MQTT-3.14.2-2]: a session that was to end at close cannot be
			// extended. The DISCONNECT is not valid (the will stays): the
			// server answers with DISCONNECT 0x82.
			return c.protocolError(out, "session expiry set on DISCONNECT after 0 on CONNECT")
		}
		c.expiry = p.Props.SessionExpiry
	}
	c.disconnected = true
	if p.ReasonCode == codec.DisconnectWithWill {
		c.disconnected = false // publish the will as for an abnormal close
	}
	return ErrClosed
}

// kick asks the client's loop to disconnect it with reason (v5 DISCONNECT).
// Any goroutine.
func (c *Client) kick(reason byte) {
	if c.kicked.CompareAndSwap(0, uint32(reason)+1) {
		c.t.Wake()
	}
}

// Kick disconnects the client from any goroutine with a v5 reason code (for
// example ServerShuttingDown).
func (c *Client) Kick(reason byte) { c.kick(reason) }

// Drain moves queued messages into out, within the inflight window and
// until out holds budget bytes (budget <= 0: only a pending kick is handled),
// and handles a pending kick. Call it at the end of every loop turn that
// touched the connection and whenever the transport is woken. more reports
// that messages are left which the window would allow. A non-nil error
// means: write out, then close.
func (c *Client) Drain(out *Output, budget int) (more bool, err error) {
	if k := c.kicked.Load(); k != 0 {
		c.sendDisconnect(out, byte(k-1))
		return false, &Disconnect{Reason: byte(k - 1), Msg: "disconnected by the broker"}
	}
	if !c.connected {
		return false, nil
	}
	c.flushAcks(out)
	if budget <= 0 {
		return false, nil
	}
	s := c.s
	now := out.clock()
	pb := c.b.batch(out)
	defer c.b.submit(pb)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.owner != c {
		return false, nil
	}
	// Publishers held back by this queue go on once it has drained (Wake
	// takes no session lock, so it is safe here).
	// A queue counts as moving while it empties or messages leave it; one
	// that is stuck behind a full inflight window or socket does not.
	queued := s.queued.Load()
	defer func() {
		if left := s.queued.Load(); left == 0 || left < queued {
			s.lastDrain = now
		}
		wakeAll(s.takeWaitersLocked(false))
	}()
	s.woken = false
	if c.resend {
		c.resend = false
		c.resendInflight(out, now)
	}
	window := c.window()
	for int(s.head) < len(s.queue) {
		e := &s.queue[s.head]
		if e.m.expired(now) {
			s.unstoreLocked(pb, e, false)
			s.pop().m.Release()
			continue
		}
		if e.qos > 0 && len(s.inflight) >= window {
			return false, nil
		}
		if out.Len() >= budget {
			return true, nil
		}
		next := s.pop()
		if next.qos == 0 {
			c.writePublish(out, &next, 0, false, now)
			next.m.Release()
			continue
		}
		id := s.allocID()
		if !c.writePublish(out, &next, id, false, now) {
			s.unstoreLocked(pb, &next, false)
			next.m.Release()
			continue
		}
		if next.qos == 2 { // its packet id must survive a restart for exactly once
			s.storeQueuedLocked(pb, &next, id, false)
		}
		s.inflight = append(s.inflight, inflight{id: id, e: next})
	}
	return false, nil
}

// window is the outgoing QoS 1/2 inflight limit: ours, or the client's
// receive maximum if smaller [MQTT-3.3.4-9].
func (c *Client) window() int {
	w := c.b.opts.MaxInflight
	if c.clientRecv > 0 && int(c.clientRecv) < w {
		w = int(c.clientRecv)
	}
	return w
}

// resendInflight re-sends unacknowledged messages of a resumed session in
// their original order: PUBLISH with DUP, or PUBREL [MQTT-4.4.0-1]. Assumes
// c.s.mu is held.
func (c *Client) resendInflight(out *Output, now int64) {
	for i := range c.s.inflight {
		f := &c.s.inflight[i]
		if f.pubrel {
			c.sendSimple(out, codec.PUBREL, f.id, 0)
			continue
		}
		c.writePublish(out, &f.e, f.id, true, now)
	}
}

// writePublish encodes one outgoing PUBLISH. It returns false when the
// packet is larger than the client accepts, in which case it is dropped
// [MQTT-3.1.2-25].
func (c *Client) writePublish(out *Output, e *entry, id uint16, dup bool, now int64) bool {
	m := e.m
	p := &out.pkt
	p.Type, p.Flags = codec.PUBLISH, 0
	p.Dup, p.QoS, p.Retain = dup, e.qos, e.retain
	p.Topic, p.PacketID, p.Payload = m.Topic, id, m.Payload
	if c.version == codec.Version5 {
		ids, user := p.Props.SubscriptionIDs, p.Props.User
		p.Props = m.Props
		p.Props.SubscriptionIDs = append(ids[:0], e.ids...)
		p.Props.User = append(user[:0], m.Props.User...)
		if m.ExpiresAt != 0 {
			p.Props.MessageExpiry = m.remainingExpiry(now)
			p.Props.Set(codec.PropMessageExpiry)
		}
		if c.clientMaxPkt > 0 && uint32(p.EncodedSize(c.version)) > c.clientMaxPkt {
			c.b.Stats.PublishDropped.Add(1)
			return false
		}
	} else {
		p.Props.Present = 0
		p.Props.SubscriptionIDs, p.Props.User = p.Props.SubscriptionIDs[:0], p.Props.User[:0]
	}
	out.appendPublish(p, c.version, m)
	c.b.Stats.PublishSent.Add(1)
	c.b.Stats.PublishBytesSent.Add(int64(len(m.Payload)))
	c.b.Stats.MessagesSent.Add(1)
	return true
}
