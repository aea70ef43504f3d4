// Copyright (c) 2021 The Gnet Authors. All rights reserved.
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
	"net"
	"runtime"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/panjf2000/gnet/v2/pkg/errors"
	"github.com/panjf2000/gnet/v2/pkg/netpoll"
	"github.com/panjf2000/gnet/v2/pkg/queue"
	"github.com/panjf2000/gnet/v2/pkg/socket"
)

func (el *eventloop) accept0(fd int, _ netpoll.IOEvent, _ netpoll.IOFlags) error {
	for {
		// Only the source-address balancer needs the peer's address here;
		// otherwise RemoteAddr asks the socket when wanted.
		// [midge patch: peer address asked of the socket]
		var (
			nfd int
			sa  unix.Sockaddr
			err error
		)
		if el.engine.opts.LB == SourceAddrHash {
			nfd, sa, err = socket.Accept(fd)
		} else {
			nfd, err = socket.AcceptNoAddr(fd)
		}
		switch err {
		case nil:
		case unix.EAGAIN: // the Accept queue has been drained out, we can return now
			return nil
		case unix.EINTR, unix.ECONNRESET, unix.ECONNABORTED:
			// ECONNRESET or ECONNABORTED could indicate that a socket
			// in the Accept queue was closed before we Accept()ed it.
			// It's a silly error, let's retry it.
			continue
		default:
			if acceptSkip(err) {
				continue
			}
			if acceptLater(err) {
				el.logAcceptLater(err)
				el.acceptPause(fd, true) // the reactor's listener is edge-triggered
				return nil
			}
			el.getLogger().Errorf("Accept() failed due to error: %v", err)
			return errors.ErrAcceptSocket
		}

		// Only the source-address balancer needs the remote address now;
		// the conn keeps sa (nil for the others) and converts it when asked for.
		// [midge patch: lazy remote address]
		var remoteAddr net.Addr
		if sa != nil {
			remoteAddr = socket.SockaddrToTCPOrUnixAddr(sa)
		}
		network := el.listeners[fd].network
		if opts := el.engine.opts; opts.TCPKeepAlive > 0 && network == "tcp" &&
			(runtime.GOOS != "linux" && runtime.GOOS != "freebsd" && runtime.GOOS != "dragonfly") {
			// TCP keepalive options are not inherited from the listening socket
			// on platforms other than Linux, FreeBSD, or DragonFlyBSD.
			// We therefore need to set them on the accepted socket explicitly.
			//
			// Check out https://github.com/nginx/nginx/pull/337 for details.
			if err = setKeepAlive(
				nfd,
				true,
				opts.TCPKeepAlive,
				opts.TCPKeepInterval,
				opts.TCPKeepCount); err != nil {
				el.getLogger().Errorf("failed to set TCP keepalive on fd=%d: %v", fd, err)
			}
		}

		el := el.engine.eventLoops.next(remoteAddr)
		c := newStreamConn(network, nfd, el, sa, el.listeners[fd].addr)
		err = el.poller.Trigger(queue.HighPriority, el.register, c)
		if err != nil {
			el.getLogger().Errorf("failed to enqueue the accepted socket fd=%d to poller: %v", c.pollAttachment.FD, err)
			_ = unix.Close(nfd)
			c.release()
		}
	}
}

func (el *eventloop) accept(fd int, ev netpoll.IOEvent, flags netpoll.IOFlags) error {
	network := el.listeners[fd].network
	if network == "udp" {
		return el.readUDP(fd, ev, flags)
	}

	// The peer's address is asked of the socket when wanted (RemoteAddr).
	// [midge patch: peer address asked of the socket]
	nfd, err := socket.AcceptNoAddr(fd)
	switch err {
	case nil:
	case unix.EINTR, unix.EAGAIN, unix.ECONNRESET, unix.ECONNABORTED:
		// ECONNRESET or ECONNABORTED could indicate that a socket
		// in the Accept queue was closed before we Accept()ed it.
		// It's a silly error, let's retry it.
		return nil
	default:
		if acceptSkip(err) {
			return nil
		}
		if acceptLater(err) {
			el.logAcceptLater(err)
			el.acceptPause(fd, false)
			return nil
		}
		el.getLogger().Errorf("Accept() failed due to error: %v", err)
		return errors.ErrAcceptSocket
	}

	if opts := el.engine.opts; opts.TCPKeepAlive > 0 && el.listeners[fd].network == "tcp" &&
		(runtime.GOOS != "linux" && runtime.GOOS != "freebsd" && runtime.GOOS != "dragonfly") {
		// TCP keepalive options are not inherited from the listening socket
		// on platforms other than Linux, FreeBSD, or DragonFlyBSD.
		// We therefore need to set them on the accepted socket explicitly.
		//
		// Check out https://github.com/nginx/nginx/pull/337 for details.
		if err = setKeepAlive(
			nfd,
			true,
			opts.TCPKeepAlive,
			opts.TCPKeepInterval,
			opts.TCPKeepCount); err != nil {
			el.getLogger().Errorf("failed to set TCP keepalive on fd=%d: %v", fd, err)
		}
	}

	// No remote address: RemoteAddr asks the socket. [midge patch: peer address asked of the socket]
	c := newStreamConn(network, nfd, el, nil, el.listeners[fd].addr)
	return el.register0(c)
}

// Accept errors that leave the listener usable. Upstream took every error
// but the four above for a broken listener, and its loop's return shut the
// whole engine down: a server at its open-files limit stopped serving
// everyone. [midge patch: accept errors]

// acceptLater reports an error of the moment (no descriptor or memory left):
// the listener is polled again after acceptRetry (acceptPause), and the
// connections waiting in its queue are accepted once descriptors are free;
// the loop serves its other connections meanwhile.
func acceptLater(err error) bool {
	switch err {
	case unix.EMFILE, unix.ENFILE, unix.ENOBUFS, unix.ENOMEM:
		return true
	}
	return false
}

// acceptSkip reports a network error Linux passes from a queued connection
// to accept(2), which the man page asks to treat as EAGAIN: that
// connection is gone, the next may be accepted. ENOTCONN is sysAccept's
// (accept_linux.go) when getpeername(2) fails on the socket it accepted
// (and closed).
func acceptSkip(err error) bool {
	switch err {
	case unix.ENETDOWN, unix.EPROTO, unix.ENOPROTOOPT, unix.EHOSTDOWN, unix.EHOSTUNREACH,
		unix.EOPNOTSUPP, unix.ENETUNREACH, unix.EPERM, unix.ENOTCONN:
		return true
	}
	return false
}

// acceptRetry is how long a listener rests after an acceptLater error:
// asked for at once, a level-triggered one would be reported by every poll
// (a busy loop), and an edge-triggered one not before the next connection.
const acceptRetry = 50 * time.Millisecond

// acceptLaterLogged is when an acceptLater error was last logged (unix
// nanoseconds): once a second at most, as the loop meets it on every poll
// while the limit lasts.
var acceptLaterLogged atomic.Int64

func (el *eventloop) logAcceptLater(err error) {
	now := time.Now().UnixNano()
	if last := acceptLaterLogged.Load(); now-last >= int64(time.Second) && acceptLaterLogged.CompareAndSwap(last, now) {
		el.getLogger().Errorf("Accept() failed due to error: %v (retrying)", err)
	}
}
