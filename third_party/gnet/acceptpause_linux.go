// Copyright (c) 2026 The midge authors. Licensed under the Apache License,
// Version 2.0, as the rest of this package.

//go:build linux

package gnet

import (
	"time"

	"github.com/panjf2000/gnet/v2/pkg/queue"
)

// acceptPause takes listener fd out of the poller's interest for
// acceptRetry, then asks for it again, edge-triggered or not as it was
// registered: EPOLL_CTL_MOD checks readiness again, so a connection still
// queued is reported then. [midge patch: accept errors]
func (el *eventloop) acceptPause(fd int, edgeTriggered bool) {
	ln := el.listeners[fd]
	if ln == nil || ln.pollAttachment == nil {
		return
	}
	pa := ln.pollAttachment
	if el.poller.ModNone(pa) != nil {
		return
	}
	time.AfterFunc(acceptRetry, func() {
		_ = el.poller.Trigger(queue.HighPriority, func(any) error {
			_ = el.poller.ModRead(pa, edgeTriggered) // fails only once the engine has stopped
			return nil
		}, nil)
	})
}
