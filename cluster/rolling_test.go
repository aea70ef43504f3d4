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

// TestClusterRollingRestart restarts the three nodes one at a time (as
// SIGTERM would, then started again on the same store) while a publisher
// and a persistent QoS 1 subscriber, each reconnecting to whichever node is
// up, run: every message whose PUBACK the publisher got is delivered;
// duplicates are counted and logged.
//
// A message forwarded to the subscriber's old node while its session is
// taken over by another node is passed on by the old node (relay.go).
func TestClusterRollingRestart(t *testing.T) {
	nodes := startCluster(t, 3)
	var peers []string
	for _, tn := range nodes {
		peers = append(peers, tn.route)
	}
	var mu sync.Mutex
	up := []bool{true, true, true}
	pick := func(k int) (string, bool) {
		mu.Lock()
		defer mu.Unlock()
		for i := range 3 {
			if j := (k + i) % 3; up[j] {
				return nodes[j].addr, true
			}
		}
		return "", false
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup

	// The subscriber: a persistent session, QoS 1.
	var got sync.Map // payload → count
	var received, reconnects, pubReconnects int64
	var copies dupCount
	subscribed := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		first := true
		for k := 0; ; k++ {
			select {
			case <-stop:
				return
			default:
			}
			addr, ok := pick(k)
			if !ok {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			o := client.Options{Addr: addr, ClientID: "roller", Version: codec.Version5, CleanStart: first, MaxInflight: 100}
			o.Props.SessionExpiry = 600
			o.Props.Set(codec.PropSessionExpiry)
			c := client.New(o)
			c.OnMessage = func(m *client.Message) {
				v, _ := got.LoadOrStore(string(m.Payload), new(int64))
				mu.Lock()
				*v.(*int64)++
				received++
				mu.Unlock()
				copies.add(m)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := c.Connect(ctx)
			if err == nil && first {
				_, err = c.Subscribe(ctx, nil, codec.Subscription{Filter: []byte("roll/#"), QoS: 1})
			}
			cancel()
			if err != nil {
				_ = c.Close()
				time.Sleep(50 * time.Millisecond)
				continue
			}
			if first {
				first = false
				close(subscribed)
			} else {
				mu.Lock()
				reconnects++
				mu.Unlock()
			}
			select {
			case <-c.Done():
			case <-stop:
				_ = c.Disconnect(0, nil)
				return
			}
		}
	}()
	<-subscribed
	waitRoute(t, nodes[1], "n1", "roll/#")

	// The publisher: QoS 1, one message every 5 ms, counting the acked.
	var acked []int
	pubStop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		seq := 0
		for k := 1; ; k++ {
			addr, ok := pick(k)
			if !ok {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			c := client.New(client.Options{Addr: addr, ClientID: "roll-pub", Version: codec.Version5, CleanStart: true})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := c.Connect(ctx)
			cancel()
			if err != nil {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			mu.Lock()
			pubReconnects++
			mu.Unlock()
			for {
				select {
				case <-pubStop:
					_ = c.Disconnect(0, nil)
					return
				case <-time.After(5 * time.Millisecond):
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				err := c.Publish(ctx, &client.Message{Topic: []byte("roll/x"), Payload: []byte(strconv.Itoa(seq)), QoS: 1})
				cancel()
				if err != nil {
					seq++
					_ = c.Close()
					break
				}
				mu.Lock()
				acked = append(acked, seq)
				mu.Unlock()
				seq++
			}
		}
	}()

	for k := range nodes {
		time.Sleep(time.Second)
		mu.Lock()
		up[k] = false
		mu.Unlock()
		nodes[k].stop(t)
		if err := nodes[k].start(peers); err != nil {
			t.Fatalf("restart %s: %v", nodes[k].name, err)
		}
		mu.Lock()
		up[k] = true
		mu.Unlock()
		t.Logf("%s restarted", nodes[k].name)
	}
	time.Sleep(time.Second)
	close(pubStop)
	// Wait for every acknowledged message, then stop the subscriber.
	mu.Lock()
	want := append([]int(nil), acked...)
	mu.Unlock()
	deadline := time.Now().Add(30 * time.Second)
	missing := want
	for len(missing) > 0 && time.Now().Before(deadline) {
		var left []int
		for _, s := range missing {
			if _, ok := got.Load(strconv.Itoa(s)); !ok {
				left = append(left, s)
			}
		}
		missing = left
		time.Sleep(50 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	fresh, resent := copies.duplicates()
	t.Logf("rolling restart: %d messages acknowledged, %d missing, duplicates: %d sent as new, %d resent (DUP 1) (%d received); subscriber reconnected %d times, publisher connected %d times",
		len(want), len(missing), fresh, resent, received, reconnects, pubReconnects)
	if len(missing) > 0 {
		t.Fatalf("%d acknowledged messages lost, first %v", len(missing), missing[:min(len(missing), 20)])
	}
	if fresh > 0 {
		t.Fatalf("%d messages delivered twice as new (DUP 0): each is sent once across a takeover", fresh)
	}
}
