package main

import (
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/midge-mqtt/midge/auth"
	"github.com/midge-mqtt/midge/config"
	"github.com/midge-mqtt/midge/loop"
	"github.com/midge-mqtt/midge/session"
	"github.com/midge-mqtt/midge/store"
)

// setup is a broker's configuration turned into what the packages take.
type setup struct {
	opts        session.Options
	listeners   []loop.Listener
	authz       []*auth.Authorizer      // to reload on SIGHUP
	onBroker    []func(*session.Broker) // auth providers that need the broker (setup_auth.go)
	onClose     []func()                // auth providers to close at shutdown
	logger      *log.Logger
	logFile     *logFile // reopened on SIGHUP
	sysInterval time.Duration
	maxPacket   int
	reusePort   bool // listener_reuseport
	logsNowhere bool // log_dest none (or log_type none): nothing is worth formatting
	nagle       bool // set_tcp_nodelay false
	wsHeaders   int  // websockets_headers_size
	logs        *logRouter
}

// newSetup builds the broker's settings from cfg. ports are -p flags: used
// only when the file configures no listener (mosquitto 2 ignores them
// otherwise), and bound to loopback.
func newSetup(cfg *config.Config, verbose bool, ports []int, stderr io.Writer) (*setup, error) {
	if err := cfg.Unsupported(); err != nil {
		return nil, err
	}
	st := &setup{sysInterval: cfg.SysInterval, maxPacket: cfg.MaxPacketSize, reusePort: cfg.ListenerReusePort,
		nagle: !cfg.SetTCPNoDelay, wsHeaders: cfg.WebsocketsHeadersSize}
	if err := st.openLog(cfg, verbose, stderr); err != nil {
		return nil, err
	}

	o := session.DefaultOptions()
	o.Logger = st.logger
	o.MaxInflight = cfg.MaxInflightMessages
	o.MaxQueuedMessages = cfg.MaxQueuedMessages
	o.MaxQueuedBytes = int(cfg.MaxQueuedBytes)
	o.MaxPacketSize = cfg.MaxPacketSize
	o.MessageSizeLimit = cfg.MessageSizeLimit
	if cfg.MaxKeepalive > 0 && cfg.MaxKeepalive < 65535 { // 65535: no limit, as in mosquitto
		o.MaxKeepalive = uint16(cfg.MaxKeepalive)
	}
	o.RetainAvailable = cfg.RetainAvailable
	o.PersistentExpiry = cfg.PersistentClientExpiration
	o.QueueQoS0 = cfg.QueueQoS0Messages
	o.ClientIDPrefixes = cfg.ClientIDPrefixes
	o.UpgradeOutgoingQoS = cfg.UpgradeOutgoingQoS
	o.MaxInflightBytes = cfg.MaxInflightBytes
	o.CheckRetainSource = cfg.CheckRetainSource
	o.MemoryLimit = cfg.MemoryLimit > 0
	o.ResponseInfoPrefix = cfg.ResponseInfoPrefix
	if st.logs.enabled(config.LogSubscribe) {
		o.SubscribeLog = log.New(typed{st.logs, config.LogSubscribe}, "", 0)
	}
	if st.logs.enabled(config.LogUnsubscribe) {
		o.UnsubscribeLog = log.New(typed{st.logs, config.LogUnsubscribe}, "", 0)
	}
	// A line per connect and disconnect is formatted only if it goes somewhere.
	o.ConnectionMessages = cfg.ConnectionMessages && st.logs.enabled(config.LogNotice)
	global := cfg.Security
	o.AllowZeroLengthID = global.AllowZeroLengthClientID
	o.AutoIDPrefix = global.AutoIDPrefix
	st.opts = o

	// One authorizer per set of security options (shared by listeners
	// without per_listener_settings); one policy per listener.
	authorizers := map[*config.Security]*auth.Authorizer{}
	policyFor := func(l *config.Listener) (*session.Policy, error) {
		sec := cfg.SecurityFor(l)
		a := authorizers[sec]
		if a == nil {
			var err error
			if a, err = st.authorizer(sec); err != nil {
				return nil, err
			}
			authorizers[sec] = a
		}
		return &session.Policy{Auth: a, AllowZeroLengthID: sec.AllowZeroLengthClientID,
			AutoIDPrefix: sec.AutoIDPrefix, MaxTopicAlias: uint16(l.MaxTopicAlias),
			IdentityAsUsername: l.UseIdentityAsUsername || l.UseSubjectAsUsername,
			QoSLimited:         l.MaxQoS < 2, MaxQoS: l.MaxQoS,
			UsernameAsClientID: l.UseUsernameAsClientID, MountPoint: l.MountPoint,
			Control: a.Control(), Listener: strconv.Itoa(l.Port)}, nil
	}

	cfgListeners := cfg.Listeners
	if cfg.LocalOnly && len(ports) > 0 {
		cfgListeners = nil
		for _, p := range ports {
			l := *cfg.Listeners[0]
			l.Port = p
			cfgListeners = append(cfgListeners, &l)
		}
	}
	for _, l := range cfgListeners {
		pol, err := policyFor(l)
		if err != nil {
			return nil, err
		}
		max := l.MaxConnections
		if max < 0 {
			max = 0
		}
		tc, err := listenerTLS(l)
		if err != nil {
			return nil, err
		}
		bind, network, err := listenerBind(l)
		if err != nil {
			return nil, err
		}
		addr := net.JoinHostPort(bind, strconv.Itoa(l.Port))
		if path := l.UnixPath(); path != "" {
			addr, network = path, "unix"
		}
		st.listeners = append(st.listeners, loop.Listener{
			Addr: addr, MaxConnections: max, Policy: pol,
			TLS: tc, WebSocket: l.Protocol == "websockets", HTTPDir: l.HTTPDir, Network: network,
			SubjectIdentity: l.UseSubjectAsUsername})
	}
	if !cfg.PerListenerSettings && len(st.listeners) > 0 {
		// One security for all listeners: the broker's own policy checks
		// what it delivers outside any listener, such as the queues of
		// persistent sessions restored from the store.
		st.opts.Auth = st.listeners[0].Policy.Auth
	}
	return st, nil
}

