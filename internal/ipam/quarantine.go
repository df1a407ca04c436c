package ipam

// DefaultQuarantineLimit is the quarantine capacity of a new Pool.
const DefaultQuarantineLimit = 4096

// qent is one released block waiting in the quarantine FIFO. It is live
// while the trie holds a kindQuar leaf at (a, bits) whose val is seq; Claim
// can take such a leaf away, leaving a stale entry that is skipped.
type qent struct {
	a    u128
	seq  uint32
	bits uint8
}

// fifo is a ring buffer of qent that grows on demand up to its limit.
type fifo struct {
	buf  []qent
	head int
	n    int
}

func (f *fifo) at(i int) qent { return f.buf[(f.head+i)%len(f.buf)] }

// push appends e; the caller ensures f.n < limit.
func (f *fifo) push(e qent, limit int) {
	if f.n == len(f.buf) {
		nb := make([]qent, min(max(2*len(f.buf), 16), limit))
		for i := range f.n {
			nb[i] = f.at(i)
		}
		f.buf, f.head = nb, 0
	}
	f.buf[(f.head+f.n)%len(f.buf)] = e
	f.n++
}

func (f *fifo) pop() (qent, bool) {
	if f.n == 0 {
		return qent{}, false
	}
	e := f.buf[f.head]
	f.head = (f.head + 1) % len(f.buf)
	f.n--
	if f.n == 0 {
		f.head = 0
	}
	return e, true
}

// quarantine moves the freshly released leaf at (a, bits) into the FIFO,
// first dropping the oldest entry if the FIFO is full.
func (p *Pool) quarantine(a u128, bits uint8, seq uint32) {
	if p.qlimit == 0 {
		p.drop(qent{a: a, seq: seq, bits: bits})
		return
	}
	if p.q.n >= p.qlimit {
		e, _ := p.q.pop()
		p.drop(e)
	}
	p.q.push(qent{a: a, seq: seq, bits: bits}, p.qlimit)
}

// drop ends the quarantine of e, if e is live: its block becomes free.
func (p *Pool) drop(e qent) bool {
	var ps path
	x, d := p.descend(&ps, e.a, e.bits)
	if x == 0 || d != e.bits {
		return false
	}
	if nd := p.nd(x); nd.kind != kindQuar || nd.val != e.seq {
		return false
	}
	p.removeLeaf(&ps, e.a)
	return true
}

// drainUntilFit drops the oldest quarantined blocks, in release order, until
// an unquarantined free block of length bits exists. It returns false, and
// drains nothing, if no such block exists even with the quarantine empty.
//
// Every kindQuar leaf has exactly one live FIFO entry (Release pushes one;
// entries only leave the FIFO through drop), so draining the whole FIFO
// leaves no quarantined space and best == bestQ: the loop cannot fail once
// bestQ says a fit exists.
func (p *Pool) drainUntilFit(bits uint8) bool {
	if p.root == 0 {
		return true
	}
	if p.nd(p.root).bestQ > bits {
		return false
	}
	for !p.hasFit(bits) {
		e, ok := p.q.pop()
		if !ok {
			return false // unreachable while the invariant above holds
		}
		p.drop(e)
	}
	return true
}

// SetQuarantineLimit sets how many released blocks the quarantine holds
// (n <= 0 disables it: released blocks are free at once). If the
// quarantine holds more, the oldest are freed now. The limit counts FIFO
// slots, including those of blocks since taken back by Claim.
func (p *Pool) SetQuarantineLimit(n int) {
	n = max(n, 0)
	for p.q.n > n {
		e, _ := p.q.pop()
		p.drop(e)
	}
	p.qlimit = n
	if p.q.n == 0 {
		p.q = fifo{}
	}
}

// Quarantined returns the number of released blocks currently held back
// from Allocate and AllocateRandom.
func (p *Pool) Quarantined() int { return p.nquar }
