// Package bench is midge's load generator (`midge bench`): MQTT scenarios
// run against any broker on a host and port, counting deliveries at the
// subscribers (loss, reordering, latency) and reporting the generator's own
// CPU use beside the broker's (from /proc, given its pid).
//
// The generator is built not to be the bottleneck: frames are encoded once
// and only re-stamped, QoS 0 publishers write 32 KiB batches from one
// goroutine each (a blocking write is the back-pressure), and subscribers and
// acknowledged publishers run on a few gnet client event loops rather than a
// goroutine per connection.
package bench

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"strings"
	"time"

	"github.com/midge-mqtt/midge/codec"
)

// Scenarios lists every scenario in the order `all` runs them.
var Scenarios = []string{"fanin", "fanout", "pairs", "qos1", "qos2", "latency", "conns", "retained"}

// QueueScenario is QoS 1 fan-in to a persistent subscriber that is away
// while the publishers publish: the broker queues everything (and, with
// persistence, stores it; in a cluster, replicates it), then the subscriber
// comes back for it (Result.DrainRate). Not part of `all`: what it measures
// depends on the broker's max_queued_messages and persistence settings.
const QueueScenario = "queue"

// TLSScenarios run over TLS (Config.TLS): QoS 0 fan-in and pairs, and idle
// connections, whose connect phase times the handshakes. tls-conns-ec is
// tls-conns under another name, for a run against an ECDSA certificate;
// wss-conns is tls-conns over WebSocket.
var TLSScenarios = []string{"tls-fanin", "tls-pairs", "tls-conns", "tls-conns-ec", "wss-conns"}

// Config describes one run. Zero counts take the scenario's defaults.
type Config struct {
	Scenario    string
	Host        string
	Port        int
	SubPort     int    // subscribers connect here when set (a bridged broker); else Port
	Unix        string // a Unix domain socket path: dial it instead of Host:Port
	Publishers  int    // fanin, qos1, qos2: publishers; fanout: always 1
	Subscribers int    // fanout: subscribers; fanin: always 1
	Stuck       int    // fanout: more subscribers that never read (not counted in delivered or lost)
	Pairs       int    // pairs, latency
	Conns       int    // conns: idle connections to hold
	Retained    int    // retained: retained topics
	Payload     int    // bytes per message (at least 20: the stamp)
	// PubAddrs and SubAddrs are the brokers (HOST:PORT) publishers and
	// subscribers connect to, round robin (flows only: fanin, fanout,
	// pairs, qos1, qos2, latency); empty: as Host, Port, SubPort, Unix say.
	// With the nodes of a cluster, a scenario publishes on one node and
	// subscribes on another.
	PubAddrs   []string
	SubAddrs   []string
	QoS        byte
	Version    byte // codec.Version311 or codec.Version5
	Duration   time.Duration
	Warmup     time.Duration
	Rate       int         // total messages per second; 0 = unlimited (latency: 10000)
	Inflight   int         // window per QoS 1/2 publisher
	Persistent bool        // subscribers keep persistent sessions (exercises a broker's persistence)
	BrokerPID  int         // 0: broker CPU and RSS are not reported
	Loops      int         // gnet client loops (0: one per CPU); conns: dialing loops
	Window     int         // conns: connects in flight per dialing loop
	TLS        *tls.Config // tls-* scenarios: the client's TLS settings
	Username   string      // conns: every CONNECT's username and password ("": none)
	Password   string
	Progress   io.Writer
}

// Defaults fills the zero fields of c from the scenario's defaults.
func (c Config) Defaults() Config {
	if c.Host == "" {
		c.Host = "127.0.0.1"
	}
	if c.Port == 0 {
		c.Port = 1883
	}
	if c.Payload == 0 {
		c.Payload = 64
	}
	c.Payload = max(c.Payload, minPayload)
	if c.Version == 0 {
		c.Version = codec.Version311
	}
	if c.Duration == 0 {
		c.Duration = 5 * time.Second
	}
	if c.Warmup == 0 {
		c.Warmup = time.Second
	}
	if c.Inflight == 0 {
		c.Inflight = 16
	}
	c.Inflight = min(c.Inflight, 65535)
	if c.Loops == 0 {
		c.Loops = runtime.NumCPU()
	}
	if c.Publishers == 0 {
		c.Publishers = 32
	}
	if c.Subscribers == 0 {
		c.Subscribers = 1000
	}
	if c.Pairs == 0 {
		c.Pairs = 100
		if c.Scenario == "latency" {
			c.Pairs = 10
		}
	}
	if c.Conns == 0 {
		c.Conns = 1000
	}
	if c.Window == 0 {
		c.Window = stormWindow
	}
	if c.Retained == 0 {
		c.Retained = 10000
	}
	switch c.Scenario {
	case "qos1":
		c.QoS = 1
	case QueueScenario:
		c.QoS, c.Persistent = 1, true
		if c.Publishers == 32 { // the default: a queue fills from a few
			c.Publishers = 4
		}
	case "qos2":
		c.QoS = 2
	case "latency":
		if c.Rate == 0 {
			c.Rate = 10000
		}
	}
	return c
}

