package loop

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/session"
)

// TestPublishV5ReceiveMaximumOut checks that the broker has at most the
// client's Receive Maximum of QoS 1 and 2 messages unacknowledged, and sends
// the next one when one is acknowledged [MQTT-3.3.4-9].
func TestPublishV5ReceiveMaximumOut(t *testing.T) {
	t.Parallel()
	tb := startBroker(t, nil)
	for _, qos := range []byte{1, 2} {
		t.Run(fmt.Sprintf("QoS%d", qos), func(t *testing.T) {
			topic := fmt.Sprintf("rm/%d", qos)
			sub := tb.rawV5(t, "", func(p *codec.Properties) {
				p.ReceiveMaximum = 2
				p.Set(codec.PropReceiveMaximum)
			})
			sub.subscribe(1, codec.Subscription{Filter: []byte(topic), QoS: qos}, 0)
			pub := tb.rawV5(t, "", nil)
			for i := 1; i <= 5; i++ {
				pub.publish(topic, fmt.Sprint(i), qos, uint16(i), nil)
			}
			var ids []uint16
			for i := 1; i <= 2; i++ {
				m := sub.expect(codec.PUBLISH)
				if string(m.Payload) != fmt.Sprint(i) {
					t.Fatalf("message %q, want %d", m.Payload, i)
				}
				ids = append(ids, m.PacketID)
			}
			sub.expectQuiet() // the window is full
			for i := 3; i <= 5; i++ {
				id := ids[0]
				ids = ids[1:]
				if qos == 1 {
					sub.send(&codec.Packet{Type: codec.PUBACK, PacketID: id})
				} else {
					sub.send(&codec.Packet{Type: codec.PUBREC, PacketID: id})
					if rel := sub.expect(codec.PUBREL); rel.PacketID != id {
						t.Fatalf("PUBREL id %d, want %d", rel.PacketID, id)
					}
					sub.expectQuiet() // still in flight until PUBCOMP
					sub.send(&codec.Packet{Type: codec.PUBCOMP, PacketID: id})
				}
				m := sub.expect(codec.PUBLISH)
				if string(m.Payload) != fmt.Sprint(i) {
					t.Fatalf("message %q, want %d", m.Payload, i)
				}
				ids = append(ids, m.PacketID)
			}
		})
	}
}

// TestPublishV5ReceiveMaximumIn checks that a client with more QoS 2
// PUBLISHes unacknowledged than the broker's Receive Maximum is disconnected
// with 0x93 [MQTT-3.3.4-9] (QoS 1 is acknowledged at once, so it never
// accumulates).
func TestPublishV5ReceiveMaximumIn(t *testing.T) {
	t.Parallel()
	opts := session.DefaultOptions()
	opts.MaxInflight = 2
	tb := startBroker(t, &opts)
	r := tb.raw(t, codec.Version5)
	ack := r.connect(connectPacket(codec.Version5, "greedy", true))
	if !ack.Props.Has(codec.PropReceiveMaximum) || ack.Props.ReceiveMaximum != 2 {
		t.Fatalf("CONNACK receive maximum %d", ack.Props.ReceiveMaximum)
	}
	for id := uint16(1); id <= 2; id++ {
		r.send(&codec.Packet{Type: codec.PUBLISH, QoS: 2, PacketID: id, Topic: []byte("rmi")})
		r.expect(codec.PUBREC)
	}
	r.send(&codec.Packet{Type: codec.PUBLISH, QoS: 2, PacketID: 3, Topic: []byte("rmi")})
	r.expectDisconnect(codec.ReceiveMaximumExceeded)
}

