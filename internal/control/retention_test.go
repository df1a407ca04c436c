package control_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/aliasnet/aliasnet/internal/control"
	"github.com/aliasnet/aliasnet/internal/model"
	"github.com/aliasnet/aliasnet/internal/store"
	"github.com/aliasnet/aliasnet/internal/store/etcdtest"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// TestPruneOperations: operations older than the retention age go (from
// memory and from the store, with their request ids, so a late retry is
// a new request); younger ones stay; the count cap removes the oldest.
func TestPruneOperations(t *testing.T) {
	for _, tc := range []struct {
		name          string
		maxOps        int
		advance       time.Duration // between the two groups of calls
		wantKept      int           // of 3 early + 2 late calls
		earlyRetryNew bool          // a retry of an early request id is a new operation
	}{
		{"all young", 0, 10 * time.Minute, 5, false},
		{"early ones expired", 0, 61 * time.Minute, 2, true},
		{"count cap", 4, time.Minute, 4, true},
	} {
		for _, backend := range []string{"bbolt", "etcd"} {
			t.Run(tc.name+"/"+backend, func(t *testing.T) {
				dir := t.TempDir()
				clk := &clock{t: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)}
				var cluster *etcdtest.Cluster
				if backend == "etcd" {
					// Replica mode: operations are stored in per-transaction batches.
					cluster = etcdtest.Start(t, 1, etcdtest.Options{NoFsync: true})
				}
				open := func() (*control.Service, store.Store) {
					var st store.Store
					var err error
					if cluster != nil {
						st, err = store.OpenEtcd(context.Background(), store.EtcdOptions{Endpoints: cluster.Endpoints(), Prefix: "/prune/"})
					} else {
						st, err = store.OpenBolt(filepath.Join(dir, "s.db"), store.BoltOptions{})
					}
					if err != nil {
						t.Fatal(err)
					}
					svc, err := control.New(context.Background(), st, control.Options{Now: clk.now, MaxOperations: tc.maxOps})
					if err != nil {
						t.Fatal(err)
					}
					return svc, st
				}
				svc, st := open()
				call := func(svc *control.Service, reqID, name string) *control.Operation {
					o, err := svc.Do(context.Background(), control.Op{Project: "p", Scope: "global", Type: "insert", RequestID: reqID},
						func(tx *model.Txn) (uint64, any, error) {
							_, err := tx.CreateNetwork(model.Network{Project: "p", Name: name})
							return 0, nil, err
						})
					if err != nil {
						t.Fatal(err)
					}
					return o
				}
				var early []*control.Operation
				for i := range 3 {
					early = append(early, call(svc, fmt.Sprintf("req-%d", i), fmt.Sprintf("n%d", i)))
					clk.add(time.Second)
				}
				clk.add(tc.advance)
				for i := range 2 {
					call(svc, "", fmt.Sprintf("m%d", i))
					clk.add(time.Second)
				}
				if _, err := svc.PruneOperations(context.Background(), clk.now()); err != nil {
					t.Fatal(err)
				}
				if got := len(svc.Operations("p", "")); got != tc.wantKept {
					t.Fatalf("kept %d operations in memory, want %d", got, tc.wantKept)
				}
				// The store agrees after a restart.
				svc.Close()
				st.Close()
				svc, st = open()
				defer st.Close()
				defer svc.Close()
				if got := len(svc.Operations("p", "")); got != tc.wantKept {
					t.Fatalf("kept %d operations after restart, want %d", got, tc.wantKept)
				}
				o, err := svc.Do(context.Background(), control.Op{Project: "p", Scope: "global", Type: "insert", RequestID: "req-0"},
					func(tx *model.Txn) (uint64, any, error) { return 0, nil, nil })
				if err != nil {
					t.Fatal(err)
				}
				if isNew := o.Name != early[0].Name; isNew != tc.earlyRetryNew {
					t.Errorf("retry of req-0 after pruning: new operation = %v, want %v", isNew, tc.earlyRetryNew)
				}
			})
		}
	}
}
