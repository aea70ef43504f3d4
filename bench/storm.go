package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/midge-mqtt/midge/codec"
)

// A connection storm opens many idle connections as fast as the broker
// takes them, without a goroutine or a blocking call per connection: each
// of a few loops keeps a window of non-blocking connects in flight on its own
// epoll instance, writes a CONNECT encoded once (only the client id's digits
// change) as soon as the socket is up, and takes the CONNACK with one read.
// That is about seven system calls per connection (socket, setsockopt, bind,
// connect, write, epoll_ctl, read) where net.Dial and a blocking read take
// seventeen and two goroutine switches.

// ipBindAddressNoPort is IP_BIND_ADDRESS_NO_PORT (linux/in.h, missing from
// package syscall): bind picks the source address only, connect picks the
// port, so ports are shared across destinations and bind never scans.
const ipBindAddressNoPort = 0x18

// idDigits is how many decimal digits end every client id of a storm.
const idDigits = 7

// epollET is EPOLLET as the uint32 epoll_event wants it (package syscall
// spells it as a negative int).
const epollET = 1 << 31

// stormWindow is how many connects each loop keeps in flight: enough to
// keep the broker's accept queue busy, and with two loops under mosquitto's
// listen backlog of 100 (past it, SYNs are dropped and retried a second
// later, and its connect rate falls from ~20k/s to ~3k/s).
const stormWindow = 32

// connectFrame is one CONNECT encoded once; each connection rewrites the
// client id's last idDigits bytes, which end at idEnd (the frame's end
// unless a username and password follow).
type connectFrame struct {
	b     []byte
	idEnd int
}

func newConnectFrame(prefix string, version byte, keepalive uint16, user, pass string) connectFrame {
	id := prefix + "0000000"[:idDigits]
	p := codec.Packet{Type: codec.CONNECT, Connect: codec.Connect{ProtocolLevel: version,
		CleanStart: true, KeepAlive: keepalive, ClientID: []byte(id)}}
	if user != "" {
		p.Connect.Username, p.Connect.UsernameFlag = []byte(user), true
		p.Connect.Password, p.Connect.PasswordFlag = []byte(pass), true
	}
	b := p.Encode(nil, version)
	return connectFrame{b: b, idEnd: bytes.Index(b, []byte(id)) + len(id)}
}

// number makes the frame's client id end in n (mod 10^idDigits).
func (f connectFrame) number(n int) {
	for i := f.idEnd - 1; i >= f.idEnd-idDigits; i-- {
		f.b[i] = byte('0' + n%10)
		n /= 10
	}
}

type storm struct {
	family  int
	addr    net.IP
	port    int
	spread  bool // bind source addresses over 127.0.0.0/8
	next    atomic.Uint32
	version byte
	prefix  string // client ids are prefix + idDigits digits
	user    string // username and password of every CONNECT ("": none)
	pass    string
	window  int
	timeout time.Duration // with nothing in flight progressing
}

func newStorm(host string, port int, version byte, prefix string) (*storm, error) {
	ip := net.ParseIP(host)
	if ip == nil {
		a, err := net.ResolveIPAddr("ip", host)
		if err != nil {
			return nil, fmt.Errorf("bench: resolve %s: %w", host, err)
		}
		ip = a.IP
	}
	s := &storm{version: version, prefix: prefix, window: stormWindow, timeout: 10 * time.Second}
	s.addr, s.port, s.family = ip.To16(), port, syscall.AF_INET6
	if ip4 := ip.To4(); ip4 != nil {
		s.addr, s.family, s.spread = ip4, syscall.AF_INET, ip4[0] == 127
	}
	return s, nil
}

// sockaddrs returns the broker's address and a source address to bind, one
// pair per loop: package syscall writes into a Sockaddr as it uses it.
func (s *storm) sockaddrs() (dst syscall.Sockaddr, src *syscall.SockaddrInet4) {
	if s.family == syscall.AF_INET6 {
		sa := &syscall.SockaddrInet6{Port: s.port}
		copy(sa.Addr[:], s.addr)
		return sa, nil
	}
	sa := &syscall.SockaddrInet4{Port: s.port}
	copy(sa.Addr[:], s.addr)
	return sa, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}
}

