// Copyright (c) 2026 The midge authors. Licensed under the Apache License,
// Version 2.0, as the rest of this package.

//go:build darwin || dragonfly || freebsd || netbsd || openbsd

package gnet

// acceptPause does nothing here (kqueue's read filter would have to be
// deleted and added again; midge runs on Linux): a level-triggered listener
// is reported again by the next poll. [midge patch: accept errors]
func (el *eventloop) acceptPause(int, bool) {}
