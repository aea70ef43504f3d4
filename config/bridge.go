package config

import (
	"fmt"
	"net"
	"os"
	"reflect"
	"strconv"
	"strings"

	"github.com/midge-mqtt/midge/trie"
)

// Bridge is one `connection` block: a client of a remote broker that moves
// messages between it and this one. Defaults are mosquitto 2.0's (its code,
// where the man page differs: the remote client id is
// `<hostname>.<connection name>`, and restart_timeout is a jittered backoff
// with base 5 and cap 30).
type Bridge struct {
	Pos  Pos // the `connection` line
	Name string

	Addresses  []BridgeAddress // address / addresses, in order
	RoundRobin bool

	Topics []BridgeTopic

	// ProtocolVersion is the MQTT level: 3 (mqttv31), 4 (mqttv311, the
	// default) or 5 (mqttv50).
	ProtocolVersion   byte
	CleanSession      bool // default false
	LocalCleanSession bool // default: CleanSession
	KeepAlive         int  // seconds, default 60, at least 5

	StartType   string // "automatic" (default), "lazy" or "once"
	Threshold   int    // lazy: queued messages that start the bridge, default 10
	IdleTimeout int    // lazy: idle seconds before it stops, default 60

	// RestartBase and RestartCap are restart_timeout in seconds: with
	// RestartCap 0, a constant delay of RestartBase; otherwise a
	// "decorrelated jitter" backoff from RestartBase up to RestartCap.
	RestartBase int
	RestartCap  int

	Notifications          bool   // default true
	NotificationsLocalOnly bool   // default false
	NotificationTopic      string // default $SYS/broker/connection/<remote client id>/state

	RemoteClientID string
	LocalClientID  string // default local.<remote client id>
	RemoteUsername string
	RemotePassword string
	HasRemoteUser  bool
	HasRemotePass  bool
	LocalUsername  string
	LocalPassword  string
	HasLocalUser   bool
	HasLocalPass   bool

	TryPrivate         bool // default true
	AttemptUnsubscribe bool // default true
	OutgoingRetain     bool // default true
	MaxPacketSize      int  // bytes sent to the remote; 0: no limit
	BindAddress        string
	// SessionExpiry is bridge_session_expiry_interval (mosquitto 2.1's key):
	// the session expiry a v5 bridge asks the remote for. 0, the default,
	// sends none, as mosquitto 2.0.11 does (the remote then ends the
	// bridge's session when its connection ends); 4294967295 never expires.
	SessionExpiry uint32
	// LoopGuard is bridge_loop_guard (midge's key, default false): a v5
	// bridge marks what it forwards with a midge-via user property naming
	// its broker, and a midge that gets a message naming itself back drops
	// it, so that loops of bridges stay quiet. Off by default: the remote's
	// subscribers would see the property, which mosquitto does not add.
	LoopGuard bool

	CAFile, CAPath, CertFile, KeyFile string
	Insecure                          bool
	TLSVersion                        string // "", "tlsv1.1", "tlsv1.2", "tlsv1.3"
	ALPN                              string

	localCleanSet bool
	clientIDAt    *Pos // where remote_clientid was set, for duplicate errors
	localIDAt     *Pos
}

// TLS reports whether the bridge connects with TLS (a CA is given).
func (b *Bridge) TLS() bool { return b.CAFile != "" || b.CAPath != "" }

// BridgeAddress is one remote host and port (1883 when not given).
type BridgeAddress struct {
	Host string
	Port int
}

func (a BridgeAddress) String() string { return net.JoinHostPort(a.Host, strconv.Itoa(a.Port)) }

// BridgeTopic is one `topic` line of a bridge.
type BridgeTopic struct {
	Pattern      string // may be empty when both prefixes are set
	Direction    string // "in", "out" or "both"
	QoS          byte
	LocalPrefix  string
	RemotePrefix string
}

// LocalTopic is the filter on the local side: local prefix + pattern.
func (t *BridgeTopic) LocalTopic() string { return t.LocalPrefix + t.Pattern }

// RemoteTopic is the filter on the remote side: remote prefix + pattern.
func (t *BridgeTopic) RemoteTopic() string { return t.RemotePrefix + t.Pattern }

// In and Out report the directions the topic moves messages in.
func (t *BridgeTopic) In() bool  { return t.Direction == "in" || t.Direction == "both" }
func (t *BridgeTopic) Out() bool { return t.Direction == "out" || t.Direction == "both" }

func newBridge(pos Pos, name string) *Bridge {
	return &Bridge{Pos: pos, Name: name, ProtocolVersion: 4, KeepAlive: 60, StartType: "automatic",
		Threshold: 10, IdleTimeout: 60, RestartBase: 5, RestartCap: 30, Notifications: true,
		TryPrivate: true, AttemptUnsubscribe: true, OutgoingRetain: true}
}

