package loop

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/session"
)

// TestSessionV3Present: the CONNACK's session present flag is 0 for a clean
// session [MQTT-3.2.2-1], 1 when a persistent session is resumed
// [MQTT-3.2.2-2], and 0 for a new persistent one [MQTT-3.2.2-3]; a clean
// session discards the previous one [MQTT-3.1.2-6]. MQTT 3.1 has no session
// present flag: its CONNACK's first byte is reserved, so always 0.
func TestSessionV3Present(t *testing.T) {
	tb := startBroker(t, nil)
	steps := []struct {
		clean   bool
		present bool
	}{
		{false, false}, // new persistent
		{false, true},  // resumed
		{true, false},  // clean: discards it
		{false, false}, // so this one is new again
		{false, true},
	}
	for _, v := range []byte{codec.Version31, codec.Version311} {
		id := fmt.Sprintf("present-%d", v)
		for i, st := range steps {
			c, present := tb.v3Connect(t, v, id, st.clean)
			if present != (st.present && v != codec.Version31) {
				t.Fatalf("v%d step %d (clean %v): session present %v, want %v", v, i, st.clean, present, st.present)
			}
			c.send(&codec.Packet{Type: codec.DISCONNECT})
			c.expectClosed()
		}
	}
}

// TestSessionV3Offline: a persistent session keeps its subscriptions while
// offline [MQTT-3.1.2-4], queues QoS 1 and 2 messages for it and delivers
// them in order on reconnect [MQTT-3.1.2-5] [MQTT-4.6.0-6]; QoS 0 is not
// queued (queue_qos0_messages false, as in mosquitto). A clean session keeps
// nothing [MQTT-3.1.2-6].
func TestSessionV3Offline(t *testing.T) {
	tb := startBroker(t, nil)
	for _, v := range []byte{codec.Version31, codec.Version311} {
		id := fmt.Sprintf("offline-%d", v)
		topic := id + "/t"
		sub, _ := tb.v3Connect(t, v, id, false)
		sub.subscribe(1, topic, 2)
		sub.send(&codec.Packet{Type: codec.DISCONNECT})
		sub.expectClosed()

		pub, _ := tb.v3Connect(t, v, id+"-pub", true)
		pub.publish(topic, "q0", 0, 0, false)
		pub.publish(topic, "q1", 1, 1, false)
		pub.publish(topic, "q2", 2, 2, false)
		pub.publish(topic, "q1b", 1, 3, false)

		sub, present := tb.v3Connect(t, v, id, false)
		if present != (v != codec.Version31) { // 3.1 has no such flag: always 0
			t.Fatalf("v%d: session present %v", v, present)
		}
		sub.ack(sub.expectPublish(topic, "q1", 1, false))
		sub.ack(sub.expectPublish(topic, "q2", 2, false))
		sub.ack(sub.expectPublish(topic, "q1b", 1, false))
		sub.expectQuiet()

		// The subscription is still there without subscribing again.
		pub.publish(topic, "live", 1, 4, false)
		sub.ack(sub.expectPublish(topic, "live", 1, false))

		// Clean session 1: the subscription goes with the old session.
		sub.send(&codec.Packet{Type: codec.DISCONNECT})
		sub.expectClosed()
		sub, _ = tb.v3Connect(t, v, id, true)
		pub.publish(topic, "nobody", 1, 5, false)
		sub.expectQuiet()
	}
}

// TestSessionV3ResendDup: QoS 1 and 2 messages sent but not acknowledged are
// sent again, with DUP=1 and the same packet id, when the session resumes
// [MQTT-4.4.0-1] [MQTT-3.3.1-1]; a QoS 2 message whose PUBREC was received
// gets its PUBREL again instead [MQTT-4.4.0-1].
func TestSessionV3ResendDup(t *testing.T) {
	tb := startBroker(t, nil)
	for _, v := range []byte{codec.Version31, codec.Version311} {
		id := fmt.Sprintf("dup-%d", v)
		sub, _ := tb.v3Connect(t, v, id, false)
		sub.subscribe(1, id+"/#", 2)
		pub, _ := tb.v3Connect(t, v, id+"-pub", true)
		pub.publish(id+"/1", "one", 1, 1, false)
		pub.publish(id+"/2", "two", 2, 2, false)
		pub.publish(id+"/3", "three", 2, 3, false)

		p1 := sub.expectPublish(id+"/1", "one", 1, false)
		p2 := sub.expectPublish(id+"/2", "two", 2, false)
		p3 := sub.expectPublish(id+"/3", "three", 2, false)
		if p1.Dup || p2.Dup || p3.Dup {
			t.Fatalf("v%d: DUP on first delivery", v)
		}
		// Acknowledge only the PUBREC of the third, then drop the connection.
		sub.send(&codec.Packet{Type: codec.PUBREC, PacketID: p3.PacketID})
		sub.expect(codec.PUBREL)
		sub.c.Close()

		sub, present := tb.v3Connect(t, v, id, false)
		if present != (v != codec.Version31) { // 3.1 has no such flag: always 0
			t.Fatalf("v%d: session present %v", v, present)
		}
		r1 := sub.expectPublish(id+"/1", "one", 1, false)
		r2 := sub.expectPublish(id+"/2", "two", 2, false)
		if !r1.Dup || !r2.Dup || r1.PacketID != p1.PacketID || r2.PacketID != p2.PacketID {
			t.Fatalf("v%d: resent dup %v/%v ids %d/%d, want DUP and ids %d/%d", v, r1.Dup, r2.Dup,
				r1.PacketID, r2.PacketID, p1.PacketID, p2.PacketID)
		}
		rel := sub.expect(codec.PUBREL)
		if rel.PacketID != p3.PacketID {
			t.Fatalf("v%d: PUBREL id %d, want %d", v, rel.PacketID, p3.PacketID)
		}
		sub.send(&codec.Packet{Type: codec.PUBACK, PacketID: r1.PacketID})
		sub.ack(r2)
		sub.send(&codec.Packet{Type: codec.PUBCOMP, PacketID: p3.PacketID})
		sub.expectQuiet()

		// Everything is acknowledged now: a third connection gets nothing.
		sub.send(&codec.Packet{Type: codec.DISCONNECT})
		sub.expectClosed()
		sub, _ = tb.v3Connect(t, v, id, false)
		sub.expectQuiet()
	}
}

