package bridge

import (
	"errors"
	"fmt"
	"math"
	"sync"

	"github.com/midge-mqtt/midge/client"
	"github.com/midge-mqtt/midge/codec"
	"github.com/midge-mqtt/midge/session"
)

// local is the bridge's side in the local broker: an MQTT 5 client of the
// session package with no socket. Packets go in through Client.Handle, as a
// socket's would, so ACLs, retained messages, queues and persistence apply
// to the bridge as to any client; what the broker writes back is decoded
// from the Output. It runs on the bridge's goroutines, never on an event
// loop; its mutex stands for the loop that owns an ordinary client.
type local struct {
	mu   sync.Mutex
	b    *session.Broker
	name string

	c    *session.Client // nil while offline (the session stays)
	out  session.Output
	dec  codec.Decoder
	pkt  codec.Packet
	buf  []byte // the output, copied so that it is read without mu held
	wake chan struct{}
	// online is closed while c is set (remade when it goes offline), for
	// what must wait for the local side (waitOnline).
	online chan struct{}

	nextID uint16 // packet ids of the QoS 1 messages the bridge publishes locally

	// A QoS 1/2 message brought in from the remote is acknowledged to the
	// remote only once the local broker has acknowledged it, that is once
	// it is stored (with persistence_sync always, synced): a crash in
	// between cannot lose what the remote has let go. A QoS 2 message keeps
	// the remote's packet id locally, and its local flow ends only when the
	// remote's does (PUBREL → local PUBREL → local PUBCOMP → PUBCOMP): the
	// local session's unreleased ids, stored with it, are what recognises a
	// resend from the remote after a crash [MQTT-4.3.3-10].
	puback  map[uint16]origin         // QoS 1, by local id: awaiting the local PUBACK
	pubrec  map[uint16]*client.Client // QoS 2, by id: awaiting the local PUBREC
	pubcomp map[uint16]*client.Client // QoS 2, by id: awaiting the local PUBCOMP
	toSend  []remoteAck               // acknowledged locally, to send on (ackStored)
}

// origin is where a message brought in came from.
type origin struct {
	rc  *client.Client
	id  uint16
	qos byte
}

// remoteAck is an acknowledgement due to the remote.
type remoteAck struct {
	rc *client.Client
	t  codec.PacketType
	id uint16
}

func newLocal(b *session.Broker, name string) *local {
	l := &local{b: b, name: name, wake: make(chan struct{}, 1), online: make(chan struct{}),
		dec: codec.Decoder{Version: codec.Version5}, puback: make(map[uint16]origin),
		pubrec: make(map[uint16]*client.Client), pubcomp: make(map[uint16]*client.Client)}
	return l
}

// transport is the session.Transport of the in-process client. Any goroutine.
type transport struct{ l *local }

func (t transport) Wake() {
	select {
	case t.l.wake <- struct{}{}:
	default:
	}
}
func (t transport) Close()             { t.Wake() }
func (t transport) RemoteAddr() string { return "bridge " + t.l.name }

// connect opens the local session as clientID. The session never expires
// while the bridge lives (so that what is queued for the remote waits for
// it), unless expiry is 0. recvMax bounds what the broker sends at once.
// releaseStale ends the inbound QoS 2 flows the session still holds: the
// remote that began them has no session, so it will not finish them.
func (l *local) connect(clientID, user, pass string, hasUser, hasPass, clean bool, expiry uint32, recvMax int, releaseStale bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.c != nil {
		l.closeLocked()
	}
	c := l.b.NewClient(transport{l}, nil)
	c.LiftReceiveMaximum() // QoS 2 under the remote's ids, bounded by its window
	// Not authenticated (local_password is not checked, as in mosquitto);
	// ACLs apply only under a local_username.
	c.Internal(hasUser)
	p := &l.pkt
	p.Reset()
	p.Type = codec.CONNECT
	cp := &p.Connect
	cp.ProtocolName, cp.ProtocolLevel, cp.CleanStart = []byte("MQTT"), codec.Version5, clean
	cp.ClientID = []byte(clientID)
	cp.Username, cp.UsernameFlag = []byte(user), hasUser
	cp.Password, cp.PasswordFlag = []byte(pass), hasPass
	p.Props.SessionExpiry = expiry
	p.Props.Set(codec.PropSessionExpiry)
	p.Props.ReceiveMaximum = uint16(min(max(recvMax, 1), math.MaxUint16))
	p.Props.Set(codec.PropReceiveMaximum)
	err := c.Handle(p, &l.out)
	ack, perr := l.firstPacketLocked()
	if err != nil || perr != nil || ack.Type != codec.CONNACK || ack.ReasonCode != codec.Success {
		if err == nil {
			err = perr
		}
		if err == nil {
			err = fmt.Errorf("refused: reason 0x%02X", ack.ReasonCode)
		}
		c.Closed(err)
		return fmt.Errorf("bridge %s: local connect: %w", l.name, err)
	}
	l.c = c
	if releaseStale {
		for _, id := range c.AwaitingRelease() {
			if !l.handleLocked(codec.PUBREL, id) {
				return fmt.Errorf("bridge %s: local session closed", l.name)
			}
		}
		l.settleLocked()
	}
	close(l.online)
	// A resumed session may hold messages (and an inflight window to
	// resend): the drainer looks at once, as a loop does after a CONNECT.
	transport{l}.Wake()
	return nil
}

