package bench

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// flow is the shape of a publish/subscribe scenario: who publishes where,
// who subscribes to what, and how many deliveries each message owes.
type flow struct {
	shape      string
	pubTopics  []string
	subFilters []string
	perMessage int
	latency    bool
}

func faninFlow(c Config) flow {
	f := flow{shape: fmt.Sprintf("%d→1 qos%d %dB", c.Publishers, c.QoS, c.Payload),
		subFilters: []string{"bench/fanin/+"}, perMessage: 1}
	for i := 0; i < c.Publishers; i++ {
		f.pubTopics = append(f.pubTopics, fmt.Sprintf("bench/fanin/%d", i))
	}
	return f
}

func fanoutFlow(c Config) flow {
	f := flow{shape: fmt.Sprintf("1→%d qos%d %dB", c.Subscribers, c.QoS, c.Payload),
		pubTopics: []string{"bench/fanout"}, perMessage: c.Subscribers}
	if c.Stuck > 0 {
		f.shape += fmt.Sprintf(" +%d stuck", c.Stuck)
	}
	for i := 0; i < c.Subscribers; i++ {
		f.subFilters = append(f.subFilters, "bench/fanout")
	}
	return f
}

func pairsFlow(c Config) flow {
	f := flow{shape: fmt.Sprintf("%d pairs qos%d %dB", c.Pairs, c.QoS, c.Payload), perMessage: 1,
		latency: c.Scenario == "latency"}
	if c.Rate > 0 {
		f.shape += fmt.Sprintf(" @%d/s", c.Rate)
	}
	for i := 0; i < c.Pairs; i++ {
		t := fmt.Sprintf("bench/pairs/%d", i)
		f.pubTopics = append(f.pubTopics, t)
		f.subFilters = append(f.subFilters, t)
	}
	return f
}

// ownTopics puts the run's tag in its topics (bench/TAG/...): a loaded
// broker may still be reading an earlier run's publishers (what they wrote
// before closing), and those messages must not reach this run's
// subscribers, where they would count as late.
func (f flow) ownTopics(tag string) flow {
	retag := func(ts []string) []string {
		out := make([]string, len(ts))
		for i, t := range ts {
			out[i] = "bench/" + tag + "/" + strings.TrimPrefix(t, "bench/")
		}
		return out
	}
	f.pubTopics, f.subFilters = retag(f.pubTopics), retag(f.subFilters)
	return f
}

