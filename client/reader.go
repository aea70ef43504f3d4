package client

import (
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/midge-mqtt/midge/codec"
)

// reader frames and decodes packets from a connection into one reused
// Packet; slices in it are valid until the next call to next.
type reader struct {
	conn       net.Conn
	dec        codec.Decoder
	buf        []byte
	start, end int
	pkt        codec.Packet
}

func newReader(conn net.Conn, version byte, max int) *reader {
	return &reader{conn: conn, dec: codec.Decoder{Version: version, MaxPacketSize: max}, buf: make([]byte, 16<<10)}
}

// next returns the next packet, reading more bytes as needed.
func (r *reader) next() (*codec.Packet, error) {
	for {
		if r.end > r.start {
			n, err := r.dec.Decode(r.buf[r.start:r.end], &r.pkt)
			if err == nil {
				r.start += n
				return &r.pkt, nil
			}
			if !errors.Is(err, codec.ErrIncomplete) {
				return nil, err
			}
		}
		if r.start == r.end {
			r.start, r.end = 0, 0
		}
		if r.end == len(r.buf) {
			r.grow()
		}
		n, err := r.conn.Read(r.buf[r.end:])
		r.end += n
		if err != nil && n == 0 {
			return nil, err
		}
	}
}

// grow makes room for at least one more whole frame: it slides the pending
// bytes to the front, and enlarges the buffer when the frame needs it.
func (r *reader) grow() {
	need := len(r.buf)
	if size, err := codec.FrameSize(r.buf[r.start:r.end], r.dec.MaxPacketSize); err == nil && size > need {
		need = size
	} else if r.start == 0 {
		need = 2 * len(r.buf) // frame size unknown yet, or the buffer is simply full
	}
	if need > len(r.buf) {
		nb := make([]byte, need)
		r.end = copy(nb, r.buf[r.start:r.end])
		r.buf, r.start = nb, 0
		return
	}
	r.end = copy(r.buf, r.buf[r.start:r.end])
	r.start = 0
}

// readLoop handles inbound packets until the connection fails.
func (c *Client) readLoop(conn net.Conn, r *reader) {
	for {
		p, err := r.next()
		if err != nil {
			var cerr *codec.Error
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				err = ErrConnectionLost
			} else if errors.As(err, &cerr) {
				// A malformed packet from the server: the connection is
				// reset, as mosquitto's client does (what the server sent
				// after it is not read).
				if tc, ok := conn.(*net.TCPConn); ok {
					_ = tc.SetLinger(0)
				}
			}
			c.closeConn(conn, err)
			return
		}
		if c.opts.OnPacket != nil {
			c.opts.OnPacket(false, p)
		}
		if err := c.handle(p); err != nil {
			c.closeConn(conn, err)
			return
		}
	}
}

// handle acts on one inbound packet.
func (c *Client) handle(p *codec.Packet) error {
	switch p.Type {
	case codec.PUBLISH:
		return c.receive(p)
	case codec.PUBACK:
		c.acked(p.PacketID, codec.PUBACK, p.ReasonCode)
	case codec.PUBREC:
		if c.acked(p.PacketID, codec.PUBREC, p.ReasonCode) {
			return c.sendAck(codec.PUBREL, p.PacketID, 0) // [MQTT-4.3.3-4]
		}
		if p.ReasonCode < 0x80 {
			// Unknown id: answer so the server can finish its side. v5
			// allows 0x92 (packet identifier not found) here; mosquitto
			// sends success, and so does midge.
			return c.sendAck(codec.PUBREL, p.PacketID, 0)
		}
	case codec.PUBCOMP:
		c.acked(p.PacketID, codec.PUBCOMP, p.ReasonCode)
	case codec.PUBREL:
		// [MQTT-4.3.3-11] the id may be reused once PUBREL arrives.
		c.mu.Lock()
		_, known := c.recvQoS2[p.PacketID]
		delete(c.recvQoS2, p.PacketID)
		c.mu.Unlock()
		if c.opts.ManualAck && c.OnRelease != nil {
			c.OnRelease(p.PacketID) // its Complete sends the PUBCOMP
			return nil
		}
		reason := codec.Success
		if !known && c.opts.Version == codec.Version5 {
			reason = codec.PacketIdentifierNotFound
		}
		return c.sendAck(codec.PUBCOMP, p.PacketID, reason)
	case codec.SUBACK, codec.UNSUBACK:
		c.mu.Lock()
		ch := c.requests[p.PacketID]
		delete(c.requests, p.PacketID)
		c.mu.Unlock()
		if ch != nil {
			ack := copyPacket(p)
			ch <- &ack
		}
	case codec.PINGRESP:
		c.pingWait.Store(false)
	case codec.PINGREQ:
		// Only a client sends PINGREQ, but a broker that bridges to us
		// may probe its link so, and mosquitto's client library answers.
		return c.sendAck(codec.PINGRESP, 0, 0)
	case codec.DISCONNECT:
		return &DisconnectError{Code: p.ReasonCode, Reason: string(p.Props.ReasonString)}
	case codec.AUTH:
		return fmt.Errorf("%w: AUTH is not supported", ErrProtocol)
	default:
		return fmt.Errorf("%w: unexpected %s", ErrProtocol, p.Type)
	}
	return nil
}

