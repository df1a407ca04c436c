package ipam

import (
	"fmt"
	"math"
	"net/netip"
	"slices"
)

// Owner identifies the holder of an allocation. It is an opaque id interned
// by the caller; 0 is invalid and is never stored.
type Owner uint32

// Pool manages the allocations inside one range. The zero Pool is not
// usable; create one with NewPool. A Pool is not safe for concurrent use.
type Pool struct {
	rng   netip.Prefix
	base  u128  // rng's address, left-aligned
	plen  uint8 // rng.Bits()
	width uint8 // 32 or 128
	is4   bool

	root   uint32
	pages  [][]node // node arena (see nd); node 0 is the nil sentinel
	nnodes uint32   // nodes ever created, counting the sentinel (0 if none)
	free   uint32   // free-list head, linked through child[0]
	nfree  int
	nalloc int
	nquar  int
	fb     []uint32 // free-block histogram by relative depth; nil while no node was ever created

	q      fifo
	qlimit int
	seq    uint32
	gen    uint64 // bumped by every change to the trie (lets All notice them)
}

// NewPool returns an empty pool over r, which must be a valid masked prefix
// (r == r.Masked()) of either family. The quarantine limit is
// DefaultQuarantineLimit.
func NewPool(r netip.Prefix) (*Pool, error) {
	if !r.IsValid() || r.Masked() != r {
		return nil, fmt.Errorf("ipam: new pool %s: range must be a valid masked prefix: %w", r, ErrInvalid)
	}
	p := &Pool{qlimit: DefaultQuarantineLimit}
	p.setRange(r)
	return p, nil
}

func (p *Pool) setRange(r netip.Prefix) {
	p.rng = r
	p.base = fromAddr(r.Addr())
	p.plen = uint8(r.Bits())
	p.is4 = r.Addr().Is4()
	p.width = 128
	if p.is4 {
		p.width = 32
	}
}

// Range returns the pool's range.
func (p *Pool) Range() netip.Prefix { return p.rng }

// Len returns the number of allocated prefixes.
func (p *Pool) Len() int { return p.nalloc }

func (p *Pool) prefix(a u128, d uint8) netip.Prefix {
	return netip.PrefixFrom(a.addr(p.is4), int(d))
}

// check validates that pfx is a masked prefix inside the range.
func (p *Pool) check(op string, pfx netip.Prefix) (u128, uint8, error) {
	if !pfx.IsValid() || pfx.Masked() != pfx {
		return u128{}, 0, fmt.Errorf("ipam: %s %s: not a valid masked prefix: %w", op, pfx, ErrInvalid)
	}
	if pfx.Addr().Is4() != p.is4 || pfx.Bits() < int(p.plen) || !p.rng.Contains(pfx.Addr()) {
		return u128{}, 0, fmt.Errorf("ipam: %s %s: not inside %s: %w", op, pfx, p.rng, ErrOutOfRange)
	}
	return fromAddr(pfx.Addr()), uint8(pfx.Bits()), nil
}

// checkBits validates a block length for Allocate and AllocateRandom.
func (p *Pool) checkBits(op string, n int, owner Owner) (uint8, error) {
	if owner == 0 {
		return 0, fmt.Errorf("ipam: %s /%d in %s: owner 0: %w", op, n, p.rng, ErrInvalid)
	}
	if n < 0 || n > int(p.width) {
		return 0, fmt.Errorf("ipam: %s /%d in %s: %w", op, n, p.rng, ErrInvalid)
	}
	if n < int(p.plen) {
		return 0, fmt.Errorf("ipam: %s /%d: larger than %s: %w", op, n, p.rng, ErrOutOfRange)
	}
	return uint8(n), nil
}