// storeFile is the file that stands for the store (see openStore):
// persistence_location joined with persistence_file, or midge.db for
// mosquitto's default file name.
func storeFile(cfg *config.Config) string {
	name := cfg.PersistenceFile
	if name == "" || name == "mosquitto.db" {
		name = "midge.db"
	}
	return filepath.Join(cfg.PersistenceLocation, name)
}

// openStore opens the persistence store and loads its state into broker.
// persistence_file names a small file that stands for the store, as
// mosquitto's database file does, and the store itself (an embedded
// database, so a directory) lives beside it with ".d" added: removing the
// file, the way one resets mosquitto (and mosquitto's tests clean up),
// discards the store. mosquitto's default name becomes midge's, so that an
// old mosquitto.db is never mistaken for a midge store; a directory at the
// file's path is the store of an older midge, used as it is.
func openStore(cfg *config.Config, broker *session.Broker, logger *log.Logger) (*store.DB, error) {
	if err := store.Available(); err != nil {
		return nil, fmt.Errorf("persistence: %w", err)
	}
	dir, err := storeDir(storeFile(cfg))
	if err != nil {
		return nil, fmt.Errorf("persistence: %w", err)
	}
	opts := store.Options{Sync: store.SyncAlways, OnDurable: broker.Durable}
	if cfg.PersistenceSync == "interval" {
		opts.Sync, opts.Interval = store.SyncInterval, cfg.AutosaveInterval
		if cfg.AutosaveOnChanges { // autosave_interval counts changes, not seconds
			opts.SyncEvery = int(cfg.AutosaveInterval / time.Second)
		}
	}
	db, err := store.Open(dir, opts)
	if err != nil {
		return nil, fmt.Errorf("persistence: %w", err)
	}
	rep, err := broker.AttachStore(db)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("persistence: loading %s: %w", dir, err)
	}
	for _, line := range rep.Unreadable {
		logger.Printf("Warning: persistence: could not read %s", line)
	}
	logger.Printf("Loaded the store %s: %d sessions, %d retained messages.", dir, broker.Sessions(),
		broker.Stats.RetainedMessages.Load())
	return db, nil
}

