package ipam

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"testing"
)

// The reference model works on a universe of 2^refBits units: the aligned
// blocks of length U+refBits inside a universe prefix of length U. The
// pool's range is always a prefix inside the universe. Everything is
// brute force over the units, independent of the trie.
const refBits = 11

type refAlloc struct {
	start int // unit index
	plen  int
	owner Owner
}

type refQ struct {
	start, plen int
	live        bool
}

type refModel struct {
	uni     netip.Prefix
	width   int
	unitLen int
	rStart  int // current range, in units
	rLen    int // current range prefix length
	owner   []Owner
	allocs  map[int]refAlloc // by start unit; allocations never share a start... (nested ones are impossible)
	quar    []int            // per unit: fifo entry index+1, or 0
	fifo    []refQ           // every entry ever pushed; fifo[head:] is the queue
	head    int
	limit   int
	addrs   []netip.Addr // address of each unit
}

func newRefModel(uni netip.Prefix, rLen, rStart, limit int) *refModel {
	n := 1 << refBits
	return &refModel{
		uni: uni, width: uni.Addr().BitLen(), unitLen: uni.Bits() + refBits,
		rStart: rStart, rLen: rLen,
		owner: make([]Owner, n), quar: make([]int, n), allocs: map[int]refAlloc{},
		limit: limit,
	}
}

func (m *refModel) size(plen int) int { return 1 << (m.unitLen - plen) }

func (m *refModel) prefix(start, plen int) netip.Prefix {
	if m.addrs == nil {
		unitAddrsMu.Lock()
		if unitAddrs[m.uni] == nil {
			t := make([]netip.Addr, 1<<refBits)
			for u := range t {
				t[u] = m.unitAddr(u)
			}
			unitAddrs[m.uni] = t
		}
		m.addrs = unitAddrs[m.uni]
		unitAddrsMu.Unlock()
	}
	return netip.PrefixFrom(m.addrs[start], plen)
}

// unitAddrs caches each universe's unit address table (read-only once built).
var (
	unitAddrsMu sync.Mutex
	unitAddrs   = map[netip.Prefix][]netip.Addr{}
)

// unitAddr computes a unit's address with math/big.
func (m *refModel) unitAddr(start int) netip.Addr {
	b := new(big.Int).SetBytes(m.uni.Addr().AsSlice())
	off := new(big.Int).Lsh(big.NewInt(int64(start)), uint(m.width-m.unitLen))
	b.Add(b, off)
	buf := make([]byte, m.width/8)
	b.FillBytes(buf)
	a, _ := netip.AddrFromSlice(buf)
	return a
}

func (m *refModel) rng() netip.Prefix { return m.prefix(m.rStart, m.rLen) }

func (m *refModel) inRange(start, plen int) bool {
	return plen >= m.rLen && start >= m.rStart && start+m.size(plen) <= m.rStart+m.size(m.rLen)
}

// lowestAlloc returns the lowest allocation overlapping [start, start+size).
func (m *refModel) lowestAlloc(start, size int) (refAlloc, bool) {
	for u := start; u < start+size; u++ {
		if m.owner[u] != 0 {
			// find the allocation containing unit u
			for _, a := range m.allocs {
				if a.start <= u && u < a.start+m.size(a.plen) {
					return a, true
				}
			}
			panic("orphan unit")
		}
	}
	return refAlloc{}, false
}

func (m *refModel) freeA(start, size int) bool {
	for u := start; u < start+size; u++ {
		if m.owner[u] != 0 {
			return false
		}
	}
	return true
}

func (m *refModel) freeQ(start, size int) bool {
	for u := start; u < start+size; u++ {
		if m.owner[u] != 0 || m.quar[u] != 0 {
			return false
		}
	}
	return true
}

func (m *refModel) clearQ(i int) {
	e := &m.fifo[i]
	if !e.live {
		return
	}
	e.live = false
	for u := e.start; u < e.start+m.size(e.plen); u++ {
		m.quar[u] = 0
	}
}

func (m *refModel) mark(start, plen int, o Owner) {
	for u := start; u < start+m.size(plen); u++ {
		m.owner[u] = o
	}
	m.allocs[start] = refAlloc{start, plen, o}
}