// bridgeHandlers are the keys that configure the current `connection` block.
var bridgeHandlers = map[string]func(b *Bridge, l *line) error{
	"address":   (*Bridge).addressKey,
	"addresses": (*Bridge).addressKey,
	"topic":     (*Bridge).topicKey,
	"bridge_protocol_version": func(b *Bridge, l *line) error {
		v, err := l.one()
		if err != nil {
			return err
		}
		switch v {
		case "mqttv31":
			b.ProtocolVersion = 3
		case "mqttv311":
			b.ProtocolVersion = 4
		case "mqttv50":
			b.ProtocolVersion = 5
		default:
			return l.errorf("expected mqttv31, mqttv311 or mqttv50, got %q", v)
		}
		return nil
	},
	"round_robin":  bridgeBool(func(b *Bridge, v bool) { b.RoundRobin = v }),
	"cleansession": bridgeBool(func(b *Bridge, v bool) { b.CleanSession = v }),
	"local_cleansession": bridgeBool(func(b *Bridge, v bool) {
		b.LocalCleanSession, b.localCleanSet = v, true
	}),
	"keepalive_interval": func(b *Bridge, l *line) error {
		n, err := l.intRange(0, 65535)
		b.KeepAlive = max(int(n), 5) // mosquitto raises lower values to 5
		return err
	},
	"start_type": func(b *Bridge, l *line) error {
		v, err := l.one()
		if err == nil && v != "automatic" && v != "lazy" && v != "once" {
			err = l.errorf("expected automatic, lazy or once, got %q", v)
		}
		if err == nil {
			b.StartType = v
		}
		return err
	},
	"threshold":    bridgeInt(func(b *Bridge, n int) { b.Threshold = n }, 1),
	"idle_timeout": bridgeInt(func(b *Bridge, n int) { b.IdleTimeout = n }, 1),
	"restart_timeout": func(b *Bridge, l *line) error {
		f := strings.Fields(l.value)
		if len(f) == 0 || len(f) > 2 {
			return l.errorf("expected a delay in seconds, or a base and a cap, got %q", l.value)
		}
		var n [2]int
		for i, s := range f {
			v, err := strconv.Atoi(s)
			if err != nil || v < 1 {
				return l.errorf("expected a positive number of seconds, got %q", s)
			}
			n[i] = v
		}
		if len(f) == 2 && n[1] < n[0] {
			return l.errorf("the cap (%d) is lower than the base (%d)", n[1], n[0])
		}
		b.RestartBase, b.RestartCap = n[0], n[1]
		return nil
	},
	"notifications":            bridgeBool(func(b *Bridge, v bool) { b.Notifications = v }),
	"notifications_local_only": bridgeBool(func(b *Bridge, v bool) { b.NotificationsLocalOnly = v }),
	"notification_topic": func(b *Bridge, l *line) error {
		v, err := l.one()
		if err == nil && trie.ValidTopic(v) != nil {
			err = l.errorf("expected a topic without wildcards, got %q", v)
		}
		b.NotificationTopic = v
		return err
	},
	"remote_clientid": (*Bridge).remoteIDKey,
	"clientid":        (*Bridge).remoteIDKey,
	"local_clientid": func(b *Bridge, l *line) error {
		v, err := l.one()
		b.LocalClientID, b.localIDAt = v, &l.pos
		return err
	},
	"remote_username": bridgeStr(func(b *Bridge, v string) { b.RemoteUsername, b.HasRemoteUser = v, true }),
	"username":        bridgeStr(func(b *Bridge, v string) { b.RemoteUsername, b.HasRemoteUser = v, true }),
	"remote_password": bridgeStr(func(b *Bridge, v string) { b.RemotePassword, b.HasRemotePass = v, true }),
	"password":        bridgeStr(func(b *Bridge, v string) { b.RemotePassword, b.HasRemotePass = v, true }),
	"local_username":  bridgeStr(func(b *Bridge, v string) { b.LocalUsername, b.HasLocalUser = v, true }),
	"local_password":  bridgeStr(func(b *Bridge, v string) { b.LocalPassword, b.HasLocalPass = v, true }),

	"try_private":                bridgeBool(func(b *Bridge, v bool) { b.TryPrivate = v }),
	"bridge_attempt_unsubscribe": bridgeBool(func(b *Bridge, v bool) { b.AttemptUnsubscribe = v }),
	"bridge_outgoing_retain":     bridgeBool(func(b *Bridge, v bool) { b.OutgoingRetain = v }),
	"bridge_loop_guard":          bridgeBool(func(b *Bridge, v bool) { b.LoopGuard = v }),
	"bridge_max_packet_size":     bridgeInt(func(b *Bridge, n int) { b.MaxPacketSize = n }, 0),
	"bridge_session_expiry_interval": func(b *Bridge, l *line) error {
		n, err := l.intRange(0, 1<<32-1)
		b.SessionExpiry = uint32(n)
		return err
	},
	"bridge_bind_address": func(b *Bridge, l *line) error {
		v, err := l.one()
		if err == nil && net.ParseIP(v) == nil {
			err = l.errorf("expected an IP address, got %q", v)
		}
		b.BindAddress = v
		return err
	},

	"bridge_cafile":   bridgeStr(func(b *Bridge, v string) { b.CAFile = v }),
	"bridge_capath":   bridgeStr(func(b *Bridge, v string) { b.CAPath = v }),
	"bridge_certfile": bridgeStr(func(b *Bridge, v string) { b.CertFile = v }),
	"bridge_keyfile":  bridgeStr(func(b *Bridge, v string) { b.KeyFile = v }),
	"bridge_insecure": bridgeBool(func(b *Bridge, v bool) { b.Insecure = v }),
	"bridge_alpn":     bridgeStr(func(b *Bridge, v string) { b.ALPN = v }),
	"bridge_tls_version": func(b *Bridge, l *line) error {
		v, err := l.one()
		if err == nil && v != "tlsv1.1" && v != "tlsv1.2" && v != "tlsv1.3" {
			err = l.errorf("expected tlsv1.3, tlsv1.2 or tlsv1.1, got %q", v)
		}
		b.TLSVersion = v
		return err
	},
	"bridge_identity": refusePSK,
	"bridge_psk":      refusePSK,
	"bridge_require_ocsp": func(b *Bridge, l *line) error {
		v, err := l.boolean()
		if err == nil && v {
			err = l.errorf("not supported by midge (OCSP)")
		}
		return err
	},
}

