package bench

import (
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/midge-mqtt/midge/codec"
)

// batchBytes is how much a QoS 0 publisher hands the kernel per write.
const batchBytes = 32 << 10

// streamPublisher sends QoS 0 messages from its own goroutine: a buffer of
// pre-encoded frames is stamped and written whole. A blocking write is the
// back-pressure: the generator never buffers more than one batch.
type streamPublisher struct {
	conn  net.Conn
	frame publishFrame
	idx   uint32
	rate  float64 // messages per second; 0 = as fast as the broker reads
	base  time.Time

	sent atomic.Int64
	stop atomic.Bool
}

func (p *streamPublisher) run() error {
	fl := len(p.frame.b)
	k := max(1, batchBytes/fl)
	if p.rate > 0 {
		k = max(1, min(k, int(p.rate/100))) // at most 10 ms of messages per write
	}
	buf := make([]byte, k*fl)
	for i := 0; i < k; i++ {
		copy(buf[i*fl:], p.frame.b)
	}
	start := time.Now()
	var seq uint64
	for !p.stop.Load() {
		n := k
		if p.rate > 0 {
			due := uint64(time.Since(start).Seconds()*p.rate) + 1
			if due <= seq {
				next := start.Add(time.Duration(float64(seq) / p.rate * float64(time.Second)))
				time.Sleep(time.Until(next))
				continue
			}
			n = int(min(uint64(k), due-seq))
		}
		ts := int64(time.Since(p.base))
		for i := 0; i < n; i++ {
			seq++
			stamp(buf[i*fl+p.frame.payloadOff:], p.idx, seq, ts)
		}
		w, err := p.conn.Write(buf[:n*fl])
		if err != nil {
			p.sent.Add(int64(w / fl)) // whole frames that left before the error
			if p.stop.Load() {
				return nil
			}
			return fmt.Errorf("bench: publisher %d: %w", p.idx, err)
		}
		p.sent.Add(int64(n))
	}
	return nil
}

// halt stops the publisher; a write blocked on a broker that no longer
// reads is cut off after grace.
func (p *streamPublisher) halt(grace time.Duration) {
	p.stop.Store(true)
	_ = p.conn.SetWriteDeadline(time.Now().Add(grace))
}

// windowPublisher sends QoS 1 or 2 messages from the reactor, keeping at
// most window of them unacknowledged: each acknowledgement read releases
// one more PUBLISH, all written together at the end of the turn.
type windowPublisher struct {
	dec      codec.Decoder
	pkt      codec.Packet
	frame    publishFrame
	idx      uint32
	window   int
	base     time.Time
	inflight int
	pid      uint16
	seq      uint64
	out      []byte

	sent  atomic.Int64
	acked atomic.Int64
	stop  atomic.Bool
	err   *connErr
}

func (p *windowPublisher) closed(err error) { p.err.set(err) }

func (p *windowPublisher) traffic(c gnet.Conn) gnet.Action {
	buf, _ := c.Peek(-1)
	used := 0
	var acked int64
	for used < len(buf) {
		size, err := codec.FrameSize(buf[used:], 0)
		if errors.Is(err, codec.ErrIncomplete) || (err == nil && used+size > len(buf)) {
			break
		}
		if err == nil {
			_, err = p.dec.Decode(buf[used:used+size], &p.pkt)
		}
		if err != nil {
			p.err.set(fmt.Errorf("bench: publisher: %w", err))
			return gnet.Close
		}
		used += size
		switch p.pkt.Type {
		case codec.PUBACK, codec.PUBCOMP:
			acked++
		case codec.PUBREC:
			p.out = append(p.out, 0x62, 2, byte(p.pkt.PacketID>>8), byte(p.pkt.PacketID))
		}
	}
	if used > 0 { // gnet's Discard(0) discards everything buffered, a partial frame too
		_, _ = c.Discard(used)
	}
	p.inflight -= int(acked)
	if acked > 0 {
		p.acked.Add(acked)
	}
	if !p.stop.Load() && p.inflight < p.window {
		ts := int64(time.Since(p.base))
		n := p.window - p.inflight
		fl := len(p.frame.b)
		for i := 0; i < n; i++ {
			p.out = append(p.out, p.frame.b...)
			p.pid++
			if p.pid == 0 {
				p.pid = 1
			}
			p.seq++
			p.frame.put(p.out[len(p.out)-fl:], p.pid, p.idx, p.seq, ts)
		}
		p.inflight += n
		p.sent.Add(int64(n))
	}
	if len(p.out) > 0 {
		_, _ = c.Write(p.out)
		p.out = p.out[:0]
	}
	return gnet.None
}
