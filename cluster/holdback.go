package cluster

import (
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/midge-mqtt/midge/session"
)

// Back-pressure across nodes. A node's forwards carry, as their NATS reply
// subject, where the sender takes holds ("midge.<cluster>.hold.<node>").
// When a forwarded message fills one of the receiving node's subscribers'
// queues (past half of max_queued_messages, as for a local publisher), the
// receiver asks the sender to hold ("1 <receiver>"), renews that every
// holdRenew while the queue has not drained, then lets go ("0 <receiver>").
// The sender holds every publisher whose message it forwards to that node
// (session.RemoteHold: not read, TCP back-pressure) until the release, or
// holdLapse after the last renewal (a receiver that died). A subscriber
// that takes nothing for a second is stuck and holds nobody, as on one node.
//
// The node's own intake is such a queue too: the forwards NATS has handed
// over but the node has not delivered yet (its one receive goroutine is
// slower than the senders' loops together). Past intakeHigh bytes the
// sender of the batch just delivered is held until the backlog is under
// intakeLow; without that, NATS drops what is over its pending limit
// ("slow consumer"), and QoS 0 was lost across nodes under load.
const (
	holdRenew  = 250 * time.Millisecond
	holdLapse  = 4 * holdRenew
	holdPoll   = 5 * time.Millisecond
	intakeHigh = 8 << 20
	intakeLow  = 2 << 20
)

// intakeOver reports whether more than limit bytes of forwards wait to be
// delivered.
func (n *Node) intakeOver(limit int64) bool {
	sub := n.fwdSub.Load()
	if sub == nil {
		return false
	}
	_, bytes, err := sub.Pending()
	return err == nil && int64(bytes) > limit
}

// stillHolding: the queue that h's deliveries filled has not drained, or
// the intake is still backed up.
func (n *Node) stillHolding(h *holdback, now time.Time) bool {
	return h.hb.Held(now) || n.intakeOver(n.intakeLo.Load())
}

// holdback is one sender as the receiving node sees it.
type holdback struct {
	reply  string
	hb     *session.Holdback
	asking bool // a goroutine asks the sender to hold; receive goroutine only
	done   chan struct{}
	// confirm.go: the first state write (ord) since the sender's last
	// request for a confirmation (0: none), and where to answer it
	open    uint64
	answer  string
	dropped int // the subscription's dropped count at its last request
}

func (n *Node) holdSubject() string { return n.prefix + "hold." + n.cfg.NodeName }

// holdbackOf returns the sender's holdback. Receive goroutine only.
func (n *Node) holdbackOf(reply string) *holdback {
	h := n.backs[reply]
	if h == nil {
		h = &holdback{reply: strings.Clone(reply), hb: n.b.NewHoldback()}
		n.backs[h.reply] = h
	}
	if h.asking {
		select {
		case <-h.done:
			h.asking = false
		default:
		}
	}
	return h
}

// holdSender asks h's sender to hold its publishers until the queue that
// filled drains; false if it is being asked already. Receive goroutine only.
func (n *Node) holdSender(h *holdback) bool {
	if h.asking || h.reply == "" {
		return false
	}
	h.asking, h.done = true, make(chan struct{})
	me := n.cfg.NodeName
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer close(h.done)
		_ = n.nc.Publish(h.reply, []byte("1 "+me))
		renewed := time.Now()
		t := time.NewTicker(holdPoll) // the intake is polled: nothing wakes its drain
		defer t.Stop()
		for now := time.Now(); n.stillHolding(h, now); now = time.Now() {
			if now.Sub(renewed) >= holdRenew {
				_ = n.nc.Publish(h.reply, []byte("1 "+me))
				renewed = now
			}
			select {
			case <-n.stop:
				return
			case <-h.hb.Woken():
			case <-t.C:
			}
		}
		_ = n.nc.Publish(h.reply, []byte("0 "+me))
	}()
	return true
}

// holdAsked takes another node's hold or release. Runs on the
// subscription's goroutine.
func (n *Node) holdAsked(msg *nats.Msg) {
	on, name, ok := strings.Cut(string(msg.Data), " ")
	if !ok || name == n.cfg.NodeName {
		return
	}
	n.rmu.Lock()
	p := n.peers[name]
	n.rmu.Unlock()
	if p == nil {
		return
	}
	if on == "1" {
		if !p.hold.Holding(time.Now().UnixNano()) {
			n.Stats.HoldsReceived.Add(1)
		}
		p.hold.Hold(holdLapse)
	} else {
		p.hold.Release()
	}
}
