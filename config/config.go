// Package config reads mosquitto.conf: the same keys, defaults and
// validation as mosquitto 2.0, so that `midge -c mosquitto.conf` starts from
// a user's existing file. Keys whose feature midge has not built yet are
// parsed, validated and recorded; Unsupported reports them so that the broker
// refuses to start rather than silently ignore them.
package config

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Pos is where a setting was read.
type Pos struct {
	File string
	Line int
}

func (p Pos) String() string { return fmt.Sprintf("%s:%d", p.File, p.Line) }

// Error is a configuration error: file, line, key and what is wrong.
type Error struct {
	Pos
	Key string // empty when the line has no usable key
	Msg string
}

func (e *Error) Error() string {
	if e.Key == "" {
		return fmt.Sprintf("%s: %s", e.Pos, e.Msg)
	}
	return fmt.Sprintf("%s: %s: %s", e.Pos, e.Key, e.Msg)
}

// Config is a parsed configuration. Durations are zero when "never" or
// "disabled", as the comments say.
type Config struct {
	// Listeners in the order mosquitto opens them: `listener` blocks in file
	// order, then the default listener when `port`, `bind_address` or
	// another listener key was given before the first `listener` line.
	Listeners []*Listener
	// LocalOnly is true when the file configures no listener: mosquitto 2
	// then listens on 127.0.0.1:1883 only and allows anonymous clients.
	LocalOnly bool

	// PerListenerSettings: when true, each listener's Security applies;
	// when false, Security below applies to all listeners.
	PerListenerSettings bool
	Security            Security

	MaxInflightMessages int   // 0: no limit; default 20
	MaxQueuedMessages   int   // 0: no limit; default 1000
	MaxQueuedBytes      int64 // 0: no limit
	MaxPacketSize       int   // 0: no limit, else >= 20
	MessageSizeLimit    int   // 0: no limit
	MaxKeepalive        int   // seconds, 10..65535; default 65535
	RetainAvailable     bool  // default true
	// PersistentClientExpiration: 0 means persistent sessions never expire.
	PersistentClientExpiration time.Duration
	SysInterval                time.Duration // 0 disables $SYS; default 10s

	LogTypes           LogType // default Error|Warning|Notice|Information
	LogDests           []LogDest
	LogTimestamp       bool   // default true
	LogTimestampFormat string // strftime format; empty: seconds since epoch
	ConnectionMessages bool   // default true

	Persistence         bool
	PersistenceLocation string
	PersistenceFile     string        // default "mosquitto.db"
	AutosaveInterval    time.Duration // default 30m; 0: only on exit
	// PersistenceSync is midge's own persistence_sync: "always" (default):
	// a QoS 1/2 message is acknowledged once synced to disk; "interval": once
	// written, with a sync every autosave_interval.
	PersistenceSync string

	// ListenerReusePort is midge's own listener_reuseport (default true):
	// each event loop accepts on its own SO_REUSEPORT socket (a faster
	// connect rate). The broker first binds each address without
	// SO_REUSEPORT and refuses to start if that fails, so a second broker
	// on the same port still fails with "address in use".
	ListenerReusePort bool

	// MetricsListener is midge's own: an address for Prometheus /metrics.
	MetricsListener string
	// EventLoops is midge's own: the number of event loops, and of threads
	// running Go code (GOMAXPROCS); 0 is one per core. 1 suits a
	// single-core board.
	EventLoops int
	// MetricsUser is midge's own: the user of password_file whose
	// credentials the metrics listener (dashboard, /metrics, pprof) asks
	// for. Required when MetricsListener is not on loopback.
	MetricsUser string

	Bridges []*Bridge // `connection` blocks, in file order (config/bridge.go)

	PidFile string // pid_file: written at start, removed at stop
	// User is whom a broker started as root becomes once its sockets are
	// bound (default "mosquitto", or "nobody" when that user is missing).
	User    string
	UserSet bool
	// SetTCPNoDelay is set_tcp_nodelay. midge's default is true (mosquitto's
	// is false): it batches its writes per loop turn, so Nagle's algorithm
	// only adds delay; `set_tcp_nodelay false` turns Nagle on.
	SetTCPNoDelay         bool
	MemoryLimit           int64 // memory_limit, bytes of heap (0: no limit)
	MaxInflightBytes      int   // max_inflight_bytes (0: no limit)
	UpgradeOutgoingQoS    bool  // upgrade_outgoing_qos
	CheckRetainSource     bool  // check_retain_source (default true)
	AutosaveOnChanges     bool  // autosave_on_changes: autosave_interval counts changes
	QueueQoS0Messages     bool  // queue_qos0_messages
	ClientIDPrefixes      string
	LogFacility           int // log_facility N: syslog's local N; -1 (default): daemon
	WebsocketsHeadersSize int // websockets_headers_size (0: 1024, as libwebsockets)
	WebsocketsLogLevel    int // websockets_log_level
	PSKFile               string
	// ResponseInfoPrefix is midge's own response_information_prefix: v5
	// clients asking for Response Information get it followed by their
	// client id ("": none, as mosquitto).
	ResponseInfoPrefix string

	// Notices are one log line each for settings midge reads but serves
	// differently from mosquitto (OpenSSL-only options Go's TLS has no use
	// for); the broker logs them at start.
	Notices []string

	// Cluster is midge's own cluster_* keys (keys_cluster.go).
	Cluster Cluster

	uses []use // settings whose feature may not be built yet
}

