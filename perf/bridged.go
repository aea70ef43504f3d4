package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/midge-mqtt/midge/bench"
	"github.com/midge-mqtt/midge/client"
	"github.com/midge-mqtt/midge/codec"
)

// bridgeConf is a broker that bridges bench/# out to the remote at
// {remote}, at QoS {qos}.
const bridgeConf = `connection perf
address 127.0.0.1:{remote}
cleansession true
restart_timeout 1
topic bench/# out {qos}
`

// bridgedRun is one bridged throughput run: publishers on a local broker,
// the subscriber on a remote one, the local broker's bridge between them.
type bridgedRun struct {
	broker string // the brokers' kind: both ends run it
	qos    byte
	r      *bench.Result
}

// bridged runs fan-in through a bridge (8 publishers on the local broker,
// one subscriber on the remote, both brokers of one kind) at QoS 0 and 1,
// for midge and mosquitto alternately, and writes medians and ratios.
func bridged(ctx context.Context, o options, specs []brokerSpec, dir string, w io.Writer, logf func(string, ...any)) error {
	var runs []bridgedRun
	for _, qos := range []byte{0, 1} {
		for round := 0; round < max(o.rounds, 2); round++ {
			order := append([]brokerSpec(nil), specs...)
			if round%2 == 1 {
				for i, j := 0, len(order)-1; i < j; i, j = i+1, j-1 {
					order[i], order[j] = order[j], order[i]
				}
			}
			for _, spec := range order {
				r, err := bridgedOnce(ctx, o, spec, qos, dir)
				if err != nil {
					return fmt.Errorf("perf: bridged qos%d %s: %w", qos, spec.Name, err)
				}
				logf("bridged qos%d %-9s %s", qos, spec.Name, oneLine(r))
				runs = append(runs, bridgedRun{spec.Name, qos, r})
			}
		}
	}
	fmt.Fprintf(w, "\n## Bridged throughput\n\n8 publishers → local broker → bridge (`topic bench/# out QOS`) → remote broker → 1 subscriber, "+
		"both brokers of the kind named, 64-byte payloads, MQTT 3.1.1; medians of %d runs. CPU is the local (bridging) broker's.\n\n", max(o.rounds, 2))
	fmt.Fprintf(w, "| QoS | broker | delivered msg/s | lost (total) | local broker CPU | ratio |\n|---|---|---|---|---|---|\n")
	for _, qos := range []byte{0, 1} {
		rates := map[string][]float64{}
		var lostTotal = map[string]int64{}
		cpu := map[string][]float64{}
		for _, r := range runs {
			if r.qos == qos {
				rates[r.broker] = append(rates[r.broker], r.r.Rate)
				lostTotal[r.broker] += r.r.Lost
				cpu[r.broker] = append(cpu[r.broker], r.r.BrokerCPU)
			}
		}
		base := median(rates["mosquitto"])
		for _, spec := range specs {
			m := median(rates[spec.Name])
			ratio := "–"
			if base > 0 && spec.Name != "mosquitto" {
				ratio = fmt.Sprintf("%.1f×", m/base)
			}
			fmt.Fprintf(w, "| %d | %s | %s | %d | %s | %s |\n", qos, spec.Name, bench.Count(m), lostTotal[spec.Name],
				bench.Percent(median(cpu[spec.Name])), ratio)
		}
	}
	return nil
}

// bridgedOnce starts a remote and a local broker of spec's kind, waits for
// the bridge, and runs the fan-in across it.
func bridgedOnce(ctx context.Context, o options, spec brokerSpec, qos byte, dir string) (*bench.Result, error) {
	remoteSpec := spec
	remoteSpec.Name += "-remote"
	remote, err := start(remoteSpec, dir)
	if err != nil {
		return nil, err
	}
	defer remote.stop()
	localSpec := spec
	localSpec.Name += "-local"
	localSpec.Conf += strings.NewReplacer("{remote}", fmt.Sprint(remote.Port), "{qos}", fmt.Sprint(qos)).Replace(bridgeConf)
	local, err := start(localSpec, dir)
	if err != nil {
		return nil, err
	}
	defer local.stop()
	if err := waitBridge(ctx, local.Port); err != nil {
		return nil, err
	}
	c := config(o, "fanin")
	if qos == 1 {
		c = config(o, "qos1")
	}
	c.Publishers = 8
	c.Port, c.SubPort, c.BrokerPID = local.Port, remote.Port, local.Pid
	return bench.Run(ctx, c)
}

// waitBridge waits for the local broker's bridge to announce "1" on its
// notification topic (both brokers publish it locally, retained).
func waitBridge(ctx context.Context, port int) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	up := make(chan struct{}, 1)
	c := client.New(client.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port), CleanStart: true, ClientID: "perf-bridge-wait"})
	c.OnMessage = func(m *client.Message) {
		if string(m.Payload) == "1" {
			select {
			case up <- struct{}{}:
			default:
			}
		}
	}
	if err := c.Connect(ctx); err != nil {
		return err
	}
	defer c.Disconnect(codec.Success, nil)
	if _, err := c.Subscribe(ctx, nil, codec.Subscription{Filter: []byte("$SYS/broker/connection/+/state")}); err != nil {
		return err
	}
	select {
	case <-up:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("the bridge did not come up: %w", ctx.Err())
	}
}
