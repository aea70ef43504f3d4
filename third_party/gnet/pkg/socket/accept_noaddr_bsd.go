// Copyright (c) 2026 The midge authors. Licensed under the Apache License,
// Version 2.0, as the rest of this package.

//go:build darwin || dragonfly || freebsd || netbsd || openbsd

package socket

// sysAcceptNoAddr is sysAccept with the address dropped: the BSDs keep
// upstream's accept. [midge patch: peer address asked of the socket]
func sysAcceptNoAddr(fd int) (int, error) {
	nfd, _, err := sysAccept(fd)
	return nfd, err
}