// open opens n connections numbered first … first+n-1, on loops loops, and
// returns their descriptors, each past its CONNACK. On error it closes the
// ones it opened.
func (s *storm) open(ctx context.Context, first, n, loops int) ([]int, error) {
	loops = max(1, min(loops, n))
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		fds      = make([]int, 0, n)
		firstErr error
	)
	stop := make(chan struct{})
	var once sync.Once
	for l := 0; l < loops; l++ {
		lo, hi := n*l/loops, n*(l+1)/loops
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := s.loop(ctx, stop, first+lo, hi-lo)
			mu.Lock()
			fds = append(fds, got...)
			if err != nil && firstErr == nil {
				firstErr = err
			}
			mu.Unlock()
			if err != nil {
				once.Do(func() { close(stop) })
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		closeAll(fds)
		return nil, firstErr
	}
	return fds, nil
}

// stormConn is the state of one connection of a loop, by descriptor.
type stormConn struct {
	open    bool   // connect issued, CONNACK not yet read
	written bool   // CONNECT sent
	num     int    // client id number
	got     []byte // a CONNACK split across reads
}

// loop opens n connections numbered from first on its own epoll instance.
// It returns the descriptors that got their CONNACK, and the first error.
func (s *storm) loop(ctx context.Context, stop <-chan struct{}, first, n int) (fds []int, err error) {
	ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("bench: epoll: %w", err)
	}
	defer syscall.Close(ep)
	frame := newConnectFrame(s.prefix, s.version, idleKeepAlive, s.user, s.pass)
	dst, src := s.sockaddrs()
	var (
		conns    []stormConn
		events   [256]syscall.EpollEvent
		buf      [256]byte
		started  int
		inflight int
		last     = time.Now()
	)
	fds = make([]int, 0, n)
	defer func() {
		if err != nil { // the ones still connecting are not returned
			for fd := range conns {
				if conns[fd].open {
					syscall.Close(fd)
				}
			}
		}
	}()
	for len(fds) < n {
		for inflight < s.window && started < n {
			frame.number(first + started)
			fd, written, err := s.start(dst, src, frame)
			if err != nil {
				return fds, err
			}
			// Writability matters only until the CONNECT is out: asking
			// for it after would cost a wake-up per connection.
			ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | epollET, Fd: int32(fd)}
			if !written {
				ev.Events |= syscall.EPOLLOUT
			}
			if err := syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
				syscall.Close(fd)
				return fds, fmt.Errorf("bench: epoll_ctl: %w", err)
			}
			for len(conns) <= fd {
				conns = append(conns, stormConn{})
			}
			conns[fd] = stormConn{open: true, written: written, num: first + started}
			started++
			inflight++
		}
		k, err := syscall.EpollWait(ep, events[:], 100)
		if err != nil && err != syscall.EINTR {
			return fds, fmt.Errorf("bench: epoll_wait: %w", err)
		}
		for _, ev := range events[:max(k, 0)] {
			fd := int(ev.Fd)
			c := &conns[fd]
			if !c.open {
				continue
			}
			done, err := s.event(fd, c, ev.Events, frame, buf[:])
			if err != nil {
				return fds, err
			}
			if done {
				c.open, c.got = false, nil
				fds = append(fds, fd)
				inflight--
			}
		}
		if k > 0 {
			last = time.Now()
			continue
		}
		select {
		case <-stop:
			return fds, errors.New("bench: conns: stopped")
		case <-ctx.Done():
			return fds, ctx.Err()
		default:
		}
		if time.Since(last) > s.timeout {
			return fds, fmt.Errorf("bench: conns: %d connections got no CONNACK within %v", inflight, s.timeout)
		}
	}
	return fds, nil
}

