package main

import (
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/midge-mqtt/midge/codec"
)

// mq is a raw MQTT client for the broker binary's tests: it sends codec
// packets and reads them back decoded, to check exact behaviour.
type mq struct {
	t   *testing.T
	c   net.Conn
	dec codec.Decoder
	buf []byte
}

const mqWait = 5 * time.Second

func dialMQ(t *testing.T, addr string, version byte) *mq {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, mqWait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	m := &mq{t: t, c: c}
	m.dec.Version = version
	return m
}

// connectPacket is a CONNECT at the connection's level; edit it before send.
func (m *mq) connectPacket(id string) *codec.Packet {
	p := &codec.Packet{Type: codec.CONNECT}
	p.Connect.ProtocolLevel = m.dec.Version
	p.Connect.ProtocolName = []byte("MQTT")
	if m.dec.Version == codec.Version31 {
		p.Connect.ProtocolName = []byte("MQIsdp")
	}
	p.Connect.ClientID, p.Connect.CleanStart, p.Connect.KeepAlive = []byte(id), true, 30
	return p
}

// connect sends p and returns the CONNACK.
func (m *mq) connect(p *codec.Packet) *codec.Packet {
	m.t.Helper()
	m.send(p)
	return m.expect(codec.CONNACK)
}

// connectOK connects with id and fails the test unless it is accepted.
func (m *mq) connectOK(id string) {
	m.t.Helper()
	if ack := m.connect(m.connectPacket(id)); ack.ReasonCode != 0 {
		m.t.Fatalf("CONNACK 0x%02x", ack.ReasonCode)
	}
}

func (m *mq) send(p *codec.Packet) {
	m.t.Helper()
	_ = m.c.SetWriteDeadline(time.Now().Add(mqWait))
	if _, err := m.c.Write(p.Encode(nil, m.dec.Version)); err != nil {
		m.t.Fatalf("write: %v", err)
	}
}

func (m *mq) subscribe(id uint16, filter string, qos byte) *codec.Packet {
	m.t.Helper()
	p := &codec.Packet{Type: codec.SUBSCRIBE, PacketID: id, Flags: 2}
	p.Subscriptions = []codec.Subscription{{Filter: []byte(filter), QoS: qos}}
	m.send(p)
	return m.expect(codec.SUBACK)
}

func (m *mq) publish(topic, payload string, qos byte, id uint16, retain bool) {
	m.t.Helper()
	p := &codec.Packet{Type: codec.PUBLISH, QoS: qos, PacketID: id, Retain: retain}
	p.Topic, p.Payload = []byte(topic), []byte(payload)
	m.send(p)
}

func (m *mq) next(wait time.Duration) (*codec.Packet, error) {
	deadline := time.Now().Add(wait)
	for {
		if total, err := codec.FrameSize(m.buf, 0); err == nil && len(m.buf) >= total {
			frame := append([]byte(nil), m.buf[:total]...)
			m.buf = m.buf[total:]
			p := new(codec.Packet)
			if _, err := m.dec.Decode(frame, p); err != nil {
				return nil, err
			}
			return p, nil
		}
		_ = m.c.SetReadDeadline(deadline)
		var tmp [4096]byte
		n, err := m.c.Read(tmp[:])
		m.buf = append(m.buf, tmp[:n]...)
		if err != nil && n == 0 {
			return nil, err
		}
	}
}

func (m *mq) expect(want codec.PacketType) *codec.Packet {
	m.t.Helper()
	p, err := m.next(mqWait)
	if err != nil {
		m.t.Fatalf("waiting for %v: %v", want, err)
	}
	if p.Type != want {
		m.t.Fatalf("got %v (reason 0x%02x), want %v", p.Type, p.ReasonCode, want)
	}
	return p
}

// expectQuiet checks that nothing arrives for a while.
func (m *mq) expectQuiet() {
	m.t.Helper()
	p, err := m.next(300 * time.Millisecond)
	if err == nil {
		m.t.Fatalf("unexpected %v (topic %q, reason 0x%02x)", p.Type, p.Topic, p.ReasonCode)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		m.t.Fatalf("connection lost: %v", err)
	}
}

// expectClosed checks that the broker closes the connection with nothing more.
func (m *mq) expectClosed() {
	m.t.Helper()
	p, err := m.next(mqWait)
	if err == nil {
		m.t.Fatalf("got %v (reason 0x%02x), want the connection closed", p.Type, p.ReasonCode)
	}
	if !errors.Is(err, io.EOF) && !strings.Contains(err.Error(), "connection reset") {
		m.t.Fatalf("want the connection closed, got %v", err)
	}
}

// expectDisconnect checks for a v5 DISCONNECT with reason, then the close.
func (m *mq) expectDisconnect(reason byte) {
	m.t.Helper()
	p := m.expect(codec.DISCONNECT)
	if p.ReasonCode != reason {
		m.t.Fatalf("DISCONNECT 0x%02x, want 0x%02x", p.ReasonCode, reason)
	}
	m.expectClosed()
}

// startConf writes conf (with {port} replaced by a free port) and starts
// the broker on it; it returns the listener's address.
func startConf(t *testing.T, conf string) (string, *lockedBuffer) {
	t.Helper()
	port := freePort(t)
	addr := net.JoinHostPort("127.0.0.1", itoa(port))
	path := t.TempDir() + "/midge.conf"
	writeFile(t, path, strings.ReplaceAll(conf, "{port}", itoa(port)))
	_, out := startMidge(t, addr, "-c", path)
	return addr, out
}

func itoa(n int) string { return strconv.Itoa(n) }

const (
	sighup  = syscall.SIGHUP
	sigterm = syscall.SIGTERM
)
