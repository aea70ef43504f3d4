package session

import (
	"time"

	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/store"
	"github.com/midge-mqtt/midge/trie"
)

// handleSubscribe adds subscriptions, answers SUBACK, then queues the
// matching retained messages [MQTT-3.8.4].
func (c *Client) handleSubscribe(p *codec.Packet, out *Output) error {
	b := c.b
	v5 := c.version == codec.Version5
	var ids []uint32
	if v5 && len(p.Props.SubscriptionIDs) > 0 {
		ids = []uint32{p.Props.SubscriptionIDs[0]} // kept by the trie and queued messages
	}
	codes := p.ReasonCodes[:0]
	type retainedReq struct {
		filter string
		qos    byte
	}
	var wantRetained []retainedReq
	for i := range p.Subscriptions {
		sub := &p.Subscriptions[i]
		filter := string(sub.Filter)
		_, inner, shared := trie.ParseShared(filter)
		if !shared {
			inner = filter
		}
		if shared && sub.NoLocal { // [MQTT-3.8.3-4]
			return c.protocolError(out, "no local on a shared subscription")
		}
		if err := trie.ValidFilter(filter); err != nil {
			codes = append(codes, failCode(v5, codec.TopicFilterInvalid))
			continue
		}
		if a := c.pol.Auth; a != nil && !a.Allow(&c.rd.info, filter, AccessSubscribe) {
			codes = append(codes, failCode(v5, codec.NotAuthorized))
			continue
		}
		opts := trie.Options{QoS: sub.QoS, NoLocal: sub.NoLocal, RetainAsPublished: sub.RetainAsPublished,
			RetainHandling: sub.RetainHandling}
		if ids != nil {
			opts.ID = ids[0]
		}
		existed, err := b.subs.Subscribe(c.s, filter, opts)
		if err != nil {
			codes = append(codes, failCode(v5, codec.TopicFilterInvalid))
			continue
		}
		c.s.remember(filter, &opts)
		codes = append(codes, sub.QoS) // granted as asked: midge supports QoS 2
		// Retained messages are sent on subscribe unless retain handling says
		// otherwise [MQTT-3.3.1-9/10/11]; never to shared subscriptions [MQTT-4.8.2-?].
		if !shared && (sub.RetainHandling == 0 || (sub.RetainHandling == 1 && !existed)) {
			wantRetained = append(wantRetained, retainedReq{filter: inner, qos: sub.QoS})
		}
	}
	p.ReasonCodes = codes

	r := &out.pkt
	r.Reset()
	r.Type, r.PacketID = codec.SUBACK, p.PacketID
	r.ReasonCodes = append(r.ReasonCodes, codes...)
	out.appendPacket(r, c.version)
	b.Stats.MessagesSent.Add(1)

	pb := b.batch(out)
	c.saveSession(pb)
	for _, w := range wantRetained {
		b.sendRetained(c, w.filter, w.qos, ids, pb)
	}
	b.submit(pb)
	return nil
}

// failCode is the SUBACK code for a refused filter: v5's reason, v3's 0x80.
func failCode(v5 bool, reason byte) byte {
	if v5 {
		return reason
	}
	return codec.SubackFailure
}

// sendRetained queues every retained message matching filter for c, with the
// RETAIN flag set [MQTT-3.3.1-8].
func (b *Broker) sendRetained(c *Client, filter string, qos byte, ids []uint32, pb *store.Batch) {
	now := time.Now().UnixNano()
	b.retained.Match(filter, func(topic string, m *Message) bool {
		if m.expired(now) {
			return true
		}
		if a := c.pol.Auth; a != nil && !a.Allow(&c.rd.info, topic, AccessRead) {
			return true
		}
		q := m.QoS
		if qos < q {
			q = qos
		}
		// Its own client drains after this turn, when pb has been submitted.
		if _, _, w := c.s.deliver(m, q, true, ids, pb, true, nil, now); w != nil {
			w.t.Wake()
		}
		return true
	})
}

// handleUnsubscribe removes subscriptions and answers UNSUBACK [MQTT-3.10.4].
func (c *Client) handleUnsubscribe(p *codec.Packet, out *Output) {
	b := c.b
	r := &out.pkt
	r.Reset()
	r.Type, r.PacketID = codec.UNSUBACK, p.PacketID
	for _, f := range p.Filters {
		code := codec.Success
		if !b.subs.Unsubscribe(c.s, string(f)) {
			code = codec.NoSubscriptionExisted
		}
		c.s.remember(string(f), nil)
		r.ReasonCodes = append(r.ReasonCodes, code)
	}
	out.appendPacket(r, c.version)
	b.Stats.MessagesSent.Add(1)
	pb := b.batch(out)
	c.saveSession(pb)
	b.submit(pb)
}

// saveSession writes the session's record, whose subscriptions changed, into
// pb (nil: the broker does not persist).
func (c *Client) saveSession(pb *store.Batch) {
	if pb == nil {
		return
	}
	c.s.mu.Lock()
	c.b.storeSessionLocked(c.s, pb, 0)
	c.s.mu.Unlock()
}
