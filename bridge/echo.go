package bridge

import (
	"hash/maphash"
	"sync"
	"time"
)

// echoes remembers what a 3.x bridge without try_private sent lately, so
// that the copy the remote sends back to the bridge's own subscription (an
// MQTT 3 server has no no-local) is recognised and dropped rather than
// published locally a second time. v5 bridges ask the remote for no-local,
// and try_private bridges get it from midge and mosquitto, so they need none
// of this. Two generations, swapped every echoWindow, bound its size.
type echoes struct {
	mu       sync.Mutex
	seed     maphash.Seed
	cur, old map[uint64]int
	swapped  time.Time
}

const echoWindow = 10 * time.Second

func newEchoes() *echoes {
	return &echoes{seed: maphash.MakeSeed(), cur: map[uint64]int{}, old: map[uint64]int{}, swapped: time.Now()}
}

func (e *echoes) key(topic string, payload []byte) uint64 {
	var h maphash.Hash
	h.SetSeed(e.seed)
	h.WriteString(topic)
	h.WriteByte(0)
	h.Write(payload)
	return h.Sum64()
}

func (e *echoes) rotateLocked(now time.Time) {
	if now.Sub(e.swapped) >= echoWindow {
		e.old, e.cur, e.swapped = e.cur, map[uint64]int{}, now
	}
}

// sent records a message sent to the remote on topic.
func (e *echoes) sent(topic string, payload []byte) {
	k := e.key(topic, payload)
	e.mu.Lock()
	e.rotateLocked(time.Now())
	e.cur[k]++
	e.mu.Unlock()
}

// echo reports (once per message sent) whether a message received on topic
// is the remote's copy of one the bridge sent.
func (e *echoes) echo(topic string, payload []byte) bool {
	k := e.key(topic, payload)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.rotateLocked(time.Now())
	for _, m := range []map[uint64]int{e.old, e.cur} {
		if m[k] > 0 {
			if m[k]--; m[k] == 0 {
				delete(m, k)
			}
			return true
		}
	}
	return false
}
