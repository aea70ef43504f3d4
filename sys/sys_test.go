package sys_test

import (
	"context"
	"io"
	"log"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/midge-mqtt/midge/loop"
	"github.com/midge-mqtt/midge/session"
	"github.com/midge-mqtt/midge/sys"
)

// TestSysTopics publishes a known workload and reads $SYS/broker/... back
// through a real client: names and values as mosquitto reports them.
func TestSysTopics(t *testing.T) {
	opts := session.DefaultOptions()
	opts.Logger = log.New(io.Discard, "", 0)
	b := session.NewBroker(opts)
	srv := loop.New(b, loop.Config{Listeners: []string{"127.0.0.1:0"}, Loops: 2, Logger: opts.Logger})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}()
	addr := "tcp://" + srv.Addrs()[0].String()

	pub := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(addr).SetClientID("sys-pub"))
	if tok := pub.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer pub.Disconnect(100)
	for i := 0; i < 5; i++ {
		tok := pub.Publish("sys/test", 1, false, "12345")
		if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}
	pub.Publish("sys/retained", 1, true, "r").WaitTimeout(5 * time.Second) // QoS 1: handled before the counters are read

	p := sys.New(b, "9.9.9", time.Second)
	p.Publish(time.Now())

	var mu sync.Mutex
	got := map[string]string{}
	done := make(chan struct{})
	sub := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(addr).SetClientID("sys-sub"))
	if tok := sub.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer sub.Disconnect(100)
	// $SYS topics are not matched by "#" [MQTT-4.7.2-1], and are retained.
	tok := sub.Subscribe("$SYS/broker/#", 0, func(_ mqtt.Client, m mqtt.Message) {
		if !m.Retained() {
			t.Errorf("%s: not retained", m.Topic())
		}
		mu.Lock()
		got[m.Topic()] = string(m.Payload())
		if len(got) == 23+9*3 { // every topic Publish sends

			close(done)
		}
		mu.Unlock()
	})
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("$SYS topics did not arrive; got %d", len(got))
	}
	mu.Lock()
	defer mu.Unlock()
	want := map[string]string{
		"$SYS/broker/version":                   "midge version 9.9.9",
		"$SYS/broker/publish/messages/received": "6",
		"$SYS/broker/publish/bytes/received":    "26",
		"$SYS/broker/clients/connected":         "1",
		"$SYS/broker/clients/maximum":           "1",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	// The retained count includes the $SYS topics published before it, as in mosquitto.
	if n, err := strconv.Atoi(got["$SYS/broker/retained messages/count"]); err != nil || n < 1 {
		t.Errorf("retained messages/count = %q", got["$SYS/broker/retained messages/count"])
	}
	if !strings.HasSuffix(got["$SYS/broker/uptime"], " seconds") {
		t.Errorf("uptime = %q", got["$SYS/broker/uptime"])
	}
	for _, k := range []string{"$SYS/broker/bytes/received", "$SYS/broker/load/messages/received/1min",
		"$SYS/broker/subscriptions/count", "$SYS/broker/clients/total"} {
		if got[k] == "" {
			t.Errorf("%s missing", k)
		}
	}
}