// TestPublishV5MaximumPacketSizeOut checks that the broker never sends a
// client a packet over its Maximum Packet Size: such a message is dropped
// for that client only [MQTT-3.1.2-25].
func TestPublishV5MaximumPacketSizeOut(t *testing.T) {
	t.Parallel()
	tb := startBroker(t, nil)
	small := tb.rawV5(t, "small", func(p *codec.Properties) {
		p.MaximumPacketSize = 64
		p.Set(codec.PropMaximumPacketSize)
	})
	big := tb.rawV5(t, "big", nil)
	for _, r := range []*rawConn{small, big} {
		r.subscribe(1, codec.Subscription{Filter: []byte("mps"), QoS: 1}, 0)
	}
	pub := tb.rawV5(t, "", nil)
	pub.publish("mps", "short", 1, 1, nil)
	pub.publish("mps", strings.Repeat("L", 100), 1, 2, nil)
	pub.publish("mps", "end", 1, 3, nil)
	for _, want := range []string{"short", "end"} {
		m := small.expect(codec.PUBLISH)
		if string(m.Payload) != want {
			t.Fatalf("small client got %q, want %q", m.Payload, want)
		}
		small.send(&codec.Packet{Type: codec.PUBACK, PacketID: m.PacketID})
	}
	for _, want := range []string{"short", strings.Repeat("L", 100), "end"} {
		m := big.expect(codec.PUBLISH)
		if string(m.Payload) != want {
			t.Fatalf("big client got %q, want %q", m.Payload, want)
		}
		big.send(&codec.Packet{Type: codec.PUBACK, PacketID: m.PacketID})
	}
}

// TestPublishV5MaximumPacketSizeIn checks that a packet over the broker's
// maximum packet size ends the connection with DISCONNECT 0x95, and that
// the CONNACK announced the limit [MQTT-3.2.2-15].
func TestPublishV5MaximumPacketSizeIn(t *testing.T) {
	t.Parallel()
	opts := session.DefaultOptions()
	opts.MaxPacketSize = 128
	tb := startBroker(t, &opts)
	other := tb.rawV5(t, "other", nil)
	r := tb.raw(t, codec.Version5)
	ack := r.connect(connectPacket(codec.Version5, "fat", true))
	if !ack.Props.Has(codec.PropMaximumPacketSize) || ack.Props.MaximumPacketSize != 128 {
		t.Fatalf("CONNACK maximum packet size %d", ack.Props.MaximumPacketSize)
	}
	r.publish("fit", strings.Repeat("x", 100), 1, 1, nil)
	r.send(&codec.Packet{Type: codec.PUBLISH, Topic: []byte("fat"), Payload: make([]byte, 200)})
	r.expectDisconnect(codec.PacketTooLarge)
	other.send(&codec.Packet{Type: codec.PINGREQ})
	other.expect(codec.PINGRESP)
}

// TestPublishV5TopicAlias checks inbound topic aliases: an alias set with a
// topic is used by a later PUBLISH with an empty topic [MQTT-3.3.2-12], and
// subscribers always get the full topic.
func TestPublishV5TopicAlias(t *testing.T) {
	t.Parallel()
	tb := startBroker(t, nil)
	sub := tb.rawV5(t, "", nil)
	sub.subscribe(1, codec.Subscription{Filter: []byte("ta/#")}, 0)
	pub := tb.rawV5(t, "", nil)
	alias := func(a uint16) func(*codec.Properties) {
		return func(p *codec.Properties) { p.TopicAlias = a; p.Set(codec.PropTopicAlias) }
	}
	pub.publish("ta/one", "1", 0, 0, alias(1))
	pub.publish("", "2", 0, 0, alias(1))
	pub.publish("ta/two", "3", 0, 0, alias(1)) // an alias can be redefined
	pub.publish("", "4", 0, 0, alias(1))
	for _, want := range []string{"ta/one 1", "ta/one 2", "ta/two 3", "ta/two 4"} {
		m := sub.expect(codec.PUBLISH)
		if got := string(m.Topic) + " " + string(m.Payload); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
		if m.Props.Has(codec.PropTopicAlias) {
			t.Fatal("inbound alias forwarded to a subscriber")
		}
	}
}

