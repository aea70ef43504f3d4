package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/midge-mqtt/midge/bench"
	"github.com/midge-mqtt/midge/client"
	"github.com/midge-mqtt/midge/codec"
)

// clusterConf makes a midge node of a three-node cluster on loopback: the
// harness's midgeConf plus the cluster keys, {node}, {route} and {peers}
// filled in per node.
const clusterConf = `cluster_name perf
cluster_node_name {node}
cluster_listen 127.0.0.1:{route}
cluster_peers {peers}
cluster_store {store}
`

// clusterScenarios are compared between one midge and a three-node
// cluster (publishers on n1, subscribers on n2), as issue 13 sets targets:
// delivered msg/s ≥ 0.5× one node's, p99 latency at 10k msg/s ≤ 2×.
var clusterScenarios = []string{"pairs", "fanin", "latency"}

// clusterRun is one run of a scenario against one node or across nodes.
type clusterRun struct {
	scenario string
	cross    bool
	r        *bench.Result
}

// clustered runs each scenario against one midge and across a fresh
// three-node midge cluster, alternately (A B B A), and writes medians and
// ratios as a markdown section.
func clustered(ctx context.Context, o options, midge brokerSpec, dir string, w io.Writer, chart charter, logf func(string, ...any)) error {
	var runs []clusterRun
	for _, sc := range clusterScenarios {
		for round := 0; round < max(o.rounds, 2); round++ {
			order := []bool{false, true}
			if round%2 == 1 {
				order = []bool{true, false}
			}
			for _, cross := range order {
				r, err := clusterOnce(ctx, o, midge, sc, cross, dir, logf)
				if err != nil {
					return fmt.Errorf("perf: cluster %s (across nodes %v): %w", sc, cross, err)
				}
				logf("cluster %-8s across=%-5v %s", sc, cross, oneLine(r))
				runs = append(runs, clusterRun{sc, cross, r})
			}
		}
	}
	fmt.Fprintf(w, "\n## Cluster\n\nOne midge (publishers and subscribers on it) against three midge nodes joined over embedded NATS "+
		"(publishers on n1, subscribers on n2; the three nodes share the machine's cores), same load, 64-byte payloads, "+
		"MQTT 3.1.1, QoS 0; medians of %d runs, alternated. CPU is n1's. Targets (issue 13): delivered ≥ 0.5× one node's, "+
		"p99 latency at 10k msg/s ≤ 2×.\n\n", max(o.rounds, 2))
	fmt.Fprintf(w, "| scenario | one node | across nodes | ratio | lost (one / across) |\n|---|---|---|---|---|\n")
	var labels []string
	var ratios []float64
	targets := map[int]float64{}
	for _, sc := range clusterScenarios {
		var vals [2][]float64
		var lost [2]int64
		for _, r := range runs {
			if r.scenario != sc {
				continue
			}
			k := 0
			if r.cross {
				k = 1
			}
			v := r.r.Rate
			if sc == "latency" && r.r.Latency != nil {
				v = r.r.Latency.P99
			}
			vals[k] = append(vals[k], v)
			lost[k] += r.r.Lost
		}
		one, across := median(vals[0]), median(vals[1])
		ratio := "–"
		if one > 0 {
			ratio = fmt.Sprintf("%.2f×", across/one)
		}
		if one > 0 {
			targets[len(ratios)] = 0.5 // delivered
			if sc == "latency" {
				targets[len(ratios)] = 2 // p99, lower is better
			}
			labels, ratios = append(labels, sc), append(ratios, across/one)
		}
		if sc == "latency" {
			fmt.Fprintf(w, "| latency p99 at 10k msg/s | %.0f µs | %.0f µs | %s | %d / %d |\n", one, across, ratio, lost[0], lost[1])
		} else {
			fmt.Fprintf(w, "| %s msg/s | %s | %s | %s | %d / %d |\n", sc, bench.Count(one), bench.Count(across), ratio, lost[0], lost[1])
		}
	}
	fmt.Fprint(w, chart("ratios", "three nodes / one node (medians; triangle = target; latency p99: lower is better)", "ratio", labels, ratios, targets))
	return nil
}

