// Package goauth serves mosquitto-go-auth's contract natively (auth_plugin
// .../go-auth.so with its auth_opt_* keys): its http and files backends,
// tried in the order of auth_opt_backends, superusers asked before ACLs,
// and its cache. Questions that need the HTTP service never block an event
// loop: the connection is parked (session.Ticket) until the answer is in.
package goauth

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/midge-mqtt/midge/auth"
	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/session"
)

// OptError is a bad or missing auth_opt_ option (Name without the prefix).
type OptError struct{ Name, Msg string }

func (e *OptError) Error() string { return "auth_opt_" + e.Name + ": " + e.Msg }

type backend interface {
	name() string
	getUser(ctx context.Context, username, password, clientID string) (bool, error)
	superuser(ctx context.Context, username string) (bool, error)
	checkACL(ctx context.Context, username, topic, clientID string, acc int) (bool, error)
}

// Provider is the go-auth plugin as an auth.Provider.
type Provider struct {
	backends    []backend
	needsIO     bool // a backend asks the network: answers may come later
	cache       *cache
	retries     int
	noSuperuser bool
	stats       *session.Stats
	// AllowSpecialChars is auth_plugin_deny_special_chars false: clients
	// whose username or client id holds '+' or '#' are asked about too.
	AllowSpecialChars bool

	mu sync.Mutex
	// fetching: deliveries' misses being fetched in the background, with
	// the subscribers to wake when each answer is in.
	fetching map[aclKey][]func()
	// fetched: answers kept for the delivery that asked (without a cache,
	// or an error, which is never cached), taken by its next question.
	fetched map[aclKey]fetchedAnswer
}

type fetchedAnswer struct {
	r  auth.Result
	at time.Time
}

// known are the go-auth options midge reads or may safely ignore (logging,
// hasher settings for making hashes). Any other is refused, so that a
// setting is never silently dropped.
var known = map[string]bool{
	"backends": true, "cache": true, "cache_type": true, "auth_cache_seconds": true, "acl_cache_seconds": true,
	"auth_jitter_seconds": true, "acl_jitter_seconds": true, "cache_reset": true, "cache_refresh": true,
	"retry_count": true, "disable_superuser": true, "log_level": true, "log_dest": true, "log_file": true,
	"hasher": true, "hasher_salt_size": true, "hasher_iterations": true, "hasher_algorithm": true,
	"hasher_keylen": true, "hasher_salt_encoding": true, "hasher_cost": true, "hasher_memory": true,
	"hasher_parallelism": true, "password_path": true, "acl_path": true, "midge_denial_cache_seconds": true,
	"http_host": true, "http_port": true, "http_getuser_uri": true, "http_superuser_uri": true,
	"http_aclcheck_uri": true, "http_with_tls": true, "http_verify_peer": true, "http_timeout": true,
	"http_method": true, "http_params_mode": true, "http_response_mode": true, "http_user_agent": true,
}

