package config

// The keys of mosquitto.conf(5) beyond the core set in keys.go: process,
// limits, delivery rules, logging and OpenSSL-specific TLS options.
func init() {
	more := map[string]handler{
		"pid_file": globalString(func(c *Config, s string) { c.PidFile = s }),
		"user": func(p *parser, l *line) error {
			v, err := l.one()
			if err == nil {
				p.c.User, p.c.UserSet = v, true
			}
			return err
		},
		"set_tcp_nodelay": globalBool(func(c *Config, b bool) { c.SetTCPNoDelay = b }),
		"memory_limit": func(p *parser, l *line) error {
			n, err := l.intRange(0, 1<<62)
			p.c.MemoryLimit = n
			return err
		},
		"max_inflight_bytes":   globalInt(func(c *Config, n int) { c.MaxInflightBytes = n }, 0, maxInt),
		"upgrade_outgoing_qos": globalBool(func(c *Config, b bool) { c.UpgradeOutgoingQoS = b }),
		"check_retain_source":  globalBool(func(c *Config, b bool) { c.CheckRetainSource = b }),
		"autosave_on_changes":  globalBool(func(c *Config, b bool) { c.AutosaveOnChanges = b }),
		"queue_qos0_messages":  globalBool(func(c *Config, b bool) { c.QueueQoS0Messages = b }),
		"clientid_prefixes":    globalString(func(c *Config, s string) { c.ClientIDPrefixes = s }),
		"allow_duplicate_messages": func(p *parser, l *line) error {
			_, err := l.boolean()
			if err == nil {
				// mosquitto 2.0 also ignores it (deprecated).
				p.notice(l, "deprecated and ignored, as in mosquitto 2.0: a client whose subscriptions overlap gets one copy of each message")
			}
			return err
		},
		"log_facility":            globalInt(func(c *Config, n int) { c.LogFacility = n }, 0, 7),
		"websockets_headers_size": globalInt(func(c *Config, n int) { c.WebsocketsHeadersSize = n }, 0, 65535),
		"websockets_log_level": func(p *parser, l *line) error {
			n, err := l.intRange(0, maxInt)
			if err == nil {
				p.c.WebsocketsLogLevel = int(n)
				if n != 0 {
					p.notice(l, "accepted and unused: it sets libwebsockets' own log levels, and midge's WebSocket code is its own")
				}
			}
			return err
		},
		"auth_plugin_deny_special_chars": func(p *parser, l *line) error {
			b, err := l.boolean()
			if err == nil {
				p.security(l).AllowSpecialChars = !b
			}
			return err
		},

		// midge's own: the Response Information given to v5 clients that
		// ask, as this prefix followed by their client id.
		"response_information_prefix": globalString(func(c *Config, s string) { c.ResponseInfoPrefix = s }),

		"max_qos": func(p *parser, l *line) error {
			n, err := l.intRange(0, 2)
			if err == nil {
				p.listener(l).MaxQoS = byte(n)
			}
			return err
		},
		"use_username_as_clientid": func(p *parser, l *line) error {
			b, err := l.boolean()
			if err == nil {
				p.listener(l).UseUsernameAsClientID = b
			}
			return err
		},
		"use_subject_as_username": tlsBool(func(t *Listener, b bool) { t.UseSubjectAsUsername = b }),
		"http_dir": func(p *parser, l *line) error {
			v, err := l.str()
			if err == nil {
				p.listener(l).HTTPDir = v
			}
			return err
		},
		"socket_domain": func(p *parser, l *line) error {
			v, err := l.one()
			if err == nil && v != "ipv4" && v != "ipv6" {
				err = l.errorf("expected ipv4 or ipv6, got %q", v)
			}
			if err == nil {
				p.listener(l).SocketDomain = v
			}
			return err
		},
		"bind_interface": func(p *parser, l *line) error {
			v, err := l.one()
			if err == nil {
				p.listener(l).BindInterface = v
			}
			return err
		},

		// OpenSSL-only options. Go's TLS negotiates ECDHE only (no DH
		// parameters), picks its own TLS 1.3 suites and loads keys from
		// files: harmless settings are accepted with a notice; a setting
		// that cannot be honoured safely (a PSK listener, a key held in an
		// engine) stops the broker.
		"dhparamfile":           openSSLNotice("Go's TLS uses ECDHE key exchange only, which needs no DH parameters"),
		"ciphers_tls1.3":        openSSLNotice("Go's TLS chooses its TLS 1.3 cipher suites itself"),
		"tls_engine":            openSSLNotice("Go's TLS does not use OpenSSL engines (keys are read from keyfile)"),
		"tls_engine_kpass_sha1": openSSLNotice("Go's TLS does not use OpenSSL engines"),
		"tls_keyform": func(p *parser, l *line) error {
			v, err := l.one()
			switch {
			case err != nil:
				return err
			case v == "engine":
				return l.errorf("a key held in an OpenSSL engine cannot be loaded by Go's TLS: use a PEM keyfile (tls_keyform pem)")
			case v != "pem":
				return l.errorf("expected pem or engine, got %q", v)
			}
			return nil
		},
		"psk_file": func(p *parser, l *line) error {
			v, err := l.str()
			if err == nil {
				p.c.PSKFile = v
				p.notice(l, "read but unused: no listener can serve TLS-PSK (Go's TLS has no PSK cipher suites)")
			}
			return err
		},
		"psk_hint": func(p *parser, l *line) error {
			if _, err := l.str(); err != nil {
				return err
			}
			return l.errorf("a TLS-PSK listener cannot be served: Go's TLS has no PSK cipher suites, and serving this listener without PSK would change who may connect")
		},
	}
	// mosquitto reads maximum_qos as max_qos (undocumented; its own tests
	// use it).
	more["maximum_qos"] = more["max_qos"]
	for k, h := range more {
		handlers[k] = h
	}
}

func openSSLNotice(why string) handler {
	return func(p *parser, l *line) error {
		if _, err := l.str(); err != nil {
			return err
		}
		p.notice(l, "accepted and unused: "+why)
		return nil
	}
}

// notice records a line the broker logs at start about setting l.
func (p *parser) notice(l *line, msg string) {
	p.c.Notices = append(p.c.Notices, l.pos.String()+": "+l.key+": "+msg)
}
