// Package tools implements midge pub, sub and rr: mosquitto_pub(1),
// mosquitto_sub(1) and mosquitto_rr(1) with the same flags, output and exit
// codes, on midge's client package.
package tools

import (
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/midge-mqtt/midge/codec"
)

// tool says which command is parsing, since flags differ between them.
type tool int

const (
	toolPub tool = iota
	toolSub
	toolRR
)

func (t tool) name() string { return [...]string{"mosquitto_pub", "mosquitto_sub", "mosquitto_rr"}[t] }

// msgMode is where pub (and rr) takes its payload from.
type msgMode int

const (
	msgNone  msgMode = iota
	msgArg           // -m
	msgFile          // -f
	msgLines         // -l
	msgStdin         // -s
	msgNull          // -n
)

// property is one -D argument, checked and converted.
type property struct {
	command string // connect, publish, pubrel, subscribe, unsubscribe, disconnect, auth, will
	id      byte
	name    string // user-property key
	value   string
	num     uint32
}

// config is everything the three tools read from their flags.
type config struct {
	host, bindAddr         string
	port                   int
	topics                 []string
	message                string
	mode                   msgMode
	file                   string
	retain                 bool
	qos                    byte
	id, idPrefix           string
	keepalive              int
	username, password     string
	hasUser, hasPassword   bool
	debug, quiet           bool
	version                byte
	clean                  bool
	sessionExpiry          int64 // -1: not given
	props                  []property
	willTopic, willPayload string
	hasWillPayload         bool
	willQoS                byte
	willRetain             bool
	repeat                 int
	repeatDelay            float64
	maxInflight            int

	// sub and rr
	filterOut      []string
	verbose        bool
	msgCount       int
	timeout        int
	noRetained     bool
	retainedOnly   bool
	noEOL          bool
	format         string
	exitAfterSub   bool
	unsubTopics    []string
	removeRetained bool
	pretty         bool
	responseTopic  string

	// TLS
	cafile, capath, cert, key, tlsVersion string
	ciphers, alpn                         string
	insecure, useTLS, osCerts             bool

	unix              string  // --unix: the broker's Unix socket
	retainAsPublished bool    // --retain-as-published (v5 subscriptions)
	randomFilter      float64 // --random-filter: percentage of messages printed (0: all)
}

// unsupportedFlags are mosquitto's flags midge's tools cannot honour, with
// the note that follows mosquitto's "Unknown option" wording.
var unsupportedFlags = map[string]string{
	"--psk":                   "TLS-PSK is not available in Go's TLS",
	"--psk-identity":          "TLS-PSK is not available in Go's TLS",
	"--proxy":                 "SOCKS5 proxies are not supported by midge",
	"--tls-engine":            "OpenSSL engines are not available in Go's TLS",
	"--tls-engine-kpass-sha1": "OpenSSL engines are not available in Go's TLS",
}

// usageError is a bad command line: the message, and whether the whole
// usage text follows it (mosquitto prints it for a missing topic/message).
type usageError struct {
	msg       string
	fullUsage bool
}

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return &usageError{msg: fmt.Sprintf(format, a...)} }

// errHelp asks for the usage text on stdout.
var errHelp = &usageError{msg: "help"}

