package loop

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/panjf2000/gnet/v2"

	"github.com/midge-mqtt/midge/codec"
)

// Helpers of the MQTT 3.1 / 3.1.1 tests (this file and the *_v3, retain,
// keepalive, load, slowconsumer and interop tests).

// v3Wait bounds every wait for something the broker must do.
const v3Wait = 5 * time.Second

// v3Quiet is how long a test watches for something the broker must not do.
const v3Quiet = 300 * time.Millisecond

// v3Conn is a raw socket speaking MQTT 3.x through the codec, for tests that
// check exact bytes or behave as no library client would (never acking,
// resending a packet id).
type v3Conn struct {
	t   testing.TB
	c   net.Conn
	dec codec.Decoder
	buf []byte
	// held are packets read while waiting for another (a PUBLISH that came
	// before the awaited PUBREL); next returns them first.
	held []*codec.Packet
}

// v3Dial opens a raw connection encoding and decoding at version (3 or 4).
func (tb *testBroker) v3Dial(t testing.TB, version byte) *v3Conn {
	t.Helper()
	r := &v3Conn{t: t, c: tb.dial(t)}
	r.dec.Version = version
	return r
}

// v3Connect dials and connects with client id and clean session, failing the
// test unless the CONNACK accepts; it returns the session present flag.
func (tb *testBroker) v3Connect(t testing.TB, version byte, id string, clean bool) (*v3Conn, bool) {
	t.Helper()
	r := tb.v3Dial(t, version)
	r.send(v3ConnectPacket(version, id, clean, 0))
	ack := r.expect(codec.CONNACK)
	if ack.ReasonCode != codec.Success {
		t.Fatalf("CONNACK return code 0x%02x, want 0", ack.ReasonCode)
	}
	return r, ack.SessionPresent
}

// v3ConnectPacket is a CONNECT at version (3: "MQIsdp", 4: "MQTT").
func v3ConnectPacket(version byte, id string, clean bool, keepalive uint16) *codec.Packet {
	p := &codec.Packet{Type: codec.CONNECT}
	p.Connect = codec.Connect{ProtocolLevel: version, CleanStart: clean, KeepAlive: keepalive,
		ClientID: []byte(id)}
	return p
}

func (r *v3Conn) write(b []byte) {
	r.t.Helper()
	_ = r.c.SetWriteDeadline(time.Now().Add(v3Wait))
	if _, err := r.c.Write(b); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

// send encodes p at the connection's protocol level and writes it.
func (r *v3Conn) send(p *codec.Packet) {
	r.t.Helper()
	r.write(p.Encode(nil, r.dec.Version))
}

// next returns the next packet (owning its bytes), or the read error.
func (r *v3Conn) next(wait time.Duration) (*codec.Packet, error) {
	if len(r.held) > 0 {
		p := r.held[0]
		r.held = r.held[1:]
		return p, nil
	}
	return readPacket(r.c, &r.buf, &r.dec, wait)
}

// expect reads the next packet and checks its type.
func (r *v3Conn) expect(want codec.PacketType) *codec.Packet {
	r.t.Helper()
	p, err := r.next(v3Wait)
	if err != nil {
		r.t.Fatalf("waiting for %v: %v", want, err)
	}
	if p.Type != want {
		r.t.Fatalf("got %v (topic %q), want %v", p.Type, p.Topic, want)
	}
	return p
}

// expectPublish reads a PUBLISH and checks topic, payload, QoS and RETAIN.
func (r *v3Conn) expectPublish(topic, payload string, qos byte, retain bool) *codec.Packet {
	r.t.Helper()
	p := r.expect(codec.PUBLISH)
	if string(p.Topic) != topic || string(p.Payload) != payload || p.QoS != qos || p.Retain != retain {
		r.t.Fatalf("PUBLISH %q %q qos %d retain %v, want %q %q qos %d retain %v",
			p.Topic, p.Payload, p.QoS, p.Retain, topic, payload, qos, retain)
	}
	return p
}

// expectQuiet checks that nothing arrives for v3Quiet.
func (r *v3Conn) expectQuiet() {
	r.t.Helper()
	p, err := r.next(v3Quiet)
	if err == nil {
		r.t.Fatalf("unexpected %v (topic %q payload %q)", p.Type, p.Topic, p.Payload)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		r.t.Fatalf("connection lost: %v", err)
	}
}

// expectClosed checks that the broker closes the connection without sending
// anything more.
func (r *v3Conn) expectClosed() {
	r.t.Helper()
	p, err := r.next(v3Wait)
	if err == nil {
		r.t.Fatalf("got %v, want the connection closed", p.Type)
	}
	if !v3ClosedErr(err) {
		r.t.Fatalf("want the connection closed, got %v", err)
	}
}

func v3ClosedErr(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) ||
		strings.Contains(err.Error(), "connection reset")
}

