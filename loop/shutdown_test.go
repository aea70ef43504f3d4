package loop

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/midge-mqtt/midge/codec"
)

// TestShutdownDisconnects checks that Server.Shutdown sends every v5 client
// DISCONNECT 0x8B (Server shutting down) before closing it, closes v3
// clients (v3 has no server DISCONNECT), and stops accepting connections.
func TestShutdownDisconnects(t *testing.T) {
	t.Parallel()
	tb := startBroker(t, nil)
	var v5 []*rawConn
	for i := 0; i < 4; i++ { // spread over both loops
		v5 = append(v5, tb.rawV5(t, "", nil))
	}
	v3 := tb.raw(t, codec.Version311)
	v3.connect(connectPacket(codec.Version311, "v3", true))
	pc, _ := tb.paho(t, &paho.Connect{ClientID: "paho", CleanStart: true}, false)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tb.Server.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	for _, r := range v5 {
		r.expectDisconnect(codec.ServerShuttingDown)
	}
	v3.expectClosed()
	select {
	case <-pc.Done():
	case <-time.After(v5Wait):
		t.Fatal("paho client still connected")
	}
	if c, err := net.DialTimeout("tcp", tb.Addr, time.Second); err == nil {
		c.Close()
		t.Fatal("broker still accepts connections")
	}
}
