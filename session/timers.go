package session

import (
	"container/heap"
	"sync"
)

// timers holds the broker-wide deadlines that outlive a connection: session
// expiry, delayed wills, the end of a dedup window (dedup.go). They are few
// (one per disconnected persistent session, or session that moved across a
// cluster's nodes lately, at most) and fire from Broker.Tick, so a mutex-guarded heap is
// enough; per-connection deadlines (keepalive) live in the loops' wheels.
type timers struct {
	mu sync.Mutex
	h  timerHeap
}

type timerKind byte

const (
	timerExpiry timerKind = iota + 1 // end a disconnected session
	timerWill                        // publish a delayed will
	timerDedup                       // let a session's dedup window go
)

type timer struct {
	at   int64 // unix nanoseconds
	kind timerKind
	s    *Session
	gen  uint32 // s.timerGen when scheduled; a newer generation cancels it
	will *will
	ids  *recentIDs // timerDedup: the window it ends (a newer one cancels it)
}

type timerHeap []timer

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h timerHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *timerHeap) Push(x any)        { *h = append(*h, x.(timer)) }
func (h *timerHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = timer{}
	*h = old[:len(old)-1]
	return t
}

func (t *timers) init() {}

func (t *timers) add(tm timer) {
	t.mu.Lock()
	heap.Push(&t.h, tm)
	t.mu.Unlock()
}

// due pops every timer at or before now.
func (t *timers) due(now int64, out []timer) []timer {
	t.mu.Lock()
	for len(t.h) > 0 && t.h[0].at <= now {
		out = append(out, heap.Pop(&t.h).(timer))
	}
	t.mu.Unlock()
	return out
}

// fire runs the due timers outside the timers' lock.
func (t *timers) fire(now int64, b *Broker) {
	for _, tm := range t.due(now, nil) {
		switch tm.kind {
		case timerExpiry:
			b.expireSession(tm.s, tm.gen)
		case timerWill:
			b.fireDelayedWill(tm.s, tm.gen, tm.will)
		case timerDedup:
			b.endRecent(tm.s, tm.ids, now)
		}
	}
}
