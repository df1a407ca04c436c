package control_test

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/plugins/plugins/ipam/host-local/backend/allocator"
	"github.com/containernetworking/plugins/plugins/ipam/host-local/backend/disk"

	"github.com/aliasnet/aliasnet/internal/control"
	"github.com/aliasnet/aliasnet/internal/model"
	"github.com/aliasnet/aliasnet/internal/store"
)

// newBenchService opens a durable (fsync) bbolt store and creates a /8
// subnet with n instances, one NIC each, ready for alias updates.
func newBenchService(tb testing.TB, dir string, n, aliasesPer int) *control.Service {
	svc, _ := newBenchServiceStore(tb, dir, n, aliasesPer)
	return svc
}

func newBenchServiceStore(tb testing.TB, dir string, n, aliasesPer int) (*control.Service, store.Store) {
	tb.Helper()
	st, err := store.OpenBolt(filepath.Join(dir, "bench.db"), store.BoltOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	svc, err := control.New(context.Background(), st, control.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	do(tb, svc, func(tx *model.Txn) error {
		if _, err := tx.CreateNetwork(model.Network{Project: "p", Name: "vpc"}); err != nil {
			return err
		}
		_, err := tx.CreateSubnet(model.Subnet{Project: "p", Region: "us-central1", Name: "s", Network: "vpc",
			Range: mustPrefix("10.0.0.0/8")})
		return err
	})
	for lo := 0; lo < n; lo += 1000 {
		do(tb, svc, func(tx *model.Txn) error {
			for i := lo; i < min(lo+1000, n); i++ {
				var aliases []model.AliasSpec
				for range aliasesPer {
					aliases = append(aliases, model.AliasSpec{Bits: 32})
				}
				if _, _, err := tx.CreateInstance(model.CreateInstanceReq{
					Instance: model.Instance{Project: "p", Zone: "us-central1-a", Name: fmt.Sprintf("vm%d", i)},
					NICs:     []model.NICSpec{{Subnet: "s", Aliases: aliases}},
				}); err != nil {
					return err
				}
			}
			return nil
		})
	}
	return svc, st
}

func do(tb testing.TB, svc *control.Service, f func(tx *model.Txn) error) {
	tb.Helper()
	if _, err := svc.Do(context.Background(), control.Op{Project: "p", Scope: "global", Type: "bench"},
		func(tx *model.Txn) (uint64, any, error) { return 0, nil, f(tx) }); err != nil {
		tb.Fatal(err)
	}
}

// updateAlias gives instance i a fresh automatically picked /32 alias
// (releasing its previous one): one durable allocation.
func updateAlias(svc *control.Service, i int) error {
	name := fmt.Sprintf("vm%d", i)
	_, err := svc.Do(context.Background(), control.Op{Project: "p", Scope: "zones/us-central1-a", Type: "updateNetworkInterface"},
		func(tx *model.Txn) (uint64, any, error) {
			in := tx.State().Instance("p", "us-central1-a", name)
			nic := tx.State().NICs(in)[0]
			_, err := tx.UpdateAliases("p", "us-central1-a", name, "nic0", nic.Fingerprint, []model.AliasSpec{{Bits: 32}})
			return in.ID, nil, err
		})
	return err
}

// BenchmarkDurableAlloc: alias allocations committed with fsync, from one
// caller and from 64 concurrent callers (group commit).
func BenchmarkDurableAlloc(b *testing.B) {
	const instances = 4096
	b.Run("callers=1", func(b *testing.B) {
		svc := newBenchService(b, b.TempDir(), instances, 0)
		b.ResetTimer()
		for i := range b.N {
			if err := updateAlias(svc, i%instances); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "allocs/s")
	})
	b.Run("callers=64", func(b *testing.B) {
		svc := newBenchService(b, b.TempDir(), instances, 0)
		var next atomic.Int64
		b.SetParallelism(32) // 32 × GOMAXPROCS(2) = 64 callers
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			// Each caller owns a disjoint slice of instances so fingerprints
			// never race: contention is on the allocator and the store.
			me := int(next.Add(1)-1) % 64
			k := 0
			for pb.Next() {
				if err := updateAlias(svc, me*(instances/64)+k%(instances/64)); err != nil {
					b.Error(err)
					return
				}
				k++
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "allocs/s")
	})
}

// BenchmarkHostLocalDurable is the CNI host-local IPAM (disk store) doing
// /32 allocations at the same fill levels (0..999 in use), for the ratio
// in the README. host-local writes one file per address and scans them
// all on every Get; it does not fsync, so it is measured on its most
// favourable terms.
func BenchmarkHostLocalDurable(b *testing.B) {
	_, subnet, _ := net.ParseCIDR("10.1.0.0/16")
	dir := b.TempDir()
	var a *allocator.IPAllocator
	var st *disk.Store
	b.ResetTimer()
	for i := range b.N {
		if i%1000 == 0 {
			b.StopTimer()
			if st != nil {
				st.Close()
			}
			r := allocator.Range{Subnet: types.IPNet(*subnet)}
			if err := r.Canonicalize(); err != nil {
				b.Fatal(err)
			}
			var err error
			st, err = disk.New(fmt.Sprintf("net%d", i/1000), dir)
			if err != nil {
				b.Fatal(err)
			}
			a = allocator.NewIPAllocator(&allocator.RangeSet{r}, st, 0)
			b.StartTimer()
		}
		if _, err := a.Get(fmt.Sprintf("c%d", i), "eth0", nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "allocs/s")
}

// BenchmarkRestart1M measures how long a server takes to load a store
// holding 1,000,000 allocations (100,000 instances × primary IP + 9 /32
// aliases) and be ready to serve. Run with -benchtime=1x.
func BenchmarkRestart1M(b *testing.B) {
	dir := b.TempDir()
	build := time.Now()
	_, st := newBenchServiceStore(b, dir, 100_000, 9)
	b.Logf("built 1,000,000 allocations in %s", time.Since(build).Round(time.Millisecond))
	if err := st.Close(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		st2, err := store.OpenBolt(filepath.Join(dir, "bench.db"), store.BoltOptions{})
		if err == nil {
			var s2 *control.Service
			s2, err = control.New(context.Background(), st2, control.Options{})
			_ = s2
			st2.Close()
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/restart")
}

func mustPrefix(s string) (p netipPrefix) { return parsePrefix(s) }