// start issues a non-blocking connect and, when the socket is already up
// (as it usually is on loopback), sends the CONNECT.
func (s *storm) start(dst syscall.Sockaddr, src *syscall.SockaddrInet4, frame connectFrame) (fd int, written bool, err error) {
	fd, err = syscall.Socket(s.family, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, false, fmt.Errorf("bench: socket: %w", err)
	}
	if s.spread {
		i := s.next.Add(1)
		src.Addr[2], src.Addr[3] = byte(1+(i/250)%64), byte(1+i%250)
		if err := syscall.SetsockoptInt(fd, syscall.IPPROTO_IP, ipBindAddressNoPort, 1); err != nil {
			syscall.Close(fd)
			return -1, false, fmt.Errorf("bench: IP_BIND_ADDRESS_NO_PORT: %w", err)
		}
		if err := syscall.Bind(fd, src); err != nil {
			syscall.Close(fd)
			return -1, false, fmt.Errorf("bench: bind %v: %w", src.Addr, err)
		}
	}
	if err := syscall.Connect(fd, dst); err != nil && err != syscall.EINPROGRESS {
		syscall.Close(fd)
		return -1, false, fmt.Errorf("bench: connect: %w", err)
	}
	written, err = s.send(fd, frame)
	if err != nil {
		syscall.Close(fd)
		return -1, false, err
	}
	return fd, written, nil
}

// send writes the CONNECT; false without an error means not connected yet.
func (s *storm) send(fd int, frame connectFrame) (bool, error) {
	n, err := syscall.Write(fd, frame.b)
	switch {
	case err == syscall.EAGAIN:
		return false, nil
	case err != nil:
		return false, fmt.Errorf("bench: CONNECT: %w", err)
	case n != len(frame.b): // cannot happen on a fresh socket's empty buffer
		return false, fmt.Errorf("bench: CONNECT: short write %d of %d", n, len(frame.b))
	}
	return true, nil
}

// event handles readiness of connection fd; done means its CONNACK
// accepted the connection.
func (s *storm) event(fd int, c *stormConn, ev uint32, frame connectFrame, buf []byte) (done bool, err error) {
	if !c.written {
		if ev&(syscall.EPOLLERR|syscall.EPOLLHUP) != 0 {
			if e, _ := syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_ERROR); e != 0 {
				return false, fmt.Errorf("bench: connect: %w", syscall.Errno(e))
			}
			return false, errors.New("bench: connect: connection closed")
		}
		if ev&syscall.EPOLLOUT == 0 {
			return false, nil
		}
		frame.number(c.num)
		if c.written, err = s.send(fd, frame); err != nil || !c.written {
			return false, err
		}
	}
	if ev&(syscall.EPOLLIN|syscall.EPOLLRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) == 0 {
		return false, nil
	}
	n, err := syscall.Read(fd, buf)
	switch {
	case err == syscall.EAGAIN:
		return false, nil
	case err != nil:
		return false, fmt.Errorf("bench: waiting for CONNACK: %w", err)
	case n == 0:
		return false, errors.New("bench: waiting for CONNACK: the broker closed the connection")
	}
	b := buf[:n]
	if len(c.got) > 0 {
		c.got = append(c.got, b...)
		b = c.got
	}
	return s.connack(c, b)
}

// connack checks a CONNACK in b, keeping b in c when it is incomplete.
func (s *storm) connack(c *stormConn, b []byte) (bool, error) {
	total, err := codec.FrameSize(b, 0)
	if errors.Is(err, codec.ErrIncomplete) {
		c.got = append(c.got[:0], b...)
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("bench: CONNACK: %w", err)
	}
	if total != len(b) {
		return false, fmt.Errorf("bench: %d bytes after the CONNACK", len(b)-total)
	}
	var p codec.Packet
	d := codec.Decoder{Version: s.version}
	if _, err := d.Decode(b, &p); err != nil {
		return false, fmt.Errorf("bench: decoding CONNACK: %w", err)
	}
	if p.Type != codec.CONNACK {
		return false, fmt.Errorf("bench: got %v, want CONNACK", p.Type)
	}
	if p.ReasonCode != 0 {
		return false, fmt.Errorf("bench: CONNACK refused: code %d", p.ReasonCode)
	}
	return true, nil
}

// closeAll closes descriptors.
func closeAll(fds []int) {
	for _, fd := range fds {
		syscall.Close(fd)
	}
}
