// Package client is a small MQTT 3.1 / 3.1.1 / 5.0 client built on midge's
// codec, for the pub/sub/rr tools and the load generator.
//
// Shape of the API:
//
//	c := client.New(client.Options{Addr: "127.0.0.1:1883", ClientID: "x", CleanStart: true})
//	c.OnMessage = func(m *client.Message) { ... }   // set before Connect
//	err := c.Connect(ctx)                            // dial, CONNECT, wait for CONNACK
//	codes, err := c.Subscribe(ctx, nil, codec.Subscription{Filter: []byte("a/#"), QoS: 1})
//	err = c.Publish(ctx, &client.Message{Topic: []byte("a/b"), Payload: p, QoS: 1})
//	err = c.Disconnect(codec.Success, nil)
//
// A Client owns one session. Connect may be called again after the connection
// was lost (Done is closed): unacknowledged QoS 1/2 messages are then resent
// with DUP set and PUBRELs are repeated [MQTT-4.4.0-1]. One reader goroutine
// per connection decodes incoming packets, answers acks and PINGRESPs, and
// calls OnMessage; a keepalive goroutine sends PINGREQ when the link is idle.
//
// All methods are safe from any goroutine, except that OnMessage must not
// wait for the acknowledgement of a QoS 1/2 Publish (the reader that would
// deliver it is the one running the callback).
package client

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/midge-mqtt/midge/codec"
)

// Errors returned by the client.
var (
	ErrNotConnected   = errors.New("client: not connected")
	ErrConnectionLost = errors.New("client: connection lost")
	ErrTimeout        = errors.New("client: keepalive timeout")
	ErrSessionCleared = errors.New("client: session discarded by a clean start")
	ErrProtocol       = errors.New("client: protocol error from server")
)

// ConnackError is returned by Connect when the server refuses the connection.
// Code is the CONNACK return code (v3) or reason code (v5).
type ConnackError struct {
	Version byte
	Code    byte
	Reason  string // v5 reason string, if the server sent one
}

func (e *ConnackError) Error() string {
	return "client: connection refused: " + ConnackText(e.Version, e.Code)
}

// ConnackText describes a CONNACK code the way mosquitto's tools do.
func ConnackText(version, code byte) string {
	if version < codec.Version5 {
		switch code {
		case codec.ConnAccepted:
			return "Connection Accepted."
		case codec.ConnRefusedProtocolVersion:
			return "Connection Refused: unacceptable protocol version."
		case codec.ConnRefusedIdentifierRejected:
			return "Connection Refused: identifier rejected."
		case codec.ConnRefusedServerUnavailable:
			return "Connection Refused: broker unavailable."
		case codec.ConnRefusedBadCredentials:
			return "Connection Refused: bad user name or password."
		case codec.ConnRefusedNotAuthorized:
			return "Connection Refused: not authorised."
		}
		return "Connection Refused: unknown reason."
	}
	return ReasonText(code)
}

// Options configure a Client. Zero values pick MQTT 3.1.1, keepalive off and
// an inflight window of 20.
type Options struct {
	Addr      string      // host:port, or a socket path when Unix is set
	Unix      bool        // Addr is a Unix domain socket (mosquitto's --unix)
	TLS       *tls.Config // nil: plain TCP
	LocalAddr net.Addr    // bind the outgoing socket (mosquitto's -A)
	// Control, when set, is the dialer's hook on the socket before it
	// connects (socket options such as a small SO_RCVBUF).
	Control func(network, address string, c syscall.RawConn) error

	Version    byte // codec.Version31, Version311 (default) or Version5
	ClientID   string
	CleanStart bool
	KeepAlive  uint16 // seconds; 0 disables PINGREQ

	Username    string
	Password    []byte
	HasUsername bool // send Username even when empty
	HasPassword bool // send Password even when empty

	Will *Message // QoS, Retain and Props (v5 will properties) are used

	// Bridge sets the top bit of the CONNECT's protocol level, as
	// mosquitto's bridges do with try_private: the server learns that this
	// client is a broker forwarding messages.
	Bridge bool

	// Props are the v5 CONNECT properties: session expiry, receive maximum,
	// topic alias maximum, maximum packet size, user properties...
	Props codec.Properties

	// MaxInflight bounds outgoing QoS 1/2 messages awaiting acknowledgement;
	// the server's receive maximum lowers it further [MQTT-3.3.4-7].
	MaxInflight int

	// MaxPacketSize refuses larger inbound packets (0: no limit).
	MaxPacketSize int

	// ManualAck leaves the PUBACK/PUBREC of a received QoS 1/2 message to
	// the application, which calls Ack once it has made the message safe
	// (a bridge: once the local broker has stored it). Ack in the order the
	// messages came [MQTT-4.6.0-2].
	ManualAck bool

	// Dialed, when set, is called by Connect once the network connection
	// (and TLS) is made, before the CONNECT is sent.
	Dialed func()

	// DeferResend holds back, after a reconnection, the resending of what
	// is unacknowledged until Resend is called: a bridge first renews its
	// subscriptions, as mosquitto's does.
	DeferResend bool

	// OnPacket, when set, sees every packet sent (sent=true) and received,
	// for debug output. It runs on the goroutine that sends or reads.
	OnPacket func(sent bool, p *codec.Packet)
}

