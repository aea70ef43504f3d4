package session

import (
	"strings"
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
	// Every filter is asked about before anything changes, so that a
	// SUBSCRIBE parked for an answer is handled again from the start. The
	// question is about the filter under the listener's mount_point.
	var refused []bool // index: filter; nil when all are allowed
	if c.pol.Auth != nil {
		for i := range p.Subscriptions {
			f := p.Subscriptions[i].Filter
			if mp := c.pol.MountPoint; mp != "" {
				group, inner, shared := trie.ParseShared(string(f))
				if !shared {
					inner = string(f)
				}
				f = []byte(mountFilter(group, mp+inner, shared))
			}
			switch c.ask(f, AccessSubscribe) {
			case Allowed:
			case Wait:
				return ErrParked
			default:
				if refused == nil {
					refused = make([]bool, len(p.Subscriptions))
				}
				refused[i] = true
			}
		}
	}
	if b.cluster != nil && !c.routesKnown(p, refused) {
		return ErrParked // handled again once the other nodes route the filters here
	}
	var why []string // what was refused, for a reason string
	for i := range p.Subscriptions {
		sub := &p.Subscriptions[i]
		filter := string(sub.Filter)
		group, inner, shared := trie.ParseShared(filter)
		if !shared {
			inner = filter
		}
		if mp := c.pol.MountPoint; mp != "" {
			inner = mp + inner
			filter = mountFilter(group, inner, shared)
		}
		if shared && sub.NoLocal { // [MQTT-3.8.3-4]
			return c.protocolError(out, "no local on a shared subscription")
		}
		if err := trie.ValidFilter(filter); err != nil {
			codes = append(codes, failCode(v5, codec.TopicFilterInvalid))
			why = append(why, string(sub.Filter)+": invalid filter")
			continue
		}
		if refused != nil && refused[i] {
			codes = append(codes, failCode(v5, codec.NotAuthorized))
			why = append(why, string(sub.Filter)+": not authorised")
			continue
		}
		if c.pol.QoSLimited && sub.QoS > c.pol.MaxQoS {
			sub.QoS = c.pol.MaxQoS // granted at max_qos, as mosquitto does
		}
		opts := trie.Options{QoS: sub.QoS, NoLocal: sub.NoLocal, RetainAsPublished: sub.RetainAsPublished,
			RetainHandling: sub.RetainHandling}
		if c.bridge && !shared { // a bridge gets back neither its own messages nor a cleared retain flag
			opts.NoLocal, opts.RetainAsPublished = true, true
		}
		if ids != nil {
			opts.ID = ids[0]
		}
		existed, err := b.subs.Subscribe(c.s, filter, opts)
		if err != nil {
			codes = append(codes, failCode(v5, codec.TopicFilterInvalid))
			continue
		}
		c.s.remember(filter, &opts)
		if b.sessions != nil {
			c.snapshotOnline() // handover.go
		}
		if l := b.opts.SubscribeLog; l != nil {
			l.Printf("%s %d %s", c.rd.info.ClientID, sub.QoS, filter)
		}
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
	if len(why) > 0 {
		c.reasonString(r, strings.Join(why, "; "))
	}
	out.appendPacket(r, c.version)
	b.Stats.MessagesSent.Add(1)

	pb := b.batch(out)
	c.saveSession(pb)
	for _, w := range wantRetained {
		b.sendRetained(c, w.filter, w.qos, ids, pb, nil)
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

// SendRetained queues for the client, once each, the retained messages
// matching any of filters, at the QoS of the first filter that matches: a
// bridge resends its out topics' retained messages on each connection this
// way, once per message however many of its topic lines overlap. Loop-only.
func (c *Client) SendRetained(filters []string, qos []byte) {
	if !c.connected {
		return
	}
	seen := map[string]bool{}
	pb := c.b.newBatch()
	for i, f := range filters {
		c.b.sendRetained(c, f, qos[i], nil, pb, seen)
	}
	c.b.submit(pb)
}

// sendRetained queues every retained message matching filter for c, with the
// RETAIN flag set [MQTT-3.3.1-8], skipping (and then adding) the topics in
// seen when it is not nil.
func (b *Broker) sendRetained(c *Client, filter string, qos byte, ids []uint32, pb *store.Batch, seen map[string]bool) {
	now := time.Now().UnixNano()
	b.retained.Match(filter, func(topic string, m *Message) bool {
		if m.expired(now) || seen[topic] {
			return true
		}
		if seen != nil {
			seen[topic] = true
		}
		ask := false
		switch c.s.readAccess(m, nil) {
		case Allowed:
		case Wait:
			ask = true // asked again when it is sent
		default:
			return true
		}
		// check_retain_source: its publisher must still be allowed to publish it.
		if f := m.from; f != nil && b.opts.CheckRetainSource && !f.pol.Auth.Allow(&f.info, topic, AccessWrite) {
			return true
		}
		q := m.QoS
		if qos < q || b.opts.UpgradeOutgoingQoS {
			q = qos
		}
		// Its own client drains after this turn, when pb has been submitted.
		if _, _, w, _ := c.s.deliver(m, q, true, ask, false, ids, pb, true, nil, now); w != nil {
			w.t.Wake()
		}
		return true
	})
}

// handleUnsubscribe removes subscriptions and answers UNSUBACK [MQTT-3.10.4].
func (c *Client) handleUnsubscribe(p *codec.Packet, out *Output) error {
	b := c.b
	refused, err := c.askUnsubscribe(p.Filters)
	if err != nil {
		return err
	}
	r := &out.pkt
	r.Reset()
	r.Type, r.PacketID = codec.UNSUBACK, p.PacketID
	for i, f := range p.Filters {
		code := codec.Success
		if refused != nil && refused[i] {
			r.ReasonCodes = append(r.ReasonCodes, codec.NotAuthorized)
			continue
		}
		filter := string(f)
		if mp := c.pol.MountPoint; mp != "" {
			group, inner, shared := trie.ParseShared(filter)
			if !shared {
				inner = filter
			}
			filter = mountFilter(group, mp+inner, shared)
		}
		if !b.subs.Unsubscribe(c.s, filter) {
			code = codec.NoSubscriptionExisted
		}
		c.s.remember(filter, nil)
		if b.sessions != nil {
			c.snapshotOnline() // handover.go
		}
		if l := b.opts.UnsubscribeLog; l != nil {
			l.Printf("%s %s", c.rd.info.ClientID, filter)
		}
		r.ReasonCodes = append(r.ReasonCodes, code)
	}
	out.appendPacket(r, c.version)
	b.Stats.MessagesSent.Add(1)
	pb := b.batch(out)
	c.saveSession(pb)
	b.submit(pb)
	return nil
}

// askUnsubscribe asks an Asker (dynamic security checks unsubscribes) about
// each filter before anything changes, so that a parked UNSUBSCRIBE is
// handled again from the start. refused[i] is set for a refused filter (v3
// has no refusal: the filter is then left subscribed, as mosquitto does).
func (c *Client) askUnsubscribe(filters [][]byte) (refused []bool, err error) {
	k, ok := c.pol.Auth.(Asker)
	if !ok {
		return nil, nil
	}
	for i, f := range filters {
		switch k.Ask(c, &c.rd.info, string(f), AccessUnsubscribe) {
		case Allowed:
		case Wait:
			return nil, ErrParked
		default:
			if refused == nil {
				refused = make([]bool, len(filters))
			}
			refused[i] = true
		}
	}
	return refused, nil
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

// mountFilter is a filter under a mount point: inner (the filter without its
// $share/group/ prefix) is already mounted; a shared subscription keeps its
// prefix in front.
func mountFilter(group, inner string, shared bool) string {
	if shared {
		return "$share/" + group + "/" + inner
	}
	return inner
}
