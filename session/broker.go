// Package session holds the broker's rules: per-client state (protocol level,
// inflight windows, packet ids, queues, will, keepalive and expiry), the
// session registry, and the handling of every MQTT packet. It is transport
// agnostic: a connection is a Transport, and replies go to an Output that the
// transport writes.
package session

import (
	"log"
	"math"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/trie"
)

// Options are the broker-wide limits and switches (mosquitto.conf names in comments).
type Options struct {
	MaxInflight        int    // max_inflight_messages: outgoing QoS 1/2 window per client (0 = 65535)
	MaxQueuedMessages  int    // max_queued_messages: per-client queue bound (0 = unbounded)
	MaxQueuedBytes     int    // max_queued_bytes (0 = unbounded)
	MaxPacketSize      int    // max_packet_size: largest inbound packet (0 = protocol limit)
	MessageSizeLimit   int    // message_size_limit: largest PUBLISH payload (0 = no limit)
	MaxKeepalive       uint16 // max_keepalive (0 = none; 65535 in mosquitto means none)
	MaxTopicAlias      uint16 // max_topic_alias: inbound topic aliases per v5 client
	RetainAvailable    bool   // retain_available
	AllowZeroLengthID  bool   // allow_zero_length_clientid
	AutoIDPrefix       string // auto_id_prefix
	PersistentExpiry   time.Duration
	ConnectionMessages bool // connection_messages: log connects and disconnects
	QueueQoS0          bool // queue_qos0_messages: queue QoS 0 for offline persistent sessions

	ClientIDPrefixes   string // clientid_prefixes: other client ids are refused
	UpgradeOutgoingQoS bool   // upgrade_outgoing_qos: deliver at the subscription's QoS
	MaxInflightBytes   int    // max_inflight_bytes: outgoing QoS 1/2 payload bytes in flight (0 = no limit)
	// CheckRetainSource is check_retain_source: a retained message is sent
	// to a new subscriber only while its publisher may still publish to
	// its topic (ACLs are re-read on SIGHUP).
	CheckRetainSource bool
	// MemoryLimit is memory_limit: while the heap is over it (see
	// Broker.SetOverMemory), an inbound PUBLISH is dropped and its client
	// disconnected, as mosquitto does when an allocation is refused.
	MemoryLimit bool
	// ResponseInfoPrefix is midge's response_information_prefix: a v5
	// client that sends Request Response Information = 1 gets this prefix
	// and its client id as Response Information ("": never, as mosquitto).
	ResponseInfoPrefix string

	// Auth decides CONNECT credentials and topic access; nil allows everything.
	Auth Authorizer

	Logger *log.Logger
	// SubscribeLog and UnsubscribeLog, when set, get a line per
	// (un)subscription, as mosquitto's log_type subscribe/unsubscribe.
	SubscribeLog, UnsubscribeLog *log.Logger
}

// DefaultOptions are mosquitto 2's defaults.
func DefaultOptions() Options {
	return Options{
		MaxInflight:        20,
		MaxQueuedMessages:  1000,
		MaxTopicAlias:      10,
		RetainAvailable:    true,
		AllowZeroLengthID:  true,
		AutoIDPrefix:       "auto-",
		ConnectionMessages: true,
		Logger:             log.New(os.Stderr, "", log.LstdFlags),
	}
}

