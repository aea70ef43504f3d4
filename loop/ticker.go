package loop

import (
	"context"
	"time"
)

// The server's ticker replaces gnet's (which wakes at a fixed period): an
// idle broker must cost what is due, not what exists. Deadlines in the
// loops' wheels are whole seconds and the broker's timers (wills, session
// expiry, $SYS) are checked once a second, so the ticker wakes once a second,
// just after the second turns. Only while some loop has stalled connections
// (a socket backed up, a publisher held back) does it wake every tickEvery,
// and then only those loops. Every wake-up of a loop from epoll also costs
// the Go runtime a retake of its P and a burst of sysmon polling: at 50
// ticks a second this was ~5% of a core with 10,000 idle connections.

// runTicker is the ticker's goroutine; it ends with the engine.
func (s *Server) runTicker() {
	t := time.NewTimer(time.Second)
	defer t.Stop()
	var lastSec int64
	for {
		now := time.Now()
		sec := now.Unix()
		newSecond := sec != lastSec
		if newSecond {
			lastSec = sec
			s.broker.Tick(now)
		}
		fast := false
		s.mu.Lock()
		for _, ls := range s.loops {
			retrying := ls.retrying.Load()
			fast = fast || retrying
			if newSecond || retrying {
				_ = ls.el.Execute(context.Background(), ls.tick)
			}
		}
		s.mu.Unlock()
		delay := untilNextSecond(now)
		if fast {
			delay = min(delay, tickEvery)
		}
		t.Reset(delay)
	wait:
		select {
		case <-t.C:
		case <-s.nudge:
			// A loop began retrying: come back within tickEvery.
			if untilNextSecond(time.Now()) > tickEvery {
				t.Reset(tickEvery) // a stale expiry is discarded (Go 1.23 timers)
			}
			goto wait
		case <-s.done:
			return
		}
	}
}

// untilNextSecond is the time from now to just after the next whole second.
func untilNextSecond(now time.Time) time.Duration {
	return time.Second - time.Duration(now.Nanosecond()) + time.Millisecond
}

// onTick retries stalled writes and advances the loop's wheel. Loop-only.
func (ls *loopState) onTick(context.Context) error {
	ls.ticks.Add(1)
	ls.retryStalled()
	ls.wheel.advance(time.Now().Unix(), ls.srv.expire)
	return nil
}

// stall puts c in its loop's list of connections the ticker retries, and
// has the ticker come back soon. Loop-only.
func (c *conn) stall() {
	if c.is(stalled) {
		return
	}
	c.set(stalled, true)
	ls := c.ls
	ls.stalled = append(ls.stalled, c)
	if len(ls.stalled) == 1 {
		ls.retrying.Store(true)
		select {
		case ls.srv.nudge <- struct{}{}:
		default:
		}
	}
}

// retryStalled drains connections whose socket backlog has gone down. Loop-only.
func (ls *loopState) retryStalled() {
	if len(ls.stalled) == 0 {
		return
	}
	keep := ls.stalled[:0]
	for _, c := range ls.stalled {
		if c.is(closed) {
			continue
		}
		if c.gc.OutboundBuffered() > highWater {
			keep = append(keep, c)
			continue
		}
		c.set(stalled, false)
		ls.wake(c)
	}
	for i := len(keep); i < len(ls.stalled); i++ {
		ls.stalled[i] = nil
	}
	ls.stalled = keep
	if len(keep) == 0 {
		ls.retrying.Store(false)
	}
}
