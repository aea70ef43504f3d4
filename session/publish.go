package session

import (
	"bytes"

	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/store"
	"github.com/midge-mqtt/midge/trie"
)

// handlePublish routes an inbound PUBLISH and acknowledges it [MQTT-3.3].
func (c *Client) handlePublish(p *codec.Packet, out *Output) error {
	b := c.b
	b.Stats.PublishReceived.Add(1)
	b.Stats.PublishBytesRecv.Add(int64(len(p.Payload)))
	topic := p.Topic
	if c.version == codec.Version5 && p.Props.Has(codec.PropTopicAlias) {
		a := p.Props.TopicAlias
		if a == 0 || a > c.pol.MaxTopicAlias { // [MQTT-3.3.2-8/9]
			c.sendDisconnect(out, codec.TopicAliasInvalid, "topic alias out of range")
			return &Disconnect{Reason: codec.TopicAliasInvalid, Msg: "topic alias out of range"}
		}
		x := c.more()
		if x.aliases == nil {
			x.aliases = make([][]byte, int(c.pol.MaxTopicAlias)+1)
		}
		if len(topic) > 0 {
			x.aliases[a] = append(x.aliases[a][:0], topic...)
		} else if topic = x.aliases[a]; len(topic) == 0 { // [MQTT-3.3.4-?]: unknown alias
			return c.protocolError(out, "unknown topic alias")
		}
	}
	if c.pol.QoSLimited && p.QoS > c.pol.MaxQoS { // max_qos: as mosquitto, the client is disconnected
		c.sendDisconnect(out, codec.QoSNotSupported, "QoS above max_qos")
		return &Disconnect{Reason: codec.QoSNotSupported, Msg: "PUBLISH QoS over max_qos"}
	}
	if b.opts.MemoryLimit && b.overMemory.Load() {
		b.Stats.PublishDropped.Add(1)
		c.sendDisconnect(out, codec.QuotaExceeded, "memory_limit reached")
		return &Disconnect{Reason: codec.QuotaExceeded, Msg: "memory_limit reached, message dropped"}
	}
	if mp := c.pol.MountPoint; mp != "" {
		x := c.more()
		x.mounted = append(append(x.mounted[:0], mp...), topic...)
		topic = x.mounted
	}
	if p.Retain && !b.opts.RetainAvailable { // [MQTT-3.3.1-?]
		c.sendDisconnect(out, codec.RetainNotSupported, "retain not available")
		return &Disconnect{Reason: codec.RetainNotSupported, Msg: "retain not available"}
	}

	reason, why := codec.Success, ""
	// A message that went round a loop of bridges is acknowledged and dropped.
	looped := c.version == codec.Version5 && len(p.Props.User) > 0 && b.cameBack(p)
	if looped {
		b.Stats.LoopsDropped.Add(1)
	}
	switch {
	case b.opts.MessageSizeLimit > 0 && len(p.Payload) > b.opts.MessageSizeLimit:
		// Dropped and acknowledged, as mosquitto does, but with 0x97 (an
		// administrative limit): 0x95, which mosquitto sends, is not a PUBACK
		// or PUBREC reason code [MQTT-3.4.2-1] [MQTT-3.5.2-1].
		reason, why = codec.QuotaExceeded, "payload over message_size_limit"
	case c.pol.Auth != nil:
		switch c.ask(topic, AccessWrite) {
		case Allowed:
		case Wait: // handled again, from the start, once the answer is in
			b.Stats.PublishReceived.Add(-1)
			b.Stats.PublishBytesRecv.Add(-int64(len(p.Payload)))
			return ErrParked
		default:
			reason, why = codec.NotAuthorized, "not authorised to publish to this topic"
		}
	}
	if reason == codec.Success && isControl(topic) {
		// $CONTROL/ topics go to the broker's plugins and are never routed
		// (mosquitto: handle_publish); their ack says success.
		if h := c.pol.Control; h != nil {
			h.Control(&c.rd.info, string(topic), p.Payload)
		}
		if p.QoS > 0 {
			t := codec.PUBACK
			if p.QoS == 2 {
				t = codec.PUBREC
				s := c.s
				s.mu.Lock()
				if !s.hasAwaitingRel(p.PacketID) {
					fl := s.newFlows()
					fl.awaitingRel = append(fl.awaitingRel, p.PacketID)
				}
				s.mu.Unlock()
			}
			c.ack(out, t, p.PacketID, codec.Success, "", 0) // in order behind acks held for the store [MQTT-4.6.0-2]
		}
		return nil
	}

	pb := b.batch(out)
	var routed uint64 // what route submitted itself (see deliverAll)
	var quorum uint64 // the cluster's replicated writes to wait for
	switch p.QoS {
	case 0:
		if reason == codec.Success && !looped {
			_, slow, _, _ := b.route(c, topic, p, &out.match, out.clock(), pb, out)
			c.slow = c.slow || slow
			b.submit(pb)
		}
	case 1:
		// PUBACKs held for the store count against our Receive Maximum
		// too: a client sending more QoS 1 than it allows is disconnected
		// [MQTT-3.3.4-9]. (Without persistence none is ever held.)
		if c.extra != nil && len(c.extra.acks) >= b.opts.MaxInflight && c.version == codec.Version5 && c.heldPubacks() >= b.opts.MaxInflight {
			c.sendDisconnect(out, codec.ReceiveMaximumExceeded, "more QoS 1 messages unacknowledged than Receive Maximum")
			return &Disconnect{Reason: codec.ReceiveMaximumExceeded, Msg: "receive maximum exceeded"}
		}
		if reason == codec.Success && !looped {
			n, slow, seq, q := b.route(c, topic, p, &out.match, out.clock(), pb, out)
			c.slow = c.slow || slow
			// 0x10 only when no subscription matches at all, as mosquitto
			// does: one skipped for No Local still counts.
			if n == 0 && !b.anySubscription(topic, &out.match) {
				reason = codec.NoMatchingSubscribers
			}
			routed, quorum = seq, q
		}
		// Acknowledged once what the message changed in the store is
		// durable, and in a cluster (persistence_sync always) once its copies
		// for offline sessions are stored on a quorum.
		c.ackAfter(out, codec.PUBACK, p.PacketID, reason, why, max(routed, b.submit(pb)), quorum)
	case 2:
		s := c.s
		s.mu.Lock()
		dup := s.hasAwaitingRel(p.PacketID)
		persistent := pb != nil && s.expiry > 0
		// Only v5 announces a Receive Maximum; a v3 client has no such limit,
		// and its packet ids bound the set anyway.
		full := c.version == codec.Version5 && !dup && len(s.flows().awaitingRel) >= b.opts.MaxInflight &&
			(c.extra == nil || !c.extra.relay)
		if !dup && !full && reason == codec.Success {
			fl := s.newFlows()
			fl.awaitingRel = append(fl.awaitingRel, p.PacketID)
			if persistent { // exactly once across a restart
				pb.PutAwaitingRel(s.ID(), p.PacketID)
			}
		}
		s.mu.Unlock()
		if full { // [MQTT-3.3.4-9]: more QoS 2 in flight than our Receive Maximum
			c.sendDisconnect(out, codec.ReceiveMaximumExceeded, "more QoS 2 messages unacknowledged than Receive Maximum")
			return &Disconnect{Reason: codec.ReceiveMaximumExceeded, Msg: "receive maximum exceeded"}
		}
		// A message is resent only on a new connection [MQTT-4.4.0-1]: one
		// copy again on this one is let pass, a third is a protocol error,
		// as mosquitto has it.
		if dup && c.repeatedQoS2(p.PacketID) {
			return c.protocolError(out, "QoS 2 message sent a third time before its PUBREL")
		}
		// Exactly once: route only the first time this packet id is seen; a
		// resent PUBLISH before PUBREL only gets its PUBREC again [MQTT-4.3.3-10].
		// That PUBREC, too, waits until what the first one stored (the
		// message, the awaited PUBREL) is durable: the first may have come on a
		// connection that died before its PUBREC left. (Should that first
		// PUBLISH still be under way on the old connection's loop, its batch
		// may come later than this number: a takeover racing a crash.)
		if dup && persistent {
			routed = b.persist.db.Submitted()
			quorum = b.persist.quorumQueued.Load() // and the cluster's copies of it
		}
		// PUBREC is a success with or without subscribers, as mosquitto
		// sends it (0x10 is optional [MQTT-3.5.2-1]).
		if !dup && reason == codec.Success && !looped {
			_, slow, seq, q := b.route(c, topic, p, &out.match, out.clock(), pb, out)
			c.slow = c.slow || slow
			routed, quorum = max(routed, seq), max(quorum, q)
		}
		c.ackAfter(out, codec.PUBREC, p.PacketID, reason, why, max(routed, b.submit(pb)), quorum)
	}
	return nil
}

