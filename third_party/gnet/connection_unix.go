// Copyright (c) 2019 The Gnet Authors. All rights reserved.
//
// Licensed under the Apache License, Version 2.0 (the "License");
// you may not use this file except in compliance with the License.
// You may obtain a copy of the License at
//
//     http://www.apache.org/licenses/LICENSE-2.0
//
// Unless required by applicable law or agreed to in writing, software
// distributed under the License is distributed on an "AS IS" BASIS,
// WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
// See the License for the specific language governing permissions and
// limitations under the License.

//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package gnet

import (
	"io"
	"net"
	"os"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/panjf2000/gnet/v2/pkg/bs"
	"github.com/panjf2000/gnet/v2/pkg/buffer/elastic"
	errorx "github.com/panjf2000/gnet/v2/pkg/errors"
	gio "github.com/panjf2000/gnet/v2/pkg/io"
	"github.com/panjf2000/gnet/v2/pkg/netpoll"
	bsPool "github.com/panjf2000/gnet/v2/pkg/pool/byteslice"
	"github.com/panjf2000/gnet/v2/pkg/queue"
	"github.com/panjf2000/gnet/v2/pkg/socket"
)

// UnixConn is the concrete type of every Conn this platform's reactor hands
// to an EventHandler. A handler that keeps one per connection can hold a
// *UnixConn, 8 bytes, instead of a Conn, an interface of 16, and call its
// methods without an indirect call. [midge patch: smaller handler state]
type UnixConn = conn

type conn struct {
	ctx            any                    // user-defined context
	safeCtx        atomic.Pointer[any]    // safe user-defined context
	remote         unix.Sockaddr          // remote socket address (of the datagram's sender for an unconnected UDP socket); RemoteAddr converts it when asked (no remoteAddr field: 16 bytes) [midge patch: smaller conn]
	localAddr      net.Addr               // local addr
	loop           *eventloop             // connected event-loop
	outboundBuffer elastic.Buffer         // buffer for data that is eligible to be sent to the remote
	pollAttachment netpoll.PollAttachment // connection attachment for poller; its FD is the file descriptor (no fd field of its own: 8 bytes) [midge patch: smaller conn]
	inboundBuffer  elastic.RingBuffer     // buffer for leftover data from the remote
	isDatagram     bool                   // UDP protocol
	opened         bool                   // connection opened event fired
	isEOF          bool                   // whether the connection has reached EOF
	readPaused     bool                   // PauseRead: no readable interest in the poller [midge patch]
	udpConnected   bool                   // a connected UDP socket (a client's): Write sends without an address (was: remote == nil) [midge patch: smaller conn]
	isTCP          bool                   // was proto == "tcp" (a string: 16 bytes) [midge patch: smaller conn]
}

func newStreamConn(proto string, fd int, el *eventloop, sa unix.Sockaddr, localAddr net.Addr) (c *conn) {
	c = &conn{
		isTCP:          proto == "tcp",
		remote:         sa,
		loop:           el,
		localAddr:      localAddr,
		pollAttachment: netpoll.PollAttachment{FD: fd},
	}
	c.setPollCallback() // [midge patch: no poll callback closure]
	c.outboundBuffer.Reset(el.engine.opts.WriteBufferCap)
	return
}

func newUDPConn(fd int, el *eventloop, localAddr net.Addr, sa unix.Sockaddr, connected bool) (c *conn) {
	c = &conn{
		remote:         sa,
		loop:           el,
		localAddr:      localAddr,
		isDatagram:     true,
		udpConnected:   connected,
		pollAttachment: netpoll.PollAttachment{FD: fd, Callback: el.readUDP},
	}
	return
}

