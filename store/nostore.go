//go:build mips || mipsle

package store

import (
	"errors"
	"time"
)

// ErrUnavailable is Open's answer on 32-bit MIPS: the database under the
// store (pebble v1.1.5) does not build there (it keeps its 32-bit MIPS
// constants in files named _mips.go, which Go reads as GOARCH=mips only,
// and pebble v2's newest format faults on MIPS's aligned loads). The broker
// runs without persistence on these boards.
var ErrUnavailable = errors.New("store: persistence is not available on 32-bit MIPS builds (the embedded database does not build for this architecture)")

// DB is never opened on 32-bit MIPS: Open returns ErrUnavailable.
type DB struct{ closing chan struct{} }

// Open returns ErrUnavailable.
func Open(string, Options) (*DB, error) { return nil, ErrUnavailable }

// Available reports whether this build has a store.
func Available() error { return ErrUnavailable }

func (db *DB) Submit(*Batch) uint64         { return 0 }
func (db *DB) Submitted() uint64            { return 0 }
func (db *DB) Closing() <-chan struct{}     { return db.closing }
func (db *DB) Durable() uint64              { return 0 }
func (db *DB) Err() error                   { return ErrUnavailable }
func (db *DB) Stats() Stats                 { return Stats{CommitTime: time.Duration(0)} }
func (db *DB) Size() uint64                 { return 0 }
func (db *DB) Close() error                 { return ErrUnavailable }
func (db *DB) Load(Visitor) (Report, error) { return Report{}, ErrUnavailable }
