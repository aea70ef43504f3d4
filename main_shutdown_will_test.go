package main

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/midge-mqtt/midge/client"
	"github.com/midge-mqtt/midge/codec"
)

// TestShutdownPublishesWills: a will waiting for its delay when the broker
// stops is published after the restart [MQTT-3.1.3-9], from the store, to a
// persistent subscriber. And a broker that stops (SIGTERM) closes its
// clients' connections without their DISCONNECT, so their wills are due
// [MQTT-3.1.2-8] (v5 3.1.2.5: "the Server closes the Network Connection
// without first receiving a DISCONNECT packet with a Reason Code 0x00"): a
// will without delay goes out as the broker stops, and the persistent
// subscriber finds it queued after the restart; a delayed will of a session
// that outlives the stop is kept with the session and goes out once its
// delay has passed, after the restart.
func TestShutdownPublishesWills(t *testing.T) {
	for _, tc := range []struct {
		name        string
		delay       uint32
		closedFirst bool // the client closed its connection before the stop
	}{{"closed before the stop", 2, true}, {"immediate", 0, false}, {"delayed", 2, false}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			conf, addr := persistConfig(t, dir, "")
			cmd, out := startMidge(t, addr, "-c", conf)

			sub := pahoClient(t, addr, "will-sub", false, nil)
			waitToken(t, sub.Subscribe("will/#", 1, nil), "subscribe")
			sub.Disconnect(100)

			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var props codec.Properties
			props.SessionExpiry = 60
			props.Set(codec.PropSessionExpiry)
			var willProps codec.Properties
			if tc.delay > 0 {
				willProps.WillDelay = tc.delay
				willProps.Set(codec.PropWillDelay)
			}
			dying := client.New(client.Options{Addr: addr, ClientID: "dying", Version: codec.Version5, Props: props,
				Will: &client.Message{Topic: []byte("will/dying"), Payload: []byte("bye"), QoS: 1, Props: &willProps}})
			if err := dying.Connect(ctx); err != nil {
				t.Fatalf("connect: %v", err)
			}
			defer dying.Close()
			if tc.closedFirst {
				dying.Close() // no DISCONNECT: the will waits for its delay
				// The will must be waiting when the broker stops.
				waitFor(t, func() bool { return strings.Contains(out.String(), "Client dying closed its connection") })
			} else {
				waitFor(t, func() bool { return strings.Contains(out.String(), "as dying (") })
			}

			stopMidge(t, cmd, syscall.SIGTERM)
			startMidge(t, addr, "-c", conf)
			time.Sleep(time.Duration(tc.delay)*time.Second + time.Second) // past the will delay

			col := &collector{}
			sub = pahoClient(t, addr, "will-sub", false, col.handle)
			defer sub.Disconnect(100)
			if got := col.quietFor(500 * time.Millisecond); len(got) != 1 || got[0] != "will/dying bye 1" {
				t.Errorf("after restart the will subscriber got %q, want the will", got)
			}
		})
	}
}
