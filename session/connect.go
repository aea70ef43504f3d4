package session

import (
	"crypto/rand"
	"encoding/hex"
	"strings"
	"sync"
	"time"

	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/store"
)

// registry maps client ids to sessions. A cluster would put another node's
// ownership behind the same operations (open, end).
type registry struct {
	mu sync.Mutex
	m  sessionTable
	// takers are the CONNECTs parked until the connected owner of a
	// session has yielded it or closed (awaitTakeover); nil when none.
	takers map[*Session][]*Ticket
}

// awaitTakeover parks c's CONNECT for client id when the session has a
// connected owner that has not yielded it yet: that owner is asked to
// handle what it has already read, then nothing more, and c is woken to
// take the session over. A takeover then never overtakes what the old
// connection sent before it [MQTT-4.6.0-6]: the two may be served by two
// event loops. Internal clients (a bridge's local side) take over at once,
// as before, and so do clients of transports that do not handle
// ErrYielded (Yielder), and every client of a cluster node (its handover
// claims the session first; not yet ordered this way). Loop-only (c's loop).
func (b *Broker) awaitTakeover(c *Client, id string) bool {
	if _, ok := c.t.(Yielder); !ok || (c.extra != nil && c.extra.internal) {
		return false
	}
	if b.sessions != nil {
		return false // a cluster's handover (handover.go) has claimed the session already
	}
	r := &b.registry
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.m.get(id)
	if s == nil {
		return false
	}
	s.mu.Lock()
	prev := s.owner
	s.mu.Unlock()
	if prev == nil || prev == c || prev.kicked.Load()&kickYielded != 0 {
		return false
	}
	if _, ok := prev.t.(Yielder); !ok || (prev.extra != nil && prev.extra.internal) {
		return false
	}
	t := c.Ticket()
	if !t.Begin("takeover") {
		return false
	}
	prev.askYield()
	c.extra.yieldFrom, c.extra.yieldSess = prev, s
	if r.takers == nil {
		r.takers = make(map[*Session][]*Ticket)
	}
	r.takers[s] = append(r.takers[s], t)
	return true
}

// Yielder is implemented by a Transport that handles ErrYielded from
// Client.Drain (it parks the client and calls Yield) and ErrParked from a
// CONNECT: its clients yield their session to a takeover, and wait for
// the one they take over to yield.
type Yielder interface {
	Transport
	YieldsOnTakeover()
}

// wakeTakers wakes the CONNECTs waiting for s's owner to yield or close.
// Any goroutine; takes registry.mu.
func (b *Broker) wakeTakers(s *Session) {
	r := &b.registry
	r.mu.Lock()
	ts := r.takers[s]
	if ts != nil {
		delete(r.takers, s)
	}
	r.mu.Unlock()
	for _, t := range ts {
		t.Answer(0)
	}
}

// Sessions is the number of sessions held, connected or not.
func (b *Broker) Sessions() int {
	b.registry.mu.Lock()
	defer b.registry.mu.Unlock()
	return b.registry.m.len()
}

