package control_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aliasnet/aliasnet/internal/control"
	"github.com/aliasnet/aliasnet/internal/model"
	"github.com/aliasnet/aliasnet/internal/store"
	"github.com/aliasnet/aliasnet/internal/store/etcdtest"
)

// replicas starts n Services on one etcd prefix of a 3-member cluster.
func replicas(t *testing.T, n int) ([]*control.Service, *etcdtest.Cluster) {
	t.Helper()
	c := etcdtest.Start(t, 3, etcdtest.Options{NoFsync: true})
	prefix := "/replicas" + t.TempDir() + "/"
	var out []*control.Service
	for range n {
		st, err := store.OpenEtcd(context.Background(), store.EtcdOptions{Endpoints: c.Endpoints(), Prefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		svc, err := control.New(context.Background(), st, control.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if !svc.Replicated() {
			t.Fatal("etcd store did not start replica mode")
		}
		t.Cleanup(func() { svc.Close(); st.Close() })
		out = append(out, svc)
	}
	return out, c
}

const zone, region = "us-central1-a", "us-central1"

func setupSubnet(t testing.TB, svc *control.Service, network, subnet, cidr string, instances int) {
	t.Helper()
	do(t, svc, func(tx *model.Txn) error {
		if tx.State().Network("p", network) == nil {
			if _, err := tx.CreateNetwork(model.Network{Project: "p", Name: network}); err != nil {
				return err
			}
		}
		_, err := tx.CreateSubnet(model.Subnet{Project: "p", Region: region, Name: subnet, Network: network, Range: netip.MustParsePrefix(cidr)})
		return err
	})
	for i := range instances {
		do(t, svc, func(tx *model.Txn) error {
			_, _, err := tx.CreateInstance(model.CreateInstanceReq{
				Instance: model.Instance{Project: "p", Zone: zone, Name: fmt.Sprintf("%s-vm%d", subnet, i)},
				NICs:     []model.NICSpec{{Subnet: subnet}}})
			return err
		})
	}
}

// setAlias gives an instance's nic0 the alias list specs, reading the
// fingerprint inside the decision (so a retry uses the current one).
func setAlias(svc *control.Service, name, requestID string, specs []model.AliasSpec) (*control.Operation, error) {
	return svc.Do(context.Background(), control.Op{Project: "p", Scope: "zones/" + zone, Type: "updateNetworkInterface", RequestID: requestID},
		func(tx *model.Txn) (uint64, any, error) {
			in := tx.State().Instance("p", zone, name)
			if in == nil {
				return 0, nil, fmt.Errorf("no instance %s", name)
			}
			nic := tx.State().NICs(in)[0]
			ifc, err := tx.UpdateAliases("p", zone, name, "nic0", nic.Fingerprint, specs)
			if err != nil {
				return in.ID, nil, err
			}
			var got []string
			for _, a := range ifc.Aliases {
				got = append(got, a.Range.String())
			}
			return in.ID, got, nil
		})
}

// holdings lists every allocation of a network on one replica, and fails
// on overlaps.
func holdings(t *testing.T, svc *control.Service, network string) map[netip.Prefix]string {
	t.Helper()
	out := map[netip.Prefix]string{}
	svc.Read(func(st *model.State) {
		for _, ifc := range st.Interfaces("p") {
			if ifc.Network != network {
				continue
			}
			for _, p := range append([]netip.Prefix{netip.PrefixFrom(ifc.IP, 32)}, aliasRanges(ifc)...) {
				for q, who := range out {
					if q.Overlaps(p) {
						t.Errorf("%s of %s overlaps %s of %s", p, ifc.ID, q, who)
					}
				}
				out[p] = ifc.ID
			}
		}
	})
	return out
}

func aliasRanges(ifc *model.Interface) []netip.Prefix {
	var out []netip.Prefix
	for _, a := range ifc.Aliases {
		out = append(out, a.Range)
	}
	return out
}

func syncAll(t *testing.T, svcs []*control.Service) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, s := range svcs {
		if err := s.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// TestReplicasNeverShareAnAddress: 64 callers spread over 3 replicas
// allocate (netmask form and explicit) in one small subnet. No address is
// ever held twice, every acknowledged allocation is on every replica, and
// the replicas end identical.
func TestReplicasNeverShareAnAddress(t *testing.T) {
	svcs, _ := replicas(t, 3)
	const callers = 64
	setupSubnet(t, svcs[0], "vpc", "s", "10.0.0.0/22", callers)
	syncAll(t, svcs)
	type ack struct {
		name    string
		aliases []string
	}
	last := make([]ack, callers)
	var allocs, refused atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(4 * time.Second)
	for c := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(c), 1))
			svc := svcs[c%len(svcs)]
			name := fmt.Sprintf("s-vm%d", c)
			for i := 0; time.Now().Before(deadline); i++ {
				var specs []model.AliasSpec
				switch i % 3 {
				case 0:
					specs = []model.AliasSpec{{Bits: 32}}
				case 1:
					specs = []model.AliasSpec{{Bits: 30}}
				default: // explicit: likely to collide with someone
					a := netip.AddrFrom4([4]byte{10, 0, byte(rnd.IntN(4)), byte(rnd.IntN(256))})
					specs = []model.AliasSpec{{Prefix: netip.PrefixFrom(a, 32)}}
				}
				op, err := setAlias(svc, name, "", specs)
				if err != nil {
					if model.CodeOf(err) == model.Invalid { // reserved address picked
						continue
					}
					t.Error(err)
					return
				}
				if op.Error != nil {
					refused.Add(1)
					continue
				}
				var got []string
				if err := jsonUnmarshal(op.Result, &got); err != nil {
					t.Error(err)
					return
				}
				allocs.Add(1)
				last[c] = ack{name, got}
			}
		}()
	}
	wg.Wait()
	syncAll(t, svcs)
	ref := holdings(t, svcs[0], "vpc")
	for i, s := range svcs {
		h := holdings(t, s, "vpc")
		if fmt.Sprint(h) != fmt.Sprint(ref) {
			t.Errorf("replica %d differs from replica 0", i)
		}
		s.Read(func(st *model.State) {
			for _, a := range last {
				if a.name == "" {
					continue
				}
				nic := st.NICs(st.Instance("p", zone, a.name))[0]
				if fmt.Sprint(a.aliases) != fmt.Sprint(rangesStr(nic)) {
					t.Errorf("replica %d: %s has %v, last acknowledged %v", i, a.name, rangesStr(nic), a.aliases)
				}
			}
		})
	}
	var stats control.ReplicaStats
	for _, s := range svcs {
		st := s.ReplicaStats()
		stats.Commits += st.Commits
		stats.Requests += st.Requests
		stats.Conflicts += st.Conflicts
		stats.Retries += st.Retries
	}
	t.Logf("%d allocations, %d refused (in use); %d requests in %d commits, %d conflicts, %d retries",
		allocs.Load(), refused.Load(), stats.Requests, stats.Commits, stats.Conflicts, stats.Retries)
	if allocs.Load() < 100 {
		t.Errorf("only %d allocations", allocs.Load())
	}
}

