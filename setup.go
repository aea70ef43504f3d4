package main

import (
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"path/filepath"
	"strconv"
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
	authz       []*auth.Authorizer // to reload on SIGHUP
	logger      *log.Logger
	logFile     *os.File
	sysInterval time.Duration
	maxPacket   int
	reusePort   bool // listener_reuseport
	logsNowhere bool // log_dest none (or log_type none): nothing is worth formatting
}

// newSetup builds the broker's settings from cfg. ports are -p flags: used
// only when the file configures no listener (mosquitto 2 ignores them
// otherwise), and bound to loopback.
func newSetup(cfg *config.Config, verbose bool, ports []int, stderr io.Writer) (*setup, error) {
	if err := cfg.Unsupported(); err != nil {
		return nil, err
	}
	st := &setup{sysInterval: cfg.SysInterval, maxPacket: cfg.MaxPacketSize, reusePort: cfg.ListenerReusePort}
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
	// A line per connect and disconnect is formatted only if it goes somewhere.
	o.ConnectionMessages = cfg.ConnectionMessages && (verbose || cfg.LogTypes&config.LogNotice != 0) && !st.logsNowhere
	global := cfg.Security
	o.AllowZeroLengthID = global.AllowZeroLengthClientID
	o.AutoIDPrefix = global.AutoIDPrefix
	st.opts = o

	type policyKey struct {
		sec      *config.Security
		identity bool // use_identity_as_username is per listener
	}
	policies := map[policyKey]*session.Policy{}
	policyFor := func(l *config.Listener) (*session.Policy, error) {
		sec := cfg.SecurityFor(l)
		key := policyKey{sec, l.UseIdentityAsUsername}
		if p := policies[key]; p != nil {
			return p, nil
		}
		a, err := auth.NewAuthorizer(sec.AllowAnonymous, sec.PasswordFile, sec.ACLFile)
		if err != nil {
			return nil, err
		}
		st.authz = append(st.authz, a)
		p := &session.Policy{Auth: a, AllowZeroLengthID: sec.AllowZeroLengthClientID,
			AutoIDPrefix: sec.AutoIDPrefix, MaxTopicAlias: uint16(l.MaxTopicAlias),
			IdentityAsUsername: l.UseIdentityAsUsername}
		policies[key] = p
		return p, nil
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
		st.listeners = append(st.listeners, loop.Listener{
			Addr: net.JoinHostPort(l.Bind, strconv.Itoa(l.Port)), MaxConnections: max, Policy: pol,
			TLS: tc, WebSocket: l.Protocol == "websockets"})
	}
	if !cfg.PerListenerSettings && len(st.listeners) > 0 {
		// One security for all listeners: the broker's own policy checks
		// what it delivers outside any listener, such as the queues of
		// persistent sessions restored from the store.
		st.opts.Auth = st.listeners[0].Policy.Auth
	}
	return st, nil
}

// openStore opens the persistence store and loads its state into broker.
// The store is a directory (an embedded database), so it is named after
// persistence_file with midge's name when that is mosquitto's default, so
// that an old mosquitto.db file is never mistaken for it.
func openStore(cfg *config.Config, broker *session.Broker, logger *log.Logger) (*store.DB, error) {
	name := cfg.PersistenceFile
	if name == "" || name == "mosquitto.db" {
		name = "midge.db"
	}
	dir := filepath.Join(cfg.PersistenceLocation, name)
	if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
		return nil, fmt.Errorf("persistence: %s is a file, not a midge store directory", dir)
	}
	opts := store.Options{Sync: store.SyncAlways, OnDurable: broker.Durable}
	if cfg.PersistenceSync == "interval" {
		opts.Sync, opts.Interval = store.SyncInterval, cfg.AutosaveInterval
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
// -v logs everything to the configured destinations.
func (st *setup) openLog(cfg *config.Config, verbose bool, stderr io.Writer) error {
	var ws []io.Writer
	for _, d := range cfg.LogDests {
		switch d.Kind {
		case "stdout":
			ws = append(ws, os.Stdout)
		case "stderr":
			ws = append(ws, stderr)
		case "file":
			f, err := os.OpenFile(d.Path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
			if err != nil {
				return fmt.Errorf("log_dest file: %w", err)
			}
			st.logFile = f
			ws = append(ws, f)
		case "none":
		default:
			return fmt.Errorf("log_dest %s: not supported yet", d.Kind)
		}
	}
	var w io.Writer = io.Discard
	switch {
	case len(ws) == 1:
		w = ws[0]
	case len(ws) > 1:
		w = io.MultiWriter(ws...)
	}
	if cfg.LogTypes == config.LogNone && !verbose {
		w = io.Discard
	}
	st.logsNowhere = w == io.Discard
	if cfg.LogTimestamp {
		w = timestampWriter{w}
	}
	st.logger = log.New(w, "", 0)
	return nil
}

// reload re-reads password and ACL files (SIGHUP), as mosquitto does.
func (st *setup) reload() {
	for _, a := range st.authz {
		if err := a.Reload(); err != nil {
			st.logger.Printf("Error: reload: %v (keeping the previous files)", err)
		}
	}
}
