package loop

import (
	"fmt"
	"net"
	"net/url"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/midge-mqtt/midge/codec"
)

// v3WillConnect connects a raw client that has a will on topic.
func (tb *testBroker) v3WillConnect(t testing.TB, version byte, id, topic string, qos byte,
	retain bool, keepalive uint16) *v3Conn {
	t.Helper()
	r := tb.v3Dial(t, version)
	p := v3ConnectPacket(version, id, true, keepalive)
	p.Connect.WillFlag, p.Connect.WillQoS, p.Connect.WillRetain = true, qos, retain
	p.Connect.WillTopic, p.Connect.WillPayload = []byte(topic), []byte("gone:"+id)
	r.send(p)
	if ack := r.expect(codec.CONNACK); ack.ReasonCode != 0 {
		t.Fatalf("CONNACK 0x%02x", ack.ReasonCode)
	}
	return r
}

// TestWillV3: the will is published when the connection ends other than by
// DISCONNECT [MQTT-3.1.2-8] — the client closes the socket, breaks the
// protocol, or is taken over — at its QoS, and is dropped after a DISCONNECT
// [MQTT-3.1.2-10].
func TestWillV3(t *testing.T) {
	tests := []struct {
		name string
		end  func(t *testing.T, tb *testBroker, c *v3Conn, id string)
		sent bool
	}{
		{"SocketClosed", func(t *testing.T, tb *testBroker, c *v3Conn, id string) { c.c.Close() }, true},
		{"ProtocolError", func(t *testing.T, tb *testBroker, c *v3Conn, id string) {
			c.send(v3ConnectPacket(c.dec.Version, id, true, 0)) // second CONNECT [MQTT-3.1.0-2]
			c.expectClosed()
		}, true},
		{"MalformedPacket", func(t *testing.T, tb *testBroker, c *v3Conn, id string) {
			c.write([]byte{0x36, 5, 0, 1, 'a', 0, 1}) // PUBLISH QoS 3 [MQTT-3.3.1-4]
			c.expectClosed()
		}, true},
		{"TakenOver", func(t *testing.T, tb *testBroker, c *v3Conn, id string) {
			tb.v3Connect(t, c.dec.Version, id, true)
			c.expectClosed()
		}, true},
		{"Disconnect", func(t *testing.T, tb *testBroker, c *v3Conn, id string) {
			c.send(&codec.Packet{Type: codec.DISCONNECT})
			c.expectClosed()
		}, false},
	}
	tb := startBroker(t, nil)
	for _, v := range []byte{codec.Version31, codec.Version311} {
		for _, tt := range tests {
			for qos := byte(0); qos <= 2; qos++ {
				t.Run(fmt.Sprintf("v%d/%s/qos%d", v, tt.name, qos), func(t *testing.T) {
					t.Parallel()
					id := fmt.Sprintf("will-%d-%s-%d", v, tt.name, qos)
					topic := "will/" + id
					watcher, _ := tb.v3Connect(t, v, id+"-w", true)
					watcher.subscribe(1, topic, 2)
					c := tb.v3WillConnect(t, v, id, topic, qos, false, 0)
					tt.end(t, tb, c, id)
					if !tt.sent {
						watcher.expectQuiet()
						return
					}
					watcher.ack(watcher.expectPublish(topic, "gone:"+id, qos, false))
					watcher.expectQuiet()
				})
			}
		}
	}
}

// TestWillV3Retained: a will with the retain flag is stored as the topic's
// retained message [MQTT-3.1.2-17]; one without is not [MQTT-3.1.2-16].
func TestWillV3Retained(t *testing.T) {
	tb := startBroker(t, nil)
	for _, retain := range []bool{true, false} {
		topic := fmt.Sprintf("willret/%v", retain)
		watcher, _ := tb.v3Connect(t, codec.Version311, "", true)
		watcher.subscribe(1, topic, 1)
		c := tb.v3WillConnect(t, codec.Version311, "wr", topic, 1, retain, 0)
		c.c.Close()
		// Live delivery carries RETAIN=0 either way [MQTT-3.3.1-9].
		watcher.ack(watcher.expectPublish(topic, "gone:wr", 1, false))
		late, _ := tb.v3Connect(t, codec.Version311, "", true)
		late.subscribe(1, topic, 1)
		if retain {
			late.ack(late.expectPublish(topic, "gone:wr", 1, true))
		}
		late.expectQuiet()
	}
}

// TestWillV3Paho: paho.mqtt.golang's SetWill, with the connection dropped
// without DISCONNECT, is published to a paho subscriber.
func TestWillV3Paho(t *testing.T) {
	tb := startBroker(t, nil)
	in := make(v3Inbox, 1)
	watcher := tb.v3Paho(t, 4, "paho-watch", true)
	v3Token(t, watcher.Subscribe("paho/will", 1, in.handler), "subscribe")
	dying := tb.v3Dial(t, codec.Version311)
	o := mqtt.NewClientOptions().SetClientID("paho-dying").SetWill("paho/will", "bye", 1, false).
		SetProtocolVersion(4).SetAutoReconnect(false).SetConnectTimeout(v3Wait).
		SetCustomOpenConnectionFn(func(*url.URL, mqtt.ClientOptions) (net.Conn, error) { return dying.c, nil }).
		AddBroker("tcp://" + tb.Addr)
	c := mqtt.NewClient(o)
	v3Token(t, c.Connect(), "connect")
	dying.c.Close() // the socket dies under the client: no DISCONNECT
	if m := in.next(t); string(m.Payload()) != "bye" || m.Qos() != 1 {
		t.Fatalf("will %q qos %d", m.Payload(), m.Qos())
	}
	c.Disconnect(0)
}

// TestWillV3TakeoverResumed: a takeover by a connection that resumes the
// persistent session (clean session 0 on both sides) does not send the
// will: the session goes on, as mosquitto sees it (its 07-will-takeover
// test); when either side is a clean session the session ends and the will
// goes (TestWillV3/TakenOver).
func TestWillV3TakeoverResumed(t *testing.T) {
	tb := startBroker(t, nil)
	for _, v := range []byte{codec.Version31, codec.Version311} {
		id := fmt.Sprintf("resumed-%d", v)
		topic := "will/" + id
		w := tb.watch(t, topic)
		r := tb.v3Dial(t, v)
		p := v3ConnectPacket(v, id, false, 0)
		p.Connect.WillFlag, p.Connect.WillTopic, p.Connect.WillPayload = true, []byte(topic), []byte("gone")
		r.send(p)
		r.expect(codec.CONNACK)
		tb.v3Connect(t, v, id, false)
		r.expectClosed()
		if m, err := w.next(500 * time.Millisecond); err == nil {
			t.Fatalf("v%d: will %q sent on a takeover that resumed the session", v, m.Payload)
		}
	}
}
