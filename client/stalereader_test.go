package client

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/midge-mqtt/midge/codec"
)

// scripted is one side of a scripted server connection: it reads whole
// packets and writes encoded ones.
type scripted struct {
	t    *testing.T
	conn net.Conn
	r    *reader
}

func (s *scripted) read(want codec.PacketType) *codec.Packet {
	s.t.Helper()
	s.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	p, err := s.r.next()
	if err != nil {
		s.t.Errorf("server: reading %s: %v", want, err)
		return nil
	}
	if p.Type != want {
		s.t.Errorf("server: got %s, want %s", p.Type, want)
	}
	return p
}

func (s *scripted) write(ps ...*codec.Packet) {
	var b []byte
	for _, p := range ps {
		b = p.Encode(b, codec.Version311)
	}
	if _, err := s.conn.Write(b); err != nil {
		s.t.Errorf("server: write: %v", err)
	}
}

// TestStaleReaderQoS2 pins a duplicate the soak found: a connection's reader
// that still had a QoS 2 PUBLISH in its buffer when the connection was
// closed (it was inside OnMessage for the message before) delivered it
// after the next connection had received the resend, acknowledged it and
// been released (PUBREL) — twice in all. Connect now waits for the old
// reader, so the message is recorded before the resend comes
// [MQTT-4.3.3-10].
func TestStaleReaderQoS2(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accept := func(present bool) *scripted {
		conn, err := ln.Accept()
		if err != nil {
			t.Error(err)
			return nil
		}
		s := &scripted{t: t, conn: conn, r: newReader(conn, codec.Version311, 0)}
		s.read(codec.CONNECT)
		s.write(&codec.Packet{Type: codec.CONNACK, SessionPresent: present})
		return s
	}
	first := &codec.Packet{Type: codec.PUBLISH, Topic: []byte("t"), Payload: []byte("first")}
	exactly := &codec.Packet{Type: codec.PUBLISH, QoS: 2, PacketID: 7, Topic: []byte("t"), Payload: []byte("once")}

	c := New(Options{Addr: ln.Addr().String(), ClientID: "c"})
	inFirst, release := make(chan struct{}), make(chan struct{})
	var once atomic.Int32
	c.OnMessage = func(m *Message) {
		switch string(m.Payload) {
		case "first":
			close(inFirst)
			<-release // the reader stalls with "once" still in its buffer
		case "once":
			once.Add(1)
		}
	}
	server := make(chan *scripted, 1)
	go func() { server <- accept(false) }()
	if err := c.Connect(ctx5(t)); err != nil {
		t.Fatal(err)
	}
	s1 := <-server
	s1.write(first, exactly) // one write: both land in the reader's buffer
	<-inFirst
	c.Close()
	s1.conn.Close()

	// The second connection: the server resends the PUBLISH (it never got
	// the PUBREC), then completes the flow.
	flowDone := make(chan struct{})
	go func() {
		defer close(flowDone)
		s2 := accept(true)
		if s2 == nil {
			return
		}
		defer s2.conn.Close()
		dup := *exactly
		dup.Dup = true
		s2.write(&dup)
		s2.read(codec.PUBREC)
		s2.write(&codec.Packet{Type: codec.PUBREL, Flags: 0x02, PacketID: 7})
		s2.read(codec.PUBCOMP)
		s2.read(codec.DISCONNECT)
	}()
	connected := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		connected <- c.Connect(ctx)
	}()
	// Before the fix the second connection completed the flow while the
	// first reader was stalled; after it, Connect waits for that reader.
	select {
	case <-flowDone:
	case <-time.After(300 * time.Millisecond):
	}
	close(release)
	if err := <-connected; err != nil {
		t.Fatal(err)
	}
	// Wait for the PUBCOMP to be written (the flow is then complete on
	// both sides), then end the connection.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		c.mu.Lock()
		_, open := c.recvQoS2[7]
		c.mu.Unlock()
		if !open {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.Disconnect(codec.Success, nil)
	<-flowDone
	if n := once.Load(); n != 1 {
		t.Fatalf("the QoS 2 message was delivered %d times, want exactly once", n)
	}
}