// parseArgs reads args the way mosquitto's client_shared.c does: one flag
// per argument, each value in the following argument.
func parseArgs(t tool, args []string) (*config, error) {
	c := &config{port: -1, version: codec.Version311, clean: true, keepalive: 60, sessionExpiry: -1, repeat: 1, maxInflight: 20, qos: 0}
	if t == toolRR {
		c.version = codec.Version5
	}
	pubOnly := func(flag string) error {
		if t != toolPub {
			return usagef("Unknown option '%s'.", flag)
		}
		return nil
	}
	subOnly := func(flag string) error {
		if t == toolPub {
			return usagef("Unknown option '%s'.", flag)
		}
		return nil
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		// value returns the next argument or the "given but no X" error.
		value := func(shown, what string) (string, error) {
			if i+1 >= len(args) {
				return "", usagef("%s argument given but no %s specified.\n", shown, what)
			}
			i++
			return args[i], nil
		}
		var err error
		var v string
		switch a {
		case "--help":
			return nil, errHelp
		case "-A":
			c.bindAddr, err = value("-A", "address")
		case "-c", "--disable-clean-session":
			c.clean = false
		case "-d", "--debug":
			c.debug = true
		case "-D", "--property":
			if i+3 >= len(args) {
				return nil, usagef("--property argument given but not enough arguments specified.\n")
			}
			var p property
			p, i, err = parseProperty(args, i)
			c.props = append(c.props, p)
			c.version = codec.Version5 // -D implies v5
		case "-h", "--host":
			c.host, err = value("-h", "host")
		case "-i", "--id":
			if c.idPrefix != "" {
				return nil, usagef("-i and -I argument cannot be used together.\n")
			}
			c.id, err = value("-i", "id")
		case "-I", "--id-prefix":
			if c.id != "" {
				return nil, usagef("-i and -I argument cannot be used together.\n")
			}
			c.idPrefix, err = value("-I", "id prefix")
		case "-k", "--keepalive":
			if v, err = value("-k", "keepalive"); err == nil {
				c.keepalive, _ = strconv.Atoi(v)
				if c.keepalive != 0 && (c.keepalive < 5 || c.keepalive > 65535) {
					return nil, usagef("Invalid keepalive given, it must be between 5 and 65535 inclusive.\n")
				}
			}
		case "-L", "--url":
			if v, err = value("-L", "URL"); err == nil {
				err = c.parseURL(t, v)
			}
		case "-p", "--port":
			if v, err = value("-p", "port"); err == nil {
				c.port, _ = strconv.Atoi(v)
				if c.port < 0 || c.port > 65535 {
					return nil, usagef("Invalid port given: %d", c.port)
				}
			}
		case "-P", "--pw":
			c.password, err = value("-P", "password")
			c.hasPassword = true
		case "-q", "--qos":
			if v, err = value("-q", "QoS"); err == nil {
				q, _ := strconv.Atoi(v)
				if q < 0 || q > 2 {
					return nil, usagef("Invalid QoS given: %d", q)
				}
				c.qos = byte(q)
			}
		case "--quiet":
			c.quiet = true
		case "-t", "--topic":
			if v, err = value("-t", "topic"); err == nil {
				if err = checkTopic(t, v); err == nil {
					c.topics = append(c.topics, v)
				}
			}
		case "-u", "--username":
			c.username, err = value("-u", "username")
			c.hasUser = true
		case "-V", "--protocol-version":
			if v, err = value("--protocol-version", "version"); err == nil {
				switch v {
				case "mqttv31", "31":
					c.version = codec.Version31
				case "mqttv311", "311":
					c.version = codec.Version311
				case "mqttv5", "5":
					c.version = codec.Version5
				default:
					return nil, usagef("Invalid protocol version argument given.\n")
				}
			}
		case "-x":
			if v, err = value("-x", "session expiry interval"); err == nil {
				switch v {
				case "∞", "-1":
					c.sessionExpiry = 0xFFFFFFFF
				default:
					n, perr := strconv.ParseUint(v, 10, 32)
					if perr != nil {
						return nil, usagef("session-expiry-interval not a number.\n")
					}
					c.sessionExpiry = int64(n)
				}
			}
		case "--will-payload":
			c.willPayload, err = value("--will-payload", "will payload")
			c.hasWillPayload = true
		case "--will-qos":
			if v, err = value("--will-qos", "will QoS"); err == nil {
				q, _ := strconv.Atoi(v)
				if q < 0 || q > 2 {
					return nil, usagef("Invalid will QoS %d.\n", q)
				}
				c.willQoS = byte(q)
			}
		case "--will-retain":
			c.willRetain = true
		case "--will-topic":
			if v, err = value("--will-topic", "will topic"); err == nil {
				if strings.ContainsAny(v, "+#") {
					return nil, usagef("Invalid will topic '%s', does it contain '+' or '#'?\n", v)
				}
				c.willTopic = v
			}
		case "--cafile":
			c.cafile, err = value("--cafile", "file")
		case "--capath":
			c.capath, err = value("--capath", "directory")
		case "--cert":
			c.cert, err = value("--cert", "file")
		case "--key":
			c.key, err = value("--key", "file")
		case "--insecure":
			c.insecure = true
		case "--tls-version":
			c.tlsVersion, err = value("--tls-version", "version")
		case "--unix":
			c.unix, err = value("--unix", "unix socket path")
		case "--ciphers":
			c.ciphers, err = value("--ciphers", "ciphers")
		case "--tls-alpn":
			c.alpn, err = value("--tls-alpn", "protocol")
		case "--tls-use-os-certs":
			c.osCerts = true
		case "--keyform":
			if v, err = value("--keyform", "keyform"); err == nil && v != "pem" {
				if v == "engine" {
					err = usagef("--keyform engine: OpenSSL engines are not available in Go's TLS.\n")
				} else {
					err = usagef("Invalid keyform \"%s\". Must be pem or engine.\n", v)
				}
			}
		case "--retain-as-published":
			if err = subOnly(a); err == nil {
				c.retainAsPublished = true
			}
		case "--random-filter":
			if err = subOnly(a); err == nil && t == toolSub {
				if v, err = value("--random-filter", "filter"); err == nil {
					f, perr := strconv.ParseFloat(v, 64)
					if perr != nil || f < 0.1 || f > 100 {
						err = usagef("Invalid filter \"%s\": must be between 0.1 and 100.\n", v)
					}
					c.randomFilter = f
				}
			} else if err == nil {
				err = usagef("Unknown option '%s'.", a)
			}
		case "--nodelay":
			// Go disables Nagle's algorithm on TCP connections by default.

		// pub and rr: the message.
		case "-m", "--message", "-f", "--file", "-l", "--stdin-line", "-s", "--stdin-file", "-n", "--null-message":
			if t == toolSub || (t == toolRR && (a == "-l" || a == "--stdin-line")) {
				return nil, usagef("Unknown option '%s'.", a)
			}
			if c.mode != msgNone {
				return nil, usagef("Only one type of message can be sent at once.\n")
			}
			switch a {
			case "-m", "--message":
				c.mode = msgArg
				c.message, err = value("-m", "message")
			case "-f", "--file":
				c.mode = msgFile
				c.file, err = value("-f", "file")
			case "-l", "--stdin-line":
				c.mode = msgLines
			case "-s", "--stdin-file":
				c.mode = msgStdin
			case "-n", "--null-message":
				c.mode = msgNull
			}
		case "-r", "--retain":
			if err = pubOnly(a); err == nil {
				c.retain = true
			}
		case "-M":
			if err = pubOnly(a); err == nil {
				if v, err = value("-M", "max_inflight"); err == nil {
					c.maxInflight, _ = strconv.Atoi(v)
					if c.maxInflight < 1 {
						return nil, usagef("Maximum inflight messages must be greater than 0.\n")
					}
				}
			}
		case "--repeat":
			if err = pubOnly(a); err == nil {
				if v, err = value("--repeat", "count"); err == nil {
					c.repeat, _ = strconv.Atoi(v)
					if c.repeat < 1 {
						return nil, usagef("--repeat argument must be >0.\n")
					}
				}
			}
		case "--repeat-delay":
			if err = pubOnly(a); err == nil {
				if v, err = value("--repeat-delay", "time"); err == nil {
					c.repeatDelay, err = strconv.ParseFloat(v, 64)
					if err != nil || c.repeatDelay < 0 {
						return nil, usagef("--repeat-delay argument must be >=0.0.\n")
					}
				}
			}

		// sub and rr: receiving.
		case "-e":
			if t != toolRR {
				return nil, usagef("Unknown option '%s'.", a)
			}
			if v, err = value("-e", "response topic"); err == nil {
				if err = checkTopic(toolPub, v); err == nil {
					c.responseTopic = v
				}
			}
		case "-C":
			if err = subOnly(a); err == nil {
				if v, err = value("-C", "count"); err == nil {
					c.msgCount, _ = strconv.Atoi(v)
					if c.msgCount < 1 {
						return nil, usagef("Invalid message count \"%d\".\n", c.msgCount)
					}
				}
			}
		case "-E":
			err = subOnly(a)
			c.exitAfterSub = true
		case "-F":
			if err = subOnly(a); err == nil {
				c.format, err = value("-F", "format")
			}
		case "-N":
			err = subOnly(a)
			c.noEOL = true
		case "--pretty":
			err = subOnly(a)
			c.pretty = true
		case "-R":
			err = subOnly(a)
			c.noRetained = true
		case "--retained-only":
			err = subOnly(a)
			c.retainedOnly = true
		case "--remove-retained":
			err = subOnly(a)
			c.removeRetained = true
		case "-T", "--filter-out":
			if err = subOnly(a); err == nil {
				if v, err = value("-T", "topic filter"); err == nil {
					if err = checkTopic(toolSub, v); err == nil {
						c.filterOut = append(c.filterOut, v)
					}
				}
			}
		case "-U", "--unsubscribe":
			if err = subOnly(a); err == nil {
				if v, err = value("-U", "unsubscribe topic"); err == nil {
					if err = checkTopic(toolSub, v); err == nil {
						c.unsubTopics = append(c.unsubTopics, v)
					}
				}
			}
		case "-v", "--verbose":
			err = subOnly(a)
			c.verbose = true
		case "-W":
			if err = subOnly(a); err == nil {
				if v, err = value("-W", "timeout"); err == nil {
					c.timeout, _ = strconv.Atoi(v)
					if c.timeout < 1 {
						return nil, usagef("Invalid timeout \"%d\".\n", c.timeout)
					}
				}
			}
		default:
			if note, ok := unsupportedFlags[a]; ok {
				return nil, usagef("Unknown option '%s'.\n(midge: %s.)", a, note)
			}
			return nil, usagef("Unknown option '%s'.", a)
		}
		if err != nil {
			return nil, err
		}
	}
	return c, c.check(t)
}

