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
			c.sendDisconnect(out, codec.TopicAliasInvalid)
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
	if p.Retain && !b.opts.RetainAvailable { // [MQTT-3.3.1-?]
		c.sendDisconnect(out, codec.RetainNotSupported)
		return &Disconnect{Reason: codec.RetainNotSupported, Msg: "retain not available"}
	}

	reason := codec.Success
	switch {
	case b.opts.MessageSizeLimit > 0 && len(p.Payload) > b.opts.MessageSizeLimit:
		// Dropped and acknowledged, as mosquitto does, but with 0x97 (an
		// administrative limit): 0x95, which mosquitto sends, is not a PUBACK
		// or PUBREC reason code [MQTT-3.4.2-1] [MQTT-3.5.2-1].
		reason = codec.QuotaExceeded
	case c.pol.Auth != nil && !c.pol.Auth.Allow(&c.rd.info, string(topic), AccessWrite):
		reason = codec.NotAuthorized
	}

	pb := b.batch(out)
	var routed uint64 // what route submitted itself (see deliverAll)
	switch p.QoS {
	case 0:
		if reason == codec.Success {
			_, slow, _ := b.route(c, topic, p, &out.match, out.clock(), pb)
			c.slow = c.slow || slow
			b.submit(pb)
		}
	case 1:
		if reason == codec.Success {
			n, slow, seq := b.route(c, topic, p, &out.match, out.clock(), pb)
			c.slow = c.slow || slow
			if n == 0 {
				reason = codec.NoMatchingSubscribers
			}
			routed = seq
		}
		// Acknowledged once what the message changed in the store is durable.
		c.ack(out, codec.PUBACK, p.PacketID, reason, max(routed, b.submit(pb)))
	case 2:
		s := c.s
		s.mu.Lock()
		dup := s.hasAwaitingRel(p.PacketID)
		// Only v5 announces a Receive Maximum; a v3 client has no such limit,
		// and its packet ids bound the set anyway.
		full := c.version == codec.Version5 && !dup && len(s.awaitingRel) >= b.opts.MaxInflight
		if !dup && !full && reason == codec.Success {
			s.awaitingRel = append(s.awaitingRel, p.PacketID)
			if pb != nil && s.expiry > 0 { // exactly once across a restart
				pb.PutAwaitingRel(s.id, p.PacketID)
			}
		}
		s.mu.Unlock()
		if full { // [MQTT-3.3.4-9]: more QoS 2 in flight than our Receive Maximum
			c.sendDisconnect(out, codec.ReceiveMaximumExceeded)
			return &Disconnect{Reason: codec.ReceiveMaximumExceeded, Msg: "receive maximum exceeded"}
		}
		// Exactly once: route only the first time this packet id is seen; a
		// resent PUBLISH before PUBREL only gets its PUBREC again [MQTT-4.3.3-?].
		if !dup && reason == codec.Success {
			n, slow, seq := b.route(c, topic, p, &out.match, out.clock(), pb)
			c.slow = c.slow || slow
			if n == 0 {
				reason = codec.NoMatchingSubscribers
			}
			routed = seq
		}
		c.ack(out, codec.PUBREC, p.PacketID, reason, max(routed, b.submit(pb)))
	}
	return nil
}

// sendAck queues a PUBACK/PUBREC/PUBREL/PUBCOMP; v3 carries no reason.
func (c *Client) sendAck(out *Output, t codec.PacketType, id uint16, reason byte) {
	if c.version != codec.Version5 {
		reason = 0
	}
	c.sendSimple(out, t, id, reason)
}

// handlePuback completes an outgoing QoS 1 message.
func (c *Client) handlePuback(p *codec.Packet, out *Output) {
	s := c.s
	pb := c.b.batch(out)
	s.mu.Lock()
	if s.owner == c {
		if i := s.findInflight(p.PacketID); i >= 0 && s.inflight[i].e.qos == 1 {
			s.removeInflight(i, pb)
		}
	}
	s.mu.Unlock()
	c.b.submit(pb)
}