func rangesStr(ifc *model.Interface) []string {
	var out []string
	for _, a := range ifc.Aliases {
		out = append(out, a.Range.String())
	}
	return out
}

// TestRequestIDAcrossReplicas: the same requestId sent to every replica
// at once commits once; every replica answers with the same operation.
func TestRequestIDAcrossReplicas(t *testing.T) {
	svcs, _ := replicas(t, 3)
	setupSubnet(t, svcs[0], "vpc", "s", "10.0.0.0/24", 1)
	syncAll(t, svcs)
	for round := range 20 {
		rid := fmt.Sprintf("req-%d", round)
		ops := make([]*control.Operation, len(svcs)*2)
		var wg sync.WaitGroup
		for i := range ops {
			wg.Add(1)
			go func() {
				defer wg.Done()
				op, err := setAlias(svcs[i%len(svcs)], "s-vm0", rid, []model.AliasSpec{{Bits: 31 - round%2}})
				if err != nil {
					t.Error(err)
				}
				ops[i] = op
			}()
		}
		wg.Wait()
		for _, op := range ops[1:] {
			if op == nil || ops[0] == nil || op.Name != ops[0].Name || string(op.Result) != string(ops[0].Result) {
				t.Fatalf("round %d: answers differ: %+v vs %+v", round, op, ops[0])
			}
		}
	}
	syncAll(t, svcs)
	for _, s := range svcs {
		if n := len(s.Operations("p", "zones/"+zone)); n != 20 {
			t.Errorf("%d operations recorded, want 20", n)
		}
	}
}