func (m *refModel) claim(start, plen int, o Owner) (conflict refAlloc, err error) {
	if !m.inRange(start, plen) {
		return refAlloc{}, ErrOutOfRange
	}
	if a, ok := m.lowestAlloc(start, m.size(plen)); ok {
		return a, errConflict
	}
	for u := start; u < start+m.size(plen); u++ {
		if q := m.quar[u]; q != 0 {
			m.clearQ(q - 1)
		}
	}
	m.mark(start, plen, o)
	return refAlloc{}, nil
}

var errConflict = errors.New("conflict")

// allocate mirrors Allocate (chosen < 0: the lowest fitting block) and
// AllocateRandom (chosen = the unit the pool picked, which must be a free,
// unquarantined, aligned block once the quarantine is drained as far as
// needed).
func (m *refModel) allocate(plen int, o Owner, chosen int) (int, error) {
	if plen < m.rLen {
		return 0, ErrOutOfRange
	}
	size, nb := m.size(plen), m.size(m.rLen)/m.size(plen)
	block := func(j int) int { return m.rStart + j*size }
	any := false
	for j := range nb {
		if m.freeA(block(j), size) {
			any = true
			break
		}
	}
	if !any {
		return 0, ErrExhausted
	}
	fits := func() bool {
		for j := range nb {
			if m.freeQ(block(j), size) {
				return true
			}
		}
		return false
	}
	for !fits() {
		if m.head == len(m.fifo) {
			panic("reference: quarantine drained without fit")
		}
		m.clearQ(m.head)
		m.head++
	}
	if chosen >= 0 {
		if chosen < m.rStart || (chosen-m.rStart)%size != 0 || chosen >= m.rStart+m.size(m.rLen) || !m.freeQ(chosen, size) {
			return 0, fmt.Errorf("reference: random pick %v is not a free unquarantined block", m.prefix(chosen, plen))
		}
		m.mark(chosen, plen, o)
		return chosen, nil
	}
	for j := range nb {
		if m.freeQ(block(j), size) {
			m.mark(block(j), plen, o)
			return block(j), nil
		}
	}
	panic("unreachable")
}

// unitOf returns the unit index of the address of pfx (which must be in the
// universe).
func (m *refModel) unitOf(pfx netip.Prefix) int {
	i, _ := slices.BinarySearchFunc(m.addrsTable(), pfx.Addr(), netip.Addr.Compare)
	return i
}

func (m *refModel) addrsTable() []netip.Addr {
	m.prefix(0, m.uni.Bits()) // fills m.addrs
	return m.addrs
}

func (m *refModel) release(start, plen int) error {
	if !m.inRange(start, plen) {
		return ErrOutOfRange
	}
	a, ok := m.allocs[start]
	if !ok || a.plen != plen {
		return ErrNotAllocated
	}
	delete(m.allocs, start)
	m.fifo = append(m.fifo, refQ{start: start, plen: plen, live: true})
	idx := len(m.fifo) - 1
	for u := start; u < start+m.size(plen); u++ {
		m.owner[u] = 0
		m.quar[u] = idx + 1
	}
	if m.limit == 0 {
		m.clearQ(idx)
		m.head = len(m.fifo)
		return nil
	}
	if len(m.fifo)-1-m.head >= m.limit {
		m.clearQ(m.head)
		m.head++
	}
	return nil
}

func (m *refModel) resize(start, plen int) error {
	switch {
	case start == m.rStart && plen == m.rLen:
		return nil
	case plen < m.rLen && m.rStart >= start && m.rStart < start+m.size(plen):
		m.rStart, m.rLen = start, plen
		return nil
	case plen > m.rLen && m.inRange(start, plen):
		for _, a := range m.allocs {
			if a.start < start || a.start+m.size(a.plen) > start+m.size(plen) {
				return ErrOutOfRange
			}
		}
		var keep []refQ
		for i := m.head; i < len(m.fifo); i++ {
			e := m.fifo[i]
			if !e.live {
				continue
			}
			if e.plen >= plen && e.start >= start && e.start < start+m.size(plen) {
				keep = append(keep, e)
			} else {
				m.clearQ(i)
			}
		}
		// Re-index: the FIFO now holds only the kept live entries.
		m.fifo, m.head = nil, 0
		clear(m.quar)
		for _, e := range keep {
			m.fifo = append(m.fifo, e)
			for u := e.start; u < e.start+m.size(e.plen); u++ {
				m.quar[u] = len(m.fifo)
			}
		}
		m.rStart, m.rLen = start, plen
		return nil
	}
	return ErrOutOfRange
}