// TestAnswersServerPingreq: a broker that bridges to us may probe the link
// with PINGREQ; the client answers PINGRESP, as mosquitto's library does
// (mosquitto's test 06-bridge-b2br-late-connection-retain relies on it).
func TestAnswersServerPingreq(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		conn, err := ln.Accept()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		s := &scripted{t: t, conn: conn, r: newReader(conn, codec.Version311, 0)}
		s.read(codec.CONNECT)
		s.write(&codec.Packet{Type: codec.CONNACK}, &codec.Packet{Type: codec.PINGREQ})
		s.read(codec.PINGRESP)
	}()
	c := New(Options{Addr: ln.Addr().String(), ClientID: "c"})
	if err := c.Connect(ctx5(t)); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	<-done
}

// TestManualAck: with ManualAck, a received QoS 1/2 message is acknowledged
// only by Ack, a resend of an unacknowledged QoS 2 message is neither
// delivered again nor acknowledged [MQTT-4.3.3-10], and the PUBREL goes to
// OnRelease, whose Complete sends the PUBCOMP.
func TestManualAck(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c := New(Options{Addr: ln.Addr().String(), ClientID: "c", ManualAck: true})
	got := make(chan *Message, 4)
	released := make(chan uint16, 1)
	c.OnMessage = func(m *Message) {
		got <- &Message{QoS: m.QoS, PacketID: m.PacketID, Payload: append([]byte(nil), m.Payload...)}
	}
	c.OnRelease = func(id uint16) { released <- id }
	server := make(chan *scripted, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			t.Error(err)
			server <- nil
			return
		}
		s := &scripted{t: t, conn: conn, r: newReader(conn, codec.Version311, 0)}
		s.read(codec.CONNECT)
		s.write(&codec.Packet{Type: codec.CONNACK})
		server <- s
	}()
	if err := c.Connect(ctx5(t)); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := <-server
	if s == nil {
		t.FailNow()
	}
	defer s.conn.Close()
	q1 := &codec.Packet{Type: codec.PUBLISH, QoS: 1, PacketID: 3, Topic: []byte("t"), Payload: []byte("one")}
	q2 := &codec.Packet{Type: codec.PUBLISH, QoS: 2, PacketID: 4, Topic: []byte("t"), Payload: []byte("two")}
	dup := *q2
	dup.Dup = true
	s.write(q1, q2, &dup, &codec.Packet{Type: codec.PINGREQ})
	// The PINGRESP comes first: nothing was acknowledged on its own.
	s.read(codec.PINGRESP)
	if m := <-got; string(m.Payload) != "one" {
		t.Fatalf("got %q", m.Payload)
	}
	if m := <-got; string(m.Payload) != "two" {
		t.Fatalf("got %q", m.Payload)
	}
	if err := c.Ack(1, 3); err != nil {
		t.Fatal(err)
	}
	if p := s.read(codec.PUBACK); p == nil || p.PacketID != 3 {
		t.Fatalf("PUBACK %v", p)
	}
	if err := c.Ack(2, 4); err != nil {
		t.Fatal(err)
	}
	if p := s.read(codec.PUBREC); p == nil || p.PacketID != 4 {
		t.Fatalf("PUBREC %v", p)
	}
	s.write(&dup) // acknowledged now: a resend gets its PUBREC again, not delivered
	if p := s.read(codec.PUBREC); p == nil || p.PacketID != 4 {
		t.Fatalf("PUBREC %v", p)
	}
	s.write(&codec.Packet{Type: codec.PUBREL, Flags: 0x02, PacketID: 4})
	if id := <-released; id != 4 {
		t.Fatalf("released %d", id)
	}
	if err := c.Complete(4); err != nil {
		t.Fatal(err)
	}
	if p := s.read(codec.PUBCOMP); p == nil || p.PacketID != 4 {
		t.Fatalf("PUBCOMP %v", p)
	}
	select {
	case m := <-got:
		t.Fatalf("delivered again: %q", m.Payload)
	default:
	}
}
