// Copyright (c) 2026 The midge authors. Licensed under the Apache License,
// Version 2.0, as the rest of this package.

//go:build linux

package socket

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// sysAccept is accept4(2) with the peer's address read into a buffer on the
// stack: unix.Accept4 allocates a 112-byte RawSockaddrAny for every call (and
// every accept that finds the queue empty), garbage at once, since only the
// converted address is kept. Internet addresses are converted here (the one
// allocation, the Sockaddr the conn keeps); any other family is asked of the
// new socket with getpeername(2), as rare as it is (a Unix socket's peer).
// [midge patch: no garbage per accept]
func sysAccept(fd int) (nfd int, sa unix.Sockaddr, err error) {
	var rsa unix.RawSockaddrAny
	n := uint32(unix.SizeofSockaddrAny)
	r, _, e := unix.Syscall6(unix.SYS_ACCEPT4, uintptr(fd), uintptr(unsafe.Pointer(&rsa)), uintptr(unsafe.Pointer(&n)),
		unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
	if e != 0 {
		return -1, nil, e
	}
	nfd = int(r)
	switch rsa.Addr.Family {
	case unix.AF_INET:
		p := (*unix.RawSockaddrInet4)(unsafe.Pointer(&rsa))
		port := (*[2]byte)(unsafe.Pointer(&p.Port))
		return nfd, &unix.SockaddrInet4{Port: int(port[0])<<8 | int(port[1]), Addr: p.Addr}, nil
	case unix.AF_INET6:
		p := (*unix.RawSockaddrInet6)(unsafe.Pointer(&rsa))
		port := (*[2]byte)(unsafe.Pointer(&p.Port))
		return nfd, &unix.SockaddrInet6{Port: int(port[0])<<8 | int(port[1]), ZoneId: p.Scope_id, Addr: p.Addr}, nil
	}
	if sa, err = unix.Getpeername(nfd); err != nil {
		_ = unix.Close(nfd)
		return -1, nil, err
	}
	return nfd, sa, nil
}

// sysAcceptNoAddr is accept4(2) with no address buffer: the kernel copies
// no address out. [midge patch: peer address asked of the socket]
func sysAcceptNoAddr(fd int) (int, error) {
	r, _, e := unix.Syscall6(unix.SYS_ACCEPT4, uintptr(fd), 0, 0, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}
