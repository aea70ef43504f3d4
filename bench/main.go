package bench

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"

	"golang.org/x/term"

	"github.com/midge-mqtt/midge/codec"
)

const usage = `usage: midge bench [scenario|all] [flags]

Scenarios: %s.
  fanin     P publishers → 1 wildcard subscriber (QoS -q)
  fanout    1 publisher → S subscribers of one topic
  pairs     N publisher/subscriber pairs, each on its own topic
  qos1/qos2 fan-in at QoS 1 / 2, each publisher keeping -inflight unacknowledged
  queue     qos1 from -P publishers (default 4) to a persistent subscriber that is away
            meanwhile, then comes back: publish rate, then drain rate (not in all)
  latency   N pairs at a fixed total -rate (default 10000/s): p50 … p99.9, max
  conns     C idle connections: connect rate, broker RSS per connection (-pid)
  retained  R retained topics, fresh subscribers to a filter over all of them
  tls-fanin, tls-pairs   fanin and pairs (QoS 0) over TLS (-cafile or -insecure)
  tls-conns, tls-conns-ec  conns over TLS: handshake rate, CPU and RSS per connection
  wss-conns              tls-conns over WebSocket (the listener has protocol websockets)

Flags:
`

// Main is `midge bench`: it runs one scenario (or all) and prints a table
// or JSON on stdout. It returns the process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("midge bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		c        Config
		qos      int
		version  int
		asJSON   bool
		progress string
		cpuprof  string
		cafile   string
		insecure bool
	)
	fs.StringVar(&c.Host, "h", "127.0.0.1", "broker `host`")
	fs.IntVar(&c.Port, "p", 1883, "broker `port`")
	fs.IntVar(&c.SubPort, "subp", 0, "subscribers' broker `port` (bridged brokers; default -p)")
	fs.StringVar(&c.Unix, "unix", "", "dial the broker's Unix domain socket at `path` (not for conns)")
	fs.Func("pub", "publishers' brokers: `HOST:PORT[,HOST:PORT...]`, round robin (default -h:-p)", addrList(&c.PubAddrs))
	fs.Func("sub", "subscribers' brokers: `HOST:PORT[,HOST:PORT...]`, round robin (default -h:-p)", addrList(&c.SubAddrs))
	fs.IntVar(&c.Publishers, "P", 32, "publishers (fanin, qos1, qos2)")
	fs.IntVar(&c.Subscribers, "S", 1000, "subscribers (fanout)")
	fs.IntVar(&c.Stuck, "stuck", 0, "fanout: more subscribers that never read")
	fs.IntVar(&c.Pairs, "n", 0, "publisher/subscriber pairs (pairs: 100, latency: 10)")
	fs.IntVar(&c.Conns, "c", 1000, "idle connections (conns)")
	fs.IntVar(&c.Retained, "r", 10000, "retained topics (retained)")
	fs.IntVar(&c.Payload, "s", 64, "payload `bytes` (at least 20)")
	fs.IntVar(&qos, "q", 0, "QoS of fanin, fanout, pairs and latency")
	fs.IntVar(&version, "V", 4, "protocol level: 3 (3.1), 4 (3.1.1) or 5")
	fs.DurationVar(&c.Duration, "d", 0, "measured duration (default 5s)")
	fs.DurationVar(&c.Warmup, "w", 0, "warm-up before measuring (default 1s)")
	fs.IntVar(&c.Rate, "R", 0, "total publish rate in msg/s (0: unlimited; latency: 10000)")
	fs.IntVar(&c.Inflight, "inflight", 16, "unacknowledged messages per QoS 1/2 publisher")
	fs.BoolVar(&c.Persistent, "persistent", false, "subscribers keep persistent sessions (clean session 0), so a broker with persistence stores their messages")
	fs.IntVar(&c.BrokerPID, "pid", 0, "broker `pid`, to report its CPU and RSS from /proc")
	fs.IntVar(&c.Loops, "loops", 0, "generator event loops (0: one per CPU)")
	fs.IntVar(&c.Window, "window", 0, fmt.Sprintf("conns: connects in flight per loop (default %d)", stormWindow))
	fs.StringVar(&cafile, "cafile", "", "tls-*: PEM `file` of the CA that signed the broker's certificate")
	fs.BoolVar(&insecure, "insecure", false, "tls-*: do not verify the broker's certificate")
	fs.StringVar(&c.Username, "u", "", "conns: `username` of every CONNECT (with -pw)")
	fs.StringVar(&c.Password, "pw", "", "conns: `password` of every CONNECT")
	fs.BoolVar(&asJSON, "json", false, "print JSON instead of a table")
	fs.StringVar(&cpuprof, "cpuprofile", "", "write the generator's CPU profile to `file`")
	fs.StringVar(&progress, "progress", "auto", "progress bar on stderr: auto (when a terminal), on, off")
	fs.Usage = func() {
		fmt.Fprintf(stderr, usage, strings.Join(Scenarios, ", "))
		fs.PrintDefaults()
	}
	for _, a := range args {
		if a == "--help" || a == "-help" { // asked for: the usage goes to stdout
			fs.SetOutput(stdout)
			fmt.Fprintf(stdout, usage, strings.Join(Scenarios, ", "))
			fs.PrintDefaults()
			return 0
		}
	}
	scenario := "fanin"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		scenario, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "midge bench: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if qos < 0 || qos > 2 {
		fmt.Fprintln(stderr, "midge bench: -q must be 0, 1 or 2")
		return 2
	}
	switch version {
	case 3, 4, 5:
		c.Version = byte(version)
	default:
		fmt.Fprintln(stderr, "midge bench: -V must be 3, 4 or 5")
		return 2
	}
	if version == 3 {
		c.Version = codec.Version31
	}
	c.QoS = byte(qos)
	if cafile != "" || insecure {
		tc, err := ClientTLS(cafile, insecure)
		if err != nil {
			fmt.Fprintf(stderr, "midge bench: %v\n", err)
			return 2
		}
		c.TLS = tc
	}
	switch progress {
	case "on":
		c.Progress = stderr
	case "auto":
		if f, ok := stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			c.Progress = stderr
		}
	case "off":
	default:
		fmt.Fprintln(stderr, "midge bench: -progress must be auto, on or off")
		return 2
	}
	if cpuprof != "" {
		stopProfile, err := startCPUProfile(cpuprof)
		if err != nil {
			fmt.Fprintf(stderr, "midge bench: %v\n", err)
			return 1
		}
		defer stopProfile()
	}
	names := []string{scenario}
	if scenario == "all" {
		names = Scenarios
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var results []*Result
	code := 0
	for _, name := range names {
		cfg := c
		cfg.Scenario = name
		r, err := Run(ctx, cfg)
		if err != nil {
			fmt.Fprintf(stderr, "midge bench: %s: %v\n", name, err)
			code = 1
			if r == nil {
				r = &Result{Scenario: name, Error: err.Error()}
			}
		}
		results = append(results, r)
		if ctx.Err() != nil {
			break
		}
	}
	var err error
	if asJSON {
		err = WriteJSON(stdout, results)
	} else {
		err = WriteTable(stdout, results)
	}
	if err != nil {
		fmt.Fprintf(stderr, "midge bench: %v\n", err)
		return 1
	}
	return code
}

// addrList parses a comma-separated list of HOST:PORT into *dst.
func addrList(dst *[]string) func(string) error {
	return func(v string) error {
		for _, a := range strings.Split(v, ",") {
			_, p, err := net.SplitHostPort(a)
			if n, perr := strconv.Atoi(p); err != nil || perr != nil || n < 1 || n > 65535 {
				return fmt.Errorf("expected HOST:PORT, got %q", a)
			}
			*dst = append(*dst, a)
		}
		return nil
	}
}
