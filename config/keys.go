package config

import (
	"net"
	"strconv"
	"strings"
	"time"
)

type handler func(p *parser, l *line) error

// handlers maps each key midge reads to the code that validates and applies it.
var handlers map[string]handler

func init() {
	handlers = map[string]handler{
		"listener":                 (*parser).listenerKey,
		"port":                     (*parser).portKey,
		"bind_address":             (*parser).bindAddressKey,
		"protocol":                 (*parser).protocolKey,
		"max_connections":          listenerInt(func(t *Listener, n int) { t.MaxConnections = n }, -1<<31, maxInt),
		"max_topic_alias":          listenerInt(func(t *Listener, n int) { t.MaxTopicAlias = n }, 0, 65535),
		"mount_point":              (*parser).mountPointKey,
		"cafile":                   tlsString(func(t *Listener, s string) { t.CAFile = s }),
		"capath":                   tlsString(func(t *Listener, s string) { t.CAPath = s }),
		"certfile":                 tlsString(func(t *Listener, s string) { t.CertFile = s }),
		"keyfile":                  tlsString(func(t *Listener, s string) { t.KeyFile = s }),
		"ciphers":                  tlsString(func(t *Listener, s string) { t.Ciphers = s }),
		"crlfile":                  tlsString(func(t *Listener, s string) { t.CRLFile = s }),
		"tls_version":              (*parser).tlsVersionKey,
		"require_certificate":      tlsBool(func(t *Listener, b bool) { t.RequireCertificate = b }),
		"use_identity_as_username": tlsBool(func(t *Listener, b bool) { t.UseIdentityAsUsername = b }),

		"per_listener_settings": (*parser).perListenerKey,
		"allow_anonymous": func(p *parser, l *line) error {
			b, err := l.boolean()
			if err == nil {
				s := p.security(l)
				s.AllowAnonymous, s.anonymousSet = b, true
			}
			return err
		},
		"password_file":  securityString(func(s *Security, v string) { s.PasswordFile = v }),
		"acl_file":       securityString(func(s *Security, v string) { s.ACLFile = v }),
		"auto_id_prefix": securityString(func(s *Security, v string) { s.AutoIDPrefix = v }),
		"allow_zero_length_clientid": func(p *parser, l *line) error {
			b, err := l.boolean()
			if err == nil {
				p.security(l).AllowZeroLengthClientID = b
			}
			return err
		},

		"max_inflight_messages": globalInt(func(c *Config, n int) { c.MaxInflightMessages = n }, 0, 65535),
		"max_queued_messages":   globalInt(func(c *Config, n int) { c.MaxQueuedMessages = n }, 0, maxInt),
		"max_queued_bytes": func(p *parser, l *line) error {
			n, err := l.intRange(0, 1<<62)
			p.c.MaxQueuedBytes = n
			return err
		},
		// The largest MQTT packet: 268,435,455 bytes of remaining length plus
		// a 5-byte fixed header; mosquitto refuses 0 and anything below 20.
		"max_packet_size":    globalInt(func(c *Config, n int) { c.MaxPacketSize = n }, 20, 268435460),
		"message_size_limit": globalInt(func(c *Config, n int) { c.MessageSizeLimit = n }, 0, 268435455),
		"max_keepalive":      globalInt(func(c *Config, n int) { c.MaxKeepalive = n }, 10, 65535),
		"retain_available":   globalBool(func(c *Config, b bool) { c.RetainAvailable = b }),
		"persistent_client_expiration": func(p *parser, l *line) error {
			d, err := l.expiration()
			p.c.PersistentClientExpiration = d
			return err
		},
		"sys_interval": globalInt(func(c *Config, n int) { c.SysInterval = time.Duration(n) * time.Second }, 0, 65535),

		"log_type":             (*parser).logTypeKey,
		"log_dest":             (*parser).logDestKey,
		"log_timestamp":        globalBool(func(c *Config, b bool) { c.LogTimestamp = b }),
		"log_timestamp_format": globalString(func(c *Config, s string) { c.LogTimestampFormat = s }),
		"connection_messages":  globalBool(func(c *Config, b bool) { c.ConnectionMessages = b }),

		"persistence": func(p *parser, l *line) error {
			b, err := l.boolean()
			if err == nil {
				p.c.Persistence = b
				if b {
					p.use(l, FeaturePersistence)
				}
			}
			return err
		},
		"persistence_location": globalString(func(c *Config, s string) { c.PersistenceLocation = s }),
		"persistence_file":     globalString(func(c *Config, s string) { c.PersistenceFile = s }),
		"autosave_interval": globalInt(func(c *Config, n int) {
			c.AutosaveInterval = time.Duration(n) * time.Second
		}, 0, maxInt),
		"persistence_sync": func(p *parser, l *line) error {
			v, err := l.one()
			if err == nil && v != "always" && v != "interval" {
				err = l.errorf("expected always or interval, got %q", v)
			}
			if err == nil {
				p.c.PersistenceSync = v
			}
			return err
		},

		"event_loops":        globalInt(func(c *Config, n int) { c.EventLoops = n }, 0, 1024),
		"listener_reuseport": globalBool(func(c *Config, b bool) { c.ListenerReusePort = b }),

		"metrics_listener": func(p *parser, l *line) error {
			v, err := l.one()
			if err != nil {
				return err
			}
			_, port, serr := net.SplitHostPort(v)
			n, perr := strconv.Atoi(port)
			if serr != nil || perr != nil || n < 0 || n > 65535 {
				return l.errorf("expected HOST:PORT, got %q", v)
			}
			p.c.MetricsListener = v
			return nil
		},

		"metrics_user": func(p *parser, l *line) error {
			v, err := l.one()
			if err == nil {
				p.c.MetricsUser = v
			}
			return err
		},
	}
}