func (c *conn) release() {
	c.opened = false
	c.isEOF = false
	c.readPaused = false
	c.udpConnected = false
	c.ctx = nil
	c.safeCtx.Store(nil)
	c.forgetBuf()
	if addr, ok := c.localAddr.(*net.TCPAddr); ok && len(c.loop.listeners) == 0 && len(addr.Zone) > 0 {
		bsPool.Put(bs.StringToBytes(addr.Zone))
	}
	if addr, ok := c.localAddr.(*net.UDPAddr); ok && len(c.loop.listeners) == 0 && len(addr.Zone) > 0 {
		bsPool.Put(bs.StringToBytes(addr.Zone))
	}
	if el := c.loop; el != nil && el.peekConn == c {
		el.peekConn, el.peekBuf = nil, nil // to the GC: its reader may still hold it
	}
	c.localAddr = nil
	c.remote = nil
	if !c.isDatagram {
		c.inboundBuffer.Done()
		c.outboundBuffer.Release()
	}
}

func (c *conn) open(buf []byte) error {
	if c.isDatagram && c.udpConnected {
		return unix.Send(c.pollAttachment.FD, buf, 0)
	}

	for {
		n, err := unix.Write(c.pollAttachment.FD, buf)
		if err != nil {
			if err == unix.EAGAIN {
				_, _ = c.outboundBuffer.Write(buf)
				break
			}
			return err
		}
		buf = buf[n:]
		if len(buf) == 0 {
			break
		}
	}

	return nil
}

func (c *conn) write(data []byte) (n int, err error) {
	isET := c.loop.engine.opts.EdgeTriggeredIO
	n = len(data)
	// If there is pending data in outbound buffer,
	// the current data ought to be appended to the
	// outbound buffer for maintaining the sequence
	// of network packets.
	if !c.outboundBuffer.IsEmpty() {
		_, _ = c.outboundBuffer.Write(data)
		return
	}

	defer func() {
		if err != nil {
			_ = c.loop.close(c, os.NewSyscallError("write", err))
		}
	}()

	var sent int
loop:
	if sent, err = unix.Write(c.pollAttachment.FD, data); err != nil {
		// A temporary error occurs, append the data to outbound buffer,
		// writing it back to the remote in the next round for LT mode.
		if err == unix.EAGAIN {
			_, err = c.outboundBuffer.Write(data)
			if !isET {
				err = c.modReadWrite(isET)
			}
			return
		}
		return 0, err
	}
	data = data[sent:]
	if isET && len(data) > 0 {
		goto loop
	}
	// Failed to send all data back to the remote, buffer the leftover data for the next round.
	if len(data) > 0 {
		_, _ = c.outboundBuffer.Write(data)
		err = c.modReadWrite(isET)
	}

	return
}

func (c *conn) writev(bs [][]byte) (n int, err error) {
	isET := c.loop.engine.opts.EdgeTriggeredIO

	for _, b := range bs {
		n += len(b)
	}

	// If there is pending data in outbound buffer,
	// the current data ought to be appended to the
	// outbound buffer for maintaining the sequence
	// of network packets.
	if !c.outboundBuffer.IsEmpty() {
		_, _ = c.outboundBuffer.Writev(bs)
		return
	}

	defer func() {
		if err != nil {
			_ = c.loop.close(c, os.NewSyscallError("writev", err))
		}
	}()

	remaining := n
	var sent int
loop:
	if sent, err = gio.Writev(c.pollAttachment.FD, bs); err != nil {
		// A temporary error occurs, append the data to outbound buffer,
		// writing it back to the remote in the next round for LT mode.
		if err == unix.EAGAIN {
			_, err = c.outboundBuffer.Writev(bs)
			if !isET {
				err = c.modReadWrite(isET)
			}
			return
		}
		return 0, err
	}
	pos := len(bs)
	if remaining -= sent; remaining > 0 {
		for i := range bs {
			bn := len(bs[i])
			if sent < bn {
				bs[i] = bs[i][sent:]
				pos = i
				break
			}
			sent -= bn
		}
	}
	bs = bs[pos:]
	if isET && remaining > 0 {
		goto loop
	}

	// Failed to send all data back to the remote, buffer the leftover data for the next round.
	if remaining > 0 {
		_, _ = c.outboundBuffer.Writev(bs)
		err = c.modReadWrite(isET)
	}

	return
}