// check applies the rules that involve more than one flag.
func (c *config) check(t tool) error {
	if c.hasWillPayload && c.willTopic == "" {
		return usagef("Will payload given, but no will topic given.\n")
	}
	if c.willRetain && c.willTopic == "" {
		return usagef("Will retain given, but no will topic given.\n")
	}
	if c.hasPassword && !c.hasUser {
		return usagef("Password given, but no username given.\n")
	}
	if !c.clean && c.id == "" && c.idPrefix == "" {
		return usagef("You must provide a client id if you are using the -c option.\n")
	}
	if c.noRetained && c.retainedOnly {
		return &usageError{msg: "Combining '-R' and '--retained-only' makes no sense.\n", fullUsage: false}
	}
	switch t {
	case toolPub:
		if len(c.topics) == 0 || c.mode == msgNone {
			return &usageError{msg: "Both topic and message must be supplied.\n", fullUsage: true}
		}
	case toolSub:
		if len(c.topics) == 0 && len(c.unsubTopics) == 0 {
			return usagef("You must specify a topic to subscribe to.\n")
		}
	case toolRR:
		if len(c.topics) == 0 || c.mode == msgNone || c.responseTopic == "" {
			return &usageError{msg: "All of topic, message, and response topic must be supplied.\n", fullUsage: true}
		}
	}
	if c.version != codec.Version5 && c.sessionExpiry >= 0 && t != toolRR {
		// mosquitto ignores -x below v5; so do we.
		c.sessionExpiry = -1
	}
	if c.cafile != "" || c.capath != "" || c.cert != "" || c.insecure || c.osCerts {
		c.useTLS = true
	}
	if c.port < 0 {
		c.port = 1883
		if c.useTLS {
			c.port = 8883
		}
	}
	if c.host == "" {
		c.host = "localhost"
	}
	if c.idPrefix != "" {
		c.id = c.idPrefix + strconv.Itoa(os.Getpid())
	}
	return nil
}

