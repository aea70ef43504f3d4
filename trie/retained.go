package trie

import (
	"strings"
	"sync"
)

// Retained stores the last retained message of each topic, generic over the
// message value. Safe for concurrent use. Topics are kept in a tree of levels
// so that Match walks only the part its filter can reach.
type Retained[M any] struct {
	mu   sync.RWMutex
	root rnode[M]
	n    int
}

type rnode[M any] struct {
	kids  map[string]*rnode[M]
	topic string // the full topic while a message is held
	has   bool
	msg   M
}

// NewRetained returns an empty store.
func NewRetained[M any]() *Retained[M] { return &Retained[M]{} }

// Len returns the number of retained messages.
func (r *Retained[M]) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.n
}

// Set stores m as the retained message of topic, replacing any other.
func (r *Retained[M]) Set(topic string, m M) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := &r.root
	var owned string // the topic's one copy; node keys are substrings of it
	for rest, more, off := topic, true, 0; more; {
		var level string
		level, rest, more = strings.Cut(rest, "/")
		c := n.kids[level]
		if c == nil {
			if owned == "" {
				owned = strings.Clone(topic)
			}
			if n.kids == nil {
				n.kids = make(map[string]*rnode[M], 1)
			}
			c = &rnode[M]{}
			n.kids[owned[off:off+len(level)]] = c
		}
		off += len(level) + 1
		n = c
	}
	if !n.has {
		if owned == "" {
			owned = strings.Clone(topic)
		}
		n.topic, n.has = owned, true
		r.n++
	}
	n.msg = m
}

// Get returns the retained message of topic.
func (r *Retained[M]) Get(topic string) (M, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	n := &r.root
	for rest, more := topic, true; more && n != nil; {
		var level string
		level, rest, more = strings.Cut(rest, "/")
		n = n.kids[level]
	}
	if n == nil || !n.has {
		var zero M
		return zero, false
	}
	return n.msg, true
}

// Delete clears the retained message of topic (a retained PUBLISH with an
// empty payload [MQTT-3.3.1-10]) and prunes the levels left empty.
func (r *Retained[M]) Delete(topic string) (old M, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old, ok = r.root.delete(topic)
	if ok {
		r.n--
	}
	return old, ok
}

func (n *rnode[M]) delete(topic string) (old M, ok bool) {
	level, rest, more := strings.Cut(topic, "/")
	c := n.kids[level]
	if c == nil {
		return old, false
	}
	if more {
		old, ok = c.delete(rest)
	} else if c.has {
		old, ok = c.msg, true
		var zero M
		c.msg, c.has, c.topic = zero, false, ""
	}
	if ok && !c.has && len(c.kids) == 0 {
		delete(n.kids, level)
		if len(n.kids) == 0 {
			n.kids = nil
		}
	}
	return old, ok
}

// retainedHit is one message found by Match, copied out under the read lock.
type retainedHit[M any] struct {
	topic string
	msg   M
}

// Match calls fn for every retained message whose topic matches filter
// ('+', '#', and no '$' topic for a filter starting with a wildcard
// [MQTT-4.7.2-1]) until fn returns false. A shared filter matches as its
// inner filter. The matches are copied under the read lock and fn runs
// without it, so fn may call Set or Delete.
func (r *Retained[M]) Match(filter string, fn func(topic string, m M) bool) {
	if _, inner, ok := ParseShared(filter); ok {
		filter = inner
	}
	var hits []retainedHit[M]
	r.mu.RLock()
	r.root.match(filter, true, &hits)
	r.mu.RUnlock()
	for _, h := range hits {
		if !fn(h.topic, h.msg) {
			return
		}
	}
}

// match appends what filter (the remaining levels) matches below n.
func (n *rnode[M]) match(filter string, root bool, hits *[]retainedHit[M]) {
	level, rest, more := strings.Cut(filter, "/")
	switch level {
	case "#":
		if !root {
			n.emit(hits) // '#' matches the parent level too [MQTT-4.7.1-1]
		}
		for k, c := range n.kids {
			if !(root && strings.HasPrefix(k, "$")) { // [MQTT-4.7.2-1]
				c.all(hits)
			}
		}
	case "+":
		for k, c := range n.kids {
			if root && strings.HasPrefix(k, "$") {
				continue // [MQTT-4.7.2-1]
			}
			if more {
				c.match(rest, false, hits)
			} else {
				c.emit(hits)
			}
		}
	default:
		c := n.kids[level]
		if c == nil {
			return
		}
		if more {
			c.match(rest, false, hits)
		} else {
			c.emit(hits)
		}
	}
}

func (n *rnode[M]) emit(hits *[]retainedHit[M]) {
	if n.has {
		*hits = append(*hits, retainedHit[M]{n.topic, n.msg})
	}
}

func (n *rnode[M]) all(hits *[]retainedHit[M]) {
	n.emit(hits)
	for _, c := range n.kids {
		c.all(hits)
	}
}

// nodes counts the nodes below the root (for tests of pruning).
func (r *Retained[M]) nodes() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var count func(n *rnode[M]) int
	count = func(n *rnode[M]) int {
		c := len(n.kids)
		for _, k := range n.kids {
			c += count(k)
		}
		return c
	}
	return count(&r.root)
}
