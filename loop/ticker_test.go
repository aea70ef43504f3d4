package loop

import (
	"fmt"
	"testing"
	"time"

	"github.com/midge-mqtt/midge/codec"
)

// TestTickerIdle: with connections open and nothing to do, each loop is
// ticked about once a second (its wheel's resolution), not every tickEvery:
// each wake-up of a loop costs CPU, and idle must cost what is due. A
// connection whose keepalive runs out is still closed on time.
func TestTickerIdle(t *testing.T) {
	tb := startBroker(t, nil)
	for i := 0; i < 4; i++ { // on both loops, most likely
		tb.v3Connect(t, codec.Version311, fmt.Sprintf("idle-%d", i), true)
	}
	silent := tb.v3Dial(t, codec.Version311)
	silent.send(v3ConnectPacket(codec.Version311, "silent", true, 1)) // closed 1.5 s after its last packet
	silent.expect(codec.CONNACK)
	counts := func() (n []uint32) {
		tb.Server.mu.Lock()
		defer tb.Server.mu.Unlock()
		for _, ls := range tb.Server.loops {
			n = append(n, ls.ticks.Load())
		}
		return n
	}
	before := counts()
	began := time.Now()
	silent.expectClosed() // [MQTT-3.1.2-24]
	if took := time.Since(began); took > 3*time.Second {
		t.Fatalf("keepalive 1 s: closed after %v, want within 1.5 s and a tick", took)
	}
	time.Sleep(time.Second)
	after := counts()
	secs := time.Since(began).Seconds()
	for i := range before {
		if ticks := after[i] - before[i]; float64(ticks) > secs+2 {
			t.Errorf("loop %d ticked %d times in %.1f s of idleness; want about once a second", i, ticks, secs)
		}
	}
}
