package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/midge-mqtt/midge/client"
	"github.com/midge-mqtt/midge/codec"
)

// config is one harness run.
type config struct {
	bin    string // the midge binary
	dir    string // store, config and broker log
	rounds int
	seed   uint64
	v5     bool
	log    io.Writer // one line per round (nil: quiet)
}

// trigger is where in the flows a round kills the broker: the count-th
// packet of type typ that the subscriber (sub) or the publisher sent (or
// received), then a random delay of up to 2 ms, so that the kill lands
// before, while and after the broker handles it. A zero typ kills after a
// random time instead.
type trigger struct {
	sub   bool
	sent  bool
	typ   codec.PacketType
	qos   byte // for PUBLISH
	count int64
}

func (t trigger) String() string {
	if t.typ == 0 {
		return "time"
	}
	who, dir := "publisher", "received"
	if t.sub {
		who = "subscriber"
	}
	if t.sent {
		dir = "sent"
	}
	s := fmt.Sprintf("%s %s %s", who, dir, t.typ)
	if t.typ == codec.PUBLISH {
		s += fmt.Sprintf(" q%d", t.qos)
	}
	return fmt.Sprintf("%s #%d", s, t.count)
}

// triggers are the points of the QoS 2 (and QoS 1) flows a round may kill at.
var triggers = []trigger{
	{},
	{sub: true, typ: codec.PUBLISH, qos: 2},
	{sub: true, sent: true, typ: codec.PUBREC},
	{sub: true, typ: codec.PUBREL},
	{sub: true, sent: true, typ: codec.PUBCOMP},
	{sub: true, sent: true, typ: codec.PUBACK},
	{sent: true, typ: codec.PUBLISH, qos: 2},
	{typ: codec.PUBREC},
	{sent: true, typ: codec.PUBREL},
	{typ: codec.PUBCOMP},
	{typ: codec.PUBACK},
}

// report counts, per QoS (index 1 and 2), what the publisher had
// acknowledged and what the subscriber received.
type report struct {
	rounds, online, offline int
	drops                   int            // rounds in which a client also dropped its connection
	kills                   map[string]int // by trigger kind
	acked, received         [3]int         // distinct sequence numbers
	dups, lost, unexpected  [3]int
	lostSeqs, dupSeqs       [3][]uint64 // the first few, for the log
}

