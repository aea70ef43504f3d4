//go:build !(mips || mipsle)

package store

import (
	"encoding/binary"
	"fmt"

	"github.com/cockroachdb/pebble"
)

// Load reads everything back, in key order: retained messages (by topic),
// sessions (by client id), then each client's queued messages in Seq order,
// then awaiting-PUBREL ids, then counters. It reads one consistent snapshot. A record that
// cannot be decoded, or a range the database cannot read, is skipped and
// described in the Report; the error is for a store that cannot be read at
// all. Call it before the broker starts submitting.
func (db *DB) Load(v Visitor) (Report, error) {
	var rep Report
	var snap *pebble.Snapshot
	if err := catch(func() error { snap = db.pdb.NewSnapshot(); return nil }); err != nil {
		return rep, fmt.Errorf("store: load: %w", err)
	}
	defer catch(snap.Close)
	kinds := []struct {
		kind byte
		name string
		fn   func(k, v []byte) error
	}{
		{kindRetained, "retained", func(k, val []byte) error {
			m, err := decodeRetained(k[1:], val)
			if err == nil && v.Retained != nil {
				v.Retained(m)
			}
			return err
		}},
		{kindSession, "session", func(k, val []byte) error {
			s, err := decodeSession(string(k[1:]), val)
			if err == nil && v.Session != nil {
				v.Session(s)
			}
			return err
		}},
		{kindQueued, "queued", func(k, val []byte) error {
			id, rest, err := splitClientKey(k, 8)
			if err != nil {
				return err
			}
			q, err := decodeQueued(id, binary.BigEndian.Uint64(rest), val)
			if err == nil && v.Queued != nil {
				v.Queued(q)
			}
			return err
		}},
		{kindAwait, "awaiting-rel", func(k, val []byte) error {
			id, rest, err := splitClientKey(k, 2)
			if err != nil {
				return err
			}
			if len(val) != 0 {
				return errTrailing
			}
			if v.AwaitingRel != nil {
				v.AwaitingRel(id, binary.BigEndian.Uint16(rest))
			}
			return nil
		}},
		{kindCounter, "counter", func(k, val []byte) error {
			n, used := binary.Uvarint(val)
			if used <= 0 || used != len(val) || len(k) < 2 {
				return errCounter
			}
			if v.Counter != nil {
				v.Counter(string(k[1:]), n)
			}
			return nil
		}},
	}
	for _, kd := range kinds {
		prefix := []byte{kd.kind}
		err := catch(func() error {
			it, err := snap.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
			if err != nil {
				return err
			}
			for ok := it.First(); ok; ok = it.Next() {
				if err := kd.fn(it.Key(), it.Value()); err != nil {
					rep.Unreadable = append(rep.Unreadable, fmt.Sprintf("%s %q: %v", kd.name, it.Key(), err))
				}
			}
			err = it.Error()
			if cerr := it.Close(); err == nil {
				err = cerr
			}
			return err
		})
		if err != nil {
			rep.Unreadable = append(rep.Unreadable, fmt.Sprintf("%s records: read stopped: %v", kd.name, err))
		}
	}
	return rep, nil
}
