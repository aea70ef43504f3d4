package cluster

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"
)

func TestAppendCoalesced(t *testing.T) {
	big := bytes.Repeat([]byte{7}, 300) // a two-byte length
	withBig := append(binary.AppendUvarint(nil, 300), big...)
	for _, c := range []struct {
		name string
		body []byte
		want [][]byte
		bad  bool
	}{
		{name: "empty", body: nil, want: nil},
		{name: "one", body: []byte{3, 'a', 'b', 'c'}, want: [][]byte{[]byte("abc")}},
		{name: "two", body: []byte{1, 'x', 2, 'y', 'z'}, want: [][]byte{[]byte("x"), []byte("yz")}},
		{name: "empty record", body: []byte{0, 1, 'q'}, want: [][]byte{{}, []byte("q")}},
		{name: "long record", body: append(withBig, 1, 'e'), want: [][]byte{big, []byte("e")}},
		{name: "short record", body: []byte{1, 'x', 5, 'a', 'b'}, bad: true},
		{name: "truncated length", body: []byte{1, 'x', 0x80}, bad: true},
		{name: "length overflow", body: []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, bad: true},
		{name: "huge length", body: []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 'a'}, bad: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			prior := [][]byte{[]byte("before")}
			got, err := appendCoalesced(prior, c.body)
			if c.bad {
				if err == nil {
					t.Fatalf("no error; got %q", got)
				}
				if len(got) != 1 || string(got[0]) != "before" {
					t.Fatalf("a malformed message changed what was read before it: %q", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got = got[1:]
			if len(got) != len(c.want) {
				t.Fatalf("got %d records %q, want %q", len(got), got, c.want)
			}
			for i := range got {
				if !bytes.Equal(got[i], c.want[i]) {
					t.Fatalf("record %d: %q, want %q", i, got[i], c.want[i])
				}
				if cap(got[i]) != len(got[i]) {
					t.Fatalf("record %d can be appended to over the next one", i)
				}
			}
		})
	}
}

func FuzzAppendCoalesced(f *testing.F) {
	f.Add([]byte{3, 'a', 'b', 'c'})
	f.Add([]byte{1, 'x', 5, 'a'})
	f.Add([]byte{0x80})
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := appendCoalesced(nil, body)
		if err != nil {
			if len(got) != 0 {
				t.Fatalf("records with the error: %q", got)
			}
			return
		}
		// What was read encodes back to the body.
		var again []byte
		for _, r := range got {
			again = binary.AppendUvarint(again, uint64(len(r)))
			again = append(again, r...)
		}
		if len(body) > 0 || len(again) > 0 {
			// Non-minimal lengths (0x80 0x00 for 0) decode too: compare
			// what they carry.
			back, err := appendCoalesced(nil, again)
			if err != nil || len(back) != len(got) {
				t.Fatalf("re-encoded: %q, %v; was %q", back, err, got)
			}
			for i := range back {
				if !bytes.Equal(back[i], got[i]) {
					t.Fatalf("record %d: %q, was %q", i, back[i], got[i])
				}
			}
		}
	})
}

// TestCoalesce: the writes of a round come out, per subject, in order and
// each exactly once, in messages no bigger than the bound (but a write
// over it alone, as it was queued), and a message alone is an 'M'.
func TestCoalesce(t *testing.T) {
	var round []stateOp
	subjects := []string{"a", "b", "c"}
	for i := range 200 {
		size := 1 + i%37
		if i == 77 {
			size = 500 // over the bound on its own
		}
		rec := bytes.Repeat([]byte{byte(i)}, size)
		round = append(round, stateOp{kind: 'M', subject: subjects[i%7%3], data: append([]byte{'M'}, rec...), ord: uint64(i + 1)})
	}
	round = append(round, stateOp{kind: 'M', subject: "lonely", data: []byte("Mxyz"), ord: 201})
	var batches []stateBatch
	open := map[string]int{}
	for _, limit := range []int{100, 400, 1 << 20, 120} { // the scratch reused
		batches = coalesce(round, limit, batches, open)
		got := map[string][][]byte{}
		seen := make([]int, len(round))
		for _, b := range batches {
			switch {
			case len(b.ops) == 1:
				if !bytes.Equal(b.data, round[b.ops[0]].data) {
					t.Fatalf("limit %d: a write alone is not its 'M'", limit)
				}
				got[b.subject] = append(got[b.subject], b.data[1:])
			case b.data[0] != 'N':
				t.Fatalf("limit %d: %d writes in a %q message", limit, len(b.ops), b.data[0])
			case len(b.data) > limit:
				t.Fatalf("limit %d: a coalesced message of %d bytes", limit, len(b.data))
			default:
				recs, err := appendCoalesced(nil, b.data[1:])
				if err != nil || len(recs) != len(b.ops) {
					t.Fatalf("limit %d: %d records (%v) for %d writes", limit, len(recs), err, len(b.ops))
				}
				got[b.subject] = append(got[b.subject], recs...)
			}
			for _, i := range b.ops {
				if round[i].subject != b.subject {
					t.Fatalf("limit %d: write %d of %s in a message of %s", limit, i, round[i].subject, b.subject)
				}
				seen[i]++
			}
		}
		for i, c := range seen {
			if c != 1 {
				t.Fatalf("limit %d: write %d in %d messages", limit, i, c)
			}
		}
		for _, s := range append(subjects, "lonely") {
			var want [][]byte
			for _, op := range round {
				if op.subject == s {
					want = append(want, op.data[1:])
				}
			}
			if fmt.Sprint(got[s]) != fmt.Sprint(want) {
				t.Fatalf("limit %d, subject %s: records out of order or lost", limit, s)
			}
		}
		if limit == 1<<20 && len(batches) != 4 {
			t.Fatalf("unbounded: %d messages for 4 subjects", len(batches))
		}
		t.Logf("limit %d: %d writes in %d messages", limit, len(round), len(batches))
	}
}
