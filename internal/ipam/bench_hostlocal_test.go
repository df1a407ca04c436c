package ipam

import (
	"fmt"
	"net"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/plugins/plugins/ipam/host-local/backend/allocator"
	"github.com/containernetworking/plugins/plugins/ipam/host-local/backend/disk"
)

// Side-by-side: /32 allocations from a /16, one op = one allocation,
// hostLocalBatch allocations per fresh range (timer stopped between
// batches), so both allocators run at the same fill levels (0 to
// hostLocalBatch-1 addresses taken).
//
// host-local (CNI plugins v1.10.0) keeps one file per address in its disk
// store and, in Get, first walks and reads every reservation file looking
// for an existing one of the same container id (Store.GetByID), then
// creates the address file and rewrites the last-reserved-IP file. Its cost
// per allocation therefore grows with the number of addresses in use; ours
// is O(address bits) in memory. The durable comparison (through aliasnet's
// own store) is measured elsewhere.
const hostLocalBatch = 1000

func newHostLocal(b *testing.B, dir string, batchNo int) (*allocator.IPAllocator, *disk.Store) {
	_, subnet, err := net.ParseCIDR("10.1.0.0/16")
	if err != nil {
		b.Fatal(err)
	}
	r := allocator.Range{Subnet: types.IPNet(*subnet)}
	if err := r.Canonicalize(); err != nil {
		b.Fatal(err)
	}
	rs := allocator.RangeSet{r}
	store, err := disk.New(fmt.Sprintf("net%d", batchNo), dir)
	if err != nil {
		b.Fatal(err)
	}
	return allocator.NewIPAllocator(&rs, store, 0), store
}

func BenchmarkHostLocal(b *testing.B) {
	b.Run("host-local-disk", func(b *testing.B) {
		dir := b.TempDir()
		var (
			a     *allocator.IPAllocator
			store *disk.Store
		)
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			if i%hostLocalBatch == 0 {
				b.StopTimer()
				if store != nil {
					_ = store.Close()
				}
				a, store = newHostLocal(b, dir, i/hostLocalBatch)
				b.StartTimer()
			}
			if _, err := a.Get(fmt.Sprintf("container-%d", i), "eth0", nil); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		if store != nil {
			_ = store.Close()
		}
	})
	b.Run("ipam-pool", func(b *testing.B) {
		var p *Pool
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			if i%hostLocalBatch == 0 {
				b.StopTimer()
				p, _ = NewPool(mp("10.1.0.0/16"))
				// Like host-local's defaults: network and gateway are not handed out.
				_ = p.Claim(mp("10.1.0.0/32"), 1)
				_ = p.Claim(mp("10.1.0.1/32"), 1)
				b.StartTimer()
			}
			if _, err := p.Allocate(32, Owner(i%1000+2)); err != nil {
				b.Fatal(err)
			}
		}
	})
}