// parallel runs fn(0..n-1) on at most workers goroutines and returns the first error.
func parallel(n, workers int, fn func(i int) error) error {
	var (
		next  atomic.Int64
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	for w := 0; w < min(n, workers); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					next.Store(int64(n))
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}

// flowRun is one publish/subscribe run in progress.
type flowRun struct {
	cfg     Config
	flow    flow
	subs    []*subscriber
	streams []*streamPublisher
	windows []*windowPublisher
}

func (r *flowRun) sent() (n int64) {
	for _, p := range r.streams {
		n += p.sent.Load()
	}
	for _, p := range r.windows {
		n += p.sent.Load()
	}
	return n
}

func (r *flowRun) received() (n int64) {
	for _, s := range r.subs {
		n += s.recv.Load()
	}
	return n
}

// point is a reading of every counter at one instant.
type point struct {
	t          time.Time
	sent, recv int64
	self       time.Duration
	broker     time.Duration
}

func (r *flowRun) point() point {
	p := point{t: time.Now(), sent: r.sent(), recv: r.received(), self: selfCPU()}
	if r.cfg.BrokerPID > 0 {
		p.broker, _ = ProcCPU(r.cfg.BrokerPID)
	}
	return p
}

func runFlow(ctx context.Context, c Config, f flow) (*Result, error) {
	res := &Result{Scenario: c.Scenario, Shape: f.shape}
	id := runID(c.Scenario)
	f = f.ownTopics(id[strings.LastIndexByte(id, '-')+1:])
	d := newDialer(c.Host, c.Port, c.Unix)
	d.tls = c.TLS
	sd := d // subscribers' broker: another one beyond a bridge, if SubPort is set
	if c.SubPort != 0 {
		sd = newDialer(c.Host, c.SubPort, "")
		sd.tls = c.TLS
	}
	pubDial, subDial := dialers(c.PubAddrs, d, c), dialers(c.SubAddrs, sd, c)
	rx, err := newReactor(c.Loops)
	if err != nil {
		return nil, err
	}
	errs := &connErr{}
	var pubConns []net.Conn
	defer func() {
		errs.done.Store(true)
		for _, nc := range pubConns {
			nc.Close()
		}
		rx.stop()
	}()
	run := &flowRun{cfg: c, flow: f, subs: make([]*subscriber, len(f.subFilters))}
	base := time.Now()
	var mu sync.Mutex // pubConns, while subscribers connect in parallel

	err = parallel(len(f.subFilters), 16, func(i int) error {
		d := subDial[i%len(subDial)]
		nc, err := d.connectSession(fmt.Sprintf("%s-s%d", id, i), c.Version, 0, c.Persistent)
		if err != nil {
			return err
		}
		if err := subscribe(nc, c.Version, f.subFilters[i], c.QoS); err != nil {
			nc.Close()
			return err
		}
		s := newSubscriber(c.Version, base, f.latency, errs)
		if c.Scenario == QueueScenario { // away until the publishers are done
			run.subs[i] = s
			_, err := nc.Write(disconnectFrame)
			nc.Close()
			return err
		}
		if c.TLS != nil { // gnet would see ciphertext: a goroutine reads it
			mu.Lock()
			pubConns = append(pubConns, nc)
			mu.Unlock()
			run.subs[i] = s
			go s.readFrom(nc)
			return nil
		}
		if _, err := rx.enroll(nc, s); err != nil {
			return err
		}
		run.subs[i] = s
		return nil
	})
	if err != nil {
		return nil, err
	}
	// Stuck subscribers take their SUBACK and nothing more: a broker must
	// not let them slow the others.
	for i := 0; i < c.Stuck; i++ {
		nc, err := subDial[i%len(subDial)].connectSession(fmt.Sprintf("%s-stuck%d", id, i), c.Version, 0, false)
		if err != nil {
			return nil, err
		}
		pubConns = append(pubConns, nc)                                         // closed at the end
		if err := subscribe(nc, c.Version, f.pubTopics[0], c.QoS); err != nil { // the fan-out topic
			return nil, err
		}
	}

	var kick []gnet.Conn
	for i, topic := range f.pubTopics {
		d := pubDial[i%len(pubDial)]
		nc, err := d.connect(fmt.Sprintf("%s-p%d", id, i), c.Version, 0)
		if err != nil {
			return nil, err
		}
		frame := newPublishFrame(topic, c.Payload, c.QoS, c.Version, false)
		if c.TLS != nil && c.QoS != 0 {
			nc.Close()
			return nil, fmt.Errorf("bench: %s: QoS 1/2 publishers run on the gnet reactor, which has no TLS", c.Scenario)
		}
		if c.QoS == 0 {
			pubConns = append(pubConns, nc)
			p := &streamPublisher{conn: nc, frame: frame, idx: uint32(i), base: base}
			if c.Rate > 0 {
				p.rate = float64(c.Rate) / float64(len(f.pubTopics))
			}
			run.streams = append(run.streams, p)
			continue
		}
		p := &windowPublisher{frame: frame, idx: uint32(i), window: c.Inflight, base: base, err: errs}
		p.dec.Version = c.Version
		gc, err := rx.enroll(nc, p)
		if err != nil {
			return nil, err
		}
		run.windows = append(run.windows, p)
		kick = append(kick, gc)
	}

	// Publish.
	var (
		wg       sync.WaitGroup
		pubError error
	)
	for _, p := range run.streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.run(); err != nil {
				mu.Lock()
				pubError = err
				mu.Unlock()
			}
		}()
	}
	for _, gc := range kick {
		_ = gc.Wake(nil)
	}

	total := c.Warmup + c.Duration
	start := time.Now()
	prog := newProgress(c.Progress, c.Scenario, total)
	wait := func(until time.Time) bool {
		for time.Now().Before(until) {
			select {
			case <-ctx.Done():
				return false
			case <-time.After(min(250*time.Millisecond, time.Until(until))):
			}
			prog.show(time.Since(start), run.sent(), run.received())
			if errs.get() != nil {
				return false
			}
		}
		return true
	}
	var p0, p1 point
	ok := wait(start.Add(c.Warmup))
	if ok {
		p0 = run.point()
		ok = wait(p0.t.Add(c.Duration))
		p1 = run.point()
		if c.BrokerPID > 0 {
			res.BrokerRSSKiB, _ = ProcRSS(c.BrokerPID)
		}
	}
	prog.done()

	// Stop publishing, then let the broker deliver what it owes.
	for _, p := range run.streams {
		p.halt(2 * time.Second)
	}
	for _, p := range run.windows {
		p.stop.Store(true)
	}
	wg.Wait()
	var drainStart time.Time
	if c.Scenario == QueueScenario {
		for _, p := range run.windows { // all of it queued
			for deadline := time.Now().Add(10 * time.Second); p.acked.Load() < p.sent.Load() && time.Now().Before(deadline); {
				time.Sleep(5 * time.Millisecond)
			}
		}
		drainStart = time.Now()
		if err := run.comeBack(rx, subDial, id); err != nil {
			res.Error = err.Error()
			return res, err
		}
	}
	last := run.drain(10 * time.Second)
	if !drainStart.IsZero() {
		if d := last.Sub(drainStart).Seconds(); d > 0 {
			res.DrainRate = float64(run.received()) / d
		}
	}

	if err := errs.get(); err != nil {
		res.Error = err.Error()
		return res, err
	}
	if pubError != nil {
		res.Error = pubError.Error()
		return res, pubError
	}
	if !ok {
		return res, ctx.Err()
	}
	window := p1.t.Sub(p0.t).Seconds()
	res.Seconds = window
	res.Sent = p1.sent - p0.sent
	res.SentRate = float64(res.Sent) / window
	res.Delivered = p1.recv - p0.recv
	res.Rate = float64(res.Delivered) / window
	res.GenCPU = (p1.self - p0.self).Seconds() / window
	if c.BrokerPID > 0 {
		cpu := (p1.broker - p0.broker).Seconds()
		res.BrokerCPU = cpu / window
		if cpu > 0 {
			res.PerBrokerCPU = float64(res.Delivered) / cpu
		}
	}
	res.Expected = run.sent() * int64(f.perMessage)
	res.Received = run.received()
	res.Lost = max(0, res.Expected-res.Received)
	for _, s := range run.subs {
		res.Reordered += s.reordered.Load()
		res.Unstamped += s.unstamped.Load()
	}
	if f.latency {
		errs.done.Store(true)
		rx.stop() // the loops have ended: their samples can be read
		var all []int64
		for _, s := range run.subs {
			all = append(all, s.samples...)
		}
		res.Latency = summarize(all)
	}
	return res, nil
}