// Policy is what a listener decides about its clients: mosquitto's
// per-listener security settings. Shared, read-only.
type Policy struct {
	Auth              Authorizer // nil allows everything
	AllowZeroLengthID bool       // allow_zero_length_clientid
	AutoIDPrefix      string     // auto_id_prefix
	MaxTopicAlias     uint16     // max_topic_alias: inbound topic aliases per v5 client

	// IdentityAsUsername is use_identity_as_username: the identity the
	// transport verified (a TLS client certificate's CN, see
	// Client.SetIdentity) is the username, and the CONNECT's username and
	// password are ignored and not checked, as in mosquitto. A client
	// without an identity is refused (bad username or password).
	IdentityAsUsername bool

	// Control takes PUBLISHes to $CONTROL/ topics that the client may
	// write (nil: they are acknowledged and dropped, as in mosquitto).
	Control ControlHandler
	// QoSLimited is set by max_qos below 2: MaxQoS is announced to v5
	// clients in CONNACK [MQTT-3.2.2-9], a higher PUBLISH QoS disconnects
	// the client, a higher will QoS refuses the CONNECT [MQTT-3.2.2-12],
	// and a higher subscription is granted at MaxQoS, as in mosquitto.
	QoSLimited bool
	MaxQoS     byte
	// UsernameAsClientID is use_username_as_clientid: the username is the
	// client id; a client without one is refused as not authorised.
	UsernameAsClientID bool
	// MountPoint is mount_point: prefixed to the topics the listener's
	// clients publish and subscribe to, and removed from what they receive.
	MountPoint string
	// Listener names the listener (its port) across restarts: a retained
	// message's publisher is checked again under its listener's policy
	// after one (check_retain_source, SetListenerPolicies).
	Listener string
}

// Authorizer checks credentials and topic access. Implementations must be
// safe for concurrent use.
type Authorizer interface {
	// Authenticate returns a v5 reason code: codec.Success, BadUsernameOrPassword or NotAuthorized.
	Authenticate(clientID string, username, password []byte, hasUsername, hasPassword bool) byte
	// Allow reports whether the client may publish to (write) or receive from
	// (read) topic, or subscribe to a filter (subscribe).
	Allow(c *ClientInfo, topic string, access Access) bool
}

// ReadAsker is an Authorizer whose answers to read questions (deliveries)
// may need I/O. A delivery never waits for one: AskRead answers Wait while it
// fetches the answer, and calls wake (when not nil) once the answer is in,
// so that the message, queued meanwhile, is asked about again and sent or
// dropped: nothing a subscriber may read is lost for want of an answer.
// Implementations must be safe for concurrent use; wake may be called from
// any goroutine and must not be called during AskRead.
type ReadAsker interface {
	AskRead(c *ClientInfo, topic string, wake func()) Decision
}

// Access is the kind of topic access checked by an Authorizer.
type Access int

const (
	AccessRead Access = iota + 1
	AccessWrite
	AccessSubscribe
	// AccessUnsubscribe is asked only of an Asker (dynamic security's
	// unsubscribe ACLs); Allow is never asked it.
	AccessUnsubscribe
)

// ClientInfo identifies a connected client to an Authorizer.
type ClientInfo struct {
	ClientID    string
	Username    string
	HasUsername bool
}

// Stats are the broker's counters, read by $SYS and metrics. All atomic.
type Stats struct {
	ClientsConnected  atomic.Int64
	ClientsTotal      atomic.Int64 // sessions known, connected or not
	ClientsMaximum    atomic.Int64
	ClientsExpired    atomic.Int64
	MessagesReceived  atomic.Int64 // all packets received
	MessagesSent      atomic.Int64
	PublishReceived   atomic.Int64
	PublishSent       atomic.Int64
	PublishDropped    atomic.Int64
	DuplicatesDropped atomic.Int64 // second copies of a message cut after a cluster takeover (SetDedupWindow)
	PublishBytesRecv  atomic.Int64 // payload bytes of PUBLISH received
	PublishBytesSent  atomic.Int64
	BytesReceived     atomic.Int64 // all bytes, counted by the transport
	BytesSent         atomic.Int64
	RetainedMessages  atomic.Int64
	ConnectionsOpened atomic.Int64 // sockets accepted, ever
	Connects          atomic.Int64 // CONNECTs accepted, ever
	LoopsDropped      atomic.Int64 // messages that came back over a bridge (via.go)

	// Auth decisions (auth.Authorizer), and the answers of auth services
	// served from their cache or asked for.
	AuthAllowed     atomic.Int64
	AuthDenied      atomic.Int64
	AuthErrors      atomic.Int64
	AuthCacheHits   atomic.Int64
	AuthCacheMisses atomic.Int64
}