// checkTopic validates a -t value: pub topics have no wildcards
// [MQTT-3.3.2-2], sub filters use them correctly [MQTT-4.7.1-2].
func checkTopic(t tool, topic string) error {
	if t == toolSub {
		if !validFilter(topic) {
			return usagef("Invalid subscription topic '%s', are all '+' and '#' wildcards correct?\n", topic)
		}
		return nil
	}
	if strings.ContainsAny(topic, "+#") {
		return usagef("Invalid publish topic '%s', does it contain '+' or '#'?\n", topic)
	}
	return nil
}

// validFilter reports whether '+' and '#' each fill a whole level and '#'
// comes last [MQTT-4.7.1-2] [MQTT-4.7.1-3].
func validFilter(f string) bool {
	levels := strings.Split(f, "/")
	for i, l := range levels {
		if strings.Contains(l, "#") && (l != "#" || i != len(levels)-1) {
			return false
		}
		if strings.Contains(l, "+") && l != "+" {
			return false
		}
	}
	return true
}

// parseURL reads -L mqtt(s)://[user[:password]@]host[:port]/topic.
func (c *config) parseURL(t tool, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "mqtt" && u.Scheme != "mqtts") {
		return usagef("unsupported URL scheme.\n")
	}
	if u.Scheme == "mqtts" {
		c.useTLS = true
		c.port = 8883
	} else {
		c.port = 1883
	}
	if u.User != nil {
		c.username, c.hasUser = u.User.Username(), true
		if p, ok := u.User.Password(); ok {
			c.password, c.hasPassword = p, true
		}
	}
	c.host = u.Hostname()
	if ps := u.Port(); ps != "" {
		c.port, _ = strconv.Atoi(ps)
	}
	topic := strings.TrimPrefix(u.Path, "/")
	if topic == "" {
		return usagef("Invalid URL for -L argument specified - topic missing.\n")
	}
	if err := checkTopic(t, topic); err != nil {
		return err
	}
	c.topics = append(c.topics, topic)
	return nil
}

