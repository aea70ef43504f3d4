// Command perf runs midge and mosquitto (and any other broker named on the
// command line) under the same `midge bench` scenarios, each broker fresh
// per run, in A B B A order over several rounds, and writes a report with
// medians, ranges, ratios and charts to perf/results/<date>.md.
//
//	go run ./perf                 the comparison (make perf)
//	go run ./perf -quick          one short run of each scenario against midge (make bench)
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/midge-mqtt/midge/bench"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// brokerList is the repeatable -broker flag.
type brokerList []brokerSpec

func (b *brokerList) String() string { return fmt.Sprint(*b) }
func (b *brokerList) Set(s string) error {
	spec, err := parseBroker(s)
	if err == nil {
		*b = append(*b, spec)
	}
	return err
}

// options are perf's flags.
type options struct {
	quick        bool
	rounds       int
	duration     time.Duration
	warmup       time.Duration
	scenarios    string
	conns        int
	tlsConns     int
	midge        string
	midgeArgs    string
	noMosquitto  bool
	out          string
	profileDir   string
	others       brokerList
	unixOnly     bool
	bridged      bool // also compare bridged throughput (bridged.go)
	onlyBridged  bool
	cluster      bool // also compare one node with a three-node cluster (clustered.go)
	onlyCluster  bool
	clusterConns int  // only: that many idle connections over three nodes (clusterconns.go)
	clusterQueue bool // only: queue throughput, one node against the cluster (clusterqueue.go)
	queueAcross  bool // with clusterQueue: the subscriber's session on n2, the publishers on n1
}