func (m *refModel) setLimit(n int) {
	n = max(n, 0)
	for len(m.fifo)-m.head > n {
		m.clearQ(m.head)
		m.head++
	}
	m.limit = n
}

func (m *refModel) freeBlocks(plen int) uint64 {
	if plen < m.rLen || plen > m.width {
		return 0
	}
	if plen > m.unitLen {
		// Every free unit holds 2^(plen-unitLen) blocks.
		v := new(big.Int).Lsh(big.NewInt(int64(m.freeBlocks(m.unitLen))), uint(plen-m.unitLen))
		if !v.IsUint64() {
			return math.MaxUint64
		}
		return v.Uint64()
	}
	var cnt uint64
	size := m.size(plen)
	for s := m.rStart; s < m.rStart+m.size(m.rLen); s += size {
		if m.freeA(s, size) {
			cnt++
		}
	}
	return cnt
}

func (m *refModel) sortedAllocs() []refAlloc {
	var out []refAlloc
	for _, a := range m.allocs {
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b refAlloc) int { return a.start - b.start })
	return out
}

func (m *refModel) nquar() int {
	n := 0
	for i := m.head; i < len(m.fifo); i++ {
		if m.fifo[i].live {
			n++
		}
	}
	return n
}

// harness runs one op sequence against a Pool and the reference model.
type harness struct {
	p *Pool
	m *refModel
}

var refUniverses = []netip.Prefix{
	netip.MustParsePrefix("10.0.0.0/21"),        // IPv4, units are /32
	netip.MustParsePrefix("2001:db8:0:80::/57"), // IPv6, units /68 straddle the 64-bit halves
	netip.MustParsePrefix("2001:db8::f800/117"), // IPv6, units are /128
	netip.MustParsePrefix("0.0.0.0/0"),          // whole IPv4 space, units are /11
}

var refLimits = []int{DefaultQuarantineLimit, 0, 1, 3}

func newHarness(t testing.TB, cfg byte) *harness {
	uni := refUniverses[int(cfg)%len(refUniverses)]
	limit := refLimits[int(cfg/4)%len(refLimits)]
	m := newRefModel(uni, uni.Bits()+1, 0, limit)
	p, err := NewPool(m.rng())
	if err != nil {
		t.Fatal(err)
	}
	p.SetQuarantineLimit(limit)
	return &harness{p: p, m: m}
}