// handlePubrec moves an outgoing QoS 2 message to the PUBREL step.
func (c *Client) handlePubrec(p *codec.Packet, out *Output) {
	s := c.s
	s.mu.Lock()
	i := -1
	if s.owner == c {
		i = s.findInflight(p.PacketID)
	}
	switch {
	case i < 0 || s.inflight[i].e.qos != 2:
		s.mu.Unlock()
		// Not ours (or a v5 error we can't act on): answer so the client
		// can move on [MQTT-4.3.3-?].
		c.sendAck(out, codec.PUBREL, p.PacketID, codec.PacketIdentifierNotFound)
		return
	case c.version == codec.Version5 && p.ReasonCode >= 0x80:
		pb := c.b.batch(out)
		s.removeInflight(i, pb) // the receiver refused it: the flow ends here [MQTT-4.3.3-?]
		s.mu.Unlock()
		c.b.submit(pb)
		return
	}
	f := &s.inflight[i]
	f.pubrel = true
	pb := c.b.batch(out)
	s.storeQueuedLocked(pb, &f.e, f.id, true)
	s.mu.Unlock()
	c.b.submit(pb)
	c.sendAck(out, codec.PUBREL, p.PacketID, codec.Success)
}

// handlePubrel ends an inbound QoS 2 flow.
func (c *Client) handlePubrel(p *codec.Packet, out *Output) {
	s := c.s
	pb := c.b.batch(out)
	s.mu.Lock()
	found := s.removeAwaitingRel(p.PacketID)
	if found && pb != nil && s.stored {
		pb.DeleteAwaitingRel(s.id, p.PacketID)
	}
	s.mu.Unlock()
	c.b.submit(pb)
	reason := codec.Success
	if !found {
		reason = codec.PacketIdentifierNotFound
	}
	c.sendAck(out, codec.PUBCOMP, p.PacketID, reason)
}

// handlePubcomp completes an outgoing QoS 2 message.
func (c *Client) handlePubcomp(p *codec.Packet, out *Output) {
	s := c.s
	pb := c.b.batch(out)
	s.mu.Lock()
	if s.owner == c {
		if i := s.findInflight(p.PacketID); i >= 0 && s.inflight[i].pubrel {
			s.removeInflight(i, pb)
		}
	}
	s.mu.Unlock()
	c.b.submit(pb)
}

// route publishes a PUBLISH that aliases an inbound buffer: the retained
// store is updated, and a message copied once (shared by the retained store
// and every queue) goes to every matching subscriber. It returns the number
// of subscribers the message went to, and whether one of them asks for the
// publisher to be slowed.
func (b *Broker) route(pub *Client, topic []byte, p *codec.Packet, r *trie.Result, now int64, pb *store.Batch) (n int, slow bool, seq uint64) {
	var m *Message
	if p.Retain {
		if len(p.Payload) == 0 {
			b.clearRetained(topic, pb)
		} else {
			m = newMessage(topic, p, now)
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
		n, slow, seq = b.deliverAll(m, r, pb, pub, now)
	}
	if m != nil {
		m.Release()
	}
	return n, slow, seq
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
	n, _, _ := b.deliverAll(m, r, pb, nil, now)
	return n
}

// deliverAll queues m for every delivery of r, with the QoS downgraded to the
// subscription's [MQTT-3.8.4-8] and the RETAIN flag cleared unless the
// subscription asked for retain-as-published [MQTT-3.3.1-12/13].
//
// When deliveries stored records, pb is submitted before their subscribers
// are woken (a subscriber's acknowledgement deletes the record: the put must
// come first), and seq is that submission's number, which the publisher's
// acknowledgement waits for.
func (b *Broker) deliverAll(m *Message, r *trie.Result, pb *store.Batch, pub *Client, now int64) (n int, slow bool, seq uint64) {
	var later [4]*Client
	wakes := later[:0]
	for _, set := range [2][]trie.Delivery{r.Subs, r.Shared} {
		for i := range set {
			d := &set[i]
			s, ok := d.Sub.(*Session)
			if !ok {
				continue
			}
			if !s.mayRead(m) {
				continue
			}
			qos := m.QoS
			if d.QoS < qos {
				qos = d.QoS
			}
			queued, full, w := s.deliver(m, qos, m.Retain && d.RetainAsPublished, d.IDs, pb, false, pub, now)
			if queued {
				n++
			}
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
	return n, slow, seq
}

// clearRetained removes the retained message of topic: a retained PUBLISH
// with an empty payload [MQTT-3.3.1-6/7].
func (b *Broker) clearRetained(topic []byte, pb *store.Batch) {
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
	if pb != nil && !bytes.HasPrefix(m.Topic, []byte("$SYS/")) { // $SYS is made anew at start
		sm := toStore(m)
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
