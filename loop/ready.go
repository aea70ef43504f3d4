package loop

import (
	"context"
	"sync"

	"github.com/panjf2000/gnet/v2"
)

// readyList collects the connections of one loop that have messages to
// send. A delivery from any goroutine appends the subscriber's connection
// (once per batch: a session wakes its connection only when its queue goes
// from idle to pending) and, if the list was empty, schedules one task on
// the loop that serves them all. So a fan-out to thousands of subscribers
// costs each loop one wake-up, not one per subscriber [design rule 3].
type readyList struct {
	mu        sync.Mutex
	conns     []*conn
	spare     []*conn
	scheduled bool
	run       gnet.RunnableFunc // serve, made once so scheduling allocates no closure of ours
}

// wake marks c ready and makes sure the loop will serve it. Any goroutine.
func (ls *loopState) wake(c *conn) {
	r := &ls.ready
	r.mu.Lock()
	r.conns = append(r.conns, c)
	first := !r.scheduled
	r.scheduled = true
	r.mu.Unlock()
	if first {
		if err := ls.el.Execute(context.Background(), r.run); err != nil {
			// The engine is shutting down: nothing will be served again.
			r.mu.Lock()
			r.scheduled = false
			r.mu.Unlock()
		}
	}
}

// serveReady drains and flushes every ready connection. Loop-only.
func (ls *loopState) serveReady(context.Context) error {
	r := &ls.ready
	r.mu.Lock()
	batch := r.conns
	r.conns, r.spare = r.spare[:0], nil
	r.scheduled = false
	r.mu.Unlock()
	ls.waking = true
	for i, c := range batch {
		batch[i] = nil
		if c.is(closed) {
			continue
		}
		if err := c.turn(&ls.out); err != nil {
			ls.srv.logClose(c, err)
			if !c.linger(err) {
				_ = ls.el.Close(c.gc)
			}
		}
	}
	ls.waking = false
	r.mu.Lock()
	if r.spare == nil {
		r.spare = batch[:0]
	}
	r.mu.Unlock()
	return nil
}
