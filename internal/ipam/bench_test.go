package ipam

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"
)

// Benchmarks run against large pre-built pools ("templates"). Mutating
// benchmarks work on a Clone of the template and take a fresh clone (with
// the timer stopped) every batch, so the pool always holds about the
// template's number of allocations (1M to 1.02M for the 1M templates).

func heapNow() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

type template struct {
	p        *Pool
	heapPer  float64 // heap bytes per allocation, measured after GC
	objsPer  float64 // heap objects per allocation
	nodesPer float64
}

var (
	templMu sync.Mutex
	templs  = map[string]*template{}
)

// getTemplate builds (once) a pool over r holding n allocations of length
// bits, placed by first fit (dense) or at random (sparse: the worst case
// for the trie's node count).
func getTemplate(b *testing.B, r string, bits, n int, random bool) *template {
	key := fmt.Sprint(r, bits, n, random)
	templMu.Lock()
	defer templMu.Unlock()
	if t := templs[key]; t != nil {
		return t
	}
	before, objs := heapNow(), heapObjects()
	p, err := NewPool(mp(r))
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(uint64(n), uint64(bits)))
	for i := range n {
		if random {
			_, err = p.AllocateRandom(bits, Owner(i+1), rng.Uint64N)
		} else {
			_, err = p.Allocate(bits, Owner(i+1))
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	after, objs2 := heapNow(), heapObjects()
	runtime.KeepAlive(p)
	t := &template{
		p:        p,
		heapPer:  float64(after-before) / float64(n),
		objsPer:  float64(objs2-objs) / float64(n),
		nodesPer: float64(int(p.nnodes)-1-p.nfree) / float64(n),
	}
	templs[key] = t
	return t
}

func (t *template) report(b *testing.B) {
	b.ReportMetric(t.heapPer, "heapB/alloc")
	b.ReportMetric(t.nodesPer, "nodes/alloc")
}

// batched runs op b.N times on clones of t.p, taking a fresh clone every
// n ops with the timer stopped. Besides wall-clock ns/op it reports
// cpu-ns/op: process CPU time (all threads, GC included) spent inside the
// timed windows, which is robust against other load on the machine.
func batched(b *testing.B, src *Pool, n int, op func(p *Pool, i int)) {
	b.Helper()
	var (
		p   *Pool
		cpu time.Duration
		t0  time.Duration
	)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if i%n == 0 {
			b.StopTimer()
			if i > 0 {
				cpu += cpuNow() - t0
			}
			p = src.Clone()
			runtime.GC() // do not bill the clone's garbage to the timed ops
			t0 = cpuNow()
			b.StartTimer()
		}
		op(p, i)
	}
	b.StopTimer()
	cpu += cpuNow() - t0
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// batchFor is the clone interval for a layout: at most 20,000 ops, and
// never more than half the blocks still free.
func batchFor(t *template, bits int) int {
	return int(min(20_000, t.p.FreeBlocks(bits)/2))
}

type layout struct {
	name   string
	r      string
	bits   int
	n      int
	random bool
}

var allocLayouts = []layout{
	{"v4-32-in-8-1M-dense", "10.0.0.0/8", 32, 1_000_000, false},
	{"v4-32-in-8-1M-random", "10.0.0.0/8", 32, 1_000_000, true},
	{"v4-24-in-8-50k-dense", "10.0.0.0/8", 24, 50_000, false},
	{"v4-24-in-8-50k-random", "10.0.0.0/8", 24, 50_000, true},
	{"v6-128-in-64-1M-random", "2001:db8::/64", 128, 1_000_000, true},
	{"v6-64-in-48-50k-random", "2001:db8::/48", 64, 50_000, true},
}

func BenchmarkAllocate(b *testing.B) {
	for _, l := range allocLayouts {
		b.Run(l.name, func(b *testing.B) {
			t := getTemplate(b, l.r, l.bits, l.n, l.random)
			batched(b, t.p, batchFor(t, l.bits), func(p *Pool, _ int) {
				if _, err := p.Allocate(l.bits, 1); err != nil {
					b.Fatal(err)
				}
			})
			t.report(b)
		})
	}
}

func BenchmarkAllocateRandom(b *testing.B) {
	for _, l := range allocLayouts {
		b.Run(l.name, func(b *testing.B) {
			t := getTemplate(b, l.r, l.bits, l.n, l.random)
			rng := rand.New(rand.NewPCG(1, 2))
			batched(b, t.p, batchFor(t, l.bits), func(p *Pool, _ int) {
				if _, err := p.AllocateRandom(l.bits, 1, rng.Uint64N); err != nil {
					b.Fatal(err)
				}
			})
		})
	}
}

// sample returns up to k prefixes of length bits inside p's range, either
// allocated ones (taken from All at random) or free ones (random probes).
func sample(p *Pool, bits, k int, allocated bool) []netip.Prefix {
	rng := rand.New(rand.NewPCG(42, uint64(bits)))
	var out []netip.Prefix
	if allocated {
		keep := float64(k) / float64(p.Len())
		for pfx := range p.All {
			if rng.Float64() < keep {
				out = append(out, pfx)
			}
		}
		rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
		return out
	}
	seen := map[netip.Prefix]bool{}
	for len(out) < k {
		a := p.base.or(randBits(rng.Uint64N, uint(bits)-uint(p.plen)).shl(128 - uint(bits)))
		pfx := p.prefix(a, uint8(bits))
		if _, _, busy := p.Conflict(pfx); !busy && !seen[pfx] {
			seen[pfx] = true
			out = append(out, pfx)
		}
	}
	return out
}

func BenchmarkClaim(b *testing.B) {
	for _, l := range allocLayouts[:4] {
		b.Run(l.name, func(b *testing.B) {
			t := getTemplate(b, l.r, l.bits, l.n, l.random)
			n := batchFor(t, l.bits)
			free := sample(t.p, l.bits, n, false)
			batched(b, t.p, n, func(p *Pool, i int) {
				if err := p.Claim(free[i%n], 1); err != nil {
					b.Fatal(err)
				}
			})
		})
	}
}

func BenchmarkRelease(b *testing.B) {
	for _, l := range allocLayouts[:4] {
		b.Run(l.name, func(b *testing.B) {
			t := getTemplate(b, l.r, l.bits, l.n, l.random)
			used := sample(t.p, l.bits, 20_000, true)
			batched(b, t.p, len(used), func(p *Pool, i int) {
				if err := p.Release(used[i%len(used)]); err != nil {
					b.Fatal(err)
				}
			})
		})
	}
}

// BenchmarkChurn: steady state of Allocate + Release of the oldest, on a
// pool holding ~1M /32s, with the quarantine full (every Release also
// frees the oldest quarantined block).
func BenchmarkChurn(b *testing.B) {
	t := getTemplate(b, "10.0.0.0/8", 32, 1_000_000, true)
	p := t.p.Clone()
	var ring []netip.Prefix
	for range 2 * DefaultQuarantineLimit {
		x, _ := p.Allocate(32, 1)
		ring = append(ring, x)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		j := i % len(ring)
		if err := p.Release(ring[j]); err != nil {
			b.Fatal(err)
		}
		x, err := p.Allocate(32, 1)
		if err != nil {
			b.Fatal(err)
		}
		ring[j] = x
	}
}

func BenchmarkConflict(b *testing.B) {
	for _, l := range allocLayouts[:4] {
		b.Run(l.name, func(b *testing.B) {
			t := getTemplate(b, l.r, l.bits, l.n, l.random)
			q := append(sample(t.p, l.bits, 4096, false), sample(t.p, l.bits, 4096, true)...)
			b.ReportAllocs()
			b.ResetTimer()
			hits := 0
			for i := range b.N {
				if _, _, ok := t.p.Conflict(q[i%len(q)]); ok {
					hits++
				}
			}
			if b.N >= len(q) && hits == 0 {
				b.Fatal("no hits")
			}
		})
	}
}

func BenchmarkOwnerOf(b *testing.B) {
	t := getTemplate(b, "10.0.0.0/8", 32, 1_000_000, true)
	q := sample(t.p, 32, 4096, true)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, ok := t.p.OwnerOf(q[i%len(q)]); !ok {
			b.Fatal("not found")
		}
	}
}