// subscribe sends SUBSCRIBE for filter at qos and checks the SUBACK.
func (r *v3Conn) subscribe(id uint16, filter string, qos byte) {
	r.t.Helper()
	r.send(&codec.Packet{Type: codec.SUBSCRIBE, PacketID: id,
		Subscriptions: []codec.Subscription{{Filter: []byte(filter), QoS: qos}}})
	ack := r.expect(codec.SUBACK)
	if ack.PacketID != id || !bytes.Equal(ack.ReasonCodes, []byte{qos}) {
		t := r.t
		t.Fatalf("SUBACK id %d codes %v, want id %d codes [%d]", ack.PacketID, ack.ReasonCodes, id, qos)
	}
}

// publish sends a PUBLISH and, for QoS 1 and 2, completes the flow.
func (r *v3Conn) publish(topic, payload string, qos byte, id uint16, retain bool) {
	r.t.Helper()
	r.send(&codec.Packet{Type: codec.PUBLISH, Topic: []byte(topic), Payload: []byte(payload),
		QoS: qos, PacketID: id, Retain: retain})
	switch qos {
	case 1:
		if a := r.expect(codec.PUBACK); a.PacketID != id {
			r.t.Fatalf("PUBACK id %d, want %d", a.PacketID, id)
		}
	case 2:
		if a := r.expect(codec.PUBREC); a.PacketID != id {
			r.t.Fatalf("PUBREC id %d, want %d", a.PacketID, id)
		}
		r.send(&codec.Packet{Type: codec.PUBREL, PacketID: id})
		if a := r.expect(codec.PUBCOMP); a.PacketID != id {
			r.t.Fatalf("PUBCOMP id %d, want %d", a.PacketID, id)
		}
	}
}

// ack completes an incoming QoS 1/2 PUBLISH as a subscriber.
func (r *v3Conn) ack(p *codec.Packet) {
	r.t.Helper()
	switch p.QoS {
	case 1:
		r.send(&codec.Packet{Type: codec.PUBACK, PacketID: p.PacketID})
	case 2:
		r.send(&codec.Packet{Type: codec.PUBREC, PacketID: p.PacketID})
		// Other deliveries may come before the PUBREL: keep them for next.
		var other []*codec.Packet
		for {
			q, err := r.next(v3Wait)
			if err != nil {
				r.t.Fatalf("waiting for PUBREL %d: %v", p.PacketID, err)
			}
			if q.Type == codec.PUBREL && q.PacketID == p.PacketID {
				break
			}
			if q.Type != codec.PUBLISH {
				r.t.Fatalf("got %v, want PUBREL %d", q.Type, p.PacketID)
			}
			other = append(other, q)
		}
		r.held = append(other, r.held...)
		r.send(&codec.Packet{Type: codec.PUBCOMP, PacketID: p.PacketID})
	}
}

// v3Paho connects a paho.mqtt.golang client (protocol 3 or 4) and
// disconnects it when the test ends.
func (tb *testBroker) v3Paho(t testing.TB, version uint, id string, clean bool,
	opt ...func(*mqtt.ClientOptions)) mqtt.Client {
	t.Helper()
	o := mqtt.NewClientOptions().AddBroker("tcp://" + tb.Addr).SetClientID(id).
		SetCleanSession(clean).SetProtocolVersion(version).SetAutoReconnect(false).
		SetConnectRetry(false).SetConnectTimeout(v3Wait).SetKeepAlive(30 * time.Second).
		SetWriteTimeout(v3Wait)
	for _, f := range opt {
		f(o)
	}
	c := mqtt.NewClient(o)
	v3Token(t, c.Connect(), "connect "+id)
	t.Cleanup(func() { c.Disconnect(0) })
	return c
}

