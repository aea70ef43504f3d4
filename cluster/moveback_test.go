package cluster

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/midge-mqtt/midge/client"
	"github.com/midge-mqtt/midge/codec"
)

// TestClusterMoveBack: a persistent QoS 1 subscriber moves from n1 to n2
// and at once back to n1, again and again, while a publisher on n1 and one
// on n3 publish without pause. n1's relay to n2 still holds or still
// passes on what came for the session when it comes back: every message
// acknowledged is delivered (what n1 kept for n2 included, delivered on
// n1), and none twice as new.
func TestClusterMoveBack(t *testing.T) {
	nodes := startCluster(t, 3)
	const id, topic = "back-mover", "mb"
	mv := &mover{t: t, id: id}
	open := mv.open
	c := open(nodes[0].addr, true)
	// Many filters: a node writes its routes one by one, so the other nodes
	// learn n2's route for the last one (mb/x/#, the one published to) well
	// after the session is there, and route to n1 alone meanwhile.
	var subs []codec.Subscription
	for i := range 200 {
		subs = append(subs, codec.Subscription{Filter: []byte(topic + "/pad/" + strconv.Itoa(i) + "/#"), QoS: 1})
	}
	subs = append(subs, codec.Subscription{Filter: []byte(topic + "/x/#"), QoS: 1})
	subscribe(t, c, nil, subs...)
	waitRoute(t, nodes[2], "n1", topic+"/x/#")

	var mu sync.Mutex
	var acked []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	publisher := func(tn *testNode, name string) {
		pub, _ := connect(t, tn.addr, topic+"-pub-"+name, codec.Version5)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := 0; ; seq++ {
				select {
				case <-stop:
					return
				default:
				}
				payload := name + "-" + strconv.Itoa(seq)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				err := pub.Publish(ctx, &client.Message{Topic: []byte(topic + "/x/" + name), Payload: []byte(payload), QoS: 1})
				cancel()
				if err != nil {
					return
				}
				mu.Lock()
				acked = append(acked, payload)
				mu.Unlock()
			}
		}()
	}
	publisher(nodes[0], "n1") // passed on by n1's local relay
	publisher(nodes[2], "n3") // forwarded to n1 while n3 routes there
	relayDropped := func() (r int64) {
		for _, tn := range nodes {
			r += tn.node.Stats.RelayDropped.Load()
		}
		return r
	}
	dropped0 := relayDropped()

	const rounds = 12
	for range rounds {
		time.Sleep(150 * time.Millisecond)
		open(nodes[1].addr, false)
		open(nodes[0].addr, false) // back before n2's route is known everywhere
	}
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()
	mu.Lock()
	want := append([]string(nil), acked...)
	mu.Unlock()
	missing := want
	for deadline := time.Now().Add(20 * time.Second); len(missing) > 0 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		var left []string
		for _, p := range missing {
			if _, ok := mv.got.Load(p); !ok {
				left = append(left, p)
			}
		}
		missing = left
	}
	fresh, resent := mv.copies.duplicates()
	t.Logf("%d rounds n1→n2→n1: %d acknowledged, %d received, %d lost, %d dropped by relays; duplicates: %d sent as new, %d resent (DUP 1)",
		rounds, len(want), mv.received.Load(), len(missing), relayDropped()-dropped0, fresh, resent)
	if len(missing) > 0 {
		t.Fatalf("%d acknowledged messages lost, first %v", len(missing), missing[:min(len(missing), 20)])
	}
	if fresh > 0 {
		t.Fatalf("%d messages delivered twice as new (DUP 0): each is sent once across a takeover", fresh)
	}
}