type asyncWriteHook struct {
	callback AsyncCallback
	data     []byte
}

func (c *conn) asyncWrite(a any) (err error) {
	hook := a.(*asyncWriteHook)
	defer func() {
		if hook.callback != nil {
			_ = hook.callback(c, err)
		}
	}()

	if !c.opened {
		return net.ErrClosed
	}

	_, err = c.write(hook.data)
	return
}

type asyncWritevHook struct {
	callback AsyncCallback
	data     [][]byte
}

func (c *conn) asyncWritev(a any) (err error) {
	hook := a.(*asyncWritevHook)
	defer func() {
		if hook.callback != nil {
			_ = hook.callback(c, err)
		}
	}()

	if !c.opened {
		return net.ErrClosed
	}

	_, err = c.writev(hook.data)
	return
}

func (c *conn) sendTo(buf []byte, addr unix.Sockaddr) (n int, err error) {
	defer func() {
		if err != nil {
			n = 0
		}
	}()

	if addr != nil {
		return len(buf), unix.Sendto(c.pollAttachment.FD, buf, 0, addr)
	}
	if c.udpConnected { // connected UDP socket of client
		return len(buf), unix.Send(c.pollAttachment.FD, buf, 0)
	}
	return len(buf), unix.Sendto(c.pollAttachment.FD, buf, 0, c.remote) // unconnected UDP socket of server
}

// The bytes of a conn's current read that its handler has not consumed are
// kept by the loop (readConn, readBuf), not in every conn (a 24-byte slice
// header, empty between reads: the loop moves what is left into the
// inbound ring once OnTraffic returns). Outside its own read a conn's are
// empty. [midge patch: smaller conn]

// buf is the unconsumed part of c's current read (nil outside its read).
func (c *conn) buf() []byte {
	if el := c.loop; el != nil && el.readConn == c {
		return el.readBuf
	}
	return nil
}

// consume drops the first n bytes of buf (n <= len(c.buf())).
func (c *conn) consume(n int) {
	if n > 0 {
		c.loop.readBuf = c.loop.readBuf[n:]
	}
}

// dropBuf empties buf.
func (c *conn) dropBuf() {
	if el := c.loop; el != nil && el.readConn == c {
		el.readBuf = el.readBuf[:0]
	}
}

// forgetBuf ends c's current read, if any (c is released).
func (c *conn) forgetBuf() {
	if el := c.loop; el != nil && el.readConn == c {
		el.readConn, el.readBuf = nil, nil
	}
}

func (c *conn) resetBuffer() {
	c.dropBuf()
	c.inboundBuffer.Reset()
	c.inboundBuffer.Done()
}

func (c *conn) Read(p []byte) (n int, err error) {
	if c.inboundBuffer.IsEmpty() {
		n = copy(p, c.buf())
		c.consume(n)
		if n == 0 && len(p) > 0 {
			err = io.ErrShortBuffer
		}
		return
	}
	n, _ = c.inboundBuffer.Read(p)
	if n == len(p) {
		return
	}
	m := copy(p[n:], c.buf())
	n += m
	c.consume(m)
	return
}

func (c *conn) Next(n int) (buf []byte, err error) {
	inBufferLen := c.inboundBuffer.Buffered()
	if totalLen := inBufferLen + len(c.buf()); n > totalLen {
		return nil, io.ErrShortBuffer
	} else if n <= 0 {
		n = totalLen
	}

	if c.inboundBuffer.IsEmpty() {
		buf = c.buf()[:n]
		c.consume(n)
		return
	}

	buf = bsPool.Get(n)
	_, err = c.Read(buf)
	return
}

