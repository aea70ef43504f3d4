package main

// bitmap is a growable set of sequence numbers (1, 2, 3...).
type bitmap []uint64

func (b bitmap) has(n uint64) bool {
	i := n / 64
	return i < uint64(len(b)) && b[i]&(1<<(n%64)) != 0
}

func (b *bitmap) set(n uint64) {
	i := n / 64
	for uint64(len(*b)) <= i {
		*b = append(*b, 0)
	}
	(*b)[i] |= 1 << (n % 64)
}