func BenchmarkFreeBlocks(b *testing.B) {
	t := getTemplate(b, "10.0.0.0/8", 32, 1_000_000, true)
	b.ReportAllocs()
	for i := range b.N {
		_ = t.p.FreeBlocks(24 + i%9)
	}
}

func BenchmarkAll(b *testing.B) {
	t := getTemplate(b, "10.0.0.0/8", 32, 1_000_000, true)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		n := 0
		for range t.p.All {
			n++
		}
		if n != t.p.Len() {
			b.Fatal(n)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(t.p.Len()), "ns/prefix")
}

func BenchmarkClone(b *testing.B) {
	t := getTemplate(b, "10.0.0.0/8", 32, 1_000_000, true)
	b.ReportAllocs()
	for range b.N {
		_ = t.p.Clone()
	}
}

// BenchmarkEmptyPoolHeap reports the heap cost of an empty pool, and of a
// pool holding one allocation, for large ranges: it must not depend on the
// range's size.
func BenchmarkEmptyPoolHeap(b *testing.B) {
	for _, r := range []string{"2001:db8::/64", "2001:db8::/48", "::/0", "10.0.0.0/8"} {
		for _, one := range []bool{false, true} {
			name := r + "-empty"
			if one {
				name = r + "-1alloc"
			}
			b.Run(name, func(b *testing.B) {
				const k = 10_000
				pools := make([]*Pool, k)
				before := heapNow()
				for i := range pools {
					pools[i], _ = NewPool(mp(r))
					if one {
						_, _ = pools[i].Allocate(pools[i].Range().Addr().BitLen(), 1)
					}
				}
				after := heapNow()
				runtime.KeepAlive(pools)
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					p, _ := NewPool(mp(r))
					_ = p
				}
				b.ReportMetric(float64(after-before)/k, "heapB/pool")
			})
		}
	}
}
