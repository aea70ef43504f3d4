//go:build !(mips || mipsle)

package store

import (
	"bytes"
	"errors"
	"fmt"
	"log"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble"
)

const (
	defaultMaxPending  = 64 << 20
	defaultCommitDelay = 250 * time.Microsecond
	// busyGroup is the size of a group (in batches) from which the next
	// one is given CommitDelay to gather.
	busyGroup = 4
)

// DB is an open store. Submit, Durable and Stats are safe from any goroutine;
// Load and Close are called once each, by the owner.
type DB struct {
	pdb  *pebble.DB
	dir  string
	opts Options

	mu         sync.Mutex
	room       sync.Cond     // signalled when the committer takes pending
	pending    *pebble.Batch // changes submitted since the committer last took them
	pendingSeq uint64        // the highest sequence number in pending
	nextSeq    uint64
	closed     bool

	wake    chan struct{} // cap 1: pending is not empty
	closing chan struct{}
	done    chan struct{}
	durable atomic.Uint64
	err     atomic.Pointer[error]
	stats   struct{ batches, commits, syncs, commitNanos atomic.Uint64 }

	unsynced int // changes written since the last sync (SyncEvery); committer-only
}

// pebbleLogger keeps pebble's routine messages out of the broker's log; its
// background errors are logged by the event listener set in Open.
type pebbleLogger struct{}

func (pebbleLogger) Infof(string, ...any) {}

// Fatalf is pebble's "cannot go on": a panic, which Open and Load turn into
// an error when it happens under them.
func (pebbleLogger) Fatalf(format string, args ...any) {
	panic(fmt.Errorf("store: pebble: "+format, args...))
}

// Open opens (creating if needed) the store in dir. A damaged or partial
// store is opened with what is readable and Load's Report says what was not;
// a store the database cannot open at all is an error that says why. Open
// never panics.
func Open(dir string, opts Options) (db *DB, err error) {
	if opts.MaxPending <= 0 {
		opts.MaxPending = defaultMaxPending
	}
	if opts.CommitDelay == 0 {
		opts.CommitDelay = defaultCommitDelay
	}
	if opts.Sync == SyncInterval && opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	if !opts.ReadOnly {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("store: %w", err)
		}
	}
	po := &pebble.Options{
		// SingleDelete (DeleteQueuedOnce) needs SETWITHDEL, which older
		// formats lack; an existing store is ratcheted up on open.
		FormatMajorVersion: pebble.FormatNewest,
		ReadOnly:           opts.ReadOnly,
		ErrorIfNotExists:   opts.ReadOnly,
		Logger:             pebbleLogger{},
		EventListener: &pebble.EventListener{BackgroundError: func(err error) {
			log.Printf("store: %s: %v", dir, err)
		}},
	}
	var pdb *pebble.DB
	if err := catch(func() (err error) { pdb, err = pebble.Open(dir, po); return err }); err != nil {
		return nil, fmt.Errorf("store: open %s: %w", dir, err)
	}
	if err := checkFormat(pdb, opts.ReadOnly); err != nil {
		pdb.Close()
		return nil, fmt.Errorf("store: open %s: %w", dir, err)
	}
	db = &DB{
		pdb:     pdb,
		dir:     dir,
		opts:    opts,
		pending: pdb.NewBatch(),
		wake:    make(chan struct{}, 1),
		closing: make(chan struct{}),
		done:    make(chan struct{}),
	}
	db.room.L = &db.mu
	if opts.ReadOnly {
		close(db.done)
	} else {
		go db.commitLoop()
	}
	return db, nil
}

// checkFormat writes the format marker of a new store and refuses a
// directory written by something else.
func checkFormat(pdb *pebble.DB, readOnly bool) error {
	return catch(func() error {
		v, closer, err := pdb.Get(metaKey)
		switch {
		case errors.Is(err, pebble.ErrNotFound):
			if readOnly {
				return nil
			}
			return pdb.Set(metaKey, metaFormat, pebble.Sync)
		case err != nil:
			return err
		}
		defer closer.Close()
		if !bytes.Equal(v, metaFormat) {
			return fmt.Errorf("unknown store format %q (want %q)", v, metaFormat)
		}
		return nil
	})
}

// catch runs f, turning a panic of the database into an error: a damaged
// store must never crash the broker.
func catch(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("store: database failed: %v", r)
		}
	}()
	return f()
}

// Submit queues b for the next group commit and returns its sequence number;
// numbers increase with each call. Safe from any goroutine, and b may be
// reused as soon as Submit returns. It never waits for the disk, except for
// back-pressure: when more than Options.MaxPending bytes are waiting for the
// committer (the disk cannot keep up), Submit waits until they are taken.
// After Close it drops b and returns 0.
func (db *DB) Submit(b *Batch) uint64 {
	db.mu.Lock()
	for db.pending.Len() > db.opts.MaxPending && !db.closed {
		db.room.Wait()
	}
	if db.closed || db.opts.ReadOnly {
		db.mu.Unlock()
		return 0
	}
	for _, o := range b.ops {
		switch o.kind {
		case opSet:
			_ = db.pending.Set(b.buf[o.k:o.v], b.buf[o.v:o.e], nil)
		case opDelete:
			_ = db.pending.Delete(b.buf[o.k:o.v], nil)
		case opSingleDelete:
			_ = db.pending.SingleDelete(b.buf[o.k:o.v], nil)
		case opDeleteRange:
			_ = db.pending.DeleteRange(b.buf[o.k:o.v], b.buf[o.v:o.e], nil)
		}
	}
	db.nextSeq++
	seq := db.nextSeq
	db.pendingSeq = seq
	db.mu.Unlock()
	db.stats.batches.Add(1)
	select {
	case db.wake <- struct{}{}:
	default:
	}
	return seq
}

