package loop

import (
	"strings"
	"testing"

	"github.com/eclipse/paho.golang/paho"

	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/session"
)

// TestResponseInformation: with response_information_prefix set, a v5
// client that sends Request Response Information = 1 gets Response
// Information (the prefix and its client id) in its CONNACK
// [MQTT-3.1.2-28]; one that does not ask gets none, nor does anyone when
// the prefix is unset (mosquitto's behaviour). The client then uses it as
// the root of its response topic.
func TestResponseInformation(t *testing.T) {
	t.Parallel()
	opts := session.DefaultOptions()
	opts.ResponseInfoPrefix = "resp/"
	tb := startBroker(t, &opts)
	pc, ack := tb.paho(t, &paho.Connect{ClientID: "asker", CleanStart: true,
		Properties: &paho.ConnectProperties{RequestResponseInfo: true}}, false)
	if ack.Properties == nil || ack.Properties.ResponseInfo != "resp/asker" {
		t.Fatalf("CONNACK response information %+v, want resp/asker", ack.Properties)
	}
	pc.sub(t, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: ack.Properties.ResponseInfo + "/#", QoS: 1}}})
	responder, _ := tb.paho(t, &paho.Connect{ClientID: "responder", CleanStart: true}, false)
	responder.pub(t, &paho.Publish{Topic: "resp/asker/1", QoS: 1, Payload: []byte("answer")})
	if m := <-pc.msgs; string(m.Payload) != "answer" {
		t.Fatalf("response %q", m.Payload)
	}

	_, ack = tb.paho(t, &paho.Connect{ClientID: "quiet", CleanStart: true}, false)
	if ack.Properties != nil && ack.Properties.ResponseInfo != "" {
		t.Fatalf("response information sent unasked: %q", ack.Properties.ResponseInfo)
	}
	plain := startBroker(t, nil)
	_, ack = plain.paho(t, &paho.Connect{ClientID: "asker", CleanStart: true,
		Properties: &paho.ConnectProperties{RequestResponseInfo: true}}, false)
	if ack.Properties != nil && ack.Properties.ResponseInfo != "" {
		t.Fatalf("response information without a prefix configured: %q", ack.Properties.ResponseInfo)
	}
}

// TestReasonStrings: a client that sends Request Problem Information = 1
// gets a Reason String saying what was wrong on an error CONNACK, SUBACK,
// PUBACK and DISCONNECT [MQTT-3.1.2-29]; a client that does not ask (the
// property absent, whose default is 1) gets the same bytes as from
// mosquitto, with no Reason String.
func TestReasonStrings(t *testing.T) {
	t.Parallel()
	opts := session.DefaultOptions()
	opts.MaxInflight = 1
	opts.AllowZeroLengthID = false
	opts.MessageSizeLimit = 4
	opts.Auth = noSecrets{}
	tb := startBroker(t, &opts)
	for _, ask := range []bool{false, true} {
		connect := func(id string) *codec.Packet {
			p := connectPacket(codec.Version5, id, true)
			if ask {
				p.Props.RequestProblemInfo = 1
				p.Props.Set(codec.PropRequestProblemInfo)
			}
			return p
		}
		check := func(what string, p *codec.Packet, want string) {
			t.Helper()
			got := ""
			if p.Props.Has(codec.PropReasonString) {
				got = string(p.Props.ReasonString)
			}
			if !ask {
				want = ""
			}
			if got != want {
				t.Fatalf("asked %v: %s reason string %q, want %q", ask, what, got, want)
			}
		}
		r := tb.raw(t, codec.Version5)
		ack := r.connect(connect(""))
		if ack.ReasonCode != codec.UnspecifiedError { // mosquitto's code for it
			t.Fatalf("CONNACK 0x%02x", ack.ReasonCode)
		}
		check("CONNACK", ack, "empty client id not allowed")

		r = tb.raw(t, codec.Version5)
		r.connect(connect("reasoned"))
		r.send(&codec.Packet{Type: codec.SUBSCRIBE, PacketID: 1, Subscriptions: []codec.Subscription{
			{Filter: []byte("ok/#")}, {Filter: []byte("secret/#")}}})
		check("SUBACK", r.expect(codec.SUBACK), "secret/#: not authorised")
		r.send(&codec.Packet{Type: codec.PUBLISH, QoS: 1, PacketID: 2, Topic: []byte("t"), Payload: []byte("too long")})
		pa := r.expect(codec.PUBACK)
		if pa.ReasonCode != codec.QuotaExceeded {
			t.Fatalf("PUBACK 0x%02x", pa.ReasonCode)
		}
		check("PUBACK", pa, "payload over message_size_limit")
		for id := uint16(3); id <= 4; id++ {
			r.send(&codec.Packet{Type: codec.PUBLISH, QoS: 2, PacketID: id, Topic: []byte("t")})
		}
		r.expect(codec.PUBREC)
		d := r.expect(codec.DISCONNECT)
		if d.ReasonCode != codec.ReceiveMaximumExceeded {
			t.Fatalf("DISCONNECT 0x%02x", d.ReasonCode)
		}
		check("DISCONNECT", d, "more QoS 2 messages unacknowledged than Receive Maximum")
	}
}

// noSecrets lets everyone in and everywhere except under secret/.
type noSecrets struct{}

func (noSecrets) Authenticate(string, []byte, []byte, bool, bool) byte { return codec.Success }

func (noSecrets) Allow(_ *session.ClientInfo, topic string, _ session.Access) bool {
	return !strings.HasPrefix(topic, "secret/")
}
