package loop

import (
	"bytes"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/midge-mqtt/midge/codec"
)

// TestSubscribeV3Wildcards checks which topics each filter receives,
// including the rule that '#' and '+' at the first level do not match topics
// starting with '$' [MQTT-4.7.2-1].
func TestSubscribeV3Wildcards(t *testing.T) {
	tests := []struct {
		filter string
		match  []string
		miss   []string
	}{
		{"a/b", []string{"a/b"}, []string{"a", "a/b/c", "A/b", "a/b/"}},
		{"a/+", []string{"a/b", "a/"}, []string{"a", "a/b/c", "b/b"}},                // [MQTT-4.7.1-3]
		{"a/#", []string{"a", "a/b", "a/b/c", "a/"}, []string{"b", "ab"}},            // [MQTT-4.7.1-2]: "#" includes the parent
		{"+/+", []string{"a/b", "/b", "a/"}, []string{"a", "a/b/c", "$SYS/x"}},       // [MQTT-4.7.2-1]
		{"#", []string{"a", "/", "a/b/c"}, []string{"$SYS/broker/x", "$x"}},          // [MQTT-4.7.2-1]
		{"+/#", []string{"a", "a/b"}, []string{"$SYS/a"}},                            // [MQTT-4.7.2-1]
		{"$SYS/#", []string{"$SYS/broker/x", "$SYS"}, []string{"SYS/x", "a/$SYS/x"}}, // explicit '$' filters match
		{"$x/+", []string{"$x/a"}, []string{"$y/a"}},
		{"/+", []string{"/a"}, []string{"a", "a/b"}}, // a leading '/' makes an empty first level
	}
	tb := startBroker(t, nil)
	pub, _ := tb.v3Connect(t, codec.Version311, "wild-pub", true)
	for i, tt := range tests {
		t.Run(tt.filter, func(t *testing.T) {
			sub, _ := tb.v3Connect(t, codec.Version311, fmt.Sprintf("wild-%d", i), true)
			sub.subscribe(1, tt.filter, 0)
			sub.subscribe(2, "end/here", 0)
			// Misses go first and a sentinel last: one publisher's messages
			// reach a subscriber in order, so a miss delivered by mistake
			// shows up before a hit or the sentinel.
			for _, topic := range tt.miss {
				pub.publish(topic, "miss", 1, 1, false)
			}
			for _, topic := range tt.match {
				pub.publish(topic, "hit", 1, 1, false)
			}
			pub.publish("end/here", "end", 1, 1, false)
			for _, topic := range tt.match {
				sub.expectPublish(topic, "hit", 0, false)
			}
			sub.expectPublish("end/here", "end", 0, false)
		})
	}
}

// TestSubscribeV3Overlapping: a client whose subscriptions overlap gets one
// copy of a message, at the highest QoS of the matching subscriptions
// [MQTT-3.3.5-1].
func TestSubscribeV3Overlapping(t *testing.T) {
	tb := startBroker(t, nil)
	sub, _ := tb.v3Connect(t, codec.Version311, "over-sub", true)
	sub.subscribe(1, "over/#", 0)
	sub.subscribe(2, "over/+/c", 2)
	sub.subscribe(3, "over/b/c", 1)
	pub, _ := tb.v3Connect(t, codec.Version311, "over-pub", true)
	pub.publish("over/b/c", "once", 2, 1, false)
	sub.ack(sub.expectPublish("over/b/c", "once", 2, false))
	sub.expectQuiet()
	// Only "over/#" matches this one: QoS 0.
	pub.publish("over/x", "zero", 2, 2, false)
	sub.expectPublish("over/x", "zero", 0, false)
	sub.expectQuiet()
}

// TestSubscribeV3Replace: subscribing again to the same filter replaces the
// subscription (here its QoS) rather than adding one [MQTT-3.8.4-3].
func TestSubscribeV3Replace(t *testing.T) {
	tb := startBroker(t, nil)
	sub, _ := tb.v3Connect(t, codec.Version311, "repl-sub", true)
	sub.subscribe(1, "repl", 2)
	sub.subscribe(2, "repl", 0)
	if n := tb.Broker.Subscriptions(); n != 1 {
		t.Fatalf("%d subscriptions, want 1", n)
	}
	pub, _ := tb.v3Connect(t, codec.Version311, "repl-pub", true)
	pub.publish("repl", "x", 2, 1, false)
	sub.expectPublish("repl", "x", 0, false)
	sub.expectQuiet()
}

