package store

import (
	"reflect"
	"testing"
)

// TestCounters: counter totals come back by name, a later put replaces an
// earlier one, and a malformed value is reported, not fatal.
func TestCounters(t *testing.T) {
	dir := t.TempDir()
	db := open(t, dir, Options{})
	b := NewBatch()
	b.PutCounter("messages/received", 7)
	b.PutCounter("bytes/sent", 1<<40)
	commit(t, db, b)
	b.PutCounter("messages/received", 9)
	b.set(func() int { k := b.mark(); b.buf = append(b.buf, kindCounter, 'x'); return k }(), b.mark()) // empty value
	commit(t, db, b)

	got := map[string]uint64{}
	rep, err := db.Load(Visitor{Counter: func(name string, v uint64) { got[name] = v }})
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]uint64{"messages/received": 9, "bytes/sent": 1 << 40}; !reflect.DeepEqual(got, want) {
		t.Errorf("counters %v, want %v", got, want)
	}
	if len(rep.Unreadable) != 1 {
		t.Errorf("unreadable %q, want the malformed counter", rep.Unreadable)
	}
	db.Close()
}
