package store

import (
	"encoding/binary"
	"errors"
)

// Keys start with one byte naming the kind of record, so that Load reads
// each kind as one ordered range:
//
//	'M'                               format marker
//	'R' topic                         retained message
//	'S' clientID                      session
//	'Q' len16 clientID seq64          queued message (big endian: Seq order)
//	'A' len16 clientID id16           QoS 2 packet id awaiting PUBREL
//	'C' name                          a broker counter's total (uvarint)
//
// The client id is length-prefixed in per-client keys so that one client's
// range never holds another's ("a" is not a prefix of "ab"'s keys).
const (
	kindMeta     = 'M'
	kindRetained = 'R'
	kindSession  = 'S'
	kindQueued   = 'Q'
	kindAwait    = 'A'
	kindCounter  = 'C'
)

var (
	metaKey    = []byte{kindMeta}
	metaFormat = []byte("midge-store v1")
	errKey     = errors.New("store: malformed key")
)

func appendClientPrefix(dst []byte, kind byte, clientID string) []byte {
	dst = append(dst, kind)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(clientID)))
	return append(dst, clientID...)
}

func appendQueuedKey(dst []byte, clientID string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(appendClientPrefix(dst, kindQueued, clientID), seq)
}

func appendAwaitKey(dst []byte, clientID string, id uint16) []byte {
	return binary.BigEndian.AppendUint16(appendClientPrefix(dst, kindAwait, clientID), id)
}

// splitClientKey returns the client id of a per-client key and what follows
// it, which must be n bytes long.
func splitClientKey(k []byte, n int) (string, []byte, error) {
	if len(k) < 3 {
		return "", nil, errKey
	}
	l := int(binary.BigEndian.Uint16(k[1:3]))
	if len(k) != 3+l+n {
		return "", nil, errKey
	}
	return string(k[3 : 3+l]), k[3+l:], nil
}

// prefixEnd is the smallest key greater than every key starting with p.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] != 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil // p is all 0xff: no upper bound
}