// Message is an application message. For received messages every slice is
// borrowed from the reader's buffer and valid only during OnMessage.
type Message struct {
	Topic    []byte
	Payload  []byte
	QoS      byte
	Retain   bool
	Dup      bool
	PacketID uint16            // received QoS 1/2 messages
	Props    *codec.Properties // v5 PUBLISH properties; nil for none
}

// Client is one MQTT session over successive connections.
type Client struct {
	// OnMessage receives every PUBLISH, on the reader goroutine, before its
	// PUBACK/PUBREC is sent. Set it before Connect.
	OnMessage func(*Message)

	// OnRelease, with Options.ManualAck, receives the PUBREL of a QoS 2
	// message on the reader goroutine; the application sends the PUBCOMP
	// with Complete once its side of the flow has ended. Nil: PUBCOMP at
	// once. Set it before Connect.
	OnRelease func(id uint16)

	opts Options

	wmu    sync.Mutex // serialises writes; guards wbuf, wpkt and corked
	wbuf   []byte
	corked bool // Cork: packets gather in wbuf until Flush
	wpkt   codec.Packet

	mu        sync.Mutex // guards everything below
	conn      net.Conn
	version   byte
	done      chan struct{} // closed when the current connection ends
	err       error         // why it ended
	connected bool
	window    int                  // outgoing QoS 1/2 limit for this connection
	inflight  map[uint16]*outbound // by packet id
	order     []uint16             // inflight ids in send order, for resend
	requests  map[uint16]chan *codec.Packet
	recvQoS2  map[uint16]bool // received QoS 2 ids awaiting PUBREL: PUBREC sent
	nextID    uint16
	slotFree  chan struct{} // signalled when an inflight slot frees up
	aliases   map[uint16][]byte
	connack   codec.Packet
	reading   chan struct{} // closed when the last connection's reader has returned
	deferred  []*outbound   // to resend at Resend (DeferResend)

	lastSent atomic.Int64 // unix nanos of the last write, for keepalive
	pingWait atomic.Bool  // a PINGREQ is unanswered
}

// New returns a Client for opts; it does not connect.
func New(opts Options) *Client {
	if opts.Version == 0 {
		opts.Version = codec.Version311
	}
	if opts.MaxInflight <= 0 {
		opts.MaxInflight = 20
	}
	return &Client{
		opts:     opts,
		inflight: make(map[uint16]*outbound),
		requests: make(map[uint16]chan *codec.Packet),
		recvQoS2: make(map[uint16]bool),
		slotFree: make(chan struct{}, 1),
		wbuf:     make([]byte, 0, 4096),
	}
}

// TakeSession makes c, not yet connected, carry on from's session as a
// reconnection of from would: packet identifiers go on from where from's
// stopped, and what from had in flight (QoS 1/2 messages awaiting their
// acknowledgement, PUBRELs awaiting PUBCOMP, with their done callbacks) is
// resent after c's CONNACK, with DUP and the same identifiers
// [MQTT-4.4.0-1]. Received QoS 2 messages acknowledged (PUBREC sent) are
// not delivered again when resent; with ManualAck, one not yet
// acknowledged is. For a session whose options change between connections
// (a bridge trying another address or protocol level). from must be
// disconnected; it is waited for (its reader) and not to be used again.
func (c *Client) TakeSession(from *Client) {
	from.mu.Lock()
	reading := from.reading
	from.mu.Unlock()
	if reading != nil {
		<-reading // it may still be acknowledging what it read last
	}
	from.mu.Lock()
	inflight, order, next, recv := from.inflight, from.order, from.nextID, from.recvQoS2
	from.inflight, from.order, from.recvQoS2 = make(map[uint16]*outbound), nil, make(map[uint16]bool)
	from.mu.Unlock()
	// A received QoS 2 message the application has not acknowledged yet
	// (ManualAck) is forgotten: its Ack, if it comes, goes to from, and
	// never reaches c; kept, the server's resend would be neither delivered
	// nor acknowledged. It is delivered again when resent (a bridge's local
	// session knows the id and does not route it twice).
	for id, acked := range recv {
		if !acked {
			delete(recv, id)
		}
	}
	c.mu.Lock()
	c.inflight, c.order, c.nextID, c.recvQoS2 = inflight, order, next, recv
	c.mu.Unlock()
}

