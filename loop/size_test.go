package loop

import (
	"testing"
	"unsafe"
)

// TestConnSize holds midge's per-connection record (the session.Client
// inside) in the 144-byte size class (160 while it kept gnet's conn as a
// 16-byte interface): every idle connection pays for it
// (TestIdleConnectionFootprint).
func TestConnSize(t *testing.T) {
	if n := unsafe.Sizeof(conn{}); n > 144 {
		t.Fatalf("conn is %d bytes, over the 144-byte size class", n)
	}
}
