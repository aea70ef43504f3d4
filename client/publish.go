package client

import (
	"context"
	"errors"

	"github.com/midge-mqtt/midge/codec"
)

// outbound is one QoS 1/2 message awaiting acknowledgement. It owns copies
// of the topic, payload and properties so it can be resent.
type outbound struct {
	pkt      codec.Packet
	released bool // QoS 2: PUBREC received, PUBREL sent, awaiting PUBCOMP
	done     func(error)
}

func (o *outbound) finish(err error) {
	if o.done != nil {
		o.done(err)
	}
}

// AckError reports a v5 PUBACK/PUBREC/PUBCOMP with a failure reason code.
type AckError struct {
	Packet codec.PacketType
	Code   byte
}

func (e *AckError) Error() string {
	return "client: " + e.Packet.String() + " refused: " + ReasonText(e.Code)
}

// Publish sends m. For QoS 0 it returns once the frame is written and does
// not allocate; for QoS 1/2 it waits for a free inflight slot and then for
// PUBACK or PUBCOMP. If the connection drops first it returns
// ErrConnectionLost and the message stays in the session, to be resent by
// the next Connect.
func (c *Client) Publish(ctx context.Context, m *Message) error {
	if m.QoS == 0 {
		return c.publish0(m)
	}
	res := make(chan error, 1)
	if err := c.PublishAsync(ctx, m, func(err error) { res <- err }); err != nil {
		return err
	}
	c.mu.Lock()
	done := c.done
	c.mu.Unlock()
	select {
	case err := <-res:
		return err
	case <-done:
		select {
		case err := <-res:
			return err
		default:
			return ErrConnectionLost
		}
	case <-ctx.Done():
		return ctx.Err()
	}
}

// publish0 writes a QoS 0 PUBLISH from the client's reused buffer.
func (c *Client) publish0(m *Message) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	p := &c.wpkt
	p.Reset()
	p.Type, p.Topic, p.Payload, p.Retain = codec.PUBLISH, m.Topic, m.Payload, m.Retain
	if m.Props != nil {
		p.Props = *m.Props
	}
	err := c.write(p)
	p.Topic, p.Payload, p.Props = nil, nil, codec.Properties{}
	return err
}

// PublishAsync sends m and returns once it is written; done (which may be
// nil) is called later from the reader goroutine with nil on PUBACK/PUBCOMP,
// an *AckError on a v5 refusal, or ErrSessionCleared. m is copied, so the
// caller may reuse it at once. For QoS 1/2 it first waits for an inflight
// slot, which ctx bounds.
func (c *Client) PublishAsync(ctx context.Context, m *Message, done func(error)) error {
	if m.QoS == 0 {
		err := c.publish0(m)
		if done != nil && err == nil {
			done(nil)
		}
		return err
	}
	if m.QoS > 2 {
		return errors.New("client: QoS must be 0, 1 or 2")
	}
	o := &outbound{done: done}
	o.pkt.Type, o.pkt.QoS, o.pkt.Retain = codec.PUBLISH, m.QoS, m.Retain
	o.pkt.Topic = append([]byte(nil), m.Topic...)
	o.pkt.Payload = append([]byte(nil), m.Payload...)
	if m.Props != nil {
		o.pkt.Props = copyProps(m.Props)
	}
	if err := c.acquire(ctx, o); err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	current := c.inflight[o.pkt.PacketID] == o
	c.mu.Unlock()
	if !current { // dropped by a clean reconnect while we waited for wmu
		return ErrSessionCleared
	}
	err := c.write(&o.pkt)
	if err != nil {
		// It stays inflight: the next Connect resends it [MQTT-4.4.0-1].
		return ErrConnectionLost
	}
	return nil
}

// acquire waits for room in the inflight window, then registers o under a
// fresh packet identifier.
func (c *Client) acquire(ctx context.Context, o *outbound) error {
	for {
		c.mu.Lock()
		if !c.connected {
			c.mu.Unlock()
			return ErrNotConnected
		}
		if len(c.inflight) < c.window {
			o.pkt.PacketID = c.allocID()
			c.inflight[o.pkt.PacketID] = o
			c.order = append(c.order, o.pkt.PacketID)
			more := len(c.inflight) < c.window
			c.mu.Unlock()
			if more {
				c.signalSlot() // pass the wake-up on to another waiter
			}
			return nil
		}
		done := c.done
		c.mu.Unlock()
		// What gathered under Cork must leave, or no ack frees a slot.
		c.wmu.Lock()
		if c.corked {
			_ = c.flushLocked()
		}
		c.wmu.Unlock()
		select {
		case <-c.slotFree:
		case <-done:
			return ErrNotConnected // not taken: nothing to resend
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (c *Client) signalSlot() {
	select {
	case c.slotFree <- struct{}{}:
	default:
	}
}

// acked advances the outbound message id on a PUBACK, PUBREC or PUBCOMP and
// reports whether the id was one the client is waiting on at that stage.
func (c *Client) acked(id uint16, t codec.PacketType, reason byte) bool {
	c.mu.Lock()
	o := c.inflight[id]
	ok := o != nil && ((t == codec.PUBACK && o.pkt.QoS == 1) ||
		(t == codec.PUBREC && o.pkt.QoS == 2 && !o.released) ||
		(t == codec.PUBCOMP && o.pkt.QoS == 2 && o.released))
	if !ok {
		c.mu.Unlock()
		return false
	}
	var err error
	if t == codec.PUBREC && reason < 0x80 {
		o.released = true // the payload is no longer needed [MQTT-4.3.3-4]
		o.pkt.Payload = nil
		c.mu.Unlock()
		return true
	}
	if reason >= 0x80 {
		err = &AckError{Packet: t, Code: reason}
	}
	delete(c.inflight, id)
	for i, v := range c.order {
		if v == id {
			c.order = append(c.order[:i], c.order[i+1:]...)
			break
		}
	}
	c.mu.Unlock()
	c.signalSlot()
	o.finish(err)
	return t == codec.PUBREC && err == nil
}

// Inflight is the number of QoS 1/2 messages awaiting acknowledgement.
func (c *Client) Inflight() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.inflight)
}
