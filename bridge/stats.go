package bridge

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// SysTopics gives each bridge's state and counters to set, as
// $SYS/broker/bridge/<name>/... (midge's own topics; mosquitto has only the
// notification topic).
func (m *Manager) SysTopics(set func(topic, value string)) {
	m.Each(func(name string, s *Stats, queued int) {
		pre := "$SYS/broker/bridge/" + name + "/"
		conn := "0"
		if s.Connected.Load() {
			conn = "1"
		}
		set(pre+"connected", conn)
		for _, v := range []struct {
			topic string
			n     int64
		}{
			{"messages/sent", s.MsgsOut.Load()}, {"messages/received", s.MsgsIn.Load()},
			{"bytes/sent", s.BytesOut.Load()}, {"bytes/received", s.BytesIn.Load()},
			{"messages/dropped", s.Dropped.Load()}, {"messages/resent", s.Duplicates.Load()},
			{"messages/queued", int64(queued)}, {"connects", s.Connects.Load()},
		} {
			set(pre+v.topic, strconv.FormatInt(v.n, 10))
		}
	})
}

// Collector is the bridges' Prometheus metrics, labelled by bridge name.
func (m *Manager) Collector() prometheus.Collector { return &collector{m: m} }

type collector struct{ m *Manager }

var (
	label       = []string{"bridge"}
	descUp      = prometheus.NewDesc("midge_bridge_connected", "1 when the bridge is connected to its remote.", label, nil)
	descMsgs    = prometheus.NewDesc("midge_bridge_messages_total", "Messages the bridge moved, by direction (out: to the remote).", []string{"bridge", "direction"}, nil)
	descBytes   = prometheus.NewDesc("midge_bridge_bytes_total", "Payload bytes the bridge moved, by direction.", []string{"bridge", "direction"}, nil)
	descQueued  = prometheus.NewDesc("midge_bridge_queued_messages", "Messages waiting in the bridge's local session for the remote.", label, nil)
	descDropped = prometheus.NewDesc("midge_bridge_dropped_total", "Messages the bridge could not forward (too large for the remote, no topic maps them).", label, nil)
	descResent  = prometheus.NewDesc("midge_bridge_resent_total", "Messages resent to the remote after a reconnection (possible duplicates).", label, nil)
	descConns   = prometheus.NewDesc("midge_bridge_connects_total", "Connections made to the remote.", label, nil)
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descUp, descMsgs, descBytes, descQueued, descDropped, descResent, descConns} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	c.m.Each(func(name string, s *Stats, queued int) {
		up := 0.0
		if s.Connected.Load() {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, up, name)
		ch <- prometheus.MustNewConstMetric(descMsgs, prometheus.CounterValue, float64(s.MsgsOut.Load()), name, "out")
		ch <- prometheus.MustNewConstMetric(descMsgs, prometheus.CounterValue, float64(s.MsgsIn.Load()), name, "in")
		ch <- prometheus.MustNewConstMetric(descBytes, prometheus.CounterValue, float64(s.BytesOut.Load()), name, "out")
		ch <- prometheus.MustNewConstMetric(descBytes, prometheus.CounterValue, float64(s.BytesIn.Load()), name, "in")
		ch <- prometheus.MustNewConstMetric(descQueued, prometheus.GaugeValue, float64(queued), name)
		ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(s.Dropped.Load()), name)
		ch <- prometheus.MustNewConstMetric(descResent, prometheus.CounterValue, float64(s.Duplicates.Load()), name)
		ch <- prometheus.MustNewConstMetric(descConns, prometheus.CounterValue, float64(s.Connects.Load()), name)
	})
}
