package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/midge-mqtt/midge/codec"
)

// Connect dials Options.Addr, sends CONNECT and waits for CONNACK; ctx bounds
// all of it. On success it starts the reader and keepalive goroutines and
// resends the session's unacknowledged messages. A refusal is a *ConnackError.
func (c *Client) Connect(ctx context.Context) error {
	c.mu.Lock()
	if c.connected {
		c.mu.Unlock()
		return errors.New("client: already connected")
	}
	prev := c.reading
	c.mu.Unlock()
	if prev != nil {
		// The last connection's reader may still be handling packets it
		// read before the connection closed (or be inside OnMessage): it
		// must finish first, or a QoS 2 message it has yet to record could
		// be resent on the new connection, completed there, and then
		// delivered a second time by the old reader [MQTT-4.3.3-10].
		select {
		case <-prev:
		case <-ctx.Done():
			return ctx.Err()
		}
	}

	d := net.Dialer{LocalAddr: c.opts.LocalAddr, Control: c.opts.Control}
	var conn net.Conn
	var err error
	network := "tcp"
	if c.opts.Unix {
		network, d.LocalAddr = "unix", nil
	}
	if c.opts.TLS != nil {
		td := tls.Dialer{NetDialer: &d, Config: c.opts.TLS}
		conn, err = td.DialContext(ctx, network, c.opts.Addr)
	} else {
		conn, err = d.DialContext(ctx, network, c.opts.Addr)
	}
	if err != nil {
		return err
	}
	if c.opts.Dialed != nil {
		c.opts.Dialed()
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	r := newReader(conn, c.opts.Version, c.opts.MaxPacketSize)
	err = c.handshake(conn, r)
	if !stop() || ctx.Err() != nil {
		if err == nil {
			err = ctx.Err()
		}
	}
	if err != nil {
		conn.Close()
		return err
	}
	conn.SetDeadline(time.Time{})
	c.startSession(conn, r)
	return nil
}

// handshake writes CONNECT and reads CONNACK synchronously.
func (c *Client) handshake(conn net.Conn, r *reader) error {
	o := &c.opts
	p := &codec.Packet{Type: codec.CONNECT}
	cp := &p.Connect
	cp.ProtocolName = []byte("MQTT")
	if o.Version == codec.Version31 {
		cp.ProtocolName = []byte("MQIsdp")
	}
	cp.ProtocolLevel = o.Version
	cp.Bridge = o.Bridge
	cp.CleanStart = o.CleanStart
	cp.KeepAlive = o.KeepAlive
	cp.ClientID = []byte(o.ClientID)
	if w := o.Will; w != nil {
		cp.WillFlag, cp.WillQoS, cp.WillRetain = true, w.QoS, w.Retain
		cp.WillTopic, cp.WillPayload = w.Topic, w.Payload
		if w.Props != nil {
			cp.WillProps = *w.Props
		}
	}
	cp.UsernameFlag = o.HasUsername || o.Username != ""
	cp.Username = []byte(o.Username)
	cp.PasswordFlag = o.HasPassword || o.Password != nil
	cp.Password = o.Password
	if o.Version == codec.Version5 {
		p.Props = o.Props
	}
	buf := p.Encode(nil, o.Version)
	if o.OnPacket != nil {
		o.OnPacket(true, p)
	}
	if _, err := conn.Write(buf); err != nil {
		return err
	}
	ack, err := r.next()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return ErrConnectionLost
		}
		return err
	}
	if o.OnPacket != nil {
		o.OnPacket(false, ack)
	}
	if ack.Type != codec.CONNACK {
		return fmt.Errorf("%w: expected CONNACK, got %s", ErrProtocol, ack.Type)
	}
	if ack.ReasonCode != 0 {
		return &ConnackError{Version: o.Version, Code: ack.ReasonCode, Reason: string(ack.Props.ReasonString)}
	}
	c.mu.Lock()
	c.connack = copyPacket(ack)
	c.mu.Unlock()
	return nil
}

