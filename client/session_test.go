package client

import (
	"errors"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/midge-mqtt/midge/codec"
)

// scriptedServer listens and hands over each accepted connection, CONNECT
// read and CONNACK sent.
func scriptedServer(t *testing.T) (net.Listener, chan *scripted) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan *scripted, 4)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { conn.Close() })
			s := &scripted{t: t, conn: conn, r: newReader(conn, codec.Version311, 0)}
			s.read(codec.CONNECT)
			s.write(&codec.Packet{Type: codec.CONNACK})
			ch <- s
		}
	}()
	return ln, ch
}

func next(t *testing.T, ch chan *scripted) *scripted {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("no connection")
		return nil
	}
}

// TestTakeSession: a client made for a new connection carries on another's
// session: packet ids go on, and with DeferResend what was in flight (a
// PUBLISH with DUP and its id, a PUBREL with its id) is resent only at
// Resend [MQTT-4.4.0-1]; the done callbacks come with it. Dialed is called
// before the CONNECT.
func TestTakeSession(t *testing.T) {
	ln, conns := scriptedServer(t)
	dialed := 0
	o := Options{Addr: ln.Addr().String(), ClientID: "b", DeferResend: true, Dialed: func() { dialed++ }}
	c1 := New(o)
	if err := c1.Connect(ctx5(t)); err != nil {
		t.Fatal(err)
	}
	s := next(t, conns)
	done := make(chan error, 2)
	for _, q := range []byte{1, 2} {
		if err := c1.PublishAsync(ctx5(t), &Message{Topic: []byte("t"), Payload: []byte{q}, QoS: q}, func(err error) { done <- err }); err != nil {
			t.Fatal(err)
		}
	}
	if p := s.read(codec.PUBLISH); p == nil || p.PacketID != 1 {
		t.Fatalf("first PUBLISH %+v", p)
	}
	s.read(codec.PUBLISH) // id 2, QoS 2
	s.write(&codec.Packet{Type: codec.PUBREC, PacketID: 2})
	s.read(codec.PUBREL)
	c1.Close()

	c2 := New(o)
	c2.TakeSession(c1)
	if err := c2.Connect(ctx5(t)); err != nil {
		t.Fatal(err)
	}
	s = next(t, conns)
	subDone := make(chan error, 1)
	go func() {
		_, err := c2.Subscribe(ctx5(t), nil, codec.Subscription{Filter: []byte("x"), QoS: 1})
		subDone <- err
	}()
	p := s.read(codec.SUBSCRIBE)
	if p == nil || p.PacketID != 3 {
		t.Fatalf("SUBSCRIBE before the resend, with id 3: %+v", p)
	}
	s.write(&codec.Packet{Type: codec.SUBACK, PacketID: 3, ReasonCodes: []byte{1}})
	if err := <-subDone; err != nil {
		t.Fatal(err)
	}
	if err := c2.Resend(); err != nil {
		t.Fatal(err)
	}
	if p := s.read(codec.PUBLISH); p == nil || p.PacketID != 1 || !p.Dup {
		t.Fatalf("resent PUBLISH %+v", p)
	}
	if p := s.read(codec.PUBREL); p == nil || p.PacketID != 2 {
		t.Fatalf("resent PUBREL %+v", p)
	}
	s.write(&codec.Packet{Type: codec.PUBACK, PacketID: 1}, &codec.Packet{Type: codec.PUBCOMP, PacketID: 2})
	for i := 0; i < 2; i++ {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no done callback")
		}
	}
	if dialed != 2 {
		t.Fatalf("Dialed called %d times, want 2", dialed)
	}
}

// TestUnknownPubrec: a PUBREC for an id the client does not know gets a
// plain PUBREL (success), as mosquitto's client sends, so that the server
// can end its flow.
func TestUnknownPubrec(t *testing.T) {
	ln, conns := scriptedServer(t)
	c := New(Options{Addr: ln.Addr().String(), ClientID: "u"})
	if err := c.Connect(ctx5(t)); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := next(t, conns)
	s.write(&codec.Packet{Type: codec.PUBREC, PacketID: 2001})
	if p := s.read(codec.PUBREL); p == nil || p.PacketID != 2001 || p.ReasonCode != 0 {
		t.Fatalf("PUBREL %+v", p)
	}
}

