// Package bridge runs mosquitto.conf's `connection` blocks: each is a
// client of a remote broker (midge's client package) with an in-process
// client of the local broker (the session package), joined by one goroutine
// per bridge. Nothing of it runs on an event loop, so a slow or dead remote
// never stalls local traffic, and nothing of it exists when no bridge is
// configured.
package bridge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/midge-mqtt/midge/client"
	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/config"
	"github.com/midge-mqtt/midge/session"
)

// Stats are one bridge's counters, for $SYS and /metrics. All atomic.
type Stats struct {
	Connected   atomic.Bool
	Connects    atomic.Int64 // successful connections to the remote
	MsgsOut     atomic.Int64 // messages sent to the remote
	BytesOut    atomic.Int64 // their payload bytes
	MsgsIn      atomic.Int64 // messages received from the remote
	BytesIn     atomic.Int64
	Dropped     atomic.Int64 // too large for the remote, or unmapped
	Duplicates  atomic.Int64 // messages resent to the remote after a reconnect
	AddressUsed atomic.Int32 // index of the address connected to (or last tried)
}

// Bridge is one running `connection` block.
type Bridge struct {
	cfg    *config.Bridge
	broker *session.Broker
	log    *log.Logger
	local  *local
	Stats  Stats

	stop    chan struct{}
	stopped chan struct{}
	ctx     context.Context // ends at Stop: nothing waits on the remote past it
	cancel  context.CancelFunc
	end     atomic.Bool // on stop, discard the local session (the bridge was removed)

	// What the last attempts learned about the remote; only the run
	// goroutine touches these.
	version    byte // 5 falls back to 4 when the remote refuses v5
	tryPrivate bool // off once the remote refused the bridge bit
	addr       int  // index into cfg.Addresses
	delay      time.Duration

	last atomic.Int64 // unix ns of the last message either way (lazy bridges)
	// echo is set for the connections that can get their own messages
	// back (3.x without try_private); see echoes.
	echo atomic.Pointer[echoes]

	mu sync.Mutex
	rc *client.Client // the current remote connection

	// prev is the client of the last connection attempt: the next one takes
	// its session over (client.TakeSession), so that packet ids go on and
	// what was in flight to the remote is resent with DUP and the same ids,
	// as mosquitto's bridge does. Only the run goroutine touches it.
	prev *client.Client
	// sent follows the messages forwarded to the remote until no copy the
	// local session resends can be taken for a new one.
	sent *sentTable
}