// Listener is one `listener` block (or the default listener).
type Listener struct {
	Pos            Pos    // the `listener` line; for the default listener, its first key
	Port           int    // 1..65535; 0 only in midge: pick a free port
	Bind           string // address or host; empty: all interfaces
	Protocol       string // "mqtt" or "websockets"
	MaxConnections int    // -1: unlimited
	MountPoint     string
	MaxTopicAlias  int // default 10

	CAFile, CAPath, CertFile, KeyFile string
	CRLFile                           string // revoked client certificates (PEM or DER)
	Ciphers                           string
	TLSVersion                        string // "", "tlsv1.1", "tlsv1.2", "tlsv1.3"
	RequireCertificate                bool
	UseIdentityAsUsername             bool
	UseSubjectAsUsername              bool

	MaxQoS                byte   // max_qos (default 2)
	UseUsernameAsClientID bool   // use_username_as_clientid
	HTTPDir               string // http_dir: static files on a websockets listener
	SocketDomain          string // "", "ipv4" or "ipv6"
	BindInterface         string // bind_interface: the interface's address is the bind address

	// Security applies when Config.PerListenerSettings is true.
	Security Security

	isDefault bool
	keys      int // how many keys configured this listener
}

// ReloadedFiles are the files the broker reads again on SIGHUP (password
// and ACL files).
func (c *Config) ReloadedFiles() []string {
	var fs []string
	add := func(s *Security) {
		for _, f := range []string{s.PasswordFile, s.ACLFile} {
			if f != "" {
				fs = append(fs, f)
			}
		}
	}
	add(&c.Security)
	if c.PerListenerSettings {
		for _, l := range c.Listeners {
			add(&l.Security)
		}
	}
	return fs
}

// UnixPath is the socket path of a Unix domain socket listener (mosquitto's
// `listener 0 PATH`), or "".
func (l *Listener) UnixPath() string {
	if l.Port == 0 && strings.Contains(l.Bind, "/") {
		return l.Bind
	}
	return ""
}

// TLS reports whether the listener serves TLS (certfile and keyfile set).
func (l *Listener) TLS() bool { return l.CertFile != "" }

// Security is the set of options that per_listener_settings moves between the
// global scope and each listener.
type Security struct {
	AllowAnonymous          bool
	PasswordFile            string
	ACLFile                 string
	AllowZeroLengthClientID bool      // default true
	AutoIDPrefix            string    // default "auto-"
	Plugins                 []*Plugin // plugin / auth_plugin lines, in order (keys_auth.go)
	// AllowSpecialChars is auth_plugin_deny_special_chars false: an
	// auth_plugin (go-auth) is asked about clients whose username or client
	// id holds '+' or '#' too, rather than refusing them every topic.
	AllowSpecialChars bool

	anonymousSet bool
}

// SecurityFor returns the security options that apply to clients of l.
func (c *Config) SecurityFor(l *Listener) *Security {
	if c.PerListenerSettings {
		return &l.Security
	}
	return &c.Security
}

// LogType is a set of log_type values.
type LogType uint16

const (
	LogDebug LogType = 1 << iota
	LogError
	LogWarning
	LogNotice
	LogInformation
	LogSubscribe
	LogUnsubscribe
	LogWebsockets
	LogNone LogType = 0
	LogAll  LogType = LogWebsockets<<1 - 1
)

