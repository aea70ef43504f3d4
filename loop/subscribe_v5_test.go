package loop

import (
	"slices"
	"testing"

	"github.com/eclipse/paho.golang/paho"

	"github.com/midge-mqtt/midge/codec"
)

// TestSubscribeV5SubscriptionIDs checks that a message matching several of
// a client's subscriptions carries the identifier of each matching
// subscription that has one, whether sent once or once per subscription
// [MQTT-3.3.4-3/4/5], and none for a subscription without one.
func TestSubscribeV5SubscriptionIDs(t *testing.T) {
	t.Parallel()
	tb := startBroker(t, nil)
	sub := tb.rawV5(t, "ids", nil)
	sub.subscribe(1, codec.Subscription{Filter: []byte("sid/+")}, 1)
	sub.subscribe(2, codec.Subscription{Filter: []byte("sid/#")}, 2)
	sub.subscribe(3, codec.Subscription{Filter: []byte("sid/a")}, 0)
	sub.subscribe(4, codec.Subscription{Filter: []byte("other/+")}, 300000) // a multi-byte varint
	pub := tb.rawV5(t, "", nil)

	pub.publish("sid/a", "x", 0, 0, nil)
	// One PUBLISH per subscription, or fewer carrying several ids: every
	// id of a matching subscription must come, each once.
	var ids []uint32
	for len(ids) < 2 {
		m := sub.expect(codec.PUBLISH)
		ids = append(ids, m.Props.SubscriptionIDs...)
	}
	sub.expectQuiet() // at most the copy for sid/a (no id) is left
	slices.Sort(ids)
	if !slices.Equal(ids, []uint32{1, 2}) {
		t.Fatalf("subscription ids %v, want [1 2]", ids)
	}

	pub.publish("other/b", "y", 0, 0, nil)
	if m := sub.expect(codec.PUBLISH); !slices.Equal(m.Props.SubscriptionIDs, []uint32{300000}) {
		t.Fatalf("subscription ids %v, want [300000]", m.Props.SubscriptionIDs)
	}

	// Subscribing again replaces the identifier [MQTT-3.8.4-3]; retained
	// messages sent because of the subscribe carry it too.
	pub.send(&codec.Packet{Type: codec.PUBLISH, Topic: []byte("other/r"), Payload: []byte("r"), Retain: true})
	if m := sub.expect(codec.PUBLISH); !slices.Equal(m.Props.SubscriptionIDs, []uint32{300000}) {
		t.Fatalf("subscription ids %v, want [300000]", m.Props.SubscriptionIDs)
	}
	sub.subscribe(5, codec.Subscription{Filter: []byte("other/+")}, 9)
	if m := sub.expect(codec.PUBLISH); !m.Retain || !slices.Equal(m.Props.SubscriptionIDs, []uint32{9}) {
		t.Fatalf("retained message: retain %v subscription ids %v, want [9]", m.Retain, m.Props.SubscriptionIDs)
	}
	pub.publish("other/c", "z", 0, 0, nil)
	if m := sub.expect(codec.PUBLISH); !slices.Equal(m.Props.SubscriptionIDs, []uint32{9}) {
		t.Fatalf("subscription ids %v, want [9]", m.Props.SubscriptionIDs)
	}
}

// TestSubscribeV5NoLocal checks that with No Local a client does not get
// its own messages, while others do [MQTT-3.8.3-3].
func TestSubscribeV5NoLocal(t *testing.T) {
	t.Parallel()
	tb := startBroker(t, nil)
	me, _ := tb.paho(t, &paho.Connect{ClientID: "me", CleanStart: true}, false)
	other, _ := tb.paho(t, &paho.Connect{ClientID: "other", CleanStart: true}, false)
	me.sub(t, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "nl", QoS: 1, NoLocal: true}}})
	other.sub(t, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "nl", QoS: 1}}})
	me.pub(t, &paho.Publish{Topic: "nl", QoS: 1, Payload: []byte("mine")})
	other.pub(t, &paho.Publish{Topic: "nl", QoS: 1, Payload: []byte("theirs")})
	if m := me.recv(t); string(m.Payload) != "theirs" {
		t.Fatalf("no-local subscriber got %q", m.Payload)
	}
	me.quiet(t)
	for _, want := range []string{"mine", "theirs"} {
		if m := other.recv(t); string(m.Payload) != want {
			t.Fatalf("got %q, want %q", m.Payload, want)
		}
	}
}