// New makes the bridge for cfg; Start runs it.
func New(cfg *config.Bridge, b *session.Broker, logger *log.Logger) *Bridge {
	if logger == nil {
		logger = log.New(io.Discard, "", 0)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Bridge{cfg: cfg, broker: b, log: logger, local: newLocal(b, cfg.Name),
		stop: make(chan struct{}), stopped: make(chan struct{}), ctx: ctx, cancel: cancel,
		version: cfg.ProtocolVersion, tryPrivate: cfg.TryPrivate, sent: newSentTable()}
}

// Name is the connection's name.
func (br *Bridge) Name() string { return br.cfg.Name }

// Config is the bridge's configuration.
func (br *Bridge) Config() *config.Bridge { return br.cfg }

// Queued is the number of messages waiting in the bridge's local session.
func (br *Bridge) Queued() int { return br.broker.Queued(br.cfg.LocalClientID) }

// Start opens the local session (so that what is published for the remote
// is kept from now on) and starts connecting.
func (br *Bridge) Start() error {
	c := br.cfg
	// The local session is made (or, with local_cleansession false, resumed
	// from the store) at once, with its subscriptions; it waits offline for
	// the remote. Retained messages are sent on each connection, not here.
	if err := br.local.connect(c.LocalClientID, c.LocalUsername, c.LocalPassword, c.HasLocalUser, c.HasLocalPass,
		c.LocalCleanSession, math.MaxUint32, 1, false); err != nil {
		return err
	}
	if err := br.subscribeLocal(false); err != nil {
		br.local.close()
		return err
	}
	br.local.close()
	br.notifyLocal(false)
	go br.run()
	return nil
}

// Stop disconnects the bridge and waits for its goroutine. With discard, its
// local session is ended too (the bridge was removed from the configuration).
func (br *Bridge) Stop(discard bool) {
	br.end.Store(discard)
	select {
	case <-br.stop:
	default:
		close(br.stop)
	}
	br.cancel()
	// A remote that stopped reading would hold a write forever: closing the
	// connection ends it (a clean DISCONNECT was tried first by serve, unless
	// it is the one blocked).
	go func() {
		select {
		case <-br.stopped:
		case <-time.After(2 * time.Second):
			br.mu.Lock()
			if br.rc != nil {
				br.rc.Close()
			}
			br.mu.Unlock()
		}
	}()
	<-br.stopped
}

// subscribeLocal (re)makes the out subscriptions of the local session, and
// with retained, has the matching retained messages sent once each
// (mosquitto sends them once per overlapping topic line: #2248).
func (br *Bridge) subscribeLocal(retained bool) error {
	var filters []string
	var qos []byte
	for i := range br.cfg.Topics {
		if t := &br.cfg.Topics[i]; t.Out() {
			filters = append(filters, t.LocalTopic())
			qos = append(qos, t.QoS)
		}
	}
	if err := br.local.subscribe(filters, qos, 2); err != nil {
		return err
	}
	if retained {
		br.local.sendRetained(filters, qos)
	}
	return nil
}

// notifyLocal publishes the bridge's state ("1" connected, "0" not) as a
// retained message on the local broker.
func (br *Bridge) notifyLocal(up bool) {
	if !br.cfg.Notifications {
		return
	}
	br.broker.Publish(br.cfg.NotificationTopic, stateBytes(up), 1, true)
}

func stateBytes(up bool) []byte {
	if up {
		return []byte("1")
	}
	return []byte("0")
}

// run connects, serves and reconnects until Stop.
func (br *Bridge) run() {
	defer close(br.stopped)
	defer func() {
		if br.end.Load() {
			c := br.cfg
			br.local.end(c.LocalClientID, c.LocalUsername, c.LocalPassword, c.HasLocalUser, c.HasLocalPass)
		}
	}()
	c := br.cfg
	if c.StartType == "lazy" && !br.waitForThreshold() {
		return
	}
	for {
		err := br.session()
		br.Stats.Connected.Store(false)
		if br.stopping() {
			return
		}
		if err != nil {
			br.log.Printf("Bridge %s: %v", c.Name, err)
		}
		switch c.StartType {
		case "once":
			br.log.Printf("Bridge %s: start_type once: not restarting.", c.Name)
			<-br.stop
			return
		case "lazy":
			if !br.waitForThreshold() {
				return
			}
			continue
		}
		if !br.sleep(br.nextDelay()) {
			return
		}
	}
}

func (br *Bridge) stopping() bool {
	select {
	case <-br.stop:
		return true
	default:
		return false
	}
}

// sleep waits d, or returns false at Stop.
func (br *Bridge) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-br.stop:
		return false
	}
}

// nextDelay is restart_timeout: constant, or mosquitto's "decorrelated
// jitter" between the base and three times the last delay, up to the cap.
func (br *Bridge) nextDelay() time.Duration {
	base := time.Duration(br.cfg.RestartBase) * time.Second
	if br.cfg.RestartCap == 0 {
		return base
	}
	capd := time.Duration(br.cfg.RestartCap) * time.Second
	prev := br.delay
	if prev < base {
		prev = base
	}
	d := base + time.Duration(rand.Int64N(int64(3*prev-base)+1))
	br.delay = min(d, capd)
	return br.delay
}

// waitForThreshold is the lazy start type: it returns true once the local
// session holds threshold messages for the remote (false at Stop).
func (br *Bridge) waitForThreshold() bool {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		if br.Queued() >= br.cfg.Threshold {
			return true
		}
		select {
		case <-t.C:
		case <-br.stop:
			return false
		}
	}
}

