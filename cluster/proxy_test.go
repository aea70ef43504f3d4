package cluster

import (
	"io"
	"net"
	"sync"
	"testing"
)

// proxy forwards TCP connections from its listener to a target (a node's
// NATS route port). Blocked, it stops passing bytes either way but keeps
// every connection open and accepts new ones: to the nodes, the link is
// silent, as when a network drops packets (a partition without root).
type proxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	blocked bool
	gate    chan struct{} // closed while open
	conns   map[net.Conn]bool
	closed  bool
	wg      sync.WaitGroup
}

// newProxy listens; its target is set before anything connects.
func newProxy(t testing.TB) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, gate: make(chan struct{}), conns: map[net.Conn]bool{}}
	close(p.gate)
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) setTarget(a string) {
	p.mu.Lock()
	p.target = a
	p.mu.Unlock()
}

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		target := p.target
		p.mu.Unlock()
		up, err := net.Dial("tcp", target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			up.Close()
			return
		}
		p.conns[c], p.conns[up] = true, true
		p.wg.Add(2)
		p.mu.Unlock()
		go p.pump(c, up)
		go p.pump(up, c)
	}
}

// pump copies src to dst, holding each read while the proxy is blocked
// (what it holds is passed on when it opens again, as TCP would after a
// short outage).
func (p *proxy) pump(src, dst net.Conn) {
	defer p.wg.Done()
	defer func() {
		src.Close()
		dst.Close()
		p.mu.Lock()
		delete(p.conns, src)
		delete(p.conns, dst)
		p.mu.Unlock()
	}()
	buf := make([]byte, 32<<10)
	for {
		p.wait()
		n, err := src.Read(buf)
		if n > 0 {
			p.wait()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if err != io.EOF {
				return
			}
			return
		}
	}
}

func (p *proxy) wait() {
	p.mu.Lock()
	g := p.gate
	p.mu.Unlock()
	<-g
}

// block makes the link silent.
func (p *proxy) block() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.blocked {
		p.blocked = true
		p.gate = make(chan struct{})
	}
}

// unblock lets bytes through again; with reset, the connections open
// during the outage are closed first (as after a partition that outlasted
// TCP's retries), so that the nodes connect again.
func (p *proxy) unblock(reset bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if reset {
		for c := range p.conns {
			c.Close()
		}
	}
	if p.blocked {
		p.blocked = false
		close(p.gate)
	}
}

func (p *proxy) close() {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.ln.Close()
	p.unblock(false)
	p.wg.Wait()
}

// links are the route links of a cluster: links[i][j] carries the
// connections node i opens to node j.
type links [][]*proxy

// cut isolates node k: every link to or from it goes silent.
func (l links) cut(k int) {
	for i := range l {
		for j, p := range l[i] {
			if p != nil && (i == k || j == k) {
				p.block()
			}
		}
	}
}

// heal opens every link (reset: closing the connections open meanwhile).
func (l links) heal(reset bool) {
	for i := range l {
		for _, p := range l[i] {
			if p != nil {
				p.unblock(reset)
			}
		}
	}
}