// TestRemoteChangesReachLongPolls: a change committed on one replica
// wakes Changed() waiters on another and is readable there.
func TestRemoteChangesReachLongPolls(t *testing.T) {
	svcs, _ := replicas(t, 2)
	ch, _ := svcs[1].Changed()
	setupSubnet(t, svcs[0], "vpc", "s", "10.0.0.0/24", 1)
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("no change reached replica 1")
	}
	syncAll(t, svcs)
	svcs[1].Read(func(st *model.State) {
		if st.Instance("p", zone, "s-vm0") == nil {
			t.Fatal("instance missing on replica 1")
		}
	})
	// A refusal is answered from a fresh state: replica 1 deletes what
	// replica 0 created a moment ago, without waiting for its watch.
	setupSubnet(t, svcs[0], "vpc", "s2", "10.1.0.0/24", 1)
	do(t, svcs[1], func(tx *model.Txn) error { return tx.DeleteInstance("p", zone, "s2-vm0") })
}

// BenchmarkReplicaAlloc: 64 callers over 3 in-process replicas (no HTTP)
// move their own instance's /32 between two addresses; instances spread
// over 64 networks or all in one. etcd runs in the same process (fsync
// on), so this is the replication layer's own cost.
func BenchmarkReplicaAlloc(b *testing.B) {
	for _, nets := range []int{1, 64} {
		b.Run(fmt.Sprintf("networks=%d", nets), func(b *testing.B) {
			c := etcdtest.Start(b, 3, etcdtest.Options{})
			prefix := fmt.Sprintf("/bench-%d/", time.Now().UnixNano())
			var svcs []*control.Service
			for range 3 {
				st, err := store.OpenEtcd(context.Background(), store.EtcdOptions{Endpoints: c.Endpoints(), Prefix: prefix})
				if err != nil {
					b.Fatal(err)
				}
				svc, err := control.New(context.Background(), st, control.Options{})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { svc.Close(); st.Close() })
				svcs = append(svcs, svc)
			}
			for n := range nets {
				net := fmt.Sprintf("n%d", n)
				do(b, svcs[0], func(tx *model.Txn) error {
					if _, err := tx.CreateNetwork(model.Network{Project: "p", Name: net}); err != nil {
						return err
					}
					_, err := tx.CreateSubnet(model.Subnet{Project: "p", Region: region, Name: "s" + net, Network: net,
						Range: netip.MustParsePrefix(fmt.Sprintf("10.%d.0.0/16", n))})
					return err
				})
			}
			for i := range 64 {
				do(b, svcs[0], func(tx *model.Txn) error {
					_, _, err := tx.CreateInstance(model.CreateInstanceReq{
						Instance: model.Instance{Project: "p", Zone: zone, Name: fmt.Sprintf("vm%d", i)},
						NICs:     []model.NICSpec{{Subnet: fmt.Sprintf("sn%d", i%nets)}}})
					return err
				})
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			for _, s := range svcs {
				if err := s.Sync(ctx); err != nil {
					b.Fatal(err)
				}
			}
			var next atomic.Int64
			b.SetParallelism(32)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				me := int(next.Add(1) - 1)
				svc := svcs[me%3]
				name := fmt.Sprintf("vm%d", me%64)
				n := (me % 64) % nets
				k := 0
				for pb.Next() {
					a := netip.AddrFrom4([4]byte{10, byte(n), 1, byte(2*(me%64) + k%2)})
					if _, err := setAlias(svc, name, "", []model.AliasSpec{{Prefix: netip.PrefixFrom(a, 32)}}); err != nil {
						b.Error(err)
						return
					}
					k++
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "allocs/s")
			var st control.ReplicaStats
			for _, s := range svcs {
				x := s.ReplicaStats()
				st.Commits += x.Commits
				st.Conflicts += x.Conflicts
			}
			b.ReportMetric(float64(b.N)/float64(st.Commits), "allocs/txn")
			b.ReportMetric(float64(st.Conflicts)/float64(st.Commits+st.Conflicts), "conflicts/txn")
		})
	}
}