// drain waits until every owed delivery arrived, or nothing more arrives
// for a second, or limit passes.
// comeBack reconnects the subscribers of a queue run to their sessions.
func (r *flowRun) comeBack(rx *reactor, subDial []*dialer, id string) error {
	c, f := r.cfg, r.flow
	for i := range f.subFilters {
		nc, err := subDial[i%len(subDial)].connectSession(fmt.Sprintf("%s-s%d", id, i), c.Version, 0, true)
		if err != nil {
			return err
		}
		if _, err := rx.enroll(nc, r.subs[i]); err != nil {
			return err
		}
	}
	return nil
}

// drain waits until the subscribers have everything owed (or nothing came
// for a second, or limit), and returns when the count last grew.
func (r *flowRun) drain(limit time.Duration) time.Time {
	deadline := time.Now().Add(limit)
	last, lastChange := int64(-1), time.Now()
	for time.Now().Before(deadline) {
		acked := true
		for _, p := range r.windows {
			if p.acked.Load() < p.sent.Load() {
				acked = false
			}
		}
		got := r.received()
		if got != last {
			last, lastChange = got, time.Now()
		}
		if acked && got >= r.sent()*int64(r.flow.perMessage) {
			return lastChange
		}
		if time.Since(lastChange) > time.Second {
			return lastChange
		}
		time.Sleep(10 * time.Millisecond)
	}
	return lastChange
}

// summarize turns latency samples (ns) into percentiles (µs).
func summarize(ns []int64) *Latency {
	if len(ns) == 0 {
		return nil
	}
	slices.Sort(ns)
	at := func(q float64) float64 {
		i := min(len(ns)-1, int(q*float64(len(ns))))
		return float64(ns[i]) / 1e3
	}
	return &Latency{Samples: len(ns), P50: at(0.50), P90: at(0.90), P99: at(0.99), P999: at(0.999),
		Max: float64(ns[len(ns)-1]) / 1e3}
}

// dialers makes one dialer per HOST:PORT address, or def when addrs is
// empty.
func dialers(addrs []string, def *dialer, c Config) []*dialer {
	if len(addrs) == 0 {
		return []*dialer{def}
	}
	var out []*dialer
	for _, a := range addrs {
		h, ps, _ := net.SplitHostPort(a) // checked by the flag parser
		p, _ := strconv.Atoi(ps)
		d := newDialer(h, p, "")
		d.tls = c.TLS
		out = append(out, d)
	}
	return out
}