// startSession installs conn as the current connection, reconciles session
// state with the CONNACK and resends what is unacknowledged.
func (c *Client) startSession(conn net.Conn, r *reader) {
	c.wmu.Lock() // no Publish may slip in before the resends
	defer c.wmu.Unlock()
	c.mu.Lock()
	ack := &c.connack
	if c.opts.CleanStart || !ack.SessionPresent {
		// Clean start: the client discards its session state too
		// [MQTT-3.1.2-4]; received QoS 2 ids are forgotten either way
		// when the server has no session.
		clear(c.recvQoS2)
	}
	if c.opts.CleanStart {
		for id, o := range c.inflight {
			o.finish(ErrSessionCleared)
			delete(c.inflight, id)
		}
		c.order = c.order[:0]
	}
	c.window = c.opts.MaxInflight
	if ack.Props.Has(codec.PropReceiveMaximum) && int(ack.Props.ReceiveMaximum) < c.window {
		c.window = int(ack.Props.ReceiveMaximum)
	}
	c.aliases = nil // topic aliases last one connection [MQTT-3.3.2-7]
	c.conn, c.connected, c.err = conn, true, nil
	c.done = make(chan struct{})
	done := c.done
	resend := make([]*outbound, 0, len(c.order))
	for _, id := range c.order {
		resend = append(resend, c.inflight[id])
	}
	keepalive := time.Duration(c.opts.KeepAlive) * time.Second
	if ack.Props.Has(codec.PropServerKeepAlive) { // [MQTT-3.2.2-21]
		keepalive = time.Duration(ack.Props.ServerKeepAlive) * time.Second
	}
	c.mu.Unlock()

	c.lastSent.Store(time.Now().UnixNano())
	c.pingWait.Store(false)
	reading := make(chan struct{})
	c.mu.Lock()
	c.reading = reading
	c.mu.Unlock()
	go func() {
		defer close(reading)
		c.readLoop(conn, r)
	}()
	if keepalive > 0 {
		go c.keepAlive(conn, done, keepalive)
	}
	if c.opts.DeferResend {
		c.mu.Lock()
		c.deferred = resend
		c.mu.Unlock()
		return
	}
	c.resendLocked(resend)
}

// Resend sends, with DeferResend, what was unacknowledged when the current
// connection was made (and is still).
func (c *Client) Resend() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	list := c.deferred
	c.deferred = nil
	c.mu.Unlock()
	return c.resendLocked(list)
}

// resendLocked resends unacknowledged PUBLISH (DUP) and PUBREL with their
// original packet identifiers, in the original order [MQTT-4.4.0-1].
// Callers hold wmu.
func (c *Client) resendLocked(list []*outbound) error {
	for _, o := range list {
		c.mu.Lock()
		current := c.inflight[o.pkt.PacketID] == o
		released := o.released
		c.mu.Unlock()
		if !current { // acknowledged meanwhile
			continue
		}
		if released {
			p := &c.wpkt
			p.Reset()
			p.Type, p.Flags, p.PacketID = codec.PUBREL, 0x02, o.pkt.PacketID
			if err := c.write(p); err != nil {
				return err
			}
			continue
		}
		o.pkt.Dup = true // [MQTT-3.3.1-1]
		if err := c.write(&o.pkt); err != nil {
			return err
		}
	}
	return nil
}

// keepAlive sends PINGREQ when nothing was sent for a keepalive period and
// drops the connection when the previous PINGREQ went unanswered [MQTT-3.1.2-24].
func (c *Client) keepAlive(conn net.Conn, done <-chan struct{}, every time.Duration) {
	check := every / 4
	if check < 50*time.Millisecond {
		check = 50 * time.Millisecond
	}
	t := time.NewTicker(check)
	defer t.Stop()
	var pingSent time.Time
	for {
		select {
		case <-done:
			return
		case now := <-t.C:
			if c.pingWait.Load() {
				if now.Sub(pingSent) >= every {
					c.closeConn(conn, ErrTimeout)
					return
				}
				continue
			}
			if now.UnixNano()-c.lastSent.Load() >= int64(every) {
				pingSent = now
				c.pingWait.Store(true)
				c.sendAck(codec.PINGREQ, 0, 0)
			}
		}
	}
}

// copyPacket deep-copies the fields of p that outlive the reader's buffer.
func copyPacket(p *codec.Packet) codec.Packet {
	q := *p
	q.Subscriptions, q.Filters, q.Topic, q.Payload = nil, nil, nil, nil
	q.ReasonCodes = append([]byte(nil), p.ReasonCodes...)
	q.Props = copyProps(&p.Props)
	q.Connect = codec.Connect{}
	return q
}

func copyProps(p *codec.Properties) codec.Properties {
	q := *p
	dup := func(b []byte) []byte {
		if b == nil {
			return nil
		}
		return append([]byte{}, b...)
	}
	q.ContentType, q.ResponseTopic = dup(p.ContentType), dup(p.ResponseTopic)
	q.CorrelationData, q.AssignedClientID = dup(p.CorrelationData), dup(p.AssignedClientID)
	q.AuthMethod, q.AuthData = dup(p.AuthMethod), dup(p.AuthData)
	q.ResponseInfo, q.ServerReference = dup(p.ResponseInfo), dup(p.ServerReference)
	q.ReasonString = dup(p.ReasonString)
	q.SubscriptionIDs = append([]uint32(nil), p.SubscriptionIDs...)
	q.Order = dup(p.Order)
	q.User = nil
	for _, u := range p.User {
		q.User = append(q.User, codec.UserProperty{Key: dup(u.Key), Value: dup(u.Value)})
	}
	return q
}