// sendAck queues a PUBACK/PUBREC/PUBREL/PUBCOMP; v3 carries no reason.
func (c *Client) sendAck(out *Output, t codec.PacketType, id uint16, reason byte) {
	c.sendAckWhy(out, t, id, reason, "")
}

// sendAckWhy is sendAck with a reason string for a client that asked.
func (c *Client) sendAckWhy(out *Output, t codec.PacketType, id uint16, reason byte, why string) {
	if c.version != codec.Version5 {
		reason = 0
	}
	c.sendReasoned(out, t, id, reason, why)
}

// wrongAck is the error for an acknowledgement of the wrong kind for the
// message in flight with its packet id (a PUBREC for QoS 1, a PUBACK for
// QoS 2, a PUBCOMP before the PUBREC): the flows of [MQTT-4.3] broken, the
// connection is closed, as mosquitto does. An id not in flight is ignored.
func (c *Client) wrongAck(out *Output, t codec.PacketType) error {
	return c.protocolError(out, t.String()+" of the wrong kind for its packet id")
}

// handlePuback completes an outgoing QoS 1 message.
func (c *Client) handlePuback(p *codec.Packet, out *Output) error {
	s := c.s
	pb := c.b.batch(out)
	s.mu.Lock()
	wrong := false
	if s.owner == c {
		if i := s.findInflight(p.PacketID); i >= 0 && s.flows().inflight[i].e.qos == 1 && !s.flows().inflight[i].unsent {
			s.removeInflight(i, pb)
		} else if i >= 0 && !s.flows().inflight[i].unsent {
			wrong = true
		}
	}
	s.mu.Unlock()
	c.b.submit(pb)
	if wrong {
		return c.wrongAck(out, codec.PUBACK)
	}
	return nil
}

