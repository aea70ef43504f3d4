package loop

import (
	"testing"

	"github.com/panjf2000/gnet/v2"
)

// TestRemoteAddrAfterClose pins the crash the soak found: a write that
// fails in the middle of a turn (the DISCONNECT 0x8E to a client taken over
// that had already gone) makes gnet close the connection at once, and the
// close was then logged with the nil address, a nil dereference that
// stopped the broker.
func TestRemoteAddrAfterClose(t *testing.T) {
	c := &conn{gc: new(gnet.UnixConn)} // what gnet's release leaves: no address, not open
	if got := c.RemoteAddr(); got != "unknown" {
		t.Fatalf("RemoteAddr of a released connection = %q, want unknown", got)
	}
}
