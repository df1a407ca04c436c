package ipam

import (
	"fmt"
	"math"
)

// checkInvariants verifies every structural invariant of p by brute force:
// node shapes, summaries, counters, the free list, the free-block histogram
// and the quarantine/FIFO correspondence. It returns the first violation.
func checkInvariants(p *Pool) error {
	type quarLeaf struct {
		a    u128
		bits uint8
	}
	var (
		reach, nalloc, nquar int
		quars                = map[quarLeaf]uint32{}
		hist                 = make([]uint64, int(p.width-p.plen)+1)
	)
	// walk returns (best, bestQ) of the subtree computed from scratch and
	// checks the stored weights on the way.
	var walk func(x uint32, d uint8, a u128) (uint8, uint8, error)
	weightOf := func(c uint32, d uint8) float32 {
		if c == 0 {
			return float32(math.Ldexp(1, int(p.width)-int(d)-p.weightShift()))
		}
		if p.nd(c).kind == kindInternal {
			return math.Float32frombits(p.nd(c).val)
		}
		return 0
	}
	walk = func(x uint32, d uint8, a u128) (uint8, uint8, error) {
		if x == 0 || int(x) >= int(p.nnodes) {
			return 0, 0, fmt.Errorf("bad index %d at depth %d", x, d)
		}
		reach++
		nd := p.nd(x)
		if a.mask(d) != a {
			return 0, 0, fmt.Errorf("address %v not masked at depth %d", a, d)
		}
		var b, q uint8
		switch nd.kind {
		case kindAlloc:
			if nd.child != [2]uint32{} || nd.val == 0 {
				return 0, 0, fmt.Errorf("alloc leaf %v/%d malformed: %+v", a, d, nd)
			}
			nalloc++
			b, q = none, none
		case kindQuar:
			if nd.child != [2]uint32{} {
				return 0, 0, fmt.Errorf("quar leaf with children at %v/%d", a, d)
			}
			nquar++
			quars[quarLeaf{a, d}] = nd.val
			b, q = none, d
		case kindInternal:
			if d >= p.width {
				return 0, 0, fmt.Errorf("internal node at max depth")
			}
			if nd.child == [2]uint32{} {
				return 0, 0, fmt.Errorf("empty internal node at %v/%d", a, d)
			}
			b, q = none, none
			clean := 0
			for i, c := range nd.child {
				if c == 0 {
					b, q = min(b, d+1), min(q, d+1)
					clean++
					continue
				}
				cb, cq, err := walk(c, d+1, a.withBit(d, uint32(i)))
				if err != nil {
					return 0, 0, err
				}
				b, q = min(b, cb), min(q, cq)
				if cq == d+1 {
					clean++
				}
			}
			if clean == 2 {
				q = d
			}
			// Children were checked first, so their stored weights are right.
			if w := weightOf(nd.child[0], d+1) + weightOf(nd.child[1], d+1); math.Float32bits(w) != nd.val {
				return 0, 0, fmt.Errorf("weight of %v/%d: stored %v want %v", a, d, math.Float32frombits(nd.val), w)
			}
			// Maximal free slots: clean children of a dirty internal node.
			if q != d {
				for _, c := range nd.child {
					if c == 0 || p.nd(c).bestQ == d+1 {
						hist[d+1-p.plen]++
					}
				}
			}
		default:
			return 0, 0, fmt.Errorf("bad kind %d", nd.kind)
		}
		if nd.best != b || nd.bestQ != q {
			return 0, 0, fmt.Errorf("summary of %v/%d: stored (%d,%d) want (%d,%d)", a, d, nd.best, nd.bestQ, b, q)
		}
		return b, q, nil
	}
	if p.root != 0 {
		if _, q, err := walk(p.root, p.plen, p.base); err != nil {
			return err
		} else if q == p.plen {
			hist[0]++
		}
	} else {
		hist[0]++
	}
	if nalloc != p.nalloc || nquar != p.nquar {
		return fmt.Errorf("counters: nalloc %d/%d nquar %d/%d", p.nalloc, nalloc, p.nquar, nquar)
	}
	// Free list.
	nfree := 0
	for x := p.free; x != 0; x = p.nd(x).child[0] {
		nfree++
		if nfree > int(p.nnodes) {
			return fmt.Errorf("free list cycle")
		}
	}
	if nfree != p.nfree {
		return fmt.Errorf("nfree %d, list has %d", p.nfree, nfree)
	}
	if int(p.nnodes) > 0 && reach+nfree+1 != int(p.nnodes) {
		return fmt.Errorf("arena: %d reachable + %d free + 1 != %d", reach, nfree, int(p.nnodes))
	}
	// Histogram.
	if p.fb == nil {
		if p.root != 0 || int(p.nnodes) != 0 {
			return fmt.Errorf("nil histogram with nodes")
		}
	} else {
		if len(p.fb) != len(hist) {
			return fmt.Errorf("histogram length %d want %d", len(p.fb), len(hist))
		}
		for i := range hist {
			if uint64(p.fb[i]) != hist[i] {
				return fmt.Errorf("histogram[/%d] = %d want %d", int(p.plen)+i, p.fb[i], hist[i])
			}
		}
	}
	// Quarantine: each quarantined leaf has exactly one live FIFO entry.
	if p.q.n > max(p.qlimit, 0) {
		return fmt.Errorf("fifo holds %d > limit %d", p.q.n, p.qlimit)
	}
	seen := map[quarLeaf]bool{}
	for i := range p.q.n {
		e := p.q.at(i)
		k := quarLeaf{e.a, e.bits}
		if s, ok := quars[k]; ok && s == e.seq {
			if seen[k] {
				return fmt.Errorf("two live entries for %v/%d", e.a, e.bits)
			}
			seen[k] = true
		}
	}
	if len(seen) != len(quars) {
		return fmt.Errorf("%d quarantined leaves, %d live fifo entries", len(quars), len(seen))
	}
	return nil
}
