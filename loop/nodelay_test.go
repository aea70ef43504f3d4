package loop

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/midge-mqtt/midge/codec"
)

// TestTCPNoDelay: accepted sockets have TCP_NODELAY set by default, and
// Nagle's algorithm left on with Config.Nagle (set_tcp_nodelay false). The
// option is read from the broker's own end of a real connection.
func TestTCPNoDelay(t *testing.T) {
	for _, nagle := range []bool{false, true} {
		tb := startBroker(t, nil, func(c *Config) { c.Nagle = nagle })
		r := tb.raw(t, codec.Version311)
		// Read before the CONNECT, while the connection is in its loop's
		// timing wheel (the connect timeout), where a loop finds it.
		got := make(chan int, 4)
		for deadline := time.Now().Add(v3Wait); len(got) == 0 && time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			tb.Server.mu.Lock()
			loops := make([]*loopState, 0, len(tb.Server.loops))
			for _, ls := range tb.Server.loops {
				loops = append(loops, ls)
			}
			tb.Server.mu.Unlock()
			for _, ls := range loops {
				done := make(chan struct{})
				_ = ls.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
					defer close(done)
					for i := range ls.wheel.slots {
						for c := ls.wheel.slots[i].head; c != nil; c = c.wheelNext {
							v, err := syscall.GetsockoptInt(c.gc.Fd(), syscall.IPPROTO_TCP, syscall.TCP_NODELAY)
							if err != nil {
								v = -1
							}
							got <- v
						}
					}
					return nil
				}))
				<-done
			}
		}
		p := &codec.Packet{Type: codec.CONNECT}
		p.Connect.ProtocolLevel, p.Connect.ProtocolName = codec.Version311, []byte("MQTT")
		p.Connect.ClientID, p.Connect.CleanStart = []byte("nd"), true
		r.send(p)
		r.expect(codec.CONNACK)
		if len(got) == 0 {
			t.Fatal("the connection was not found in any loop")
		}
		v := <-got
		if want := map[bool]int{false: 1, true: 0}[nagle]; (v != 0) != (want != 0) || v < 0 {
			t.Fatalf("Nagle %v: TCP_NODELAY = %d", nagle, v)
		}
	}
}
