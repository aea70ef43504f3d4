// Copyright (c) 2023 The Gnet Authors. All rights reserved.
//
// Licensed under the Apache License, Version 2.0 (the "License");
// you may not use this file except in compliance with the License.
// You may obtain a copy of the License at
//
//      http://www.apache.org/licenses/LICENSE-2.0
//
// Unless required by applicable law or agreed to in writing, software
// distributed under the License is distributed on an "AS IS" BASIS,
// WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
// See the License for the specific language governing permissions and
// limitations under the License.

//go:build (darwin || dragonfly || freebsd || linux || netbsd || openbsd) && !gc_opt

package gnet

import (
	"math/bits"
	"sync/atomic"
)

// connMatrix keeps a loop's connections by fd in an open-addressing hash
// table of conn pointers (linear probing, at most 3/4 full, Fibonacci
// hashing of the fd; a conn's fd is in its pollAttachment, so a slot is the
// pointer alone). Upstream's map[int]*conn takes 19-39 bytes per connection
// (key, value, control byte, group slack); this takes 11-21, and a loop
// without connections holds no table. Deletion shifts the following entries
// back: no tombstones, and a lookup ends at the first empty slot.
// Loop-only, as upstream's map. [midge patch: fd table]
type connMatrix struct {
	connCount int32
	n         int     // conns held
	shift     uint8   // 64 - log2(len(slots))
	slots     []*conn // len 0 or a power of two
}

// minConnSlots is a loop's first table.
const minConnSlots = 64

func (cm *connMatrix) init() {}

func (cm *connMatrix) home(fd int) int {
	return int((uint64(fd) * 0x9E3779B97F4A7C15) >> cm.shift)
}

// iterate calls f for every conn until it returns false. f may close (and
// so remove) conns: it runs over a copy of the table's conns.
func (cm *connMatrix) iterate(f func(*conn) bool) {
	conns := make([]*conn, 0, cm.n)
	for _, c := range cm.slots {
		if c != nil {
			conns = append(conns, c)
		}
	}
	for _, c := range conns {
		if !f(c) {
			return
		}
	}
}

func (cm *connMatrix) incCount(_ int, delta int32) {
	atomic.AddInt32(&cm.connCount, delta)
}

func (cm *connMatrix) loadCount() (n int32) {
	return atomic.LoadInt32(&cm.connCount)
}

// addConn keeps c by its fd, replacing a conn kept for the same fd. Its gnet
// fd (fd and loop index) is not kept with it: nothing reads it in this
// build, and the conn is 16 bytes smaller. [midge patch: smaller conn]
func (cm *connMatrix) addConn(c *conn, _ int) {
	if cm.put(c) {
		cm.incCount(0, 1)
	}
}

// put adds c and reports whether its fd was new.
func (cm *connMatrix) put(c *conn) bool {
	if (cm.n+1)*4 > len(cm.slots)*3 {
		cm.grow()
	}
	fd := c.pollAttachment.FD
	mask := len(cm.slots) - 1
	for i := cm.home(fd); ; i = (i + 1) & mask {
		o := cm.slots[i]
		if o == nil {
			cm.slots[i] = c
			cm.n++
			return true
		}
		if o.pollAttachment.FD == fd {
			cm.slots[i] = c
			return false
		}
	}
}

func (cm *connMatrix) grow() {
	old := cm.slots
	size := 2 * len(old)
	if size < minConnSlots {
		size = minConnSlots
	}
	cm.slots = make([]*conn, size)
	cm.shift = uint8(64 - bits.TrailingZeros(uint(size)))
	cm.n = 0
	for _, c := range old {
		if c != nil {
			cm.put(c)
		}
	}
}

func (cm *connMatrix) delConn(c *conn) {
	if cm.n == 0 {
		return
	}
	fd := c.pollAttachment.FD
	mask := len(cm.slots) - 1
	i := cm.home(fd)
	for ; ; i = (i + 1) & mask {
		o := cm.slots[i]
		if o == nil {
			return
		}
		if o.pollAttachment.FD == fd {
			break
		}
	}
	// Shift back every entry of the run after i that may sit at i: one
	// whose home is not cyclically within (i, j].
	for j := i; ; {
		j = (j + 1) & mask
		o := cm.slots[j]
		if o == nil {
			break
		}
		k := cm.home(o.pollAttachment.FD)
		if i <= j && i < k && k <= j || i > j && (i < k || k <= j) {
			continue
		}
		cm.slots[i] = o
		i = j
	}
	cm.slots[i] = nil
	cm.n--
	cm.incCount(0, -1)
}

func (cm *connMatrix) getConn(fd int) *conn {
	if cm.n == 0 {
		return nil
	}
	mask := len(cm.slots) - 1
	for i := cm.home(fd); ; i = (i + 1) & mask {
		c := cm.slots[i]
		if c == nil || c.pollAttachment.FD == fd {
			return c
		}
	}
}

/*
func (cm *connMatrix) getConnByGFD(fd gfd.GFD) *conn {
	return cm.getConn(fd.Fd())
}
*/
