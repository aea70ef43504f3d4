package loop

import (
	"slices"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/midge-mqtt/midge/codec"
)

// willConnect is a v5 CONNECT of id with a QoS 1 will on topic, a will
// delay and a session expiry (seconds).
func willConnect(id, topic string, delay, expiry uint32) *codec.Packet {
	p := connectPacket(codec.Version5, id, false)
	sessionExpiry(expiry)(&p.Props)
	c := &p.Connect
	c.WillFlag, c.WillQoS, c.WillTopic, c.WillPayload = true, 1, []byte(topic), []byte("gone:"+id)
	if delay > 0 {
		c.WillProps.WillDelay = delay
		c.WillProps.Set(codec.PropWillDelay)
	}
	return p
}

// watch subscribes a new client to topic.
func (tb *testBroker) watch(t testing.TB, topic string) *rawConn {
	t.Helper()
	w := tb.rawV5(t, "", nil)
	w.subscribe(1, codec.Subscription{Filter: []byte(topic), QoS: 1}, 0)
	return w
}

// TestWillV5Delay checks the Will Delay Interval: the will is not sent when
// the client reconnects within the delay [MQTT-3.1.3-9], even with clean
// start to a new session [MQTT-3.1.2-8] (as mosquitto does), is sent once the
// delay has passed otherwise, and is sent when the session ends if that
// comes first (MQTT 5.0 section 3.1.3.2.2).
func TestWillV5Delay(t *testing.T) {
	t.Parallel()
	tb := startBroker(t, nil)
	tests := []struct {
		name          string
		delay, expiry uint32
		reconnect     bool
		clean         bool          // the reconnect starts a new session
		min           time.Duration // earliest the will may come; 0: must not come
	}{
		{"Reconnected", 1, 60, true, false, 0},
		{"ReconnectedCleanStart", 1, 60, true, true, 0},
		{"DelayPassed", 1, 60, false, false, 900 * time.Millisecond},
		{"SessionEndsFirst", 30, 1, false, false, 900 * time.Millisecond},
		{"NoDelay", 0, 60, false, false, time.Millisecond / 1000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			topic := "will/" + tt.name
			w := tb.watch(t, topic)
			r := tb.raw(t, codec.Version5)
			r.connect(willConnect(tt.name, topic, tt.delay, tt.expiry))
			r.c.Close() // abnormal close
			start := time.Now()
			switch {
			case tt.reconnect && tt.clean:
				r2 := tb.raw(t, codec.Version5)
				if ack := r2.connect(connectPacket(codec.Version5, tt.name, true)); ack.SessionPresent {
					t.Fatal("clean start resumed the session")
				}
			case tt.reconnect:
				tb.resume(t, tt.name, 60)
			}
			if tt.min == 0 {
				_, err := w.next(time.Duration(tt.delay)*time.Second + 1500*time.Millisecond)
				if err == nil {
					t.Fatal("will sent although the client came back within the delay")
				}
				return
			}
			m := w.expect(codec.PUBLISH)
			if since := time.Since(start); since < tt.min {
				t.Fatalf("will after %v, want at least %v", since, tt.min)
			}
			if string(m.Payload) != "gone:"+tt.name {
				t.Fatalf("will payload %q", m.Payload)
			}
		})
	}
}

// TestWillV5DelayAfterKeepalive: a client silent past its keepalive is
// disconnected by the broker [MQTT-3.1.2-24], and its delayed will is sent
// once the delay has passed [MQTT-3.1.2-8] (the broker's close is not a
// takeover: the will must not be dropped).
func TestWillV5DelayAfterKeepalive(t *testing.T) {
	t.Parallel() // it waits on the clock
	tb := startBroker(t, nil)
	w := tb.watch(t, "will/silent")
	r := tb.raw(t, codec.Version5)
	p := willConnect("silent", "will/silent", 1, 60)
	p.Connect.KeepAlive = 1
	r.connect(p)
	start := time.Now()
	m, err := w.next(8 * time.Second)
	if err != nil {
		t.Fatalf("no will after the keepalive timeout and the will delay: %v", err)
	}
	if m.Type != codec.PUBLISH || string(m.Payload) != "gone:silent" {
		t.Fatalf("got %v %q, want the will", m.Type, m.Payload)
	}
	// 1.5 s of keepalive (one-second timer slots) and 1 s of delay.
	if since := time.Since(start); since < 2*time.Second {
		t.Fatalf("will after %v, want the keepalive timeout and the delay first", since)
	}
}

