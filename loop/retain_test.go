package loop

import (
	"fmt"
	"testing"

	"github.com/midge-mqtt/midge/codec"
)

// TestRetainV3 walks a retained topic through set, replace and clear, and
// checks how each subscriber sees it.
func TestRetainV3(t *testing.T) {
	tb := startBroker(t, nil)
	pub, _ := tb.v3Connect(t, codec.Version311, "ret-pub", true)

	// Set: a subscriber that arrives later gets it with RETAIN=1
	// [MQTT-3.3.1-5] [MQTT-3.3.1-8].
	pub.publish("ret/a", "one", 1, 1, true)
	if n := tb.Broker.Stats.RetainedMessages.Load(); n != 1 {
		t.Fatalf("retained count %d, want 1", n)
	}
	s1, _ := tb.v3Connect(t, codec.Version311, "ret-s1", true)
	s1.subscribe(1, "ret/#", 1)
	s1.ack(s1.expectPublish("ret/a", "one", 1, true))
	s1.expectQuiet()

	// Live delivery to an existing subscription has RETAIN=0 [MQTT-3.3.1-9].
	// (3.1.1 numbering; [MQTT-3.3.1-12] in v5.)
	pub.publish("ret/a", "two", 1, 2, true)
	s1.ack(s1.expectPublish("ret/a", "two", 1, false))

	// Replace: only the latest is kept [MQTT-3.3.1-5].
	s2, _ := tb.v3Connect(t, codec.Version311, "ret-s2", true)
	s2.subscribe(1, "ret/a", 1)
	s2.ack(s2.expectPublish("ret/a", "two", 1, true))
	s2.expectQuiet()

	// A non-retained publish does not replace the retained message
	// [MQTT-3.3.1-7].
	pub.publish("ret/a", "plain", 1, 3, false)
	s1.ack(s1.expectPublish("ret/a", "plain", 1, false))
	s2.ack(s2.expectPublish("ret/a", "plain", 1, false))
	s3, _ := tb.v3Connect(t, codec.Version311, "ret-s3", true)
	s3.subscribe(1, "ret/a", 1)
	s3.ack(s3.expectPublish("ret/a", "two", 1, true))

	// Clear: an empty retained payload removes it [MQTT-3.3.1-10]; it is
	// still delivered live to current subscribers, as a normal message.
	pub.publish("ret/a", "", 1, 4, true)
	s1.ack(s1.expectPublish("ret/a", "", 1, false))
	if n := tb.Broker.Stats.RetainedMessages.Load(); n != 0 {
		t.Fatalf("retained count %d after clear, want 0", n)
	}
	s4, _ := tb.v3Connect(t, codec.Version311, "ret-s4", true)
	s4.subscribe(1, "ret/#", 1)
	s4.expectQuiet() // nothing retained is ever stored for an empty payload [MQTT-3.3.1-11]
}

// TestRetainV3QoS: a retained message is sent on subscribe at the lower of
// its QoS and the subscription's [MQTT-3.8.4-6], and a wildcard subscription
// gets every matching retained topic.
func TestRetainV3QoS(t *testing.T) {
	tb := startBroker(t, nil)
	pub, _ := tb.v3Connect(t, codec.Version31, "retq-pub", true)
	pub.publish("rq/0", "q0", 0, 0, true)
	pub.publish("rq/1", "q1", 1, 1, true)
	pub.publish("rq/2", "q2", 2, 2, true)
	for subQoS := byte(0); subQoS <= 2; subQoS++ {
		sub, _ := tb.v3Connect(t, codec.Version31, fmt.Sprintf("retq-%d", subQoS), true)
		sub.subscribe(1, "rq/+", subQoS)
		got := map[string]byte{}
		for i := 0; i < 3; i++ {
			p := sub.expect(codec.PUBLISH)
			if !p.Retain {
				t.Fatalf("retained %q sent with RETAIN=0 [MQTT-3.3.1-8]", p.Topic)
			}
			got[string(p.Topic)] = p.QoS
			sub.ack(p)
		}
		for i, topic := range []string{"rq/0", "rq/1", "rq/2"} {
			if want := min(byte(i), subQoS); got[topic] != want {
				t.Fatalf("sub QoS %d: %s at QoS %d, want %d", subQoS, topic, got[topic], want)
			}
		}
		sub.expectQuiet()
	}
}

// TestRetainV3Resubscribe: subscribing again to an existing filter sends the
// retained messages again [MQTT-3.8.4-3].
func TestRetainV3Resubscribe(t *testing.T) {
	tb := startBroker(t, nil)
	pub, _ := tb.v3Connect(t, codec.Version311, "rr-pub", true)
	pub.publish("rr", "kept", 0, 0, true)
	// QoS 0 has no ack: a PINGRESP on the same connection shows the PUBLISH
	// was handled before the subscriber (maybe on the other loop) subscribes.
	pub.send(&codec.Packet{Type: codec.PINGREQ})
	pub.expect(codec.PINGRESP)
	sub, _ := tb.v3Connect(t, codec.Version311, "rr-sub", true)
	for i := uint16(1); i <= 2; i++ {
		sub.subscribe(i, "rr", 0)
		sub.expectPublish("rr", "kept", 0, true)
	}
	sub.expectQuiet()
}