// handlePubrec moves an outgoing QoS 2 message to the PUBREL step.
func (c *Client) handlePubrec(p *codec.Packet, out *Output) error {
	s := c.s
	s.mu.Lock()
	i := -1
	if s.owner == c {
		i = s.findInflight(p.PacketID)
	}
	switch {
	case i >= 0 && !s.flows().inflight[i].unsent && s.flows().inflight[i].e.qos != 2:
		s.mu.Unlock()
		return c.wrongAck(out, codec.PUBREC)
	case i < 0 || s.flows().inflight[i].unsent:
		s.mu.Unlock()
		// Not ours (or a v5 error we can't act on): answer so the client
		// can move on [MQTT-4.3.3-?].
		c.sendAck(out, codec.PUBREL, p.PacketID, codec.PacketIdentifierNotFound)
		return nil
	case c.version == codec.Version5 && p.ReasonCode >= 0x80:
		pb := c.b.batch(out)
		s.removeInflight(i, pb) // the receiver refused it: the flow ends here [MQTT-4.3.3-?]
		s.mu.Unlock()
		c.b.submit(pb)
		return nil
	}
	// PUBREL leaves once "PUBREC received" is durable: after a crash the
	// broker must resend PUBREL, not the PUBLISH, which a receiver that
	// already answered PUBCOMP would take as new [MQTT-4.3.3-6] [MQTT-4.3.3-12].
	// The batch is submitted under s.mu so that a new connection's resend
	// (resendInflight) sees its number.
	f := &s.flows().inflight[i]
	if !f.pubrel {
		f.pubrel = true
		pb := c.b.batch(out)
		s.storeQueuedLocked(pb, &f.e, f.id, true)
		f.durable = c.b.submit(pb)
	}
	seq := f.durable
	s.mu.Unlock()
	c.ack(out, codec.PUBREL, p.PacketID, codec.Success, "", seq)
	return nil
}