// ReaderDone is closed once the reader of the last connection has returned:
// after the connection ends, it may still be handling (and acknowledging,
// through the done callbacks) what it read last.
func (c *Client) ReaderDone() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return closedIfNil(c.reading)
}

// closedIfNil is ch, or a closed channel when there is none (never
// connected: nothing to wait for).
func closedIfNil(ch chan struct{}) <-chan struct{} {
	if ch == nil {
		ch = make(chan struct{})
		close(ch)
	}
	return ch
}

// Version is the protocol level in use.
func (c *Client) Version() byte { return c.opts.Version }

// Connack returns a copy of the last CONNACK's header (session present,
// reason code) and properties; slices in Props alias a private buffer.
func (c *Client) Connack() codec.Packet {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.connack
}

// Done is closed when the current connection ends; Err then says why.
func (c *Client) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return closedIfNil(c.done)
}

// Err is why the last connection ended (nil after a clean Disconnect).
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// write sends one encoded frame. Callers hold wmu.
func (c *Client) write(p *codec.Packet) error {
	c.mu.Lock()
	conn := c.conn
	c.mu.Unlock()
	if conn == nil {
		return ErrNotConnected
	}
	if c.corked {
		c.wbuf = p.Encode(c.wbuf, c.opts.Version)
		if c.opts.OnPacket != nil {
			c.opts.OnPacket(true, p)
		}
		if len(c.wbuf) >= 64<<10 {
			return c.flushLocked()
		}
		return nil
	}
	c.wbuf = p.Encode(c.wbuf[:0], c.opts.Version)
	if c.opts.OnPacket != nil {
		c.opts.OnPacket(true, p)
	}
	_, err := conn.Write(c.wbuf)
	if err != nil {
		c.closeConn(conn, err)
		return err
	}
	c.lastSent.Store(time.Now().UnixNano())
	return nil
}

// Cork makes the following packets gather in one buffer, written by Flush
// (or when it fills, or when a Publish must wait for the inflight window):
// one write for a batch of messages instead of one each.
func (c *Client) Cork() {
	c.wmu.Lock()
	if !c.corked {
		c.wbuf = c.wbuf[:0] // the last unbatched packet was written
	}
	c.corked = true
	c.wmu.Unlock()
}

// Flush writes what gathered since Cork and ends it.
func (c *Client) Flush() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.corked = false
	return c.flushLocked()
}

// flushLocked writes the gathered packets. Callers hold wmu.
func (c *Client) flushLocked() error {
	if len(c.wbuf) == 0 {
		return nil
	}
	c.mu.Lock()
	conn := c.conn
	c.mu.Unlock()
	if conn == nil {
		c.wbuf = c.wbuf[:0]
		return ErrNotConnected
	}
	_, err := conn.Write(c.wbuf)
	c.wbuf = c.wbuf[:0]
	if err != nil {
		c.closeConn(conn, err)
		return err
	}
	c.lastSent.Store(time.Now().UnixNano())
	return nil
}

// send encodes and writes p under the write lock.
func (c *Client) send(p *codec.Packet) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.write(p)
}

// sendAck writes a PUBACK/PUBREC/PUBREL/PUBCOMP or PINGREQ without other fields.
func (c *Client) sendAck(t codec.PacketType, id uint16, reason byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	p := &c.wpkt
	p.Reset()
	p.Type, p.PacketID, p.ReasonCode = t, id, reason
	if t == codec.PUBREL {
		p.Flags = 0x02 // [MQTT-3.6.1-1]
	}
	err := c.write(p)
	if err == nil && c.corked {
		// An ack leaves at once, with what gathered before it: a PUBREL
		// may be what frees the window a corked publish waits for.
		err = c.flushLocked()
	}
	return err
}

// closeConn ends conn (if it is still the current one) with err.
func (c *Client) closeConn(conn net.Conn, err error) {
	c.mu.Lock()
	if c.conn != conn || conn == nil {
		c.mu.Unlock()
		return
	}
	c.conn = nil
	c.connected = false
	c.err = err
	done := c.done
	reqs := c.requests
	c.requests = make(map[uint16]chan *codec.Packet)
	c.mu.Unlock()
	conn.Close()
	for _, ch := range reqs {
		close(ch) // a pending SUBSCRIBE/UNSUBSCRIBE learns the link is gone
	}
	close(done)
}

