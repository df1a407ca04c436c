package control

import (
	"cmp"
	"slices"
)

func sortOps(ops []*Operation) {
	slices.SortFunc(ops, func(a, b *Operation) int {
		if c := cmp.Compare(a.Inserted, b.Inserted); c != 0 {
			return c
		}
		return cmp.Compare(a.Name, b.Name)
	})
}