// handlePubrel ends an inbound QoS 2 flow.
func (c *Client) handlePubrel(p *codec.Packet, out *Output) {
	s := c.s
	pb := c.b.batch(out)
	s.mu.Lock()
	found := s.removeAwaitingRel(p.PacketID)
	if found && pb != nil && s.stored {
		pb.DeleteAwaitingRel(s.ID(), p.PacketID)
	}
	s.mu.Unlock()
	if c.extra != nil && len(c.extra.repeated) > 0 {
		c.extra.repeated = dropID(c.extra.repeated, p.PacketID)
	}
	// PUBCOMP leaves once the id's release is durable: after a crash that
	// kept it, the publisher's next message with this id (free once it has
	// PUBCOMP [MQTT-4.3.3-12]) would be taken for a resend and dropped.
	// An unknown id gets a plain PUBCOMP too, as mosquitto sends: a PUBREL
	// repeated after a reconnect is normal recovery (0x92 is optional).
	c.ack(out, codec.PUBCOMP, p.PacketID, codec.Success, "", c.b.submit(pb))
}

// handlePubcomp completes an outgoing QoS 2 message.
func (c *Client) handlePubcomp(p *codec.Packet, out *Output) error {
	s := c.s
	pb := c.b.batch(out)
	s.mu.Lock()
	wrong := false
	if s.owner == c {
		if i := s.findInflight(p.PacketID); i >= 0 && s.flows().inflight[i].pubrel {
			s.removeInflight(i, pb)
		} else if i >= 0 && !s.flows().inflight[i].unsent {
			wrong = true
		}
	}
	s.mu.Unlock()
	c.b.submit(pb)
	if wrong {
		return c.wrongAck(out, codec.PUBCOMP)
	}
	return nil
}

// route publishes a PUBLISH that aliases an inbound buffer: the retained
// store is updated, and a message copied once (shared by the retained store
// and every queue) goes to every matching subscriber. It returns the number
// of subscribers the message went to, and whether one of them asks for the
// publisher to be slowed; seq and quorum are what its acknowledgement
// waits for (deliverAll).
func (b *Broker) route(pub *Client, topic []byte, p *codec.Packet, r *trie.Result, now int64, pb *store.Batch, out *Output) (n int, slow bool, seq, quorum uint64) {
	var m *Message
	if p.Retain {
		if len(p.Payload) == 0 {
			b.clearRetained(topic, pb)
		} else {
			m = newMessage(topic, p, now)
			if b.opts.CheckRetainSource && pub != nil && pub.pol.Auth != nil {
				m.from = pub.rd
			}
			b.storeRetained(m, pb)
		}
	}
	var from trie.Subscriber
	if pub != nil {
		from = pub.s
	}
	b.subs.Match(topic, from, r)
	if len(r.Subs)+len(r.Shared) > 0 {
		if m == nil {
			m = newMessage(topic, p, now)
		}
		n, slow, seq, quorum = b.deliverAll(m, r, pb, pub, now, out, true)
	}
	if m != nil {
		m.Release()
	}
	return n, slow, seq, quorum
}

// anySubscription reports whether topic matches any subscription, counting
// those route skipped for No Local. Only called when route delivered
// nothing, so a publish with subscribers never pays for it.
func (b *Broker) anySubscription(topic []byte, r *trie.Result) bool {
	b.subs.Match(topic, nil, r)
	return len(r.Subs)+len(r.Shared) > 0
}

// routeMessage is route for a message already copied (wills).
func (b *Broker) routeMessage(from *Session, m *Message, now int64, r *trie.Result, pb *store.Batch) int {
	if m.Retain {
		b.storeRetained(m, pb)
	}
	var fromSub trie.Subscriber
	if from != nil {
		fromSub = from
	}
	b.subs.Match(m.Topic, fromSub, r)
	n, _, _, _ := b.deliverAll(m, r, pb, nil, now, nil, true)
	return n
}

