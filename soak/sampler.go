package main

import (
	"fmt"
	"io"
	"sort"
	"sync"
	"time"
)

// sample is the state of the broker and of the deliveries at one moment.
type sample struct {
	At         time.Duration // since the load began
	RSS        int64
	Goroutines float64
	Store      int64
	P99        time.Duration // this interval's live deliveries, all QoS
	P99ByQoS   [3]time.Duration
	PubRate    float64 // publishes per second in the interval
	DelRate    float64 // first arrivals per second
	Connected  float64
	Dropped    float64 // the broker's dropped-message counter ($SYS)
}

// sampler takes a sample every interval while the load runs.
type sampler struct {
	b     *broker
	s     *soak
	every time.Duration
	out   io.Writer

	mu      sync.Mutex
	samples []sample
	began   time.Time
	stopCh  chan struct{}
	done    chan struct{}
	lastPub int64
	lastDel int64
}

func newSampler(b *broker, s *soak, every time.Duration, out io.Writer) *sampler {
	return &sampler{b: b, s: s, every: every, out: out, stopCh: make(chan struct{}), done: make(chan struct{})}
}

func (sm *sampler) begin() {
	sm.began = time.Now()
	sm.s.chk.takeLatencies() // drop the setup's
	go sm.loop()
}

func (sm *sampler) end() {
	close(sm.stopCh)
	<-sm.done
}

func (sm *sampler) loop() {
	defer close(sm.done)
	t := time.NewTicker(sm.every)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-sm.stopCh:
			return
		case now := <-t.C:
			sm.take(now.Sub(last))
			last = now
		}
	}
}

func (sm *sampler) take(dt time.Duration) {
	c := sm.s.chk
	if err := sm.b.alive(); err != nil {
		sm.s.abort(err)
	}
	var pub, del int64
	for q := range c.qos {
		pub += c.qos[q].published.Load()
		del += c.qos[q].delivered.Load()
	}
	all, byQoS := c.takeLatencies()
	m := sm.b.scrape("go_goroutines", "midge_clients_connected", "midge_publish_messages_dropped_total")
	x := sample{
		At: time.Since(sm.began).Round(time.Second), RSS: sm.b.rss(), Store: sm.b.storeSize(),
		Goroutines: m["go_goroutines"], Connected: m["midge_clients_connected"], Dropped: m["midge_publish_messages_dropped_total"],
		P99:     percentile(all, 0.99),
		PubRate: float64(pub-sm.lastPub) / dt.Seconds(), DelRate: float64(del-sm.lastDel) / dt.Seconds(),
	}
	for q := range byQoS {
		x.P99ByQoS[q] = percentile(byQoS[q], 0.99)
	}
	sm.lastPub, sm.lastDel = pub, del
	sm.mu.Lock()
	sm.samples = append(sm.samples, x)
	sm.mu.Unlock()
	fmt.Fprintf(sm.out, "soak: %6v rss %5.1f MiB  goroutines %4.0f  store %6.1f MiB  p99 %7v  pub %5.0f/s  del %6.0f/s  connected %4.0f  dropped %6.0f  violations %d\n",
		x.At, mib(x.RSS), x.Goroutines, mib(x.Store), x.P99.Round(100*time.Microsecond), x.PubRate, x.DelRate, x.Connected, x.Dropped, c.failures())
}

func (sm *sampler) all() []sample {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	return append([]sample(nil), sm.samples...)
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// levels reports whether values (in time order) level off: the median of
// the last third may exceed the median of the middle third by at most
// max(frac of it, slack). The first third is the warm-up.
func levels(values []float64, frac, slack float64) (mid, last float64, ok bool) {
	n := len(values) / 3
	if n == 0 {
		return 0, 0, true
	}
	mid, last = median(values[n:2*n]), median(values[len(values)-n:])
	return mid, last, last-mid <= max(frac*mid, slack)
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
