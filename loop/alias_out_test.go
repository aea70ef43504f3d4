package loop

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/midge-mqtt/midge/codec"
)

// TestTopicAliasOut: to a v5 client whose CONNECT allows topic aliases, the
// broker sends a topic with an alias the first time and the alias alone,
// with an empty topic, afterwards [MQTT-3.3.2-12], never above the client's
// maximum [MQTT-3.3.2-9]; slots are reused for the topics sent most; a
// client that allows none (0 or absent) gets no alias [MQTT-3.3.2-11].
func TestTopicAliasOut(t *testing.T) {
	t.Parallel()
	tb := startBroker(t, nil)
	sub := func(id string, max uint16) *rawConn {
		r := tb.raw(t, codec.Version5)
		p := connectPacket(codec.Version5, id, true)
		if max > 0 {
			p.Props.TopicAliasMaximum = max
			p.Props.Set(codec.PropTopicAliasMaximum)
		}
		r.connect(p)
		r.send(&codec.Packet{Type: codec.SUBSCRIBE, PacketID: 1, Subscriptions: []codec.Subscription{{Filter: []byte("#")}}})
		r.expect(codec.SUBACK)
		return r
	}
	aliased, plain := sub("aliased", 2), sub("plain", 0)
	pub := tb.raw(t, codec.Version5)
	pub.connect(connectPacket(codec.Version5, "pub", true))
	send := func(topic string) {
		pub.send(&codec.Packet{Type: codec.PUBLISH, QoS: 1, PacketID: 1, Topic: []byte(topic), Payload: []byte(topic)})
		pub.expect(codec.PUBACK)
	}
	type want struct {
		topic string // on the wire
		alias uint16 // 0: none
	}
	check := func(r *rawConn, name string, w want) {
		t.Helper()
		p := r.expect(codec.PUBLISH)
		alias := uint16(0)
		if p.Props.Has(codec.PropTopicAlias) {
			alias = p.Props.TopicAlias
		}
		if string(p.Topic) != w.topic || alias != w.alias {
			t.Fatalf("%s: payload %q: topic %q alias %d, want %q alias %d", name, p.Payload, p.Topic, alias, w.topic, w.alias)
		}
	}
	// a, b fill the two slots; a is used again (the alias alone); c finds
	// both used, so goes without, and the hand clears their marks; d then
	// takes the slot of a, the first the hand reaches.
	steps := []struct {
		topic string
		want  want
	}{
		{"sensors/long/topic/a", want{"sensors/long/topic/a", 1}},
		{"sensors/long/topic/b", want{"sensors/long/topic/b", 2}},
		{"sensors/long/topic/a", want{"", 1}},
		{"sensors/long/topic/c", want{"sensors/long/topic/c", 0}},
		{"sensors/long/topic/d", want{"sensors/long/topic/d", 0}},
		{"sensors/long/topic/e", want{"sensors/long/topic/e", 1}},
		{"sensors/long/topic/b", want{"", 2}},
		{"sensors/long/topic/e", want{"", 1}},
	}
	for _, s := range steps {
		send(s.topic)
		check(aliased, "aliased", s.want)
		check(plain, "plain", want{s.topic, 0})
	}
}

// TestTopicAliasOutPaho: paho.golang, allowing aliases, resolves what the
// broker sends: every message reaches the handler of its topic.
func TestTopicAliasOutPaho(t *testing.T) {
	t.Parallel()
	tb := startBroker(t, nil)
	got := make(chan string, 100)
	router := paho.NewStandardRouter()
	for _, f := range []string{"long/topic/one", "long/topic/two"} {
		f := f
		router.RegisterHandler(f, func(p *paho.Publish) { got <- f + " " + string(p.Payload) })
	}
	c := paho.NewClient(paho.ClientConfig{Conn: tb.dial(t), Router: router})
	ctx, cancel := context.WithTimeout(context.Background(), v5Wait)
	defer cancel()
	max := uint16(1)
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: "paho-alias", CleanStart: true,
		Properties: &paho.ConnectProperties{TopicAliasMaximum: &max}}); err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(&paho.Disconnect{})
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "long/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	pub, _ := tb.paho(t, &paho.Connect{ClientID: "pub", CleanStart: true}, false)
	var want []string
	for i, topic := range []string{"long/topic/one", "long/topic/one", "long/topic/two", "long/topic/two", "long/topic/one"} {
		pub.pub(t, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(fmt.Sprint(i))})
		want = append(want, fmt.Sprintf("%s %d", topic, i))
	}
	for _, w := range want {
		select {
		case g := <-got:
			if g != w {
				t.Fatalf("got %q, want %q", g, w)
			}
		case <-time.After(v5Wait):
			t.Fatalf("no %q", w)
		}
	}
}
