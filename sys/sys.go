// Package sys publishes the broker's statistics under $SYS/broker/..., with
// mosquitto's topic names and value formats, as retained QoS 0 messages every
// sys_interval. A value is published again only when it changed.
package sys

import (
	"context"
	"math"
	"runtime"
	"strconv"
	"time"

	"github.com/midge-mqtt/midge/session"
)

// Publisher publishes $SYS topics for one broker.
type Publisher struct {
	b        *session.Broker
	version  string
	interval time.Duration

	// Extra, when set, adds topics of other parts of the broker (bridges)
	// at each publication, through set.
	Extra func(set func(topic, value string))

	last  map[string]string // what each topic last carried
	loads []*load
	prev  time.Time
}

// load is an exponentially damped moving average of a counter's rate, the
// way mosquitto (and uptime(1)) computes 1, 5 and 15 minute loads.
type load struct {
	topic   string // e.g. "$SYS/broker/load/messages/received"
	counter func(*session.Stats) int64
	prev    int64
	avg     [3]float64
}

var loadWindows = [3]struct {
	name string
	secs float64
}{{"1min", 60}, {"5min", 300}, {"15min", 900}}

// New makes a publisher; interval 0 disables it (Run returns at once).
func New(b *session.Broker, version string, interval time.Duration) *Publisher {
	p := &Publisher{b: b, version: version, interval: interval, last: make(map[string]string)}
	add := func(topic string, f func(*session.Stats) int64) {
		p.loads = append(p.loads, &load{topic: "$SYS/broker/load/" + topic, counter: f})
	}
	add("messages/received", func(s *session.Stats) int64 { return s.MessagesReceived.Load() })
	add("messages/sent", func(s *session.Stats) int64 { return s.MessagesSent.Load() })
	add("publish/received", func(s *session.Stats) int64 { return s.PublishReceived.Load() })
	add("publish/sent", func(s *session.Stats) int64 { return s.PublishSent.Load() })
	add("publish/dropped", func(s *session.Stats) int64 { return s.PublishDropped.Load() })
	add("bytes/received", func(s *session.Stats) int64 { return s.BytesReceived.Load() })
	add("bytes/sent", func(s *session.Stats) int64 { return s.BytesSent.Load() })
	add("connections", func(s *session.Stats) int64 { return s.Connects.Load() })
	add("sockets", func(s *session.Stats) int64 { return s.ConnectionsOpened.Load() })
	return p
}

// Run publishes every interval until ctx ends.
func (p *Publisher) Run(ctx context.Context) {
	if p.interval <= 0 {
		return
	}
	p.prev = time.Now()
	p.Publish(p.prev)
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			p.Publish(now)
		}
	}
}

// Publish publishes every topic whose value changed since the last call.
func (p *Publisher) Publish(now time.Time) {
	b := p.b
	s := &b.Stats
	connected := s.ClientsConnected.Load()
	total := int64(b.Sessions())
	if total < connected {
		total = connected
	}
	var mem runtime.MemStats
	runtime.ReadMemStats(&mem)

	p.set("$SYS/broker/version", "midge version "+p.version)
	p.set("$SYS/broker/uptime", strconv.FormatInt(int64(b.Uptime()/time.Second), 10)+" seconds")
	p.setInt("$SYS/broker/clients/total", total)
	p.setInt("$SYS/broker/clients/connected", connected)
	p.setInt("$SYS/broker/clients/active", connected)
	p.setInt("$SYS/broker/clients/disconnected", total-connected)
	p.setInt("$SYS/broker/clients/inactive", total-connected)
	p.setInt("$SYS/broker/clients/maximum", s.ClientsMaximum.Load())
	p.setInt("$SYS/broker/clients/expired", s.ClientsExpired.Load())
	p.setInt("$SYS/broker/messages/received", s.MessagesReceived.Load())
	p.setInt("$SYS/broker/messages/sent", s.MessagesSent.Load())
	p.setInt("$SYS/broker/messages/stored", s.RetainedMessages.Load())
	p.setInt("$SYS/broker/store/messages/count", s.RetainedMessages.Load())
	p.setInt("$SYS/broker/subscriptions/count", int64(b.Subscriptions()))
	p.setInt("$SYS/broker/retained messages/count", s.RetainedMessages.Load())
	p.setInt("$SYS/broker/heap/current", int64(mem.HeapAlloc))
	p.setInt("$SYS/broker/publish/messages/received", s.PublishReceived.Load())
	p.setInt("$SYS/broker/publish/messages/sent", s.PublishSent.Load())
	p.setInt("$SYS/broker/publish/messages/dropped", s.PublishDropped.Load())
	p.setInt("$SYS/broker/publish/bytes/received", s.PublishBytesRecv.Load())
	p.setInt("$SYS/broker/publish/bytes/sent", s.PublishBytesSent.Load())
	p.setInt("$SYS/broker/bytes/received", s.BytesReceived.Load())
	p.setInt("$SYS/broker/bytes/sent", s.BytesSent.Load())
	// midge's own: auth decisions, once there are any (a broker that
	// allows everyone without asking publishes none).
	if allowed, denied, errs := s.AuthAllowed.Load(), s.AuthDenied.Load(), s.AuthErrors.Load(); allowed+denied+errs > 0 {
		p.setInt("$SYS/broker/auth/allowed", allowed)
		p.setInt("$SYS/broker/auth/denied", denied)
		p.setInt("$SYS/broker/auth/errors", errs)
		p.setInt("$SYS/broker/auth/cache/hits", s.AuthCacheHits.Load())
		p.setInt("$SYS/broker/auth/cache/misses", s.AuthCacheMisses.Load())
	}
	for _, x := range b.ExtraStats() { // a cluster's $SYS/broker/cluster/...
		if x.Text != "" {
			p.set("$SYS/broker/"+x.Name, x.Text)
		} else {
			p.setInt("$SYS/broker/"+x.Name, x.Value)
		}
	}

	if p.Extra != nil {
		p.Extra(p.set)
	}

	dt := now.Sub(p.prev).Seconds()
	p.prev = now
	for _, l := range p.loads {
		v := l.counter(s)
		if dt > 0 {
			rate := float64(v-l.prev) / dt * 60 // per minute, as mosquitto reports
			for i, w := range loadWindows {
				k := math.Exp(-dt / w.secs)
				l.avg[i] = l.avg[i]*k + rate*(1-k)
			}
		}
		l.prev = v
		for i, w := range loadWindows {
			p.set(l.topic+"/"+w.name, strconv.FormatFloat(l.avg[i], 'f', 2, 64))
		}
	}
}

func (p *Publisher) setInt(topic string, v int64) { p.set(topic, strconv.FormatInt(v, 10)) }

// set publishes value on topic, retained, when it differs from the last one.
func (p *Publisher) set(topic, value string) {
	if p.last[topic] == value {
		return
	}
	p.last[topic] = value
	p.b.Publish(topic, []byte(value), 0, true)
}