// TestMalformedFromServerResets: a malformed packet from the server (a
// wildcard in a PUBLISH topic [MQTT-3.3.2-2]) resets the connection, as
// mosquitto's client does: the server's next read fails with a reset.
func TestMalformedFromServerResets(t *testing.T) {
	ln, conns := scriptedServer(t)
	c := New(Options{Addr: ln.Addr().String(), ClientID: "m"})
	if err := c.Connect(ctx5(t)); err != nil {
		t.Fatal(err)
	}
	s := next(t, conns)
	s.write(&codec.Packet{Type: codec.PUBLISH, Topic: []byte("a/+"), Payload: []byte("x")})
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the client kept the connection")
	}
	_ = s.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var b [1]byte
	if _, err := s.conn.Read(b[:]); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("server read: %v, want a reset", err)
	}
}

// TestTakeSessionManualAckQoS2: with ManualAck, a QoS 2 message delivered
// on the old connection but not yet acknowledged by the application when
// that connection was lost (a bridge whose local side was offline, or
// whose acknowledgement went to the old client) is delivered again when
// the server resends it to the client that took the session: an ack on
// the old client can no longer reach the new one, and without it the
// resend was neither delivered nor acknowledged (the remote's flow hung).
// One the application had acknowledged (PUBREC sent) gets its PUBREC
// again and is not delivered twice [MQTT-4.3.3-10].
func TestTakeSessionManualAckQoS2(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	conns := make(chan *scripted, 2)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { conn.Close() })
			s := &scripted{t: t, conn: conn, r: newReader(conn, codec.Version311, 0)}
			s.read(codec.CONNECT)
			s.write(&codec.Packet{Type: codec.CONNACK, SessionPresent: true})
			conns <- s
		}
	}()
	got := make(chan uint16, 4)
	o := Options{Addr: ln.Addr().String(), ClientID: "m2", ManualAck: true}
	c1 := New(o)
	c1.OnMessage = func(m *Message) { got <- m.PacketID }
	if err := c1.Connect(ctx5(t)); err != nil {
		t.Fatal(err)
	}
	s := next(t, conns)
	acked := &codec.Packet{Type: codec.PUBLISH, QoS: 2, PacketID: 5, Topic: []byte("t"), Payload: []byte("acked")}
	unacked := &codec.Packet{Type: codec.PUBLISH, QoS: 2, PacketID: 6, Topic: []byte("t"), Payload: []byte("unacked")}
	s.write(acked, unacked)
	for _, want := range []uint16{5, 6} {
		select {
		case id := <-got:
			if id != want {
				t.Fatalf("delivered id %d, want %d", id, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("not delivered")
		}
	}
	if err := c1.Ack(2, 5); err != nil {
		t.Fatal(err)
	}
	if p := s.read(codec.PUBREC); p == nil || p.PacketID != 5 {
		t.Fatalf("PUBREC %+v", p)
	}
	c1.Close() // id 6 not acknowledged

	c2 := New(o)
	c2.OnMessage = func(m *Message) { got <- m.PacketID }
	c2.TakeSession(c1)
	if err := c2.Connect(ctx5(t)); err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	s = next(t, conns)
	dup5, dup6 := *acked, *unacked
	dup5.Dup, dup6.Dup = true, true
	s.write(&dup5, &dup6)
	if p := s.read(codec.PUBREC); p == nil || p.PacketID != 5 {
		t.Fatalf("PUBREC of the acknowledged resend: %+v", p)
	}
	select {
	case id := <-got:
		if id != 6 {
			t.Fatalf("delivered id %d again, want 6", id)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the unacknowledged message, resent, was not delivered again")
	}
	if err := c2.Ack(2, 6); err != nil {
		t.Fatal(err)
	}
	if p := s.read(codec.PUBREC); p == nil || p.PacketID != 6 {
		t.Fatalf("PUBREC %+v", p)
	}
}