// handleConnect accepts or refuses a CONNECT [MQTT-3.1].
func (c *Client) handleConnect(p *codec.Packet, out *Output) error {
	b := c.b
	cp := &p.Connect
	c.version = cp.ProtocolLevel
	c.bridge = cp.Bridge
	v5 := c.version == codec.Version5

	// Read before p.Props is reused for the CONNACK's properties.
	wantResponseInfo := v5 && p.Props.Has(codec.PropRequestResponseInfo) && p.Props.RequestResponseInfo == 1
	maxPkt := uint32(0)
	if v5 {
		maxPkt = p.Props.MaximumPacketSize
		if p.Props.Has(codec.PropRequestProblemInfo) && p.Props.RequestProblemInfo == 1 {
			c.more().problemInfo = true
		}
	}
	// whyProps holds msg as the CONNACK's reason string, for a client that
	// asked for them (see reasonString), or is nil.
	whyProps := func(msg string) *codec.Properties {
		if c.extra == nil || !c.extra.problemInfo || (maxPkt > 0 && len(msg)+16 > int(maxPkt)) {
			return nil
		}
		props := &p.Props
		props.Reset()
		props.ReasonString = []byte(msg) // not into the CONNECT's buffer
		props.Set(codec.PropReasonString)
		return props
	}
	refuse := func(v3code, v5code byte, msg string) error {
		if v5 {
			c.sendConnack(out, c.version, false, v5code, whyProps(msg))
			return &Disconnect{Reason: v5code, Msg: msg}
		}
		c.sendConnack(out, c.version, false, v3code, nil)
		return &Disconnect{Reason: v5code, Msg: msg}
	}

	if v5 && p.Props.Has(codec.PropAuthMethod) {
		return refuse(codec.ConnRefusedNotAuthorized, codec.BadAuthenticationMethod, "authentication method not supported")
	}

	// message_size_limit covers the will's payload too, checked as the
	// CONNECT is read (so before authentication), as mosquitto does.
	if lim := b.opts.MessageSizeLimit; cp.WillFlag && lim > 0 && len(cp.WillPayload) > lim {
		b.logf("Client %s from %s: will payload of %d bytes over message_size_limit.", cp.ClientID, c.t.RemoteAddr(), len(cp.WillPayload))
		return refuse(codec.ConnRefusedNotAuthorized, codec.PacketTooLarge, "will payload over message_size_limit")
	}

	id := string(cp.ClientID)
	assigned := false
	if id == "" {
		switch {
		case c.version == codec.Version31:
			return refuse(codec.ConnRefusedIdentifierRejected, codec.ClientIdentifierNotValid, "empty client id")
		case !v5 && !cp.CleanStart: // [MQTT-3.1.3-8]
			return refuse(codec.ConnRefusedIdentifierRejected, codec.ClientIdentifierNotValid, "empty client id with clean session 0")
		case !c.pol.AllowZeroLengthID:
			// mosquitto's v5 answer here is "unspecified error".
			return refuse(codec.ConnRefusedIdentifierRejected, codec.UnspecifiedError, "empty client id not allowed")
		}
		id = b.assignID(c.pol.AutoIDPrefix)
		assigned = true // [MQTT-3.1.3-6], v5: returned in CONNACK [MQTT-3.2.2-16]
	}
	if c.pol.UsernameAsClientID {
		if !cp.UsernameFlag && !c.pol.IdentityAsUsername {
			b.logf("Client %s from %s: no username to use as client id, not authorised.", id, c.t.RemoteAddr())
			return refuse(codec.ConnRefusedNotAuthorized, codec.NotAuthorized, "no username to use as client id")
		}
	}
	if pre := b.opts.ClientIDPrefixes; pre != "" && !strings.HasPrefix(id, pre) && !c.pol.UsernameAsClientID {
		b.logf("Client %s from %s: client id does not start with clientid_prefixes, not authorised.", id, c.t.RemoteAddr())
		return refuse(codec.ConnRefusedNotAuthorized, codec.NotAuthorized, "client id without clientid_prefixes")
	}
	if c.pol.IdentityAsUsername {
		if c.extra == nil || c.extra.identity == "" {
			b.logf("Client %s from %s: no certificate identity to use as username.", id, c.t.RemoteAddr())
			return refuse(codec.ConnRefusedBadCredentials, codec.BadUsernameOrPassword, "no certificate identity")
		}
		cp.Username, cp.UsernameFlag = []byte(c.extra.identity), true
		cp.Password, cp.PasswordFlag = nil, false
	}
	if c.pol.UsernameAsClientID { // after the identity, which may be the username
		if assigned && v5 {
			assigned = string(cp.Username) != id // the client must learn the id it got
		}
		id = string(cp.Username)
	}
	c.rd = &reader{pol: c.pol, info: ClientInfo{ClientID: id, Username: string(cp.Username), HasUsername: cp.UsernameFlag}}

	// Under IdentityAsUsername the certificate has authenticated the client;
	// an internal client is the broker's own.
	if c.pol.Auth != nil && !c.pol.IdentityAsUsername && (c.extra == nil || !c.extra.internal) {
		switch c.authenticate(id, cp) {
		case codec.Success:
		case AuthWait:
			return ErrParked
		case codec.ServerUnavailable: // an auth service did not answer
			b.logf("Client %s from %s: authentication unavailable.", id, c.t.RemoteAddr())
			return refuse(codec.ConnRefusedServerUnavailable, codec.ServerUnavailable, "authentication unavailable")
		case codec.NotAuthorized:
			b.logf("Client %s from %s: not authorised.", id, c.t.RemoteAddr())
			return refuse(codec.ConnRefusedNotAuthorized, codec.NotAuthorized, "not authorised")
		default:
			// mosquitto answers a wrong password with "not authorised"
			// (5, 0x87) in every version, and clients look for that code.
			b.logf("Client %s from %s: bad username or password.", id, c.t.RemoteAddr())
			return refuse(codec.ConnRefusedNotAuthorized, codec.NotAuthorized, "bad username or password")
		}
	}

	// Keepalive: v5 may be lowered with Server Keep Alive [MQTT-3.2.2-21];
	// v3 is refused above the limit, as mosquitto does.
	c.keepalive = cp.KeepAlive
	serverKeepalive := false
	if max := b.opts.MaxKeepalive; max > 0 && (c.keepalive == 0 || c.keepalive > max) {
		if !v5 {
			return refuse(codec.ConnRefusedIdentifierRejected, codec.UnspecifiedError, "keepalive over max_keepalive")
		}
		c.keepalive, serverKeepalive = max, true
	}

	c.expiry = 0
	if v5 {
		c.expiry = p.Props.SessionExpiry
		c.clientRecv = p.Props.ReceiveMaximum
		c.clientMaxPkt = p.Props.MaximumPacketSize
		if n := p.Props.TopicAliasMaximum; n > 0 && p.Props.Has(codec.PropTopicAliasMaximum) {
			c.more().outAliases = newOutAliases(n) // never when 0 or absent [MQTT-3.3.2-11]
		}
	} else if !cp.CleanStart {
		c.expiry = neverExpires
		if d := b.opts.PersistentExpiry; d > 0 {
			c.expiry = uint32(d / time.Second)
		}
	}

	if cp.WillFlag && c.pol.QoSLimited && cp.WillQoS > c.pol.MaxQoS { // [MQTT-3.2.2-12]
		if !v5 {
			return &Disconnect{Reason: codec.QoSNotSupported, Msg: "will QoS over max_qos"} // mosquitto: no CONNACK
		}
		props := whyProps("will QoS above max_qos")
		if props == nil {
			props = &p.Props
			props.Reset()
		}
		props.MaximumQoS = c.pol.MaxQoS
		props.Set(codec.PropMaximumQoS)
		c.sendConnack(out, c.version, false, codec.QoSNotSupported, props)
		return &Disconnect{Reason: codec.QoSNotSupported, Msg: "will QoS over max_qos"}
	}
	if cp.WillFlag && c.pol.MountPoint != "" {
		cp.WillTopic = append([]byte(c.pol.MountPoint), cp.WillTopic...)
	}
	// One session per client id cluster-wide (handover.go); an in-process
	// bridge's local session (relay) stays on its node, as its bridge does.
	if b.sessions != nil && (c.extra == nil || !c.extra.relay) {
		code, ok := c.claim(id, cp.CleanStart)
		if !ok {
			return ErrParked
		}
		if code != codec.Success {
			b.logf("Client %s from %s: the cluster could not take its session (reason %#x).", id, c.t.RemoteAddr(), code)
			return refuse(codec.ConnRefusedServerUnavailable, code, "cluster session registry unavailable")
		}
		defer func() { b.sessions.Opened(id, c.connected) }()
	}
	if cp.WillFlag {
		if c.pol.Auth != nil {
			switch c.ask(cp.WillTopic, AccessWrite) {
			case Allowed:
			case Wait:
				return ErrParked
			default:
				return refuse(codec.ConnRefusedNotAuthorized, codec.NotAuthorized, "will topic not authorised")
			}
		}
		if cp.WillRetain && !b.opts.RetainAvailable {
			return refuse(codec.ConnRefusedNotAuthorized, codec.RetainNotSupported, "retained will not available")
		}
	}
	if b.awaitTakeover(c, id) {
		return ErrParked
	}
	if cp.WillFlag {
		c.will = newWill(cp, &out.pkt)
	}

	if c.extra != nil && c.extra.yieldFrom != nil {
		c.extra.yieldFrom, c.extra.yieldSess = nil, nil // taken over now
	}
	s, present := b.openSession(c, id, cp.CleanStart, b.batch(out))
	b.submit(b.batch(out))
	c.s, c.connected = s, true
	if b.sessions != nil {
		c.snapshotOnline() // handover.go (a bridge's session: marked node-local)
	}
	c.resend = present

	var props *codec.Properties
	if v5 {
		props = &p.Props // reuse the decoded packet's Properties as scratch for the CONNACK's
		props.Reset()
		if assigned {
			props.AssignedClientID = []byte(id)
			props.Set(codec.PropAssignedClientID)
		}
		if serverKeepalive {
			props.ServerKeepAlive = c.keepalive
			props.Set(codec.PropServerKeepAlive)
		}
		if b.opts.MaxInflight < 65535 {
			props.ReceiveMaximum = uint16(b.opts.MaxInflight)
			props.Set(codec.PropReceiveMaximum)
		}
		if b.opts.MaxPacketSize > 0 {
			props.MaximumPacketSize = uint32(b.opts.MaxPacketSize)
			props.Set(codec.PropMaximumPacketSize)
		}
		if c.pol.MaxTopicAlias > 0 {
			props.TopicAliasMaximum = c.pol.MaxTopicAlias
			props.Set(codec.PropTopicAliasMaximum)
		}
		if c.pol.QoSLimited {
			props.MaximumQoS = c.pol.MaxQoS
			props.Set(codec.PropMaximumQoS)
		}
		// Response Information, for a client that asks [MQTT-3.1.2-28]
		// and when response_information_prefix is set: the prefix and the
		// client id, the root of topics for its responses [MQTT-4.10].
		if wantResponseInfo && b.opts.ResponseInfoPrefix != "" {
			props.ResponseInfo = []byte(b.opts.ResponseInfoPrefix + id)
			props.Set(codec.PropResponseInfo)
		}
		if !b.opts.RetainAvailable {
			props.RetainAvailable = 0
			props.Set(codec.PropRetainAvailable)
		}
	}
	if !c.sendConnack(out, c.version, present, codec.Success, props) {
		// Not even the CONNACK fits the client's Maximum Packet Size: close
		// without a word, as mosquitto does [MQTT-3.1.2-24]. The session
		// is open, so Closed runs and uncounts the client: count it.
		b.Stats.ClientsConnected.Add(1)
		return &Disconnect{Reason: codec.PacketTooLarge, Msg: "CONNACK over the client's maximum packet size"}
	}

	b.Stats.Connects.Add(1)
	c.s.connectedAt.Store(uint32(time.Now().Unix()))
	n := b.Stats.ClientsConnected.Add(1)
	for {
		max := b.Stats.ClientsMaximum.Load()
		if n <= max || b.Stats.ClientsMaximum.CompareAndSwap(max, n) {
			break
		}
	}
	if b.opts.ConnectionMessages {
		b.logf("New client connected from %s as %s (p%d, c%d, k%d%s).", c.t.RemoteAddr(), id,
			logProtocol(c.version), b2i(cp.CleanStart), c.keepalive, logUser(cp))
	}
	return nil
}

