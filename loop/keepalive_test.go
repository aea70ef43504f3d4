package loop

import (
	"fmt"
	"testing"
	"time"

	"github.com/midge-mqtt/midge/codec"
)

// TestKeepaliveV3Silent: a client that sends nothing for one and a half
// times its keepalive is disconnected [MQTT-3.1.2-24] — not before, and not
// long after (the timers have one-second slots).
func TestKeepaliveV3Silent(t *testing.T) {
	t.Parallel() // it waits on the clock
	tb := startBroker(t, nil)
	for _, v := range []byte{codec.Version31, codec.Version311} {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			t.Parallel()
			r := tb.v3Dial(t, v)
			r.send(v3ConnectPacket(v, fmt.Sprintf("silent-%d", v), true, 1))
			r.expect(codec.CONNACK)
			start := time.Now()
			if _, err := r.next(6 * time.Second); err == nil || !v3ClosedErr(err) {
				t.Fatalf("want the connection closed, got %v", err)
			}
			// 1.5 s, plus up to a one-second timer slot, plus what a loaded
			// 2-core CI machine adds; never before 1.5 s.
			if took := time.Since(start); took < 1500*time.Millisecond || took > 5*time.Second {
				t.Fatalf("closed after %v, want 1.5s to 5s", took)
			}
		})
	}
}

// TestKeepaliveV3Ping: PINGREQ sent within the keepalive keeps a client
// connected [MQTT-3.1.2-23], whatever the phase of the broker's clock.
func TestKeepaliveV3Ping(t *testing.T) {
	t.Parallel()
	tb := startBroker(t, nil)
	r := tb.v3Dial(t, codec.Version311)
	r.send(v3ConnectPacket(codec.Version311, "pinger", true, 1))
	r.expect(codec.CONNACK)
	for i := 0; i < 5; i++ {
		time.Sleep(450 * time.Millisecond) // the client's own schedule, not a synchronisation
		r.send(&codec.Packet{Type: codec.PINGREQ})
		r.expect(codec.PINGRESP) // [MQTT-3.12.4-1]
	}
}

// TestKeepaliveV3Zero: keepalive 0 turns the mechanism off [MQTT-3.1.2-23].
func TestKeepaliveV3Zero(t *testing.T) {
	t.Parallel()
	tb := startBroker(t, nil)
	r, _ := tb.v3Connect(t, codec.Version311, "forever", true)
	if p, err := r.next(2500 * time.Millisecond); err == nil || v3ClosedErr(err) {
		t.Fatalf("keepalive 0: got %v / %v, want nothing", p, err)
	}
	r.send(&codec.Packet{Type: codec.PINGREQ})
	r.expect(codec.PINGRESP)
}

// TestKeepaliveV3ConnectTimeout: a socket that never sends CONNECT is closed
// after the connect timeout; one that connects in time is not.
func TestKeepaliveV3ConnectTimeout(t *testing.T) {
	t.Parallel()
	tb := startBroker(t, nil, func(c *Config) { c.ConnectTimeout = time.Second })
	idle := tb.v3Dial(t, codec.Version311)
	start := time.Now()
	prompt := tb.v3Dial(t, codec.Version311)
	prompt.send(v3ConnectPacket(codec.Version311, "in-time", true, 0))
	prompt.expect(codec.CONNACK)
	if _, err := idle.next(4 * time.Second); err == nil || !v3ClosedErr(err) {
		t.Fatalf("want the idle socket closed, got %v", err)
	}
	if took := time.Since(start); took < 900*time.Millisecond || took > 2500*time.Millisecond {
		t.Fatalf("closed after %v, want about 1s", took)
	}
	// The socket that sent CONNECT at once is still served.
	prompt.send(&codec.Packet{Type: codec.PINGREQ})
	prompt.expect(codec.PINGRESP)
}