// Broker is the state shared by all connections: subscriptions, retained
// messages, the session registry, limits and counters. Safe for concurrent use.
type Broker struct {
	opts     Options
	subs     *trie.Trie
	retained *trie.Retained[*Message]
	retainMu sync.Mutex // serialises retained replace/clear so that old values are released once

	registry registry
	persist  persistence
	cluster  Cluster // nil on a single node

	// nil unless sessions are cluster-wide (handover.go)
	sessions SessionCluster
	// dedupWindow (ns): how long a session handed over from another node
	// takes each forward id once (dedup.go); 0: never.
	dedupWindow atomic.Int64

	extraStats  []func() []Stat        // cluster.go
	durableHook atomic.Pointer[func()] // persist.go: SetDurableHook

	// Queue lengths past which a publisher is slowed (see Session.deliver).
	softQueue int
	softBytes int
	policy    Policy // for clients whose transport names none
	// listenerPolicies are the listeners' policies by Policy.Listener
	// (SetListenerPolicies); read-only once set.
	listenerPolicies map[string]*Policy
	timers           timers
	Stats            Stats
	started          time.Time

	id         string      // this run's identity for bridges' loop guard (via.go)
	overMemory atomic.Bool // the heap is over memory_limit
}

// SetOverMemory tells the broker whether the heap is over memory_limit
// (Options.MemoryLimit). Any goroutine.
func (b *Broker) SetOverMemory(over bool) { b.overMemory.Store(over) }

// NewBroker makes a broker with the given options.
func NewBroker(opts Options) *Broker {
	if opts.MaxInflight <= 0 || opts.MaxInflight > math.MaxUint16 {
		opts.MaxInflight = math.MaxUint16
	}
	if opts.Logger == nil {
		opts.Logger = log.New(os.Stderr, "", log.LstdFlags)
	}
	if opts.AutoIDPrefix == "" {
		opts.AutoIDPrefix = "auto-"
	}
	b := &Broker{
		opts:     opts,
		subs:     trie.New(trie.Config{CacheSize: 4096}),
		retained: trie.NewRetained[*Message](),
		started:  time.Now(),
		id:       newBrokerID(),
	}
	b.softQueue, b.softBytes = 1000, opts.MaxQueuedBytes/2
	if opts.MaxQueuedMessages > 0 {
		b.softQueue = max(opts.MaxQueuedMessages/2, 1)
	}
	b.policy = Policy{Auth: opts.Auth, AllowZeroLengthID: opts.AllowZeroLengthID,
		AutoIDPrefix: opts.AutoIDPrefix, MaxTopicAlias: opts.MaxTopicAlias}
	b.timers.init()
	return b
}

// Options returns the broker's options.
func (b *Broker) Options() *Options { return &b.opts }

// Subscriptions is the subscription count (for $SYS).
func (b *Broker) Subscriptions() int { return b.subs.Count() }

// Uptime is the time since the broker was made.
func (b *Broker) Uptime() time.Duration { return time.Since(b.started) }

func (b *Broker) logf(format string, args ...any) { b.opts.Logger.Printf(format, args...) }

// Tick advances the broker's timers (will delays, session expiry). It is
// called about once a second from any goroutine (the transport's ticker).
func (b *Broker) Tick(now time.Time) {
	b.timers.fire(now.UnixNano(), b)
}

// Publish injects a message as if published by the broker itself (wills,
// $SYS). topic must be valid; the payload is copied.
func (b *Broker) Publish(topic string, payload []byte, qos byte, retain bool) {
	var p codec.Packet
	p.Type, p.QoS, p.Retain = codec.PUBLISH, qos, retain
	p.Topic, p.Payload = []byte(topic), payload
	var r trie.Result
	pb := b.newBatch()
	_, _, _, _ = b.route(nil, p.Topic, &p, &r, time.Now().UnixNano(), pb, nil)
	b.submit(pb)
}