// New reads the options (names without auth_opt_) in the order given.
func New(names []string, opt func(string) (string, bool)) (*Provider, error) {
	for _, n := range names {
		if !known[n] {
			return nil, &OptError{Name: n, Msg: "not supported by midge's go-auth (it serves the http and files backends)"}
		}
	}
	p := &Provider{fetching: map[aclKey][]func(){}, fetched: map[aclKey]fetchedAnswer{}}
	list, ok := opt("backends")
	if !ok || strings.TrimSpace(list) == "" {
		return nil, &OptError{Name: "backends", Msg: "missing (http and/or files)"}
	}
	names = strings.FieldsFunc(list, func(r rune) bool { return r == ',' || r == ' ' })
	for _, n := range names {
		switch n {
		case "http":
			b, err := newHTTP(opt)
			if err != nil {
				return nil, err
			}
			p.backends, p.needsIO = append(p.backends, b), true
		case "files":
			b, err := newFiles(opt, len(names) == 1)
			if err != nil {
				return nil, err
			}
			p.backends = append(p.backends, b)
		default:
			return nil, &OptError{Name: "backends", Msg: fmt.Sprintf("backend %q is not supported by midge (it serves http and files)", n)}
		}
	}
	seconds := func(name string, def int) (time.Duration, error) {
		v, ok := opt(name)
		if !ok {
			return time.Duration(def) * time.Second, nil
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return 0, &OptError{Name: name, Msg: fmt.Sprintf("expected seconds, got %q", v)}
		}
		return time.Duration(n) * time.Second, nil
	}
	if v, _ := opt("cache"); v == "true" {
		if t, _ := opt("cache_type"); t != "" && t != "go-cache" {
			return nil, &OptError{Name: "cache_type", Msg: fmt.Sprintf("%q is not supported by midge (its cache is in memory, as go-cache)", t)}
		}
		c := newCache()
		var err error
		for _, s := range []struct {
			name string
			def  int
			d    *time.Duration
		}{{"auth_cache_seconds", 30, &c.authTTL}, {"acl_cache_seconds", 30, &c.aclTTL},
			{"auth_jitter_seconds", 0, &c.authJitter}, {"acl_jitter_seconds", 0, &c.aclJitter},
			{"midge_denial_cache_seconds", 5, &c.denyTTL}} {
			if *s.d, err = seconds(s.name, s.def); err != nil {
				return nil, err
			}
		}
		p.cache = c
		go func() {
			for range time.Tick(time.Minute) {
				c.sweep()
			}
		}()
	}
	if v, ok := opt("retry_count"); ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return nil, &OptError{Name: "retry_count", Msg: fmt.Sprintf("expected a count, got %q", v)}
		}
		p.retries = n
	}
	p.noSuperuser, _ = boolOpt(opt, "disable_superuser")
	return p, nil
}

func boolOpt(opt func(string) (string, bool), name string) (bool, bool) {
	v, ok := opt(name)
	return v == "true", ok
}

// SetStats counts cache hits and misses in s.
func (p *Provider) SetStats(s *session.Stats) { p.stats = s }

// Ticket values: a Result, with a CONNECT refusal's reason code above it.
func ticketValue(r auth.Result, code byte) uint32 { return uint32(r) | uint32(code)<<8 }

func fromTicket(v uint32) (auth.Result, byte) { return auth.Result(v & 0xFF), byte(v >> 8) }

// Authenticate implements auth.Provider: a client without a username or
// password is refused without asking; otherwise the cache, then each
// backend's getuser in turn (the first grant wins; an error is remembered).
// A question for the HTTP service parks the client.
func (p *Provider) Authenticate(l *auth.Login, w *session.Client) (auth.Result, byte) {
	if w != nil && w.HasAnswers() {
		if v, ok := w.Ticket().Lookup("connect"); ok {
			return fromTicket(v)
		}
	}
	if !l.HasUsername || !l.HasPassword || len(l.Username) == 0 {
		return auth.Deny, codec.NotAuthorized
	}
	username, password := string(l.Username), string(l.Password)
	var key [32]byte
	if p.cache != nil {
		key = authKey(username, password)
		if allow, ok := p.cache.authGet(key); ok {
			p.count(true)
			if allow {
				return auth.Allow, 0
			}
			return auth.Deny, codec.NotAuthorized
		}
		p.count(false)
	}
	ask := func(ctx context.Context) (auth.Result, byte) {
		ok, err := p.any(func(b backend) (bool, error) { return b.getUser(ctx, username, password, l.ClientID) })
		switch {
		case ok:
			if p.cache != nil {
				p.cache.authPut(key, true)
			}
			return auth.Allow, 0
		case err != nil:
			return auth.Error, codec.ServerUnavailable
		}
		if p.cache != nil {
			p.cache.authPut(key, false)
		}
		return auth.Deny, codec.NotAuthorized
	}
	if !p.needsIO {
		return ask(context.Background())
	}
	if w == nil {
		return auth.Error, codec.ServerUnavailable // nobody to wait for the answer
	}
	k := w.Ticket()
	if !k.Begin("connect") {
		return auth.Pending, 0
	}
	go func() {
		r, code := ask(context.Background())
		k.Answer(ticketValue(r, code))
	}()
	return auth.Pending, 0
}

