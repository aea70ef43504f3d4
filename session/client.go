package session

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/store"
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
	durWait      bool // in persistence.waiters; guarded by persistence.mu
	// bridge: the CONNECT had mosquitto's bridge bit (try_private): its
	// subscriptions get no-local and retain-as-published, so that nothing it
	// forwards comes back to it.
	bridge bool
}

// clientExtra is the state of a connection that only some connections
// need: kept out of Client so that an idle connection does not pay for it.
type clientExtra struct {
	// identity is what the transport verified of the peer (SetIdentity).
	identity string
	aliases  [][]byte // inbound topic aliases (v5)
	ticket   *Ticket  // answers of an Asker that needed I/O
	authMemo any      // an Asker's private cache for this connection (AuthMemo)
	mounted  []byte   // scratch: a published topic under the listener's mount_point
	// problemInfo: the v5 CONNECT asked for reason strings (Request
	// Problem Information = 1, explicitly).
	problemInfo bool
	outAliases  *outAliases  // topic aliases given to the client (it allows them)
	acks        []pendingAck // acknowledgements waiting for the store (in order)
	// relay: an in-process bridge whose inbound QoS 2 ids are the remote's
	// (LiftReceiveMaximum): its unreleased ids are bounded by the remote's
	// window, not by ours.
	relay bool
	// internal: part of the broker (a bridge's local side, Internal): its
	// CONNECT is not authenticated.
	internal bool
	// yieldFrom is the owner asked to yield its session to this
	// connection (awaitTakeover), yieldSess that session, until the
	// session is opened or the connection given up (abandonTakeover).
	yieldFrom *Client
	yieldSess *Session
	// repeated are the QoS 2 packet ids awaiting PUBREL that this
	// connection has already sent again (repeatedQoS2).
	repeated []uint16
	// heldBy: a remote node holds this publisher back (cluster.go).
	heldBy *RemoteHold
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
	err := c.handle(p, out)
	if err != ErrParked && c.hasAnswers() {
		c.extra.ticket.forget() // that packet is done with its answers
	}
	return err
}

