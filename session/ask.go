package session

import (
	"errors"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/midge-mqtt/midge/codec"
)

// Decision is an Asker's answer to a question about a topic.
type Decision uint8

const (
	Denied  Decision = iota
	Allowed          //
	// Failed: the question could not be answered (an auth service is down
	// or timed out). The client is refused, and the error is counted.
	Failed
	// Wait: the answer needs I/O. The connection is parked (not read) and
	// the Ticket wakes it once the answer is in; the packet is then handled
	// again and the question asked again, which the Ticket answers.
	Wait
)

// AuthWait is what AskConnect returns for Wait.
const AuthWait byte = 0xFF

// ErrParked is returned by Client.Handle when the packet waits for an
// answer that needs I/O: the transport keeps the packet unread (it is handled
// again from the start once woken) and reads nothing else meanwhile.
var ErrParked = errors.New("session: parked for an auth answer")

// Asker is implemented by Authorizers whose answers may need I/O (an HTTP
// auth service). Questions asked for a connection's own packets go through
// it; deliveries keep asking Allow, which must answer at once.
type Asker interface {
	// AskConnect is Authenticate that may answer AuthWait.
	AskConnect(w *Client, clientID string, username, password []byte, hasUsername, hasPassword bool) byte
	// Ask is Allow that may answer Wait or Failed. topic is only valid
	// during the call: an implementation that keeps it must copy it.
	Ask(w *Client, c *ClientInfo, topic string, access Access) Decision
}

// ControlHandler takes the PUBLISHes a client makes to $CONTROL/ topics
// (mosquitto's plugin control topics, such as $CONTROL/dynamic-security/v1),
// which are never delivered to subscribers. Any goroutine.
type ControlHandler interface {
	Control(c *ClientInfo, topic string, payload []byte)
}

// Ticket carries the answers to questions that needed I/O back to the
// connection that asked: an Asker Begins a question (by a key of its own),
// answers it from any goroutine (which wakes the connection), and finds the
// answer with Lookup when the packet is handled again. The answers are kept
// until the packet has been handled (a SUBSCRIBE may ask several).
type Ticket struct {
	t       Transport
	waiting atomic.Bool
	mu      sync.Mutex
	key     string   // the question being waited for
	memo    []answer // answers for the packet being handled
	memoN   atomic.Int32
	done    chan struct{}
}

type answer struct {
	key   string
	value uint32
}

// Begin marks the ticket as waiting for the answer to key; false if it
// already waits.
func (k *Ticket) Begin(key string) bool {
	if !k.waiting.CompareAndSwap(false, true) {
		return false
	}
	k.mu.Lock()
	k.key, k.done = key, nil
	k.mu.Unlock()
	return true
}

// Answer stores the answer to the question begun and wakes the connection.
// Any goroutine.
func (k *Ticket) Answer(v uint32) {
	k.mu.Lock()
	k.memo = append(k.memo, answer{k.key, v})
	k.memoN.Store(int32(len(k.memo)))
	if k.done != nil {
		close(k.done)
	}
	k.waiting.Store(false)
	k.mu.Unlock()
	k.t.Wake()
}

// Lookup returns the answer to key, if one came for this packet.
func (k *Ticket) Lookup(key string) (uint32, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, a := range k.memo {
		if a.key == key {
			return a.value, true
		}
	}
	return 0, false
}

// Waiting reports whether an answer is awaited.
func (k *Ticket) Waiting() bool { return k.waiting.Load() }

// forget drops the answers once their packet has been handled.
func (k *Ticket) forget() {
	k.mu.Lock()
	k.memo = k.memo[:0]
	k.memoN.Store(0)
	k.mu.Unlock()
}

// Done is closed once the awaited answer is in (for transports that wait on
// a goroutine of their own).
func (k *Ticket) Done() <-chan struct{} {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.waiting.Load() {
		c := make(chan struct{})
		close(c)
		return c
	}
	if k.done == nil {
		k.done = make(chan struct{})
	}
	return k.done
}

func (c *Client) hasAnswers() bool { return c.extra != nil && c.extra.ticket != nil }

// HasAnswers reports whether answers that needed I/O are kept for the
// packet being handled (cheap: no lock). Loop-only.
func (c *Client) HasAnswers() bool { return c.hasAnswers() && c.extra.ticket.memoN.Load() > 0 }

// Ticket returns the client's ticket, made on first use. Loop-only.
func (c *Client) Ticket() *Ticket {
	x := c.more()
	if x.ticket == nil {
		x.ticket = &Ticket{t: c.t}
	}
	return x.ticket
}

// AuthMemo is a slot where an Asker keeps what it knows of this connection
// (a private cache of its answers: no lock on the publish path). Loop-only.
func (c *Client) AuthMemo() *any { return &c.more().authMemo }

// Parked reports whether the client waits for an auth answer (the
// transport does not read it until woken with the answer in), or has
// yielded its session to a takeover (it is not read again).
func (c *Client) Parked() bool {
	if c.kicked.Load()&kickYielded != 0 {
		return true // until the takeover closes it (ErrYielded)
	}
	return c.extra != nil && c.extra.ticket != nil && c.extra.ticket.Waiting()
}

// TicketDone is the parked client's Ticket.Done (closed at once when not parked).
func (c *Client) TicketDone() <-chan struct{} { return c.Ticket().Done() }

// ask checks the client's access to topic through the policy's Asker when
// it has one. topic is borrowed for the call (no copy, no allocation).
func (c *Client) ask(topic []byte, access Access) Decision {
	a := c.pol.Auth
	t := unsafe.String(unsafe.SliceData(topic), len(topic))
	if k, ok := a.(Asker); ok {
		return k.Ask(c, &c.rd.info, t, access)
	}
	if a.Allow(&c.rd.info, t, access) {
		return Allowed
	}
	return Denied
}

// authenticate asks the policy's Authorizer about a CONNECT.
func (c *Client) authenticate(id string, cp *codec.Connect) byte {
	a := c.pol.Auth
	if k, ok := a.(Asker); ok {
		return k.AskConnect(c, id, cp.Username, cp.Password, cp.UsernameFlag, cp.PasswordFlag)
	}
	return a.Authenticate(id, cp.Username, cp.Password, cp.UsernameFlag, cp.PasswordFlag)
}

// isControl reports whether topic is a $CONTROL/ topic: handled by the
// broker's plugins, never routed [mosquitto: handle_publish].
func isControl(topic []byte) bool {
	return len(topic) >= 9 && string(topic[:9]) == "$CONTROL/"
}

// KickUsername disconnects (v5: DISCONNECT 0x98, administrative action),
// without their wills, the connected clients logged in as username, or,
// with anonymous, those without a username: an auth change applies to them
// at once, as mosquitto's dynamic security does. Any goroutine.
func (b *Broker) KickUsername(username string, anonymous bool) int {
	return b.KickMatching(func(u string, has bool) bool {
		if anonymous {
			return !has
		}
		return has && u == username
	})
}

// KickMatching disconnects every connected client whose username (and
// whether it gave one) satisfies match. Any goroutine.
func (b *Broker) KickMatching(match func(username string, hasUsername bool) bool) int {
	r := &b.registry
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	r.m.each(func(s *Session) {
		s.mu.Lock()
		if o := s.owner; o != nil && o.rd != nil && match(o.rd.info.Username, o.rd.info.HasUsername) {
			o.kickWithoutWill(codec.AdministrativeAction)
			n++
		}
		s.mu.Unlock()
	})
	return n
}
