package loop

import (
	"slices"
	"testing"
)

// TestConnList checks the loop's intrusive list of connections: pushes and
// removals in any order leave exactly the connections not removed, and a
// removed connection keeps no links.
func TestConnList(t *testing.T) {
	tests := []struct {
		name   string
		push   int
		remove []int // indexes of pushed conns, in removal order
		want   []int // what all yields, newest first
	}{
		{"empty", 0, nil, nil},
		{"one", 1, nil, []int{0}},
		{"one removed", 1, []int{0}, nil},
		{"remove head", 3, []int{2}, []int{1, 0}},
		{"remove tail", 3, []int{0}, []int{2, 1}},
		{"remove middle", 3, []int{1}, []int{2, 0}},
		{"remove all", 3, []int{1, 2, 0}, nil},
		{"remove twice", 2, []int{1, 1}, []int{0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var l connList
			cs := make([]*conn, tt.push)
			for i := range cs {
				cs[i] = &conn{}
				l.push(cs[i])
			}
			for _, i := range tt.remove {
				l.remove(cs[i])
				if cs[i].prev != nil || cs[i].next != nil {
					t.Fatalf("removed conn %d still linked", i)
				}
			}
			var got []int
			for c := range l.all() {
				got = append(got, slices.Index(cs, c))
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("all() = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestConnListRemoveWhileRanging: a connection may be removed by the body
// that is given it (OnClose can run inside a shutdown's kick).
func TestConnListRemoveWhileRanging(t *testing.T) {
	var l connList
	for range 4 {
		l.push(&conn{})
	}
	n := 0
	for c := range l.all() {
		l.remove(c)
		n++
	}
	if n != 4 || l.head != nil {
		t.Fatalf("visited %d, head %v; want 4, nil", n, l.head)
	}
}
