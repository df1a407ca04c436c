package ipam

import "math"

// This file holds the trie machinery: node arena, summaries (best/bestQ),
// the free-block histogram and the searches. See the package doc for the
// invariants; each function below states what it relies on.

const (
	kindInternal = 0 // has at least one child; val = float32 bits of its free weight
	kindAlloc    = 1 // leaf: allocated, val = Owner
	kindQuar     = 2 // leaf: quarantined, val = release sequence number
	kindAbsent   = 3 // only in path snapshots: the node did not exist before

	none = 255 // "no such block" in best/bestQ (prefix lengths are <= 128)

	maxNodes = 1<<32 - 1 // node indices are uint32; 0 is the nil index
)

// node is one trie node: 16 bytes, no pointers (the arena is not scanned by
// the garbage collector). The node at depth d stands for the aligned block of
// prefix length d on the path from the root.
type node struct {
	child [2]uint32 // arena indices; 0 = absent = wholly free subtree
	// val is the Owner for kindAlloc, the release sequence number for
	// kindQuar, and for kindInternal the float32 bits of the subtree's free
	// weight: its free unquarantined addresses in units of weightUnit.
	val uint32
	// best is the shortest prefix length of a wholly free, unquarantined
	// aligned block inside this node's block (none if there is none).
	best uint8
	// bestQ is the same counting quarantined space as free. A node at depth
	// d is "clean" (holds no allocation) iff bestQ == d.
	bestQ uint8
	kind  uint8
}

// pathEnt is one step of a root-to-node path with the node's summary as it
// was before the operation mutated anything.
type pathEnt struct {
	idx               uint32
	best, bestQ, kind uint8
}

// path is a root-first chain of nodes: e[i] is at depth plen+i.
type path struct {
	e [129]pathEnt
	n int
}

func (ps *path) push(x uint32, nd *node) {
	ps.e[ps.n] = pathEnt{idx: x, best: nd.best, bestQ: nd.bestQ, kind: nd.kind}
	ps.n++
}

func (ps *path) pushNew(x uint32) {
	ps.e[ps.n] = pathEnt{idx: x, best: none, bestQ: none, kind: kindAbsent}
	ps.n++
}

// The node arena is paged: node x lives at pages[x>>pageShift][x&pageMask].
// Pages never move once full, so the arena grows without ever copying a
// large slice (no latency spike, no 2x transient memory), and Clone copies
// page by page. The first page starts small and grows by doubling, so a
// pool with a handful of allocations stays small.
const (
	pageShift = 12
	pageSize  = 1 << pageShift // 4096 nodes = 64 KiB
	pageMask  = pageSize - 1
	firstPage = 16 // initial capacity of page 0
)

// nd returns node x. The pointer is valid until the next newNode.
func (p *Pool) nd(x uint32) *node { return &p.pages[x>>pageShift][x&pageMask] }

// ensureNodes reports whether k more nodes can be created.
func (p *Pool) ensureNodes(k int) bool {
	return p.nfree >= k || uint64(p.nnodes)+uint64(k-p.nfree) <= maxNodes
}

// newNode returns the index of a zeroed node (kindInternal, no children).
// It may grow page 0: callers must not hold *node pointers across it.
func (p *Pool) newNode() uint32 {
	if p.fb == nil {
		p.fb = make([]uint32, p.width-p.plen+1)
		p.fb[0] = 1 // the empty range is one free block
	}
	if p.free != 0 {
		x := p.free
		p.free = p.nd(x).child[0]
		p.nfree--
		*p.nd(x) = node{}
		return x
	}
	if p.nnodes == 0 {
		p.nnodes = 1 // index 0 is the nil sentinel
	}
	x := p.nnodes
	pg := int(x >> pageShift)
	if pg == len(p.pages) {
		c := pageSize
		if pg == 0 {
			c = firstPage
		}
		p.pages = append(p.pages, make([]node, 0, c))
		if pg == 0 {
			p.pages[0] = p.pages[0][:1]
		}
	}
	p.pages[pg] = append(p.pages[pg], node{})
	p.nnodes++
	return x
}

func (p *Pool) freeNode(x uint32) {
	if p.nd(x).kind == kindQuar {
		p.nquar--
	}
	*p.nd(x) = node{child: [2]uint32{p.free, 0}}
	p.free = x
	p.nfree++
}

// freeSubtree frees x and all its descendants. The subtree must be clean
// (no allocations), so the histogram does not change.
func (p *Pool) freeSubtree(x uint32) {
	if x == 0 {
		return
	}
	c := p.nd(x).child
	p.freeSubtree(c[0])
	p.freeSubtree(c[1])
	p.freeNode(x)
}