// TestReplicasMixedLevels: project-level changes (instance templates),
// network-level ones (subnets) and interface changes run together on three
// replicas; all commit, and the replicas end identical.
func TestReplicasMixedLevels(t *testing.T) {
	svcs, _ := replicas(t, 3)
	setupSubnet(t, svcs[0], "vpc", "s", "10.0.0.0/20", 12)
	syncAll(t, svcs)
	var wg sync.WaitGroup
	for g := range 12 {
		wg.Go(func() {
			svc := svcs[g%3]
			for k := range 15 {
				var err error
				switch g % 3 {
				case 0: // project level
					name := fmt.Sprintf("tpl-%d-%d", g, k)
					_, err = svc.Do(context.Background(), control.Op{Project: "p", Scope: "global", Type: "insert"},
						func(tx *model.Txn) (uint64, any, error) {
							_, err := tx.CreateTemplate(model.InstanceTemplate{Project: "p", Name: name, NICs: []model.NICSpec{{Subnet: "s"}}})
							return 0, nil, err
						})
				case 1: // network level: a subnet per step
					name := fmt.Sprintf("sub-%d-%d", g, k)
					cidr := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(16 + g), byte(k), 0}), 24)
					_, err = svc.Do(context.Background(), control.Op{Project: "p", Scope: "regions/" + region, Type: "insert"},
						func(tx *model.Txn) (uint64, any, error) {
							_, err := tx.CreateSubnet(model.Subnet{Project: "p", Region: region, Name: name, Network: "vpc", Range: cidr})
							return 0, nil, err
						})
				default: // interfaces
					_, err = setAlias(svc, fmt.Sprintf("s-vm%d", g), "", []model.AliasSpec{{Bits: 32 - k%3}})
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	syncAll(t, svcs)
	dump := func(s *control.Service) string {
		var b strings.Builder
		s.Read(func(st *model.State) {
			for _, it := range st.Templates("p") {
				fmt.Fprintln(&b, it.Name)
			}
			for _, sn := range st.Subnets("p", "") {
				fmt.Fprintln(&b, sn.Name, sn.Range)
			}
			for _, ifc := range st.Interfaces("p") {
				fmt.Fprintln(&b, ifc.ID, ifc.IP, rangesStr(ifc))
			}
		})
		return b.String()
	}
	want := dump(svcs[0])
	if n := strings.Count(want, "tpl-"); n != 4*15 {
		t.Fatalf("%d templates, want 60", n)
	}
	for i, s := range svcs[1:] {
		if got := dump(s); got != want {
			t.Errorf("replica %d differs:\n%s\nwant\n%s", i+1, got, want)
		}
	}
	holdings(t, svcs[0], "vpc")
}

// flaky loses the answer of some commits: every 4th transaction commits
// but its caller hears a timeout; every 7th is never sent and also times
// out; every 5th times out at once and reaches etcd only 30 ms later (a
// proposal still in flight when its client gave up, which may commit
// after the caller has caught up and decided again). The replica must
// resolve all three, never applying a call twice nor losing one.
type flaky struct {
	*store.Etcd
	n atomic.Int64
}

var errTimeout = fmt.Errorf("flaky: context deadline exceeded")

func (f *flaky) Submit(t store.Txn) *store.Commit {
	k := f.n.Add(1)
	if k%7 == 0 {
		c, finish := store.NewCommit()
		go func() { time.Sleep(2 * time.Millisecond); finish(0, errTimeout) }()
		return c
	}
	if k%5 == 0 {
		c, finish := store.NewCommit()
		finish(0, errTimeout)
		go func() { time.Sleep(30 * time.Millisecond); f.Etcd.Submit(t) }()
		return c
	}
	inner := f.Etcd.Submit(t)
	if k%4 != 0 {
		return inner
	}
	c, finish := store.NewCommit()
	go func() {
		inner.Wait(context.Background())
		finish(0, errTimeout)
	}()
	return c
}

func TestReplicasResolveUnknownOutcomes(t *testing.T) {
	c := etcdtest.Start(t, 3, etcdtest.Options{NoFsync: true})
	prefix := "/flaky" + t.TempDir() + "/"
	var svcs []*control.Service
	var stores []*flaky
	for range 3 {
		st, err := store.OpenEtcd(context.Background(), store.EtcdOptions{Endpoints: c.Endpoints(), Prefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		f := &flaky{Etcd: st}
		svc, err := control.New(context.Background(), f, control.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { svc.Close(); st.Close() })
		svcs, stores = append(svcs, svc), append(stores, f)
	}
	setupSubnet(t, svcs[0], "vpc", "s", "10.0.0.0/22", 24)
	syncAll(t, svcs)
	var wg sync.WaitGroup
	var mu sync.Mutex
	names := map[string]bool{}
	last := make([][]string, 24)
	for g := range 24 {
		wg.Go(func() {
			for k := range 12 {
				op, err := setAlias(svcs[g%3], fmt.Sprintf("s-vm%d", g), "", []model.AliasSpec{{Bits: 32 - k%2}})
				if err != nil || op.Error != nil {
					t.Errorf("%v %+v", err, op)
					return
				}
				var got []string
				jsonUnmarshal(op.Result, &got)
				mu.Lock()
				if names[op.Name] {
					t.Errorf("operation %s answered twice", op.Name)
				}
				names[op.Name] = true
				last[g] = got
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	syncAll(t, svcs)
	var unknown int64
	for _, s := range svcs {
		unknown += s.ReplicaStats().Unknown
		if n := len(s.Operations("p", "zones/"+zone)); n != len(names) {
			t.Errorf("%d operations recorded, %d calls answered: a call was applied twice or lost", n, len(names))
		}
		s.Read(func(st *model.State) {
			for g, want := range last {
				nic := st.NICs(st.Instance("p", zone, fmt.Sprintf("s-vm%d", g)))[0]
				if fmt.Sprint(rangesStr(nic)) != fmt.Sprint(want) {
					t.Errorf("s-vm%d holds %v, last answer %v", g, rangesStr(nic), want)
				}
			}
		})
		holdings(t, s, "vpc")
	}
	if unknown == 0 {
		t.Fatal("no unknown outcome was exercised")
	}
	t.Logf("%d calls, %d unknown outcomes resolved", len(names), unknown)
}

// TestReplicasSerialiseOneInterface: callers on every replica rewrite the
// same interface's alias at once. Each decision records the alias it
// replaced; the committed decisions must form one chain (each replaced
// exactly what another one set, and only the first replaced the initial
// value): no update is lost by two replicas deciding on the same state.
func TestReplicasSerialiseOneInterface(t *testing.T) {
	svcs, _ := replicas(t, 3)
	setupSubnet(t, svcs[0], "vpc", "s", "10.0.0.0/16", 1)
	syncAll(t, svcs)
	type step struct{ before, after string }
	var mu sync.Mutex
	var steps []step
	var wg sync.WaitGroup
	for g := range 12 {
		wg.Go(func() {
			svc := svcs[g%3]
			for k := range 10 {
				want := fmt.Sprintf("10.0.%d.%d/32", 10+g, k+1)
				op, err := svc.Do(context.Background(), control.Op{Project: "p", Scope: "zones/" + zone, Type: "updateNetworkInterface"},
					func(tx *model.Txn) (uint64, any, error) {
						in := tx.State().Instance("p", zone, "s-vm0")
						nic := tx.State().NICs(in)[0]
						before := fmt.Sprint(aliasRanges(nic))
						_, err := tx.UpdateAliases("p", zone, "s-vm0", "nic0", nic.Fingerprint, []model.AliasSpec{{Prefix: netip.MustParsePrefix(want)}})
						return in.ID, []string{before, "[" + want + "]"}, err
					})
				if err != nil || op.Error != nil {
					t.Errorf("%v %+v", err, op)
					return
				}
				var got []string
				jsonUnmarshal(op.Result, &got)
				mu.Lock()
				steps = append(steps, step{got[0], got[1]})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	syncAll(t, svcs)
	replaced := map[string]int{}
	for _, s := range steps {
		replaced[s.before]++
	}
	var final string
	svcs[0].Read(func(st *model.State) { final = fmt.Sprint(aliasRanges(st.NICs(st.Instance("p", zone, "s-vm0"))[0])) })
	if replaced["[]"] != 1 {
		t.Errorf("the initial (empty) alias list was replaced %d times", replaced["[]"])
	}
	for _, s := range steps {
		n := replaced[s.after]
		if s.after == final {
			n++ // the last one is replaced by nobody
		}
		if n != 1 {
			t.Errorf("alias %s (set once) was replaced %d times", s.after, replaced[s.after])
		}
	}
	for _, s := range svcs[1:] {
		s.Read(func(st *model.State) {
			if got := fmt.Sprint(aliasRanges(st.NICs(st.Instance("p", zone, "s-vm0"))[0])); got != final {
				t.Errorf("replicas disagree: %s vs %s", got, final)
			}
		})
	}
}