// Claim takes exactly pfx for owner. pfx must be masked and inside the
// range, and owner non-zero. If an allocated prefix overlaps pfx (contains
// it, equals it, or lies inside it) Claim returns a *ConflictError naming
// that prefix and its owner (the lowest-addressed one if several) and
// changes nothing. Quarantined space is no obstacle: every quarantined
// block overlapping pfx leaves the quarantine at once (all of it, even the
// part outside pfx, which becomes ordinary free space).
func (p *Pool) Claim(pfx netip.Prefix, owner Owner) error {
	a, n, err := p.check("claim", pfx)
	if err != nil {
		return err
	}
	if owner == 0 {
		return fmt.Errorf("ipam: claim %s: owner 0: %w", pfx, ErrInvalid)
	}
	for {
		var ps path
		x, d := p.descend(&ps, a, n)
		if x != 0 {
			nd := p.nd(x)
			switch {
			case nd.kind == kindAlloc:
				return &ConflictError{Prefix: p.prefix(a.mask(d), d), Owner: Owner(nd.val)}
			case nd.kind == kindQuar && d < n:
				// A quarantined block contains pfx: free it and start over.
				p.removeLeaf(&ps, a)
				continue
			case nd.kind == kindInternal && d == n && p.dirty(x, d):
				ca, cd, co := p.leftmostAlloc(x, d, a)
				return &ConflictError{Prefix: p.prefix(ca, cd), Owner: co}
			}
		}
		if !p.insert(&ps, a, n, kindAlloc, uint32(owner)) {
			return fmt.Errorf("ipam: claim %s: node arena full: %w", pfx, ErrExhausted)
		}
		return nil
	}
}

// Allocate takes the lowest-addressed free aligned block of prefix length
// bits for owner, skipping quarantined blocks. If only quarantined space is
// left, the oldest quarantined blocks are freed, in release order, until a
// block fits (see the package doc). It returns an error wrapping
// ErrExhausted if no block fits even with the quarantine empty (the
// quarantine is then left untouched), ErrOutOfRange if bits is shorter than
// the range's prefix length, and ErrInvalid for owner 0 or bits beyond the
// family's width.
func (p *Pool) Allocate(bits int, owner Owner) (netip.Prefix, error) {
	n, err := p.checkBits("allocate", bits, owner)
	if err != nil {
		return netip.Prefix{}, err
	}
	if !p.drainUntilFit(n) {
		return netip.Prefix{}, fmt.Errorf("ipam: allocate /%d in %s: %w", bits, p.rng, ErrExhausted)
	}
	var ps path
	a := p.firstFit(&ps, n)
	if !p.insert(&ps, a, n, kindAlloc, uint32(owner)) {
		return netip.Prefix{}, fmt.Errorf("ipam: allocate /%d in %s: node arena full: %w", n, p.rng, ErrExhausted)
	}
	return p.prefix(a, n), nil
}

// AllocateRandom is Allocate with a random choice among the free
// unquarantined aligned blocks of prefix length bits (Alibaba Cloud picks
// secondary private IPs at random). rnd(n) must return a value in [0, n)
// (values beyond are reduced modulo n); it is called with n <= 2^53, about
// once per trie level. The choice descends from the root, entering each
// child with probability proportional to its free unquarantined address
// count (skipping children without a fitting block), and then picks a
// block uniformly inside the free subtree reached. That is exactly uniform
// (up to float32 rounding of the counts) when all free space is made of
// whole blocks of length bits, e.g. when every allocation is at least that
// long; otherwise space fragmented below bits attracts slightly more than
// its share. Quarantine and errors are as for Allocate; ErrInvalid also for
// a nil rnd.
func (p *Pool) AllocateRandom(bits int, owner Owner, rnd func(uint64) uint64) (netip.Prefix, error) {
	n, err := p.checkBits("allocate random", bits, owner)
	if err != nil {
		return netip.Prefix{}, err
	}
	if rnd == nil {
		return netip.Prefix{}, fmt.Errorf("ipam: allocate random /%d in %s: nil rnd: %w", bits, p.rng, ErrInvalid)
	}
	if !p.drainUntilFit(n) {
		return netip.Prefix{}, fmt.Errorf("ipam: allocate random /%d in %s: %w", bits, p.rng, ErrExhausted)
	}
	var ps path
	a, x, d := p.base, p.root, p.plen
	for x != 0 { // x is internal, d < n, and x.best <= n
		nd := p.nd(x)
		ps.push(x, nd)
		w0, w1 := p.fitWeight(nd.child[0], d+1, n), p.fitWeight(nd.child[1], d+1, n)
		var b uint32
		if w0 == 0 {
			b = 1
		} else if w1 != 0 {
			const one = 1 << 53
			r := float64(rnd(one)%one) / one
			if r*(float64(w0)+float64(w1)) >= float64(w0) {
				b = 1
			}
		}
		a = a.withBit(d, b)
		x, d = nd.child[b], d+1
	}
	// (a, d) is a wholly free block with d <= n: pick a block inside it.
	a = a.or(randBits(rnd, uint(n-d)).shl(128 - uint(n)))
	if !p.insert(&ps, a, n, kindAlloc, uint32(owner)) {
		return netip.Prefix{}, fmt.Errorf("ipam: allocate random /%d in %s: node arena full: %w", bits, p.rng, ErrExhausted)
	}
	return p.prefix(a, n), nil
}

