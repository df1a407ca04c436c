package control_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aliasnet/aliasnet/internal/control"
	"github.com/aliasnet/aliasnet/internal/model"
	"github.com/aliasnet/aliasnet/internal/store"
)

// k8sBenchService opens a durable bbolt store with a subnet (pods range
// 100.64.0.0/10: 16,384 /24 node blocks), an empty cluster, and n plain
// instances ready to join it.
func k8sBenchService(tb testing.TB, n int) *control.Service {
	tb.Helper()
	st, err := store.OpenBolt(filepath.Join(tb.TempDir(), "k8s.db"), store.BoltOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	svc, err := control.New(context.Background(), st, control.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	k8sDo(tb, svc, func(tx *model.Txn) error {
		if _, err := tx.CreateNetwork(model.Network{Project: "p", Name: "default"}); err != nil {
			return err
		}
		if _, err := tx.CreateSubnet(model.Subnet{Project: "p", Region: "us-central1", Name: "default", Network: "default",
			Range: parsePrefix("10.0.0.0/16"), Secondary: []model.SecondaryRange{
				{Name: "pods", Range: parsePrefix("100.64.0.0/10")}, {Name: "services", Range: parsePrefix("10.96.0.0/20")}}}); err != nil {
			return err
		}
		_, _, err := tx.CreateCluster(model.CreateClusterReq{Cluster: model.Cluster{Project: "p", Location: "us-central1-a", Name: "big",
			PodsRange: "pods", ServicesRange: "services", NodePools: []model.NodePool{{Name: "default-pool"}}}})
		return err
	})
	for lo := 0; lo < n; lo += 1000 {
		k8sDo(tb, svc, func(tx *model.Txn) error {
			for i := lo; i < min(lo+1000, n); i++ {
				if _, _, err := tx.CreateInstance(model.CreateInstanceReq{
					Instance: model.Instance{Project: "p", Zone: "us-central1-a", Name: fmt.Sprintf("n%d", i)},
					NICs:     []model.NICSpec{{Subnet: "default"}},
				}); err != nil {
					return err
				}
			}
			return nil
		})
	}
	return svc
}

func k8sDo(tb testing.TB, svc *control.Service, f func(tx *model.Txn) error) {
	tb.Helper()
	if _, err := svc.Do(context.Background(), control.Op{Project: "p", Scope: "locations/us-central1-a", Type: "bench"},
		func(tx *model.Txn) (uint64, any, error) { return 0, nil, f(tx) }); err != nil {
		tb.Fatal(err)
	}
}

func join(svc *control.Service, i int) error {
	o, err := svc.Do(context.Background(), control.Op{Project: "p", Scope: "locations/us-central1-a", Type: "JOIN_NODE"},
		func(tx *model.Txn) (uint64, any, error) {
			_, err := tx.JoinNode("p", "us-central1-a", "big", "", "us-central1-a", fmt.Sprintf("n%d", i))
			return 0, nil, err
		})
	if err == nil && o.Error != nil {
		err = fmt.Errorf("%s", o.Error.Message)
	}
	return err
}

func reportLatencies(b *testing.B, lat []time.Duration, total time.Duration) {
	slices.Sort(lat)
	q := func(f float64) float64 { return float64(lat[int(f*float64(len(lat)-1))].Microseconds()) }
	b.ReportMetric(float64(total.Milliseconds()), "total-ms")
	b.ReportMetric(q(0.5), "p50-µs/node")
	b.ReportMetric(q(0.99), "p99-µs/node")
	b.ReportMetric(float64(total.Microseconds())/float64(len(lat)), "µs/node")
}

// BenchmarkK8sJoin5000Sequential: 5,000 nodes join one cluster one after
// the other, each join one durable operation (pod block allocated, nic0
// updated, node record written, fsync).
func BenchmarkK8sJoin5000Sequential(b *testing.B) {
	for b.Loop() {
		b.StopTimer()
		svc := k8sBenchService(b, 5000)
		lat := make([]time.Duration, 0, 5000)
		b.StartTimer()
		start := time.Now()
		for i := range 5000 {
			t0 := time.Now()
			if err := join(svc, i); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(t0))
		}
		total := time.Since(start)
		b.StopTimer()
		reportLatencies(b, lat, total)
		var u model.ClusterUsage
		svc.Read(func(st *model.State) { u, _ = st.Usage(st.Cluster("p", "us-central1-a", "big")) })
		if u.NodesUsed != 5000 || u.NodesPossible != 16384 {
			b.Fatalf("usage %+v", u)
		}
		b.StartTimer()
	}
}

// BenchmarkK8sJoin5000Concurrent: the same joins from 32 clients at once
// (group commit shares fsyncs).
func BenchmarkK8sJoin5000Concurrent(b *testing.B) {
	for b.Loop() {
		b.StopTimer()
		svc := k8sBenchService(b, 5000)
		lat := make([]time.Duration, 5000)
		b.StartTimer()
		start := time.Now()
		var wg sync.WaitGroup
		for w := range 32 {
			wg.Go(func() {
				for i := w; i < 5000; i += 32 {
					t0 := time.Now()
					if err := join(svc, i); err != nil {
						b.Error(err)
						return
					}
					lat[i] = time.Since(t0)
				}
			})
		}
		wg.Wait()
		total := time.Since(start)
		b.StopTimer()
		reportLatencies(b, lat, total)
		b.StartTimer()
	}
}

// BenchmarkK8sResize5000: one setSize 0 -> 5,000 (5,000 instances created
// with their pod blocks in one operation).
func BenchmarkK8sResize5000(b *testing.B) {
	for b.Loop() {
		b.StopTimer()
		svc := k8sBenchService(b, 0)
		b.StartTimer()
		start := time.Now()
		k8sDo(b, svc, func(tx *model.Txn) error {
			_, err := tx.SetNodePoolSize("p", "us-central1-a", "big", "default-pool", 5000)
			return err
		})
		total := time.Since(start)
		b.ReportMetric(float64(total.Milliseconds()), "total-ms")
		b.ReportMetric(float64(total.Microseconds())/5000, "µs/node")
	}
}
