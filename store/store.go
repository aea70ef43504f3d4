// Package store keeps what must survive a restart or a crash: retained
// messages, persistent sessions with their subscriptions, their queued and
// inflight messages, and inbound QoS 2 packet ids awaiting PUBREL. It sits on
// an embedded, crash-safe key-value database and commits in groups: many
// publishers' changes share one sync. It knows nothing of sockets or
// sessions' rules: the session package describes changes as Batches.
package store

import (
	"fmt"
	"os"
	"time"

	"github.com/midge-mqtt/midge/codec"
)

// Message is an application message as stored.
type Message struct {
	Topic     []byte
	Payload   []byte
	QoS       byte
	Retain    bool
	Props     codec.Properties // forwarded v5 properties: payload format, content type, response topic, correlation data, user properties
	ExpiresAt int64            // unix nanoseconds; 0 = never
	// Source is who published a retained message, for check_retain_source
	// after a restart (nil: not kept, or not a retained record).
	Source *Source
}

// Source is the publisher of a retained message: its identity and the
// listener it came in on (whose ACLs apply to it under
// per_listener_settings).
type Source struct {
	ClientID    string
	Username    string
	HasUsername bool
	Listener    string
}

// Subscription is one subscription of a persistent session.
type Subscription struct {
	Filter            string // as subscribed, "$share/g/f" included
	QoS               byte
	NoLocal           bool
	RetainAsPublished bool
	RetainHandling    byte
	ID                uint32 // v5 subscription identifier, 0 = none
}

// Session is a persistent session's own record.
type Session struct {
	ClientID       string
	Version        byte   // protocol level of its last connection
	Expiry         uint32 // session expiry interval, seconds (math.MaxUint32: never)
	DisconnectedAt int64  // unix nanoseconds of the last disconnect; 0 while connected
	Subscriptions  []Subscription
	Will           *Message // the will to publish if the broker restarts while the client is away; nil = none
	WillDelay      uint32   // v5 will delay interval, seconds
	// The identity of its last client, which read ACLs check queued
	// messages against while it is away, also after a restart.
	Username    string
	HasUsername bool
	// LastID is the last packet id the broker used with the session (so
	// that ids go on from it after a restart, as mosquitto's do).
	LastID uint16
}

// Queued is one outgoing QoS 1/2 message of a persistent session, waiting in
// its queue (PacketID 0) or in flight.
type Queued struct {
	ClientID   string
	Seq        uint64 // order within the session's queue, unique per client id
	Msg        Message
	QoS        byte
	Retain     bool     // the RETAIN flag to send
	SubIDs     []uint32 // subscription identifiers to send
	PacketID   uint16   // 0 until sent
	PubrelSent bool     // QoS 2: PUBREC received, PUBREL sent, awaiting PUBCOMP
}

// SyncMode is persistence_sync: when a batch counts as durable.
type SyncMode int

const (
	// SyncAlways: a batch is durable once the database has synced it to disk.
	SyncAlways SyncMode = iota
	// SyncInterval: batches are written at once but synced every Interval;
	// a crash may lose the last Interval.
	SyncInterval
)

// Options configure Open.
type Options struct {
	Sync     SyncMode
	Interval time.Duration // SyncInterval's period (autosave_interval)
	// SyncEvery, with SyncInterval, syncs after this many changes
	// (records put or deleted) instead of every Interval: mosquitto's
	// autosave_on_changes. 0: by time.
	SyncEvery int
	// OnDurable is called (from the store's goroutine) after every commit
	// with the highest sequence number now durable. It must not block.
	OnDurable func(seq uint64)
	// MaxPending bounds the bytes submitted but not yet taken by the
	// committer; Submit waits (back-pressure) while it is exceeded, which
	// happens only when the disk cannot keep up. 0 means 64 MiB.
	MaxPending int
	// CommitDelay is how long the committer lets a group gather when the
	// last one, just committed, held several batches (many publishers at
	// once): fewer, larger commits mean fewer syncs and fewer wake-ups of
	// the clients whose acks wait, for at most this much more ack latency
	// under load. After a pause, or a small group, nothing waits.
	// 0 means 250µs; negative, none.
	CommitDelay time.Duration
	// ReadOnly opens an existing store without writing to it and without
	// taking its lock, so that `midge dump` can read a live broker's store.
	// Submit must not be called.
	ReadOnly bool
}

// Report lists what Load could not read.
type Report struct {
	Unreadable []string // one line per record or range that could not be decoded: key and reason
}

// Stats counts the store's work since Open.
type Stats struct {
	Batches uint64 // batches submitted
	Commits uint64 // database commits (one per group)
	Syncs   uint64 // syncs to disk
	// CommitTime is the time spent in commits (with their syncs under
	// SyncAlways): over Commits, the mean commit latency.
	CommitTime time.Duration
}

// Visitor receives the records Load reads. Each record is freshly allocated
// and the visitor may keep it. A nil function skips that kind.
type Visitor struct {
	Retained    func(m *Message)
	Session     func(s *Session)
	Queued      func(q *Queued)
	AwaitingRel func(clientID string, id uint16)
	Counter     func(name string, v uint64)
}

// MoveAside renames the store in dir, which Open refused, to
// dir.damaged-TIME and returns the new name, so that the broker can start
// with an empty store while the damaged files stay for inspection.
func MoveAside(dir string) (string, error) {
	to := fmt.Sprintf("%s.damaged-%s", dir, time.Now().UTC().Format("20060102T150405.000"))
	if err := os.Rename(dir, to); err != nil {
		return "", fmt.Errorf("store: %w", err)
	}
	return to, nil
}