// fitWeight is the weight of child slot c (at depth d) for a random pick of
// a block of length n: 0 if it holds no free unquarantined block of that
// length.
func (p *Pool) fitWeight(c uint32, d, n uint8) float32 {
	if c != 0 && p.nd(c).best > n {
		return 0
	}
	return p.weight(c, d)
}

// randBits returns k <= 128 random low bits drawn from rnd 32 at a time.
func randBits(rnd func(uint64) uint64, k uint) u128 {
	var r u128
	for k > 0 {
		c := min(k, 32)
		v := rnd(1<<c) % (1 << c)
		r = r.shl(c).or(u128{lo: v})
		k -= c
	}
	return r
}

// Release frees exactly pfx, which must be an allocated prefix (else the
// error wraps ErrNotAllocated, or ErrInvalid/ErrOutOfRange for a malformed
// or foreign prefix). The block enters the quarantine; if the quarantine is
// full its oldest block is freed.
func (p *Pool) Release(pfx netip.Prefix) error {
	a, n, err := p.check("release", pfx)
	if err != nil {
		return err
	}
	var ps path
	x, d := p.descend(&ps, a, n)
	if x == 0 || d != n || p.nd(x).kind != kindAlloc {
		return fmt.Errorf("ipam: release %s: %w", pfx, ErrNotAllocated)
	}
	seq := p.seq
	p.seq++
	nd := p.nd(x)
	nd.kind, nd.val = kindQuar, seq
	p.nquar++
	p.nalloc--
	p.adjA(n, false)
	p.fixup(&ps)
	p.quarantine(a, n, seq)
	return nil
}

// Conflict returns the allocated prefix overlapping pfx and its owner (the
// lowest-addressed one if several). pfx may be any valid prefix; host bits
// are ignored, and a prefix of the other family, or one not overlapping the
// range, has no conflict here. Quarantined blocks are not allocations.
func (p *Pool) Conflict(pfx netip.Prefix) (netip.Prefix, Owner, bool) {
	if !pfx.IsValid() || pfx.Addr().Is4() != p.is4 || p.root == 0 {
		return netip.Prefix{}, 0, false
	}
	pfx = pfx.Masked()
	if pfx.Bits() <= int(p.plen) {
		if !pfx.Contains(p.rng.Addr()) || !p.dirty(p.root, p.plen) {
			return netip.Prefix{}, 0, false
		}
		a, d, o := p.leftmostAlloc(p.root, p.plen, p.base)
		return p.prefix(a, d), o, true
	}
	if !p.rng.Contains(pfx.Addr()) {
		return netip.Prefix{}, 0, false
	}
	a, n := fromAddr(pfx.Addr()), uint8(pfx.Bits())
	x, d := p.root, p.plen
	for x != 0 {
		nd := p.nd(x)
		switch nd.kind {
		case kindAlloc:
			return p.prefix(a.mask(d), d), Owner(nd.val), true
		case kindQuar:
			return netip.Prefix{}, 0, false
		}
		if d == n {
			if !p.dirty(x, d) {
				return netip.Prefix{}, 0, false
			}
			ca, cd, co := p.leftmostAlloc(x, d, a)
			return p.prefix(ca, cd), co, true
		}
		x = nd.child[a.bit(d)]
		d++
	}
	return netip.Prefix{}, 0, false
}

// OwnerOf returns the owner of pfx if pfx is exactly an allocated prefix.
func (p *Pool) OwnerOf(pfx netip.Prefix) (Owner, bool) {
	if !pfx.IsValid() || pfx.Masked() != pfx || pfx.Addr().Is4() != p.is4 ||
		pfx.Bits() < int(p.plen) || !p.rng.Contains(pfx.Addr()) {
		return 0, false
	}
	a, n := fromAddr(pfx.Addr()), uint8(pfx.Bits())
	x, d := p.root, p.plen
	for x != 0 {
		nd := p.nd(x)
		if d == n {
			if nd.kind == kindAlloc {
				return Owner(nd.val), true
			}
			return 0, false
		}
		if nd.kind != kindInternal {
			return 0, false
		}
		x = nd.child[a.bit(d)]
		d++
	}
	return 0, false
}