func refusePSK(*Bridge, *line) error {
	return &Error{Msg: "not supported by midge (TLS-PSK bridges)"}
}

func bridgeBool(set func(*Bridge, bool)) func(*Bridge, *line) error {
	return func(b *Bridge, l *line) error {
		v, err := l.boolean()
		if err == nil {
			set(b, v)
		}
		return err
	}
}

func bridgeInt(set func(*Bridge, int), min int64) func(*Bridge, *line) error {
	return func(b *Bridge, l *line) error {
		n, err := l.intRange(min, maxInt)
		if err == nil {
			set(b, int(n))
		}
		return err
	}
}

func bridgeStr(set func(*Bridge, string)) func(*Bridge, *line) error {
	return func(b *Bridge, l *line) error {
		v, err := l.one()
		if err == nil {
			set(b, v)
		}
		return err
	}
}

// bridgeKey applies a bridge key, or reports that it is not one. A bridge key
// outside a `connection` block is an error.
func (p *parser) bridgeKey(l *line) (bool, error) {
	if l.key == "connection" {
		return true, p.connectionKey(l)
	}
	h, ok := bridgeHandlers[l.key]
	if !ok {
		return false, nil
	}
	if p.bridge == nil {
		return true, l.errorf("only valid inside a bridge (after a `connection` line)")
	}
	err := h(p.bridge, l)
	if e, ok := err.(*Error); ok && e.Key == "" { // refusePSK knows no line
		e.Pos, e.Key = l.pos, l.key
	}
	return true, err
}

func (p *parser) connectionKey(l *line) error {
	name, err := l.one()
	if err != nil {
		return err
	}
	for _, b := range p.c.Bridges {
		if b.Name == name {
			return l.errorf("connection %q is already defined at %s", name, b.Pos)
		}
	}
	p.bridge = newBridge(l.pos, name)
	p.c.Bridges = append(p.c.Bridges, p.bridge)
	return nil
}

func (b *Bridge) remoteIDKey(l *line) error {
	v, err := l.one()
	b.RemoteClientID, b.clientIDAt = v, &l.pos
	return err
}

// addressKey reads `address HOST[:PORT] ...`. The port follows the last
// colon; an IPv6 address therefore needs one, as the man page says.
func (b *Bridge) addressKey(l *line) error {
	if len(b.Addresses) > 0 {
		return l.errorf("this bridge already has its addresses")
	}
	f := strings.Fields(l.value)
	if len(f) == 0 {
		return l.errorf("missing value")
	}
	for _, a := range f {
		host, port := a, 1883
		if i := strings.LastIndexByte(a, ':'); i >= 0 {
			n, err := strconv.Atoi(a[i+1:])
			if err != nil || n < 1 || n > 65535 {
				return l.errorf("invalid port in %q", a)
			}
			host, port = a[:i], n
			host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
		}
		if host == "" {
			return l.errorf("missing host in %q", a)
		}
		b.Addresses = append(b.Addresses, BridgeAddress{Host: host, Port: port})
	}
	return nil
}