var logTypeNames = map[string]LogType{
	"debug": LogDebug, "error": LogError, "warning": LogWarning, "notice": LogNotice,
	"information": LogInformation, "subscribe": LogSubscribe, "unsubscribe": LogUnsubscribe,
	"websockets": LogWebsockets, "none": LogNone, "all": LogAll,
}

// LogDest is one log_dest: Kind is "stdout", "stderr", "file" (with Path),
// "syslog", "topic" or "dlt". `log_dest none` leaves LogDests empty.
type LogDest struct {
	Kind string
	Path string
}

func defaultSecurity() Security {
	return Security{AllowZeroLengthClientID: true, AutoIDPrefix: "auto-"}
}

func defaultListener() *Listener {
	return &Listener{Protocol: "mqtt", MaxConnections: -1, MaxTopicAlias: 10, MaxQoS: 2, Security: defaultSecurity()}
}

func newConfig() *Config {
	return &Config{
		Security:            defaultSecurity(),
		MaxInflightMessages: 20,
		MaxQueuedMessages:   1000,
		MaxKeepalive:        65535,
		RetainAvailable:     true,
		SysInterval:         10 * time.Second,
		LogTypes:            LogError | LogWarning | LogNotice | LogInformation,
		LogDests:            []LogDest{{Kind: "stderr"}},
		LogTimestamp:        true,
		ConnectionMessages:  true,
		PersistenceFile:     "mosquitto.db",
		AutosaveInterval:    1800 * time.Second,
		PersistenceSync:     "always",
		ListenerReusePort:   true,
		User:                "mosquitto",
		SetTCPNoDelay:       true,
		CheckRetainSource:   true,
		LogFacility:         -1,
	}
}

// Default is mosquitto 2's configuration with no config file: one listener on
// 127.0.0.1:1883, anonymous clients allowed.
func Default() *Config {
	c := newConfig()
	c.finish()
	return c
}

// finish applies the defaults that depend on the whole file.
func (c *Config) finish() {
	if len(c.Listeners) == 0 {
		l := defaultListener()
		l.Port, l.Bind, l.isDefault = 1883, "127.0.0.1", true
		l.Security.AllowAnonymous = true
		c.Listeners = []*Listener{l}
		c.LocalOnly = true
		// mosquitto 2: local-only mode allows anonymous clients whatever
		// the file says.
		c.Security.AllowAnonymous = true
		return
	}
	// With a listener configured, anonymous access is off unless set.
	for _, l := range c.Listeners {
		if l.Port == 0 && l.isDefault {
			l.Port = 1883
		}
		if !l.Security.anonymousSet {
			// mosquitto 2.0.11 leaves anonymous access on for the default
			// listener (`port`/`bind_address`) under per_listener_settings;
			// midge does so only while nothing there checks clients (it
			// does even with a password_file).
			sec := &l.Security
			l.Security.AllowAnonymous = c.PerListenerSettings && l.isDefault &&
				sec.PasswordFile == "" && sec.ACLFile == "" && len(sec.Plugins) == 0
		}
	}
	if !c.Security.anonymousSet {
		c.Security.AllowAnonymous = false
	}
}

// Feature is something a setting turns on that midge may not have built yet.
type Feature string

const (
	FeaturePersistence Feature = "persistence"
	FeatureTLS         Feature = "TLS listeners"
	FeatureWebsockets  Feature = "WebSocket listeners"
	FeatureMountPoint  Feature = "mount points"
	FeatureUnixSocket  Feature = "Unix socket listeners"
	FeatureLogSyslog   Feature = "logging to syslog"
	FeatureLogTopic    Feature = "logging to $SYS topics"
	FeatureLogDLT      Feature = "logging to DLT"
)

// NotBuilt lists the features the broker cannot serve yet. Delete an entry
// when its feature lands; Unsupported then stops refusing its settings.
var NotBuilt = map[Feature]bool{
	FeatureLogDLT: true,
}

type use struct {
	pos     Pos
	key     string
	feature Feature
}

// Unsupported returns an error naming file:line:key for every setting in use
// whose feature is in NotBuilt, or nil. The broker calls it before starting.
func (c *Config) Unsupported() error {
	var errs []error
	for _, u := range c.uses {
		if NotBuilt[u.feature] {
			errs = append(errs, &Error{Pos: u.pos, Key: u.key, Msg: "not supported yet (" + string(u.feature) + ")"})
		}
	}
	return errors.Join(errs...)
}
