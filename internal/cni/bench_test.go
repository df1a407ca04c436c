package cni

import (
	"fmt"
	"net/netip"
	"testing"
)

// BenchmarkStoreAllocate: one ADD's state work (open and lock, find the
// attachment, allocate with its fsyncs, close) on a node holding up to
// 100 pods, as in the README's ADD latency figure.
func BenchmarkStoreAllocate(b *testing.B) {
	dir := b.TempDir()
	rng := netip.MustParsePrefix("10.4.0.0/24")
	i := 0
	for b.Loop() {
		if i%100 == 0 {
			b.StopTimer()
			st, err := OpenStore(dir, "pods", rng)
			if err != nil {
				b.Fatal(err)
			}
			for _, al := range st.List() {
				st.Release(al.IP)
			}
			st.Close()
			b.StartTimer()
		}
		id := fmt.Sprint("c", i)
		st, err := OpenStore(dir, "pods", rng)
		if err != nil {
			b.Fatal(err)
		}
		if len(st.Find(id, "eth0")) != 0 {
			b.Fatal("found")
		}
		if _, err := st.Allocate(Attachment{ContainerID: id, IfName: "eth0"}); err != nil {
			b.Fatal(err)
		}
		st.Close()
		i++
	}
}