// firstPacketLocked decodes the first packet of the output and discards the
// output. Assumes mu is held.
func (l *local) firstPacketLocked() (*codec.Packet, error) {
	defer l.out.Done()
	var b []byte
	for _, v := range l.out.Vectors() {
		b = append(b, v...)
	}
	if len(b) == 0 {
		return nil, errors.New("no reply")
	}
	p := new(codec.Packet)
	_, err := l.dec.Decode(b, p)
	return p, err
}

// subscribe adds the bridge's out subscriptions: no-local (what the bridge
// brings in never goes back out) and retain-as-published (the remote gets
// the retain flag as published). retainHandling 0 sends the retained
// messages of each filter again; 2 does not.
func (l *local) subscribe(filters []string, qos []byte, retainHandling byte) error {
	if len(filters) == 0 {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.c == nil {
		return errOffline
	}
	p := &l.pkt
	p.Reset()
	p.Type, p.PacketID = codec.SUBSCRIBE, l.allocIDLocked()
	for i, f := range filters {
		p.Subscriptions = append(p.Subscriptions, codec.Subscription{Filter: []byte(f), QoS: qos[i],
			NoLocal: true, RetainAsPublished: true, RetainHandling: retainHandling})
	}
	err := l.c.Handle(p, &l.out)
	p.Subscriptions = nil
	if err != nil {
		return err
	}
	ack, err := l.firstPacketLocked()
	if err != nil {
		return err
	}
	for i, code := range ack.ReasonCodes {
		if code >= 0x80 {
			return fmt.Errorf("bridge %s: local subscribe %q refused (0x%02X)", l.name, filters[i], code)
		}
	}
	return nil
}

// sendRetained has the broker send the retained messages of filters once
// each (the out topics' messages, on each connection to the remote).
func (l *local) sendRetained(filters []string, qos []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.c != nil {
		l.c.SendRetained(filters, qos)
		transport{l}.Wake()
	}
}

var errOffline = errors.New("bridge: local side offline")

func (l *local) allocIDLocked() uint16 {
	l.nextID++
	if l.nextID == 0 {
		l.nextID = 1
	}
	return l.nextID
}

// publish brings a message from the remote into the local broker, through
// the same path as any client's PUBLISH; from is acknowledged when the
// broker has stored it.
func (l *local) publish(p *codec.Packet, from origin) error {
	defer l.ackStored()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.c == nil {
		return errOffline
	}
	switch p.QoS {
	case 1:
		p.PacketID = l.allocIDLocked()
	case 2:
		p.PacketID = from.id
	}
	if err := l.c.Handle(p, &l.out); err != nil {
		l.closeLocked()
		return err
	}
	// After Handle: a refused message is not the remote's to resend.
	switch p.QoS {
	case 1:
		l.puback[p.PacketID] = from
	case 2:
		l.pubrec[p.PacketID] = from.rc
	}
	l.c.TakeSlow() // the remote is not a loop's socket: it is not held back
	l.settleLocked()
	return nil
}

// release passes on the remote's PUBREL of a QoS 2 message; the remote
// gets its PUBCOMP once the broker's is durable. Remote reader goroutine.
func (l *local) release(rc *client.Client, id uint16) {
	defer l.ackStored()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.c == nil {
		rc.Close() // no PUBCOMP: the remote sends its PUBREL again
		return
	}
	l.pubcomp[id] = rc
	if l.handleLocked(codec.PUBREL, id) {
		l.settleLocked()
	}
}

// handleLocked hands the broker an ack packet; false if that closed the
// local side. Assumes mu is held.
func (l *local) handleLocked(t codec.PacketType, id uint16) bool {
	p := &l.pkt
	p.Reset()
	p.Type, p.PacketID = t, id
	if err := l.c.Handle(p, &l.out); err != nil {
		l.closeLocked()
		return false
	}
	return true
}

// settleLocked takes what the broker wrote outside a drain: the PUBACK,
// PUBREC and PUBCOMP of what the bridge brought in (due to the remote), and
// PUBREL of a message it received (answered with PUBCOMP). It runs until the
// output is empty. Assumes mu is held and the output holds no PUBLISH (only
// drain's does).
func (l *local) settleLocked() {
	for l.c != nil && !l.out.Empty() {
		var b []byte
		for _, v := range l.out.Vectors() {
			b = append(b, v...)
		}
		l.out.Done()
		var p codec.Packet
		for len(b) > 0 {
			n, err := l.dec.Decode(b, &p)
			if err != nil {
				return
			}
			b = b[n:]
			var reply codec.PacketType
			switch p.Type {
			case codec.PUBACK, codec.PUBREC, codec.PUBCOMP:
				l.ackedLocked(p.Type, p.PacketID)
				continue
			case codec.PUBREL:
				reply = codec.PUBCOMP
			default:
				continue
			}
			q := &l.pkt
			q.Reset()
			q.Type, q.PacketID = reply, p.PacketID
			if err := l.c.Handle(q, &l.out); err != nil {
				l.closeLocked()
				return
			}
		}
	}
}

// ack answers the broker for a message it sent the bridge: PUBACK for QoS 1,
// PUBREC for QoS 2 (its PUBREL is answered by drain), once the remote has
// taken it. It reports whether the broker took it (false: the local side is
// offline, or the broker refused the ack and closed it; the session sends
// the message again when it is next online, unless it was refused).
func (l *local) ack(id uint16, qos byte) bool {
	if qos == 0 {
		return true
	}
	t := codec.PUBACK
	if qos == 2 {
		t = codec.PUBREC
	}
	return l.handleSimple(t, id)
}

// handleSimple hands the broker an ack packet and settles what it answers;
// false if the local side was offline or went offline.
func (l *local) handleSimple(t codec.PacketType, id uint16) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.c == nil || !l.handleLocked(t, id) {
		return false
	}
	l.settleLocked()
	// The ack may have freed the window for queued messages: a loop drains
	// after every turn that touched a connection, and so does the bridge.
	transport{l}.Wake()
	return true
}