// clusterOnce runs one scenario on a fresh single midge (cross false) or a
// fresh three-node cluster (cross true).
func clusterOnce(ctx context.Context, o options, midge brokerSpec, scenario string, cross bool, dir string, logf func(string, ...any)) (*bench.Result, error) {
	c := config(o, scenario)
	if scenario == "latency" {
		c.Rate = 10000
	}
	nodes, stop, err := freshBrokers(midge, cross, dir)
	defer stop()
	if err != nil {
		return nil, err
	}
	if !cross {
		c.Port, c.BrokerPID = nodes[0].Port, nodes[0].Pid
		return bench.Run(ctx, c)
	}
	c.Port, c.SubPort, c.BrokerPID = nodes[0].Port, nodes[1].Port, nodes[0].Pid
	r, err := bench.Run(ctx, c)
	if err == nil && r.Lost > 0 { // what the nodes said and counted
		for i, n := range nodes[:2] {
			logf("n%d: %s", i+1, sysCounters(ctx, n.Port))
		}
		for _, n := range nodes {
			if b, err := os.ReadFile(n.log); err == nil {
				for _, l := range strings.Split(string(b), "\n") {
					if strings.Contains(l, "cluster") && !strings.Contains(l, "waiting for JetStream") {
						logf("%s: %s", filepath.Base(n.log), l)
					}
				}
			}
		}
	}
	return r, err
}

// freshBrokers starts one fresh midge, or with cross a fresh three-node
// cluster; stop stops what started, even after an error.
func freshBrokers(midge brokerSpec, cross bool, dir string) (nodes []*runningBroker, stop func(), err error) {
	if cross {
		nodes, err = startCluster(midge, 3, dir)
	} else {
		var b *runningBroker
		if b, err = start(midge, dir); b != nil {
			nodes = []*runningBroker{b}
		}
	}
	return nodes, func() {
		for _, n := range nodes {
			_ = n.stop()
		}
	}, err
}

// startCluster starts n midge nodes at once (JetStream forms only with a
// quorum, and a node opens its listener only once joined).
func startCluster(midge brokerSpec, n int, dir string) ([]*runningBroker, error) {
	// midge started as root hands its cluster_store to the mosquitto user
	// as it drops root: that user must reach it.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	routes := make([]int, n)
	peers := make([]string, n)
	for i := range routes {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		routes[i], peers[i] = p, fmt.Sprintf("127.0.0.1:%d", p)
	}
	nodes := make([]*runningBroker, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range nodes {
		spec := midge
		spec.Name = fmt.Sprintf("%s-n%d", midge.Name, i+1)
		// The nodes log (joins, peers, NATS trouble), not each connection.
		spec.Conf = strings.Replace(spec.Conf, "log_dest none\n", "log_dest stderr\nconnection_messages false\n", 1)
		spec.Conf += strings.NewReplacer("{node}", fmt.Sprintf("n%d", i+1), "{route}", fmt.Sprint(routes[i]),
			"{peers}", strings.Join(peers, " ")).Replace(clusterConf)
		spec.Wait = 60 * time.Second
		wg.Add(1)
		go func() { defer wg.Done(); nodes[i], errs[i] = start(spec, dir) }()
	}
	wg.Wait()
	var up []*runningBroker
	for _, b := range nodes {
		if b != nil {
			up = append(up, b)
		}
	}
	for _, err := range errs {
		if err != nil {
			return up, err
		}
	}
	return up, nil
}

// sysCounters reads a node's dropped-message and cluster counters from its
// retained $SYS topics.
func sysCounters(ctx context.Context, port int) string {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	var mu sync.Mutex
	var got []string
	c := client.New(client.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port), CleanStart: true, ClientID: "perf-sys"})
	c.OnMessage = func(m *client.Message) {
		mu.Lock()
		got = append(got, strings.TrimPrefix(string(m.Topic), "$SYS/broker/")+"="+string(m.Payload))
		mu.Unlock()
	}
	if err := c.Connect(ctx); err != nil {
		return err.Error()
	}
	defer c.Disconnect(codec.Success, nil)
	if _, err := c.Subscribe(ctx, nil, codec.Subscription{Filter: []byte("$SYS/broker/cluster/#")},
		codec.Subscription{Filter: []byte("$SYS/broker/publish/messages/dropped")}); err != nil {
		return err.Error()
	}
	time.Sleep(time.Second)
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(got)
	return strings.Join(got, " ")
}