// TestPublishV5TopicAliasInvalid checks the refusal of bad aliases: 0 or
// over the maximum is 0x94 [MQTT-3.3.2-8/9], an alias never set is a
// protocol error 0x82 [MQTT-3.3.4-?].
func TestPublishV5TopicAliasInvalid(t *testing.T) {
	t.Parallel()
	tb := startBroker(t, nil) // max_topic_alias 10
	tests := []struct {
		name  string
		topic string
		alias uint16
		want  byte
	}{
		{"Zero", "a", 0, codec.TopicAliasInvalid},
		{"OverMax", "a", 11, codec.TopicAliasInvalid},
		{"Unknown", "", 5, codec.ProtocolError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tb.rawV5(t, "", nil)
			p := &codec.Packet{Type: codec.PUBLISH, Topic: []byte(tt.topic), Payload: []byte("x")}
			p.Props.TopicAlias = tt.alias
			p.Props.Set(codec.PropTopicAlias)
			r.send(p)
			r.expectDisconnect(tt.want)
		})
	}
}

// TestPublishV5MessageExpiry checks that a message whose expiry interval
// passed while queued for an offline session, or while retained, is not
// delivered [MQTT-3.3.2-5], and that a delivered one carries what remains of
// its interval [MQTT-3.3.2-6]; an expired QoS 1/2 message used its packet id.
func TestPublishV5MessageExpiry(t *testing.T) {
	t.Parallel()
	tb := startBroker(t, nil)
	persistent := func(p *codec.Properties) { p.SessionExpiry = 60; p.Set(codec.PropSessionExpiry) }
	sub := tb.rawV5(t, "expiring", persistent)
	sub.subscribe(1, codec.Subscription{Filter: []byte("exp"), QoS: 1}, 0)
	sub.send(&codec.Packet{Type: codec.DISCONNECT})
	sub.expectClosed()

	expiry := func(s uint32) func(*codec.Properties) {
		return func(p *codec.Properties) { p.MessageExpiry = s; p.Set(codec.PropMessageExpiry) }
	}
	pub := tb.rawV5(t, "", nil)
	pub.publish("exp", "short", 1, 1, expiry(1))
	pub.publish("exp", "long", 1, 2, expiry(60))
	pub.publish("exp", "forever", 1, 3, nil)
	retained := &codec.Packet{Type: codec.PUBLISH, Retain: true, Topic: []byte("exp/retained"), Payload: []byte("r")}
	expiry(1)(&retained.Props)
	pub.send(retained)
	pub.subscribe(4, codec.Subscription{Filter: []byte("exp/retained")}, 0) // stored before the wait
	pub.expect(codec.PUBLISH)
	time.Sleep(1100 * time.Millisecond) // let the 1 s interval pass

	// An expired retained message is not sent on subscribe either.
	late := tb.rawV5(t, "", nil)
	late.subscribe(1, codec.Subscription{Filter: []byte("exp/retained")}, 0)
	late.expectQuiet()

	r := tb.raw(t, codec.Version5)
	p := connectPacket(codec.Version5, "expiring", false)
	persistent(&p.Props)
	if ack := r.connect(p); !ack.SessionPresent {
		t.Fatal("session not resumed")
	}
	m := r.expect(codec.PUBLISH)
	if string(m.Payload) != "long" {
		t.Fatalf("first message %q, want long (short expired)", m.Payload)
	}
	// The expired one used packet id 1, as mosquitto numbers messages when
	// it queues them (its 03-publish-qos1-max-inflight-expire test).
	if m.PacketID != 2 {
		t.Fatalf("first delivered packet id %d, want 2", m.PacketID)
	}
	if !m.Props.Has(codec.PropMessageExpiry) || m.Props.MessageExpiry > 59 || m.Props.MessageExpiry < 50 {
		t.Fatalf("forwarded expiry %d (present %v), want what remains of 60", m.Props.MessageExpiry,
			m.Props.Has(codec.PropMessageExpiry))
	}
	m = r.expect(codec.PUBLISH)
	if string(m.Payload) != "forever" || m.Props.Has(codec.PropMessageExpiry) {
		t.Fatalf("message %q with expiry %v, want forever without", m.Payload, m.Props.Has(codec.PropMessageExpiry))
	}
}

