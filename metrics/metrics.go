// Package metrics serves a broker's statistics to Prometheus at /metrics,
// and the runtime profiles at /debug/pprof/, on the address metrics_listener
// names. The values are the counters behind $SYS, read at scrape time: a
// scrape costs a few atomic loads and takes no lock on the message path.
package metrics

import (
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/midge-mqtt/midge/session"
	"github.com/midge-mqtt/midge/store"
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
	counter("auth_allowed_total", "Auth decisions that allowed: CONNECTs and topic checks ($SYS/broker/auth/allowed).",
		func(s *session.Stats) int64 { return s.AuthAllowed.Load() })
	counter("auth_denied_total", "Auth decisions that refused ($SYS/broker/auth/denied).",
		func(s *session.Stats) int64 { return s.AuthDenied.Load() })
	counter("auth_errors_total", "Auth questions an auth service failed to answer ($SYS/broker/auth/errors).",
		func(s *session.Stats) int64 { return s.AuthErrors.Load() })
	counter("auth_cache_hits_total", "Auth answers served from the cache ($SYS/broker/auth/cache/hits).",
		func(s *session.Stats) int64 { return s.AuthCacheHits.Load() })
	counter("auth_cache_misses_total", "Auth questions the cache could not answer ($SYS/broker/auth/cache/misses).",
		func(s *session.Stats) int64 { return s.AuthCacheMisses.Load() })
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
	for _, x := range c.b.ExtraStats() { // a cluster's midge_cluster_*
		if x.Text != "" {
			continue
		}
		kind := prometheus.GaugeValue
		if x.Counter {
			kind = prometheus.CounterValue
		}
		name := Namespace + "_" + strings.NewReplacer("/", "_", " ", "_").Replace(x.Name)
		ch <- prometheus.MustNewConstMetric(prometheus.NewDesc(name, x.Help, nil, nil), kind, float64(x.Value))
	}
}

// NewRegistry registers b's collector, extra ones such as the bridges',
// the Go runtime's and the process's: what /metrics serves, and what the
// dashboard's JSON is read from.
func NewRegistry(b *session.Broker, version string, extra ...prometheus.Collector) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(extra...)
	reg.MustRegister(NewCollector(b, version),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Handler serves /metrics from reg and /debug/pprof/; the dashboard adds
// its pages to the mux it returns.
func Handler(reg *prometheus.Registry) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// NewServer is an http.Server for h, with timeouts that keep a slow
// scraper from holding a connection (profiles may take their seconds
// parameter, so the write timeout leaves room for the default 30s).
func NewServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		WriteTimeout:      2 * time.Minute,
		IdleTimeout:       2 * time.Minute,
	}
}

// listenerCollector reports the connections open on each listener.
type listenerCollector struct {
	desc *prometheus.Desc
	read func() map[string]int64
}

// ListenerCollector is midge_listener_connections{listener}, read from
// read at scrape time (the transport's per-listener counters).
func ListenerCollector(read func() map[string]int64) prometheus.Collector {
	return &listenerCollector{
		desc: prometheus.NewDesc(Namespace+"_listener_connections", "Connections open on each listener, by its configured address.", []string{"listener"}, nil),
		read: read,
	}
}

// Describe implements prometheus.Collector.
func (c *listenerCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *listenerCollector) Collect(ch chan<- prometheus.Metric) {
	for addr, n := range c.read() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), addr)
	}
}

// StoreStats is what the store collector reads of the persistence store.
type StoreStats interface {
	Stats() store.Stats
	Size() uint64
}

type storeCollector struct{ db StoreStats }

var (
	descStoreSize    = prometheus.NewDesc(Namespace+"_store_size_bytes", "Disk space the persistence store's files take.", nil, nil)
	descStoreBatches = prometheus.NewDesc(Namespace+"_store_batches_total", "Change batches submitted to the store.", nil, nil)
	descStoreCommits = prometheus.NewDesc(Namespace+"_store_commits_total", "Store commits (one per group of batches).", nil, nil)
	descStoreSecs    = prometheus.NewDesc(Namespace+"_store_commit_seconds_total", "Time spent in store commits, with their syncs; over midge_store_commits_total, the mean commit latency.", nil, nil)
	descStoreSyncs   = prometheus.NewDesc(Namespace+"_store_syncs_total", "Syncs of the store to disk.", nil, nil)
)

// StoreCollector is the persistence store's midge_store_* metrics, read at
// scrape time (counters the committer keeps; the size from the database).
func StoreCollector(db StoreStats) prometheus.Collector { return storeCollector{db} }

// Describe implements prometheus.Collector.
func (c storeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descStoreSize, descStoreBatches, descStoreCommits, descStoreSecs, descStoreSyncs} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c storeCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.db.Stats()
	ch <- prometheus.MustNewConstMetric(descStoreSize, prometheus.GaugeValue, float64(c.db.Size()))
	ch <- prometheus.MustNewConstMetric(descStoreBatches, prometheus.CounterValue, float64(st.Batches))
	ch <- prometheus.MustNewConstMetric(descStoreCommits, prometheus.CounterValue, float64(st.Commits))
	ch <- prometheus.MustNewConstMetric(descStoreSecs, prometheus.CounterValue, st.CommitTime.Seconds())
	ch <- prometheus.MustNewConstMetric(descStoreSyncs, prometheus.CounterValue, float64(st.Syncs))
}