// TestSubscribeV5RetainAsPublished checks the RETAIN flag of forwarded
// messages: cleared unless Retain As Published is set [MQTT-3.3.1-12/13],
// and always set on retained messages sent because of a subscribe
// [MQTT-3.3.1-9].
func TestSubscribeV5RetainAsPublished(t *testing.T) {
	t.Parallel()
	tb := startBroker(t, nil)
	rap := tb.rawV5(t, "rap", nil)
	plain := tb.rawV5(t, "plain", nil)
	rap.subscribe(1, codec.Subscription{Filter: []byte("rp"), RetainAsPublished: true}, 0)
	plain.subscribe(1, codec.Subscription{Filter: []byte("rp")}, 0)
	pub := tb.rawV5(t, "", nil)
	pub.send(&codec.Packet{Type: codec.PUBLISH, Topic: []byte("rp"), Payload: []byte("r"), Retain: true})
	if m := rap.expect(codec.PUBLISH); !m.Retain {
		t.Fatal("retain-as-published subscriber got RETAIN 0")
	}
	if m := plain.expect(codec.PUBLISH); m.Retain {
		t.Fatal("plain subscriber got RETAIN 1 on a live message")
	}
	late := tb.rawV5(t, "late", nil)
	late.subscribe(1, codec.Subscription{Filter: []byte("rp")}, 0)
	if m := late.expect(codec.PUBLISH); !m.Retain || string(m.Payload) != "r" {
		t.Fatalf("retained message %q with RETAIN %v", m.Payload, m.Retain)
	}
}

// TestSubscribeV5RetainHandling checks Retain Handling: 0 sends retained
// messages on every subscribe, 1 only when the subscription is new, 2 never
// [MQTT-3.3.1-9/10/11].
func TestSubscribeV5RetainHandling(t *testing.T) {
	t.Parallel()
	tb := startBroker(t, nil)
	pub := tb.rawV5(t, "", nil)
	pub.send(&codec.Packet{Type: codec.PUBLISH, Topic: []byte("rh"), Payload: []byte("kept"), Retain: true})
	pub.subscribe(1, codec.Subscription{Filter: []byte("rh")}, 0) // the retained message is stored
	pub.expect(codec.PUBLISH)
	tests := []struct {
		handling     byte
		first, again bool // retained message sent on the first and the repeated subscribe
	}{{0, true, true}, {1, true, false}, {2, false, false}}
	for _, tt := range tests {
		r := tb.rawV5(t, "", nil)
		for i, want := range []bool{tt.first, tt.again} {
			r.subscribe(uint16(i+1), codec.Subscription{Filter: []byte("rh"), RetainHandling: tt.handling}, 0)
			if want {
				if m := r.expect(codec.PUBLISH); string(m.Payload) != "kept" || !m.Retain {
					t.Fatalf("handling %d: got %q retain %v", tt.handling, m.Payload, m.Retain)
				}
			} else {
				r.expectQuiet()
			}
		}
	}
}

// TestUnsubscribeV5ReasonCodes checks the UNSUBACK reason codes: 0x00 for
// a removed subscription, 0x11 when none existed [MQTT-3.11.3-1], one per
// filter in order [MQTT-3.11.3-2].
func TestUnsubscribeV5ReasonCodes(t *testing.T) {
	t.Parallel()
	tb := startBroker(t, nil)
	r := tb.rawV5(t, "", nil)
	r.subscribe(1, codec.Subscription{Filter: []byte("u/a")}, 0)
	r.send(&codec.Packet{Type: codec.UNSUBSCRIBE, PacketID: 9,
		Filters: [][]byte{[]byte("u/none"), []byte("u/a"), []byte("u/a")}})
	ack := r.expect(codec.UNSUBACK)
	want := []byte{codec.NoSubscriptionExisted, codec.Success, codec.NoSubscriptionExisted}
	if ack.PacketID != 9 || !slices.Equal(ack.ReasonCodes, want) {
		t.Fatalf("UNSUBACK id %d codes % x, want id 9 codes % x", ack.PacketID, ack.ReasonCodes, want)
	}
	r.publish("u/a", "gone", 0, 0, nil)
	r.expectQuiet()
}
