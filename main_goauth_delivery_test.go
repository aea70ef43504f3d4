package main

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/midge-mqtt/midge/client"
	"github.com/midge-mqtt/midge/codec"
)

// TestGoAuthDeliveryWaitsForAnswer: a delivery whose read ACL is not known
// yet (a wildcard subscription's new topic, with or without go-auth's cache)
// waits in the subscriber's queue for the service's answer instead of being
// dropped, in order behind it what follows; a topic the subscriber may not
// read is dropped. mosquitto with go-auth asks the service for every
// delivery it has not cached and loses none.
func TestGoAuthDeliveryWaitsForAnswer(t *testing.T) {
	for _, cache := range []string{"true", "false"} {
		t.Run("cache="+cache, func(t *testing.T) {
			svc := startGoAuthService(t)
			port := freePort(t)
			addr := "127.0.0.1:" + strconv.Itoa(port)
			conf := goAuthConf(t, port, svc.addr, "")
			b, err := os.ReadFile(conf)
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, conf, strings.Replace(string(b), "auth_opt_cache true", "auth_opt_cache "+cache, 1))
			startMidge(t, addr, "-c", conf)

			sub, code := dial(t, addr, codec.Version5, "reader", "reader", "pw", false)
			if code != 0 {
				t.Fatalf("reader: CONNACK %#x", code)
			}
			got := make(chan string, 16)
			sub.OnMessage = func(m *client.Message) { got <- string(m.Topic) + " " + string(m.Payload) }
			for _, f := range []string{"d/#", "noread/#", "slow/#"} {
				if c := subCode(t, sub, f); c != 1 {
					t.Fatalf("subscribe %s: %#x", f, c)
				}
			}
			pub, code := dial(t, addr, codec.Version5, "writer", "writer", "pw", false)
			if code != 0 {
				t.Fatalf("writer: CONNACK %#x", code)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			sent := []string{"d/1 a", "noread/1 b", "slow/1 c", "d/2 d", "d/1 e"}
			for _, m := range sent {
				topic, payload, _ := strings.Cut(m, " ")
				if err := pub.Publish(ctx, &client.Message{Topic: []byte(topic), Payload: []byte(payload), QoS: 1}); err != nil {
					t.Fatalf("publish %s: %v", m, err)
				}
			}
			want := []string{"d/1 a", "slow/1 c", "d/2 d", "d/1 e"}
			for i, w := range want {
				select {
				case m := <-got:
					if m != w {
						t.Fatalf("message %d: %q, want %q (all: %v)", i, m, w, want)
					}
				case <-time.After(10 * time.Second):
					t.Fatalf("message %d (%q) never came", i, w)
				}
			}
			select {
			case m := <-got:
				t.Fatalf("unexpected %q", m)
			case <-time.After(300 * time.Millisecond):
			}
		})
	}
}
