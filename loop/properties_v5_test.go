package loop

import (
	"bytes"
	"slices"
	"testing"

	"github.com/eclipse/paho.golang/paho"

	"github.com/midge-mqtt/midge/codec"
)

// TestPropertiesV5PassThrough checks that the broker forwards a PUBLISH's
// Payload Format Indicator [MQTT-3.3.2-4], Content Type, Response Topic and
// Correlation Data unchanged, and its User Properties unchanged and in
// order [MQTT-3.3.2-17/18], through paho.golang on both ends, at each QoS.
func TestPropertiesV5PassThrough(t *testing.T) {
	t.Parallel()
	tb := startBroker(t, nil)
	sub, _ := tb.paho(t, &paho.Connect{ClientID: "psub", CleanStart: true}, false)
	sub.sub(t, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "props/#", QoS: 2}}})
	pub, _ := tb.paho(t, &paho.Connect{ClientID: "ppub", CleanStart: true}, false)
	format := byte(1)
	user := paho.UserProperties{{Key: "b", Value: "2"}, {Key: "a", Value: "1"}, {Key: "b", Value: "3"},
		{Key: "é", Value: ""}}
	for qos := byte(0); qos <= 2; qos++ {
		pub.pub(t, &paho.Publish{Topic: "props/x", QoS: qos, Payload: []byte("{}"),
			Properties: &paho.PublishProperties{
				PayloadFormat:   &format,
				ContentType:     "application/json",
				ResponseTopic:   "reply/here",
				CorrelationData: []byte{0, 1, 2, 0xff},
				User:            user,
			}})
		m := sub.recv(t)
		p := m.Properties
		switch {
		case m.QoS != qos:
			t.Fatalf("QoS %d, want %d", m.QoS, qos)
		case p == nil || p.PayloadFormat == nil || *p.PayloadFormat != 1:
			t.Fatalf("QoS %d: payload format indicator lost: %+v", qos, p)
		case p.ContentType != "application/json" || p.ResponseTopic != "reply/here":
			t.Fatalf("QoS %d: content type %q response topic %q", qos, p.ContentType, p.ResponseTopic)
		case !bytes.Equal(p.CorrelationData, []byte{0, 1, 2, 0xff}):
			t.Fatalf("QoS %d: correlation data % x", qos, p.CorrelationData)
		case !slices.Equal(p.User, user):
			t.Fatalf("QoS %d: user properties %v, want %v", qos, p.User, user)
		case p.MessageExpiry != nil || p.TopicAlias != nil:
			t.Fatalf("QoS %d: unexpected expiry or alias", qos)
		}
	}
	// Without properties, none are invented.
	pub.pub(t, &paho.Publish{Topic: "props/y", QoS: 1, Payload: []byte("plain")})
	m := sub.recv(t)
	if p := m.Properties; p != nil && (p.PayloadFormat != nil || p.ContentType != "" || len(p.User) > 0 ||
		p.ResponseTopic != "" || p.CorrelationData != nil) {
		t.Fatalf("properties on a plain message: %+v", p)
	}
}

// TestPropertiesV5RetainedKeepProps checks that a retained message keeps its
// properties when sent to a later subscriber, with the message expiry
// counting down [MQTT-3.3.2-6].
func TestPropertiesV5RetainedKeepProps(t *testing.T) {
	t.Parallel()
	tb := startBroker(t, nil)
	pub := tb.rawV5(t, "", nil)
	p := &codec.Packet{Type: codec.PUBLISH, QoS: 1, PacketID: 1, Retain: true, Topic: []byte("rprops"),
		Payload: []byte("v")}
	p.Props.ContentType = []byte("text/plain")
	p.Props.Set(codec.PropContentType)
	p.Props.MessageExpiry = 100
	p.Props.Set(codec.PropMessageExpiry)
	p.Props.User = []codec.UserProperty{{Key: []byte("k"), Value: []byte("v")}}
	pub.send(p)
	pub.expect(codec.PUBACK)

	sub := tb.rawV5(t, "", nil)
	sub.subscribe(1, codec.Subscription{Filter: []byte("rprops")}, 0)
	m := sub.expect(codec.PUBLISH)
	switch {
	case !m.Retain || string(m.Props.ContentType) != "text/plain":
		t.Fatalf("retain %v content type %q", m.Retain, m.Props.ContentType)
	case !m.Props.Has(codec.PropMessageExpiry) || m.Props.MessageExpiry > 100 || m.Props.MessageExpiry < 95:
		t.Fatalf("message expiry %d", m.Props.MessageExpiry)
	case len(m.Props.User) != 1 || string(m.Props.User[0].Key) != "k":
		t.Fatalf("user properties %v", m.Props.User)
	}
}
