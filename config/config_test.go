package config

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestDefault(t *testing.T) {
	c := Default()
	if len(c.Listeners) != 1 || c.Listeners[0].Port != 1883 || c.Listeners[0].Bind != "127.0.0.1" {
		t.Fatalf("default listeners: %+v", c.Listeners)
	}
	l := c.Listeners[0]
	if !c.LocalOnly || !c.SecurityFor(l).AllowAnonymous || l.Protocol != "mqtt" || l.MaxConnections != -1 || l.MaxTopicAlias != 10 {
		t.Fatalf("default listener: %+v", l)
	}
	want := struct {
		inflight, queued, keepalive int
		sys, autosave               time.Duration
		retain, ts, conn, zeroLen   bool
		logs                        LogType
		prefix, dbfile, sync        string
		reusePort                   bool
	}{20, 1000, 65535, 10 * time.Second, 30 * time.Minute, true, true, true, true,
		LogError | LogWarning | LogNotice | LogInformation, "auto-", "mosquitto.db", "always", true}
	got := want
	got.inflight, got.queued, got.keepalive = c.MaxInflightMessages, c.MaxQueuedMessages, c.MaxKeepalive
	got.sys, got.autosave, got.retain, got.ts = c.SysInterval, c.AutosaveInterval, c.RetainAvailable, c.LogTimestamp
	got.conn, got.zeroLen, got.logs = c.ConnectionMessages, c.Security.AllowZeroLengthClientID, c.LogTypes
	got.prefix, got.dbfile, got.sync = c.Security.AutoIDPrefix, c.PersistenceFile, c.PersistenceSync
	got.reusePort = c.ListenerReusePort
	if got != want {
		t.Fatalf("defaults: got %+v\nwant %+v", got, want)
	}
	if !reflect.DeepEqual(c.LogDests, []LogDest{{Kind: "stderr"}}) || c.Unsupported() != nil {
		t.Fatalf("log dests %v, unsupported %v", c.LogDests, c.Unsupported())
	}
}

