package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"syscall"
	"time"
)

// idleKeepAlive is the keepalive idle connections announce; a pinger
// keeps them alive for runs longer than half of it.
const idleKeepAlive = 60

// connSteps are the counts at which a conns run reads the broker's RSS, so
// that the cost per connection can be seen to stay flat.
func connSteps(n int) []int {
	var s []int
	for _, k := range []int{1000, 5000, 10000, 15000} {
		if k < n {
			s = append(s, k)
		}
	}
	return append(s, n)
}

// runConns opens c.Conns connections as fast as the broker accepts them,
// holds them idle for c.Duration and reports the connect rate and the
// broker's memory per connection.
func runConns(ctx context.Context, c Config) (*Result, error) {
	limit := raiseFileLimit()
	if limit > 0 && uint64(c.Conns)+64 > limit {
		return nil, fmt.Errorf("bench: conns: %d connections need more than the descriptor limit %d", c.Conns, limit)
	}
	res := &Result{Scenario: "conns", Shape: fmt.Sprintf("%d idle, keepalive %ds", c.Conns, idleKeepAlive), Conns: c.Conns}
	st, err := newStorm(c.Host, c.Port, c.Version, fmt.Sprintf("conns-%06x-", rand.Uint32()&0xffffff))
	if err != nil {
		return nil, err
	}
	st.window = c.Window
	st.user, st.pass = c.Username, c.Password
	fds := make([]int, 0, c.Conns)
	defer func() { closeAll(fds) }()
	open := func(have, n int) (int, error) {
		got, err := st.open(ctx, have, n, c.Loops)
		fds = append(fds, got...)
		return len(fds), err
	}
	if err := connectAndHold(ctx, &c, res, open, func() error { return pingAll(fds) }); err != nil {
		return nil, err
	}
	// A broker that dropped idle connections shows it here: a read must
	// find nothing (or PINGRESPs) rather than the end of the stream.
	if dropped := countClosed(fds[:min(len(fds), 100)]); dropped > 0 {
		err := fmt.Errorf("bench: conns: the broker closed %d of the first 100 idle connections", dropped)
		res.Error = err.Error()
		return res, err
	}
	return res, nil
}

// connectAndHold is what every idle-connections scenario does: open
// c.Conns connections in connSteps (open(have, n) opens n more and returns
// how many are open), reading the broker's RSS after each step, then hold
// them idle for c.Duration, pinging within the keepalive (pingAll). It fills
// res's connect and memory figures; the broker's CPU while they are held is
// what idle connections cost it.
func connectAndHold(ctx context.Context, c *Config, res *Result, open func(have, n int) (int, error), pingAll func() error) error {
	settle := func() int64 {
		if c.BrokerPID == 0 {
			return 0
		}
		time.Sleep(500 * time.Millisecond)
		rss, _ := ProcRSS(c.BrokerPID)
		return rss
	}
	rss0 := settle()
	res.StartRSSKiB = rss0
	if c.BrokerPID != 0 {
		res.StartAnonKiB, _ = ProcAnonRSS(c.BrokerPID)
	}
	var connecting, brokerCPU, genCPU time.Duration
	prog := newProgress(c.Progress, res.Scenario, time.Duration(c.Conns))
	have := 0
	for _, target := range connSteps(c.Conns) {
		if err := ctx.Err(); err != nil {
			return err
		}
		b0, _ := procCPUOpt(c.BrokerPID)
		g0 := selfCPU()
		t0 := time.Now()
		n, err := open(have, target-have)
		have = n
		connecting += time.Since(t0)
		genCPU += selfCPU() - g0
		b1, _ := procCPUOpt(c.BrokerPID)
		brokerCPU += b1 - b0
		if err != nil {
			prog.done()
			return fmt.Errorf("bench: %s: after %d connections: %w", res.Scenario, have, err)
		}
		prog.show(time.Duration(have), 0, int64(have))
		if c.BrokerPID > 0 {
			rss := settle()
			step := ConnStep{Conns: target, RSSKiB: rss, KiBPerConn: float64(rss-rss0) / float64(target)}
			if anon, err := ProcAnonRSS(c.BrokerPID); err == nil && res.StartAnonKiB > 0 {
				step.AnonKiBPerConn = float64(anon-res.StartAnonKiB) / float64(target)
			}
			res.Steps = append(res.Steps, step)
		}
	}
	prog.done()
	res.Seconds = connecting.Seconds()
	res.ConnectRate = float64(c.Conns) / connecting.Seconds()
	res.GenCPU = genCPU.Seconds() / connecting.Seconds()
	if c.BrokerPID > 0 {
		res.BrokerCPU = brokerCPU.Seconds() / connecting.Seconds()
	}

	idle0, _ := procCPUOpt(c.BrokerPID)
	held0 := time.Now()
	hold := time.NewTimer(c.Duration)
	defer hold.Stop()
	ping := time.NewTicker(idleKeepAlive * time.Second / 2)
	defer ping.Stop()
	for held := false; !held; {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-hold.C:
			held = true
		case <-ping.C:
			if err := pingAll(); err != nil {
				return err
			}
		}
	}
	if c.BrokerPID > 0 {
		idle1, _ := procCPUOpt(c.BrokerPID)
		res.IdleCPU = (idle1 - idle0).Seconds() / time.Since(held0).Seconds()
		res.BrokerRSSKiB, _ = ProcRSS(c.BrokerPID)
		res.KiBPerConn = float64(res.BrokerRSSKiB-rss0) / float64(c.Conns)
	}
	return nil
}

// pingAll sends a PINGREQ on every connection. The PINGRESPs are left
// unread: two bytes each.
func pingAll(fds []int) error {
	for _, fd := range fds {
		n, err := syscall.Write(fd, pingFrame)
		if err == syscall.EAGAIN || err == nil && n != len(pingFrame) {
			return errors.New("bench: conns: keepalive: the broker is not reading")
		}
		if err != nil {
			return fmt.Errorf("bench: conns: keepalive: %w", err)
		}
	}
	return nil
}

// countClosed counts connections the broker has closed (or reset), with a
// non-blocking read of each.
func countClosed(fds []int) int {
	closed := 0
	var b [64]byte
	for _, fd := range fds {
		n, err := syscall.Read(fd, b[:])
		if err == syscall.EAGAIN || err == nil && n > 0 {
			continue
		}
		closed++
	}
	return closed
}

func procCPUOpt(pid int) (time.Duration, error) {
	if pid == 0 {
		return 0, nil
	}
	return ProcCPU(pid)
}
