package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	_ "net/http/pprof" // served only with --pprof
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"syscall"
	"time"

	"github.com/pkg/profile"

	"github.com/midge-mqtt/midge/config"
	"github.com/midge-mqtt/midge/loop"
	"github.com/midge-mqtt/midge/metrics"
	"github.com/midge-mqtt/midge/session"
	"github.com/midge-mqtt/midge/sys"
)

// version is reported by --version and $SYS/broker/version.
const version = "0.1.0"

// portList is the repeatable -p flag.
type portList []int

func (p *portList) String() string { return fmt.Sprint(*p) }
func (p *portList) Set(v string) error {
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("invalid port %q", v)
	}
	if len(*p) >= 10 {
		return errors.New("-p may be given at most 10 times")
	}
	*p = append(*p, n)
	return nil
}

// runBroker is `midge [flags]`: mosquitto's broker flags plus profiling.
func runBroker(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("midge", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		ports      portList
		verbose    bool
		configFile string
		daemon     bool
		cpuProfile string
		memProfile string
		pprofAddr  string
		showVer    bool
	)
	fs.Var(&ports, "p", "listen on `port` on the loopback interface (repeatable, at most 10)")
	fs.Var(&ports, "port", "same as -p")
	fs.BoolVar(&verbose, "v", false, "verbose logging (log_type all)")
	fs.BoolVar(&verbose, "verbose", false, "same as -v")
	fs.StringVar(&configFile, "c", "", "load configuration from `file` (mosquitto.conf syntax)")
	fs.StringVar(&configFile, "config-file", "", "same as -c")
	fs.BoolVar(&daemon, "d", false, "run in the background as a daemon")
	fs.BoolVar(&daemon, "daemon", false, "same as -d")
	fs.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile to `file` on exit")
	fs.StringVar(&memProfile, "memprofile", "", "write a heap profile to `file` on exit")
	fs.StringVar(&pprofAddr, "pprof", "", "serve net/http/pprof on `addr` (e.g. 127.0.0.1:6060)")
	fs.BoolVar(&showVer, "version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return 3
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "midge: unknown argument %q\n", fs.Arg(0))
		return 3
	}
	if showVer {
		fmt.Fprintf(os.Stdout, "midge version %s\n", version)
		return 0
	}
	if daemon {
		fmt.Fprintln(stderr, "midge: -d: running as a daemon is not supported yet; use your service manager")
		return 1
	}

	cfg := config.Default()
	if configFile != "" {
		var err error
		if cfg, err = config.Parse(configFile); err != nil {
			fmt.Fprintf(stderr, "Error: %v\n", err)
			return 1
		}
	}
	st, err := newSetup(cfg, verbose, ports, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "Error: %v\n", err)
		return 1
	}
	if st.logFile != nil {
		defer st.logFile.Close()
	}
	logger := st.logger
	broker := session.NewBroker(st.opts)
	if cfg.Persistence {
		db, err := openStore(cfg, broker, logger)
		if err != nil {
			fmt.Fprintf(stderr, "Error: %v\n", err)
			return 1
		}
		defer func() {
			broker.SaveCounters() // $SYS totals go on after a restart
			if err := db.Close(); err != nil {
				logger.Printf("Error: closing the store: %v", err)
			}
		}()
	}

	stopProfiles, err := startProfiles(cpuProfile, memProfile)
	if err != nil {
		fmt.Fprintf(stderr, "midge: %v\n", err)
		return 1
	}
	defer stopProfiles()
	if pprofAddr != "" {
		ln, err := net.Listen("tcp", pprofAddr)
		if err != nil {
			fmt.Fprintf(stderr, "midge: --pprof: %v\n", err)
			return 1
		}
		go func() { _ = http.Serve(ln, nil) }()
		logger.Printf("pprof on http://%s/debug/pprof/", ln.Addr())
	}
	if cfg.MetricsListener != "" {
		ln, err := net.Listen("tcp", cfg.MetricsListener)
		if err != nil {
			fmt.Fprintf(stderr, "Error: metrics_listener: %v\n", err)
			return 1
		}
		ms := metrics.NewServer(broker, version)
		go func() { _ = ms.Serve(ln) }()
		defer ms.Close()
		logger.Printf("Prometheus metrics on http://%s/metrics", ln.Addr())
	}

	srv := loop.New(broker, loop.Config{Listen: st.listeners, MaxPacketSize: st.maxPacket,
		ReusePort: st.reusePort, Logger: logger})
	logger.Printf("midge version %s starting", version)
	if err := srv.Start(); err != nil {
		logger.Printf("Error: %v", err)
		return 1
	}
	for _, a := range srv.Addrs() {
		logger.Printf("Opening ipv4 listen socket on %s.", a)
	}

	sysCtx, stopSys := context.WithCancel(context.Background())
	defer stopSys()
	go sys.New(broker, version, st.sysInterval).Run(sysCtx)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	stopped := waitChan(srv)
wait:
	for {
		select {
		case s := <-sig:
			if s == syscall.SIGHUP {
				logger.Printf("Reloading config.")
				st.reload()
				continue
			}
			logger.Printf("midge version %s terminating (%v)", version, s)
			break wait
		case <-stopped:
			break wait
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		logger.Printf("shutdown: %v", err)
	}
	return 0
}

func waitChan(srv *loop.Server) <-chan struct{} {
	ch := make(chan struct{})
	go func() { _ = srv.Wait(); close(ch) }()
	return ch
}

// startProfiles starts the CPU and/or heap profile with pkg/profile (its
// signal hook off, so that shutdown stays graceful). pkg/profile runs one
// profile at a time, so with both flags the heap profile is written with
// runtime/pprof at stop. Each lands in exactly the file named.
func startProfiles(cpuFile, memFile string) (stop func(), err error) {
	type running struct {
		p    interface{ Stop() }
		dir  string
		name string
		dst  string
	}
	var runs []running
	start := func(mode func(*profile.Profile), name, dst string) error {
		dir, err := os.MkdirTemp("", "midge-profile")
		if err != nil {
			return err
		}
		p := profile.Start(mode, profile.ProfilePath(dir), profile.NoShutdownHook, profile.Quiet)
		runs = append(runs, running{p, dir, name, dst})
		return nil
	}
	switch {
	case cpuFile != "":
		err = start(profile.CPUProfile, "cpu.pprof", cpuFile)
	case memFile != "":
		err = start(profile.MemProfile, "mem.pprof", memFile)
	}
	if err != nil {
		return nil, err
	}
	return func() {
		for _, r := range runs {
			r.p.Stop()
			if err := os.Rename(filepath.Join(r.dir, r.name), r.dst); err != nil {
				log.Printf("profile: %v", err)
			}
			os.RemoveAll(r.dir)
		}
		if cpuFile != "" && memFile != "" {
			f, err := os.Create(memFile)
			if err == nil {
				runtime.GC()
				err = pprof.WriteHeapProfile(f)
				f.Close()
			}
			if err != nil {
				log.Printf("profile: %v", err)
			}
		}
	}, nil
}

// timestampWriter prefixes each log line with mosquitto's unix-seconds timestamp.
type timestampWriter struct{ w io.Writer }

func (t timestampWriter) Write(p []byte) (int, error) {
	line := strconv.AppendInt(nil, time.Now().Unix(), 10)
	line = append(line, ':', ' ')
	line = append(line, p...)
	if _, err := t.w.Write(line); err != nil {
		return 0, err
	}
	return len(p), nil
}