// Submitted is the sequence number of the last batch submitted: once it is
// durable, everything submitted so far is. Any goroutine.
func (db *DB) Submitted() uint64 {
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.nextSeq
}

// Closing is closed when Close begins: goroutines that submit on their own
// schedule stop then.
func (db *DB) Closing() <-chan struct{} { return db.closing }

// Durable is the highest sequence number known durable: synced to disk with
// SyncAlways, written to the database with SyncInterval. Any goroutine.
func (db *DB) Durable() uint64 { return db.durable.Load() }

// Err is the first error a commit met, nil if none. Durable no longer
// advances after one: the broker must stop acknowledging what it persists.
func (db *DB) Err() error {
	if p := db.err.Load(); p != nil {
		return *p
	}
	return nil
}

// Stats reports counts of the store's work. Any goroutine.
func (db *DB) Stats() Stats {
	return Stats{
		Batches:    db.stats.batches.Load(),
		Commits:    db.stats.commits.Load(),
		Syncs:      db.stats.syncs.Load(),
		CommitTime: time.Duration(db.stats.commitNanos.Load()),
	}
}

// Size is the disk space the store's files take, in bytes. Any goroutine.
func (db *DB) Size() uint64 {
	var n uint64
	_ = catch(func() error { n = db.pdb.Metrics().DiskSpaceUsage(); return nil })
	return n
}

// commitLoop is the one committer: it takes everything submitted since its
// last commit, writes it as one database batch and (SyncAlways) syncs it
// once. While it waits for the disk, the next group gathers in pending.
func (db *DB) commitLoop() {
	defer close(db.done)
	var tick <-chan time.Time
	if db.opts.Sync == SyncInterval && db.opts.SyncEvery <= 0 {
		t := time.NewTicker(db.opts.Interval)
		defer t.Stop()
		tick = t.C
	}
	spare := db.pdb.NewBatch()
	var last uint64         // the last batch committed
	var committed time.Time // when
	busy := false           // the last group was large: let the next one gather
	for {
		closing := false
		select {
		case <-db.wake:
			// A stream of groups (the wake came right after a large
			// commit) waits; a wake after a pause does not.
			if busy && db.opts.CommitDelay > 0 && time.Since(committed) < db.opts.CommitDelay {
				time.Sleep(db.opts.CommitDelay)
			}
		case <-tick:
			db.syncLog()
			continue
		case <-db.closing:
			closing = true
		}
		db.mu.Lock()
		group, seq := db.pending, db.pendingSeq
		db.pending = spare
		db.room.Broadcast()
		db.mu.Unlock()
		db.commit(group, seq)
		committed = time.Now()
		busy = seq-last >= busyGroup
		if seq > last {
			last = seq
		}
		group.Reset()
		spare = group
		if closing {
			if db.opts.Sync == SyncInterval {
				db.syncLog()
			}
			spare.Close()
			return
		}
	}
}

// commit writes group, whose last batch is seq, and advances Durable.
func (db *DB) commit(group *pebble.Batch, seq uint64) {
	if seq <= db.durable.Load() || db.Err() != nil {
		return
	}
	if !group.Empty() {
		wo := pebble.Sync
		if db.opts.Sync == SyncInterval {
			wo = pebble.NoSync
		}
		start := time.Now()
		if err := catch(func() error { return group.Commit(wo) }); err != nil {
			err = fmt.Errorf("store: commit: %w", err)
			db.err.CompareAndSwap(nil, &err)
			log.Print(err)
			return
		}
		db.stats.commitNanos.Add(uint64(time.Since(start)))
		db.stats.commits.Add(1)
		if wo == pebble.Sync {
			db.stats.syncs.Add(1)
		}
		if every := db.opts.SyncEvery; every > 0 && wo == pebble.NoSync {
			db.unsynced += int(group.Count())
			if db.unsynced >= every {
				db.unsynced = 0
				db.syncLog()
			}
		}
	}
	db.durable.Store(seq)
	if db.opts.OnDurable != nil {
		db.opts.OnDurable(seq)
	}
}

// syncLog syncs the database's log: with SyncInterval, what was written
// since the last tick reaches the disk.
func (db *DB) syncLog() {
	if err := catch(func() error { return db.pdb.LogData(nil, pebble.Sync) }); err != nil {
		err = fmt.Errorf("store: sync: %w", err)
		db.err.CompareAndSwap(nil, &err)
		log.Print(err)
		return
	}
	db.stats.syncs.Add(1)
}

// Close commits what was submitted, syncs it and closes the database.
// Submit returns 0 afterwards.
func (db *DB) Close() error {
	db.mu.Lock()
	if db.closed {
		db.mu.Unlock()
		return errors.New("store: already closed")
	}
	db.closed = true
	db.room.Broadcast()
	db.mu.Unlock()
	close(db.closing)
	<-db.done
	err := db.Err()
	db.pending.Close()
	if cerr := catch(db.pdb.Close); cerr != nil && err == nil {
		err = fmt.Errorf("store: close: %w", cerr)
	}
	return err
}

// Available reports whether this build has a store: nil, except on 32-bit
// MIPS (nostore.go).
func Available() error { return nil }
