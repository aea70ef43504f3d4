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

// maxSamples bounds each subscriber's latency record.
const maxSamples = 1 << 21

// subscriber counts the messages one connection receives, checks their
// order per publisher and, when asked, records their latency. It
// acknowledges QoS 1 and 2 deliveries. Loop-only except the atomics.
type subscriber struct {
	dec  codec.Decoder
	pkt  codec.Packet
	out  []byte
	next []uint64 // next expected sequence number, per publisher index
	base time.Time

	latency bool
	samples []int64 // nanoseconds, loop-only until the reactor stops

	recv      atomic.Int64
	reordered atomic.Int64
	unstamped atomic.Int64
	err       *connErr
}

func newSubscriber(version byte, base time.Time, latency bool, errs *connErr) *subscriber {
	return &subscriber{dec: codec.Decoder{Version: version}, base: base, latency: latency, err: errs}
}

func (s *subscriber) closed(err error) { s.err.set(err) }

func (s *subscriber) traffic(c gnet.Conn) gnet.Action {
	buf, _ := c.Peek(-1)
	used, err := s.consume(buf)
	if err != nil {
		s.err.set(err)
		return gnet.Close
	}
	if used > 0 { // gnet's Discard(0) discards everything buffered, a partial frame too
		_, _ = c.Discard(used)
	}
	if len(s.out) > 0 {
		_, _ = c.Write(s.out) // gnet copies what it cannot send now
		s.out = s.out[:0]
	}
	return gnet.None
}

// consume counts the deliveries in the whole frames at the start of buf and
// queues their acknowledgements in s.out; it returns the bytes used.
func (s *subscriber) consume(buf []byte) (int, error) {
	var now int64
	if s.latency {
		now = int64(time.Since(s.base))
	}
	used, n := 0, int64(0)
	for used < len(buf) {
		size, err := codec.FrameSize(buf[used:], 0)
		if errors.Is(err, codec.ErrIncomplete) || (err == nil && used+size > len(buf)) {
			break
		}
		if err == nil {
			_, err = s.dec.Decode(buf[used:used+size], &s.pkt)
		}
		if err != nil {
			return used, fmt.Errorf("bench: subscriber: %w", err)
		}
		used += size
		switch s.pkt.Type {
		case codec.PUBLISH:
			n++
			s.note(now)
			switch s.pkt.QoS {
			case 1:
				s.out = append(s.out, 0x40, 2, byte(s.pkt.PacketID>>8), byte(s.pkt.PacketID))
			case 2:
				s.out = append(s.out, 0x50, 2, byte(s.pkt.PacketID>>8), byte(s.pkt.PacketID))
			}
		case codec.PUBREL:
			s.out = append(s.out, 0x70, 2, byte(s.pkt.PacketID>>8), byte(s.pkt.PacketID))
		}
	}
	if n > 0 {
		s.recv.Add(n)
	}
	return used, nil
}

// readFrom is traffic for a connection the reactor cannot take (TLS: gnet
// would see ciphertext): a goroutine reads nc until it closes.
func (s *subscriber) readFrom(nc net.Conn) {
	buf := make([]byte, 64<<10)
	have := 0
	for {
		n, err := nc.Read(buf[have:])
		have += n
		used, cerr := s.consume(buf[:have])
		have = copy(buf, buf[used:have])
		if have == len(buf) {
			buf = append(buf, make([]byte, len(buf))...) // a frame larger than the buffer
		}
		if cerr == nil && len(s.out) > 0 {
			_, cerr = nc.Write(s.out)
			s.out = s.out[:0]
		}
		if err == nil {
			err = cerr
		}
		if err != nil {
			s.err.set(fmt.Errorf("bench: subscriber: %w", err)) // ignored once the run is over
			return
		}
	}
}

// note checks one delivery's stamp.
func (s *subscriber) note(now int64) {
	pub, seq, ts, ok := readStamp(s.pkt.Payload)
	if !ok {
		s.unstamped.Add(1)
		return
	}
	if int(pub) >= len(s.next) {
		if pub > 1<<20 {
			s.unstamped.Add(1)
			return
		}
		s.next = append(s.next, make([]uint64, int(pub)+1-len(s.next))...)
	}
	want := s.next[pub]
	if want == 0 {
		want = 1
	}
	if seq < want {
		s.reordered.Add(1) // late or duplicate
	} else {
		s.next[pub] = seq + 1
	}
	if s.latency && len(s.samples) < maxSamples {
		s.samples = append(s.samples, now-ts)
	}
}