// TestPublishV5NoMatchingSubscribers checks the PUBACK reason 0x10 when no
// subscription matches, and 0x00 when one does [MQTT-3.4.2.1], even if it is
// skipped for No Local; a PUBREC is a success either way (0x10 is optional
// there [MQTT-3.5.2-1]): the codes mosquitto sends.
func TestPublishV5NoMatchingSubscribers(t *testing.T) {
	t.Parallel()
	tb := startBroker(t, nil)
	r := tb.rawV5(t, "", nil)
	r.send(&codec.Packet{Type: codec.PUBLISH, QoS: 1, PacketID: 1, Topic: []byte("nobody")})
	if a := r.expect(codec.PUBACK); a.ReasonCode != codec.NoMatchingSubscribers {
		t.Fatalf("PUBACK reason 0x%02x, want 0x10", a.ReasonCode)
	}
	r.send(&codec.Packet{Type: codec.PUBLISH, QoS: 2, PacketID: 2, Topic: []byte("nobody")})
	if a := r.expect(codec.PUBREC); a.ReasonCode != codec.Success {
		t.Fatalf("PUBREC reason 0x%02x, want 0", a.ReasonCode)
	}
	r.send(&codec.Packet{Type: codec.PUBREL, PacketID: 2})
	if a := r.expect(codec.PUBCOMP); a.ReasonCode != codec.Success {
		t.Fatalf("PUBCOMP reason 0x%02x, want 0", a.ReasonCode)
	}
	r.subscribe(5, codec.Subscription{Filter: []byte("self"), NoLocal: true}, 0)
	r.send(&codec.Packet{Type: codec.PUBLISH, QoS: 1, PacketID: 6, Topic: []byte("self")})
	if a := r.expect(codec.PUBACK); a.ReasonCode != codec.Success {
		t.Fatalf("PUBACK reason 0x%02x with a No Local subscription, want 0", a.ReasonCode)
	}
	r.subscribe(3, codec.Subscription{Filter: []byte("somebody")}, 0)
	r.send(&codec.Packet{Type: codec.PUBLISH, QoS: 1, PacketID: 4, Topic: []byte("somebody")})
	for i := 0; i < 2; i++ { // the PUBACK and the delivered message, in either order
		p, err := r.next(v5Wait)
		if err != nil {
			t.Fatal(err)
		}
		if p.Type == codec.PUBACK && p.ReasonCode != codec.Success {
			t.Fatalf("PUBACK reason 0x%02x, want 0", p.ReasonCode)
		}
	}
}

// TestPublishV5MaximumPacketSizeDropThenDeliver: a QoS 1 or 2 message
// dropped because it is over the client's Maximum Packet Size
// [MQTT-3.1.2-25] must not hold up what follows: the next small message
// still arrives (issue 21: the queue stalled after such a drop). The client
// here subscribes to what it publishes, as in mosquitto's
// 12-prop-maximum-packet-size-publish-qos1/2 tests.
func TestPublishV5MaximumPacketSizeDropThenDeliver(t *testing.T) {
	t.Parallel()
	tb := startBroker(t, nil)
	for _, qos := range []byte{1, 2} {
		id := fmt.Sprintf("drop-then-deliver-%d", qos)
		r := tb.rawV5(t, id, func(p *codec.Properties) {
			p.MaximumPacketSize = 40
			p.Set(codec.PropMaximumPacketSize)
		})
		r.subscribe(1, codec.Subscription{Filter: []byte(id), QoS: qos}, 0)
		r.publish(id, strings.Repeat("L", 40), qos, 1, nil)
		r.send(&codec.Packet{Type: codec.PINGREQ})
		r.expect(codec.PINGRESP) // and nothing before it: the big one was dropped
		r.send(&codec.Packet{Type: codec.PUBLISH, Topic: []byte(id), Payload: []byte("small"), QoS: qos, PacketID: 2})
		got := false
		for i := 0; i < 2; i++ { // our ack and the delivery, in either order
			p, err := r.next(v5Wait)
			if err != nil {
				t.Fatalf("QoS %d: the small message after the dropped one: %v", qos, err)
			}
			if p.Type == codec.PUBLISH {
				if string(p.Payload) != "small" {
					t.Fatalf("QoS %d: got %q", qos, p.Payload)
				}
				got = true
			}
		}
		if !got {
			t.Fatalf("QoS %d: no delivery", qos)
		}
	}
}

