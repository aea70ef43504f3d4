package goauth

import (
	"crypto/sha256"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// clock is a coarse unix-nanosecond clock for cache expiry, so that a
// cache hit on the publish path does not read the system clock. It runs
// only once a cache is made (startClock): nothing ticks when go-auth is
// not configured.
var (
	clock     atomic.Int64
	clockOnce sync.Once
)

func startClock() {
	clockOnce.Do(func() {
		clock.Store(time.Now().UnixNano())
		go func() {
			for now := range time.Tick(50 * time.Millisecond) {
				clock.Store(now.UnixNano())
			}
		}()
	})
}

// aclKey is one ACL question. Its strings may be borrowed for a lookup;
// they are copied before the key is stored.
type aclKey struct {
	username, clientID, topic string
	acc                       int8
}

type entry struct {
	expires int64 // unix ns
	allow   bool
}

// cache holds answers as go-auth's cache does: grants and denials for their
// TTL (plus jitter), never errors; denials may be kept shorter (midge's
// own denial TTL). Safe for concurrent use.
type cache struct {
	authTTL, aclTTL, authJitter, aclJitter, denyTTL time.Duration

	mu    sync.RWMutex
	acl   map[aclKey]entry
	auth  map[[32]byte]entry // sha256 of username and password (go-auth's key): no password kept
	super map[string]entry   // superusers, answered with any ACL question
}

func newCache() *cache {
	startClock()
	c := &cache{acl: map[aclKey]entry{}, auth: map[[32]byte]entry{}, super: map[string]entry{}}
	return c
}

func (c *cache) ttl(base, jitter time.Duration, allow bool) int64 {
	d := base
	if jitter > 0 { // go-auth: the TTL plus or minus up to the jitter
		d += rand.N(2*jitter) - jitter
		d = max(d, 0)
	}
	if !allow && c.denyTTL > 0 && c.denyTTL < d {
		d = c.denyTTL
	}
	return clock.Load() + int64(d)
}

func (c *cache) aclPut(k aclKey, allow bool) {
	k.username, k.clientID, k.topic = clone(k.username), clone(k.clientID), clone(k.topic)
	e := entry{expires: c.ttl(c.aclTTL, c.aclJitter, allow), allow: allow}
	c.mu.Lock()
	c.acl[k] = e
	c.mu.Unlock()
}

func (c *cache) superPut(username string, yes bool) {
	e := entry{expires: c.ttl(c.aclTTL, c.aclJitter, yes), allow: yes}
	c.mu.Lock()
	c.super[clone(username)] = e
	c.mu.Unlock()
}

func authKey(username, password string) [32]byte {
	h := sha256.New()
	for _, s := range []string{username, password} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	var k [32]byte
	h.Sum(k[:0])
	return k
}

func (c *cache) authGet(k [32]byte) (allow, found bool) {
	c.mu.RLock()
	e, ok := c.auth[k]
	c.mu.RUnlock()
	if !ok || e.expires <= clock.Load() {
		return false, false
	}
	return e.allow, true
}

func (c *cache) authPut(k [32]byte, allow bool) {
	e := entry{expires: c.ttl(c.authTTL, c.authJitter, allow), allow: allow}
	c.mu.Lock()
	c.auth[k] = e
	c.mu.Unlock()
}

// sweep drops expired entries.
func (c *cache) sweep() {
	now := clock.Load()
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.acl {
		if e.expires <= now {
			delete(c.acl, k)
		}
	}
	for k, e := range c.auth {
		if e.expires <= now {
			delete(c.auth, k)
		}
	}
	for k, e := range c.super {
		if e.expires <= now {
			delete(c.super, k)
		}
	}
}

func clone(s string) string { return string([]byte(s)) }

// memo is one connection's private cache of ACL answers (its username and
// client id are fixed): a lookup hashes only the topic and takes no lock.
// It is filled from the shared cache and bounded: when full it starts over.
type memo struct {
	m       map[memoKey]entry
	special bool // its username or client id holds '+' or '#': refused everything
}

type memoKey struct {
	topic string
	acc   int8
}

const memoMax = 256

func (m *memo) get(topic string, acc int8) (entry, bool) {
	e, ok := m.m[memoKey{topic, acc}]
	if !ok || e.expires <= clock.Load() {
		return entry{}, false
	}
	return e, true
}

func (m *memo) put(topic string, acc int8, e entry) {
	if len(m.m) >= memoMax {
		clear(m.m)
	}
	m.m[memoKey{clone(topic), acc}] = e
}

// aclEntry answers from the shared cache (a superuser's grant covers every
// topic), returning the entry for a connection's memo to copy.
func (c *cache) aclEntry(k aclKey) (entry, bool) {
	now := clock.Load()
	c.mu.RLock()
	e, ok := c.acl[k]
	s, sok := c.super[k.username]
	c.mu.RUnlock()
	if ok && e.expires > now {
		return e, true
	}
	if sok && s.allow && s.expires > now && k.username != "" {
		return s, true
	}
	return entry{}, false
}
