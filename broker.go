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

	"github.com/midge-mqtt/midge/bridge"
	"github.com/midge-mqtt/midge/config"
	"github.com/midge-mqtt/midge/loop"
	"github.com/midge-mqtt/midge/session"
	"github.com/midge-mqtt/midge/store"
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

// brokerUsage is `midge --help`: the broker's flags in mosquitto's manner,
// then the subcommands.
const brokerUsage = `midge is an MQTT broker (MQTT 3.1, 3.1.1 and 5.0) and mosquitto's tools in
one binary.

Usage: midge [-c config_file] [-d] [-h] [-p port] [-v] [--version]
       midge COMMAND [options]

 -c, --config-file FILE : read the configuration from FILE (mosquitto.conf syntax).
                          Without it, midge listens on 127.0.0.1:1883 and allows
                          anonymous clients, as mosquitto 2 does.
 -d, --daemon           : run in the background; returns once the listeners are open.
 -h, --help             : print this help.
 -p, --port PORT        : listen on PORT on the loopback interface; up to 10 times.
                          Ignored when the configuration file has listeners.
 -v, --verbose          : log every log type, whatever log_type says.
 --version              : print the version.
 --cpuprofile FILE, --memprofile FILE : write a profile when the broker stops.
 --pprof ADDR           : serve net/http/pprof on ADDR.

Commands:
`

// printUsage writes brokerUsage and one line per subcommand.
func printUsage(w io.Writer) {
	fmt.Fprint(w, brokerUsage)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-7s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, "\n`midge COMMAND --help` (or `midge help COMMAND`) describes a command's options.\n")
}

