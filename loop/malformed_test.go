package loop

import (
	"math/rand"
	"strings"
	"testing"
	"time"

	"github.com/midge-mqtt/midge/codec"
)

// observer is a connected client that checks the broker still serves
// others: a PINGREQ is answered and its own QoS 1 message comes back.
type observer struct{ r *rawConn }

func (tb *testBroker) observer(t testing.TB) observer {
	t.Helper()
	r := tb.rawV5(t, "observer", nil)
	r.subscribe(1, codec.Subscription{Filter: []byte("obs"), QoS: 1}, 0)
	return observer{r}
}

func (o observer) check(t testing.TB, id uint16) {
	t.Helper()
	o.r.t = t
	o.r.send(&codec.Packet{Type: codec.PINGREQ})
	o.r.expect(codec.PINGRESP)
	o.r.send(&codec.Packet{Type: codec.PUBLISH, QoS: 1, PacketID: id, Topic: []byte("obs"), Payload: []byte("ok")})
	got := 0
	for got != 3 { // PUBACK and the message (either order), then ack it
		p, err := o.r.next(v5Wait)
		if err != nil {
			t.Fatalf("observer: %v", err)
		}
		switch p.Type {
		case codec.PUBACK:
			got |= 1
		case codec.PUBLISH:
			got |= 2
			o.r.send(&codec.Packet{Type: codec.PUBACK, PacketID: p.PacketID})
		default:
			t.Fatalf("observer got %v", p.Type)
		}
	}
}

// badPacketLines counts the broker's log lines about a refused packet
// from client id.
func (tb *testBroker) badPacketLines(id string) int {
	n := 0
	for _, l := range strings.Split(tb.logs.String(), "\n") {
		if strings.Contains(l, "Client "+id+" ") && strings.Contains(l, "bad packet") {
			n++
		}
	}
	return n
}

// TestMalformedVectors sends each malformed codec vector after a CONNECT of
// its protocol level and checks that only that connection ends: a v5 client
// gets DISCONNECT with the vector's reason code [MQTT-4.13.2-1], a v3 client
// is closed without an answer [MQTT-4.8.0-1]; one line is logged; the
// observer is unaffected. Among them: remaining length over 4 bytes
// [MQTT-1.5.5], reserved flags [MQTT-2.1.3-1], QoS 3 [MQTT-3.3.1-4], DUP on
// QoS 0 [MQTT-3.3.1-2], packet id 0 [MQTT-2.2.1-3], invalid UTF-8 and U+0000
// [MQTT-1.5.4-1/2], wildcards in a topic name [MQTT-3.3.2-2], bad filters
// [MQTT-4.7.1], duplicate properties, fields longer than the packet and
// bytes after its end.
func TestMalformedVectors(t *testing.T) {
	t.Parallel()
	tb := startBroker(t, nil)
	obs := tb.observer(t)
	n := 0
	for i, v := range codec.Vectors() {
		if !v.Invalid || v.MaxPacketSize > 0 || v.Version == codec.Version31 ||
			strings.HasPrefix(v.Name, "Connect") {
			continue
		}
		n++
		t.Run(v.Name, func(t *testing.T) {
			id := "mal-" + v.Name
			r := tb.raw(t, v.Version)
			if ack := r.connect(connectPacket(v.Version, id, true)); ack.ReasonCode != 0 {
				t.Fatalf("CONNACK 0x%02x", ack.ReasonCode)
			}
			r.write(v.Raw)
			if v.Version == codec.Version5 {
				r.expectDisconnect(v.Reason)
			} else {
				r.expectClosed()
			}
			waitFor(t, func() bool { return tb.badPacketLines(id) > 0 })
			if n := tb.badPacketLines(id); n != 1 {
				t.Fatalf("%d log lines about the bad packet, want 1", n)
			}
			obs.check(t, uint16(i+1))
		})
	}
	if n < 40 {
		t.Fatalf("only %d malformed vectors sent", n)
	}
}

// TestMalformedConnect sends each malformed CONNECT vector as the first
// packet: a v5 CONNECT is refused with a CONNACK carrying the vector's
// reason code [MQTT-3.2.2-6/7], a v3 one with CONNACK 0x01 for a bad
// protocol [MQTT-3.1.2-2] or a close; the observer is unaffected.
func TestMalformedConnect(t *testing.T) {
	t.Parallel()
	tb := startBroker(t, nil)
	obs := tb.observer(t)
	for i, v := range codec.Vectors() {
		if !v.Invalid || !strings.HasPrefix(v.Name, "ConnectMal") {
			continue
		}
		t.Run(v.Name, func(t *testing.T) {
			level := connectLevel(v.Raw)
			r := tb.raw(t, level)
			r.write(v.Raw)
			p, err := r.next(v5Wait)
			switch {
			case err != nil:
				if level == codec.Version5 || !isClosedErr(err) {
					t.Fatalf("no CONNACK: %v", err)
				}
				return
			case p.Type != codec.CONNACK:
				t.Fatalf("got %v, want CONNACK", p.Type)
			case level == codec.Version5 && p.ReasonCode != v.Reason:
				t.Fatalf("CONNACK reason 0x%02x, want 0x%02x", p.ReasonCode, v.Reason)
			case level != codec.Version5 && p.ReasonCode != codec.ConnRefusedProtocolVersion:
				t.Fatalf("v3 CONNACK code 0x%02x, want 0x01", p.ReasonCode)
			}
			r.expectClosed()
			obs.check(t, uint16(i+1))
		})
	}
}

// TestMalformedFirstPacketNotConnect checks that a first packet other than
// CONNECT closes the connection [MQTT-3.1.0-1].
func TestMalformedFirstPacketNotConnect(t *testing.T) {
	t.Parallel()
	tb := startBroker(t, nil)
	r := tb.raw(t, codec.Version311)
	r.send(&codec.Packet{Type: codec.PINGREQ})
	r.expectClosed()
}

// TestMalformedFuzz throws every invalid codec vector and seeded random
// bytes at the broker, before and after a CONNECT, without reading, and
// checks that it keeps serving: no panic, no stuck loop.
func TestMalformedFuzz(t *testing.T) {
	t.Parallel()
	tb := startBroker(t, nil)
	obs := tb.observer(t)
	rng := rand.New(rand.NewSource(4))
	var inputs [][]byte
	for _, v := range codec.Vectors() {
		if v.Invalid {
			inputs = append(inputs, v.Raw)
		}
	}
	for i := 0; i < 150; i++ {
		b := make([]byte, 1+rng.Intn(300))
		rng.Read(b)
		if i%3 == 0 {
			b[0] = byte(1+rng.Intn(15)) << 4 // a real packet type, so decoding goes deeper
		}
		inputs = append(inputs, b)
	}
	connects := [][]byte{nil,
		connectPacket(codec.Version311, "", true).Encode(nil, 0),
		connectPacket(codec.Version5, "", true).Encode(nil, 0)}
	for i, in := range inputs {
		c := tb.dial(t)
		_ = c.SetWriteDeadline(time.Now().Add(v5Wait))
		_, _ = c.Write(append(append([]byte(nil), connects[i%3]...), in...))
		c.Close()
		if i%50 == 0 {
			obs.check(t, uint16(i+1))
		}
	}
	obs.check(t, 60000)
	// Every socket we closed is closed by the broker too: only the observer is left.
	waitFor(t, func() bool { return tb.Server.conns.Load() == 1 })
}

// waitFor polls cond until it holds, for at most v5Wait.
func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(v5Wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