// topicKey reads `topic PATTERN [in|out|both [QOS [LOCAL_PREFIX [REMOTE_PREFIX]]]]`,
// where "" stands for an empty word.
func (b *Bridge) topicKey(l *line) error {
	f := strings.Fields(l.value)
	if len(f) == 0 {
		return l.errorf("missing value")
	}
	if len(f) > 5 {
		return l.errorf("expected at most PATTERN DIRECTION QOS LOCAL_PREFIX REMOTE_PREFIX, got %q", l.value)
	}
	word := func(i int) string {
		if i >= len(f) || f[i] == `""` {
			return ""
		}
		return f[i]
	}
	t := BridgeTopic{Pattern: word(0), Direction: "out"}
	if len(f) > 1 {
		t.Direction = f[1]
		if t.Direction != "in" && t.Direction != "out" && t.Direction != "both" {
			return l.errorf("expected in, out or both, got %q", t.Direction)
		}
	}
	if len(f) > 2 {
		q, err := strconv.Atoi(f[2])
		if err != nil || q < 0 || q > 2 {
			return l.errorf("expected a QoS of 0, 1 or 2, got %q", f[2])
		}
		t.QoS = byte(q)
	}
	t.LocalPrefix, t.RemotePrefix = word(3), word(4)
	for _, pre := range []string{t.LocalPrefix, t.RemotePrefix} {
		if strings.ContainsAny(pre, "+#") {
			return l.errorf("a prefix may not hold a wildcard, got %q", pre)
		}
	}
	if t.Pattern == "" && (t.LocalPrefix == "" || t.RemotePrefix == "") {
		return l.errorf("an empty pattern needs both a local and a remote prefix")
	}
	for _, f := range []string{t.LocalTopic(), t.RemoteTopic()} {
		if err := trie.ValidFilter(f); err != nil {
			return l.errorf("%q: %v", f, strings.TrimPrefix(err.Error(), "trie: "))
		}
	}
	b.Topics = append(b.Topics, t)
	return nil
}

// finishBridges checks each bridge as a whole and fills the defaults that
// depend on other keys. hostname is the default remote client id's prefix.
func (p *parser) finishBridges() error {
	hostname, _ := os.Hostname()
	locals := map[string]*Bridge{}
	for _, b := range p.c.Bridges {
		if len(b.Addresses) == 0 {
			return &Error{Pos: b.Pos, Key: "connection", Msg: fmt.Sprintf("bridge %q has no address", b.Name)}
		}
		if len(b.Topics) == 0 {
			return &Error{Pos: b.Pos, Key: "connection", Msg: fmt.Sprintf("bridge %q has no topic", b.Name)}
		}
		if !b.localCleanSet {
			b.LocalCleanSession = b.CleanSession
		}
		if b.RemoteClientID == "" {
			b.RemoteClientID = hostname + "." + b.Name
		}
		if b.LocalClientID == "" {
			b.LocalClientID = "local." + b.RemoteClientID
		}
		if b.NotificationTopic == "" {
			b.NotificationTopic = "$SYS/broker/connection/" + b.RemoteClientID + "/state"
		}
		if b.HasRemotePass && !b.HasRemoteUser && b.ProtocolVersion != 5 {
			return &Error{Pos: b.Pos, Key: "remote_password", Msg: "needs remote_username (MQTT 3.x)"}
		}
		if (b.CertFile == "") != (b.KeyFile == "") {
			return &Error{Pos: b.Pos, Key: "connection", Msg: "bridge_certfile and bridge_keyfile must be given together"}
		}
		if (b.CertFile != "" || b.Insecure || b.TLSVersion != "" || b.ALPN != "") && !b.TLS() {
			return &Error{Pos: b.Pos, Key: "connection", Msg: "bridge TLS settings need bridge_cafile or bridge_capath"}
		}
		pos := b.Pos
		if b.localIDAt != nil {
			pos = *b.localIDAt
		}
		if prev := locals[b.LocalClientID]; prev != nil {
			return &Error{Pos: pos, Key: "local_clientid", Msg: fmt.Sprintf("%q is also the local client id of bridge %q (%s)",
				b.LocalClientID, prev.Name, prev.Pos)}
		}
		locals[b.LocalClientID] = b
	}
	return nil
}

// Same reports whether two bridges are configured alike, wherever their
// lines are: a reload restarts only the bridges that changed.
func (b *Bridge) Same(o *Bridge) bool {
	x, y := *b, *o
	x.Pos, y.Pos = Pos{}, Pos{}
	x.clientIDAt, x.localIDAt, y.clientIDAt, y.localIDAt = nil, nil, nil, nil
	return reflect.DeepEqual(x, y)
}