// session is one connection to the remote: connect (trying each address
// once), serve until it is lost, and take the local side offline again.
func (br *Bridge) session() error {
	rc, err := br.connectAny()
	if err != nil {
		return err
	}
	defer func() {
		// The remote's reader may still be handling an acknowledgement
		// read before the connection ended: it is given to the local
		// session while that is online, rather than owed (sentTable) to a
		// next connection that a Stop would never make.
		_ = rc.Close()
		select {
		case <-rc.ReaderDone():
		case <-time.After(2 * time.Second):
			br.log.Printf("Bridge %s: the remote connection's reader did not end within 2s.", br.cfg.Name)
		}
		br.local.close()
		br.notifyLocal(false)
		br.mu.Lock()
		br.rc = nil
		br.mu.Unlock()
	}()
	return br.serve(rc)
}

// connectAny tries the addresses from the current one on, each once, as
// round_robin and failover want: the next attempt starts where this one
// stopped.
func (br *Bridge) connectAny() (*client.Client, error) {
	n := len(br.cfg.Addresses)
	var last error
	for i := 0; i < n; i++ {
		if br.stopping() {
			return nil, errors.New("stopped")
		}
		rc, err := br.dial(br.addr)
		if err == nil {
			return rc, nil
		}
		last = fmt.Errorf("connecting to %s: %w", br.cfg.Addresses[br.addr], err)
		if n > 1 {
			br.log.Printf("Bridge %s: %v", br.cfg.Name, last)
		}
		br.addr = (br.addr + 1) % n
	}
	return nil, last
}

// dial connects to address i, falling back from v5 to 3.1.1, and from the
// bridge bit to none, when the remote refuses them.
func (br *Bridge) dial(i int) (*client.Client, error) {
	br.Stats.AddressUsed.Store(int32(i))
	for {
		rc := br.newRemote(br.cfg.Addresses[i].String())
		ctx, cancel := context.WithTimeout(br.ctx, br.connectTimeout()) // Stop ends an attempt
		err := rc.Connect(ctx)
		cancel()
		if err == nil {
			return rc, nil
		}
		br.broker.Connecting(br.cfg.LocalClientID, false)
		var ce *client.ConnackError
		refusedLevel := errors.As(err, &ce) && (ce.Code == codec.ConnRefusedProtocolVersion || ce.Code == codec.UnsupportedProtocolVersion)
		// An old server may also close the connection, or answer in a form
		// the newer level cannot read.
		var cdErr *codec.Error
		lostEarly := errors.Is(err, client.ErrConnectionLost) || errors.As(err, &cdErr)
		switch {
		case br.version == codec.Version5 && (refusedLevel || lostEarly):
			br.log.Printf("Bridge %s: the remote refused MQTT 5; using 3.1.1.", br.cfg.Name)
			br.version = codec.Version311
		case br.tryPrivate && br.version != codec.Version5 && (refusedLevel || lostEarly):
			br.log.Printf("Bridge %s: the remote refused try_private; connecting as a plain client.", br.cfg.Name)
			br.tryPrivate = false
		default:
			return nil, err
		}
	}
}

// connectTimeout bounds one connection attempt (TCP, TLS, CONNACK): a remote
// that accepts and never answers is given up on.
func (br *Bridge) connectTimeout() time.Duration {
	return time.Duration(min(max(br.cfg.KeepAlive, 5), 30)) * time.Second
}

