package netpolicy

import (
	"cmp"
	"net/netip"
	"slices"

	"github.com/gaissmai/bart"
)

// flat4 is a read-only IPv4 longest-prefix-match index derived from a
// view's bart table, for the hot path (NIC.Route). The bart table stays
// the routing table (trace, effective routes, fabric and views use it);
// flat4 flattens its IPv4 part into disjoint address intervals, each
// holding the route that wins there, with a direct index on the first 16
// bits. A lookup is then two dependent memory reads (the /16 index and one
// cache line of intervals) instead of one per trie level, which is what
// bounds lookups when 100,000 routes do not fit in the caches.
type flat4 struct {
	top []uint32 // top[b]: the interval holding address b<<16; top[65536] = last
	iv  []ival
}

type ival struct {
	start uint32
	r     *Route // nil: no route
}

func buildFlat4(tbl *bart.Table[*slot]) *flat4 {
	type pr struct {
		p netip.Prefix
		r *Route
	}
	var ps []pr
	for p, s := range tbl.All4() {
		ps = append(ps, pr{p, s.win})
	}
	slices.SortFunc(ps, func(a, b pr) int {
		return cmp.Or(a.p.Addr().Compare(b.p.Addr()), cmp.Compare(a.p.Bits(), b.p.Bits()))
	})
	f := &flat4{}
	emit := func(from uint64, r *Route) {
		if n := len(f.iv); n > 0 && f.iv[n-1].r == r {
			return
		}
		f.iv = append(f.iv, ival{start: uint32(from), r: r})
	}
	type act struct {
		end uint64
		r   *Route
	}
	var st []act
	cur := uint64(0)
	closeTo := func(limit uint64) { // close every active prefix ending before limit
		for len(st) > 0 && st[len(st)-1].end < limit {
			t := st[len(st)-1]
			if cur <= t.end {
				emit(cur, t.r)
				cur = t.end + 1
			}
			st = st[:len(st)-1]
		}
	}
	for _, p := range ps {
		a := p.p.Addr().As4()
		s := uint64(a[0])<<24 | uint64(a[1])<<16 | uint64(a[2])<<8 | uint64(a[3])
		e := s + (uint64(1) << (32 - p.p.Bits())) - 1
		closeTo(s)
		if cur < s {
			var r *Route
			if len(st) > 0 {
				r = st[len(st)-1].r
			}
			emit(cur, r)
			cur = s
		}
		st = append(st, act{e, p.r})
	}
	closeTo(1 << 32)
	if cur < 1<<32 {
		emit(cur, nil)
	}
	if len(f.iv) == 0 || f.iv[0].start != 0 {
		f.iv = append([]ival{{start: 0}}, f.iv...)
	}
	f.top = make([]uint32, 65537)
	j := 0
	for b := range 65536 {
		a := uint32(b) << 16
		for j+1 < len(f.iv) && f.iv[j+1].start <= a {
			j++
		}
		f.top[b] = uint32(j)
	}
	f.top[65536] = uint32(len(f.iv) - 1)
	return f
}

// lookup returns the route winning for address a (nil: none).
func (f *flat4) lookup(a uint32) *Route {
	b := a >> 16
	lo, hi := f.top[b], f.top[b+1]
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if f.iv[mid].start <= a {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return f.iv[lo].r
}