// any asks each backend in order, with retry_count retries on error: true
// on the first grant; otherwise the first error, if any.
func (p *Provider) any(q func(b backend) (bool, error)) (bool, error) {
	var first error
	for _, b := range p.backends {
		var ok bool
		var err error
		for try := 0; try <= p.retries; try++ {
			if ok, err = q(b); err == nil {
				break
			}
		}
		if ok && err == nil {
			return true, nil
		}
		if err != nil && first == nil {
			first = err
		}
	}
	return false, first
}

// Check implements auth.Provider. go-auth (a v4 plugin) is not asked about
// unsubscribing. A cached answer costs one map lookup and no allocation;
// a miss asks superuser then ACL of each backend, parking the client for
// the HTTP service. A question that cannot wait (w nil: check_retain_source)
// is refused on a miss, and the answer fetched for the next one; deliveries
// ask CheckRead, which waits.
func (p *Provider) Check(ci *session.ClientInfo, topic string, access session.Access, w *session.Client) auth.Result {
	var acc int
	switch access {
	case session.AccessRead:
		acc = accRead
	case session.AccessWrite:
		acc = accWrite
	case session.AccessSubscribe:
		acc = accSubscribe
	default:
		return auth.Allow
	}
	var m *memo
	if w != nil && p.cache != nil { // the connection's own questions: its private cache
		slot := w.AuthMemo()
		if m, _ = (*slot).(*memo); m == nil {
			m = &memo{m: make(map[memoKey]entry), special: p.special(ci)}
			*slot = m
		}
		if m.special {
			return auth.Deny
		}
	} else if p.special(ci) {
		return auth.Deny
	}
	if w != nil && w.HasAnswers() {
		if v, ok := w.Ticket().Lookup(questionKey(topic, acc)); ok {
			r, _ := fromTicket(v)
			return r
		}
	}
	key := aclKey{username: ci.Username, clientID: ci.ClientID, topic: topic, acc: int8(acc)}
	if p.cache != nil {
		if m != nil {
			if e, ok := m.get(topic, int8(acc)); ok {
				return p.hit(e.allow)
			}
		}
		if e, ok := p.cache.aclEntry(key); ok {
			if m != nil {
				m.put(topic, int8(acc), e)
			}
			return p.hit(e.allow)
		}
		p.count(false)
	}
	if !p.needsIO {
		return p.askACL(context.Background(), key)
	}
	if w == nil {
		p.fetch(key, nil) // for the next question
		return auth.Deny
	}
	k := w.Ticket()
	if !k.Begin(questionKey(topic, acc)) {
		return auth.Pending
	}
	key = aclKey{clone(key.username), clone(key.clientID), clone(key.topic), key.acc}
	go func() {
		r := p.askACL(context.Background(), key)
		if r == auth.Allow && acc == accSubscribe && !strings.ContainsAny(key.topic, "+#") {
			// A literal subscription will be read from: have its answer
			// ready for the first delivery, which cannot wait.
			rk := key
			rk.acc = accRead
			p.askACL(context.Background(), rk)
		}
		k.Answer(ticketValue(r, 0))
	}()
	return auth.Pending
}

// special reports what mosquitto refuses every topic to, for a v4 plugin
// such as go-auth (auth_plugin_deny_special_chars, on by default): a
// username or client id holding '+' or '#', which could widen a pattern.
func (p *Provider) special(ci *session.ClientInfo) bool {
	return !p.AllowSpecialChars && (strings.ContainsAny(ci.Username, "+#") || strings.ContainsAny(ci.ClientID, "+#"))
}