func (c *conn) Peek(n int) (buf []byte, err error) {
	inBufferLen := c.inboundBuffer.Buffered()
	if totalLen := inBufferLen + len(c.buf()); n > totalLen {
		return nil, io.ErrShortBuffer
	} else if n <= 0 {
		n = totalLen
	}

	if c.inboundBuffer.IsEmpty() {
		return c.buf()[:n], err
	}

	head, tail := c.inboundBuffer.Peek(n)
	if len(head) == n {
		return head, err
	}
	buf = bsPool.Get(n)[:0]
	buf = append(buf, head...)
	buf = append(buf, tail...)
	if inBufferLen >= n {
		return
	}

	remaining := n - inBufferLen
	buf = append(buf, c.buf()[:remaining]...)
	// Kept by the loop, not the conn (24 bytes of every conn for a buffer
	// held from a Peek to the next Discard): a copy another conn's Peek
	// displaces before this conn's Discard is left to the GC, never put
	// back while this conn may still read it. [midge patch: smaller conn]
	c.loop.peekConn, c.loop.peekBuf = c, buf
	return
}

func (c *conn) Discard(n int) (int, error) {
	if el := c.loop; el.peekConn == c {
		bsPool.Put(el.peekBuf)
		el.peekConn, el.peekBuf = nil, nil
	}

	inBufferLen := c.inboundBuffer.Buffered()
	if totalLen := inBufferLen + len(c.buf()); n >= totalLen || n <= 0 {
		c.resetBuffer()
		return totalLen, nil
	}

	if c.inboundBuffer.IsEmpty() {
		c.consume(n)
		return n, nil
	}

	discarded, _ := c.inboundBuffer.Discard(n)
	if discarded < inBufferLen {
		return discarded, nil
	}

	remaining := n - inBufferLen
	c.consume(remaining)
	return n, nil
}

func (c *conn) Write(p []byte) (int, error) {
	if c.isDatagram {
		return c.sendTo(p, nil)
	}
	return c.write(p)
}

func (c *conn) SendTo(p []byte, addr net.Addr) (int, error) {
	if !c.isDatagram {
		return 0, errorx.ErrUnsupportedOp
	}

	sa := socket.NetAddrToSockaddr(addr)
	if sa == nil {
		return 0, errorx.ErrInvalidNetworkAddress
	}

	return c.sendTo(p, sa)
}

func (c *conn) Writev(bs [][]byte) (int, error) {
	if c.isDatagram {
		return 0, errorx.ErrUnsupportedOp
	}
	return c.writev(bs)
}

func (c *conn) ReadFrom(r io.Reader) (int64, error) {
	return c.outboundBuffer.ReadFrom(r)
}

func (c *conn) WriteTo(w io.Writer) (n int64, err error) {
	if !c.inboundBuffer.IsEmpty() {
		if n, err = c.inboundBuffer.WriteTo(w); err != nil {
			return
		}
	}
	var m int
	m, err = w.Write(c.buf())
	n += int64(m)
	c.consume(m)
	return
}

func (c *conn) Flush() error {
	return c.loop.write(c)
}

func (c *conn) InboundBuffered() int {
	return c.inboundBuffer.Buffered() + len(c.buf())
}

func (c *conn) OutboundBuffered() int {
	return c.outboundBuffer.Buffered()
}

func (c *conn) Context() any        { return c.ctx }
func (c *conn) SetContext(ctx any)  { c.ctx = ctx }
func (c *conn) LocalAddr() net.Addr { return c.localAddr }

// RemoteAddr converts the peer's address of an accepted connection when
// asked for rather than at accept, and does not keep it: most connections
// never ask, or ask once for a log line, and the kept address cost each one
// 64 bytes. [midge patch: lazy remote address]
func (c *conn) RemoteAddr() net.Addr {
	if c.remote == nil {
		// A stream conn accepted by its own loop keeps no address: the
		// socket is asked, while it is open. Loop-only, like Close, so
		// that the fd cannot be closed and reused meanwhile.
		// [midge patch: peer address asked of the socket]
		if c.isDatagram || !c.opened {
			return nil
		}
		sa, err := unix.Getpeername(c.pollAttachment.FD)
		if err != nil {
			return nil
		}
		return socket.SockaddrToTCPOrUnixAddr(sa)
	}
	if c.isDatagram {
		return socket.SockaddrToUDPAddr(c.remote)
	}
	return socket.SockaddrToTCPOrUnixAddr(c.remote)
}