// runBroker is `midge [flags]`: mosquitto's broker flags plus profiling.
func runBroker(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("midge", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { printUsage(stderr) }
	var help bool
	fs.BoolVar(&help, "h", false, "")
	fs.BoolVar(&help, "help", false, "")
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
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 3
	}
	if help {
		printUsage(os.Stdout)
		return 0
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "midge: unknown argument %q\n", fs.Arg(0))
		return 3
	}
	if showVer {
		fmt.Fprintf(os.Stdout, "midge version %s\n", version)
		return 0
	}
	if daemon && os.Getenv(daemonEnv) == "" {
		return daemonize(args, stderr)
	}

	// Signals are caught from the start: a SIGTERM while the broker starts
	// (clients may already be served) still stops it cleanly, saving what
	// a clean stop saves, once it has started.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sig)

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
	if st.logs.syslog != nil {
		defer st.logs.syslog.close()
	}
	logger := st.logger
	for _, n := range cfg.Notices {
		logger.Printf("Notice: %s", n)
	}
	if cfg.PidFile != "" {
		if err := writePidFile(cfg.PidFile); err != nil {
			fmt.Fprintf(stderr, "Error: pid_file: %v\n", err)
			return 1
		}
		defer os.Remove(cfg.PidFile)
	}
	broker := session.NewBroker(st.opts)
	st.attach(broker)
	defer st.closeAuth() // after the listeners stop: the last dynsec change is saved
	pols := make([]*session.Policy, 0, len(st.listeners))
	for _, l := range st.listeners {
		pols = append(pols, l.Policy)
	}
	broker.SetListenerPolicies(pols) // before the store is loaded
	// A cluster node only with cluster keys: a single node never starts NATS.
	var node clusterNode
	if cfg.Cluster.Enabled() {
		if node, err = newClusterNode(cfg, broker, logger); err != nil {
			fmt.Fprintf(stderr, "Error: %v\n", err)
			return 1
		}
		defer node.Close()
	}
	var db *store.DB
	if cfg.Persistence {
		db, err = openStore(cfg, broker, logger)
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
	// Bridges run beside the broker (none: an empty manager, nothing runs).
	bridges := bridge.NewManager(broker, logger)
	if err := bridge.Check(cfg.Bridges); err != nil {
		fmt.Fprintf(stderr, "Error: %v\n", err)
		return 1
	}
	memStop := make(chan struct{})
	defer close(memStop)
	if cfg.MemoryLimit > 0 {
		sampleMemory(broker, cfg.MemoryLimit) // before the first client is served
		go watchMemory(broker, cfg.MemoryLimit, memStop)
	}
	if node != nil {
		// Listeners open only once the node has joined and loaded the
		// cluster's routes and retained messages.
		if err := node.Start(); err != nil {
			logger.Printf("Error: %v", err)
			return 1
		}
	}
	if cfg.EventLoops > 0 {
		runtime.GOMAXPROCS(cfg.EventLoops)
	}
	srv := loop.New(broker, loop.Config{Loops: cfg.EventLoops, Listen: st.listeners, MaxPacketSize: st.maxPacket,
		ReusePort: st.reusePort, Nagle: st.nagle, WSHeaderLimit: st.wsHeaders, Logger: logger})
	logger.Printf("midge version %s starting", version)
	// Bridges' local sessions exist before the first client can publish,
	// so that nothing published for a remote at start is missed.
	if err := bridges.Apply(cfg.Bridges); err != nil {
		logger.Printf("Error: %v", err)
		return 1
	}
	defer bridges.Stop()
	if err := srv.Start(); err != nil {
		logger.Printf("Error: %v", err)
		return 1
	}
	for _, a := range srv.Addrs() {
		if a.Network() == "unix" {
			logger.Printf("Opening unix listen socket on path %s.", a)
			continue
		}
		logger.Printf("Opening ipv4 listen socket on %s.", a)
	}
	if cfg.MetricsListener != "" { // after Start: it reads the listeners; before dropping privileges: it reads password_file
		ms, err := startMetrics(cfg, broker, srv, bridges, db, logger)
		if err != nil {
			fmt.Fprintf(stderr, "Error: %v\n", err)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(ctx)
			return 1
		}
		defer ms.Close()
	}
	if err := dropPrivileges(cfg, logger); err != nil {
		logger.Printf("Error: %v", err)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = srv.Shutdown(ctx)
		cancel()
		return 1
	}
	stopWatch := make(chan struct{})
	defer close(stopWatch)
	if t := st.logs.topic; t != nil {
		go t.run(func(topic string, payload []byte) { broker.Publish(topic, payload, 0, false) }, stopWatch)
	}
	var notify readyNotifier
	if err := notify.ready(); err != nil {
		logger.Printf("Warning: %v", err)
	}

	sysCtx, stopSys := context.WithCancel(context.Background())
	defer stopSys()
	sp := sys.New(broker, version, st.sysInterval)
	sp.Extra = bridges.SysTopics
	go sp.Run(sysCtx)

	stopped := waitChan(srv)
wait:
	for {
		select {
		case s := <-sig:
			if s == syscall.SIGHUP {
				// Applied first, then logged: once the line is out, the
				// new files are in force (tests wait for it).
				st.reload()
				logger.Printf("Reloading config.")
				reloadBridges(configFile, bridges, logger)
				continue
			}
			logger.Printf("midge version %s terminating (%v)", version, s)
			_ = sdNotify("STOPPING=1")
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

// reloadBridges re-reads the configuration file and applies its bridges
// (added, changed, removed); a file that no longer parses changes nothing.
func reloadBridges(file string, m *bridge.Manager, logger *log.Logger) {
	if file == "" {
		return
	}
	cfg, err := config.Parse(file)
	if err != nil {
		logger.Printf("Error: reload: %v (bridges unchanged)", err)
		return
	}
	if err := m.Apply(cfg.Bridges); err != nil {
		logger.Printf("Error: reload: %v", err)
	}
}

func waitChan(srv *loop.Server) <-chan struct{} {
	ch := make(chan struct{})
	go func() { _ = srv.Wait(); close(ch) }()
	return ch
}

// profileDir is where pkg/profile writes while a profile runs (a temporary
// directory, "" when none): dropPrivileges hands it to the user the broker
// becomes, who writes the heap profile there at stop.
var profileDir string

// startProfiles starts the CPU and/or heap profile with pkg/profile (its
// signal hook off, so that shutdown stays graceful). pkg/profile writes in
// a directory of its own; at stop each profile is copied into exactly the
// file named, opened now, so that a bad path is an error at start and a
// broker that has dropped root can still write it. pkg/profile runs one
// profile at a time, so with both flags the heap profile is written with
// runtime/pprof at stop. (pkg/profile is pinned at v1.6.0: v1.7.0 links
// fgprof and google/pprof, whose code and start-up allocations every idle
// broker paid for: README "Small boards".)
func startProfiles(cpuFile, memFile string) (stop func(), err error) {
	var cpu, mem *os.File
	closeAll := func() {
		for _, f := range []*os.File{cpu, mem} {
			if f != nil {
				f.Close()
			}
		}
	}
	if cpuFile != "" {
		if cpu, err = os.Create(cpuFile); err != nil {
			return nil, err
		}
	}
	if memFile != "" {
		if mem, err = os.Create(memFile); err != nil {
			closeAll()
			return nil, err
		}
	}
	if cpu == nil && mem == nil {
		return func() {}, nil
	}
	dir, err := os.MkdirTemp("", "midge-profile")
	if err != nil {
		closeAll()
		return nil, err
	}
	profileDir = dir
	mode, name, dst := profile.CPUProfile, "cpu.pprof", cpu
	if cpu == nil {
		mode, name, dst = profile.MemProfileRate(4096), "mem.pprof", mem
	} else if mem != nil {
		runtime.MemProfileRate = 4096 // finer than the default 512 KiB
	}
	p := profile.Start(mode, profile.ProfilePath(dir), profile.NoShutdownHook, profile.Quiet)
	return func() {
		p.Stop()
		err := copyFileTo(dst, filepath.Join(dir, name))
		if err == nil && cpu != nil && mem != nil {
			runtime.GC()
			err = pprof.Lookup("heap").WriteTo(mem, 0)
		}
		for _, f := range []*os.File{cpu, mem} {
			if f != nil {
				if cerr := f.Close(); err == nil {
					err = cerr
				}
			}
		}
		if err != nil {
			log.Printf("profile: %v", err)
		}
		os.RemoveAll(dir)
	}, nil
}

// copyFileTo copies the file at src into w.
func copyFileTo(w io.Writer, src string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}

// maxLogLine bounds a log line (with its timestamp and newline) as
// mosquitto's 1,000-byte buffer does: a 64 KiB client id must not make a
// 64 KiB line, which could fill a pipe whose reader waits for the broker to
// exit (mosquitto's 01-connect-575314 test does just that).
const maxLogLine = 1000