// TestSubscribeV3Suback: one SUBSCRIBE with several filters gets one SUBACK
// with the same packet id and one granted QoS per filter, in order
// [MQTT-3.8.4-1] [MQTT-3.8.4-2] [MQTT-3.8.4-5] [MQTT-3.9.3-1].
func TestSubscribeV3Suback(t *testing.T) {
	tb := startBroker(t, nil)
	for _, v := range []byte{codec.Version31, codec.Version311} {
		c, _ := tb.v3Connect(t, v, fmt.Sprintf("suback-%d", v), true)
		c.send(&codec.Packet{Type: codec.SUBSCRIBE, PacketID: 0x1234, Subscriptions: []codec.Subscription{
			{Filter: []byte("s/2"), QoS: 2}, {Filter: []byte("s/0"), QoS: 0}, {Filter: []byte("s/+/1"), QoS: 1}}})
		ack := c.expect(codec.SUBACK)
		if ack.PacketID != 0x1234 || !bytes.Equal(ack.ReasonCodes, []byte{2, 0, 1}) {
			t.Fatalf("v%d: SUBACK id %#x codes %v, want 0x1234 [2 0 1]", v, ack.PacketID, ack.ReasonCodes)
		}
	}
}

// TestSubscribeV3InvalidFilter: a malformed filter ("#" not last, wildcard
// inside a level) closes the connection [MQTT-4.7.1-1] [MQTT-4.7.1-2]
// [MQTT-4.8.0-1]; the broker stays up for others.
func TestSubscribeV3InvalidFilter(t *testing.T) {
	tb := startBroker(t, nil)
	for _, f := range []string{"a/#/b", "a+", "a/b#", ""} {
		t.Run(fmt.Sprintf("%q", f), func(t *testing.T) {
			c, _ := tb.v3Connect(t, codec.Version311, "", true)
			c.send(&codec.Packet{Type: codec.SUBSCRIBE, PacketID: 1,
				Subscriptions: []codec.Subscription{{Filter: []byte(f)}}})
			c.expectClosed()
		})
	}
	c, _ := tb.v3Connect(t, codec.Version311, "still-up", true)
	c.subscribe(1, "ok", 0)
}

// TestSubscribeV3Unsubscribe: UNSUBSCRIBE is answered with an UNSUBACK of
// the same packet id, even for a filter that was not subscribed
// [MQTT-3.10.4-4] [MQTT-3.10.4-5], and stops delivery for the filter it
// names only [MQTT-3.10.4-1] [MQTT-3.10.4-2].
func TestSubscribeV3Unsubscribe(t *testing.T) {
	tb := startBroker(t, nil)
	for _, v := range []byte{codec.Version31, codec.Version311} {
		id := fmt.Sprintf("unsub-%d", v)
		sub, _ := tb.v3Connect(t, v, id, true)
		sub.subscribe(1, id+"/a", 1)
		sub.subscribe(2, id+"/b", 1)
		sub.send(&codec.Packet{Type: codec.UNSUBSCRIBE, PacketID: 77,
			Filters: [][]byte{[]byte(id + "/a"), []byte("never/subscribed")}})
		ack := sub.expect(codec.UNSUBACK)
		if ack.PacketID != 77 || len(ack.ReasonCodes) != 0 {
			t.Fatalf("v%d: UNSUBACK id %d codes %v, want 77 and no codes in v3", v, ack.PacketID, ack.ReasonCodes)
		}
		pub, _ := tb.v3Connect(t, v, id+"-pub", true)
		pub.publish(id+"/a", "gone", 1, 1, false)
		pub.publish(id+"/b", "kept", 1, 2, false)
		sub.ack(sub.expectPublish(id+"/b", "kept", 1, false))
		sub.expectQuiet()
	}
}

// TestSubscribeV3Ping: PINGREQ gets PINGRESP, exactly 0xd0 0x00 [MQTT-3.12.4-1].
func TestSubscribeV3Ping(t *testing.T) {
	tb := startBroker(t, nil)
	c, _ := tb.v3Connect(t, codec.Version311, "ping", true)
	c.write([]byte{0xc0, 0})
	got := make([]byte, 2)
	_ = c.c.SetReadDeadline(time.Now().Add(v3Wait))
	if _, err := io.ReadFull(c.c, got); err != nil || !bytes.Equal(got, []byte{0xd0, 0}) {
		t.Fatalf("PINGRESP % x (%v), want d0 00", got, err)
	}
}
