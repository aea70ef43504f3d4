package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/midge-mqtt/midge/bench"
)

// Issue 14's queue throughput: QoS 1 to an offline persistent subscriber
// (bench's queue scenario: publishers while it is away, then its drain) on
// one midge with persistence against a three-node cluster, where what waits
// for an offline persistent session is also replicated (a JetStream stream,
// replicas 3). Same session, same load: publishers and subscriber on n1.

// queueConf is persistedConf without a bound on the queue, so that nothing
// is dropped for its length.
var queueConf = strings.Replace(persistedConf, "max_queued_messages 1000\n", "max_queued_messages 0\n", 1)

// clusterQueue runs the comparison, alternating (A B B A), and writes the
// medians and ratios as markdown to w.
func clusterQueue(ctx context.Context, o options, midge brokerSpec, dir string, w io.Writer, chart charter, logf func(string, ...any)) error {
	midge.Conf = queueConf
	var rates, drains [2][]float64
	var lost [2]int64
	for round := 0; round < max(o.rounds, 2); round++ {
		order := []bool{false, true}
		if round%2 == 1 {
			order = []bool{true, false}
		}
		for _, cross := range order {
			r, err := queueOnce(ctx, o, midge, cross, dir, logf)
			if err != nil {
				return fmt.Errorf("perf: queue (cluster %v): %w", cross, err)
			}
			k := 0
			if cross {
				k = 1
			}
			logf("queue cluster=%-5v published %s msg/s, drained %s msg/s, lost %d", cross, bench.Count(r.SentRate), bench.Count(r.DrainRate), r.Lost)
			rates[k] = append(rates[k], r.SentRate)
			drains[k] = append(drains[k], r.DrainRate)
			lost[k] += r.Lost
		}
	}
	where := "publishers and subscriber on n1"
	if o.queueAcross {
		where = "publishers on n1, the subscriber's session on n2 (what they publish is forwarded to n2, which confirms it " +
			"stored and replicated before n1 acknowledges)"
	}
	fmt.Fprintf(w, "\n## QoS 1 to an offline persistent subscriber\n\n`midge bench queue` (4 publishers, QoS 1, 16 in flight each, 64-byte payloads, MQTT 3.1.1) "+
		"while the subscriber's session is offline, then the subscriber comes back for the queue. One midge with "+
		"`persistence true`, `persistence_sync always`, against a three-node cluster with the same settings, where the queue "+
		"is also replicated (JetStream, 3 replicas); %s. Medians of %d runs, alternated.\n\n", where, max(o.rounds, 2))
	fmt.Fprintln(w, "| | one node | cluster | ratio | lost (one / cluster) |\n|---|---|---|---|---|")
	ratio := func(a, b float64) string {
		if a <= 0 {
			return "–"
		}
		return fmt.Sprintf("%.2f×", b/a)
	}
	p1, p2 := median(rates[0]), median(rates[1])
	d1, d2 := median(drains[0]), median(drains[1])
	fmt.Fprintf(w, "| published (acknowledged) msg/s | %s | %s | %s | %d / %d |\n", bench.Count(p1), bench.Count(p2), ratio(p1, p2), lost[0], lost[1])
	fmt.Fprintf(w, "| drained msg/s | %s | %s | %s | |\n", bench.Count(d1), bench.Count(d2), ratio(d1, d2))
	if p1 > 0 && d1 > 0 {
		fmt.Fprint(w, chart("ratios", "queue for an offline session: cluster / one node (medians)", "ratio",
			[]string{"published", "drained"}, []float64{p2 / p1, d2 / d1}, nil))
	}
	return nil
}

// queueOnce runs the queue scenario on a fresh single midge or a fresh
// three-node cluster.
func queueOnce(ctx context.Context, o options, midge brokerSpec, cross bool, dir string, logf func(string, ...any)) (*bench.Result, error) {
	c := config(o, bench.QueueScenario)
	nodes, stop, err := freshBrokers(midge, cross, dir)
	defer stop()
	if err != nil {
		return nil, err
	}
	c.Port, c.BrokerPID = nodes[0].Port, nodes[0].Pid // publishers and subscriber on n1
	if cross && o.queueAcross {
		c.SubPort = nodes[1].Port // the session on n2
	}
	return bench.Run(ctx, c)
}