// openLog makes the logger log_dest, log_type and log_timestamp describe.
// -v logs every type to the configured destinations.
func (st *setup) openLog(cfg *config.Config, verbose bool, stderr io.Writer) error {
	r := &logRouter{types: cfg.LogTypes, timestamp: cfg.LogTimestamp, tsFormat: cfg.LogTimestampFormat}
	if verbose {
		r.types = config.LogAll
	}
	for _, d := range cfg.LogDests {
		switch d.Kind {
		case "stdout":
			r.streams = append(r.streams, os.Stdout)
		case "stderr":
			r.streams = append(r.streams, stderr)
		case "file":
			f, err := openLogFile(d.Path)
			if err != nil {
				return fmt.Errorf("log_dest file: %w", err)
			}
			st.logFile = f
			r.streams = append(r.streams, f)
		case "syslog":
			r.syslog = newSyslog(cfg.LogFacility)
		case "topic":
			r.topic = newLogTopics()
		default:
			return fmt.Errorf("log_dest %s: not supported", d.Kind)
		}
	}
	st.logs = r
	st.logsNowhere = !r.enabled(config.LogAll)
	st.logger = log.New(r, "", 0)
	return nil
}

// storeMarker starts the file that stands for a store.
const storeMarker = "midge store: the data is in the directory beside this file, with .d added\n"

// storeDir returns the directory of the store that file stands for, making
// file when it is missing (and discarding a directory left without it).
func storeDir(file string) (string, error) {
	fi, err := os.Stat(file)
	switch {
	case err == nil && fi.IsDir():
		return file, nil // an older midge's layout
	case err == nil:
		b, err := os.ReadFile(file)
		if err != nil {
			return "", err
		}
		if !strings.HasPrefix(string(b), storeMarker) {
			return "", fmt.Errorf("%s is not a midge store (a mosquitto database?)", file)
		}
		return file + ".d", nil
	case !errors.Is(err, os.ErrNotExist):
		return "", err
	}
	dir := file + ".d"
	if err := os.RemoveAll(dir); err != nil { // its file was removed: so is the store
		return "", err
	}
	if err := os.WriteFile(file, []byte(storeMarker), 0o600); err != nil {
		return "", err
	}
	return dir, nil
}

// listenerBind is the address and network a listener binds: bind_interface
// (the interface's first address of the right family) over the listener's
// address, and socket_domain's IP version.
func listenerBind(l *config.Listener) (bind, network string, err error) {
	bind, network = l.Bind, "tcp"
	switch l.SocketDomain {
	case "ipv4":
		network = "tcp4"
	case "ipv6":
		network = "tcp6"
	}
	if l.BindInterface == "" {
		return bind, network, nil
	}
	ifi, err := net.InterfaceByName(l.BindInterface)
	if err != nil {
		return "", "", fmt.Errorf("%s: bind_interface %s: %w", l.Pos, l.BindInterface, err)
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return "", "", fmt.Errorf("%s: bind_interface %s: %w", l.Pos, l.BindInterface, err)
	}
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok || ipn.IP.IsLinkLocalUnicast() {
			continue
		}
		v4 := ipn.IP.To4() != nil
		switch {
		case network == "tcp4" && !v4, network == "tcp6" && v4:
			continue
		case network == "tcp" && !v4 && hasIPv4(addrs):
			continue // IPv4 first when both are allowed
		}
		return ipn.IP.String(), network, nil
	}
	return "", "", fmt.Errorf("%s: bind_interface %s: no address for this socket_domain", l.Pos, l.BindInterface)
}

func hasIPv4(addrs []net.Addr) bool {
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
			return true
		}
	}
	return false
}

// reload reopens the log file and re-reads password and ACL files
// (SIGHUP), as mosquitto does.
func (st *setup) reload() {
	if st.logFile != nil {
		if err := st.logFile.Reopen(); err != nil {
			st.logger.Printf("Error: reload: log_dest file: %v (logging on in the old file)", err)
		}
	}
	for _, a := range st.authz {
		if err := a.Reload(); err != nil {
			st.logger.Printf("Error: reload: %v (keeping the previous files)", err)
		}
	}
}