// sendConnack queues a CONNACK unless it is over the client's Maximum Packet
// Size, and reports whether it did.
func (c *Client) sendConnack(out *Output, version byte, present bool, code byte, props *codec.Properties) bool {
	p := &out.pkt
	p.Reset()
	// MQTT 3.1 has no session present flag: the byte is reserved (0).
	p.Type, p.SessionPresent, p.ReasonCode = codec.CONNACK, present && version != codec.Version31, code
	if props != nil {
		p.Props = *props
	}
	if c.tooLarge(p) {
		return false
	}
	out.appendPacket(p, version)
	c.b.Stats.MessagesSent.Add(1)
	return true
}

// openSession finds or makes the session for id and makes c its owner,
// taking it over from a connected client [MQTT-3.1.4-2/3]. It reports whether
// an existing session was resumed (the CONNACK's session present flag).
func (b *Broker) openSession(c *Client, id string, cleanStart bool, pb *store.Batch) (*Session, bool) {
	r := &b.registry
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.m.get(id)
	if s != nil {
		s.mu.Lock()
		// A session whose client is connected with expiry 0 (clean session)
		// ends with that connection, so taking it over starts a new one
		// (session present 0, as mosquitto sends).
		endsWithOwner := s.owner != nil && s.expiry == 0
		if prev := s.owner; prev != nil {
			prev.kick(codec.SessionTakenOver)
			s.owner = nil
		}
		if cleanStart || s.ended || endsWithOwner {
			// A new connection for the client id, even to a new session,
			// cancels a will still waiting for its delay [MQTT-3.1.2-8].
			s.replaced = true
			b.endSessionLocked(s, pb)
			s.mu.Unlock()
			s = nil
		}
	}
	present := s != nil
	if s == nil {
		s = newSession(b, c.rd)
		s.mu.Lock()
		r.m.put(s) // its client id is id (c.rd's)
		b.Stats.ClientsTotal.Add(1)
	}
	s.owner, s.woken = c, false
	s.reader.Store(c.rd) // also the session's client id (Session.ID)
	if c.pol.Auth != nil && present {
		s.recheckQueueLocked(pb)
	}
	s.expiry, s.version, s.lastDrain = c.expiry, c.version, time.Now().UnixNano()
	if s.p != nil {
		s.p.offSince = 0
	}
	b.rememberWillLocked(s, c)
	s.timerGen++ // cancels a pending expiry and delayed will [MQTT-3.1.3-9]
	s.online.Store(true)
	b.storeSessionLocked(s, pb, 0)
	s.mu.Unlock()
	return s, present
}