// questionKey names an ACL question in the client's Ticket.
func questionKey(topic string, acc int) string { return strconv.Itoa(acc) + " " + topic }

// askACL is go-auth's checkAcl: superuser first (unless disabled), then
// each backend's ACL. The answer is cached (not an error).
func (p *Provider) askACL(ctx context.Context, key aclKey) auth.Result {
	var errSuper error
	if !p.noSuperuser {
		ok, err := p.any(func(b backend) (bool, error) { return b.superuser(ctx, key.username) })
		if ok {
			if p.cache != nil {
				p.cache.superPut(key.username, true)
			}
			return auth.Allow
		}
		errSuper = err
	}
	ok, err := p.any(func(b backend) (bool, error) {
		return b.checkACL(ctx, key.username, key.topic, key.clientID, int(key.acc))
	})
	switch {
	case ok:
		if p.cache != nil {
			p.cache.aclPut(key, true)
		}
		return auth.Allow
	case err != nil || errSuper != nil:
		return auth.Error
	}
	if p.cache != nil {
		p.cache.aclPut(key, false)
	}
	return auth.Deny
}

// CheckRead implements auth.ReadWaiter: a delivery's question. A cached
// answer, or the one fetched for an earlier miss of this question, is given
// at once; a miss fetches the answer in the background and answers Pending,
// and wake is called once it is in: the message waits in the subscriber's
// queue meanwhile, never refused for want of an answer (mosquitto, whose
// plugin calls block, never refuses one either).
func (p *Provider) CheckRead(ci *session.ClientInfo, topic string, wake func()) auth.Result {
	if !p.needsIO {
		return p.Check(ci, topic, session.AccessRead, nil)
	}
	if p.special(ci) {
		return auth.Deny
	}
	key := aclKey{username: ci.Username, clientID: ci.ClientID, topic: topic, acc: accRead}
	if p.cache != nil {
		if e, ok := p.cache.aclEntry(key); ok {
			return p.hit(e.allow)
		}
		p.count(false)
	}
	p.mu.Lock()
	if a, ok := p.fetched[key]; ok {
		delete(p.fetched, key)
		p.mu.Unlock()
		return a.r
	}
	p.mu.Unlock()
	p.fetch(key, wake)
	return auth.Pending
}

// fetch asks the backends about key in the background, once however many
// ask meanwhile, and calls wake (if not nil) when the answer is in: from the
// cache, or from fetched.
func (p *Provider) fetch(key aclKey, wake func()) {
	p.mu.Lock()
	waiting, busy := p.fetching[key]
	if !busy {
		key = aclKey{clone(key.username), clone(key.clientID), clone(key.topic), key.acc}
	}
	if wake != nil {
		waiting = append(waiting, wake)
	}
	p.fetching[key] = waiting
	p.mu.Unlock()
	if busy {
		return
	}
	go func() {
		r := p.askACL(context.Background(), key)
		now := time.Now()
		p.mu.Lock()
		wakes := p.fetching[key]
		delete(p.fetching, key)
		// Kept even with a cache: an error is not cached, nor is anything
		// with acl_cache_seconds 0, and the delivery must get an answer.
		if len(p.fetched) >= 4096 { // answers nobody came back for
			for k, a := range p.fetched {
				if now.Sub(a.at) > time.Minute {
					delete(p.fetched, k)
				}
			}
		}
		p.fetched[key] = fetchedAnswer{r: r, at: now}
		p.mu.Unlock()
		for _, w := range wakes {
			w()
		}
	}()
}

func (p *Provider) hit(allow bool) auth.Result {
	p.count(true)
	if allow {
		return auth.Allow
	}
	return auth.Deny
}

func (p *Provider) count(hit bool) {
	if s := p.stats; s != nil {
		if hit {
			s.AuthCacheHits.Add(1)
		} else {
			s.AuthCacheMisses.Add(1)
		}
	}
}
