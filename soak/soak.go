package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/midge-mqtt/midge/client"
	"github.com/midge-mqtt/midge/codec"
)

// config is one soak's shape.
type config struct {
	addr     string
	clients  int
	rate     float64       // publishes per second, all publishers together
	duration time.Duration // the load phase
	payload  int           // padding after the header, up to
	online   time.Duration // mean time a client stays connected between churns
	sample   time.Duration
	seed     uint64
}

// mix is how the clients divide into roles.
type mix struct {
	publishers, persistent, clean, shared, sharedGroups, wills, setters, checkers, slow int
}

// mixFor divides n clients: 30% publishers (one stream each, QoS 0/1/2 in
// turn), 40% persistent and 15% clean subscribers, 6% shared-subscription
// members (groups of 6), 5% will clients, 2% retained setters, 1%
// retained checkers, 3 slow consumers, one will watcher.
func mixFor(n int) mix {
	pct := func(p int) int { return max(1, n*p/100) }
	m := mix{publishers: max(3, n*30/100/3*3), clean: pct(15), wills: pct(5), setters: pct(2), checkers: pct(1), slow: min(3, max(1, n/100))}
	m.sharedGroups = max(1, n*6/100/6)
	m.shared = m.sharedGroups * min(6, max(2, n*6/100/m.sharedGroups))
	m.persistent = max(1, n-1-m.publishers-m.clean-m.wills-m.setters-m.checkers-m.slow-m.shared)
	return m
}

func (m mix) total() int {
	return m.publishers + m.persistent + m.clean + m.shared + m.wills + m.setters + m.checkers + m.slow + 1
}

// soak is one run: the streams, the roles and what they share.
type soak struct {
	cfg        config
	mix        mix
	chk        *checker
	groups     int
	streams    []*stream
	perPubRate float64
	out        io.Writer

	setters  []*retainSetter
	subs     []*subscriber
	shares   []*sharedGroup
	wills    *wills
	ready    sync.WaitGroup // subscriptions in place before anyone publishes
	loadDone chan struct{}  // closed when the load phase ends
	loadOvr  atomic.Bool

	closing   atomic.Bool
	closingCh chan struct{}
	aborted   chan struct{} // closed when the broker died: the load ends
	abortOnce sync.Once
	keepMu    sync.Mutex
	kept      []*client.Client

	lastArrival     atomic.Int64
	churns          atomic.Int64
	takeovers       atomic.Int64
	unexpectedDrops atomic.Int64
	connectFailures atomic.Int64
}

func newSoak(cfg config, out io.Writer) *soak {
	s := &soak{cfg: cfg, mix: mixFor(cfg.clients), chk: newChecker(), out: out,
		loadDone: make(chan struct{}), closingCh: make(chan struct{}), aborted: make(chan struct{})}
	s.chk.log = out
	s.groups = max(2, s.mix.publishers/30)
	for i := range s.mix.publishers {
		st := &stream{id: i, qos: byte(i % 3), group: (i / 3) % s.groups}
		st.topic = fmt.Sprintf("soak/%d/p%d/q%d", st.group, i, st.qos)
		st.next.Store(1)
		s.streams = append(s.streams, st)
	}
	s.perPubRate = cfg.rate / float64(s.mix.publishers)
	s.wills = &wills{s: s, by: map[[2]uint64]*incarnation{}}
	return s
}

func (s *soak) loadOver() bool { return s.loadOvr.Load() }

func (s *soak) rng(i uint64) *rand.Rand { return rand.New(rand.NewPCG(i, s.cfg.seed)) }

// onlineTime is how long a client stays before its next churn:
// exponential around the configured mean times scale, at least 2 s.
func (s *soak) onlineTime(rng *rand.Rand, scale float64) time.Duration {
	d := time.Duration(-math.Log(1-rng.Float64()) * float64(s.cfg.online) * scale)
	return max(d, 2*time.Second)
}

