package session

import (
	"testing"
	"unsafe"
)

// TestSessionSize holds the Session, one per connected client, in the
// 128-byte size class (144 before its connect time went to 32 bits): every
// idle connection pays for it (loop.TestIdleConnectionFootprint).
func TestSessionSize(t *testing.T) {
	if n := unsafe.Sizeof(Session{}); n > 128 {
		t.Fatalf("Session is %d bytes, over the 128-byte size class", n)
	}
}
