// Command soak runs a long mixed load against a midge with persistence on
// and checks every delivery guarantee as it goes (issue 20).
//
//	go run ./soak [-d 30m] [-clients 1000] [-rate 300] [-out perf/results]
//
// It builds bin/midge (or takes -midge PATH), starts it on a free port with
// persistence and metrics_listener, runs the clients (see mixFor), samples
// the broker's RSS (/proc), goroutines (/metrics), store size and the p99
// latency every -sample, and writes NAME.md and NAME.png under -out. It
// exits 1 when any guarantee was broken or, for runs of 10 minutes or
// more, RSS, store size or goroutines climb instead of levelling off.
// `make soak` runs it (SOAKTIME=1h for an hour).
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// options are the command's flags.
type options struct {
	cfg     config
	midge   string
	addr    string
	pid     int
	metrics string
	store   string
	out     string
	name    string
	enforce string
	dir     string
	set     []string
}

func run(args []string, stdout, stderr io.Writer) int {
	var o options
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.DurationVar(&o.cfg.duration, "d", 30*time.Minute, "how long the load runs")
	fs.IntVar(&o.cfg.clients, "clients", 1000, "clients in all")
	fs.Float64Var(&o.cfg.rate, "rate", 300, "publishes per second, all publishers together")
	fs.IntVar(&o.cfg.payload, "payload", 236, "random padding per publisher, up to this many bytes")
	fs.DurationVar(&o.cfg.online, "online", time.Minute, "mean time a client stays connected between churns")
	fs.DurationVar(&o.cfg.sample, "sample", 10*time.Second, "sampling interval")
	fs.Uint64Var(&o.cfg.seed, "seed", uint64(time.Now().UnixNano()), "random seed")
	fs.StringVar(&o.midge, "midge", "", "midge binary (default: build bin/midge)")
	fs.StringVar(&o.addr, "addr", "", "an already running broker host:port (not started, not stopped)")
	fs.IntVar(&o.pid, "pid", 0, "with -addr: the broker's pid, for RSS")
	fs.StringVar(&o.metrics, "metrics", "", "with -addr: its metrics_listener host:port")
	fs.StringVar(&o.store, "store", "", "with -addr: its persistence directory")
	fs.StringVar(&o.out, "out", "perf/results", "where the report goes")
	fs.StringVar(&o.name, "name", time.Now().UTC().Format("2006-01-02")+"-soak", "report base name")
	fs.StringVar(&o.enforce, "level", "auto", "enforce the levelling rule: yes, no, or auto (runs of 10 minutes or more)")
	fs.StringVar(&o.dir, "dir", "", "working directory for the broker's store and log (default: a temporary one)")
	fs.Func("set", "a broker config line replacing the soak's (\"KEY VALUE\"); repeatable", func(v string) error {
		o.set = append(o.set, v)
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return 2
	}
	code, _, err := soakRun(o, stdout)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	return code
}

// soakRun does the run and reports; the code is 0 when every check passed.
func soakRun(o options, w io.Writer) (int, *soak, error) {
	out := &lockedWriter{w: w}
	var b *broker
	if o.addr != "" {
		b = &broker{addr: o.addr, pid: o.pid, metrics: o.metrics, store: o.store, conf: "(an already running broker)\n"}
	} else {
		dir := o.dir
		if dir == "" {
			d, err := os.MkdirTemp("", "midge-soak")
			if err != nil {
				return 0, nil, err
			}
			defer os.RemoveAll(d)
			dir = d
		}
		bin := o.midge
		if bin == "" {
			bin = "bin/midge"
			if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
				return 0, nil, fmt.Errorf("soak: go build: %v\n%s", err, out)
			}
		}
		var err error
		if b, err = startBroker(bin, dir, o.set); err != nil {
			return 0, nil, err
		}
		defer b.stop()
		// Interrupted: the broker goes with the soak.
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
		defer signal.Stop(sig)
		go func() {
			if _, ok := <-sig; ok {
				b.stop()
				if o.dir == "" {
					os.RemoveAll(dir)
				}
				os.Exit(2)
			}
		}()
	}
	o.cfg.addr = b.addr
	enforce := o.enforce == "yes" || (o.enforce == "auto" && o.cfg.duration >= 10*time.Minute)
	began := time.Now()
	s := newSoak(o.cfg, out)
	sm := newSampler(b, s, o.cfg.sample, out)
	s.run(sm)
	brokerErr := b.alive()
	samples := sm.all()
	v := judgeRun(s, samples, brokerErr, enforce)
	path, err := writeReport(o.out, o.name, s, samples, v, b, enforce, time.Since(began))
	if err != nil {
		return 0, nil, err
	}
	fmt.Fprintf(out, "soak: report %s\n", path)
	if len(v.failures) > 0 {
		fmt.Fprintf(out, "soak: FAILED: %v\n", v.failures)
		return 1, s, nil
	}
	fmt.Fprintf(out, "soak: every guarantee kept\n")
	return 0, s, nil
}

// lockedWriter serialises the progress lines of the sampler, the checker
// and the run.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