// Implementation of Socket interface

// func (c *conn) Gfd() gfd.GFD             { return c.gfd }

func (c *conn) Fd() int                  { return c.pollAttachment.FD }
func (c *conn) Dup() (fd int, err error) { return socket.Dup(c.pollAttachment.FD) }
func (c *conn) SetReadBuffer(bytes int) error {
	return socket.SetRecvBuffer(c.pollAttachment.FD, bytes)
}
func (c *conn) SetWriteBuffer(bytes int) error {
	return socket.SetSendBuffer(c.pollAttachment.FD, bytes)
}
func (c *conn) SetLinger(sec int) error { return socket.SetLinger(c.pollAttachment.FD, sec) }
func (c *conn) SetNoDelay(noDelay bool) error {
	return socket.SetNoDelay(c.pollAttachment.FD, func(b bool) int {
		if b {
			return 1
		}
		return 0
	}(noDelay))
}

func (c *conn) SetKeepAlivePeriod(d time.Duration) error {
	if !c.isTCP {
		return errorx.ErrUnsupportedOp
	}
	return socket.SetKeepAlivePeriod(c.pollAttachment.FD, int(d.Seconds()))
}

func (c *conn) SetKeepAlive(enabled bool, idle, intvl time.Duration, cnt int) error {
	if !c.isTCP {
		return errorx.ErrUnsupportedOp
	}
	return socket.SetKeepAlive(c.pollAttachment.FD, enabled, int(idle.Seconds()), int(intvl.Seconds()), cnt)
}

func (c *conn) AsyncWrite(buf []byte, callback AsyncCallback) error {
	if c.isDatagram {
		_, err := c.sendTo(buf, nil)
		// TODO: it will not go asynchronously with UDP, so calling a callback is needless,
		//  we may remove this branch in the future, please don't rely on the callback
		// 	to do something important under UDP, if you're working with UDP, just call Conn.Write
		// 	to send back your data.
		if callback != nil {
			_ = callback(nil, nil)
		}
		return err
	}
	return c.loop.poller.Trigger(queue.HighPriority, c.asyncWrite, &asyncWriteHook{callback, buf})
}

func (c *conn) AsyncWritev(bs [][]byte, callback AsyncCallback) error {
	if c.isDatagram {
		return errorx.ErrUnsupportedOp
	}
	return c.loop.poller.Trigger(queue.HighPriority, c.asyncWritev, &asyncWritevHook{callback, bs})
}

func (c *conn) Wake(callback AsyncCallback) error {
	return c.loop.poller.Trigger(queue.LowPriority, func(_ any) (err error) {
		err = c.loop.wake(c)
		if callback != nil {
			_ = callback(c, err)
		}
		return
	}, nil)
}

func (c *conn) CloseWithCallback(callback AsyncCallback) error {
	return c.loop.poller.Trigger(queue.LowPriority, func(_ any) (err error) {
		err = c.loop.close(c, nil)
		if callback != nil {
			_ = callback(c, err)
		}
		return
	}, nil)
}

func (c *conn) Close() error {
	return c.loop.poller.Trigger(queue.LowPriority, func(_ any) (err error) {
		err = c.loop.close(c, nil)
		return
	}, nil)
}

func (c *conn) EventLoop() EventLoop {
	return c.loop
}

func (*conn) SetDeadline(_ time.Time) error {
	return errorx.ErrUnsupportedOp
}

func (*conn) SetReadDeadline(_ time.Time) error {
	return errorx.ErrUnsupportedOp
}

func (*conn) SetWriteDeadline(_ time.Time) error {
	return errorx.ErrUnsupportedOp
}

func (c *conn) SafeContext() (ctx any) {
	if p := c.safeCtx.Load(); p != nil {
		return *p
	}
	return nil
}

func (c *conn) SetSafeContext(ctx any) {
	c.safeCtx.Store(&ctx)
}
