package loop

import (
	"fmt"
	"testing"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/midge-mqtt/midge/codec"
)

// TestPublishV3QoS sends at each QoS to a subscription of each maximum QoS:
// the publisher gets the acknowledgement flow of its QoS [MQTT-4.3.2-2]
// [MQTT-4.3.3-2], and the subscriber gets the message at the lower of the
// two [MQTT-3.8.4-6], completing its own flow with the broker.
func TestPublishV3QoS(t *testing.T) {
	tb := startBroker(t, nil)
	for _, v := range []byte{codec.Version31, codec.Version311} {
		for pubQoS := byte(0); pubQoS <= 2; pubQoS++ {
			for subQoS := byte(0); subQoS <= 2; subQoS++ {
				name := fmt.Sprintf("v%d/pub%d/sub%d", v, pubQoS, subQoS)
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					topic := "qos/" + name
					sub, _ := tb.v3Connect(t, v, "sub-"+name, true)
					sub.subscribe(1, topic, subQoS)
					pub, _ := tb.v3Connect(t, v, "pub-"+name, true)
					pub.publish(topic, "m", pubQoS, 9, false)
					want := min(pubQoS, subQoS)
					p := sub.expectPublish(topic, "m", want, false)
					if p.Dup {
						t.Fatal("DUP set on a first delivery [MQTT-3.3.1-3]")
					}
					if want > 0 && p.PacketID == 0 {
						t.Fatal("packet id 0 [MQTT-2.3.1-1]")
					}
					sub.ack(p)
					sub.expectQuiet()
				})
			}
		}
	}
}

// TestPublishV3QoS2ExactlyOnce: a QoS 2 PUBLISH resent with DUP and the same
// packet id before the PUBREL is acknowledged again but delivered only once
// [MQTT-4.3.3-2]; after PUBCOMP the id is free, and a new PUBLISH with it is
// a new message. (One resend on a connection is tolerated, as mosquitto
// does; a third copy is a protocol error: TestPublishQoS2ThirdCopy.)
func TestPublishV3QoS2ExactlyOnce(t *testing.T) {
	tb := startBroker(t, nil)
	sub, _ := tb.v3Connect(t, codec.Version311, "once-sub", true)
	sub.subscribe(1, "once", 2)
	pub, _ := tb.v3Connect(t, codec.Version311, "once-pub", true)

	for i := 0; i < 2; i++ {
		pub.send(&codec.Packet{Type: codec.PUBLISH, Topic: []byte("once"), Payload: []byte("first"),
			QoS: 2, PacketID: 42, Dup: i > 0})
		if rec := pub.expect(codec.PUBREC); rec.PacketID != 42 {
			t.Fatalf("PUBREC id %d, want 42", rec.PacketID)
		}
	}
	pub.send(&codec.Packet{Type: codec.PUBREL, PacketID: 42})
	if c := pub.expect(codec.PUBCOMP); c.PacketID != 42 {
		t.Fatalf("PUBCOMP id %d, want 42", c.PacketID)
	}
	// A PUBREL repeated after PUBCOMP is answered with PUBCOMP [MQTT-4.3.3-?]
	// and delivers nothing.
	pub.send(&codec.Packet{Type: codec.PUBREL, PacketID: 42})
	pub.expect(codec.PUBCOMP)

	sub.ack(sub.expectPublish("once", "first", 2, false))
	sub.expectQuiet()

	pub.publish("once", "second", 2, 42, false)
	sub.ack(sub.expectPublish("once", "second", 2, false))
	sub.expectQuiet()
}

// TestPublishV3OutgoingQoS2Flow checks the broker's side of a QoS 2 delivery:
// PUBREC is answered with PUBREL (flags 0010), and the message is not sent
// again once the flow completes [MQTT-4.3.3-?].
func TestPublishV3OutgoingQoS2Flow(t *testing.T) {
	tb := startBroker(t, nil)
	sub, _ := tb.v3Connect(t, codec.Version311, "flow-sub", true)
	sub.subscribe(1, "flow", 2)
	pub, _ := tb.v3Connect(t, codec.Version311, "flow-pub", true)
	pub.publish("flow", "x", 2, 1, false)
	p := sub.expectPublish("flow", "x", 2, false)
	sub.send(&codec.Packet{Type: codec.PUBREC, PacketID: p.PacketID})
	rel := sub.expect(codec.PUBREL)
	if rel.PacketID != p.PacketID || rel.Flags != 0x02 {
		t.Fatalf("PUBREL id %d flags %x, want id %d flags 2 [MQTT-3.6.1-1]", rel.PacketID, rel.Flags, p.PacketID)
	}
	sub.send(&codec.Packet{Type: codec.PUBCOMP, PacketID: p.PacketID})
	sub.expectQuiet()
}

// TestPublishV3OrderPaho: paho.mqtt.golang publishers at 3.1 and 3.1.1 send
// a sequence at each QoS; the subscriber sees it complete and in order
// [MQTT-4.6.0-5].
func TestPublishV3OrderPaho(t *testing.T) {
	tb := startBroker(t, nil)
	const n = 200
	for _, v := range []uint{3, 4} {
		for qos := byte(0); qos <= 2; qos++ {
			t.Run(fmt.Sprintf("v%d/qos%d", v, qos), func(t *testing.T) {
				topic := fmt.Sprintf("order/%d/%d", v, qos)
				in := make(v3Inbox, n)
				sub := tb.v3Paho(t, v, "osub"+topic, true)
				v3Token(t, sub.Subscribe(topic, 2, in.handler), "subscribe")
				pub := tb.v3Paho(t, v, "opub"+topic, true)
				toks := make([]mqtt.Token, n)
				for i := range toks {
					toks[i] = pub.Publish(topic, qos, false, fmt.Sprint(i))
				}
				for _, tok := range toks {
					v3Token(t, tok, "publish")
				}
				for i := 0; i < n; i++ {
					m := in.next(t)
					if string(m.Payload()) != fmt.Sprint(i) || m.Qos() != qos || m.Duplicate() {
						t.Fatalf("message %d: %q qos %d dup %v, want %d qos %d", i, m.Payload(), m.Qos(),
							m.Duplicate(), i, qos)
					}
				}
				in.quiet(t)
			})
		}
	}
}

// TestPublishV3OwnSubscription: no local is a v5 option [MQTT-3.8.3-3]; a
// v3 publisher subscribed to its own topic receives its own message.
func TestPublishV3OwnSubscription(t *testing.T) {
	tb := startBroker(t, nil)
	c, _ := tb.v3Connect(t, codec.Version311, "self", true)
	c.subscribe(1, "self/t", 1)
	c.send(&codec.Packet{Type: codec.PUBLISH, Topic: []byte("self/t"), Payload: []byte("echo"), QoS: 1, PacketID: 5})
	// The PUBACK and the delivery may come in either order.
	gotAck, gotPub := false, false
	for !gotAck || !gotPub {
		p, err := c.next(v3Wait)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		switch p.Type {
		case codec.PUBACK:
			gotAck = p.PacketID == 5
		case codec.PUBLISH:
			gotPub = string(p.Payload) == "echo"
			c.ack(p)
		}
	}
}