func (p *parser) listenerKey(l *line) error {
	f := strings.Fields(l.value)
	if len(f) == 0 || len(f) > 2 {
		return l.errorf("expected PORT [BIND_ADDRESS], got %q", l.value)
	}
	port, err := strconv.Atoi(f[0])
	if err != nil || port < 0 || port > 65535 {
		return l.errorf("expected a port from 1 to 65535, got %q", f[0])
	}
	t := defaultListener()
	t.Pos, t.Port = l.pos, port
	if len(f) == 2 {
		t.Bind = f[1]
	}
	// mosquitto: port 0 with a path is a Unix socket. midge also takes
	// port 0 alone, or with an IP address, as "pick a free port" (tests).
	if port == 0 && strings.Contains(t.Bind, "/") {
		p.use(l, FeatureUnixSocket)
	}
	p.cur = t
	p.c.Listeners = append(p.c.Listeners, t)
	return nil
}

// portKey and bindAddressKey are mosquitto's deprecated keys for the default
// listener, wherever they appear.
func (p *parser) portKey(l *line) error {
	n, err := l.intRange(1, 65535)
	if err == nil {
		if p.def.keys == 0 {
			p.def.Pos = l.pos
		}
		p.def.keys++
		p.def.Port = int(n)
	}
	return err
}

func (p *parser) bindAddressKey(l *line) error {
	v, err := l.one()
	if err == nil {
		if p.def.keys == 0 {
			p.def.Pos = l.pos
		}
		p.def.keys++
		p.def.Bind = v
	}
	return err
}

func (p *parser) protocolKey(l *line) error {
	v, err := l.one()
	if err != nil {
		return err
	}
	switch v {
	case "mqtt":
	case "websockets":
		p.use(l, FeatureWebsockets)
	default:
		return l.errorf("expected mqtt or websockets, got %q", v)
	}
	p.listener(l).Protocol = v
	return nil
}

func (p *parser) mountPointKey(l *line) error {
	v, err := l.str()
	if err != nil {
		return err
	}
	if strings.ContainsAny(v, "+#") {
		return l.errorf("must not contain '+' or '#', got %q", v)
	}
	p.use(l, FeatureMountPoint)
	p.listener(l).MountPoint = v
	return nil
}

func (p *parser) tlsVersionKey(l *line) error {
	v, err := l.one()
	if err != nil {
		return err
	}
	switch v {
	case "tlsv1.1", "tlsv1.2", "tlsv1.3":
	default:
		return l.errorf("expected tlsv1.1, tlsv1.2 or tlsv1.3, got %q", v)
	}
	p.use(l, FeatureTLS)
	p.listener(l).TLSVersion = v
	return nil
}

func (p *parser) perListenerKey(l *line) error {
	b, err := l.boolean()
	if err != nil {
		return err
	}
	if p.securityAt != nil && b != p.c.PerListenerSettings {
		return l.errorf("must be set before any other security setting (the first is at %s)", *p.securityAt)
	}
	p.c.PerListenerSettings = b
	return nil
}

func (p *parser) logTypeKey(l *line) error {
	v, err := l.one()
	if err != nil {
		return err
	}
	t, ok := logTypeNames[v]
	if !ok {
		return l.errorf("expected debug, error, warning, notice, information, subscribe, unsubscribe, websockets, none or all, got %q", v)
	}
	// The first log_type replaces the default set; later ones add to it.
	if !p.logTypeSet {
		p.c.LogTypes, p.logTypeSet = 0, true
	}
	p.c.LogTypes |= t
	return nil
}

