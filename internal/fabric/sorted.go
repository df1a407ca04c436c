package fabric

import (
	"slices"
)

// patchSorted returns a new list made of rs (sorted by cmp) without the
// elements of del (matched by cmp and same) and with those of add (both
// sorted by cmp). It finds the few places by binary search and copies
// the runs between them whole: a change of a few entries among 10,000
// costs one bulk copy, not 10,000 comparisons and appends.
func patchSorted[T any](rs, del, add []T, cmp func(a, b T) int, same func(a, b T) bool) []T {
	type edit struct {
		at  int // index in rs
		ins bool
		v   T
	}
	edits := make([]edit, 0, len(del)+len(add))
	for _, d := range del {
		i, ok := slices.BinarySearchFunc(rs, d, cmp)
		for ok && i < len(rs) && cmp(rs[i], d) == 0 {
			if same(rs[i], d) {
				edits = append(edits, edit{at: i})
				break
			}
			i++
		}
	}
	for _, a := range add {
		i, _ := slices.BinarySearchFunc(rs, a, cmp)
		edits = append(edits, edit{at: i, ins: true, v: a})
	}
	// By position; at one position insertions first (in add's order),
	// then the removal of rs[at].
	slices.SortStableFunc(edits, func(x, y edit) int {
		if x.at != y.at {
			return x.at - y.at
		}
		switch {
		case x.ins == y.ins:
			return 0
		case x.ins:
			return -1
		}
		return 1
	})
	out := make([]T, 0, len(rs)+len(add))
	pos := 0
	for _, e := range edits {
		if e.at < pos {
			continue // a removal listed twice
		}
		out = append(out, rs[pos:e.at]...)
		pos = e.at
		if e.ins {
			out = append(out, e.v)
		} else {
			pos++
		}
	}
	return append(out, rs[pos:]...)
}
