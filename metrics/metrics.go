// Package metrics serves a broker's statistics to Prometheus at /metrics,
// and the runtime profiles at /debug/pprof/, on the address metrics_listener
// names. The values are the counters behind $SYS, read at scrape time: a
// scrape costs a few atomic loads and takes no lock on the message path.
package metrics

import (
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/midge-mqtt/midge/session"
)

// Namespace prefixes every broker metric name.
const Namespace = "midge"

// metric is one broker value: its descriptor, its kind, and how to read it.
type metric struct {
	desc *prometheus.Desc
	kind prometheus.ValueType
	read func(b *session.Broker) float64
}

// Collector reads a broker's counters at scrape time. Safe for concurrent use.
type Collector struct {
	b       *session.Broker
	metrics []metric
	build   *prometheus.Desc
	version string
}

// NewCollector makes a collector of b's statistics; version is reported
// as the label of midge_build_info.
func NewCollector(b *session.Broker, version string) *Collector {
	c := &Collector{b: b, version: version,
		build: prometheus.NewDesc(Namespace+"_build_info", "The broker's version, as a label; always 1.", []string{"version"}, nil)}
	add := func(name, help string, kind prometheus.ValueType, read func(*session.Broker) float64) {
		c.metrics = append(c.metrics, metric{prometheus.NewDesc(Namespace+"_"+name, help, nil, nil), kind, read})
	}
	counter := func(name, help string, f func(*session.Stats) int64) {
		add(name, help, prometheus.CounterValue, func(b *session.Broker) float64 { return float64(f(&b.Stats)) })
	}
	gauge := func(name, help string, f func(*session.Broker) int64) {
		add(name, help, prometheus.GaugeValue, func(b *session.Broker) float64 { return float64(f(b)) })
	}
	// Names follow $SYS/broker/...: the topic each mirrors is in its help.
	gauge("clients_connected", "Clients connected now ($SYS/broker/clients/connected).",
		func(b *session.Broker) int64 { return b.Stats.ClientsConnected.Load() })
	gauge("clients_sessions", "Sessions held, connected or not ($SYS/broker/clients/total).",
		func(b *session.Broker) int64 { return int64(b.Sessions()) })
	gauge("clients_maximum", "Most clients connected at once ($SYS/broker/clients/maximum).",
		func(b *session.Broker) int64 { return b.Stats.ClientsMaximum.Load() })
	counter("clients_expired_total", "Sessions ended by expiry ($SYS/broker/clients/expired).",
		func(s *session.Stats) int64 { return s.ClientsExpired.Load() })
	counter("connections_opened_total", "Sockets accepted ($SYS/broker/load/sockets).",
		func(s *session.Stats) int64 { return s.ConnectionsOpened.Load() })
	counter("connects_total", "CONNECTs accepted ($SYS/broker/load/connections).",
		func(s *session.Stats) int64 { return s.Connects.Load() })
	counter("messages_received_total", "MQTT packets received ($SYS/broker/messages/received).",
		func(s *session.Stats) int64 { return s.MessagesReceived.Load() })
	counter("messages_sent_total", "MQTT packets sent ($SYS/broker/messages/sent).",
		func(s *session.Stats) int64 { return s.MessagesSent.Load() })
	counter("publish_messages_received_total", "PUBLISH packets received ($SYS/broker/publish/messages/received).",
		func(s *session.Stats) int64 { return s.PublishReceived.Load() })
	counter("publish_messages_sent_total", "PUBLISH packets sent ($SYS/broker/publish/messages/sent).",
		func(s *session.Stats) int64 { return s.PublishSent.Load() })
	counter("publish_messages_dropped_total", "Messages dropped: full queues, offline QoS 0, too large for the client ($SYS/broker/publish/messages/dropped).",
		func(s *session.Stats) int64 { return s.PublishDropped.Load() })
	counter("publish_bytes_received_total", "PUBLISH payload bytes received ($SYS/broker/publish/bytes/received).",
		func(s *session.Stats) int64 { return s.PublishBytesRecv.Load() })
	counter("publish_bytes_sent_total", "PUBLISH payload bytes sent ($SYS/broker/publish/bytes/sent).",
		func(s *session.Stats) int64 { return s.PublishBytesSent.Load() })
	counter("bytes_received_total", "Bytes received on every connection ($SYS/broker/bytes/received).",
		func(s *session.Stats) int64 { return s.BytesReceived.Load() })
	counter("bytes_sent_total", "Bytes sent on every connection ($SYS/broker/bytes/sent).",
		func(s *session.Stats) int64 { return s.BytesSent.Load() })
	gauge("retained_messages", "Retained messages stored ($SYS/broker/retained messages/count).",
		func(b *session.Broker) int64 { return b.Stats.RetainedMessages.Load() })
	gauge("subscriptions", "Subscriptions held ($SYS/broker/subscriptions/count).",
		func(b *session.Broker) int64 { return int64(b.Subscriptions()) })
	add("uptime_seconds", "Seconds since the broker started ($SYS/broker/uptime).", prometheus.GaugeValue,
		func(b *session.Broker) float64 { return b.Uptime().Seconds() })
	return c
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.build
	for _, m := range c.metrics {
		ch <- m.desc
	}
}

// Collect implements prometheus.Collector: every value is read now.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(c.build, prometheus.GaugeValue, 1, c.version)
	for _, m := range c.metrics {
		ch <- prometheus.MustNewConstMetric(m.desc, m.kind, m.read(c.b))
	}
}

// Handler serves /metrics (the broker's collector plus the Go runtime's and
// the process's) and /debug/pprof/ for b.
func Handler(b *session.Broker, version string) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(b, version),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// NewServer is an http.Server for Handler, with timeouts that keep a slow
// scraper from holding a connection (profiles may take their seconds
// parameter, so the write timeout leaves room for the default 30s).
func NewServer(b *session.Broker, version string) *http.Server {
	return &http.Server{
		Handler:           Handler(b, version),
		ReadHeaderTimeout: 10 * time.Second,
		WriteTimeout:      2 * time.Minute,
		IdleTimeout:       2 * time.Minute,
	}
}