// propType is how a -D value is read and encoded.
type propType int

const (
	propByte propType = iota
	propU16
	propU32
	propVarint
	propString
	propBinary
	propPair
)

// propSpec describes a property name accepted by -D and the commands that may carry it.
type propSpec struct {
	id       byte
	typ      propType
	commands string // space separated
}

var propSpecs = map[string]propSpec{
	"payload-format-indicator":     {codec.PropPayloadFormat, propByte, "publish will"},
	"message-expiry-interval":      {codec.PropMessageExpiry, propU32, "publish will"},
	"content-type":                 {codec.PropContentType, propString, "publish will"},
	"response-topic":               {codec.PropResponseTopic, propString, "publish will"},
	"correlation-data":             {codec.PropCorrelationData, propBinary, "publish will"},
	"subscription-identifier":      {codec.PropSubscriptionID, propVarint, "subscribe"},
	"session-expiry-interval":      {codec.PropSessionExpiry, propU32, "connect disconnect"},
	"authentication-method":        {codec.PropAuthMethod, propString, "connect auth"},
	"authentication-data":          {codec.PropAuthData, propBinary, "connect auth"},
	"request-problem-information":  {codec.PropRequestProblemInfo, propByte, "connect"},
	"will-delay-interval":          {codec.PropWillDelay, propU32, "will"},
	"request-response-information": {codec.PropRequestResponseInfo, propByte, "connect"},
	"server-reference":             {codec.PropServerReference, propString, "disconnect"},
	"reason-string":                {codec.PropReasonString, propString, "pubrel disconnect auth"},
	"receive-maximum":              {codec.PropReceiveMaximum, propU16, "connect"},
	"topic-alias-maximum":          {codec.PropTopicAliasMaximum, propU16, "connect"},
	"topic-alias":                  {codec.PropTopicAlias, propU16, "publish"},
	"user-property":                {codec.PropUserProperty, propPair, "connect publish pubrel subscribe unsubscribe disconnect auth will"},
	"maximum-packet-size":          {codec.PropMaximumPacketSize, propU32, "connect"},
}

