package store

import (
	"fmt"
	"testing"
)

// TestDeleteQueuedOnce: a queued message put once and removed with
// DeleteQueuedOnce is gone, across a flush and a reopen, and a message that
// is acknowledged while its put is still in the memtable costs the tables
// (almost) nothing, where a plain delete leaves a tombstone behind.
func TestDeleteQueuedOnce(t *testing.T) {
	const n, lag = 20000, 100 // lag: messages queued ahead of the one acknowledged
	flushed := map[bool]uint64{}
	for _, once := range []bool{false, true} {
		t.Run(fmt.Sprintf("once=%v", once), func(t *testing.T) {
			dir := t.TempDir()
			db := open(t, dir, Options{})
			b := NewBatch()
			payload := make([]byte, 64)
			del := func(seq uint64) {
				if once {
					b.DeleteQueuedOnce("sub", seq)
				} else {
					b.DeleteQueued("sub", seq)
				}
			}
			for i := uint64(1); i <= n; i++ {
				b.PutQueued(&Queued{ClientID: "sub", Seq: i, QoS: 1, Msg: Message{Topic: []byte("t/q"), Payload: payload, QoS: 1}})
				if i > lag {
					del(i - lag)
				}
				db.Submit(b)
				b.Reset()
			}
			for i := uint64(n - lag + 1); i <= n-1; i++ { // the last one stays
				del(i)
			}
			commit(t, db, b)
			if err := db.pdb.Flush(); err != nil {
				t.Fatal(err)
			}
			flushed[once] = db.pdb.Metrics().Levels[0].BytesFlushed
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			db = open(t, dir, Options{})
			defer db.Close()
			got, _ := load(t, db)
			if len(got.Queued) != 1 || got.Queued[0].Seq != n {
				t.Fatalf("after reopen: %d queued (want only seq %d)", len(got.Queued), n)
			}
		})
	}
	t.Logf("bytes flushed to L0: delete %d, single delete %d", flushed[false], flushed[true])
	if flushed[true]*4 > flushed[false] {
		t.Errorf("single deletes flushed %d bytes, plain deletes %d: pairs were not dropped", flushed[true], flushed[false])
	}
}

// TestSingleDeleteReusedKey: should a queued record's key ever be written
// again after its single delete (the broker numbers records so that it is
// not), the store's format keeps the single delete from resurrecting the
// first value: the older formats lack SETWITHDEL and do resurrect it.
func TestSingleDeleteReusedKey(t *testing.T) {
	dir := t.TempDir()
	db := open(t, dir, Options{})
	defer db.Close()
	b := NewBatch()
	put := func(payload string) {
		b.PutQueued(&Queued{ClientID: "sub", Seq: 1, QoS: 1, Msg: Message{Topic: []byte("t"), Payload: []byte(payload)}})
		commit(t, db, b)
	}
	del := func() {
		b.DeleteQueuedOnce("sub", 1)
		commit(t, db, b)
	}
	compact := func() {
		if err := db.pdb.Flush(); err != nil {
			t.Fatal(err)
		}
		if err := db.pdb.Compact([]byte{kindQueued}, []byte{kindQueued + 1}, false); err != nil {
			t.Fatal(err)
		}
	}
	put("first run")
	compact() // the first value at the bottom
	del()
	put("after a restart")
	if err := db.pdb.Flush(); err != nil { // the delete and the new put meet in a flush
		t.Fatal(err)
	}
	del()
	compact()
	if got, _ := load(t, db); len(got.Queued) != 0 {
		t.Fatalf("after put, delete, put, delete: %d queued records left (%q): a single delete resurrected a value",
			len(got.Queued), got.Queued[0].Msg.Payload)
	}
}
