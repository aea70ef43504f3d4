package cluster

import (
	"fmt"
	"log"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/midge-mqtt/midge/client"
	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/loop"
	"github.com/midge-mqtt/midge/session"
)

// cluster_nats_url: two nodes use an existing NATS server (with JetStream)
// instead of embedding one; messages and retained messages cross as with
// the embedded servers.
func TestClusterExternalNATS(t *testing.T) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true,
		StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(ns.Shutdown) // after the nodes' (cleanups run last first)
	var nodes []*testNode
	for i := range 2 {
		tn := &testNode{name: fmt.Sprintf("x%d", i+1), logs: &syncBuffer{}}
		logger := log.New(tn.logs, tn.name+" ", log.Lmicroseconds)
		o := session.DefaultOptions()
		o.Logger = logger
		tn.b = session.NewBroker(o)
		if tn.node, err = New(tn.b, Config{Name: "ext", NodeName: tn.name, NATSURL: ns.ClientURL(), Logger: logger}); err != nil {
			t.Fatal(err)
		}
		if err := tn.node.Start(); err != nil {
			t.Fatalf("%s: %v\n%s", tn.name, err, tn.logs)
		}
		tn.srv = loop.New(tn.b, loop.Config{Listeners: []string{"127.0.0.1:0"}, Loops: 1, Logger: logger})
		if err := tn.srv.Start(); err != nil {
			t.Fatal(err)
		}
		tn.addr = tn.srv.Addrs()[0].String()
		t.Cleanup(func() { tn.stop(t) })
		nodes = append(nodes, tn)
	}
	pub, _ := connect(t, nodes[0].addr, "xpub", codec.Version5)
	publish(t, pub, &client.Message{Topic: []byte("x/ret"), Payload: []byte("kept"), QoS: 1, Retain: true})
	// Replicated through the bucket (asynchronously): subscribe once x2 holds it.
	for wait := time.Now(); nodes[1].b.Stats.RetainedMessages.Load() == 0; time.Sleep(5 * time.Millisecond) {
		if time.Since(wait) > 20*time.Second {
			t.Fatal("the retained message never reached x2")
		}
	}
	sub, in := connect(t, nodes[1].addr, "xsub", codec.Version5)
	subscribe(t, sub, nil, codec.Subscription{Filter: []byte("x/#"), QoS: 1})
	waitRoutes(t, nodes[:1], 1)
	publish(t, pub, &client.Message{Topic: []byte("x/live"), Payload: []byte("crossed"), QoS: 1})
	deadline := time.Now().Add(20 * time.Second)
	for {
		var ret, live bool
		for _, m := range in.snapshot() {
			ret = ret || (m.topic == "x/ret" && m.payload == "kept" && m.retain)
			live = live || (m.topic == "x/live" && m.payload == "crossed")
		}
		if ret && live {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node x2 got %+v (retained %v, live %v)", in.snapshot(), ret, live)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