// v3Token waits for a paho token and fails the test on error or timeout.
func v3Token(t testing.TB, tok mqtt.Token, what string) {
	t.Helper()
	if !tok.WaitTimeout(v3Wait) {
		t.Fatalf("%s: timed out", what)
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// v3Inbox collects the messages a paho subscription receives.
type v3Inbox chan mqtt.Message

func (in v3Inbox) handler(_ mqtt.Client, m mqtt.Message) { in <- m }

// next waits for a message.
func (in v3Inbox) next(t testing.TB) mqtt.Message {
	t.Helper()
	select {
	case m := <-in:
		return m
	case <-time.After(v3Wait):
		t.Fatal("no message received")
		return nil
	}
}

// quiet checks that no message arrives for v3Quiet.
func (in v3Inbox) quiet(t testing.TB) {
	t.Helper()
	select {
	case m := <-in:
		t.Fatalf("unexpected message %q on %q", m.Payload(), m.Topic())
	case <-time.After(v3Quiet):
	}
}

// loopOf returns the event loop serving the connection whose remote address
// is addr (the client side's local address), a connection that has not sent
// its CONNECT yet: such connections are all in their loop's timing wheel
// (the connect timeout). The wheel is loop-only, so each loop is asked on its
// own goroutine; the accept may not have reached OnOpen yet, so it asks
// again until the connection shows up.
func (tb *testBroker) loopOf(t testing.TB, addr string) gnet.EventLoop {
	t.Helper()
	s := tb.Server
	for deadline := time.Now().Add(v3Wait); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		s.mu.Lock()
		loops := make([]*loopState, 0, len(s.loops))
		for _, ls := range s.loops {
			loops = append(loops, ls)
		}
		s.mu.Unlock()
		for _, ls := range loops {
			found := make(chan bool, 1)
			ls := ls
			err := ls.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
				ok := false
				for i := range ls.wheel.slots {
					for c := ls.wheel.slots[i].head; c != nil; c = c.wheelNext {
						ok = ok || c.RemoteAddr() == addr
					}
				}
				found <- ok
				return nil
			}))
			if err != nil {
				t.Fatalf("loop execute: %v", err)
			}
			if <-found {
				return ls.el
			}
		}
	}
	t.Fatalf("no loop serves %s", addr)
	return nil
}

// TestConnectV3ReturnCodes checks the CONNACK of each kind of CONNECT, byte
// for byte, and whether the connection stays open.
func TestConnectV3ReturnCodes(t *testing.T) {
	vec := func(name string) []byte {
		v, ok := codec.VectorByName(name)
		if !ok {
			t.Fatalf("no codec vector %s", name)
		}
		return v.Raw
	}
	connect := func(version byte, id string, clean bool) []byte {
		return v3ConnectPacket(version, id, clean, 0).Encode(nil, version)
	}
	tests := []struct {
		name    string
		raw     []byte
		connack []byte // nil: closed without a CONNACK
		open    bool
	}{
		// [MQTT-3.2.2-4]: accepted, session present 0 for a clean session [MQTT-3.2.2-1].
		{"Mqtt311", vec("ConnectMqtt311"), []byte{0x20, 2, 0, 0}, true},
		// 3.1 is named "MQIsdp", level 3.
		{"Mqtt31", vec("ConnectMqtt31"), []byte{0x20, 2, 0, 0}, true},
		{"Mqtt31Persistent", connect(3, "p31", false), []byte{0x20, 2, 0, 0}, true},
		// [MQTT-3.1.2-2]: unsupported level → 0x01, then close.
		{"ProtocolLevel6", vec("ConnectMalProtocolLevel6"), []byte{0x20, 2, 0, 1}, false},
		{"MQIsdpLevel4", vec("ConnectMalMQIsdpLevel4"), []byte{0x20, 2, 0, 1}, false},
		// [MQTT-3.1.3-8]: empty id with clean session 0 → 0x02, then close.
		{"EmptyIDPersistent", connect(4, "", false), []byte{0x20, 2, 0, 2}, false},
		// 3.1 requires a client id of 1 to 23 characters.
		{"EmptyIDMqtt31", connect(3, "", true), []byte{0x20, 2, 0, 2}, false},
		// [MQTT-3.1.3-6]: empty id with clean session 1 is assigned one.
		{"EmptyIDClean", vec("ConnectMqtt311EmptyClientID"), []byte{0x20, 2, 0, 0}, true},
		// [MQTT-3.1.2-3]: reserved flag set → close without CONNACK.
		{"ReservedFlag", vec("ConnectMalReservedFlag"), nil, false},
		// [MQTT-3.1.2-13]: will QoS without the will flag is malformed.
		{"WillQoSWithoutWill", vec("ConnectMalWillQoSWithoutWill"), nil, false},
	}
	tb := startBroker(t, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tb.v3Dial(t, codec.Version311)
			r.write(tt.raw)
			if tt.connack != nil {
				got := make([]byte, len(tt.connack))
				_ = r.c.SetReadDeadline(time.Now().Add(v3Wait))
				if _, err := io.ReadFull(r.c, got); err != nil {
					t.Fatalf("read CONNACK: %v", err)
				}
				if !bytes.Equal(got, tt.connack) {
					t.Fatalf("CONNACK % x, want % x", got, tt.connack)
				}
			}
			if !tt.open {
				r.expectClosed()
				return
			}
			r.send(&codec.Packet{Type: codec.PINGREQ})
			r.expect(codec.PINGRESP)
		})
	}
}