// The free-block histogram fb[e-plen] counts the maximal wholly free aligned
// blocks (quarantine counted as free) of prefix length e: the absent or clean
// child slots of dirty internal nodes, plus the root slot if the root is
// absent or clean. With DI[e] = dirty internal nodes and A[e] = allocations
// at depth e this is fb[e] = 2*DI[e-1] - DI[e] - A[e] (+1 at e = plen), so it
// is maintained from the changes of DI and A alone. Values are exact at the
// end of every operation; uint32 wrap-around in between is harmless.

func (p *Pool) adjDI(d uint8, plus bool) {
	r := d - p.plen
	if plus {
		p.fb[r]--
		p.fb[r+1] += 2
	} else {
		p.fb[r]++
		p.fb[r+1] -= 2
	}
}

func (p *Pool) adjA(d uint8, plus bool) {
	if plus {
		p.fb[d-p.plen]--
	} else {
		p.fb[d-p.plen]++
	}
}

// slotWeight is the free weight of the wholly free block at depth d: its
// address count scaled by 2^-weightShift so that IPv6 counts (up to 2^128)
// and single addresses both fit a float32 exactly (powers of two).
func (p *Pool) slotWeight(d uint8) float32 {
	// 2^e as a float32, built from its exponent field; e is in [-64, 64].
	e := int(p.width) - int(d) - p.weightShift()
	return math.Float32frombits(uint32(127+e) << 23)
}

func (p *Pool) weightShift() int {
	if p.is4 {
		return 0
	}
	return 64
}

// weight is the free weight of child slot c at depth d.
func (p *Pool) weight(c uint32, d uint8) float32 {
	if c == 0 {
		return p.slotWeight(d)
	}
	if nd := p.nd(c); nd.kind == kindInternal {
		return math.Float32frombits(nd.val)
	}
	return 0
}

// summarize recomputes best, bestQ and (internal nodes) the free weight of
// nd (at depth d) from its children. It reports whether an internal node's
// weight changed.
func (p *Pool) summarize(nd *node, d uint8) bool {
	switch nd.kind {
	case kindAlloc:
		nd.best, nd.bestQ = none, none
		return false
	case kindQuar:
		nd.best, nd.bestQ = none, d
		return false
	}
	b, q, clean := uint8(none), uint8(none), 0
	for _, c := range nd.child {
		if c == 0 {
			b, q = min(b, d+1), min(q, d+1)
			clean++
			continue
		}
		cn := p.nd(c)
		b, q = min(b, cn.best), min(q, cn.bestQ)
		if cn.bestQ == d+1 {
			clean++
		}
	}
	if clean == 2 {
		q = d
	}
	nd.best, nd.bestQ = b, q
	old := nd.val
	nd.val = math.Float32bits(p.weight(nd.child[0], d+1) + p.weight(nd.child[1], d+1))
	return nd.val != old
}

// fixup recomputes the summaries along ps bottom-up, keeping the histogram in
// step with every change of "dirty internal" status. It stops at the first
// node whose summary, weight and kind did not change: nothing above it can
// change. (Free space changes every weight up to the root, so allocations
// and frees walk the whole path; Release and Claim of a quarantined block
// leave weights alone and stop early.)
// Nodes above the lowest mutated node must not have been modified except
// through their child pointers.
func (p *Pool) fixup(ps *path) {
	p.gen++
	for i := ps.n - 1; i >= 0; i-- {
		e := &ps.e[i]
		nd := p.nd(e.idx)
		d := p.plen + uint8(i)
		wchanged := p.summarize(nd, d)
		wasDI := e.kind == kindInternal && e.bestQ != d
		isDI := nd.kind == kindInternal && nd.bestQ != d
		if wasDI != isDI {
			p.adjDI(d, isDI)
		}
		if e.kind == nd.kind && e.best == nd.best && e.bestQ == nd.bestQ && !wchanged {
			return
		}
	}
}

// removeLeaf deletes the leaf at the bottom of ps (which leads to address a),
// prunes ancestors left without children and fixes the summaries. The leaf
// must not be an allocation (callers adjust A first if it is).
func (p *Pool) removeLeaf(ps *path, a u128) {
	i := ps.n - 1
	for {
		e := ps.e[i]
		d := p.plen + uint8(i)
		if e.kind == kindInternal && e.bestQ != d {
			p.adjDI(d, false)
		}
		p.freeNode(e.idx)
		if i == 0 {
			p.root = 0
			ps.n = 0
			return
		}
		i--
		par := p.nd(ps.e[i].idx)
		par.child[a.bit(p.plen+uint8(i))] = 0
		if par.child[0] != 0 || par.child[1] != 0 {
			break
		}
	}
	ps.n = i + 1
	p.fixup(ps)
}