// step decodes one 4-byte op and checks Pool against the model.
func (h *harness) step(op [4]byte) error {
	p, m := h.p, h.m
	arg := int(op[2])<<8 | int(op[3])
	plenIn := func() int { return m.rLen + int(op[1])%(m.unitLen-m.rLen+1) }
	unitBlock := func() (int, int) {
		plen := m.uni.Bits() + int(op[1])%(refBits+1)
		start := (arg % (1 << refBits)) &^ (m.size(plen) - 1)
		return start, plen
	}
	owner := Owner(op[2]%7 + 1)
	switch op[0] % 10 {
	case 0, 1: // Allocate / AllocateRandom
		plen := plenIn()
		if op[0]%10 == 1 {
			src := rand.NewPCG(uint64(arg), 1)
			got, err := p.AllocateRandom(plen, owner, func(n uint64) uint64 { return src.Uint64() % n })
			chosen := 0
			if err == nil {
				chosen = m.unitOf(got)
				if got.Bits() != plen || m.prefix(chosen, plen) != got {
					return fmt.Errorf("allocate random /%d: got %v", plen, got)
				}
			}
			if _, werr := m.allocate(plen, owner, chosen); werr != nil && !errors.Is(err, werr) || werr == nil && err != nil {
				return fmt.Errorf("allocate random /%d: got %v, %v; model: %v", plen, got, err, werr)
			}
		} else {
			got, err := p.Allocate(plen, owner)
			start, werr := m.allocate(plen, owner, -1)
			if !errors.Is(err, werr) || (werr == nil && got != m.prefix(start, plen)) {
				return fmt.Errorf("allocate /%d: got %v, %v; want %v, %v", plen, got, err, m.prefix(start, plen), werr)
			}
		}
	case 2, 3: // Claim
		start, plen := unitBlock()
		pfx := m.prefix(start, plen)
		err := p.Claim(pfx, owner)
		c, werr := m.claim(start, plen, owner)
		if werr == errConflict {
			var ce *ConflictError
			if !errors.As(err, &ce) || ce.Prefix != m.prefix(c.start, c.plen) || ce.Owner != c.owner {
				return fmt.Errorf("claim %v: got %v; want conflict with %v owner %d", pfx, err, m.prefix(c.start, c.plen), c.owner)
			}
		} else if !errors.Is(err, werr) {
			return fmt.Errorf("claim %v: got %v want %v", pfx, err, werr)
		}
	case 4, 5: // Release an allocation (or, 1 in 4, an arbitrary block)
		start, plen := unitBlock()
		if all := m.sortedAllocs(); len(all) > 0 && op[1]%4 != 0 {
			a := all[arg%len(all)]
			start, plen = a.start, a.plen
		}
		pfx := m.prefix(start, plen)
		err := p.Release(pfx)
		if werr := m.release(start, plen); !errors.Is(err, werr) {
			return fmt.Errorf("release %v: got %v want %v", pfx, err, werr)
		}
	case 6: // Conflict and OwnerOf
		start, plen := unitBlock()
		pfx := m.prefix(start, plen)
		if op[1]%16 == 15 {
			pfx = netip.PrefixFrom(m.uni.Addr(), max(m.uni.Bits()-1, 0)).Masked()
			start, plen = 0, m.uni.Bits()
		}
		gp, go_, gok := p.Conflict(pfx)
		w, wok := m.lowestAlloc(start, m.size(plen))
		if gok != wok || (wok && (gp != m.prefix(w.start, w.plen) || go_ != w.owner)) {
			return fmt.Errorf("conflict %v: got %v %d %v want %v %d %v", pfx, gp, go_, gok, m.prefix(w.start, w.plen), w.owner, wok)
		}
		o, ok := p.OwnerOf(pfx)
		a, wok2 := m.allocs[start]
		wok2 = wok2 && a.plen == plen && pfx.Bits() == plen
		if ok != wok2 || (ok && o != a.owner) {
			return fmt.Errorf("ownerOf %v: got %d %v want %d %v", pfx, o, ok, a.owner, wok2)
		}
	case 7: // Resize
		plen := m.uni.Bits() + int(op[1])%3
		start := (arg % (1 << refBits)) &^ (m.size(plen) - 1)
		r := m.prefix(start, plen)
		err := p.Resize(r)
		if werr := m.resize(start, plen); !errors.Is(err, werr) {
			return fmt.Errorf("resize %v -> %v: got %v want %v", p.Range(), r, err, werr)
		}
	case 8: // Clone, or change the quarantine limit
		if op[1]%2 == 0 {
			// Mutate a clone; the original must not change. Then carry on
			// with a fresh clone, which must behave exactly like p.
			before := collectAll(p)
			c := p.Clone()
			for range 3 {
				if pfx, err := c.Allocate(m.unitLen, 1); err == nil {
					_ = c.Release(pfx)
				}
			}
			c.SetQuarantineLimit(0)
			if err := checkInvariants(c); err != nil {
				return fmt.Errorf("clone: %v", err)
			}
			if after := collectAll(p); !slices.Equal(before, after) {
				return fmt.Errorf("clone shares state with original")
			}
			if err := checkInvariants(p); err != nil {
				return fmt.Errorf("original after mutating its clone: %v", err)
			}
			h.p = p.Clone()
		} else {
			n := int(op[2]) % 5
			p.SetQuarantineLimit(n)
			m.setLimit(n)
		}
	case 9: // FreeBlocks for every length
		for b := m.rLen - 1; b <= m.width+1; b++ {
			if got, want := p.FreeBlocks(b), m.freeBlocks(b); got != want {
				return fmt.Errorf("FreeBlocks(%d) = %d want %d (range %v)", b, got, want, p.Range())
			}
		}
	}
	return h.compare()
}