func (r *report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d rounds (%d with the subscriber online, %d offline; %d with a client's connection dropped too)\n",
		r.rounds, r.online, r.offline, r.drops)
	for q := 1; q <= 2; q++ {
		fmt.Fprintf(&b, "QoS %d: %d acknowledged, %d received, %d lost, %d duplicates, %d never acknowledged",
			q, r.acked[q], r.received[q], r.lost[q], r.dups[q], r.unexpected[q])
		if len(r.lostSeqs[q]) > 0 {
			fmt.Fprintf(&b, "; lost e.g. %v", r.lostSeqs[q])
		}
		if len(r.dupSeqs[q]) > 0 {
			fmt.Fprintf(&b, "; duplicated e.g. %v", r.dupSeqs[q])
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// ok reports whether exactly once held at QoS 2 and at least once at QoS 1.
func (r *report) ok() bool {
	return r.lost[1] == 0 && r.unexpected[1] == 0 && r.lost[2] == 0 && r.dups[2] == 0 && r.unexpected[2] == 0
}

// harness drives one run: a persistent publisher sending numbered QoS 1
// and QoS 2 messages, a persistent subscriber counting them, and a broker
// killed once per round.
type harness struct {
	cfg  config
	rng  *rand.Rand
	b    *broker
	pub  *peer
	sub  *peer
	arm  atomic.Pointer[trigger] // the round's trigger; nil: none armed
	left atomic.Int64            // packets to go before it fires

	pubOn atomic.Bool // the publisher sends while set

	mu       sync.Mutex
	acked    [3]map[uint64]bool
	received [3]map[uint64]int
	ackErr   error
}

func run(cfg config) (*report, error) {
	b, err := newBroker(cfg.bin, cfg.dir)
	if err != nil {
		return nil, err
	}
	h := &harness{cfg: cfg, rng: rand.New(rand.NewPCG(cfg.seed, cfg.seed^0x9e3779b97f4a7c15)), b: b}
	for q := 1; q <= 2; q++ {
		h.acked[q] = map[uint64]bool{}
		h.received[q] = map[uint64]int{}
	}
	h.pub = newPeer(b.addr, "crash-pub", cfg.v5, func(sent bool, p *codec.Packet) { h.observe(false, sent, p) })
	h.sub = newPeer(b.addr, "crash-sub", cfg.v5, func(sent bool, p *codec.Packet) { h.observe(true, sent, p) })
	h.sub.c.OnMessage = h.onMessage
	if err := b.start(); err != nil {
		return nil, err
	}
	defer b.stop()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	for _, p := range []*peer{h.pub, h.sub} {
		p.want.Store(true)
		wg.Add(1)
		go func() { defer wg.Done(); p.run(ctx) }()
	}
	if err := h.setUp(ctx); err != nil {
		return nil, err
	}
	for q := byte(1); q <= 2; q++ {
		wg.Add(1)
		go func() { defer wg.Done(); h.publish(ctx, q) }()
	}
	rep := &report{kills: map[string]int{}}
	for r := 0; r < cfg.rounds; r++ {
		if err := h.round(r, rep); err != nil {
			return rep, err
		}
	}
	return rep, h.finish(rep)
}

// setUp subscribes and makes sure the subscription is durable before the
// first kill: a QoS 1 marker that reaches the subscriber's session is
// acknowledged only once stored, after the subscription.
func (h *harness) setUp(ctx context.Context) error {
	if !h.sub.await(true, 10*time.Second) || !h.pub.await(true, 10*time.Second) {
		return errors.New("clients did not connect")
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	codes, err := h.sub.c.Subscribe(sctx, nil, codec.Subscription{Filter: []byte("crash/#"), QoS: 2})
	if err != nil || len(codes) != 1 || codes[0] != 2 {
		return fmt.Errorf("subscribe: %v %v", codes, err)
	}
	return h.pub.c.Publish(sctx, &client.Message{Topic: []byte("crash/mark"), Payload: []byte("ready"), QoS: 1})
}

// round publishes with the subscriber online or offline until the armed
// trigger (or a time limit) kills the broker, then starts it again.
func (h *harness) round(r int, rep *report) error {
	online := h.rng.IntN(3) > 0 // two rounds in three online: the harder case
	h.sub.want.Store(online)
	if !h.sub.await(online, 10*time.Second) || !h.pub.await(true, 10*time.Second) {
		return fmt.Errorf("round %d: clients did not (dis)connect", r)
	}
	t := triggers[h.rng.IntN(len(triggers))]
	if !online && t.sub {
		t = trigger{sent: true, typ: codec.PUBLISH, qos: 2}
	}
	t.count = 1 + h.rng.Int64N(300)
	limit := 3 * time.Second
	if t.typ == 0 {
		limit = time.Duration(20+h.rng.IntN(400)) * time.Millisecond
	}
	h.left.Store(t.count)
	h.arm.Store(&t)
	h.pubOn.Store(true)
	timer := time.AfterFunc(limit, h.b.kill)
	// In one round in two, a client also loses its connection mid-flow
	// and reconnects at once, resuming its session on the live broker:
	// resent PUBLISH and PUBREL, and held packets, on a new connection.
	var drop *time.Timer
	if h.rng.IntN(2) == 0 {
		p := h.pub
		if online && h.rng.IntN(2) == 0 {
			p = h.sub
		}
		drop = time.AfterFunc(time.Duration(5+h.rng.IntN(150))*time.Millisecond, func() { _ = p.c.Close() })
		rep.drops++
	}
	h.b.wait()
	timer.Stop()
	if drop != nil {
		drop.Stop()
	}
	h.arm.Store(nil)
	h.pubOn.Store(false)
	kind := t.String()
	if i := strings.LastIndex(kind, " #"); i > 0 {
		kind = kind[:i]
	}
	if t.typ != 0 && h.left.Load() > 0 {
		kind = "time (trigger not reached)"
	}
	rep.kills[kind]++
	rep.rounds++
	if online {
		rep.online++
	} else {
		rep.offline++
	}
	if h.cfg.log != nil {
		h.mu.Lock()
		n1, n2 := len(h.acked[1]), len(h.acked[2])
		h.mu.Unlock()
		fmt.Fprintf(h.cfg.log, "round %d: subscriber online=%v, killed at %s; acknowledged so far q1=%d q2=%d\n", r, online, t, n1, n2)
	}
	return h.b.start()
}

// observe counts the packets of the armed trigger and kills the broker at
// its count. It runs on the clients' reader and writer goroutines.
func (h *harness) observe(sub, sent bool, p *codec.Packet) {
	t := h.arm.Load()
	if t == nil || t.typ == 0 || t.sub != sub || t.sent != sent || t.typ != p.Type || (p.Type == codec.PUBLISH && p.QoS != t.qos) {
		return
	}
	if h.left.Add(-1) != 0 {
		return
	}
	delay := time.Duration(rand.IntN(2000)) * time.Microsecond // any goroutine: not h.rng
	time.AfterFunc(delay, h.b.kill)
}

// publish sends numbered messages at qos while pubOn is set. A message
// counts as sent once the broker acknowledged it (PUBACK, PUBCOMP), which
// may come after reconnects: the client resends what is unacknowledged.
func (h *harness) publish(ctx context.Context, qos byte) {
	topic := []byte(fmt.Sprintf("crash/q%d", qos))
	seq := uint64(1)
	for ctx.Err() == nil {
		if !h.pubOn.Load() || !h.pub.connected.Load() {
			time.Sleep(time.Millisecond)
			continue
		}
		n := seq
		m := &client.Message{Topic: topic, Payload: strconv.AppendUint(nil, n, 10), QoS: qos}
		err := h.pub.c.PublishAsync(ctx, m, func(err error) { h.onAck(qos, n, err) })
		switch {
		case errors.Is(err, client.ErrNotConnected):
			time.Sleep(time.Millisecond) // not taken: send n again
			continue
		case err != nil && ctx.Err() == nil && !errors.Is(err, client.ErrConnectionLost):
			h.mu.Lock()
			h.ackErr = fmt.Errorf("publish q%d %d: %w", qos, n, err)
			h.mu.Unlock()
		}
		seq++ // taken, or perhaps taken (lost connection): never reuse n
	}
}

func (h *harness) onAck(qos byte, n uint64, err error) {
	// A PUBREL resent after a restart whose release the broker had already
	// made durable (its PUBCOMP lost with the connection) is answered with
	// v5's "packet identifier not found": the flow is complete, the message
	// had been accepted with PUBREC [MQTT-4.3.3-11].
	var ae *client.AckError
	if errors.As(err, &ae) && ae.Packet == codec.PUBCOMP && ae.Code == codec.PacketIdentifierNotFound {
		err = nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if err != nil {
		if h.ackErr == nil {
			h.ackErr = fmt.Errorf("q%d %d acknowledged with %w", qos, n, err)
		}
		return
	}
	h.acked[qos][n] = true
}

func (h *harness) onMessage(m *client.Message) {
	var q int
	switch string(m.Topic) {
	case "crash/q1":
		q = 1
	case "crash/q2":
		q = 2
	default:
		return
	}
	n, err := strconv.ParseUint(string(m.Payload), 10, 64)
	h.mu.Lock()
	defer h.mu.Unlock()
	if err != nil || int(m.QoS) != q {
		h.ackErr = fmt.Errorf("bad message %s %q at QoS %d", m.Topic, m.Payload, m.QoS)
		return
	}
	h.received[q][n]++
}

// finish lets everything settle after the last restart: the publisher's
// unacknowledged messages are resent and acknowledged, the subscriber
// (online) takes what is queued for it; then it counts.
func (h *harness) finish(rep *report) error {
	h.sub.want.Store(true)
	if !h.sub.await(true, 10*time.Second) || !h.pub.await(true, 10*time.Second) {
		return errors.New("clients did not reconnect after the last restart")
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		h.mu.Lock()
		missing := 0
		for q := 1; q <= 2; q++ {
			for n := range h.acked[q] {
				if h.received[q][n] == 0 {
					missing++
				}
			}
		}
		h.mu.Unlock()
		if (missing == 0 && h.pub.c.Inflight() == 0) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // late duplicates, if any, show up too
	h.mu.Lock()
	defer h.mu.Unlock()
	for q := 1; q <= 2; q++ {
		rep.acked[q] = len(h.acked[q])
		rep.received[q] = len(h.received[q])
		for n, c := range h.received[q] {
			if c > 1 {
				rep.dups[q] += c - 1
				if len(rep.dupSeqs[q]) < 5 {
					rep.dupSeqs[q] = append(rep.dupSeqs[q], n)
				}
			}
			if !h.acked[q][n] {
				rep.unexpected[q]++
			}
		}
		for n := range h.acked[q] {
			if h.received[q][n] == 0 {
				rep.lost[q]++
				if len(rep.lostSeqs[q]) < 5 {
					rep.lostSeqs[q] = append(rep.lostSeqs[q], n)
				}
			}
		}
	}
	if n := h.pub.c.Inflight(); n > 0 {
		return fmt.Errorf("%d messages still unacknowledged after the last restart", n)
	}
	return h.ackErr
}
