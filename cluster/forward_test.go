package cluster

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/midge-mqtt/midge/client"
	"github.com/midge-mqtt/midge/codec"
)

// Every publish reaches every matching subscriber on every node, at the
// QoS of the subscription (downgraded [MQTT-3.8.4-8]), with its MQTT 5
// properties forwarded [MQTT-3.3.2-*] and the subscription identifiers of
// the receiving node's subscriptions [MQTT-3.3.4-3].
func testCrossNodeQoS(t *testing.T, nodes []*testNode) {
	var inboxes []*inbox
	for i, tn := range nodes {
		c, in := connect(t, tn.addr, fmt.Sprintf("sub%d", i), codec.Version5)
		var props codec.Properties
		props.SubscriptionIDs = []uint32{uint32(10 + i)}
		subscribe(t, c, &props, codec.Subscription{Filter: []byte("q/#"), QoS: 2})
		inboxes = append(inboxes, in)
	}
	waitRoutes(t, nodes, 2)
	pub, _ := connect(t, nodes[0].addr, "pub", codec.Version5)
	var props codec.Properties
	props.Set(codec.PropContentType)
	props.ContentType = []byte("text/plain")
	props.Set(codec.PropCorrelationData)
	props.CorrelationData = []byte{0, 1, 2}
	props.Set(codec.PropMessageExpiry)
	props.MessageExpiry = 60
	props.User = []codec.UserProperty{{Key: []byte("k"), Value: []byte("v")}}
	for qos := byte(0); qos <= 2; qos++ {
		publish(t, pub, &client.Message{Topic: []byte(fmt.Sprintf("q/%d", qos)), Payload: []byte{qos}, QoS: qos, Props: &props})
	}
	for i, in := range inboxes {
		msgs := in.wait(t, 3, 20*time.Second)
		for qos, m := range msgs {
			if m.topic != fmt.Sprintf("q/%d", qos) || m.qos != byte(qos) || m.payload != string([]byte{byte(qos)}) {
				t.Fatalf("node %d message %d: got %q %q QoS %d", i, qos, m.topic, m.payload, m.qos)
			}
			p := m.props
			if string(p.ContentType) != "text/plain" || !bytes.Equal(p.CorrelationData, []byte{0, 1, 2}) ||
				len(p.User) != 1 || string(p.User[0].Key) != "k" || !p.Has(codec.PropMessageExpiry) ||
				p.MessageExpiry > 60 || len(p.SubscriptionIDs) != 1 || p.SubscriptionIDs[0] != uint32(10+i) {
				t.Fatalf("node %d: properties %+v", i, p)
			}
		}
	}
}

// Topics that a NATS subject would mangle, and payloads from 0 B to 16 MiB
// (over NATS's max payload: chunked), arrive byte-identical, in order.
func testEdgeTopicsAndPayloads(t *testing.T, nodes []*testNode) {
	sub, in := connect(t, nodes[2].addr, "sub", codec.Version5)
	subscribe(t, sub, nil, codec.Subscription{Filter: []byte("#"), QoS: 1})
	waitRoutes(t, nodes[:2], 1)
	waitRoutes(t, nodes[2:], 0)
	long := strings.Repeat("x", 65533) + "/y" // 65,535 bytes (at most 201 levels, as mosquitto)
	topics := []string{"a.b.c", "with space", "a//b", "/lead", "＋looking", "a/%2B/＃y", "a/$b", "ünï/cødé/☃", "*", ">", long, "foo"}
	sizes := []int{0, 1, 100, 64 << 10, 1 << 20, 9 << 20, 16 << 20}
	pub, _ := connect(t, nodes[0].addr, "pub", codec.Version5)
	type want struct{ topic, payload string }
	var wants []want
	for i, tp := range topics {
		p := []byte(fmt.Sprintf("payload %d", i))
		publish(t, pub, &client.Message{Topic: []byte(tp), Payload: p, QoS: 1})
		wants = append(wants, want{tp, string(p)})
	}
	for i, n := range sizes {
		p := bytes.Repeat([]byte{byte(i + 1)}, n)
		publish(t, pub, &client.Message{Topic: []byte("big"), Payload: p, QoS: 1})
		wants = append(wants, want{"big", string(p)})
	}
	msgs := in.wait(t, len(wants), 60*time.Second)
	for i, w := range wants {
		if msgs[i].topic != w.topic || msgs[i].payload != w.payload {
			t.Fatalf("message %d: topic %.40q (%d B) payload %d B, want %.40q (%d B) payload %d B", i,
				msgs[i].topic, len(msgs[i].topic), len(msgs[i].payload), w.topic, len(w.topic), len(w.payload))
		}
	}
}

// A sender that dies mid-batch (only the first chunks of a batch too large
// for one NATS message ever came) must not hold the receiving node's memory
// for good: the partial batch is freed once no chunk came for chunkIdle,
// and forwarding goes on.
func testDeadSenderChunks(t *testing.T, nodes []*testNode) {
	recv := nodes[1]
	recv.node.recv.mu.Lock()
	recv.node.recv.idle = 500 * time.Millisecond
	recv.node.recv.mu.Unlock()
	// The dead sender: a NATS client on n1's embedded server that sends
	// n2 the first chunk of a 2 MiB batch and nothing more.
	nc, err := nats.Connect(nodes[0].node.ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	body := bytes.Repeat([]byte{1}, 2<<20)
	chunks(append([]byte{kindBatch}, body...), 0xdead, 1<<20, nil, func(c []byte) {
		if binary.BigEndian.Uint32(c[13:]) == 0 { // only the first piece
			if err := nc.Publish(recv.node.prefix+"n."+recv.name, c); err != nil {
				t.Fatal(err)
			}
		}
	})
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for recv.node.recv.pending() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the first chunk never reached n2")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for recv.node.recv.pending() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the dead sender's partial batch is still held")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(recv.logs.String(), "freed 1 unfinished forwarded batches") {
		t.Fatalf("no log line for the freed batch:\n%s", recv.logs)
	}
	// n2 still takes what n1's node forwards.
	sub, in := connect(t, recv.addr, "chunk-sub", codec.Version5)
	subscribe(t, sub, nil, codec.Subscription{Filter: []byte("chunk/#"), QoS: 1})
	pub, _ := connect(t, nodes[0].addr, "chunk-pub", codec.Version5)
	publish(t, pub, &client.Message{Topic: []byte("chunk/after"), Payload: body, QoS: 1})
	if m := in.wait(t, 1, 20*time.Second); len(m[0].payload) != len(body) {
		t.Fatalf("got %d bytes", len(m[0].payload))
	}
}