// TestWillV5Properties checks that the will's properties are those of the
// message sent (MQTT 5.0 section 3.1.3.2): payload format, content type,
// response topic, correlation data, user properties in order, and the
// message expiry counting down; and that a retained will is stored. The
// will is sent raw: paho.golang v0.22.0 encodes only the user properties of
// a will.
func TestWillV5Properties(t *testing.T) {
	t.Parallel()
	tb := startBroker(t, nil)
	sub, _ := tb.paho(t, &paho.Connect{ClientID: "wsub", CleanStart: true}, false)
	sub.sub(t, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "wp", QoS: 1}}})

	cp := willConnect("dying", "wp", 0, 0)
	cp.Connect.WillRetain, cp.Connect.WillPayload = true, []byte("bye")
	wp := &cp.Connect.WillProps
	wp.PayloadFormat, wp.MessageExpiry = 1, 60
	wp.ContentType, wp.ResponseTopic, wp.CorrelationData = []byte("text/plain"), []byte("wp/reply"), []byte("cd")
	for _, id := range []byte{codec.PropPayloadFormat, codec.PropMessageExpiry, codec.PropContentType,
		codec.PropResponseTopic, codec.PropCorrelationData} {
		wp.Set(id)
	}
	wp.User = []codec.UserProperty{{Key: []byte("z"), Value: []byte("1")}, {Key: []byte("a"), Value: []byte("2")}}
	dying := tb.raw(t, codec.Version5)
	dying.connect(cp)
	dying.c.Close() // abnormal close: the will goes

	m := sub.recv(t)
	p := m.Properties
	user := paho.UserProperties{{Key: "z", Value: "1"}, {Key: "a", Value: "2"}}
	switch {
	case string(m.Payload) != "bye" || m.QoS != 1:
		t.Fatalf("will %q QoS %d", m.Payload, m.QoS)
	case p == nil || p.PayloadFormat == nil || *p.PayloadFormat != 1 || p.ContentType != "text/plain":
		t.Fatalf("will properties %+v", p)
	case p.ResponseTopic != "wp/reply" || string(p.CorrelationData) != "cd" || !slices.Equal(p.User, user):
		t.Fatalf("will properties %+v", p)
	case p.MessageExpiry == nil || *p.MessageExpiry > 60 || *p.MessageExpiry < 55:
		t.Fatalf("will message expiry %v", p.MessageExpiry)
	}
	late := tb.rawV5(t, "", nil)
	late.subscribe(1, codec.Subscription{Filter: []byte("wp")}, 0)
	if r := late.expect(codec.PUBLISH); !r.Retain || string(r.Payload) != "bye" {
		t.Fatalf("retained will %q retain %v", r.Payload, r.Retain)
	}
}

// TestWillV5Disconnect checks that DISCONNECT 0x04 sends the will and a
// normal DISCONNECT (0x00) discards it [MQTT-3.1.2-10] (MQTT 5.0 section
// 3.14.2.1).
func TestWillV5Disconnect(t *testing.T) {
	t.Parallel()
	tb := startBroker(t, nil)
	w := tb.watch(t, "wd/#")
	for _, tt := range []struct {
		reason byte
		sent   bool
	}{{codec.Success, false}, {codec.DisconnectWithWill, true}} {
		id := "wd" + string('0'+tt.reason)
		r := tb.raw(t, codec.Version5)
		r.connect(willConnect(id, "wd/"+id, 0, 0))
		r.send(&codec.Packet{Type: codec.DISCONNECT, ReasonCode: tt.reason})
		r.expectClosed()
		if !tt.sent {
			w.expectQuiet()
			continue
		}
		if m := w.expect(codec.PUBLISH); string(m.Payload) != "gone:"+id {
			t.Fatalf("will %q", m.Payload)
		}
	}
}