// TestConnectV3FirstPacketNotConnect: anything before CONNECT closes the
// connection without a reply [MQTT-3.1.0-1].
func TestConnectV3FirstPacketNotConnect(t *testing.T) {
	tb := startBroker(t, nil)
	for _, p := range []*codec.Packet{
		{Type: codec.PINGREQ},
		{Type: codec.PUBLISH, Topic: []byte("a"), Payload: []byte("x")},
		{Type: codec.SUBSCRIBE, PacketID: 1, Subscriptions: []codec.Subscription{{Filter: []byte("#")}}},
	} {
		t.Run(p.Type.String(), func(t *testing.T) {
			r := tb.v3Dial(t, codec.Version311)
			r.send(p)
			r.expectClosed()
		})
	}
}

// TestConnectV3SecondConnect: a second CONNECT is a protocol violation and
// closes the connection [MQTT-3.1.0-2].
func TestConnectV3SecondConnect(t *testing.T) {
	tb := startBroker(t, nil)
	for _, v := range []byte{codec.Version31, codec.Version311} {
		r, _ := tb.v3Connect(t, v, "twice", true)
		r.send(v3ConnectPacket(v, "twice", true, 0))
		r.expectClosed()
	}
}

// TestConnectV3Takeover: a CONNECT with a client id already connected closes
// the first connection [MQTT-3.1.4-2], whether the two connections are on
// the same event loop or on different ones; the second one resumes the
// session [MQTT-3.1.4-3].
func TestConnectV3Takeover(t *testing.T) {
	tb := startBroker(t, nil)
	for _, same := range []bool{true, false} {
		t.Run(fmt.Sprintf("sameLoop=%v", same), func(t *testing.T) {
			first := tb.v3Dial(t, codec.Version311)
			firstLoop := tb.loopOf(t, first.c.LocalAddr().String()) // before its CONNECT
			first.send(v3ConnectPacket(codec.Version311, "taken", false, 0))
			if ack := first.expect(codec.CONNACK); ack.ReasonCode != codec.Success {
				t.Fatalf("CONNACK return code 0x%02x, want 0", ack.ReasonCode)
			}
			first.subscribe(1, "takeover/t", 1)
			// The balancer places connections by load: dial until one lands
			// where this case wants it (the others stay open meanwhile).
			var second *v3Conn
			for i := 0; i < 10 && second == nil; i++ {
				c := tb.v3Dial(t, codec.Version311)
				if (tb.loopOf(t, c.c.LocalAddr().String()) == firstLoop) == same {
					second = c
				}
			}
			if second == nil {
				t.Fatal("no connection landed on the wanted loop")
			}
			second.send(v3ConnectPacket(codec.Version311, "taken", false, 0))
			ack := second.expect(codec.CONNACK)
			if ack.ReasonCode != 0 || !ack.SessionPresent {
				t.Fatalf("CONNACK code %d present %v, want 0 and present", ack.ReasonCode, ack.SessionPresent)
			}
			first.expectClosed()
			// The session, with its subscription, now belongs to the second.
			pub, _ := tb.v3Connect(t, codec.Version311, "", true)
			pub.publish("takeover/t", "hi", 1, 1, false)
			second.ack(second.expectPublish("takeover/t", "hi", 1, false))
			second.send(&codec.Packet{Type: codec.DISCONNECT})
			second.expectClosed()
		})
	}
}

// TestConnectV3Paho connects paho.mqtt.golang at 3.1 and 3.1.1 and checks a
// round trip through the broker.
func TestConnectV3Paho(t *testing.T) {
	tb := startBroker(t, nil)
	for _, v := range []uint{3, 4} {
		c := tb.v3Paho(t, v, "paho-"+string(rune('0'+v)), true)
		in := make(v3Inbox, 1)
		v3Token(t, c.Subscribe("paho/rt", 1, in.handler), "subscribe")
		v3Token(t, c.Publish("paho/rt", 1, false, "round trip"), "publish")
		if m := in.next(t); string(m.Payload()) != "round trip" {
			t.Fatalf("v%d: got %q", v, m.Payload())
		}
	}
}
