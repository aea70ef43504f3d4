package session

import (
	"bytes"
	"hash/maphash"
)

// maxOutAliases bounds the topic aliases midge keeps for one connection,
// whatever larger Topic Alias Maximum the client allows: each holds a copy
// of its topic.
const maxOutAliases = 256

// outAliases are the topic aliases midge has given a v5 client that allows
// them (Topic Alias Maximum in its CONNECT): the first PUBLISH of a topic
// carries the topic and its alias, later ones only the alias, with an empty
// topic [MQTT-3.3.2-12]. Slots are reused second-chance (clock) style, so
// the topics sent most keep theirs and a stream of one-off topics costs a
// slot at most per pass of the hand, never a scan. A slot's topic bytes and
// the hash index are reused: no allocation per message once warm.
// Loop-only, per connection; aliases end with it [MQTT-3.3.2-7].
type outAliases struct {
	max   uint16
	hand  uint16 // next slot the clock looks at
	slots []aliasSlot
	index map[uint64]uint16 // topic hash -> alias (slot + 1)
	seed  maphash.Seed
}

type aliasSlot struct {
	topic []byte
	hash  uint64
	used  bool // sent since the hand last passed
}

func newOutAliases(clientMax uint16) *outAliases {
	m := min(clientMax, maxOutAliases)
	return &outAliases{max: m, index: make(map[uint64]uint16, m), seed: maphash.MakeSeed()}
}

// find returns the alias of topic (0: none yet) and its hash.
func (a *outAliases) find(topic []byte) (uint16, uint64) {
	h := maphash.Bytes(a.seed, topic)
	if alias, ok := a.index[h]; ok && bytes.Equal(a.slots[alias-1].topic, topic) {
		a.slots[alias-1].used = true
		return alias, h
	}
	return 0, h
}

// pick returns the alias a new topic may take, or 0 when it goes without
// one this time: a free slot, else the slot under the hand if it was not
// used since the hand last passed (a used one gets a second chance).
func (a *outAliases) pick(h uint64) uint16 {
	if _, taken := a.index[h]; taken {
		return 0 // another topic with the same hash holds it
	}
	if len(a.slots) < int(a.max) {
		a.slots = append(a.slots, aliasSlot{})
		return uint16(len(a.slots))
	}
	s := &a.slots[a.hand]
	alias := a.hand + 1
	a.hand = (a.hand + 1) % a.max
	if s.used {
		s.used = false
		return 0
	}
	return alias
}

// set gives topic the alias pick returned, once the PUBLISH that tells the
// client is on its way.
func (a *outAliases) set(alias uint16, topic []byte, h uint64) {
	s := &a.slots[alias-1]
	if s.topic != nil {
		delete(a.index, s.hash)
	}
	s.topic = append(s.topic[:0], topic...)
	if s.topic == nil {
		s.topic = []byte{}
	}
	s.hash, s.used = h, true
	a.index[h] = alias
}
