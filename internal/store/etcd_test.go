package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aliasnet/aliasnet/internal/store/etcdtest"
)

// One 3-member cluster serves every etcd test of the package; each store
// gets its own prefix, as installations sharing a cluster do.
var (
	clusterOnce sync.Once
	cluster     *etcdtest.Cluster
	clusterErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if cluster != nil {
		cluster.Close()
	}
	os.Exit(code)
}

func testCluster(t testing.TB) *etcdtest.Cluster {
	t.Helper()
	clusterOnce.Do(func() { cluster, clusterErr = etcdtest.New(3, etcdtest.Options{NoFsync: os.Getenv("NOFSYNC") != ""}) })
	if clusterErr != nil {
		t.Fatal(clusterErr)
	}
	return cluster
}

func openEtcdAt(t testing.TB, prefix string) *Etcd {
	t.Helper()
	s, err := OpenEtcd(context.Background(), EtcdOptions{Endpoints: testCluster(t).Endpoints(), Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// openEtcdBackend keys the prefix by dir, so reopening the same dir sees
// the same data.
func openEtcdBackend(t *testing.T, dir string) Store {
	return openEtcdAt(t, "/test"+dir+"/")
}

func TestEtcdGuards(t *testing.T) {
	s := openEtcdAt(t, "/guards"+t.TempDir()+"/")
	defer s.Close()
	ctx := context.Background()
	r1 := commit(t, s, put("a", "1"))
	try := func(g Guard) error {
		_, err := s.Submit(Txn{Guards: []Guard{g}, Puts: []KV{{Key: "x", Value: []byte("y")}}}).Wait(ctx)
		return err
	}
	cases := []struct {
		g  Guard
		ok bool
	}{
		{Guard{Key: "a", Rev: r1}, true},
		{Guard{Key: "a", Rev: r1 - 1}, false},
		{Guard{Key: "a"}, false},   // must not exist
		{Guard{Key: "nope"}, true}, // does not exist
		{Guard{Key: "a", NotAfter: r1}, true},
		{Guard{Key: "a", NotAfter: r1 - 1}, false},
		{Guard{Key: "nope", NotAfter: 1}, true},
	}
	for i, c := range cases {
		err := try(c.g)
		if c.ok && err != nil || !c.ok && !errors.Is(err, ErrConflict) {
			t.Errorf("case %d %+v: %v", i, c.g, err)
		}
	}
	// A failed guard writes nothing.
	if m := load(t, s); m["x"] != "y" || len(m) != 2 {
		t.Fatalf("load %v", m)
	}
}

// TestEtcdPipelineOrder: transactions submitted without waiting commit in
// submission order when they share keys, and in parallel when not.
func TestEtcdPipelineOrder(t *testing.T) {
	s := openEtcdAt(t, "/order"+t.TempDir()+"/")
	defer s.Close()
	ctx := context.Background()
	const n = 300
	var cs []*Commit
	for i := range n {
		// Every third transaction touches the shared key; each also
		// writes its own key.
		tx := Txn{Puts: []KV{{Key: fmt.Sprintf("own/%03d", i), Value: []byte("v")}}}
		if i%3 == 0 {
			tx.Puts = append(tx.Puts, KV{Key: "shared", Value: []byte(fmt.Sprint(i))})
		}
		cs = append(cs, s.Submit(tx))
	}
	var shared []int64
	for i, c := range cs {
		rev, err := c.Wait(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if i%3 == 0 {
			shared = append(shared, rev)
		}
	}
	if !sort.SliceIsSorted(shared, func(i, j int) bool { return shared[i] < shared[j] }) {
		t.Fatalf("overlapping transactions committed out of order: %v", shared)
	}
	if m := load(t, s); m["shared"] != fmt.Sprint((n-1)/3*3) || len(m) != n+1 {
		t.Fatalf("shared = %q, %d keys", m["shared"], len(m))
	}
}

func TestEtcdPrefixesAreIsolated(t *testing.T) {
	base := "/iso" + t.TempDir()
	a, b := openEtcdAt(t, base+"/a/"), openEtcdAt(t, base+"/b/")
	defer a.Close()
	defer b.Close()
	commit(t, a, put("k", "a"))
	commit(t, b, put("k", "b"))
	if m := load(t, a); len(m) != 1 || m["k"] != "a" {
		t.Fatalf("a sees %v", m)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ch, err := a.Watch(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	commit(t, a, put("k2", "a"))
	for ev := range ch {
		for _, kv := range ev.Puts {
			if string(kv.Value) == "b" {
				t.Fatalf("a's watch saw b's key")
			}
		}
		if len(ev.Puts) == 1 && ev.Puts[0].Key == "k2" {
			return
		}
	}
	t.Fatal("watch ended early")
}

// TestFollowRelistsAfterCompaction: a consumer that stops, falls behind a
// compaction, and resumes from its old revision re-lists and ends with
// exactly the store's key space, then keeps following.
func TestFollowRelistsAfterCompaction(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			s := be.open(t, t.TempDir())
			defer s.Close()
			view := map[string]string{}
			var mu sync.Mutex
			resets := 0
			apply := func(ev Event) error {
				mu.Lock()
				defer mu.Unlock()
				for _, kv := range ev.Puts {
					view[kv.Key] = string(kv.Value)
				}
				for _, k := range ev.Deletes {
					delete(view, k)
				}
				return nil
			}
			reset := func(snap Snapshot) error {
				mu.Lock()
				defer mu.Unlock()
				resets++
				clear(view)
				for _, kv := range snap.KVs {
					view[kv.Key] = string(kv.Value)
				}
				return nil
			}
			for i := range 20 {
				commit(t, s, put(fmt.Sprintf("k%d", i), "0"))
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- Follow(ctx, s, 0, apply, reset) }()
			waitView := func(want map[string]string) {
				t.Helper()
				deadline := time.Now().Add(10 * time.Second)
				for {
					mu.Lock()
					same := fmt.Sprint(view) == fmt.Sprint(want)
					mu.Unlock()
					if same {
						return
					}
					if time.Now().After(deadline) {
						mu.Lock()
						defer mu.Unlock()
						t.Fatalf("view %v\nwant %v", view, want)
					}
					time.Sleep(5 * time.Millisecond)
				}
			}
			waitView(load(t, s))
			cancel()
			<-done
			behind := s.Rev()
			// While the consumer is away: puts, deletes, and a compaction.
			for i := range 200 {
				tx := put(fmt.Sprintf("k%d", i%30), fmt.Sprint(i))
				if i%7 == 0 {
					tx.Deletes = []string{fmt.Sprintf("k%d", (i+3)%30)}
				}
				commit(t, s, tx)
			}
			be.trim(t, s)
			ctx, cancel = context.WithCancel(context.Background())
			defer cancel()
			go func() { done <- Follow(ctx, s, behind, apply, reset) }()
			waitView(load(t, s))
			commit(t, s, Txn{Puts: []KV{{Key: "after", Value: []byte("1")}}, Deletes: []string{"k1"}})
			waitView(load(t, s))
			if resets != 1 {
				t.Errorf("%d re-lists, want 1", resets)
			}
		})
	}
}

// BenchmarkEtcdCommit: 64 callers commit small guarded transactions on
// their own keys through one client (the store pipelines them), against
// the package's 3-member cluster (fsync on). It is the ceiling for
// replicated writes on this machine.
func BenchmarkEtcdCommit(b *testing.B) {
	s := openEtcdAt(b, fmt.Sprintf("/bench-%d/", time.Now().UnixNano()))
	defer s.Close()
	var next sync.Mutex
	i := 0
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		next.Lock()
		me := i
		i++
		next.Unlock()
		k := 0
		for pb.Next() {
			key := fmt.Sprintf("k%d/%d", me, k%16)
			tx := Txn{Guards: []Guard{{Key: key, NotAfter: 1 << 40}, {Key: "shared", NotAfter: 1 << 40}},
				Puts: []KV{{Key: key, Value: make([]byte, 600)}}}
			if _, err := s.Submit(tx).Wait(context.Background()); err != nil {
				b.Error(err)
				return
			}
			k++
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "txn/s")
}

// TestEtcdTLS: a cluster that requires client certificates is used with
// --etcd-cert/--etcd-key/--etcd-ca, and refuses a client without them.
func TestEtcdTLS(t *testing.T) {
	c := etcdtest.Start(t, 1, etcdtest.Options{TLS: true, NoFsync: true})
	ctx := context.Background()
	if !strings.HasPrefix(c.Endpoints()[0], "https://") {
		t.Fatalf("endpoint %s", c.Endpoints()[0])
	}
	if s, err := OpenEtcd(ctx, EtcdOptions{Endpoints: c.Endpoints(), CAFile: c.TLS.CA, DialTimeout: time.Second, RequestTimeout: time.Second}); err == nil {
		s.Close()
		t.Fatal("connected without a client certificate")
	}
	s, err := OpenEtcd(ctx, EtcdOptions{Endpoints: c.Endpoints(), CertFile: c.TLS.ClientCert, KeyFile: c.TLS.ClientKey, CAFile: c.TLS.CA})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	commit(t, s, put("k", "v"))
	if m := load(t, s); m["k"] != "v" {
		t.Fatalf("load %v", m)
	}
}

// TestEtcdTxnLimit: a transaction over etcd's --max-txn-ops is refused as
// ErrRejected (not as an unknown outcome), naming the limit to raise.
func TestEtcdTxnLimit(t *testing.T) {
	s := openEtcdAt(t, fmt.Sprintf("/limit-%d/", time.Now().UnixNano()))
	defer s.Close()
	var tx Txn
	for i := range 200 {
		tx.Puts = append(tx.Puts, KV{Key: fmt.Sprintf("k%d", i), Value: []byte("v")})
	}
	_, err := s.Submit(tx).Wait(context.Background())
	if !errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), "--max-txn-ops") || !strings.Contains(err.Error(), "200 operations") {
		t.Fatalf("200 puts in one transaction: %v", err)
	}
	if m := load(t, s); len(m) != 0 {
		t.Fatalf("a refused transaction wrote %d keys", len(m))
	}
}