// endSessionLocked discards s: subscriptions, queue, inflight. Assumes
// registry.mu and s.mu are held.
func (b *Broker) endSessionLocked(s *Session, pb *store.Batch) {
	if s.ended {
		return
	}
	if s.stored && pb != nil {
		pb.DeleteSession(s.ID())
		s.stored = false
	}
	s.ended = true
	s.online.Store(false)
	if b.sessions != nil {
		b.sessions.Ended(s.ID())
	}
	wakeAll(s.takeWaitersLocked(true))
	b.subs.RemoveAll(s)
	s.clear()
	if b.registry.m.del(s) {
		b.Stats.ClientsTotal.Add(-1)
	}
}

// expireSession ends s if it is still disconnected and the expiry timer that
// fired (gen) was not cancelled by a reconnect.
func (b *Broker) expireSession(s *Session, gen uint32) {
	pb := b.newBatch()
	b.registry.mu.Lock()
	s.mu.Lock()
	if s.timerGen == gen && s.owner == nil && !s.ended {
		b.endSessionLocked(s, pb)
		b.Stats.ClientsExpired.Add(1)
	}
	s.mu.Unlock()
	b.registry.mu.Unlock()
	b.submit(pb)
}

// Closed is called by the transport once the connection is gone (loop-only).
// It publishes or schedules the will, and ends or keeps the session.
func (c *Client) Closed(reason error) {
	if !c.connected {
		if c.extra != nil && c.extra.yieldFrom != nil {
			c.b.abandonTakeover(c) // closed or refused while waiting to take over
		}
		return
	}
	c.connected = false
	b := c.b
	b.Stats.ClientsConnected.Add(-1)
	s := c.s
	pb := b.newBatch()
	defer b.submit(pb)

	b.registry.mu.Lock()
	s.mu.Lock()
	owner := s.owner == c
	if owner {
		wakeAll(s.takeWaitersLocked(true)) // nobody drains an offline queue
		s.owner, s.woken = nil, false
		s.online.Store(false)
		s.expiry = c.expiry
		s.timerGen++
		if s.expiry == 0 {
			b.endSessionLocked(s, pb) // [MQTT-3.1.2-?]: session ends with the connection
		} else {
			// The store keeps the will only while it waits for its delay.
			if w := c.will; w == nil || c.disconnected || w.delay == 0 {
				s.dropWillRecLocked()
			}
			if !b.opts.QueueQoS0 {
				s.dropQueuedQoS0Locked(pb)
			}
			if pb != nil {
				s.pers().offSince = time.Now().UnixNano()
				b.storeSessionLocked(s, pb, s.p.offSince)
			}
			if b.sessions != nil {
				b.snapshotOffline(s, c) // handover.go
			}
		}
		if s.expiry != 0 && s.expiry != neverExpires {
			b.timers.add(timer{at: time.Now().Add(time.Duration(s.expiry) * time.Second).UnixNano(),
				kind: timerExpiry, s: s, gen: s.timerGen})
		}
	}
	gen := s.timerGen
	// Taken over by a connection that resumes the session: the session
	// goes on, so its will is not sent (as mosquitto does).
	resumed := !owner && !s.ended
	s.mu.Unlock()
	takers := b.registry.takers != nil
	b.registry.mu.Unlock()
	if takers {
		b.wakeTakers(s) // it did not get to yield
	}

	if w := c.will; w != nil {
		c.will = nil
		switch {
		case c.disconnected: // [MQTT-3.1.2-10]: a normal DISCONNECT drops the will
			w.m.Release()
		case c.kicked.Load()&kickNoWill != 0: // an auth change (KickUsername), as mosquitto
			w.m.Release()
		case w.delay > 0 && !owner, resumed:
			// A new connection took the session over before the will delay
			// passed: the will is not sent [MQTT-3.1.3-9].
			w.m.Release()
		case w.delay > 0 && c.expiry > 0:
			d := w.delay
			if c.expiry < d {
				d = c.expiry // the will is sent when the session ends, if sooner
			}
			b.timers.add(timer{at: time.Now().Add(time.Duration(d) * time.Second).UnixNano(),
				kind: timerWill, s: s, gen: gen, will: w})
		default:
			b.publishWill(c, w)
		}
	}
	if b.opts.ConnectionMessages {
		switch {
		case c.disconnected:
			b.logf("Client %s disconnected.", c.rd.info.ClientID)
		case reason != nil:
			b.logf("Client %s closed its connection (%v).", c.rd.info.ClientID, reason)
		default:
			b.logf("Client %s closed its connection.", c.rd.info.ClientID)
		}
	}
}

func (b *Broker) assignID(prefix string) string {
	// A random (version 4) UUID, the form mosquitto assigns: clients and
	// tools that parse "auto-<uuid>" ids find it.
	var u [16]byte
	_, _ = rand.Read(u[:]) // never fails (crypto/rand)
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	var out [36]byte
	hex.Encode(out[0:8], u[0:4])
	hex.Encode(out[9:13], u[4:6])
	hex.Encode(out[14:18], u[6:8])
	hex.Encode(out[19:23], u[8:10])
	hex.Encode(out[24:], u[10:])
	out[8], out[13], out[18], out[23] = '-', '-', '-', '-'
	return prefix + string(out[:])
}

// logProtocol is mosquitto's protocol number in connection logs (p1, p2, p5).
func logProtocol(v byte) int {
	switch v {
	case codec.Version31:
		return 1
	case codec.Version311:
		return 2
	}
	return int(v)
}

func logUser(cp *codec.Connect) string {
	if !cp.UsernameFlag {
		return ""
	}
	return ", u'" + string(cp.Username) + "'"
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