func (c *Client) handle(p *codec.Packet, out *Output) error {
	c.b.Stats.MessagesReceived.Add(1)
	if !c.connected {
		if p.Type != codec.CONNECT {
			return &Disconnect{Reason: codec.ProtocolError, Msg: "first packet is not CONNECT"} // [MQTT-3.1.0-1]
		}
		err := c.handleConnect(p, out)
		if err == ErrParked {
			c.b.Stats.MessagesReceived.Add(-1) // counted when handled again
		}
		return err
	}
	switch p.Type {
	case codec.PUBLISH:
		err := c.handlePublish(p, out)
		if err == ErrParked {
			c.b.Stats.MessagesReceived.Add(-1) // counted when handled again
		}
		return err
	case codec.PUBACK:
		return c.handlePuback(p, out)
	case codec.PUBREC:
		return c.handlePubrec(p, out)
	case codec.PUBREL:
		c.handlePubrel(p, out)
	case codec.PUBCOMP:
		return c.handlePubcomp(p, out)
	case codec.SUBSCRIBE, codec.UNSUBSCRIBE:
		var err error
		if p.Type == codec.SUBSCRIBE {
			err = c.handleSubscribe(p, out)
		} else {
			err = c.handleUnsubscribe(p, out)
		}
		if err == ErrParked {
			c.b.Stats.MessagesReceived.Add(-1) // counted when handled again
		}
		return err
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
	c.sendDisconnect(out, ce.Reason, ce.Msg)
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
	c.sendDisconnect(out, codec.ProtocolError, msg)
	return &Disconnect{Reason: codec.ProtocolError, Msg: msg}
}

// sendDisconnect queues a v5 DISCONNECT, with why as its reason string when
// the client asked for one; v3 has no server DISCONNECT.
func (c *Client) sendDisconnect(out *Output, reason byte, why string) {
	if c.version != codec.Version5 {
		return
	}
	c.sendReasoned(out, codec.DISCONNECT, 0, reason, why)
}

// tooLarge reports whether p is over the client's Maximum Packet Size, so
// must not be sent [MQTT-3.1.2-24].
func (c *Client) tooLarge(p *codec.Packet) bool {
	return c.clientMaxPkt > 0 && uint32(p.EncodedSize(c.version)) > c.clientMaxPkt
}

// sendSimple queues a packet made of a type, a packet id and a reason code.
func (c *Client) sendSimple(out *Output, t codec.PacketType, id uint16, reason byte) {
	c.sendReasoned(out, t, id, reason, "")
}

// sendReasoned is sendSimple with a reason string, sent only to a v5 client
// that asked for them (reasonString).
func (c *Client) sendReasoned(out *Output, t codec.PacketType, id uint16, reason byte, why string) {
	p := &out.pkt
	p.Reset()
	p.Type, p.PacketID, p.ReasonCode = t, id, reason
	if t == codec.PUBREL {
		p.Flags = 0x02
	}
	c.reasonString(p, why)
	if c.tooLarge(p) {
		return
	}
	out.appendPacket(p, c.version)
	c.b.Stats.MessagesSent.Add(1)
}

// reasonString puts why in p as its Reason String when the client sent
// Request Problem Information = 1 explicitly. The spec lets a server send
// one by default, but mosquitto never does, and clients that compare
// packets byte for byte with mosquitto's must see the same bytes when they
// did not ask. Never past the client's Maximum Packet Size [MQTT-3.1.2-25].
func (c *Client) reasonString(p *codec.Packet, why string) {
	if why == "" || c.extra == nil || !c.extra.problemInfo || c.version != codec.Version5 {
		return
	}
	p.Props.ReasonString = append(p.Props.ReasonString[:0], why...)
	p.Props.Set(codec.PropReasonString)
	if c.clientMaxPkt > 0 && uint32(p.EncodedSize(c.version)) > c.clientMaxPkt {
		p.Props.Present &^= 1 << codec.PropReasonString
	}
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
	for {
		k := c.kicked.Load()
		if k&^kickYieldBits != 0 { // kicked already
			return
		}
		if c.kicked.CompareAndSwap(k, k|(uint32(reason)+1)) {
			c.t.Wake()
			return
		}
	}
}

// A takeover first asks the connected owner of the session to yield
// (kickYield): to handle what it has already read, then nothing more, so
// that the new connection does not overtake what the old one sent (a
// PUBLISH then a takeover, on two event loops). The owner sets kickYielded
// once it has, and the waiting CONNECT is handled again (openSession).
const (
	kickYield     = 1 << 9
	kickYielded   = 1 << 10
	kickYieldBits = kickYield | kickYielded
)

// ErrYielded is returned by Client.Drain when a new connection for the
// client's id waits for it to yield its session: the transport handles what
// the client has already sent (what it has read, and what waits in the
// kernel), then calls Yield and reads nothing more from it (Parked reports
// true) until the takeover closes it.
var ErrYielded = errors.New("session: yielded to a takeover")

// askYield asks c, the connected owner of a session that a new connection
// takes over, to yield (see kickYield). Any goroutine; registry.mu held.
func (c *Client) askYield() {
	for {
		k := c.kicked.Load()
		if k != 0 {
			return // asked already, or kicked: its close will wake the taker
		}
		if c.kicked.CompareAndSwap(0, kickYield) {
			c.t.Wake()
			return
		}
	}
}

// Yield marks c as having yielded its session, once Drain has returned
// ErrYielded and the transport has handled what the client had sent: the
// transport reads nothing more from it, and the connections waiting to
// take the session over are woken. Loop-only.
// It reports false when no takeover waits any more (the new connection
// went away first): the client goes on as before.
func (c *Client) Yield() bool {
	for {
		k := c.kicked.Load()
		if k&kickYield == 0 {
			return false
		}
		if k&kickYielded != 0 {
			return true
		}
		if c.kicked.CompareAndSwap(k, k|kickYielded) {
			break
		}
	}
	c.b.wakeTakers(c.s)
	return true
}

// abandonTakeover is called when c, which asked the owner of a session to
// yield it, is done without taking it over (closed or refused): the owner
// goes on, unless other connections wait to take the session over.
// Loop-only (c's loop).
func (b *Broker) abandonTakeover(c *Client) {
	x := c.extra
	prev, s := x.yieldFrom, x.yieldSess
	x.yieldFrom, x.yieldSess = nil, nil
	r := &b.registry
	r.mu.Lock()
	defer r.mu.Unlock()
	if ts := r.takers[s]; len(ts) > 0 {
		kept := ts[:0]
		for _, t := range ts {
			if t != x.ticket {
				kept = append(kept, t)
			}
		}
		if len(kept) > 0 {
			r.takers[s] = kept
			return
		}
		delete(r.takers, s)
	}
	for {
		k := prev.kicked.Load()
		if k == 0 || k&^kickYieldBits != 0 {
			return // kicked for good meanwhile
		}
		if prev.kicked.CompareAndSwap(k, 0) {
			prev.t.Wake()
			return
		}
	}
}

// kickNoWill is set in kicked beside the reason when the client is to be
// disconnected without its will (mosquitto's kick by an auth plugin).
const kickNoWill = 1 << 8

// kickWithoutWill is kick, and the will is dropped. Any goroutine.
func (c *Client) kickWithoutWill(reason byte) {
	for {
		k := c.kicked.Load()
		if k&^kickYieldBits != 0 {
			return
		}
		if c.kicked.CompareAndSwap(k, k|(uint32(reason)+1|kickNoWill)) {
			c.t.Wake()
			return
		}
	}
}

// LiftReceiveMaximum exempts an in-process bridge from the Receive Maximum
// on inbound QoS 2 ids awaiting PUBREL [MQTT-3.3.4-9]: it relays a remote's
// QoS 2 flows under the remote's packet ids and releases each only when the
// remote does, so how many are open is the remote's window. Before the
// CONNECT; transport goroutine.
func (c *Client) LiftReceiveMaximum() { c.more().relay = true }

// Internal marks an in-process client that is part of the broker (a
// bridge's local side): its CONNECT is not authenticated, as mosquitto
// never checks its bridges' local credentials. With acl false, ACLs do not
// apply to it either (mosquitto exempts bridges from them); with acl true
// they apply under the username its CONNECT gives (a bridge's
// local_username). Before the CONNECT; transport goroutine.
func (c *Client) Internal(acl bool) {
	c.more().internal = true
	if !acl && c.pol.Auth != nil {
		pol := *c.pol
		pol.Auth = nil
		c.pol = &pol
	}
}

// AwaitingRelease lists the inbound QoS 2 packet ids of the client's session
// that wait for PUBREL (a resumed session's, from the store after a
// restart). Transport goroutine, after the CONNECT.
func (c *Client) AwaitingRelease() []uint16 {
	s := c.s
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fl == nil {
		return nil
	}
	return append([]uint16(nil), s.fl.awaitingRel...)
}

// Kick disconnects the client from any goroutine with a v5 reason code (for
// example ServerShuttingDown).
func (c *Client) Kick(reason byte) { c.kick(reason) }

// KickAll kicks every connected client (Kick), from any goroutine: the
// registry knows them all, so a transport need not keep a list of its own
// (two pointers in every connection).
func (b *Broker) KickAll(reason byte) {
	b.registry.mu.Lock()
	defer b.registry.mu.Unlock()
	b.registry.m.each(func(s *Session) {
		s.mu.Lock()
		if c := s.owner; c != nil {
			c.kick(reason)
		}
		s.mu.Unlock()
	})
}

// Drain moves queued messages into out, within the inflight window and
// until out holds budget bytes (budget <= 0: only a pending kick is handled),
// and handles a pending kick. Call it at the end of every loop turn that
// touched the connection and whenever the transport is woken. more reports
// that messages are left which the window would allow. A non-nil error
// means: write out, then close.
func (c *Client) Drain(out *Output, budget int) (more bool, err error) {
	if k := c.kicked.Load(); k != 0 {
		if r := k &^ (kickNoWill | kickYieldBits); r != 0 {
			c.sendDisconnect(out, byte(r-1), "")
			return false, &Disconnect{Reason: byte(r - 1), Msg: "disconnected by the broker"}
		}
		return false, ErrYielded // asked to yield (Yield), or has
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
	// Runs first of the deferred calls, under s.mu: held PUBLISHes go
	// out once their packet ids are durable.
	defer c.sendHeldLocked(out, pb, now)
	held := len(s.flows().inflight) > 0 && s.flows().inflight[len(s.flows().inflight)-1].unsent
	window := c.window()
	for int(s.head) < len(s.queue) {
		e := &s.queue[s.head]
		if e.m.expired(now) {
			if e.qos > 0 {
				// mosquitto numbers a message when it queues it, so an
				// expired one has used its packet id: do the same, so
				// that the ids a client sees match mosquitto's.
				s.allocID()
			}
			s.unstoreLocked(pb, e, false)
			s.pop().m.Release()
			continue
		}
		if e.ask {
			switch s.readAccess(e.m, c.t.Wake) {
			case Allowed:
				e.ask = false
			case Wait:
				return false, nil // woken when the answer is in; what follows waits, in order
			default:
				if e.qos > 0 {
					s.allocID() // its packet id, as for an expired one
				}
				s.unstoreLocked(pb, e, false)
				s.pop().m.Release()
				continue
			}
		}
		if e.qos > 0 && len(s.flows().inflight) >= window {
			return false, nil
		}
		if e.qos > 0 && c.b.opts.MaxInflightBytes > 0 && len(s.flows().inflight) > 0 &&
			s.inflightBytes()+len(e.m.Payload) > c.b.opts.MaxInflightBytes {
			return false, nil // max_inflight_bytes: one message may always be in flight
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
		f := inflight{id: id, e: next}
		// A persistent session's QoS 2 PUBLISH waits until its packet id is
		// durable: after a crash it must be resent with that id, which the
		// receiver knows [MQTT-4.3.3-10], never under a new one. What
		// follows it waits too, in order.
		if held || (next.qos == 2 && next.seq != 0) {
			if !c.preparePublish(out, &next, id, false, now) {
				s.unstoreLocked(pb, &next, false)
				next.m.Release()
				continue
			}
			f.unsent, f.durable, held = true, heldForStore, true
			if next.qos == 2 {
				s.storeQueuedLocked(pb, &next, id, false)
			}
		} else if !c.writePublish(out, &next, id, false, now) {
			s.unstoreLocked(pb, &next, false)
			next.m.Release()
			continue
		}
		fl := s.newFlows()
		fl.inflight = append(fl.inflight, f)
	}
	return false, nil
}

// sendHeldLocked submits pb when PUBLISHes were held back for it (their
// packet ids are in it), then writes, in order, every held PUBLISH whose
// batch is durable, and asks to be woken for the rest. Assumes s.mu is held.
func (c *Client) sendHeldLocked(out *Output, pb *store.Batch, now int64) {
	s := c.s
	first := len(s.flows().inflight)
	for first > 0 && s.flows().inflight[first-1].unsent {
		first--
	}
	if first == len(s.flows().inflight) || c.b.persist.db == nil {
		return
	}
	var seq uint64
	if s.flows().inflight[len(s.flows().inflight)-1].durable == heldForStore {
		seq = c.b.submit(pb)
	}
	durable := c.b.persist.db.Durable()
	for i := first; i < len(s.flows().inflight); i++ {
		if f := &s.flows().inflight[i]; f.durable == heldForStore {
			f.durable = seq
		}
	}
	for i := first; i < len(s.flows().inflight); {
		f := &s.flows().inflight[i]
		if f.durable > durable {
			c.waitDurable(f.durable)
			return
		}
		if !c.writePublish(out, &f.e, f.id, false, now) {
			s.removeInflight(i, pb)
			continue
		}
		f.unsent, f.durable = false, 0
		i++
	}
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
	for i := range c.s.flows().inflight {
		f := &c.s.flows().inflight[i]
		if f.unsent {
			return // never sent: sendHeldLocked sends them once durable
		}
		if f.pubrel { // once "PUBREC received" is durable (handlePubrec)
			c.ack(out, codec.PUBREL, f.id, codec.Success, "", f.durable)
			continue
		}
		c.writePublish(out, &f.e, f.id, true, now)
	}
}

// writePublish encodes one outgoing PUBLISH. It returns false when the
// packet is larger than the client accepts, in which case it is dropped
// [MQTT-3.1.2-25].
func (c *Client) writePublish(out *Output, e *entry, id uint16, dup bool, now int64) bool {
	if !c.preparePublish(out, e, id, dup, now) {
		return false
	}
	m := e.m
	out.appendPublish(&out.pkt, c.version, m)
	c.b.Stats.PublishSent.Add(1)
	c.b.Stats.PublishBytesSent.Add(int64(len(m.Payload)))
	c.b.Stats.MessagesSent.Add(1)
	return true
}

// preparePublish sets out.pkt to the PUBLISH of e, and reports false (the
// message is dropped, and counted) when the client does not accept a
// packet that large.
func (c *Client) preparePublish(out *Output, e *entry, id uint16, dup bool, now int64) bool {
	m := e.m
	p := &out.pkt
	p.Type, p.Flags = codec.PUBLISH, 0
	p.Dup, p.QoS, p.Retain = dup, e.qos, e.retain
	p.Topic, p.PacketID, p.Payload = m.Topic, id, m.Payload
	if mp := c.pol.MountPoint; mp != "" {
		// Only mounted filters match, so the prefix is there; mosquitto
		// drops what is not under it, and so does this.
		if len(m.Topic) <= len(mp) || string(m.Topic[:len(mp)]) != mp {
			c.b.Stats.PublishDropped.Add(1)
			return false
		}
		p.Topic = m.Topic[len(mp):]
	}
	if c.version == codec.Version5 {
		// The packet's slices keep their own arrays: the message's are
		// shared and read-only, and the packet is reused for decoding.
		ids, user, order := p.Props.SubscriptionIDs, p.Props.User, p.Props.Order
		p.Props = m.Props
		p.Props.SubscriptionIDs = append(ids[:0], e.ids...)
		p.Props.User = append(user[:0], m.Props.User...)
		p.Props.Order = append(order[:0], m.Props.Order...)
		if m.ExpiresAt != 0 {
			p.Props.MessageExpiry = m.remainingExpiry(now)
			p.Props.Set(codec.PropMessageExpiry)
		}
		var newAlias uint16
		var aliasHash uint64
		topic := p.Topic
		if x := c.extra; x != nil && x.outAliases != nil {
			alias, h := x.outAliases.find(topic)
			if alias == 0 {
				alias = x.outAliases.pick(h)
				newAlias, aliasHash = alias, h
			} else {
				p.Topic = topic[:0] // known: the alias alone [MQTT-3.3.2-12]
			}
			if alias != 0 {
				p.Props.TopicAlias = alias
				p.Props.Set(codec.PropTopicAlias)
			}
		}
		if c.clientMaxPkt > 0 && uint32(p.EncodedSize(c.version)) > c.clientMaxPkt {
			c.b.Stats.PublishDropped.Add(1)
			return false
		}
		if newAlias != 0 {
			c.extra.outAliases.set(newAlias, topic, aliasHash)
		}
	} else {
		p.Props.Present = 0
		p.Props.SubscriptionIDs, p.Props.User = p.Props.SubscriptionIDs[:0], p.Props.User[:0]
	}
	return true
}
