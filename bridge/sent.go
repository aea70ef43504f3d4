package bridge

import "sync"

// sentTable follows, by local packet id, each QoS 1/2 message the bridge
// has forwarded to the remote, until nothing the local session sends can
// still be a copy of it. The local session resends what it has not had
// acknowledged (PUBLISH with DUP) each time the local side connects, and
// that resend may already be in a drained batch when the remote's
// acknowledgement arrives on another goroutine: without this table such a
// copy would be forwarded as a new message, a duplicate at QoS 2.
type sentTable struct {
	mu sync.Mutex
	m  map[uint16]sentState
}

type sentState struct {
	phase sentPhase
	qos   byte // the local QoS, for an owed acknowledgement
}

type sentPhase uint8

const (
	// inFlight: in the remote client's session, which resends it itself
	// (with DUP, under its own id) after a reconnection.
	inFlight sentPhase = iota + 1
	// acking: the remote has it; the local acknowledgement is being given.
	acking
	// acked: the local broker has the acknowledgement. A DUP copy in what
	// this local connection already drained is stale; the next local
	// connection resends nothing of it.
	acked
	// owed: the remote has it, but the local side was offline when it said
	// so. The local session resends it on its next connection; that copy is
	// acknowledged, not forwarded.
	owed
)

func newSentTable() *sentTable { return &sentTable{m: make(map[uint16]sentState)} }

// skip decides whether a QoS 1/2 PUBLISH of the local session is not to be
// forwarded: a copy of one the remote has, or has in flight. ackQoS > 0
// when the skipped copy is to be acknowledged locally (owed). Pump
// goroutine.
func (t *sentTable) skip(id uint16, dup bool) (skip bool, ackQoS byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.m[id]
	switch {
	case !ok:
		return false, 0
	case !dup:
		// A first send: the id was free in the local session, so whatever
		// the table held of it is over.
		delete(t.m, id)
		return false, 0
	case s.phase == inFlight || s.phase == acking:
		return true, 0
	case s.phase == acked:
		delete(t.m, id)
		return true, 0
	default: // owed
		delete(t.m, id)
		return true, s.qos
	}
}

// sending counts id in flight to the remote.
func (t *sentTable) sending(id uint16) {
	t.mu.Lock()
	t.m[id] = sentState{phase: inFlight}
	t.mu.Unlock()
}

// notTaken forgets id: the remote client did not take the message, or
// dropped it (client.ErrSessionCleared: a clean start on the remote), so the
// local session's resend of it is forwarded.
func (t *sentTable) notTaken(id uint16) {
	t.mu.Lock()
	delete(t.m, id)
	t.mu.Unlock()
}

// remoteHas marks the start of the local acknowledgement of id.
func (t *sentTable) remoteHas(id uint16) {
	t.mu.Lock()
	t.m[id] = sentState{phase: acking}
	t.mu.Unlock()
}

// localAcked records the outcome of the local acknowledgement.
func (t *sentTable) localAcked(id uint16, qos byte, reached bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s, ok := t.m[id]; !ok || s.phase != acking {
		return // the id has been used again since
	}
	if reached {
		t.m[id] = sentState{phase: acked}
	} else {
		t.m[id] = sentState{phase: owed, qos: qos}
	}
}

// owedAcks takes the acknowledgements owed to the local session, to give
// as soon as it is online again (before it resends those messages), and
// marks them being given.
func (t *sentTable) owedAcks() []owedAck {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []owedAck
	for id, s := range t.m {
		if s.phase == owed {
			out = append(out, owedAck{id: id, qos: s.qos})
			t.m[id] = sentState{phase: acking}
		}
	}
	return out
}

type owedAck struct {
	id  uint16
	qos byte
}

// localConnect starts a new local connection: copies drained from the last
// one are gone, so only what is owed is left to recognise.
func (t *sentTable) localConnect() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for id, s := range t.m {
		if s.phase == acked {
			delete(t.m, id)
		}
	}
}