// connect retries a CONNECT until it works, the soak is closing, or a
// minute of refusals has passed (then it is reported).
func (s *soak) connect(cl *client.Client, name string) error {
	start := time.Now()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := cl.Connect(ctx)
		cancel()
		if err == nil {
			return nil
		}
		s.connectFailures.Add(1)
		if s.closing.Load() {
			return err
		}
		if time.Since(start) > time.Minute {
			s.chk.fail("connect", "%s: cannot connect for a minute: %v", name, err)
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// subscribe sends one SUBSCRIBE and checks that it was granted.
func (s *soak) subscribe(cl *client.Client, name string, sub codec.Subscription) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	codes, err := cl.Subscribe(ctx, nil, sub)
	if err == nil && (len(codes) != 1 || codes[0] != sub.QoS) {
		err = fmt.Errorf("SUBACK %v", codes)
	}
	if err != nil {
		s.chk.fail("subscribe", "%s: %s: %v", name, sub.Filter, err)
	}
	return err
}

// keep remembers a client to disconnect at the end.
func (s *soak) keep(cl *client.Client) {
	s.keepMu.Lock()
	s.kept = append(s.kept, cl)
	s.keepMu.Unlock()
}

// run sets up every role, runs the load for the configured time while
// judging every few seconds, drains, and judges what is left.
func (s *soak) run(sampler *sampler) {
	var wg sync.WaitGroup
	goRole := func(f func()) {
		wg.Add(1)
		go func() { defer wg.Done(); f() }()
	}
	m := s.mix
	fmt.Fprintf(s.out, "soak: %d clients: %d publishers (%d groups, %.2f msg/s each), %d persistent and %d clean subscribers, "+
		"%d shared members in %d groups, %d will clients, %d retained setters, %d checkers, %d slow consumers, 1 will watcher\n",
		m.total(), m.publishers, s.groups, s.perPubRate, m.persistent, m.clean, m.shared, m.sharedGroups, m.wills, m.setters, m.checkers, m.slow)

	seed := uint64(1000)
	next := func() *rand.Rand { seed++; return s.rng(seed) }
	s.ready.Add(1)
	watcherDone := make(chan struct{})
	go func() { defer close(watcherDone); s.wills.watcher() }()
	for i := range m.persistent + m.clean + m.slow {
		persistent, slow := i < m.persistent, i >= m.persistent+m.clean
		sub := s.newSubscriber(fmt.Sprintf("sub-%d", i), persistent, slow, i%2 == 1, next())
		s.subs = append(s.subs, sub)
	}
	// Connect in waves, so that setup is not one storm of a thousand CONNECTs.
	gate := make(chan struct{}, 50)
	for _, sub := range s.subs {
		s.ready.Add(1)
		goRole(func() {
			gate <- struct{}{}
			sub.connect(false)
			<-gate
			s.ready.Done()
			sub.run()
		})
	}
	for j := range m.sharedGroups {
		sg := s.newSharedGroup(j, next())
		s.shares = append(s.shares, sg)
		for k := range m.shared / m.sharedGroups {
			s.ready.Add(1)
			rng := next()
			goRole(func() { sg.member(k, rng) })
		}
	}
	s.ready.Wait()
	fmt.Fprintf(s.out, "soak: subscriptions in place; load for %v\n", s.cfg.duration)
	sampler.begin()

	for i := range m.setters {
		r := &retainSetter{s: s, i: i, name: fmt.Sprintf("rset-%d", i)}
		s.setters = append(s.setters, r)
		rng := next()
		goRole(func() { r.run(rng) })
	}
	for i := range m.checkers {
		rng := next()
		goRole(func() { s.retainChecker(i, rng) })
	}
	for i := range m.wills {
		rng := next()
		goRole(func() { s.wills.client(i, rng) })
	}
	var pubs sync.WaitGroup
	for i, st := range s.streams {
		p := s.newPublisher(i, st)
		pubs.Add(1)
		go func() {
			defer pubs.Done()
			if s.connect(p.cl, p.name) == nil {
				st.conns.Add(1)
				p.run()
			}
			s.keep(p.cl)
		}()
	}

	tick := time.NewTicker(10 * time.Second)
	end := time.After(s.cfg.duration)
load:
	for {
		select {
		case <-tick.C:
			s.judge(false)
		case <-end:
			break load
		case <-s.aborted:
			break load
		}
	}
	tick.Stop()
	s.loadOvr.Store(true)
	close(s.loadDone)
	sampler.end()
	fmt.Fprintf(s.out, "soak: load over; draining\n")
	pubs.Wait()
	wg.Wait() // every role is back and connected
	s.quiesce()
	s.judge(true)
	s.close()
	<-watcherDone
}

// abort ends the load early when the broker is gone: what follows (drain,
// judging) then fails fast instead of retrying connections for minutes.
func (s *soak) abort(err error) {
	s.abortOnce.Do(func() {
		s.chk.fail("broker-exited", "%v", err)
		s.closing.Store(true)
		close(s.aborted)
	})
}

// judge settles what can be settled; final is after the drain.
func (s *soak) judge(final bool) {
	for _, sub := range s.subs {
		sub.judge(final)
	}
	grace := 15 * time.Second
	if final {
		grace = 3 * time.Second
		for _, sg := range s.shares {
			sg.judge()
		}
	}
	s.wills.judge(grace)
}

// quiesce waits until nothing has arrived for three seconds (at most two
// minutes).
func (s *soak) quiesce() {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if time.Since(time.Unix(0, s.lastArrival.Load())) > 3*time.Second {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(3 * time.Second) // wills of the last drops
}

// close disconnects every client, 32 at a time.
func (s *soak) close() {
	s.closing.Store(true)
	close(s.closingCh)
	if aborted(s.aborted) {
		return // nothing to disconnect from
	}
	s.keepMu.Lock()
	all := s.kept
	s.keepMu.Unlock()
	for _, sub := range s.subs {
		if sub.cl != nil {
			all = append(all, sub.cl)
		}
	}
	var wg sync.WaitGroup
	gate := make(chan struct{}, 32)
	for _, cl := range all {
		wg.Add(1)
		gate <- struct{}{}
		go func() {
			defer wg.Done()
			cl.Disconnect(codec.Success, nil)
			<-gate
		}()
	}
	wg.Wait()
}

func aborted(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
