package loop

import (
	"errors"
	"syscall"
	"time"

	"github.com/gobwas/ws"

	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/session"
)

// lingerFor is how long a connection closed with a reason code goes on
// being read (and discarded) after the broker shut its side for writing.
const lingerFor = time.Second

// linger ends a connection whose last packet carries a reason (a v5
// DISCONNECT, or a CONNACK refusing it) so that the client can read it: a
// close() with unread bytes in the socket makes the kernel send a reset,
// which discards what the client had not read yet, reason included. So the
// broker shuts its side for writing (the client reads the reason, then end
// of stream), discards what still arrives, and closes once the client
// closes or lingerFor has passed (the wheel's next second after it). The
// session ends now: the will and the registry do not wait. It reports false
// when the connection must simply be closed instead. Loop-only.
func (c *conn) linger(err error) bool {
	if !reasonCoded(err) {
		return false
	}
	if c.is(webSocket) {
		// The WebSocket closing handshake first (RFC 6455 5.5.1): a close
		// frame after the reason, then the same half-close. (Over TLS the
		// frame would have to go through the TLS layer: wss just closes.)
		w := c.ls.ws[c]
		if w == nil || !w.upgraded || c.is(secure) {
			return false
		}
		w.closeFrame(ws.StatusNormalClosure)
		_, _ = c.gc.Write(w.ctl)
		w.ctl = w.ctl[:0]
	}
	if c.gc.OutboundBuffered() > 0 {
		return false
	}
	if syscall.Shutdown(c.gc.Fd(), syscall.SHUT_WR) != nil {
		return false
	}
	c.set(lingering, true)
	c.client.Closed(err)
	c.discardInbound()
	c.ls.wheel.remove(c)
	c.ls.wheel.add(c, ceilSecond(time.Now().Add(lingerFor).UnixMilli()))
	return true
}

// discardInbound drops what a lingering connection has sent. Loop-only.
func (c *conn) discardInbound() {
	if n := c.gc.InboundBuffered(); n > 0 {
		_, _ = c.gc.Discard(n)
	}
}

// reasonCoded reports whether err closes a connection after a packet that
// says why (a v5 DISCONNECT, or a CONNACK's refusal).
func reasonCoded(err error) bool {
	var d *session.Disconnect
	var ce *codec.Error
	return errors.As(err, &d) || errors.As(err, &ce)
}