var propCommands = "connect publish puback pubrec pubrel pubcomp subscribe unsubscribe disconnect auth will"

// parseProperty reads "-D command identifier [name] value" at args[i].
func parseProperty(args []string, i int) (property, int, error) {
	cmd, name := strings.ToLower(args[i+1]), args[i+2]
	if !hasWord(propCommands, cmd) {
		return property{}, i, usagef("Invalid command given in --property argument.\n")
	}
	spec, ok := propSpecs[name]
	if !ok {
		return property{}, i, usagef("Invalid property name given in --property argument.\n")
	}
	if !hasWord(spec.commands, cmd) {
		return property{}, i, usagef("%s property not allowed for %s in --property argument.\n", name, cmd)
	}
	p := property{command: cmd, id: spec.id}
	if spec.typ == propPair {
		if i+4 >= len(args) {
			return p, i, usagef("--property argument given but not enough arguments specified.\n")
		}
		p.name, p.value = args[i+3], args[i+4]
		return p, i + 4, nil
	}
	p.value = args[i+3]
	limit := map[propType]uint64{propByte: 0xFF, propU16: 0xFFFF, propU32: 0xFFFFFFFF, propVarint: 268435455}
	if max, numeric := limit[spec.typ]; numeric {
		n, err := strconv.ParseInt(p.value, 10, 64)
		if err != nil || n < 0 || uint64(n) > max {
			return p, i, usagef("Property value (%s) out of range for property %s.\n", p.value, name)
		}
		p.num = uint32(n)
	}
	return p, i + 3, nil
}

func hasWord(list, w string) bool {
	for _, f := range strings.Fields(list) {
		if f == w {
			return true
		}
	}
	return false
}

// propsFor collects the -D properties given for one command.
func (c *config) propsFor(cmd string) *codec.Properties {
	var out codec.Properties
	found := false
	for _, p := range c.props {
		if p.command != cmd {
			continue
		}
		found = true
		switch p.id {
		case codec.PropUserProperty:
			out.User = append(out.User, codec.UserProperty{Key: []byte(p.name), Value: []byte(p.value)})
			continue
		case codec.PropSubscriptionID:
			out.SubscriptionIDs = append(out.SubscriptionIDs, p.num)
			continue
		case codec.PropPayloadFormat:
			out.PayloadFormat = byte(p.num)
		case codec.PropMessageExpiry:
			out.MessageExpiry = p.num
		case codec.PropContentType:
			out.ContentType = []byte(p.value)
		case codec.PropResponseTopic:
			out.ResponseTopic = []byte(p.value)
		case codec.PropCorrelationData:
			out.CorrelationData = []byte(p.value)
		case codec.PropSessionExpiry:
			out.SessionExpiry = p.num
		case codec.PropAuthMethod:
			out.AuthMethod = []byte(p.value)
		case codec.PropAuthData:
			out.AuthData = []byte(p.value)
		case codec.PropRequestProblemInfo:
			out.RequestProblemInfo = byte(p.num)
		case codec.PropWillDelay:
			out.WillDelay = p.num
		case codec.PropRequestResponseInfo:
			out.RequestResponseInfo = byte(p.num)
		case codec.PropServerReference:
			out.ServerReference = []byte(p.value)
		case codec.PropReasonString:
			out.ReasonString = []byte(p.value)
		case codec.PropReceiveMaximum:
			out.ReceiveMaximum = uint16(p.num)
		case codec.PropTopicAliasMaximum:
			out.TopicAliasMaximum = uint16(p.num)
		case codec.PropTopicAlias:
			out.TopicAlias = uint16(p.num)
		case codec.PropMaximumPacketSize:
			out.MaximumPacketSize = p.num
		}
		out.Set(p.id)
	}
	if !found {
		return nil
	}
	return &out
}
