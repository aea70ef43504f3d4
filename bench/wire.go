package bench

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/midge-mqtt/midge/codec"
)

// Every payload starts with a stamp: publisher index, sequence number and
// send time, so that subscribers can count loss, reordering and latency.
const (
	stampPub   = 0  // uint32 publisher index
	stampSeq   = 4  // uint64 sequence number, from 1
	stampTime  = 12 // int64 nanoseconds since the run's base time
	minPayload = 20
)

// stamp writes a payload stamp at the start of p.
func stamp(p []byte, pub uint32, seq uint64, ts int64) {
	binary.BigEndian.PutUint32(p[stampPub:], pub)
	binary.BigEndian.PutUint64(p[stampSeq:], seq)
	binary.BigEndian.PutUint64(p[stampTime:], uint64(ts))
}

// readStamp is stamp's inverse; ok is false for a payload too short to carry one.
func readStamp(p []byte) (pub uint32, seq uint64, ts int64, ok bool) {
	if len(p) < minPayload {
		return 0, 0, 0, false
	}
	return binary.BigEndian.Uint32(p[stampPub:]), binary.BigEndian.Uint64(p[stampSeq:]),
		int64(binary.BigEndian.Uint64(p[stampTime:])), true
}

// publishFrame is one PUBLISH encoded once; sending it again only rewrites
// its packet identifier and payload stamp in place.
type publishFrame struct {
	b          []byte
	payloadOff int
	pidOff     int // -1 at QoS 0
}

func newPublishFrame(topic string, size int, qos byte, version byte, retain bool) publishFrame {
	p := codec.Packet{Type: codec.PUBLISH, QoS: qos, Retain: retain, Topic: []byte(topic),
		Payload: make([]byte, size)}
	if qos > 0 {
		p.PacketID = 1
	}
	b := p.Encode(nil, version)
	f := publishFrame{b: b, payloadOff: len(b) - size, pidOff: -1}
	if qos > 0 {
		rl, _, _ := readRemainingLength(b)
		f.pidOff = len(b) - rl + 2 + len(topic)
	}
	return f
}

// readRemainingLength decodes the fixed header's remaining length.
func readRemainingLength(b []byte) (rl, n int, err error) {
	total, err := codec.FrameSize(b, 0)
	if err != nil {
		return 0, 0, err
	}
	for n = 1; b[n]&0x80 != 0; n++ {
	}
	return total - 1 - n, n, nil
}

// put copies the frame into dst (len(dst) == len(f.b)) stamped with pid and the stamp.
func (f *publishFrame) put(dst []byte, pid uint16, pub uint32, seq uint64, ts int64) {
	copy(dst, f.b)
	if f.pidOff >= 0 {
		binary.BigEndian.PutUint16(dst[f.pidOff:], pid)
	}
	stamp(dst[f.payloadOff:], pub, seq, ts)
}

// dialer opens TCP connections to the broker. For loopback brokers it
// spreads source addresses over 127.0.0.0/8 so that many connections do not
// exhaust one address's ephemeral ports.
type dialer struct {
	addr string
	// persistent makes subscribers' sessions persistent (clean session 0,
	// or v5 session expiry), so that a broker with persistence stores
	// their QoS 1/2 messages.
	persistent bool
	spread     bool
	unix       bool // addr is a Unix domain socket
	next       atomic.Uint32
	timeout    time.Duration
	tls        *tls.Config // nil: plain TCP
}

func newDialer(host string, port int, unix string) *dialer {
	if unix != "" {
		return &dialer{addr: unix, unix: true, timeout: 10 * time.Second}
	}
	ip := net.ParseIP(host)
	return &dialer{addr: net.JoinHostPort(host, strconv.Itoa(port)),
		spread: ip != nil && ip.IsLoopback() && ip.To4() != nil, timeout: 10 * time.Second}
}

func (d *dialer) dial() (net.Conn, error) {
	nd := net.Dialer{Timeout: d.timeout}
	if d.spread {
		i := d.next.Add(1)
		nd.LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 0, byte(1+(i/250)%64), byte(1+i%250))}
	}
	network := "tcp"
	if d.unix {
		network = "unix"
	}
	c, err := nd.Dial(network, d.addr)
	for deadline := time.Now().Add(d.timeout); d.unix && errors.Is(err, syscall.EAGAIN) && time.Now().Before(deadline); {
		// A Unix socket's full accept backlog refuses at once (TCP would
		// retry the SYN): try again shortly, as TCP would.
		time.Sleep(time.Millisecond)
		c, err = nd.Dial(network, d.addr)
	}
	if err != nil {
		return nil, fmt.Errorf("bench: dial %s: %w", d.addr, err)
	}
	if d.tls != nil {
		tc := tls.Client(c, d.tls)
		_ = tc.SetDeadline(time.Now().Add(d.timeout))
		if err := tc.Handshake(); err != nil {
			c.Close()
			return nil, fmt.Errorf("bench: TLS handshake with %s: %w", d.addr, err)
		}
		_ = tc.SetDeadline(time.Time{})
		return tc, nil
	}
	return c, nil
}