// Close drops the connection without DISCONNECT (so the will is published).
func (c *Client) Close() error {
	c.mu.Lock()
	conn := c.conn
	c.mu.Unlock()
	if conn == nil {
		return ErrNotConnected
	}
	c.closeConn(conn, ErrConnectionLost)
	return nil
}

// Disconnect sends DISCONNECT (v5: with reason and props, which may be nil)
// and closes the connection. Reason DisconnectWithWill asks a v5 server to
// publish the will anyway.
func (c *Client) Disconnect(reason byte, props *codec.Properties) error {
	c.wmu.Lock()
	if c.corked {
		c.corked = false
		_ = c.flushLocked()
	}
	p := &c.wpkt
	p.Reset()
	p.Type, p.ReasonCode = codec.DISCONNECT, reason
	if props != nil {
		p.Props = *props
	}
	err := c.write(p)
	p.Props = codec.Properties{}
	c.wmu.Unlock()
	c.mu.Lock()
	conn := c.conn
	c.mu.Unlock()
	if conn == nil {
		return err
	}
	if tc, ok := conn.(interface{ CloseWrite() error }); ok {
		tc.CloseWrite() // let the server read DISCONNECT before it sees a reset
	}
	// Wait briefly for the server to close its side, then close ours.
	select {
	case <-c.Done():
	case <-time.After(time.Second):
	}
	c.closeConn(conn, nil)
	c.mu.Lock()
	c.err = nil
	c.mu.Unlock()
	return err
}

// allocID returns a packet identifier not in use. Callers hold mu.
func (c *Client) allocID() uint16 {
	for {
		c.nextID++
		if c.nextID == 0 {
			c.nextID = 1 // [MQTT-2.3.1-1] non-zero
		}
		id := c.nextID
		if _, used := c.inflight[id]; used {
			continue
		}
		if _, used := c.requests[id]; used {
			continue
		}
		return id
	}
}

// request sends a SUBSCRIBE or UNSUBSCRIBE built by fill and waits for its ack.
func (c *Client) request(ctx context.Context, fill func(p *codec.Packet)) (*codec.Packet, error) {
	ch := make(chan *codec.Packet, 1)
	c.mu.Lock()
	if !c.connected {
		c.mu.Unlock()
		return nil, ErrNotConnected
	}
	id := c.allocID()
	c.requests[id] = ch
	c.mu.Unlock()

	c.wmu.Lock()
	p := &c.wpkt
	p.Reset()
	fill(p)
	p.PacketID = id
	err := c.write(p)
	p.Props = codec.Properties{}
	p.Subscriptions, p.Filters = nil, nil
	c.wmu.Unlock()
	if err != nil {
		return nil, err
	}
	select {
	case ack, ok := <-ch:
		if !ok {
			return nil, ErrConnectionLost
		}
		return ack, nil
	case <-ctx.Done():
		c.mu.Lock()
		delete(c.requests, id)
		c.mu.Unlock()
		return nil, ctx.Err()
	}
}

// Subscribe sends one SUBSCRIBE and returns the SUBACK's codes, one per
// subscription (granted QoS, or >= 0x80 for a refusal). props (v5, may be
// nil) carries a subscription identifier and user properties.
func (c *Client) Subscribe(ctx context.Context, props *codec.Properties, subs ...codec.Subscription) ([]byte, error) {
	ack, err := c.request(ctx, func(p *codec.Packet) {
		p.Type, p.Flags = codec.SUBSCRIBE, 0x02 // [MQTT-3.8.1-1]
		p.Subscriptions = subs
		if props != nil {
			p.Props = *props
		}
	})
	if err != nil {
		return nil, err
	}
	return ack.ReasonCodes, nil
}

// Unsubscribe sends one UNSUBSCRIBE; v5 servers answer a code per filter.
func (c *Client) Unsubscribe(ctx context.Context, props *codec.Properties, filters ...[]byte) ([]byte, error) {
	ack, err := c.request(ctx, func(p *codec.Packet) {
		p.Type, p.Flags = codec.UNSUBSCRIBE, 0x02 // [MQTT-3.10.1-1]
		p.Filters = filters
		if props != nil {
			p.Props = *props
		}
	})
	if err != nil {
		return nil, err
	}
	return ack.ReasonCodes, nil
}