func collectAll(p *Pool) []string {
	var out []string
	for pfx, o := range p.All {
		out = append(out, fmt.Sprintf("%v=%d", pfx, o))
	}
	return out
}

func (h *harness) compare() error {
	p, m := h.p, h.m
	if err := checkInvariants(p); err != nil {
		return err
	}
	if p.Range() != m.rng() {
		return fmt.Errorf("range %v want %v", p.Range(), m.rng())
	}
	want := m.sortedAllocs()
	if p.Len() != len(want) {
		return fmt.Errorf("Len %d want %d", p.Len(), len(want))
	}
	i := 0
	for pfx, o := range p.All {
		if i >= len(want) || pfx != m.prefix(want[i].start, want[i].plen) || o != want[i].owner {
			return fmt.Errorf("All[%d] = %v %d, want %v", i, pfx, o, want)
		}
		i++
	}
	if i != len(want) {
		return fmt.Errorf("All yielded %d want %d", i, len(want))
	}
	if p.Quarantined() != m.nquar() {
		return fmt.Errorf("Quarantined %d want %d", p.Quarantined(), m.nquar())
	}
	// The quarantined blocks agree, in FIFO order.
	var gotQ, wantQ []netip.Prefix
	for i := range p.q.n {
		if e := p.q.at(i); p.isQuarantined(e) {
			gotQ = append(gotQ, p.prefix(e.a, e.bits))
		}
	}
	for i := m.head; i < len(m.fifo); i++ {
		if e := m.fifo[i]; e.live {
			wantQ = append(wantQ, m.prefix(e.start, e.plen))
		}
	}
	if !slices.Equal(gotQ, wantQ) {
		return fmt.Errorf("quarantine %v want %v", gotQ, wantQ)
	}
	return nil
}

func runOps(t testing.TB, data []byte) {
	if len(data) == 0 {
		return
	}
	h := newHarness(t, data[0])
	data = data[1:]
	for i := 0; len(data) >= 4; i++ {
		var op [4]byte
		copy(op[:], data)
		data = data[4:]
		if err := h.step(op); err != nil {
			t.Fatalf("op %d %v: %v", i, op, err)
		}
	}
}

// TestPropertyRandomOps drives long random op sequences on every reference
// universe and quarantine limit. The ops are biased toward allocation so
// the pools regularly run full and the quarantine is drained.
func TestPropertyRandomOps(t *testing.T) {
	seeds := 32
	n := 2000
	if testing.Short() {
		seeds, n = 8, 1000
	}
	for s := range seeds {
		r := rand.New(rand.NewPCG(uint64(s), 7))
		data := []byte{byte(s)}
		for range n {
			op := [4]byte{byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256))}
			// Mostly small blocks, so ranges fill up.
			if op[0]%10 <= 1 && r.IntN(3) > 0 {
				op[1] = 255
			}
			data = append(data, op[:]...)
		}
		t.Run(fmt.Sprint(s), func(t *testing.T) { runOps(t, data) })
	}
}

func FuzzPool(f *testing.F) {
	f.Add([]byte{0, 0, 255, 0, 0, 0, 255, 0, 1, 4, 0, 0, 0})
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17})
	f.Add([]byte{5, 0, 250, 1, 2, 4, 0, 0, 0, 0, 250, 3, 4, 9, 0, 0, 0})
	f.Add([]byte{2, 7, 1, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 9, 9, 9, 9})
	f.Add([]byte{13, 2, 3, 0, 9, 0, 255, 1, 1, 4, 1, 0, 0, 8, 1, 3, 0, 1, 255, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1+4*200 {
			data = data[:1+4*200]
		}
		runOps(t, data)
	})
}
