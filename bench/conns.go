package bench

import (
	"context"
	"fmt"
	"net"
	"sync"
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
	d := newDialer(c.Host, c.Port)
	id := runID("conns")
	settle := func() int64 {
		if c.BrokerPID == 0 {
			return 0
		}
		time.Sleep(500 * time.Millisecond)
		rss, _ := ProcRSS(c.BrokerPID)
		return rss
	}
	rss0 := settle()

	var (
		mu    sync.Mutex
		conns = make([]net.Conn, 0, c.Conns)
	)
	defer func() {
		for _, nc := range conns {
			nc.Close()
		}
	}()
	var connecting time.Duration
	var brokerCPU time.Duration
	prog := newProgress(c.Progress, "conns", time.Duration(c.Conns))
	for _, target := range connSteps(c.Conns) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		have := len(conns)
		b0, _ := procCPUOpt(c.BrokerPID)
		t0 := time.Now()
		err := parallel(target-have, 32, func(i int) error {
			nc, err := d.connect(fmt.Sprintf("%s-%d", id, have+i), c.Version, idleKeepAlive)
			if err != nil {
				return err
			}
			mu.Lock()
			conns = append(conns, nc)
			n := len(conns)
			mu.Unlock()
			if n%500 == 0 {
				prog.show(time.Duration(n), 0, int64(n))
			}
			return nil
		})
		connecting += time.Since(t0)
		b1, _ := procCPUOpt(c.BrokerPID)
		brokerCPU += b1 - b0
		if err != nil {
			prog.done()
			return nil, fmt.Errorf("bench: conns: after %d connections: %w", len(conns), err)
		}
		if c.BrokerPID > 0 {
			rss := settle()
			res.Steps = append(res.Steps, ConnStep{Conns: target, RSSKiB: rss,
				KiBPerConn: float64(rss-rss0) / float64(target)})
		}
	}
	prog.done()
	res.Seconds = connecting.Seconds()
	res.ConnectRate = float64(c.Conns) / connecting.Seconds()
	if c.BrokerPID > 0 {
		res.BrokerCPU = brokerCPU.Seconds() / connecting.Seconds()
	}

	// Hold them idle, pinging within the keepalive.
	hold := time.NewTimer(c.Duration)
	defer hold.Stop()
	ping := time.NewTicker(idleKeepAlive * time.Second / 2)
	defer ping.Stop()
	for held := false; !held; {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-hold.C:
			held = true
		case <-ping.C:
			for _, nc := range conns {
				_ = nc.SetWriteDeadline(time.Now().Add(time.Second))
				if _, err := nc.Write(pingFrame); err != nil {
					return nil, fmt.Errorf("bench: conns: keepalive: %w", err)
				}
			}
		}
	}
	if c.BrokerPID > 0 {
		res.BrokerRSSKiB, _ = ProcRSS(c.BrokerPID)
		res.KiBPerConn = float64(res.BrokerRSSKiB-rss0) / float64(c.Conns)
	}
	// A broker that dropped idle connections shows it here: a read must
	// time out rather than see EOF.
	dropped := 0
	for _, nc := range conns[:min(len(conns), 100)] {
		_ = nc.SetReadDeadline(time.Now().Add(time.Millisecond))
		var b [2]byte
		if _, err := nc.Read(b[:]); err != nil {
			if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
				dropped++
			}
		}
	}
	if dropped > 0 {
		err := fmt.Errorf("bench: conns: the broker closed %d of the first 100 idle connections", dropped)
		res.Error = err.Error()
		return res, err
	}
	return res, nil
}

func procCPUOpt(pid int) (time.Duration, error) {
	if pid == 0 {
		return 0, nil
	}
	return ProcCPU(pid)
}