// TestSessionV3InflightWindow: with max_inflight_messages 2, a subscriber
// that does not acknowledge has at most 2 messages in flight; the rest wait
// in the queue and follow, in order, as acknowledgements come
// [MQTT-4.6.0-6].
func TestSessionV3InflightWindow(t *testing.T) {
	opts := session.DefaultOptions()
	opts.MaxInflight = 2
	tb := startBroker(t, &opts)
	sub, _ := tb.v3Connect(t, codec.Version311, "win-sub", true)
	sub.subscribe(1, "win", 1)
	pub, _ := tb.v3Connect(t, codec.Version311, "win-pub", true)
	for i := 0; i < 5; i++ {
		pub.publish("win", fmt.Sprint(i), 1, uint16(i+1), false)
	}
	a := sub.expectPublish("win", "0", 1, false)
	b := sub.expectPublish("win", "1", 1, false)
	sub.expectQuiet()
	sub.ack(a)
	c := sub.expectPublish("win", "2", 1, false)
	sub.expectQuiet()
	sub.ack(b)
	sub.ack(c)
	for i := 3; i < 5; i++ {
		sub.ack(sub.expectPublish("win", fmt.Sprint(i), 1, false))
	}
	sub.expectQuiet()
}

// TestSessionV3QoS0LeftAtDisconnect: QoS 0 messages still queued for a
// persistent session when its connection ends are not sent on the resumed
// connection (MQTT lets a server keep QoS 0 for an offline session
// [MQTT-3.1.2-5]; mosquitto does not, and midge keeps them only with
// queue_qos0_messages), while a QoS 1 message queued meanwhile is
// [MQTT-3.1.2-5]. mosquitto's 02-subpub-recover-subscriptions checks this.
func TestSessionV3QoS0LeftAtDisconnect(t *testing.T) {
	for _, queueQoS0 := range []bool{false, true} {
		t.Run(fmt.Sprintf("queue_qos0_messages=%v", queueQoS0), func(t *testing.T) {
			opts := session.DefaultOptions()
			opts.MaxQueuedMessages = 100
			opts.QueueQoS0 = queueQoS0
			tb := startBroker(t, &opts)
			const id, topic = "left", "left/t"
			sub, _ := tb.v3Connect(t, codec.Version311, id, false)
			sub.subscribe(1, topic, 1) // and reads nothing until it closes
			pub, _ := tb.v3Connect(t, codec.Version311, "left-pub", true)

			// Fill the subscriber's socket buffers until the broker has to
			// keep QoS 0 messages queued for it (a few at a time are
			// queued only until the loop's next write).
			payload := strings.Repeat("x", 4<<10)
			deadline := time.Now().Add(v3Wait)
			for n := 0; ; n++ {
				if q, _ := tb.Broker.SessionQueued(id); q >= 10 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("nothing queued for the subscriber after %d messages", n)
				}
				pub.publish(topic, payload, 0, 0, false)
				if n%20 == 19 {
					time.Sleep(5 * time.Millisecond)
				}
			}
			connected := tb.Broker.Stats.ClientsConnected.Load()
			_ = sub.c.Close()
			waitFor(t, func() bool {
				return tb.Broker.Stats.ClientsConnected.Load() < connected
			})
			if queueQoS0 {
				pub.publish(topic, "offline0", 0, 0, false) // queued for the offline session
			}
			pub.publish(topic, "offline", 1, 1, false)

			sub, present := tb.v3Connect(t, codec.Version311, id, false)
			if !present {
				t.Fatal("session present 0, want 1")
			}
			first := sub.expect(codec.PUBLISH)
			if queueQoS0 {
				if first.QoS != 0 {
					t.Fatalf("first PUBLISH qos %d %q, want a QoS 0 queued with queue_qos0_messages", first.QoS, first.Payload)
				}
				return
			}
			if first.QoS != 1 || string(first.Payload) != "offline" {
				t.Fatalf("first PUBLISH qos %d (%d bytes), want the QoS 1 queued while offline: a QoS 0 left from the old connection was sent", first.QoS, len(first.Payload))
			}
			sub.ack(first)
			sub.expectQuiet()
		})
	}
}
