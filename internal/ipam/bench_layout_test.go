package ipam

import (
	"runtime"
	"testing"
	"time"
)

// This file measures the node-layout choice: the Pool's index arena
// (16-byte pointer-free nodes in 64 KiB pages) against the same trie built
// from individually allocated nodes linked by pointers. ptrPool is a
// minimal pointer trie with first-fit Allocate only (no quarantine, no
// histogram), so it does strictly less work per operation than Pool.

type pnode struct {
	child [2]*pnode
	owner uint32
	best  uint8
	leaf  bool
}

type ptrPool struct {
	root *pnode
	plen uint8
	base u128
}

func (p *ptrPool) ins(n *pnode, d uint8, a u128, bits uint8, owner uint32) *pnode {
	if n == nil {
		n = &pnode{}
	}
	if d == bits {
		n.leaf, n.owner, n.best = true, owner, none
		return n
	}
	b := a.bit(d)
	n.child[b] = p.ins(n.child[b], d+1, a, bits, owner)
	n.best = none
	for _, c := range n.child {
		if c == nil {
			n.best = min(n.best, d+1)
		} else {
			n.best = min(n.best, c.best)
		}
	}
	return n
}

func (p *ptrPool) allocate(bits uint8, owner uint32) (u128, bool) {
	if p.root != nil && p.root.best > bits {
		return u128{}, false
	}
	a, d, n := p.base, p.plen, p.root
	for n != nil {
		if c := n.child[0]; c == nil || c.best <= bits {
			n = c
		} else {
			a = a.withBit(d, 1)
			n = n.child[1]
		}
		d++
	}
	p.root = p.ins(p.root, p.plen, a, bits, owner)
	return a, true
}

func (n *pnode) clone() *pnode {
	if n == nil {
		return nil
	}
	c := *n
	c.child[0], c.child[1] = n.child[0].clone(), n.child[1].clone()
	return &c
}

// ptrFromPool builds a pointer trie holding the allocations of p.
func ptrFromPool(p *Pool) *ptrPool {
	q := &ptrPool{plen: p.plen, base: p.base}
	for pfx, o := range p.All {
		q.root = q.ins(q.root, q.plen, fromAddr(pfx.Addr()), uint8(pfx.Bits()), uint32(o))
	}
	return q
}

func heapObjects() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapObjects
}

func BenchmarkNodeLayout(b *testing.B) {
	for _, l := range allocLayouts[:4] {
		t := getTemplate(b, l.r, l.bits, l.n, l.random)
		b.Run("arena/"+l.name, func(b *testing.B) {
			batched(b, t.p, batchFor(t, l.bits), func(p *Pool, _ int) {
				if _, err := p.Allocate(l.bits, 1); err != nil {
					b.Fatal(err)
				}
			})
			t.report(b)
			b.ReportMetric(t.objsPer, "heapObjects/alloc")
		})
		before, objs := heapNow(), heapObjects()
		tp := ptrFromPool(t.p)
		after, objs2 := heapNow(), heapObjects()
		b.Run("pointer/"+l.name, func(b *testing.B) {
			var (
				p   *ptrPool
				cpu time.Duration
				t0  time.Duration
			)
			n := batchFor(t, l.bits)
			b.ResetTimer()
			for i := range b.N {
				if i%n == 0 {
					b.StopTimer()
					if i > 0 {
						cpu += cpuNow() - t0
					}
					p = &ptrPool{root: tp.root.clone(), plen: tp.plen, base: tp.base}
					runtime.GC()
					t0 = cpuNow()
					b.StartTimer()
				}
				if _, ok := p.allocate(uint8(l.bits), 1); !ok {
					b.Fatal("exhausted")
				}
			}
			b.StopTimer()
			cpu += cpuNow() - t0
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
			b.ReportMetric(float64(after-before)/float64(l.n), "heapB/alloc")
			b.ReportMetric(float64(objs2-objs)/float64(l.n), "heapObjects/alloc")
		})
		runtime.KeepAlive(tp)
	}
}