// serve runs a connected session: local side online, subscriptions on both
// sides, messages pumped until the remote is lost or Stop.
func (br *Bridge) serve(rc *client.Client) error {
	c := br.cfg
	br.mu.Lock()
	br.rc = rc
	br.mu.Unlock()
	ack := rc.Connack()
	window := br.window(&ack)
	br.sent.localConnect()
	err := br.local.connect(c.LocalClientID, c.LocalUsername, c.LocalPassword, c.HasLocalUser, c.HasLocalPass,
		false, math.MaxUint32, window, !ack.SessionPresent)
	br.broker.Connecting(c.LocalClientID, false) // online now, or not to be
	if err != nil {
		rc.Close()
		return err
	}
	// What the remote acknowledged while the local side was offline is
	// acknowledged now, before the local session resends it.
	for _, o := range br.sent.owedAcks() {
		br.sent.localAcked(o.id, o.qos, br.local.ack(o.id, o.qos))
	}
	if err := br.subscribeRemote(rc); err != nil {
		rc.Close()
		return err
	}
	// What was in flight to the remote goes again once the subscriptions
	// are made, as with mosquitto.
	if err := rc.Resend(); err != nil {
		rc.Close()
		return err
	}
	// Subscriptions are rebuilt and retained messages resent once per
	// connection.
	if err := br.subscribeLocal(true); err != nil {
		rc.Close()
		return err
	}
	br.Stats.Connected.Store(true)
	br.Stats.Connects.Add(1)
	br.delay = 0
	br.notifyLocal(true)
	if c.Notifications && !c.NotificationsLocalOnly {
		_ = rc.PublishAsync(br.ctx, &client.Message{Topic: []byte(c.NotificationTopic),
			Payload: stateBytes(true), QoS: 1, Retain: true}, nil)
	}
	br.log.Printf("Bridge %s connected to %s (%s).", c.Name, c.Addresses[br.addr], versionName(br.version))

	if br.version != codec.Version5 && !br.tryPrivate {
		br.echo.Store(newEchoes())
	} else {
		br.echo.Store(nil)
	}
	f := newForwarder(br, rc, &ack)
	probe := br.primaryProbe()
	idle := br.idleTimer()
	for {
		select {
		case <-br.local.wake:
			if err := f.pump(); err != nil {
				if errors.Is(err, errOffline) {
					rc.Close()
					return errors.New("local session taken over")
				}
				rc.Close()
				return err
			}
		case <-rc.Done():
			br.advanceAfterLoss()
			return rc.Err()
		case <-probe:
			if br.primaryUp() {
				br.log.Printf("Bridge %s: the main address is back; reconnecting to it.", c.Name)
				_ = rc.Disconnect(codec.Success, nil)
				br.addr = 0
				return nil
			}
		case <-idle:
			if f.idleFor() >= time.Duration(c.IdleTimeout)*time.Second {
				br.log.Printf("Bridge %s: idle for %ds; stopping (lazy).", c.Name, c.IdleTimeout)
				_ = rc.Disconnect(codec.Success, nil)
				return nil
			}
		case <-br.stop:
			_ = rc.Disconnect(codec.Success, nil)
			return nil
		}
	}
}

// window is the number of QoS 1/2 messages in flight to the remote at once:
// the broker's inflight limit, lowered by the remote's receive maximum.
func (br *Bridge) window(ack *codec.Packet) int {
	w := min(br.broker.Options().MaxInflight, 1000)
	if ack.Props.Has(codec.PropReceiveMaximum) && int(ack.Props.ReceiveMaximum) < w {
		w = int(ack.Props.ReceiveMaximum)
	}
	return max(w, 1)
}

// advanceAfterLoss moves round_robin bridges to the next address; others go
// back to trying the main address first.
func (br *Bridge) advanceAfterLoss() {
	if br.cfg.RoundRobin {
		br.addr = (br.addr + 1) % len(br.cfg.Addresses)
	} else {
		br.addr = 0
	}
}

// primaryProbe ticks while a bridge without round_robin is on a secondary
// address: it then checks now and again whether the main one is back.
func (br *Bridge) primaryProbe() <-chan time.Time {
	if br.cfg.RoundRobin || br.addr == 0 {
		return nil
	}
	return time.Tick(time.Duration(max(br.cfg.RestartBase, 1)) * time.Second)
}

func (br *Bridge) primaryUp() bool {
	d := net.Dialer{Timeout: time.Second}
	conn, err := d.Dial("tcp", br.cfg.Addresses[0].String())
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

// idleTimer ticks for lazy bridges, to stop them after idle_timeout.
func (br *Bridge) idleTimer() <-chan time.Time {
	if br.cfg.StartType != "lazy" {
		return nil
	}
	return time.Tick(250 * time.Millisecond)
}

func versionName(v byte) string {
	switch v {
	case codec.Version31:
		return "MQTT 3.1"
	case codec.Version5:
		return "MQTT 5"
	}
	return "MQTT 3.1.1"
}