// Result is what one scenario measured. Rates are over the measured window
// (after warm-up); loss and reordering are over the whole run.
type Result struct {
	Scenario string  `json:"scenario"`
	Shape    string  `json:"shape"`
	Seconds  float64 `json:"seconds"`

	Sent      int64   `json:"sent"`      // messages published in the window
	SentRate  float64 `json:"sent_rate"` // msg/s
	Delivered int64   `json:"delivered"` // messages received by subscribers in the window
	Rate      float64 `json:"rate"`      // delivered msg/s

	Expected int64 `json:"expected"` // deliveries owed for everything published
	Received int64 `json:"received"` // deliveries counted, after draining
	Lost     int64 `json:"lost"`
	// DrainRate (queue) is how fast the subscriber, back, received the
	// queue: messages per second from its CONNECT to the last one.
	DrainRate float64 `json:"drain_rate,omitempty"`
	Reordered int64   `json:"reordered"`
	Unstamped int64   `json:"unstamped,omitempty"`

	Latency *Latency `json:"latency,omitempty"`

	GenCPU       float64 `json:"gen_cpu"`              // generator CPU-seconds per second (1 = one core)
	BrokerCPU    float64 `json:"broker_cpu,omitempty"` // broker CPU-seconds per second
	PerBrokerCPU float64 `json:"msgs_per_broker_cpu_s,omitempty"`
	BrokerRSSKiB int64   `json:"broker_rss_kib,omitempty"`

	Conns        int        `json:"conns,omitempty"`
	ConnectRate  float64    `json:"connect_rate,omitempty"` // connections per second
	KiBPerConn   float64    `json:"kib_per_conn,omitempty"`
	StartRSSKiB  int64      `json:"start_rss_kib,omitempty"`  // the broker's RSS before the first connection
	StartAnonKiB int64      `json:"start_anon_kib,omitempty"` // the anonymous part of it (RssAnon: without file-backed pages)
	IdleCPU      float64    `json:"idle_cpu,omitempty"`       // broker CPU-seconds per second while the conns are held idle
	Steps        []ConnStep `json:"steps,omitempty"`

	Error string `json:"error,omitempty"`
}

// ConnStep is the broker's memory at one connection count.
type ConnStep struct {
	Conns      int     `json:"conns"`
	RSSKiB     int64   `json:"rss_kib"`
	KiBPerConn float64 `json:"kib_per_conn"`
	// AnonKiBPerConn is the same for the anonymous part of the RSS alone
	// (RssAnon: heap, stacks), without the pages of the broker's binary
	// that its first connections fault in once.
	AnonKiBPerConn float64 `json:"anon_kib_per_conn,omitempty"`
}

// Latency summarises one-way delivery times in microseconds.
type Latency struct {
	Samples int     `json:"samples"`
	P50     float64 `json:"p50_us"`
	P90     float64 `json:"p90_us"`
	P99     float64 `json:"p99_us"`
	P999    float64 `json:"p999_us"`
	Max     float64 `json:"max_us"`
}

// Run runs one scenario against the broker at c.Host:c.Port.
func Run(ctx context.Context, c Config) (*Result, error) {
	c = c.Defaults()
	switch c.Scenario {
	case "fanin", "qos1", "qos2", QueueScenario:
		return runFlow(ctx, c, faninFlow(c))
	case "fanout":
		return runFlow(ctx, c, fanoutFlow(c))
	case "pairs", "latency":
		return runFlow(ctx, c, pairsFlow(c))
	case "conns":
		return runConns(ctx, c)
	case "retained":
		return runRetained(ctx, c)
	}
	if strings.HasPrefix(c.Scenario, "tls-") || c.Scenario == "wss-conns" {
		if c.TLS == nil {
			return nil, fmt.Errorf("bench: %s needs TLS settings (-cafile, or -insecure)", c.Scenario)
		}
		if c.TLS.ServerName == "" {
			c.TLS = c.TLS.Clone()
			c.TLS.ServerName = c.Host // the name the broker's certificate is checked against
		}
		switch c.Scenario {
		case "tls-fanin":
			return runFlow(ctx, c, faninFlow(c))
		case "tls-pairs":
			return runFlow(ctx, c, pairsFlow(c))
		case "tls-conns", "tls-conns-ec", "wss-conns":
			return runTLSConns(ctx, c)
		}
	}
	return nil, fmt.Errorf("bench: unknown scenario %q (want one of %s)", c.Scenario,
		strings.Join(append(append(Scenarios, QueueScenario), TLSScenarios...), ", "))
}

// runID keeps client ids of concurrent or successive runs apart.
func runID(scenario string) string {
	return fmt.Sprintf("bench-%s-%06x", scenario, rand.Uint32()&0xffffff)
}