func run(args []string, stdout, stderr io.Writer) int {
	var o options
	fs := flag.NewFlagSet("perf", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.BoolVar(&o.quick, "quick", false, "one short run of each scenario against midge only, printed as a table (make bench)")
	fs.IntVar(&o.rounds, "rounds", 4, "runs per broker and scenario, in A B B A order")
	fs.DurationVar(&o.duration, "d", 4*time.Second, "measured time per run")
	fs.DurationVar(&o.warmup, "w", time.Second, "warm-up per run")
	fs.StringVar(&o.scenarios, "scenarios", strings.Join(scenarios, ","), "comma-separated scenarios")
	fs.IntVar(&o.conns, "conns", 19000, "idle connections in the conns scenario")
	fs.IntVar(&o.tlsConns, "tls-conns", 10000, "idle connections in the tls-conns and wss-conns scenarios")
	fs.StringVar(&o.midge, "midge", "", "midge binary (default: go build -o bin/midge .)")
	fs.StringVar(&o.midgeArgs, "midge-args", "", "extra arguments for midge ({name}: the broker's name, e.g. midge-n1 in a cluster)")
	fs.BoolVar(&o.noMosquitto, "no-mosquitto", false, "do not run mosquitto")
	fs.StringVar(&o.out, "out", "perf/results", "report directory")
	fs.StringVar(&o.profileDir, "profile-dir", "", "write a midge CPU profile per run into this directory")
	fs.BoolVar(&o.bridged, "bridged", true, "also compare throughput through a bridge (full runs with mosquitto)")
	fs.BoolVar(&o.onlyBridged, "only-bridged", false, "run only the bridged throughput comparison, printed")
	fs.BoolVar(&o.cluster, "cluster", true, "also compare one midge with a three-node midge cluster (full runs)")
	fs.BoolVar(&o.onlyCluster, "only-cluster", false, "run only the cluster comparison, printed and written to perf/results/<date>-cluster.md")
	fs.IntVar(&o.clusterConns, "only-cluster-conns", 0, "run only: three nodes hold this many idle connections (e.g. 50000) while a cross-node pair flows; written to perf/results/<date>-cluster-conns.md")
	fs.BoolVar(&o.clusterQueue, "only-cluster-queue", false, "run only: QoS 1 to an offline persistent subscriber, one node with persistence against a three-node cluster; written to perf/results/<date>-cluster-queue.md")
	fs.BoolVar(&o.queueAcross, "cluster-queue-across", false, "with -only-cluster-queue: the subscriber's session on n2, the publishers on n1 (what they publish is forwarded)")
	fs.Var(&o.others, "broker", "another broker as name=command with {port} (repeatable)")
	fs.BoolVar(&o.unixOnly, "unix", false, "only compare QoS 0 pairs over a Unix socket and loopback TCP (also part of a full run)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	logf := func(f string, a ...any) { fmt.Fprintf(stderr, "perf: "+f+"\n", a...) }
	if o.quick {
		o.rounds, o.duration, o.warmup, o.noMosquitto = 1, 1500*time.Millisecond, 500*time.Millisecond, true
		if !flagSet(fs, "conns") {
			o.conns = 1000
		}
		if !flagSet(fs, "tls-conns") {
			o.tlsConns = 1000
		}
	}

	midge := o.midge
	if midge == "" {
		midge = "bin/midge"
		logf("building %s", midge)
		cmd := exec.Command("go", "build", "-o", midge, ".")
		cmd.Stdout, cmd.Stderr = stderr, stderr
		if err := cmd.Run(); err != nil {
			logf("go build: %v", err)
			return 1
		}
	}
	o.midge = midge // connpin runs its generator as `midge bench`
	midgeCmd := midge + " -c {conf}"
	if o.midgeArgs != "" {
		midgeCmd += " " + o.midgeArgs
	}
	brokers := []brokerSpec{{Name: "midge", Command: midgeCmd, Conf: midgeConf}}
	env := environment(midge)
	if !o.noMosquitto {
		path, err := ensureMosquitto(logf)
		if err != nil {
			logf("%v", err)
			return 1
		}
		env.Mosquitto = mosquittoVersion(path)
		brokers = append(brokers, brokerSpec{Name: "mosquitto", Command: path + " -c {conf}", Conf: mosquittoConf})
	}
	brokers = append(brokers, o.others...)

	dir, err := os.MkdirTemp("", "midge-perf")
	if err != nil {
		logf("%v", err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	unixBrokers := brokers[:min(len(brokers), 2)] // midge and mosquitto: the others' configs are unknown
	if o.unixOnly {
		if err := unixCompare(ctx, o, env, unixBrokers, stdout, logf); err != nil {
			logf("%v", err)
			return 1
		}
		return 0
	}
	if o.onlyBridged {
		if err := bridged(ctx, o, brokers[:min(2, len(brokers))], dir, stdout, logf); err != nil {
			logf("%v", err)
			return 1
		}
		return 0
	}
	// The cluster's comparisons each print a markdown section and keep it
	// in perf/results/<date>-<name>.md under a header naming the machine.
	only := func(name, title, command, note string, section func(w io.Writer, chart charter) error) int {
		var b strings.Builder
		base := filepath.Join(o.out, time.Now().UTC().Format("2006-01-02")+"-"+name)
		if err := section(&b, newCharter(base, logf)); err != nil {
			logf("%v", err)
			return 1
		}
		fmt.Fprint(stdout, b.String())
		path := base + ".md"
		text := fmt.Sprintf("# midge: %s, %s\n\n- Machine: %s, %d cores, %.0f GiB; kernel %s\n- Go %s; %s\n- `%s`%s\n",
			title, env.Date, env.CPU, env.Cores, env.MemGiB, env.Kernel, env.Go, env.Midge, command, note) + b.String()
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			logf("%v", err)
			return 1
		}
		logf("report: %s", path)
		return 0
	}
	fresh := ": every node fresh per run; the load generator shares the cores."
	switch {
	case o.clusterQueue:
		return only("cluster-queue", "queues for offline sessions, one node and a cluster",
			fmt.Sprintf("go run ./perf -no-mosquitto -only-cluster-queue -cluster-queue-across=%v -rounds %d -d %v -w %v", o.queueAcross, o.rounds, o.duration, o.warmup), fresh,
			func(w io.Writer, chart charter) error { return clusterQueue(ctx, o, brokers[0], dir, w, chart, logf) })
	case o.clusterConns > 0:
		return only("cluster-conns", "idle connections beyond one process",
			fmt.Sprintf("go run ./perf -no-mosquitto -only-cluster-conns %d", o.clusterConns), "",
			func(w io.Writer, chart charter) error {
				return clusterConns(ctx, o, brokers[0], o.clusterConns, dir, w, chart, logf)
			})
	case o.onlyCluster:
		return only("cluster", "one node against a three-node cluster",
			fmt.Sprintf("go run ./perf -only-cluster -rounds %d -d %v -w %v", o.rounds, o.duration, o.warmup), fresh,
			func(w io.Writer, chart charter) error { return clustered(ctx, o, brokers[0], dir, w, chart, logf) })
	}
	runs, err := runAll(ctx, o, brokers, dir, logf)
	if err != nil {
		logf("%v", err)
		return 1
	}
	if o.quick {
		var rs []*bench.Result
		for _, r := range runs {
			rs = append(rs, r.Result)
		}
		fmt.Fprintln(stdout)
		if err := bench.WriteTable(stdout, rs); err != nil {
			return 1
		}
		for _, r := range runs {
			if r.Result.Error != "" {
				return 1
			}
		}
		if err := persistRatio(ctx, o, midgeCmd, dir, stdout, logf); err != nil {
			logf("%v", err)
			return 1
		}
		return 0
	}
	rep := newReport(env, o, brokers, runs)
	path, err := rep.write(o.out)
	if err != nil {
		logf("%v", err)
		return 1
	}
	fmt.Fprint(stdout, rep.summary())
	if o.bridged && !o.noMosquitto {
		var b strings.Builder
		if err := bridged(ctx, o, brokers[:2], dir, &b, logf); err != nil {
			logf("%v", err)
			return 1
		}
		fmt.Fprint(stdout, b.String())
		if err := appendFile(path, b.String()); err != nil {
			logf("%v", err)
			return 1
		}
	}
	if o.cluster {
		var b strings.Builder
		if err := clustered(ctx, o, brokers[0], dir, &b, newCharter(strings.TrimSuffix(path, ".md")+"-cluster", logf), logf); err != nil {
			logf("%v", err)
			return 1
		}
		fmt.Fprint(stdout, b.String())
		if err := appendFile(path, b.String()); err != nil {
			logf("%v", err)
			return 1
		}
	}
	logf("report: %s", path)
	if err := unixCompare(ctx, o, env, unixBrokers, stdout, logf); err != nil {
		logf("%v", err)
		return 1
	}
	return 0
}

// appendFile adds text at the end of the file at path.
func appendFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func flagSet(fs *flag.FlagSet, name string) (set bool) {
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// runResult is one scenario run against one broker.
type runResult struct {
	Broker string        `json:"broker"`
	Round  int           `json:"round"`
	Result *bench.Result `json:"result"`
}

// scenarios are perf's: bench's, fan-in from 4 publishers, fan-out with a
// stuck subscriber, and connects
// with the generator and the broker pinned to a core each (pinned.go).
var scenarios = append(append(append([]string(nil), bench.Scenarios...), "fanin4", "fanoutstuck", "connpin"), bench.TLSScenarios...)

// config is the bench configuration of each scenario in perf.
func config(o options, name string) bench.Config {
	c := bench.Config{Scenario: name, Duration: o.duration, Warmup: o.warmup, Conns: o.conns}
	switch name {
	case "conns":
		// Hold time: the connect phase is timed, then the broker's CPU
		// while the connections are idle.
		c.Duration = 5 * time.Second
	case "tls-conns", "tls-conns-ec", "wss-conns":
		c.Conns = o.tlsConns
		c.Duration = 2 * time.Second // hold time; the connect phase is what is timed
	case "fanin4":
		c.Scenario, c.Publishers = "fanin", 4
	case "fanoutstuck": // 999 subscribers that read, one that does not
		c.Scenario, c.Subscribers, c.Stuck = "fanout", 999, 1
	}
	return c
}

// runAll runs every scenario: for each round, every broker once, the order
// reversed on odd rounds (A B B A ...), each broker fresh per run.
func runAll(ctx context.Context, o options, brokers []brokerSpec, dir string, logf func(string, ...any)) ([]runResult, error) {
	var runs []runResult
	names := strings.Split(o.scenarios, ",")
	var crts *certs
	if slices.ContainsFunc(names, isTLS) {
		var err error
		if crts, err = makeCerts(dir); err != nil {
			return nil, fmt.Errorf("perf: certificates: %w", err)
		}
	}
	total, n := len(names)*o.rounds*len(brokers), 0
	for _, name := range names {
		for round := 0; round < o.rounds; round++ {
			order := append([]brokerSpec(nil), brokers...)
			if round%2 == 1 {
				for i, j := 0, len(order)-1; i < j; i, j = i+1, j-1 {
					order[i], order[j] = order[j], order[i]
				}
			}
			for _, spec := range order {
				if err := ctx.Err(); err != nil {
					return runs, err
				}
				n++
				if o.profileDir != "" && spec.Name == "midge" {
					spec.Command += " --cpuprofile " + filepath.Join(o.profileDir, fmt.Sprintf("%s-%d.pprof", name, round))
				}
				if name == "connpin" {
					spec.Command = pinnedCommand(spec.Command, brokerCore)
				}
				c := config(o, name)
				if isTLS(name) {
					if spec.Conf == "" {
						logf("[%d/%d] %-8s %-9s skipped: no configuration to add TLS to", n, total, name, spec.Name)
						continue
					}
					conf, err := crts.withTLS(spec.Conf, name)
					if err != nil {
						return runs, err
					}
					spec.Conf, c.TLS = conf, crts.client
				}
				b, err := start(spec, dir)
				if err != nil {
					return runs, err
				}
				c.Port, c.BrokerPID = b.Port, b.Pid
				var r *bench.Result
				if name == "connpin" {
					r, err = runPinned(ctx, o, c)
				} else {
					r, err = bench.Run(ctx, c)
				}
				if r != nil {
					r.Scenario = name
				}
				if stopErr := b.stop(); stopErr != nil {
					logf("%s: %v", spec.Name, stopErr)
				}
				if r == nil {
					r = &bench.Result{Scenario: name}
				}
				if err != nil && r.Error == "" {
					r.Error = err.Error()
				}
				logf("[%d/%d] %-8s %-9s %s", n, total, name, spec.Name, oneLine(r))
				runs = append(runs, runResult{Broker: spec.Name, Round: round, Result: r})
			}
		}
	}
	return runs, nil
}

// oneLine is a run's headline figures for the log.
func oneLine(r *bench.Result) string {
	if r.Error != "" {
		return "error: " + r.Error
	}
	s := fmt.Sprintf("%s msg/s delivered, lost %d, broker CPU %s", bench.Count(r.Rate), r.Lost, bench.Percent(r.BrokerCPU))
	switch r.Scenario {
	case "latency":
		if r.Latency == nil {
			break
		}
		s += fmt.Sprintf(", p50 %s p99 %s", bench.Micros(r.Latency.P50), bench.Micros(r.Latency.P99))
	case "conns":
		s = fmt.Sprintf("%s conn/s, %.2f KiB/conn, idle CPU %.2f%%, RSS at start %s",
			bench.Count(r.ConnectRate), r.KiBPerConn, r.IdleCPU*100, bench.KiB(r.StartRSSKiB))
	case "connpin":
		s = fmt.Sprintf("%s conn/s, broker %.1f µs per connect", bench.Count(r.ConnectRate), cpuPerConnect(brokerCPU)(r))
	case "tls-conns", "tls-conns-ec", "wss-conns":
		s = fmt.Sprintf("%s conn/s, %.2f KiB/conn, broker CPU %s", bench.Count(r.ConnectRate), r.KiBPerConn, bench.Percent(r.BrokerCPU))
	}
	return s
}