// drain takes what the broker has for the bridge, up to budget bytes, and
// returns it encoded (valid until the next drain) and whether more is left.
func (l *local) drain(budget int) ([]byte, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.c == nil {
		return nil, false, errOffline
	}
	more, err := l.c.Drain(&l.out, budget)
	l.buf = l.buf[:0]
	for _, v := range l.out.Vectors() {
		l.buf = append(l.buf, v...)
	}
	l.out.Done()
	if err != nil {
		l.closeLocked()
	}
	return l.buf, more, err
}

// acked notes an acknowledgement of the broker's in a drain's output (see
// settleLocked) and sends on what it makes due to the remote.
func (l *local) acked(t codec.PacketType, id uint16) {
	l.mu.Lock()
	l.ackedLocked(t, id)
	l.mu.Unlock()
	l.ackStored()
}

// ackedLocked makes the remote's acknowledgement of a message the broker
// has acknowledged due. Assumes mu is held.
func (l *local) ackedLocked(t codec.PacketType, id uint16) {
	switch t {
	case codec.PUBACK:
		if o, ok := l.puback[id]; ok {
			delete(l.puback, id)
			l.toSend = append(l.toSend, remoteAck{rc: o.rc, t: codec.PUBACK, id: o.id})
		}
	case codec.PUBREC:
		if rc, ok := l.pubrec[id]; ok {
			delete(l.pubrec, id)
			l.toSend = append(l.toSend, remoteAck{rc: rc, t: codec.PUBREC, id: id})
		}
	case codec.PUBCOMP:
		if rc, ok := l.pubcomp[id]; ok {
			delete(l.pubcomp, id)
			l.toSend = append(l.toSend, remoteAck{rc: rc, t: codec.PUBCOMP, id: id})
		}
	}
}

// ackStored sends the remote what the broker has acknowledged, in order
// [MQTT-4.6.0-2], outside mu: a write to the remote may wait.
func (l *local) ackStored() {
	l.mu.Lock()
	if len(l.toSend) == 0 {
		l.mu.Unlock()
		return
	}
	todo := l.toSend
	l.toSend = nil
	l.mu.Unlock()
	for _, a := range todo {
		// A failed write means the remote connection is gone: the remote
		// sends the message (or its PUBREL) again on the next one.
		switch a.t {
		case codec.PUBACK:
			_ = a.rc.Ack(1, a.id)
		case codec.PUBREC:
			_ = a.rc.Ack(2, a.id)
		case codec.PUBCOMP:
			_ = a.rc.Complete(a.id)
		}
	}
}

// close takes the client offline; its session (subscriptions, queue,
// inflight window) stays in the broker, and with persistence in the store.
func (l *local) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closeLocked()
}

func (l *local) closeLocked() {
	if l.c == nil {
		return
	}
	l.c.Closed(nil)
	l.c = nil
	// What the broker had not acknowledged yet may not be stored: the
	// remote connections that sent it close without its ack, so that the
	// remote sends it again.
	for id, o := range l.puback {
		delete(l.puback, id)
		o.rc.Close()
	}
	for _, m := range []map[uint16]*client.Client{l.pubrec, l.pubcomp} {
		for id, rc := range m {
			delete(m, id)
			rc.Close()
		}
	}
	l.online = make(chan struct{})
}

// waitOnline waits until the local side is online, and reports false if
// done or stop is closed first.
func (l *local) waitOnline(done, stop <-chan struct{}) bool {
	l.mu.Lock()
	online := l.online
	l.mu.Unlock()
	select {
	case <-online:
		return true
	case <-done:
		return false
	case <-stop:
		return false
	}
}

// end discards the bridge's local session (the bridge was removed).
func (l *local) end(clientID, user, pass string, hasUser, hasPass bool) {
	if l.connect(clientID, user, pass, hasUser, hasPass, true, 0, 1, false) == nil {
		l.close()
	}
}
