package loop

import (
	"testing"
	"time"

	"github.com/midge-mqtt/midge/codec"
)

// sessionExpiry sets the Session Expiry Interval of a CONNECT or DISCONNECT.
func sessionExpiry(s uint32) func(*codec.Properties) {
	return func(p *codec.Properties) { p.SessionExpiry = s; p.Set(codec.PropSessionExpiry) }
}

// resume connects id with clean start 0 and the given session expiry and
// returns the connection and the CONNACK's session present flag.
func (tb *testBroker) resume(t testing.TB, id string, expiry uint32) (*rawConn, bool) {
	t.Helper()
	r := tb.raw(t, codec.Version5)
	p := connectPacket(codec.Version5, id, false)
	sessionExpiry(expiry)(&p.Props)
	ack := r.connect(p)
	if ack.ReasonCode != codec.Success {
		t.Fatalf("CONNACK reason 0x%02x", ack.ReasonCode)
	}
	return r, ack.SessionPresent
}

// waitSessions waits until the broker holds n sessions.
func (tb *testBroker) waitSessions(t testing.TB, n int) {
	t.Helper()
	deadline := time.Now().Add(v5Wait)
	for tb.Broker.Sessions() != n {
		if time.Now().After(deadline) {
			t.Fatalf("broker holds %d sessions, want %d", tb.Broker.Sessions(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSessionV5ExpiryKept checks that a session outlives its connection for
// its expiry interval, with its subscriptions and queued messages, and is
// discarded once the interval has passed [MQTT-3.1.2-23].
func TestSessionV5ExpiryKept(t *testing.T) {
	t.Parallel()
	tb := startBroker(t, nil)
	r := tb.rawV5(t, "keep", sessionExpiry(1))
	r.subscribe(1, codec.Subscription{Filter: []byte("kept"), QoS: 1}, 0)
	r.send(&codec.Packet{Type: codec.DISCONNECT})
	r.expectClosed()
	pub := tb.rawV5(t, "", nil)
	pub.publish("kept", "queued", 1, 1, nil)

	r, present := tb.resume(t, "keep", 1)
	if !present {
		t.Fatal("session present 0 within the expiry interval")
	}
	m := r.expect(codec.PUBLISH)
	if string(m.Payload) != "queued" {
		t.Fatalf("queued message %q", m.Payload)
	}
	r.send(&codec.Packet{Type: codec.PUBACK, PacketID: m.PacketID})
	r.send(&codec.Packet{Type: codec.DISCONNECT})
	r.expectClosed()

	start := time.Now()
	tb.waitSessions(t, 1) // expired by the broker's timer; pub's is left
	if time.Since(start) < 900*time.Millisecond {
		t.Fatalf("session ended after %v, before its 1 s interval", time.Since(start))
	}
	if _, present := tb.resume(t, "keep", 0); present {
		t.Fatal("session present 1 after the expiry interval")
	}
}

// TestSessionV5ExpiryZero checks that a session with expiry 0 ends when the
// connection closes [MQTT-3.1.2-23], and that clean start discards an
// existing session [MQTT-3.1.2-4].
func TestSessionV5ExpiryZero(t *testing.T) {
	t.Parallel()
	tb := startBroker(t, nil)
	r := tb.rawV5(t, "zero", nil)
	r.subscribe(1, codec.Subscription{Filter: []byte("z")}, 0)
	r.c.Close() // abnormal close: the session ends all the same
	tb.waitSessions(t, 0)
	if _, present := tb.resume(t, "zero", 60); present {
		t.Fatal("session present 1 after expiry 0")
	}

	tb.rawV5(t, "clean", sessionExpiry(60)).send(&codec.Packet{Type: codec.DISCONNECT})
	r, present := tb.resume(t, "clean", 60)
	if !present {
		t.Fatal("session not kept")
	}
	r.subscribe(1, codec.Subscription{Filter: []byte("cs")}, 0)
	r.send(&codec.Packet{Type: codec.DISCONNECT})
	r.expectClosed()
	r = tb.rawV5(t, "clean", sessionExpiry(60)) // clean start
	tb.rawV5(t, "", nil).publish("cs", "x", 0, 0, nil)
	r.expectQuiet() // the subscription went with the old session
}

// TestSessionV5DisconnectExpiry checks the Session Expiry Interval on
// DISCONNECT: it may lower the interval (0 ends the session at once), but a
// non-zero value after 0 on CONNECT is a protocol error answered with
// DISCONNECT 0x82 [MQTT-3.14.2-2].
func TestSessionV5DisconnectExpiry(t *testing.T) {
	t.Parallel()
	tb := startBroker(t, nil)
	r := tb.rawV5(t, "lower", sessionExpiry(60))
	d := &codec.Packet{Type: codec.DISCONNECT}
	sessionExpiry(0)(&d.Props)
	r.send(d)
	r.expectClosed()
	tb.waitSessions(t, 0)

	// Lowered from 60 to 1: the session ends a second after the close.
	r = tb.rawV5(t, "lower1", sessionExpiry(60))
	d = &codec.Packet{Type: codec.DISCONNECT}
	sessionExpiry(1)(&d.Props)
	r.send(d)
	r.expectClosed()
	if tb.Broker.Sessions() != 1 {
		t.Fatal("session ended at once with expiry 1")
	}
	tb.waitSessions(t, 0)

	r = tb.rawV5(t, "raise", nil)
	d = &codec.Packet{Type: codec.DISCONNECT}
	sessionExpiry(30)(&d.Props)
	r.send(d)
	r.expectDisconnect(codec.ProtocolError)
	tb.waitSessions(t, 0) // still ends with the connection
}

// TestSessionV5ResendInflight checks that unacknowledged QoS 1 and 2
// messages of a resumed session are sent again with DUP set and their
// packet identifiers, and a PUBREL after PUBREC, in their original order
// [MQTT-4.4.0-1].
func TestSessionV5ResendInflight(t *testing.T) {
	t.Parallel()
	tb := startBroker(t, nil)
	sub := tb.rawV5(t, "resend", sessionExpiry(60))
	sub.subscribe(1, codec.Subscription{Filter: []byte("rs"), QoS: 2}, 0)
	pub := tb.rawV5(t, "", nil)
	pub.publish("rs", "q1", 1, 1, nil)
	pub.publish("rs", "q2", 2, 2, nil)
	pub.publish("rs", "q2b", 2, 3, nil)
	first := sub.expect(codec.PUBLISH)
	second := sub.expect(codec.PUBLISH)
	third := sub.expect(codec.PUBLISH)
	sub.send(&codec.Packet{Type: codec.PUBREC, PacketID: second.PacketID})
	sub.expect(codec.PUBREL)
	sub.c.Close() // nothing acknowledged but the PUBREC

	r := tb.raw(t, codec.Version5)
	p := connectPacket(codec.Version5, "resend", false)
	sessionExpiry(60)(&p.Props)
	if ack := r.connect(p); !ack.SessionPresent {
		t.Fatal("session not resumed")
	}
	m := r.expect(codec.PUBLISH)
	if !m.Dup || m.PacketID != first.PacketID || string(m.Payload) != "q1" || m.QoS != 1 {
		t.Fatalf("resent %q id %d dup %v qos %d, want q1 id %d with DUP", m.Payload, m.PacketID, m.Dup, m.QoS, first.PacketID)
	}
	if rel := r.expect(codec.PUBREL); rel.PacketID != second.PacketID {
		t.Fatalf("PUBREL id %d, want %d", rel.PacketID, second.PacketID)
	}
	m = r.expect(codec.PUBLISH)
	if !m.Dup || m.PacketID != third.PacketID || string(m.Payload) != "q2b" || m.QoS != 2 {
		t.Fatalf("resent %q id %d dup %v, want q2b id %d with DUP", m.Payload, m.PacketID, m.Dup, third.PacketID)
	}
	r.send(&codec.Packet{Type: codec.PUBACK, PacketID: first.PacketID})
	r.send(&codec.Packet{Type: codec.PUBCOMP, PacketID: second.PacketID})
	r.send(&codec.Packet{Type: codec.PUBREC, PacketID: third.PacketID})
	r.expect(codec.PUBREL)
	r.send(&codec.Packet{Type: codec.PUBCOMP, PacketID: third.PacketID})
	r.expectQuiet()
}