func (p *parser) logDestKey(l *line) error {
	kind, path, _ := strings.Cut(l.value, " ")
	path = strings.Trim(path, " \t")
	if !p.logDestSet {
		p.c.LogDests, p.logDestSet = nil, true
	}
	if kind != "file" && path != "" {
		return l.errorf("expected one value, got %q", l.value)
	}
	switch kind {
	case "":
		return l.errorf("missing value")
	case "stdout", "stderr":
	case "none":
		p.c.LogDests = nil
		return nil
	case "file":
		if path == "" {
			return l.errorf("file needs a path")
		}
		if p.logFileSet {
			return l.errorf("only one file destination may be configured")
		}
		p.logFileSet = true
	case "syslog":
		p.use(l, FeatureLogSyslog)
	case "topic":
		p.use(l, FeatureLogTopic)
	case "dlt":
		p.use(l, FeatureLogDLT)
	default:
		return l.errorf("expected stdout, stderr, file PATH, syslog, topic, dlt or none, got %q", kind)
	}
	p.c.LogDests = append(p.c.LogDests, LogDest{Kind: kind, Path: path})
	return nil
}

func listenerInt(set func(*Listener, int), min, max int64) handler {
	return func(p *parser, l *line) error {
		n, err := l.intRange(min, max)
		if err == nil {
			set(p.listener(l), int(n))
		}
		return err
	}
}

func tlsString(set func(*Listener, string)) handler {
	return func(p *parser, l *line) error {
		v, err := l.str()
		if err == nil {
			p.use(l, FeatureTLS)
			set(p.listener(l), v)
		}
		return err
	}
}

func tlsBool(set func(*Listener, bool)) handler {
	return func(p *parser, l *line) error {
		b, err := l.boolean()
		if err == nil {
			if b {
				p.use(l, FeatureTLS)
			}
			set(p.listener(l), b)
		}
		return err
	}
}

func securityString(set func(*Security, string)) handler {
	return func(p *parser, l *line) error {
		v, err := l.str()
		if err == nil {
			set(p.security(l), v)
		}
		return err
	}
}

func globalInt(set func(*Config, int), min, max int64) handler {
	return func(p *parser, l *line) error {
		n, err := l.intRange(min, max)
		if err == nil {
			set(p.c, int(n))
		}
		return err
	}
}

func globalBool(set func(*Config, bool)) handler {
	return func(p *parser, l *line) error {
		b, err := l.boolean()
		if err == nil {
			set(p.c, b)
		}
		return err
	}
}

func globalString(set func(*Config, string)) handler {
	return func(p *parser, l *line) error {
		v, err := l.str()
		if err == nil {
			set(p.c, v)
		}
		return err
	}
}

// mosquittoKeys are mosquitto 2.0's configuration keys (mosquitto.conf(5)),
// so that a key midge does not read gets a precise hint rather than
// "unknown".
var mosquittoKeys = map[string]bool{}

func init() {
	for _, k := range strings.Fields(`
		acl_file address addresses allow_anonymous allow_duplicate_messages
		allow_zero_length_clientid auth_plugin auth_plugin_deny_special_chars
		auto_id_prefix autosave_interval autosave_on_changes bind_address
		bind_interface bridge_alpn bridge_attempt_unsubscribe bridge_bind_address
		bridge_cafile bridge_capath bridge_certfile bridge_identity bridge_insecure
		bridge_keyfile bridge_max_packet_size bridge_outgoing_retain
		bridge_protocol_version bridge_psk bridge_require_ocsp bridge_tls_version
		cafile capath certfile check_retain_source ciphers ciphers_tls1.3
		cleansession clientid clientid_prefixes connection connection_messages
		crlfile dhparamfile global_plugin http_dir idle_timeout include_dir
		keepalive_interval keyfile listener local_cleansession local_clientid
		local_password local_username log_dest log_facility log_timestamp
		log_timestamp_format log_type max_connections max_inflight_bytes
		max_inflight_messages max_keepalive max_packet_size max_qos
		max_queued_bytes max_queued_messages max_topic_alias memory_limit
		message_size_limit mount_point notification_topic notifications
		notifications_local_only password password_file per_listener_settings
		persistence persistence_file persistence_location
		persistent_client_expiration pid_file plugin port protocol psk_file
		psk_hint queue_qos0_messages remote_clientid remote_password
		remote_username require_certificate restart_timeout retain_available
		round_robin set_tcp_nodelay socket_domain start_type sys_interval
		threshold tls_engine tls_engine_kpass_sha1 tls_keyform tls_version topic
		try_private upgrade_outgoing_qos use_identity_as_username
		use_subject_as_username use_username_as_clientid user username
		websockets_headers_size websockets_log_level`) {
		mosquittoKeys[k] = true
	}
}

func isMosquittoKey(k string) bool {
	return mosquittoKeys[k] || strings.HasPrefix(k, "auth_opt_") || strings.HasPrefix(k, "plugin_opt_")
}