// All yields every allocated prefix with its owner in address order. Use it
// as a range-over-func iterator: for pfx, o := range p.All { ... }. A full
// iteration costs O(nodes). The pool may be modified during the iteration
// (e.g. releasing what is yielded): the iteration then resumes after the
// last prefix yielded, at O(address bits) per further step, so it sees
// allocations made at higher addresses and not those freed.
func (p *Pool) All(yield func(netip.Prefix, Owner) bool) {
	if p.root == 0 {
		return
	}
	type frame struct {
		x uint32
		d uint8
		a u128
	}
	// Depth-first, left first. Each level holds at most one pending right
	// sibling, so the stack never exceeds 129 frames plus the current one.
	var st [130]frame
	st[0] = frame{p.root, p.plen, p.base}
	n, gen := 1, p.gen
	for n > 0 {
		n--
		f := st[n]
		nd := p.nd(f.x)
		if nd.kind == kindAlloc {
			if !yield(p.prefix(f.a, f.d), Owner(nd.val)) {
				return
			}
			if p.gen != gen {
				p.allAfter(f.a, f.d, yield)
				return
			}
			continue
		}
		if nd.kind != kindInternal {
			continue
		}
		if c := nd.child[1]; c != 0 && p.dirty(c, f.d+1) {
			st[n] = frame{c, f.d + 1, f.a.withBit(f.d, 1)}
			n++
		}
		if c := nd.child[0]; c != 0 && p.dirty(c, f.d+1) {
			st[n] = frame{c, f.d + 1, f.a}
			n++
		}
	}
}

// allAfter continues All after the block (a, d) by repeated search.
func (p *Pool) allAfter(a u128, d uint8, yield func(netip.Prefix, Owner) bool) {
	for {
		x, ok := a.nextBlock(d)
		if !ok || x.mask(p.plen) != p.base {
			return
		}
		var o Owner
		if a, d, o, ok = p.nextAlloc(x); !ok || !yield(p.prefix(a, d), o) {
			return
		}
	}
}

// FreeBlocks returns how many more aligned blocks of prefix length bits
// could be allocated (quarantined space counts as free), saturating at
// math.MaxUint64. It is 0 for bits outside [Range().Bits(), address width].
// Cost: O(bits - Range().Bits()).
func (p *Pool) FreeBlocks(bits int) uint64 {
	if bits < int(p.plen) || bits > int(p.width) {
		return 0
	}
	k := uint(bits - int(p.plen))
	if p.fb == nil {
		if k >= 64 {
			return math.MaxUint64
		}
		return 1 << k
	}
	var sum uint64
	for r := uint(0); r <= k; r++ {
		c := uint64(p.fb[r])
		if c == 0 {
			continue
		}
		s := k - r // each maximal free block at relative depth r holds 2^s blocks
		if s >= 64 || c > math.MaxUint64>>s {
			return math.MaxUint64
		}
		if sum += c << s; sum < c<<s {
			return math.MaxUint64
		}
	}
	return sum
}

// Clone returns a deep copy of p; the two evolve independently. It copies
// the node arena, so it costs O(nodes) time and memory.
func (p *Pool) Clone() *Pool {
	c := *p
	c.pages = make([][]node, len(p.pages))
	for i, pg := range p.pages {
		c.pages[i] = slices.Clone(pg)
	}
	c.fb = slices.Clone(p.fb)
	c.q.buf = slices.Clone(p.q.buf)
	return &c
}

