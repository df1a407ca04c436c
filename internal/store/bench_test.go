package store

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
)

// BenchmarkCommit: durable commits of one small transaction, serial and
// from 64 goroutines (group commit).
func BenchmarkCommit(b *testing.B) {
	for _, par := range []int{1, 64} {
		b.Run(fmt.Sprintf("callers=%d", par), func(b *testing.B) {
			s, err := OpenBolt(filepath.Join(b.TempDir(), "b.db"), BoltOptions{})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			val := make([]byte, 400)
			b.SetParallelism(par / 2)
			if par == 1 {
				for i := range b.N {
					if _, err := s.Submit(Txn{Puts: []KV{{Key: fmt.Sprintf("k%d", i%1000), Value: val}}}).Wait(context.Background()); err != nil {
						b.Fatal(err)
					}
				}
			} else {
				b.RunParallel(func(pb *testing.PB) {
					i := 0
					for pb.Next() {
						i++
						if _, err := s.Submit(Txn{Puts: []KV{{Key: fmt.Sprintf("k%d", i%1000), Value: val}}}).Wait(context.Background()); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
		})
	}
}
