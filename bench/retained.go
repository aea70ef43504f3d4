package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/midge-mqtt/midge/codec"
)

// frameReader reads whole frames from a blocking connection.
type frameReader struct {
	c    net.Conn
	buf  []byte
	r, w int
}

func newFrameReader(c net.Conn) *frameReader { return &frameReader{c: c, buf: make([]byte, 256<<10)} }

// next returns the next frame, valid until the following call.
func (f *frameReader) next() ([]byte, error) {
	for {
		size, err := codec.FrameSize(f.buf[f.r:f.w], 0)
		if err == nil && f.r+size <= f.w {
			b := f.buf[f.r : f.r+size]
			f.r += size
			return b, nil
		}
		if err != nil && !errors.Is(err, codec.ErrIncomplete) {
			return nil, fmt.Errorf("bench: %w", err)
		}
		if err == nil && size > len(f.buf) {
			f.buf = slices.Grow(f.buf[:f.w], size-len(f.buf))[:cap(f.buf)]
		}
		if f.r > 0 {
			f.w = copy(f.buf, f.buf[f.r:f.w])
			f.r = 0
		}
		n, err := f.c.Read(f.buf[f.w:])
		if err != nil {
			return nil, err
		}
		f.w += n
	}
}

// barrier sends a PINGREQ and reads until its PINGRESP: the broker handles
// a connection's packets in order, so everything sent before was handled.
func barrier(c net.Conn) error {
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write(pingFrame); err != nil {
		return fmt.Errorf("bench: PINGREQ: %w", err)
	}
	fr := newFrameReader(c)
	for {
		b, err := fr.next()
		if err != nil {
			return fmt.Errorf("bench: waiting for PINGRESP: %w", err)
		}
		if codec.PacketType(b[0]>>4) == codec.PINGRESP {
			return nil
		}
	}
}

// retainTopic names retained topic i.
func retainTopic(i int) string { return fmt.Sprintf("bench/ret/%d", i) }

// storeRetained publishes one retained message per topic (payload empty
// with clear, which deletes them) and waits until the broker has them.
func storeRetained(c net.Conn, cfg Config, clear bool) error {
	var batch []byte
	for i := 0; i < cfg.Retained; i++ {
		size := cfg.Payload
		if clear {
			size = 0
		}
		f := newPublishFrame(retainTopic(i), size, 0, cfg.Version, true)
		if !clear {
			stamp(f.b[f.payloadOff:], 0, uint64(i+1), 0)
		}
		batch = append(batch, f.b...)
		if len(batch) >= batchBytes || i == cfg.Retained-1 {
			if _, err := c.Write(batch); err != nil {
				return fmt.Errorf("bench: retained: %w", err)
			}
			batch = batch[:0]
		}
	}
	return barrier(c)
}

// retainedIdle ends a retained round that has stopped receiving.
const retainedIdle = 2 * time.Second

// runRetained stores c.Retained retained messages, then, round after round,
// connects a fresh subscriber to a filter over all of them and times how
// long they take to arrive.
func runRetained(ctx context.Context, c Config) (*Result, error) {
	res := &Result{Scenario: "retained", Shape: fmt.Sprintf("%d topics, 1 filter, %dB", c.Retained, c.Payload)}
	d := newDialer(c.Host, c.Port, c.Unix)
	id := runID("retained")
	seed, err := d.connect(id+"-seed", c.Version, 0)
	if err != nil {
		return nil, err
	}
	defer seed.Close()
	if err := storeRetained(seed, c, false); err != nil {
		return nil, err
	}
	defer storeRetained(seed, c, true) //nolint:errcheck // best effort: leave the broker clean

	start := time.Now()
	prog := newProgress(c.Progress, "retained", c.Warmup+c.Duration)
	var (
		rounds    []time.Duration
		p0        point
		measuring bool
		recvTotal int64
	)
	readBroker := func() time.Duration { t, _ := procCPUOpt(c.BrokerPID); return t }
	// At least one round is measured, however long rounds take.
	for i := 0; len(rounds) == 0 || time.Since(start) < c.Warmup+c.Duration; i++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if !measuring && time.Since(start) >= c.Warmup {
			measuring = true
			p0 = point{t: time.Now(), recv: recvTotal, self: selfCPU(), broker: readBroker()}
		}
		t0 := time.Now()
		got, last, err := retainedRound(d, fmt.Sprintf("%s-s%d", id, i), c)
		recvTotal += int64(got)
		res.Expected += int64(c.Retained)
		if err != nil {
			prog.done()
			res.Error = err.Error()
			return res, err
		}
		if measuring {
			rounds = append(rounds, last.Sub(t0))
		}
		prog.show(time.Since(start), int64(i+1), recvTotal)
	}
	prog.done()
	window := time.Since(p0.t).Seconds()
	res.Seconds = window
	res.Delivered = recvTotal - p0.recv
	var busy time.Duration
	for _, r := range rounds {
		busy += r
	}
	res.Rate = float64(res.Delivered) / busy.Seconds() // idle waits of short rounds excluded
	res.Sent = int64(len(rounds))                      // rounds measured
	res.SentRate = float64(len(rounds)) / window
	res.Received = recvTotal
	res.Lost = max(0, res.Expected-res.Received)
	res.GenCPU = (selfCPU() - p0.self).Seconds() / window
	if c.BrokerPID > 0 {
		cpu := (readBroker() - p0.broker).Seconds()
		res.BrokerCPU = cpu / window
		if cpu > 0 {
			res.PerBrokerCPU = float64(res.Delivered) / cpu
		}
		res.BrokerRSSKiB, _ = ProcRSS(c.BrokerPID)
	}
	ns := make([]int64, len(rounds))
	for i, r := range rounds {
		ns[i] = int64(r)
	}
	res.Latency = summarize(ns)
	return res, nil
}

// retainedRound subscribes one fresh client to every retained topic and
// counts the retained messages until all arrived.
// It returns when the last frame arrived: a round that came up short does
// not count the idle wait in its time.
func retainedRound(d *dialer, id string, c Config) (got int, last time.Time, err error) {
	nc, err := d.connect(id, c.Version, 0)
	if err != nil {
		return 0, last, err
	}
	defer nc.Close()
	sub := codec.Packet{Type: codec.SUBSCRIBE, PacketID: 1,
		Subscriptions: []codec.Subscription{{Filter: []byte("bench/ret/#")}}}
	if _, err := nc.Write(sub.Encode(nil, c.Version)); err != nil {
		return 0, last, fmt.Errorf("bench: retained: SUBSCRIBE: %w", err)
	}
	fr := newFrameReader(nc)
	for acked := false; !acked || got < c.Retained; {
		// A broker that sends fewer than all is caught by the idle timeout:
		// the shortfall is counted as lost.
		_ = nc.SetReadDeadline(time.Now().Add(retainedIdle))
		b, err := fr.next()
		if ne, ok := err.(net.Error); ok && ne.Timeout() && acked {
			return got, last, nil
		}
		if err != nil {
			return got, last, fmt.Errorf("bench: retained: after %d of %d messages: %w", got, c.Retained, err)
		}
		last = time.Now()
		switch codec.PacketType(b[0] >> 4) {
		case codec.PUBLISH:
			got++
		case codec.SUBACK:
			acked = true
		}
	}
	return got, last, nil
}