// insert puts a leaf of the given kind at the block (a, bits), creating the
// nodes below the deepest existing one. The block must be wholly free:
// every node on the way down must be internal, and if the node at depth bits
// exists its subtree must be clean (it is freed). Returns false only if the
// node arena is full.
func (p *Pool) insert(ps *path, a u128, bits uint8, kind uint8, val uint32) bool {
	d := p.plen + uint8(ps.n)
	if ps.n > 0 && d-1 == bits {
		// The node exists: reuse it.
		x := ps.e[ps.n-1].idx
		nd := p.nd(x)
		if nd.kind == kindQuar {
			p.nquar--
		}
		c := nd.child
		nd.child = [2]uint32{}
		p.freeSubtree(c[0])
		p.freeSubtree(c[1])
		nd = p.nd(x)
		nd.kind, nd.val = kind, val
	} else {
		if !p.ensureNodes(int(bits-d) + 1) {
			return false
		}
		var par uint32
		if ps.n > 0 {
			par = ps.e[ps.n-1].idx
		}
		for ; d <= bits; d++ {
			y := p.newNode()
			if d == p.plen {
				p.root = y
			} else {
				p.nd(par).child[a.bit(d-1)] = y
			}
			ps.pushNew(y)
			par = y
		}
		nd := p.nd(par)
		nd.kind, nd.val = kind, val
	}
	switch kind {
	case kindAlloc:
		p.adjA(bits, true)
		p.nalloc++
	case kindQuar:
		p.nquar++
	}
	p.fixup(ps)
	return true
}

// descend walks from the root toward block (a, bits), pushing every node
// met, and stops at the first leaf, at depth bits, or at an absent child.
// It returns the last node pushed (0 if none) and its depth.
func (p *Pool) descend(ps *path, a u128, bits uint8) (uint32, uint8) {
	x, d := p.root, p.plen
	var last uint32
	for x != 0 {
		nd := p.nd(x)
		ps.push(x, nd)
		last = x
		if d == bits || nd.kind != kindInternal {
			return x, d
		}
		x = nd.child[a.bit(d)]
		d++
	}
	return last, d - 1
}

// dirty reports whether the present node c at depth d holds an allocation.
func (p *Pool) dirty(c uint32, d uint8) bool { return p.nd(c).bestQ != d }

// leftmostAlloc returns the lowest allocation inside the dirty node x at
// depth d whose block starts at a.
func (p *Pool) leftmostAlloc(x uint32, d uint8, a u128) (u128, uint8, Owner) {
	for {
		nd := p.nd(x)
		if nd.kind == kindAlloc {
			return a, d, Owner(nd.val)
		}
		if c := nd.child[0]; c != 0 && p.dirty(c, d+1) {
			x = c
		} else {
			x = nd.child[1]
			a = a.withBit(d, 1)
		}
		d++
	}
}

// nextAlloc returns the lowest allocation whose first address is >= x.
func (p *Pool) nextAlloc(x u128) (u128, uint8, Owner, bool) {
	var (
		altX uint32
		altD uint8
		altA u128
	)
	n, d, a := p.root, p.plen, p.base
	for n != 0 {
		nd := p.nd(n)
		if nd.kind == kindAlloc {
			if a == x {
				return a, d, Owner(nd.val), true
			}
			break
		}
		if nd.kind == kindQuar {
			break
		}
		b := x.bit(d)
		if b == 0 {
			if c := nd.child[1]; c != 0 && p.dirty(c, d+1) {
				altX, altD, altA = c, d+1, a.withBit(d, 1)
			}
		}
		n = nd.child[b]
		a = a.withBit(d, b)
		d++
	}
	if altX == 0 {
		return u128{}, 0, 0, false
	}
	a, d, o := p.leftmostAlloc(altX, altD, altA)
	return a, d, o, true
}

// hasFit reports whether an unquarantined free block of length bits exists.
func (p *Pool) hasFit(bits uint8) bool { return p.root == 0 || p.nd(p.root).best <= bits }

// firstFit returns the lowest free unquarantined block of length bits;
// hasFit(bits) must hold. The nodes on the way are pushed onto ps, which
// then ends at the deepest existing node above the block, as insert wants.
func (p *Pool) firstFit(ps *path, bits uint8) u128 {
	a, x, d := p.base, p.root, p.plen
	for x != 0 {
		nd := p.nd(x)
		ps.push(x, nd)
		c := nd.child[0]
		if c == 0 {
			return a
		}
		if p.nd(c).best <= bits {
			x, d = c, d+1
			continue
		}
		a = a.withBit(d, 1)
		x, d = nd.child[1], d+1
	}
	return a
}
