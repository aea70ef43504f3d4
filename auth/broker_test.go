package auth

import (
	"testing"

	"github.com/midge-mqtt/midge/codec"
)

// TestAskConnectAllocs: with no provider (allow_anonymous alone, the
// default), deciding a CONNECT allocates nothing; it left an 80-byte Login
// of garbage per connect before.
func TestAskConnectAllocs(t *testing.T) {
	a := New(true, nil)
	id, user := "sensor-1", []byte("u")
	var got byte
	if n := testing.AllocsPerRun(100, func() { got = a.AskConnect(nil, id, user, nil, true, false) }); n != 0 {
		t.Fatalf("AskConnect allocates %.1f times per call, want 0", n)
	}
	if got != codec.Success {
		t.Fatalf("AskConnect = %#x, want success (allow_anonymous)", got)
	}
}