// Resize changes the range to r, which must be masked and of the same
// family. Growing to a superset of the range (GCE expandIpCidrRange) keeps
// everything and costs O(r's extra bits). Shrinking to a subset succeeds
// only if every allocation lies inside r (else the error wraps
// ErrOutOfRange and nothing changes); quarantined blocks not inside r are
// dropped, and the pool is rebuilt in O(allocations × address bits). Any
// other r is refused with ErrOutOfRange.
func (p *Pool) Resize(r netip.Prefix) error {
	if !r.IsValid() || r.Masked() != r {
		return fmt.Errorf("ipam: resize %s to %s: not a valid masked prefix: %w", p.rng, r, ErrInvalid)
	}
	switch {
	case r == p.rng:
		return nil
	case r.Addr().Is4() != p.is4:
		return fmt.Errorf("ipam: resize %s to %s: other address family: %w", p.rng, r, ErrOutOfRange)
	case r.Bits() < int(p.plen) && r.Contains(p.rng.Addr()):
		return p.grow(r)
	case r.Bits() > int(p.plen) && p.rng.Contains(r.Addr()):
		return p.shrink(r)
	}
	return fmt.Errorf("ipam: resize %s to %s: neither a superset nor a subset: %w", p.rng, r, ErrOutOfRange)
}

func (p *Pool) grow(r netip.Prefix) error {
	oldRoot, oldPlen, oldBase := p.root, p.plen, p.base
	k := int(oldPlen) - r.Bits()
	if oldRoot != 0 && !p.ensureNodes(k) {
		return fmt.Errorf("ipam: resize %s to %s: node arena full: %w", p.rng, r, ErrExhausted)
	}
	p.setRange(r)
	if p.fb == nil {
		return nil
	}
	// Shift the histogram: the old root slot term (+1 at the old plen)
	// moves to the new plen; the chain nodes added below adjust the rest.
	fb := make([]uint32, p.width-p.plen+1)
	copy(fb[k:], p.fb)
	fb[k]--
	fb[0]++
	p.fb = fb
	if oldRoot == 0 {
		return nil
	}
	p.root = 0
	var ps path
	var par uint32
	for d := p.plen; d < oldPlen; d++ {
		y := p.newNode()
		if d == p.plen {
			p.root = y
		} else {
			p.nd(par).child[oldBase.bit(d-1)] = y
		}
		ps.pushNew(y)
		par = y
	}
	p.nd(par).child[oldBase.bit(oldPlen-1)] = oldRoot
	p.fixup(&ps)
	return nil
}

func (p *Pool) shrink(r netip.Prefix) error {
	// Every allocation must lie inside r: walk toward r; nothing may be
	// allocated on the way or beside it.
	a, n := fromAddr(r.Addr()), uint8(r.Bits())
	x, d := p.root, p.plen
	for x != 0 && d < n {
		nd := p.nd(x)
		if nd.kind == kindAlloc {
			return fmt.Errorf("ipam: resize %s to %s: %s is allocated: %w", p.rng, r, p.prefix(a.mask(d), d), ErrOutOfRange)
		}
		if nd.kind == kindQuar {
			break
		}
		b := a.bit(d)
		if c := nd.child[1-b]; c != 0 && p.dirty(c, d+1) {
			ca, cd, _ := p.leftmostAlloc(c, d+1, a.mask(d).withBit(d, 1-b))
			return fmt.Errorf("ipam: resize %s to %s: %s is allocated: %w", p.rng, r, p.prefix(ca, cd), ErrOutOfRange)
		}
		x = nd.child[b]
		d++
	}
	np := &Pool{qlimit: p.qlimit, seq: p.seq, gen: p.gen + 1}
	np.setRange(r)
	for pfx, o := range p.All {
		if err := np.Claim(pfx, o); err != nil {
			return fmt.Errorf("ipam: resize %s to %s: %w", p.rng, r, err)
		}
	}
	for i := range p.q.n {
		e := p.q.at(i)
		if e.bits < n || e.a.mask(n) != a || !p.isQuarantined(e) {
			continue
		}
		var ps path
		if x, d := np.descend(&ps, e.a, e.bits); x != 0 && (np.nd(x).kind != kindInternal || d == e.bits) {
			continue // unreachable: live entries are disjoint from each other and from allocations
		}
		if !np.insert(&ps, e.a, e.bits, kindQuar, e.seq) {
			return fmt.Errorf("ipam: resize %s to %s: node arena full: %w", p.rng, r, ErrExhausted)
		}
		np.q.push(e, np.qlimit)
	}
	*p = *np
	return nil
}

// isQuarantined reports whether e is a live quarantine entry.
func (p *Pool) isQuarantined(e qent) bool {
	var ps path
	x, d := p.descend(&ps, e.a, e.bits)
	return x != 0 && d == e.bits && p.nd(x).kind == kindQuar && p.nd(x).val == e.seq
}
