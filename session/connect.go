package session

import (
	"encoding/hex"
	"strconv"
	"sync"
	"time"

	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/store"
)

// registry maps client ids to sessions. A cluster would put another node's
// ownership behind the same operations (open, end).
type registry struct {
	mu sync.Mutex
	m  map[string]*Session
}

func (r *registry) init() { r.m = make(map[string]*Session) }

// Sessions is the number of sessions held, connected or not.
func (b *Broker) Sessions() int {
	b.registry.mu.Lock()
	defer b.registry.mu.Unlock()
	return len(b.registry.m)
}

// handleConnect accepts or refuses a CONNECT [MQTT-3.1].
func (c *Client) handleConnect(p *codec.Packet, out *Output) error {
	b := c.b
	cp := &p.Connect
	c.version = cp.ProtocolLevel
	v5 := c.version == codec.Version5

	refuse := func(v3code, v5code byte, msg string) error {
		if v5 {
			c.sendConnack(out, c.version, false, v5code, nil)
			return &Disconnect{Reason: v5code, Msg: msg}
		}
		c.sendConnack(out, c.version, false, v3code, nil)
		return &Disconnect{Reason: v5code, Msg: msg}
	}

	if v5 && p.Props.Has(codec.PropAuthMethod) {
		return refuse(codec.ConnRefusedNotAuthorized, codec.BadAuthenticationMethod, "authentication method not supported")
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
			return refuse(codec.ConnRefusedIdentifierRejected, codec.ClientIdentifierNotValid, "empty client id not allowed")
		}
		id = b.assignID(c.pol.AutoIDPrefix)
		assigned = true // [MQTT-3.1.3-6], v5: returned in CONNACK [MQTT-3.2.2-16]
	}
	if c.pol.IdentityAsUsername {
		if c.extra == nil || c.extra.identity == "" {
			b.logf("Client %s from %s: no certificate identity to use as username.", id, c.t.RemoteAddr())
			return refuse(codec.ConnRefusedBadCredentials, codec.BadUsernameOrPassword, "no certificate identity")
		}
		cp.Username, cp.UsernameFlag = []byte(c.extra.identity), true
		cp.Password, cp.PasswordFlag = nil, false
	}
	c.rd = &reader{pol: c.pol, info: ClientInfo{ClientID: id, Username: string(cp.Username), HasUsername: cp.UsernameFlag}}

	// Under IdentityAsUsername the certificate has authenticated the client.
	if a := c.pol.Auth; a != nil && !c.pol.IdentityAsUsername {
		switch a.Authenticate(id, cp.Username, cp.Password, cp.UsernameFlag, cp.PasswordFlag) {
		case codec.Success:
		case codec.NotAuthorized:
			b.logf("Client %s from %s: not authorised.", id, c.t.RemoteAddr())
			return refuse(codec.ConnRefusedNotAuthorized, codec.NotAuthorized, "not authorised")
		default:
			b.logf("Client %s from %s: bad username or password.", id, c.t.RemoteAddr())
			return refuse(codec.ConnRefusedBadCredentials, codec.BadUsernameOrPassword, "bad username or password")
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
	} else if !cp.CleanStart {
		c.expiry = neverExpires
		if d := b.opts.PersistentExpiry; d > 0 {
			c.expiry = uint32(d / time.Second)
		}
	}

	if cp.WillFlag {
		if a := c.pol.Auth; a != nil && !a.Allow(&c.rd.info, string(cp.WillTopic), AccessWrite) {
			return refuse(codec.ConnRefusedNotAuthorized, codec.NotAuthorized, "will topic not authorised")
		}
		if cp.WillRetain && !b.opts.RetainAvailable {
			return refuse(codec.ConnRefusedNotAuthorized, codec.RetainNotSupported, "retained will not available")
		}
		c.will = newWill(cp, &out.pkt)
	}

	s, present := b.openSession(c, id, cp.CleanStart, b.batch(out))
	b.submit(b.batch(out))
	c.s, c.connected = s, true
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
		if !b.opts.RetainAvailable {
			props.RetainAvailable = 0
			props.Set(codec.PropRetainAvailable)
		}
	}
	c.sendConnack(out, c.version, present, codec.Success, props)

	b.Stats.Connects.Add(1)
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

func (c *Client) sendConnack(out *Output, version byte, present bool, code byte, props *codec.Properties) {
	p := &out.pkt
	p.Reset()
	p.Type, p.SessionPresent, p.ReasonCode = codec.CONNACK, present, code
	if props != nil {
		p.Props = *props
	}
	out.appendPacket(p, version)
	c.b.Stats.MessagesSent.Add(1)
}

// openSession finds or makes the session for id and makes c its owner,
// taking it over from a connected client [MQTT-3.1.4-2/3]. It reports whether
// an existing session was resumed (the CONNACK's session present flag).
func (b *Broker) openSession(c *Client, id string, cleanStart bool, pb *store.Batch) (*Session, bool) {
	r := &b.registry
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.m[id]
	if s != nil {
		s.mu.Lock()
		if prev := s.owner; prev != nil {
			prev.kick(codec.SessionTakenOver)
			s.owner = nil
		}
		if cleanStart || s.ended {
			b.endSessionLocked(s, pb)
			s.mu.Unlock()
			s = nil
		}
	}
	present := s != nil
	if s == nil {
		s = newSession(b, id)
		s.mu.Lock()
		r.m[id] = s
		b.Stats.ClientsTotal.Add(1)
	}
	s.owner, s.woken = c, false
	if c.pol.Auth != nil { // only ACL checks need to know who reads
		s.reader.Store(c.rd)
	} else {
		s.reader.Store(nil)
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
		pb.DeleteSession(s.id)
		s.stored = false
	}
	s.ended = true
	s.online.Store(false)
	wakeAll(s.takeWaitersLocked(true))
	b.subs.RemoveAll(s)
	s.clear()
	if b.registry.m[s.id] == s {
		delete(b.registry.m, s.id)
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
		return
	}
	c.connected = false
	b := c.b
	b.Stats.ClientsConnected.Add(-1)
	s := c.s
	kicked := c.kicked.Load() != 0
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
			if w := c.will; w == nil || c.disconnected || kicked || w.delay == 0 {
				s.dropWillRecLocked()
			}
			if pb != nil {
				s.pers().offSince = time.Now().UnixNano()
				b.storeSessionLocked(s, pb, s.p.offSince)
			}
		}
		if s.expiry != 0 && s.expiry != neverExpires {
			b.timers.add(timer{at: time.Now().Add(time.Duration(s.expiry) * time.Second).UnixNano(),
				kind: timerExpiry, s: s, gen: s.timerGen})
		}
	}
	gen := s.timerGen
	s.mu.Unlock()
	b.registry.mu.Unlock()

	if w := c.will; w != nil {
		c.will = nil
		switch {
		case c.disconnected: // [MQTT-3.1.2-10]: a normal DISCONNECT drops the will
			w.m.Release()
		case w.delay > 0 && (kicked || !owner):
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
	var buf [8]byte
	n := b.idSeq.Add(1)
	t := uint64(time.Now().UnixNano())
	for i := range buf {
		buf[i] = byte((t ^ n<<17) >> (8 * i))
	}
	return prefix + hex.EncodeToString(buf[:]) + "-" + strconv.FormatUint(n, 36)
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