func TestParseValid(t *testing.T) {
	cases := []struct {
		name  string
		file  string
		check func(t *testing.T, c *Config)
	}{
		{"empty file is local only", "# nothing\n\n", func(t *testing.T, c *Config) {
			if !c.LocalOnly || len(c.Listeners) != 1 || !c.Security.AllowAnonymous {
				t.Fatalf("%+v", c)
			}
		}},
		{"local only allows anonymous whatever the file says", "allow_anonymous false\npassword_file /x\n", func(t *testing.T, c *Config) {
			if !c.LocalOnly || !c.Security.AllowAnonymous || c.Security.PasswordFile != "/x" {
				t.Fatalf("%+v", c.Security)
			}
		}},
		{"a listener turns anonymous off", "listener 1884\n", func(t *testing.T, c *Config) {
			l := c.Listeners[0]
			if c.LocalOnly || l.Port != 1884 || l.Bind != "" || c.SecurityFor(l).AllowAnonymous {
				t.Fatalf("%+v %+v", c, l)
			}
		}},
		{"globals and listeners", `
listener 1883 127.0.0.1
max_connections 10
protocol mqtt
listener 8883
max_topic_alias 0
allow_anonymous true
password_file /etc/pw
acl_file /etc/acl
allow_zero_length_clientid false
auto_id_prefix x-
max_inflight_messages 0
max_queued_messages 5
max_queued_bytes 1048576
max_packet_size 20
message_size_limit 268435455
max_keepalive 10
retain_available 0
persistent_client_expiration 14d
sys_interval 0
log_timestamp false
log_timestamp_format %Y-%m-%dT%H:%M:%S
connection_messages false
persistence false
persistence_location /var/lib/midge/
persistence_file m.db
autosave_interval 60
persistence_sync interval
metrics_listener 127.0.0.1:9100
listener_reuseport false
event_loops 1
metrics_user ops
`, func(t *testing.T, c *Config) {
			if len(c.Listeners) != 2 {
				t.Fatalf("listeners %+v", c.Listeners)
			}
			a, b := c.Listeners[0], c.Listeners[1]
			if a.Port != 1883 || a.Bind != "127.0.0.1" || a.MaxConnections != 10 || a.Pos.Line != 2 {
				t.Fatalf("first listener %+v", a)
			}
			if b.Port != 8883 || b.MaxTopicAlias != 0 || b.MaxConnections != -1 {
				t.Fatalf("second listener %+v", b)
			}
			s := c.SecurityFor(b)
			if s != &c.Security || !s.AllowAnonymous || s.PasswordFile != "/etc/pw" || s.ACLFile != "/etc/acl" ||
				s.AllowZeroLengthClientID || s.AutoIDPrefix != "x-" {
				t.Fatalf("security %+v", s)
			}
			if c.MaxInflightMessages != 0 || c.MaxQueuedMessages != 5 || c.MaxQueuedBytes != 1<<20 ||
				c.MaxPacketSize != 20 || c.MessageSizeLimit != 268435455 || c.MaxKeepalive != 10 ||
				c.RetainAvailable || c.PersistentClientExpiration != 14*24*time.Hour || c.SysInterval != 0 ||
				c.LogTimestamp || c.LogTimestampFormat != "%Y-%m-%dT%H:%M:%S" || c.ConnectionMessages ||
				c.Persistence || c.PersistenceLocation != "/var/lib/midge/" || c.PersistenceFile != "m.db" ||
				c.AutosaveInterval != time.Minute || c.PersistenceSync != "interval" || c.MetricsListener != "127.0.0.1:9100" ||
				c.ListenerReusePort || c.EventLoops != 1 || c.MetricsUser != "ops" {
				t.Fatalf("globals %+v", c)
			}
			if err := c.Unsupported(); err != nil {
				t.Fatal(err)
			}
		}},
		{"per listener settings", `
per_listener_settings true
listener 1883
password_file /a
listener 1884
allow_anonymous true
acl_file /b
`, func(t *testing.T, c *Config) {
			a, b := c.SecurityFor(c.Listeners[0]), c.SecurityFor(c.Listeners[1])
			if a.PasswordFile != "/a" || a.AllowAnonymous || b.PasswordFile != "" || !b.AllowAnonymous || b.ACLFile != "/b" {
				t.Fatalf("%+v %+v", a, b)
			}
		}},
		{"default listener from port and bind_address, opened last", `
listener 1884
port 1999
bind_address 10.0.0.1
`, func(t *testing.T, c *Config) {
			if len(c.Listeners) != 2 || c.Listeners[1].Port != 1999 || c.Listeners[1].Bind != "10.0.0.1" || c.Listeners[1].Pos.Line != 3 {
				t.Fatalf("%+v", c.Listeners)
			}
		}},
		{"listener keys before any listener make the default listener", "max_connections 5\n", func(t *testing.T, c *Config) {
			if c.LocalOnly || len(c.Listeners) != 1 || c.Listeners[0].Port != 1883 || c.Listeners[0].MaxConnections != 5 || c.Security.AllowAnonymous {
				t.Fatalf("%+v %+v", c, c.Listeners[0])
			}
		}},
		{"log types and destinations", `
log_type error
log_type subscribe
log_dest none
log_dest stdout
log_dest file /var/log/midge.log
`, func(t *testing.T, c *Config) {
			if c.LogTypes != LogError|LogSubscribe {
				t.Fatalf("log types %b", c.LogTypes)
			}
			want := []LogDest{{Kind: "stdout"}, {Kind: "file", Path: "/var/log/midge.log"}}
			if !reflect.DeepEqual(c.LogDests, want) {
				t.Fatalf("log dests %v", c.LogDests)
			}
		}},
		{"log_type all and none", "log_type none\nlog_type all\n", func(t *testing.T, c *Config) {
			if c.LogTypes != LogAll {
				t.Fatalf("%b", c.LogTypes)
			}
		}},
		{"durations", "persistent_client_expiration 1y\n", func(t *testing.T, c *Config) {
			if c.PersistentClientExpiration != 365*24*time.Hour {
				t.Fatal(c.PersistentClientExpiration)
			}
		}},
		{"tabs, CRLF and padding", "listener\t1883  \r\n  max_queued_messages   7\r\n", func(t *testing.T, c *Config) {
			if c.Listeners[0].Port != 1883 || c.MaxQueuedMessages != 7 {
				t.Fatalf("%+v", c)
			}
		}},
		{"paths keep spaces", "password_file /etc/my dir/pw\n", func(t *testing.T, c *Config) {
			if c.Security.PasswordFile != "/etc/my dir/pw" {
				t.Fatal(c.Security.PasswordFile)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := ParseReader("midge.conf", strings.NewReader(c.file))
			if err != nil {
				t.Fatal(err)
			}
			c.check(t, cfg)
		})
	}
}

// invalidCases are refused with an exact message. mosquitto marks the cases
// Debian's mosquitto 2.0.11 refuses too (checked by TestMosquittoRefusesToo);
// the others are where midge is stricter than mosquitto's atoi.
var invalidCases = []struct {
	name      string
	file      string
	want      string
	mosquitto bool
}{
	{"not a number", "max_queued_messages x\n", `midge.conf:1: max_queued_messages: expected a non-negative integer, got "x"`, false},
	{"negative", "\n\nmax_queued_messages -5\n", `midge.conf:3: max_queued_messages: expected a non-negative integer, got "-5"`, false},
	{"missing value", "max_queued_messages\n", `midge.conf:1: max_queued_messages: missing value`, true},
	{"extra value", "max_queued_messages 5 6\n", `midge.conf:1: max_queued_messages: expected one value, got "5 6"`, false},
	{"queued bytes", "max_queued_bytes -1\n", `midge.conf:1: max_queued_bytes: expected a non-negative integer, got "-1"`, false},
	{"inflight too big", "max_inflight_messages 70000\n", `midge.conf:1: max_inflight_messages: expected an integer from 0 to 65535, got "70000"`, true},
	{"packet size below 20", "max_packet_size 10\n", `midge.conf:1: max_packet_size: expected an integer from 20 to 268435460, got "10"`, true},
	{"packet size 0", "max_packet_size 0\n", `midge.conf:1: max_packet_size: expected an integer from 20 to 268435460, got "0"`, true},
	{"message size limit", "message_size_limit 300000000\n", `midge.conf:1: message_size_limit: expected an integer from 0 to 268435455, got "300000000"`, true},
	{"keepalive below 10", "max_keepalive 5\n", `midge.conf:1: max_keepalive: expected an integer from 10 to 65535, got "5"`, true},
	{"keepalive too big", "max_keepalive 70000\n", `midge.conf:1: max_keepalive: expected an integer from 10 to 65535, got "70000"`, true},
	{"topic alias", "max_topic_alias 70000\n", `midge.conf:1: max_topic_alias: expected an integer from 0 to 65535, got "70000"`, true},
	{"sys interval", "sys_interval -1\n", `midge.conf:1: sys_interval: expected an integer from 0 to 65535, got "-1"`, true},
	{"autosave", "autosave_interval -1\n", `midge.conf:1: autosave_interval: expected a non-negative integer, got "-1"`, false},
	{"persistence sync", "persistence_sync sometimes\n", `midge.conf:1: persistence_sync: expected always or interval, got "sometimes"`, false},
	{"persistence sync missing", "persistence_sync\n", `midge.conf:1: persistence_sync: missing value`, false},
	{"bool", "retain_available yes\n", `midge.conf:1: retain_available: expected true or false, got "yes"`, true},
	{"expiration seconds", "persistent_client_expiration 5s\n", `midge.conf:1: persistent_client_expiration: expected a duration like 2h, 14d, 1w, 1m or 1y, got "5s"`, true},
	{"expiration zero", "persistent_client_expiration 0d\n", `midge.conf:1: persistent_client_expiration: expected a duration like 2h, 14d, 1w, 1m or 1y, got "0d"`, true},
	{"expiration no unit", "persistent_client_expiration 2\n", `midge.conf:1: persistent_client_expiration: expected a duration like 2h, 14d, 1w, 1m or 1y, got "2"`, true},
	{"protocol", "listener 1883\nprotocol foo\n", `midge.conf:2: protocol: expected mqtt or websockets, got "foo"`, true},
	{"listener port", "listener 70000\n", `midge.conf:1: listener: expected a port from 1 to 65535, got "70000"`, true},
	{"listener words", "listener 1883 a b\n", `midge.conf:1: listener: expected PORT [BIND_ADDRESS], got "1883 a b"`, false},
	{"port", "port 0\n", `midge.conf:1: port: expected an integer from 1 to 65535, got "0"`, true},
	{"log type", "log_type foo\n", `midge.conf:1: log_type: expected debug, error, warning, notice, information, subscribe, unsubscribe, websockets, none or all, got "foo"`, true},
	{"log dest", "log_dest printer\n", `midge.conf:1: log_dest: expected stdout, stderr, file PATH, syslog, topic, dlt or none, got "printer"`, true},
	{"log dest file twice", "log_dest file /a\nlog_dest file /b\n", `midge.conf:2: log_dest: only one file destination may be configured`, true},
	{"log dest file path", "log_dest file\n", `midge.conf:1: log_dest: file needs a path`, false},
	{"tls version", "listener 8883\ntls_version tlsv1.0\n", `midge.conf:2: tls_version: expected tlsv1.1, tlsv1.2 or tlsv1.3, got "tlsv1.0"`, false},
	{"per_listener_settings late", "allow_anonymous true\nper_listener_settings true\n", "midge.conf:2: per_listener_settings: must be set before any other security setting (the first is at midge.conf:1)", true},
	{"certfile alone", "listener 8883\ncertfile /c.pem\n", "midge.conf:1: listener: certfile and keyfile must be given together", false},
	{"require_certificate without CA", "listener 8883\ncertfile /c\nkeyfile /k\nrequire_certificate true\n", "midge.conf:1: listener: require_certificate needs cafile or capath", false},
	{"crlfile without require_certificate", "listener 8883\ncertfile /c\nkeyfile /k\ncafile /ca\ncrlfile /crl\n", "midge.conf:1: listener: crlfile needs require_certificate true", false},
	{"same socket twice", "listener 0 /run/m.sock\nlistener 0 /run/m.sock\n", "midge.conf:2: listener: socket /run/m.sock is also configured at midge.conf:1", false},
	{"same listener twice", "listener 1883\nlistener 1883\n", "midge.conf:2: listener: listener :1883 is also configured at midge.conf:1", false},
	{"default listener clashes", "max_connections 5\nlistener 1883\n", "midge.conf:1: listener: listener :1883 (the default listener, from keys before the first `listener` line) is also configured at midge.conf:2", false},
	{"listener reuseport", "listener_reuseport yes\n", `midge.conf:1: listener_reuseport: expected true or false, got "yes"`, false},
	{"event loops", "event_loops -1\n", `midge.conf:1: event_loops: expected an integer from 0 to 1024, got "-1"`, false},
	{"metrics listener", "metrics_listener localhost\n", `midge.conf:1: metrics_listener: expected HOST:PORT, got "localhost"`, false},
	{"mount point wildcard", "listener 1\nmount_point a/+/\n", `midge.conf:2: mount_point: must not contain '+' or '#', got "a/+/"`, false},
	{"unknown key", "foo_bar 1\n", `midge.conf:1: unknown configuration key "foo_bar"`, true},
	{"plugin option without a plugin", "auth_opt_db x\n", `midge.conf:1: auth_opt_db: an option with no plugin (or auth_plugin) line before it`, false},
	{"plugin not served", "plugin /usr/lib/x.so\n", `midge.conf:1: plugin: plugin "/usr/lib/x.so" is not supported by midge (it serves mosquitto_dynamic_security, go-auth's http and files backends, mosquitto_password_file and mosquitto_acl_file natively; no shared object is loaded)`, false},
	{"psk listener", "listener 8884\npsk_hint hint\n", `midge.conf:2: psk_hint: a TLS-PSK listener cannot be served: Go's TLS has no PSK cipher suites, and serving this listener without PSK would change who may connect`, false},
	{"engine key", "tls_keyform engine\n", `midge.conf:1: tls_keyform: a key held in an OpenSSL engine cannot be loaded by Go's TLS: use a PEM keyfile (tls_keyform pem)`, false},
	{"max qos", "max_qos 3\n", `midge.conf:1: max_qos: expected an integer from 0 to 2, got "3"`, false},
	{"socket domain", "socket_domain ipv5\n", `midge.conf:1: socket_domain: expected ipv4 or ipv6, got "ipv5"`, false},
	{"log facility", "log_facility 8\n", `midge.conf:1: log_facility: expected an integer from 0 to 7, got "8"`, false},
	{"user", "user a b\n", `midge.conf:1: user: expected one value, got "a b"`, false},
}

// TestParseMoreKeys: the keys of mosquitto.conf(5) beyond the core set,
// each at a value, land in the configuration.
func TestParseMoreKeys(t *testing.T) {
	file := `pid_file /run/m.pid
user nobody
set_tcp_nodelay false
memory_limit 1000000
max_inflight_bytes 100
upgrade_outgoing_qos true
allow_duplicate_messages false
check_retain_source false
autosave_on_changes true
queue_qos0_messages true
clientid_prefixes secure-
log_facility 5
websockets_headers_size 2048
websockets_log_level 7
auth_plugin_deny_special_chars true
psk_file /etc/psk
listener 8883 127.0.0.1
max_qos 1
use_username_as_clientid true
socket_domain ipv4
bind_interface lo
http_dir /var/www
mount_point m/
certfile /c.pem
keyfile /k.pem
cafile /ca.pem
require_certificate true
use_subject_as_username true
crlfile /crl.pem
dhparamfile /dh.pem
ciphers_tls1.3 TLS_AES_128_GCM_SHA256
tls_engine pkcs11
tls_keyform pem
`
	c, err := ParseReader("midge.conf", strings.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	l := c.Listeners[0]
	if c.PidFile != "/run/m.pid" || c.User != "nobody" || !c.UserSet || c.SetTCPNoDelay || c.MemoryLimit != 1e6 ||
		c.MaxInflightBytes != 100 || !c.UpgradeOutgoingQoS || c.CheckRetainSource || !c.AutosaveOnChanges ||
		!c.QueueQoS0Messages || c.ClientIDPrefixes != "secure-" || c.LogFacility != 5 ||
		c.WebsocketsHeadersSize != 2048 || c.WebsocketsLogLevel != 7 || c.PSKFile != "/etc/psk" {
		t.Fatalf("globals %+v", c)
	}
	if l.MaxQoS != 1 || !l.UseUsernameAsClientID || l.SocketDomain != "ipv4" || l.BindInterface != "lo" ||
		l.HTTPDir != "/var/www" || l.MountPoint != "m/" || !l.UseSubjectAsUsername || l.CRLFile != "/crl.pem" {
		t.Fatalf("listener %+v", l)
	}
	// allow_duplicate_messages, websockets_log_level, psk_file,
	// dhparamfile, ciphers_tls1.3 and tls_engine are accepted with a line
	// in the log saying how midge treats them.
	if len(c.Notices) != 6 || !strings.HasPrefix(c.Notices[0], "midge.conf:7: allow_duplicate_messages: ") {
		t.Fatalf("notices %q", c.Notices)
	}
	d := Default()
	if d.User != "mosquitto" || !d.SetTCPNoDelay || !d.CheckRetainSource || d.LogFacility != -1 || d.Listeners[0].MaxQoS != 2 {
		t.Fatalf("defaults %+v", d)
	}
}

func TestParseInvalid(t *testing.T) {
	for _, c := range invalidCases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseReader("midge.conf", strings.NewReader(c.file))
			if err == nil || err.Error() != c.want {
				t.Fatalf("got  %v\nwant %s", err, c.want)
			}
		})
	}
}