// deliverAll queues m for every delivery of r, with the QoS downgraded to the
// subscription's [MQTT-3.8.4-8] and the RETAIN flag cleared unless the
// subscription asked for retain-as-published [MQTT-3.3.1-12/13].
//
// When deliveries stored records, pb is submitted before their subscribers
// are woken (a subscriber's acknowledgement deletes the record: the put must
// come first), and seq is that submission's number, which the publisher's
// acknowledgement waits for. quorum is the highest number of the cluster's
// replicated writes of m for offline sessions (0: none), which it waits for
// too (Client.ackAfter).
//
// A delivery to a cluster's Remote forwards m to that node (batched in out's
// turn) unless m came from another node (fwd false); the publisher's
// acknowledgement does not wait for the other node.
func (b *Broker) deliverAll(m *Message, r *trie.Result, pb *store.Batch, pub *Client, now int64, out *Output, fwd bool) (n int, slow bool, seq, quorum uint64) {
	if fwd && b.cluster != nil && m.fwdID == 0 {
		m.fwdID = nextForwardID(out) // before any delivery: the local copy is known by it too (dedup.go)
	}
	var later [4]*Client
	wakes := later[:0]
	for k, set := range [2][]trie.Delivery{r.Subs, r.Shared} {
		for i := range set {
			d := &set[i]
			s, ok := d.Sub.(*Session)
			if !ok {
				if rem, ok := d.Sub.(Remote); ok && fwd && b.cluster != nil {
					var token uint32
					if k == 1 && len(d.IDs) > 0 {
						token = d.IDs[0] // a Remote's shared membership carries its token as id
					}
					// A publisher's ack waits for the node's confirmation
					// when the cluster asks for one (persistence_sync always).
					confirm := pub != nil && m.QoS > 0 && b.persist.db != nil
					quorum = max(quorum, b.forward(rem, m, token, out, now, confirm))
					n++
					if h := rem.Hold(); pub != nil && h != nil && h.holdPublisher(pub, now) {
						slow = true
					}
				}
				continue
			}
			ask := false
			switch s.readAccess(m, nil) {
			case Allowed:
			case Wait:
				ask = true // a delivery never waits: asked again when it is sent
			default:
				continue
			}
			qos := m.QoS
			if d.QoS < qos || b.opts.UpgradeOutgoingQoS {
				qos = d.QoS
			}
			queued, full, w, q := s.deliver(m, qos, m.Retain && d.RetainAsPublished, ask, k == 1, d.IDs, pb, false, pub, now)
			if queued {
				n++
			}
			quorum = max(quorum, q)
			slow = slow || full
			if w != nil {
				wakes = append(wakes, w)
			}
		}
	}
	if len(wakes) > 0 {
		seq = b.submit(pb)
		for _, w := range wakes {
			w.t.Wake()
		}
	}
	return n, slow, seq, quorum
}

// clearRetained removes the retained message of topic: a retained PUBLISH
// with an empty payload [MQTT-3.3.1-6/7].
func (b *Broker) clearRetained(topic []byte, pb *store.Batch) {
	b.tellCluster(topic, nil)
	b.clearRetainedLocal(topic, pb)
}

func (b *Broker) clearRetainedLocal(topic []byte, pb *store.Batch) {
	b.retainMu.Lock()
	old, ok := b.retained.Delete(string(topic))
	b.retainMu.Unlock()
	if ok && pb != nil {
		pb.DeleteRetained(topic)
	}
	if ok {
		old.Release()
		b.Stats.RetainedMessages.Add(-1)
	}
}

// storeRetained keeps a reference to m as the retained message of its topic,
// or clears the topic when m's payload is empty [MQTT-3.3.1-5].
func (b *Broker) storeRetained(m *Message, pb *store.Batch) {
	if len(m.Payload) == 0 {
		b.clearRetained(m.Topic, pb)
		return
	}
	b.tellCluster(m.Topic, m)
	b.storeRetainedLocal(m, pb)
}

func (b *Broker) storeRetainedLocal(m *Message, pb *store.Batch) {
	if pb != nil && !bytes.HasPrefix(m.Topic, []byte("$SYS/")) { // $SYS is made anew at start
		sm := retainedToStore(m)
		pb.PutRetained(&sm)
	}
	m.retain()
	b.retainMu.Lock()
	old, had := b.retained.Get(string(m.Topic))
	b.retained.Set(string(m.Topic), m)
	b.retainMu.Unlock()
	if had {
		old.Release()
	} else {
		b.Stats.RetainedMessages.Add(1)
	}
}

// repeatedQoS2 reports whether the QoS 2 packet id, awaiting its PUBREL,
// was already sent again on this connection, and notes that it now is.
func (c *Client) repeatedQoS2(id uint16) bool {
	x := c.more()
	for _, r := range x.repeated {
		if r == id {
			return true
		}
	}
	x.repeated = append(x.repeated, id)
	return false
}

func dropID(ids []uint16, id uint16) []uint16 {
	for i, r := range ids {
		if r == id {
			return append(ids[:i], ids[i+1:]...)
		}
	}
	return ids
}