// readFrame reads exactly one frame from c into buf (grown as needed),
// never past its end, so that c can be handed to the gnet client afterwards.
func readFrame(c net.Conn, buf []byte) ([]byte, error) {
	buf = append(buf[:0], 0, 0)
	if _, err := io.ReadFull(c, buf); err != nil {
		return nil, err
	}
	for {
		total, err := codec.FrameSize(buf, 0)
		if errors.Is(err, codec.ErrIncomplete) {
			buf = append(buf, 0)
			if _, err := io.ReadFull(c, buf[len(buf)-1:]); err != nil {
				return nil, err
			}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		n := len(buf)
		buf = append(buf, make([]byte, total-n)...)
		if _, err := io.ReadFull(c, buf[n:]); err != nil {
			return nil, err
		}
		return buf, nil
	}
}

// expect reads one frame and decodes it, failing unless it has type t.
func expect(c net.Conn, version byte, t codec.PacketType, p *codec.Packet) error {
	b, err := readFrame(c, nil)
	if err != nil {
		return fmt.Errorf("bench: waiting for %v: %w", t, err)
	}
	d := codec.Decoder{Version: version}
	if _, err := d.Decode(b, p); err != nil {
		return fmt.Errorf("bench: decoding %v: %w", t, err)
	}
	if p.Type != t {
		return fmt.Errorf("bench: got %v, want %v", p.Type, t)
	}
	return nil
}

// connect dials and completes the MQTT handshake as client id.
func (d *dialer) connect(id string, version byte, keepalive uint16) (net.Conn, error) {
	return d.connectSession(id, version, keepalive, false)
}

// connectSession is connect with a persistent session when persistent.
func (d *dialer) connectSession(id string, version byte, keepalive uint16, persistent bool) (net.Conn, error) {
	c, err := d.dial()
	if err != nil {
		return nil, err
	}
	p := codec.Packet{Type: codec.CONNECT, Connect: codec.Connect{ProtocolLevel: version,
		CleanStart: !persistent, KeepAlive: keepalive, ClientID: []byte(id)}}
	if persistent && version == codec.Version5 {
		p.Props.SessionExpiry = 60
		p.Props.Set(codec.PropSessionExpiry)
	}
	_ = c.SetDeadline(time.Now().Add(d.timeout))
	if _, err := c.Write(p.Encode(nil, version)); err != nil {
		c.Close()
		return nil, fmt.Errorf("bench: CONNECT: %w", err)
	}
	var ack codec.Packet
	if err := expect(c, version, codec.CONNACK, &ack); err != nil {
		c.Close()
		return nil, err
	}
	if ack.ReasonCode != 0 {
		c.Close()
		return nil, fmt.Errorf("bench: CONNACK refused: code %d", ack.ReasonCode)
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

// subscribe subscribes c to filter at qos and waits for the SUBACK.
func subscribe(c net.Conn, version byte, filter string, qos byte) error {
	p := codec.Packet{Type: codec.SUBSCRIBE, PacketID: 1,
		Subscriptions: []codec.Subscription{{Filter: []byte(filter), QoS: qos}}}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write(p.Encode(nil, version)); err != nil {
		return fmt.Errorf("bench: SUBSCRIBE: %w", err)
	}
	var ack codec.Packet
	if err := expect(c, version, codec.SUBACK, &ack); err != nil {
		return err
	}
	if len(ack.ReasonCodes) != 1 || ack.ReasonCodes[0] >= 0x80 {
		return fmt.Errorf("bench: SUBACK refused %q: % x", filter, ack.ReasonCodes)
	}
	return nil
}

// disconnectFrame is a DISCONNECT (v5: normal, the session kept as its
// CONNECT asked), the same at every protocol level.
var disconnectFrame = []byte{0xe0, 0}

// pingFrame is a PINGREQ, the same at every protocol level.
var pingFrame = []byte{0xc0, 0}