// TestMosquittoRefusesToo runs Debian's mosquitto on the invalid files it
// also refuses, so the table does not drift from the reference.
func TestMosquittoRefusesToo(t *testing.T) {
	const broker = "/usr/sbin/mosquitto"
	if _, err := os.Stat(broker); err != nil {
		t.Fatalf("%s is missing: run `make deps` (installs Debian's mosquitto)", broker)
	}
	dir := t.TempDir()
	for _, c := range invalidCases {
		if !c.mosquitto {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, "m.conf")
			// The listener keeps mosquitto off port 1883 should a file be accepted.
			body := "user root\nlistener 1 127.0.0.1\n" + c.file
			if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(broker, "-c", path)
			done := make(chan error, 1)
			var out strings.Builder
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				if err == nil || !strings.Contains(out.String(), "Error") {
					t.Fatalf("mosquitto accepted it: %v\n%s", err, out.String())
				}
			case <-time.After(3 * time.Second):
				cmd.Process.Kill()
				<-done
				t.Fatalf("mosquitto accepted it (still running after 3s)")
			}
		})
	}
}

func TestUnsupported(t *testing.T) {
	file := `listener 8883
cafile /ca.pem
certfile /c.pem
keyfile /k.pem
listener 9001
protocol websockets
persistence true
log_dest dlt
`
	c, err := ParseReader("midge.conf", strings.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Join([]string{
		"midge.conf:8: log_dest: not supported yet (logging to DLT)",
	}, "\n")
	if err := c.Unsupported(); err == nil || err.Error() != want {
		t.Fatalf("got  %v\nwant %s", err, want)
	}
	if !c.Listeners[0].TLS() || c.Listeners[1].Protocol != "websockets" || !c.Persistence {
		t.Fatalf("settings not recorded: %+v", c)
	}
	// A feature that lands drops out of the list.
	NotBuilt[FeatureLogDLT] = false
	defer func() { NotBuilt[FeatureLogDLT] = true }()
	if err := c.Unsupported(); err != nil {
		t.Fatalf("after DLT landed: %v", err)
	}
}

func TestIncludeDir(t *testing.T) {
	dir := t.TempDir()
	inc := filepath.Join(dir, "conf.d")
	if err := os.Mkdir(inc, 0o755); err != nil {
		t.Fatal(err)
	}
	// Each file adds one log_type line; the order they are read in is
	// recorded through listener ports.
	names := []string{"b.conf", "A.conf", "01.conf", "a.conf", "B.conf", "00.conf", "skip.txt"}
	for i, n := range names {
		body := "listener " + string(rune('1'+i)) + "000\n"
		if err := os.WriteFile(filepath.Join(inc, n), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	main := filepath.Join(dir, "midge.conf")
	if err := os.WriteFile(main, []byte("max_queued_messages 3\ninclude_dir "+inc+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Parse(main)
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for _, l := range c.Listeners {
		got = append(got, l.Port)
	}
	// mosquitto.conf(5): 00.conf 01.conf A.conf a.conf B.conf b.conf.
	want := []int{6000, 3000, 2000, 4000, 5000, 1000}
	if !reflect.DeepEqual(got, want) || c.MaxQueuedMessages != 3 {
		t.Fatalf("ports in read order %v, want %v", got, want)
	}

	// Errors in an included file name that file.
	if err := os.WriteFile(filepath.Join(inc, "b.conf"), []byte("\nmax_keepalive 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Parse(main)
	wantErr := filepath.Join(inc, "b.conf") + `:2: max_keepalive: expected an integer from 10 to 65535, got "1"`
	if err == nil || err.Error() != wantErr {
		t.Fatalf("got  %v\nwant %s", err, wantErr)
	}

	// include_dir only from the main file.
	if err := os.WriteFile(filepath.Join(inc, "b.conf"), []byte("include_dir "+dir+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Parse(main)
	wantErr = filepath.Join(inc, "b.conf") + ":1: include_dir: only allowed in the main configuration file"
	if err == nil || err.Error() != wantErr {
		t.Fatalf("got  %v\nwant %s", err, wantErr)
	}

	// The directory must not hold the main file.
	self := filepath.Join(inc, "self.conf")
	if err := os.WriteFile(self, []byte("include_dir "+inc+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Parse(self)
	wantErr = self + `:1: include_dir: directory "` + inc + `" holds the main configuration file`
	if err == nil || err.Error() != wantErr {
		t.Fatalf("got  %v\nwant %s", err, wantErr)
	}
}

func TestParseMissingFile(t *testing.T) {
	_, err := Parse(filepath.Join(t.TempDir(), "none.conf"))
	if err == nil || !strings.HasPrefix(err.Error(), "config: open ") {
		t.Fatalf("got %v", err)
	}
}

func FuzzParseReader(f *testing.F) {
	f.Add("listener 1883\nmax_queued_messages 5\n")
	f.Add("per_listener_settings true\nlistener 1 ::1\npassword_file /x\n")
	f.Add("plugin /p/mosquitto_dynamic_security.so\nplugin_opt_config_file /d.json\nauth_plugin go-auth.so\nauth_opt_backends http\n")
	f.Fuzz(func(t *testing.T, s string) {
		if strings.Contains(s, "include_dir") {
			return // reads the file system
		}
		c, err := ParseReader("f.conf", strings.NewReader(s))
		if err == nil && len(c.Listeners) == 0 {
			t.Fatal("a parsed config has no listener")
		}
	})
}