// DisconnectError reports a DISCONNECT sent by a v5 server.
type DisconnectError struct {
	Code   byte
	Reason string
}

func (e *DisconnectError) Error() string {
	s := "client: disconnected by server: " + ReasonText(e.Code)
	if e.Reason != "" {
		s += " (" + e.Reason + ")"
	}
	return s
}

// receive delivers an inbound PUBLISH and acknowledges it.
func (c *Client) receive(p *codec.Packet) error {
	m := Message{Topic: p.Topic, Payload: p.Payload, QoS: p.QoS, Retain: p.Retain, Dup: p.Dup, PacketID: p.PacketID}
	if c.opts.Version == codec.Version5 {
		m.Props = &p.Props
		if p.Props.Has(codec.PropTopicAlias) {
			topic, err := c.resolveAlias(p.Props.TopicAlias, p.Topic)
			if err != nil {
				return err
			}
			m.Topic = topic
		}
	}
	deliver, manual := true, c.opts.ManualAck
	if p.QoS == 2 {
		// Exactly once: a QoS 2 id already seen and not yet released is a
		// resend, acknowledged again but not delivered twice [MQTT-4.3.3-10];
		// with ManualAck, only once the application has acknowledged it
		// (its Ack will send the PUBREC).
		c.mu.Lock()
		if recd, seen := c.recvQoS2[p.PacketID]; seen {
			deliver = false
			manual = manual && !recd
		} else {
			c.recvQoS2[p.PacketID] = !manual
		}
		c.mu.Unlock()
	}
	if deliver && c.OnMessage != nil {
		c.OnMessage(&m)
	}
	if manual {
		return nil
	}
	switch p.QoS {
	case 1:
		return c.sendAck(codec.PUBACK, p.PacketID, 0) // [MQTT-4.3.2-2]
	case 2:
		return c.sendAck(codec.PUBREC, p.PacketID, 0) // [MQTT-4.3.3-9]
	}
	return nil
}

// Ack acknowledges a QoS 1/2 message received with ManualAck: PUBACK, or
// PUBREC for QoS 2 [MQTT-4.3.2-2], [MQTT-4.3.3-9]. Any goroutine; an error
// means the connection is gone (the server sends the message again).
func (c *Client) Ack(qos byte, id uint16) error {
	switch qos {
	case 1:
		return c.sendAck(codec.PUBACK, id, 0)
	case 2:
		c.mu.Lock()
		if _, ok := c.recvQoS2[id]; ok {
			c.recvQoS2[id] = true
		}
		c.mu.Unlock()
		return c.sendAck(codec.PUBREC, id, 0)
	}
	return nil
}

// Complete sends the PUBCOMP of a QoS 2 message whose PUBREL went to
// OnRelease [MQTT-4.3.3-11]. Any goroutine.
func (c *Client) Complete(id uint16) error { return c.sendAck(codec.PUBCOMP, id, 0) }

// resolveAlias maps a server topic alias to its topic [MQTT-3.3.2-12].
func (c *Client) resolveAlias(alias uint16, topic []byte) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if alias == 0 || (c.opts.Props.Has(codec.PropTopicAliasMaximum) && alias > c.opts.Props.TopicAliasMaximum) {
		return nil, fmt.Errorf("%w: topic alias %d out of range", ErrProtocol, alias)
	}
	if len(topic) > 0 {
		if c.aliases == nil {
			c.aliases = make(map[uint16][]byte)
		}
		c.aliases[alias] = append(c.aliases[alias][:0], topic...)
		return topic, nil
	}
	t, ok := c.aliases[alias]
	if !ok {
		return nil, fmt.Errorf("%w: unknown topic alias %d", ErrProtocol, alias)
	}
	return t, nil
}