// TestPublishWrongAck: an acknowledgement of the wrong kind for a message
// in flight (PUBREC or PUBCOMP for QoS 1, PUBACK for QoS 2, PUBCOMP before
// the PUBREC, PUBACK after it) breaks the flows of [MQTT-4.3.2]/[MQTT-4.3.3]:
// the connection is closed, as mosquitto does; a v5 client is told why with
// DISCONNECT 0x82 [MQTT-4.13.1-1]. An ack for an id not in flight is not an
// error (it may be a late duplicate).
func TestPublishWrongAck(t *testing.T) {
	t.Parallel()
	tb := startBroker(t, nil)
	tests := []struct {
		name    string
		qos     byte
		pubrec  bool // acknowledge with PUBREC first (QoS 2)
		ack     codec.PacketType
		closing bool
	}{
		{"PubrecForQoS1", 1, false, codec.PUBREC, true},
		{"PubcompForQoS1", 1, false, codec.PUBCOMP, true},
		{"PubackForQoS2", 2, false, codec.PUBACK, true},
		{"PubcompBeforePubrec", 2, false, codec.PUBCOMP, true},
		{"PubackAfterPubrec", 2, true, codec.PUBACK, true},
		{"PubackRightKind", 1, false, codec.PUBACK, false},
	}
	for _, tt := range tests {
		for _, v := range []byte{codec.Version311, codec.Version5} {
			t.Run(fmt.Sprintf("%s/v%d", tt.name, v), func(t *testing.T) {
				id := fmt.Sprintf("wrongack-%s-%d", tt.name, v)
				r := tb.raw(t, v)
				r.connect(connectPacket(v, id, true))
				r.subscribe(1, codec.Subscription{Filter: []byte(id), QoS: tt.qos}, 0)
				pub := tb.rawV5(t, "", nil)
				pub.publish(id, "x", tt.qos, 1, nil)
				m := r.expect(codec.PUBLISH)
				if tt.pubrec {
					r.send(&codec.Packet{Type: codec.PUBREC, PacketID: m.PacketID})
					r.expect(codec.PUBREL)
				}
				r.send(&codec.Packet{Type: tt.ack, PacketID: m.PacketID})
				r.send(&codec.Packet{Type: codec.PINGREQ})
				switch {
				case !tt.closing:
					r.expect(codec.PINGRESP)
				case v == codec.Version5:
					r.expectDisconnect(codec.ProtocolError)
				default:
					r.expectClosed()
				}
			})
		}
	}
}

// TestPublishV5PubrelRepeated: a PUBREL repeated after a reconnect, for a
// flow the broker already completed, gets a plain PUBCOMP (0x92 is only a
// MAY, and mosquitto answers success: its 03-publish-c2b-disconnect-qos2
// test), so the client's recovery ends cleanly [MQTT-4.3.3].
func TestPublishV5PubrelRepeated(t *testing.T) {
	t.Parallel()
	tb := startBroker(t, nil)
	persistent := func(p *codec.Properties) { p.SessionExpiry = 60; p.Set(codec.PropSessionExpiry) }
	r := tb.rawV5(t, "pubrel-again", persistent)
	r.publish("pubrel/again", "x", 2, 9, nil)
	r.send(&codec.Packet{Type: codec.PUBREL, Flags: 0x02, PacketID: 9})
	if a := r.expect(codec.PUBCOMP); a.ReasonCode != codec.Success {
		t.Fatalf("PUBCOMP reason 0x%02x, want 0", a.ReasonCode)
	}
	r.c.Close() // as if the PUBCOMP were lost
	r = tb.raw(t, codec.Version5)
	p := connectPacket(codec.Version5, "pubrel-again", false)
	persistent(&p.Props)
	r.connect(p)
	r.send(&codec.Packet{Type: codec.PUBREL, Flags: 0x02, PacketID: 9})
	if a := r.expect(codec.PUBCOMP); a.PacketID != 9 || a.ReasonCode != codec.Success {
		t.Fatalf("repeated PUBREL: PUBCOMP id %d reason 0x%02x, want 9, 0", a.PacketID, a.ReasonCode)
	}
}
