package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aliyun/alibaba-cloud-sdk-go/sdk/requests"
	"github.com/aliyun/alibaba-cloud-sdk-go/services/ecs"
	compute "google.golang.org/api/compute/v1"

	"github.com/aliasnet/aliasnet/internal/store"
	"github.com/aliasnet/aliasnet/internal/store/etcdtest"
)

// HA: a real 3-member etcd cluster runs inside the test process
// (go.etcd.io/etcd/server/v3/embed, loopback ports, temp dirs) and three
// real `aliasnet serve --store etcd` replicas run against it.

type haSetup struct {
	etcd     *etcdtest.Cluster
	prefix   string
	replicas []*Server
}

func startHA(t testing.TB, n int, o etcdtest.Options, extra ...string) *haSetup {
	t.Helper()
	c := etcdtest.Start(t, 3, o)
	h := &haSetup{etcd: c, prefix: fmt.Sprintf("/ha-%d/", time.Now().UnixNano())}
	for range n {
		h.replicas = append(h.replicas, h.start(t, extra...))
	}
	return h
}

func (h *haSetup) args(extra ...string) []string {
	return append([]string{"--store", "etcd", "--etcd-endpoints", strings.Join(h.etcd.Endpoints(), ","),
		"--etcd-prefix", h.prefix}, extra...)
}

func (h *haSetup) start(t testing.TB, extra ...string) *Server {
	return StartServer(t, "", h.args(extra...)...)
}

// store opens the installation's etcd keys directly (for compaction).
func (h *haSetup) store(t testing.TB) *store.Etcd {
	t.Helper()
	st, err := store.OpenEtcd(context.Background(), store.EtcdOptions{Endpoints: h.etcd.Endpoints(), Prefix: h.prefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

type replicaStatus struct {
	Replicated bool  `json:"replicated"`
	Rev        int64 `json:"rev"`
	Stats      struct {
		Commits, Requests, Conflicts, Unknown, Retries, Syncs, Remote, Reloads, Applied int64
		CommitMicros, ScheduleMicros, CommitOps, CommitBytes                            int64
	} `json:"stats"`
	Routing *struct {
		Committer   string
		IsCommitter bool
		Relayed     int64
		Fallbacks   int64
		WaitMicros  int64
	} `json:"routing"`
}

// haModes: replicas relay mutations to the elected committer (the
// default), or every replica commits its own clients' mutations (so
// replicas race each other for every domain).
var haModes = []struct {
	name string
	args []string
}{{"relay", nil}, {"no-relay", []string{"--relay-writes=false"}}}

// committerOf waits until every replica of rs names the same committer
// and returns its index in rs.
func committerOf(t testing.TB, rs []*Server) int {
	t.Helper()
	idx := -1
	haEventually(t, "the replicas agree on a committer", func() error {
		idx = -1
		var named string
		for i, r := range rs {
			st := status(t, r)
			if st.Routing == nil || st.Routing.Committer == "" {
				return fmt.Errorf("replica %d knows no committer", i)
			}
			if named != "" && st.Routing.Committer != named {
				return fmt.Errorf("replicas name %s and %s", named, st.Routing.Committer)
			}
			named = st.Routing.Committer
			if st.Routing.IsCommitter {
				idx = i
			}
		}
		if idx < 0 {
			return fmt.Errorf("committer %s is none of these replicas", named)
		}
		return nil
	})
	return idx
}

func status(t testing.TB, s *Server) replicaStatus {
	t.Helper()
	resp, err := http.Get(s.URL() + "/aliasnet/v1/replica")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st replicaStatus
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

// haEventually retries f until it returns nil or 30s pass.
func haEventually(t testing.TB, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// explain describes where an instance is (for failure messages).
func (h *haSetup) explain(t testing.TB, name string) string {
	var b strings.Builder
	for i, r := range h.replicas {
		if r.cmd.ProcessState != nil {
			continue
		}
		_, err := r.Compute(t).Instances.Get(proj, zone, name).Do()
		fmt.Fprintf(&b, "\n replica %d: get %s: %v; status %+v", i, name, err, status(t, r))
	}
	st := h.store(t)
	snap, err := st.Load(context.Background())
	for _, kv := range snap.KVs {
		if strings.HasSuffix(kv.Key, "/instances/"+name) {
			fmt.Fprintf(&b, "\n etcd: %s = %s", kv.Key, kv.Value)
		}
	}
	fmt.Fprintf(&b, "\n etcd load: %d keys, rev %d, err %v", len(snap.KVs), snap.Rev, err)
	return b.String()
}

// haSeed is seed 000's subnet with room for thousands of /28 aliases.
func haSeed(t *testing.T, c *compute.Service) {
	t.Helper()
	must(t)(c.Networks.Insert(proj, &compute.Network{Name: "vpc", ForceSendFields: []string{"AutoCreateSubnetworks"}}).Do())
	must(t)(c.Subnetworks.Insert(proj, region, &compute.Subnetwork{
		Name: "subnet-a", Network: "projects/" + proj + "/global/networks/vpc", IpCidrRange: "10.128.0.0/16",
		SecondaryIpRanges: []*compute.SubnetworkSecondaryRange{{RangeName: "container-range", IpCidrRange: "172.16.0.0/12"}},
	}).Do())
}

// addresses lists every address held in the instances of one replica,
// failing on any overlap.
func addresses(c *compute.Service) (map[string][]string, error) {
	var items []*compute.Instance
	if err := c.Instances.List(proj, zone).MaxResults(500).Pages(context.Background(), func(l *compute.InstanceList) error {
		items = append(items, l.Items...)
		return nil
	}); err != nil {
		return nil, err
	}
	out := map[string][]string{}
	var all []netip.Prefix
	var who []string
	for _, in := range items {
		for _, ni := range in.NetworkInterfaces {
			ps := []string{ni.NetworkIP + "/32"}
			for _, a := range ni.AliasIpRanges {
				ps = append(ps, a.IpCidrRange)
			}
			for _, p := range ps {
				pp := netip.MustParsePrefix(p)
				for i, q := range all {
					if q.Overlaps(pp) {
						return nil, fmt.Errorf("DUPLICATE: %s of %s overlaps %s of %s", pp, in.Name, q, who[i])
					}
				}
				all = append(all, pp)
				who = append(who, in.Name)
			}
			out[in.Name] = ps[1:]
		}
	}
	return out, nil
}

// TestHAConcurrentAllocations: 64 clients (the official GCE Go client)
// spread over 3 replicas allocate alias ranges, netmask form and
// explicit, in one subnet; then 32 clients (the official Alibaba SDK)
// assign ENI secondary IPs in one vSwitch. No address is ever handed out
// twice, and every acknowledged allocation is on every replica.
func TestHAConcurrentAllocations(t *testing.T) {
	for _, m := range haModes {
		t.Run(m.name, func(t *testing.T) { testHAConcurrentAllocations(t, m.args) })
	}
}

func testHAConcurrentAllocations(t *testing.T, mode []string) {
	h := startHA(t, 3, etcdtest.Options{NoFsync: true}, append(aliArgs(), mode...)...)
	cs := make([]*compute.Service, len(h.replicas))
	for i, r := range h.replicas {
		cs[i] = r.Compute(t)
	}
	must(t)(cs[0].Networks.Insert(proj, &compute.Network{Name: "vpc", ForceSendFields: []string{"AutoCreateSubnetworks"}}).Do())
	must(t)(cs[1].Subnetworks.Insert(proj, region, &compute.Subnetwork{Name: "subnet-a", Network: "global/networks/vpc", IpCidrRange: "10.128.0.0/22"}).Do())
	const clients = 64
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			// Replica 2 may not have seen the subnet yet: it confirms
			// against etcd before it would answer "not found".
			if err := opErr(cs[i%3].Instances.Insert(proj, zone, &compute.Instance{Name: fmt.Sprintf("vm%d", i), NetworkInterfaces: nic()}).Do()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	type ack struct{ aliases []string }
	last := make([]*ack, clients)
	var allocs, inUse atomic.Int64
	deadline := time.Now().Add(6 * time.Second)
	for i := range clients {
		wg.Go(func() {
			c := cs[i%3]
			rnd := rand.New(rand.NewPCG(uint64(i), 7))
			name := fmt.Sprintf("vm%d", i)
			for k := 0; time.Now().Before(deadline); k++ {
				in, err := c.Instances.Get(proj, zone, name).Do()
				if err != nil {
					t.Error(err)
					return
				}
				var r string
				switch k % 3 {
				case 0:
					r = "/32"
				case 1:
					r = "/30"
				default: // explicit, in the same small subnet as everyone else
					r = netip.AddrFrom4([4]byte{10, 128, byte(rnd.IntN(4)), byte(4 + rnd.IntN(248))}).String() + "/32"
				}
				op, err := c.Instances.UpdateNetworkInterface(proj, zone, name, "nic0", &compute.NetworkInterface{
					Fingerprint: in.NetworkInterfaces[0].Fingerprint, AliasIpRanges: []*compute.AliasIpRange{{IpCidrRange: r}},
				}).Do()
				if err != nil {
					t.Errorf("%s: %v", name, err)
					return
				}
				if op.Error != nil {
					if op.Error.Errors[0].Code != "IP_IN_USE_BY_ANOTHER_RESOURCE" {
						t.Errorf("%s: %s", name, op.Error.Errors[0].Message)
						return
					}
					inUse.Add(1)
					continue
				}
				after, err := c.Instances.Get(proj, zone, name).Do()
				if err != nil {
					t.Error(err)
					return
				}
				var got []string
				for _, a := range after.NetworkInterfaces[0].AliasIpRanges {
					got = append(got, a.IpCidrRange)
				}
				allocs.Add(1)
				last[i] = &ack{got}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	for ri, c := range cs {
		haEventually(t, fmt.Sprintf("replica %d converges", ri), func() error {
			held, err := addresses(c)
			if err != nil {
				if strings.HasPrefix(err.Error(), "DUPLICATE") {
					t.Fatal(err)
				}
				return err
			}
			for i, a := range last {
				if a == nil {
					continue
				}
				name := fmt.Sprintf("vm%d", i)
				if !slices.Equal(held[name], a.aliases) {
					return fmt.Errorf("%s holds %v, last acknowledged %v", name, held[name], a.aliases)
				}
			}
			return nil
		})
	}
	var conflicts, retries int64
	for _, r := range h.replicas {
		st := status(t, r)
		conflicts += st.Stats.Conflicts
		retries += st.Stats.Retries
	}
	t.Logf("GCE: %d alias allocations acknowledged (+%d refused IP_IN_USE) by 64 clients on 3 replicas; %d conflicts, %d retries inside the servers",
		allocs.Load(), inUse.Load(), conflicts, retries)
	if allocs.Load() < 200 {
		t.Errorf("only %d allocations", allocs.Load())
	}

	// Alibaba: ENI secondary private IPs in one vSwitch.
	alis := make([]*ali, len(h.replicas))
	for i, r := range h.replicas {
		alis[i] = aliClients(t, r, akID, akSecret)
	}
	vpcID := alis[0].createVpc("10.0.0.0/8")
	vsw := alis[1].createVSwitch(vpcID, zoneH, "10.1.0.0/23")
	const workers, rounds, per = 32, 3, 3
	enis := make([]string, workers)
	for w := range workers {
		wg.Go(func() {
			r, err := aliClients(t, h.replicas[w%3], akID, akSecret).createENI(vsw, "")
			if err != nil {
				t.Error(err)
				return
			}
			enis[w] = r.NetworkInterfaceId
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	var mu sync.Mutex
	got := map[string]string{}
	for w := range workers {
		wg.Go(func() {
			a := aliClients(t, h.replicas[w%3], akID, akSecret)
			for k := range rounds {
				var addrs []string
				var err error
				if k == 1 { // explicit: pick addresses someone may hold
					want := fmt.Sprintf("10.1.%d.%d", 1, 10+w)
					addrs, err = a.assign(enis[w], 0, want)
					if err != nil && strings.Contains(err.Error(), "InvalidIp.IpAssigned") || err != nil && strings.Contains(err.Error(), "Duplicated") {
						addrs, err = a.assign(enis[w], per)
					}
				} else {
					addrs, err = a.assign(enis[w], per)
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for _, ad := range addrs {
					if prev, dup := got[ad]; dup {
						t.Errorf("DUPLICATE: %s handed to %s and %s", ad, prev, enis[w])
					}
					got[ad] = enis[w]
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for ri := range h.replicas {
		haEventually(t, fmt.Sprintf("replica %d has every ENI address", ri), func() error {
			for _, eni := range enis {
				r := httpReq(ecs.CreateDescribeNetworkInterfacesRequest())
				r.NetworkInterfaceId = &[]string{eni}
				resp, err := alis[ri].ecs.DescribeNetworkInterfaces(r)
				if err != nil {
					return err
				}
				held := ips(resp.NetworkInterfaceSets.NetworkInterfaceSet[0])[1:]
				var want []string
				for ad, e := range got {
					if e == eni {
						want = append(want, ad)
					}
				}
				if !slices.Equal(sorted(held), sorted(want)) {
					return fmt.Errorf("%s holds %v, acknowledged %v", eni, sorted(held), sorted(want))
				}
			}
			return nil
		})
	}
	t.Logf("Alibaba: %d secondary IPs assigned to %d ENIs over 3 replicas, all distinct, all on every replica", len(got), workers)
}

// TestHAEtcdMemberDown: one etcd member is stopped while clients
// allocate; writes go on, and after it returns nothing is lost.
func TestHAEtcdMemberDown(t *testing.T) {
	h := startHA(t, 3, etcdtest.Options{NoFsync: true})
	c0 := h.replicas[0].Compute(t)
	haSeed(t, c0)
	var (
		mu       sync.Mutex
		acked    = map[string]string{} // instance -> alias
		phase    atomic.Int32          // 0 before, 1 member down, 2 member back
		byPhase  [3]atomic.Int64
		stop     = make(chan struct{})
		wg       sync.WaitGroup
		failures atomic.Int64
	)
	for w := range 24 {
		wg.Go(func() {
			c := h.replicas[w%3].Compute(t)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				name := fmt.Sprintf("w%d-%d", w, i)
				p := phase.Load()
				op, err := c.Instances.Insert(proj, zone, &compute.Instance{Name: name, NetworkInterfaces: nic(sec("/28"))}).RequestId(fmt.Sprintf("00000000-0000-4000-8000-%04d%08d", w, i)).Do()
				if err := opErr(op, err); err != nil {
					failures.Add(1)
					t.Errorf("%s: %v", name, err)
					return
				}
				in, err := c.Instances.Get(proj, zone, name).Do()
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				acked[name] = in.NetworkInterfaces[0].AliasIpRanges[0].IpCidrRange
				mu.Unlock()
				byPhase[p].Add(1)
			}
		})
	}
	waitFor := func(n int64, ph int) {
		deadline := time.Now().Add(30 * time.Second)
		for byPhase[ph].Load() < n && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor(100, 0)
	h.etcd.Stop(1)
	phase.Store(1)
	down := time.Now()
	waitFor(150, 1)
	time.Sleep(2*time.Second - time.Since(down))
	if err := h.etcd.Restart(1); err != nil {
		t.Fatal(err)
	}
	phase.Store(2)
	waitFor(100, 2)
	close(stop)
	wg.Wait()
	if byPhase[1].Load() < 50 {
		t.Fatalf("only %d writes acknowledged while the member was down", byPhase[1].Load())
	}
	for ri, r := range h.replicas {
		c := r.Compute(t)
		haEventually(t, fmt.Sprintf("replica %d has every acknowledged write", ri), func() error {
			held, err := addresses(c)
			if err != nil {
				if strings.HasPrefix(err.Error(), "DUPLICATE") {
					t.Fatal(err)
				}
				return err
			}
			for name, alias := range acked {
				if got := held[name]; len(got) != 1 || got[0] != alias {
					return fmt.Errorf("%s: %v, acknowledged %s%s", name, got, alias, h.explain(t, name))
				}
			}
			if len(held) != len(acked) {
				return fmt.Errorf("%d instances, %d acknowledged", len(held), len(acked))
			}
			return nil
		})
	}
	// The restarted member has everything too: read from it alone.
	only, err := store.OpenEtcd(context.Background(), store.EtcdOptions{Endpoints: h.etcd.Endpoints()[1:2], Prefix: h.prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer only.Close()
	haEventually(t, "restarted member caught up", func() error {
		n := 0
		snap, err := only.Load(context.Background())
		if err != nil {
			return err
		}
		for _, kv := range snap.KVs {
			if strings.Contains(kv.Key, "/instances/") {
				n++
			}
		}
		if n != len(acked) {
			return fmt.Errorf("member 1 holds %d instances, %d acknowledged", n, len(acked))
		}
		return nil
	})
	var unknown, conflicts int64
	for _, r := range h.replicas {
		st := status(t, r)
		unknown += st.Stats.Unknown
		conflicts += st.Stats.Conflicts
	}
	t.Logf("acknowledged writes: %d before, %d while member 1 was down, %d after it returned; %d client-visible failures; "+
		"inside the replicas: %d commits with an unknown outcome resolved, %d lost races retried",
		byPhase[0].Load(), byPhase[1].Load(), byPhase[2].Load(), failures.Load(), unknown, conflicts)
	if failures.Load() > 0 {
		t.Errorf("%d requests failed while a member was down", failures.Load())
	}
}

// TestHAReplicaKilled: replica 0 is SIGKILLed while clients send it
// requests with request ids (GCE requestId, Alibaba ClientToken). Clients
// retry elsewhere with the same id: none gets a second allocation, and no
// half-applied change is visible on the survivors.
func TestHAReplicaKilled(t *testing.T) {
	for _, m := range haModes {
		t.Run(m.name, func(t *testing.T) { testHAReplicaKilled(t, m.args) })
	}
}

// testHAReplicaKilled: half the workers talk to the replica that is
// killed, half to another one. With relaying, the killed replica is the
// committer, so the second half's requests are on their way to it
// through their replica when it dies.
func testHAReplicaKilled(t *testing.T, mode []string) {
	h := startHA(t, 3, etcdtest.Options{NoFsync: true}, append(aliArgs(), mode...)...)
	victim := 0
	if len(mode) == 0 {
		victim = committerOf(t, h.replicas)
	}
	var others []*Server
	for i, r := range h.replicas {
		if i != victim {
			others = append(others, r)
		}
	}
	haSeed(t, h.replicas[victim].Compute(t))
	a0 := aliClients(t, h.replicas[victim], akID, akSecret)
	vsw := a0.createVSwitch(a0.createVpc("10.0.0.0/8"), zoneH, "10.1.0.0/22")
	const workers = 16
	enis := make([]string, workers)
	for w := range enis {
		enis[w] = a0.eni(vsw, "")
	}
	var (
		wg      sync.WaitGroup
		sent    atomic.Int64
		retried atomic.Int64
		mu      sync.Mutex
		tokens  = make([]int, workers) // distinct ClientTokens acknowledged per ENI
		names   []string
	)
	var acks atomic.Int64
	for w := range workers {
		wg.Go(func() {
			first := h.replicas[victim]
			if w%2 == 1 {
				first = others[0]
			}
			for i := 0; i < 40; i++ {
				name := fmt.Sprintf("k%d-%d", w, i)
				rid := fmt.Sprintf("00000000-0000-4000-8000-%04d%08d", w, i)
				token := fmt.Sprintf("tok-%d-%d", w, i)
				// GCE insert with requestId, then an Alibaba assign with a
				// ClientToken; both first on replica 0, elsewhere after it
				// dies.
				target := first
				for try := 0; ; try++ {
					sent.Add(1)
					c := target.Compute(t)
					op, err := c.Instances.Insert(proj, zone, &compute.Instance{Name: name, NetworkInterfaces: nic(sec("/28"))}).RequestId(rid).Do()
					if err == nil && op.Error == nil {
						break
					}
					if err == nil {
						t.Errorf("%s: %v", name, opErr(op, nil)) // e.g. alreadyExists: a second allocation attempt
						return
					}
					retried.Add(1)
					target = others[(w+try)%2]
				}
				target = first
				for try := 0; i%4 == 0; try++ { // an Available ENI holds 10
					r := httpReq(ecs.CreateAssignPrivateIpAddressesRequest())
					r.NetworkInterfaceId = enis[w]
					r.SecondaryPrivateIpAddressCount = requests.NewInteger(1)
					r.ClientToken = token
					_, err := aliClients(t, target, akID, akSecret).ecs.AssignPrivateIpAddresses(r)
					if err == nil {
						break
					}
					if !strings.Contains(err.Error(), "connect") && !strings.Contains(err.Error(), "EOF") && !strings.Contains(err.Error(), "reset") {
						t.Errorf("assign %s: %v", token, err)
						return
					}
					retried.Add(1)
					target = others[(w+try)%2]
				}
				mu.Lock()
				if i%4 == 0 {
					tokens[w]++
				}
				names = append(names, name)
				mu.Unlock()
				acks.Add(1)
			}
		})
	}
	for deadline := time.Now().Add(60 * time.Second); acks.Load() < 150 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	h.replicas[victim].Kill()
	wg.Wait()
	if retried.Load() == 0 {
		t.Fatal("no request was in flight when the replica died")
	}
	for ri, r := range others {
		c := r.Compute(t)
		a := aliClients(t, r, akID, akSecret)
		haEventually(t, fmt.Sprintf("survivor %d", ri+1), func() error {
			var list compute.InstanceList
			if err := c.Instances.List(proj, zone).MaxResults(500).Pages(context.Background(), func(l *compute.InstanceList) error {
				list.Items = append(list.Items, l.Items...)
				return nil
			}); err != nil {
				return err
			}
			for _, in := range list.Items {
				if len(in.NetworkInterfaces) != 1 || len(in.NetworkInterfaces[0].AliasIpRanges) != 1 {
					t.Fatalf("half-applied instance %s: %+v", in.Name, in.NetworkInterfaces)
				}
			}
			if len(list.Items) != len(names) {
				return fmt.Errorf("%d instances, %d acknowledged", len(list.Items), len(names))
			}
			if _, err := addresses(c); err != nil {
				t.Fatal(err)
			}
			for w, eni := range enis {
				held := ips(a.describeENI(eni))[1:]
				if len(held) != tokens[w] {
					return fmt.Errorf("%s holds %d secondary IPs for %d ClientTokens", eni, len(held), tokens[w])
				}
			}
			return nil
		})
	}
	t.Logf("%d requests sent, %d retried on another replica after the kill; every requestId/ClientToken allocated once", sent.Load(), retried.Load())
}

// proxy forwards TCP connections to an etcd member until cut.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
	closed bool
}

func newProxy(t testing.TB, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: strings.TrimPrefix(target, "http://")}
	t.Cleanup(func() { ln.Close(); p.cut() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			if p.closed {
				p.mu.Unlock()
				c.Close()
				continue
			}
			u, err := net.Dial("tcp", p.target)
			if err != nil {
				p.mu.Unlock()
				c.Close()
				continue
			}
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go func() { io.Copy(u, c); u.Close() }()
			go func() { io.Copy(c, u); c.Close() }()
		}
	}()
	return p
}

func (p *proxy) URL() string { return "http://" + p.ln.Addr().String() }

// cut drops every connection and refuses new ones until heal.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *proxy) heal() {
	p.mu.Lock()
	p.closed = false
	p.mu.Unlock()
}

// TestHAReplicaFallsBehindCompaction: a replica is cut off from etcd
// while the others commit and etcd compacts its history; when it is back,
// its watch finds the history gone, it re-lists, and it serves every
// change.
func TestHAReplicaFallsBehindCompaction(t *testing.T) {
	h := startHA(t, 2, etcdtest.Options{NoFsync: true})
	var proxies []*proxy
	var urls []string
	for _, ep := range h.etcd.Endpoints() {
		p := newProxy(t, ep)
		proxies = append(proxies, p)
		urls = append(urls, p.URL())
	}
	behind := StartServer(t, "", "--store", "etcd", "--etcd-endpoints", strings.Join(urls, ","), "--etcd-prefix", h.prefix)
	c0 := h.replicas[0].Compute(t)
	haSeed(t, c0)
	must(t)(c0.Instances.Insert(proj, zone, &compute.Instance{Name: "before", NetworkInterfaces: nic(sec("/28"))}).Do())
	cb := behind.Compute(t)
	haEventually(t, "the replica sees the first instance", func() error {
		_, err := cb.Instances.Get(proj, zone, "before").Do()
		return err
	})
	for _, p := range proxies {
		p.cut()
	}
	c1 := h.replicas[1].Compute(t)
	for i := range 30 {
		must(t)(c1.Instances.Insert(proj, zone, &compute.Instance{Name: fmt.Sprintf("while-%d", i), NetworkInterfaces: nic(sec("/28"))}).Do())
	}
	must(t)(c1.Instances.Delete(proj, zone, "before").Do())
	st := h.store(t)
	rev, err := st.CurrentRev(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Compact(context.Background(), rev); err != nil {
		t.Fatal(err)
	}
	before := status(t, h.replicas[0]).Stats.Reloads
	for _, p := range proxies {
		p.heal()
	}
	want, err := addresses(c1)
	if err != nil {
		t.Fatal(err)
	}
	haEventually(t, "the replica serves every change", func() error {
		got, err := addresses(cb)
		if err != nil {
			return err
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("%d instances, want %d", len(got), len(want))
		}
		return nil
	})
	if n := status(t, behind).Stats.Reloads; n < 1 {
		t.Errorf("the replica did not re-list (reloads %d)", n)
	}
	if n := status(t, h.replicas[0]).Stats.Reloads; n != before {
		t.Errorf("a replica that kept up re-listed")
	}
	// It keeps deciding correctly afterwards.
	must(t)(cb.Instances.Insert(proj, zone, &compute.Instance{Name: "after", NetworkInterfaces: nic(sec("/28"))}).Do())
	if _, err := addresses(c0); err != nil {
		t.Fatal(err)
	}
	t.Logf("replica cut off at revision <%d, history compacted at %d, re-listed and caught up", rev, rev)
}

func runCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(binary, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("aliasnet %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestHAStoreMigrateSnapshotRestore: a bbolt installation is backed up
// while it runs, migrated into etcd and served by two replicas; an etcd
// snapshot restores into a fresh bbolt directory. Every step keeps the
// whole state, and the replicas go on allocating from it correctly.
func TestHAStoreMigrateSnapshotRestore(t *testing.T) {
	dir := t.TempDir()
	s := StartServer(t, dir)
	c := s.Compute(t)
	haSeed(t, c)
	for i := range 20 {
		must(t)(c.Instances.Insert(proj, zone, &compute.Instance{Name: fmt.Sprintf("vm%d", i), NetworkInterfaces: nic(sec("/28"), prim("/32"))}).Do())
	}
	want, err := addresses(c)
	if err != nil {
		t.Fatal(err)
	}
	online := filepath.Join(t.TempDir(), "online.snap")
	t.Log(strings.TrimSpace(runCLI(t, "store", "snapshot", "--server", s.URL(), "--out", online)))
	s.Stop()

	h := startHA(t, 0, etcdtest.Options{NoFsync: true})
	eps := strings.Join(h.etcd.Endpoints(), ",")
	t.Log(strings.TrimSpace(runCLI(t, "store", "migrate", "--from", "bbolt:"+dir, "--to", "etcd:"+eps, "--etcd-prefix", h.prefix)))
	// Migrating again into the now non-empty prefix is refused.
	if out, err := exec.Command(binary, "store", "migrate", "--from", "bbolt:"+dir, "--to", "etcd:"+eps, "--etcd-prefix", h.prefix).CombinedOutput(); err == nil || !strings.Contains(string(out), "not empty") {
		t.Fatalf("second migrate: %v %s", err, out)
	}
	r1, r2 := h.start(t), h.start(t)
	for _, r := range []*Server{r1, r2} {
		got, err := addresses(r.Compute(t))
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("after migration:\n%v\nwant\n%v", got, want)
		}
	}
	must(t)(r2.Compute(t).Instances.Insert(proj, zone, &compute.Instance{Name: "on-etcd", NetworkInterfaces: nic(sec("/28"))}).Do())
	if _, err := addresses(r1.Compute(t)); err != nil {
		t.Fatal(err)
	}

	// etcd snapshot (read directly) -> restore into a new bbolt directory.
	snap := filepath.Join(t.TempDir(), "etcd.snap")
	t.Log(strings.TrimSpace(runCLI(t, "store", "snapshot", "--from", "etcd:"+eps, "--etcd-prefix", h.prefix, "--out", snap)))
	dir2 := t.TempDir()
	t.Log(strings.TrimSpace(runCLI(t, "store", "restore", "--in", snap, "--to", "bbolt:"+dir2)))
	back := StartServer(t, dir2)
	wantNow, err := addresses(r1.Compute(t))
	if err != nil {
		t.Fatal(err)
	}
	got, err := addresses(back.Compute(t))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(wantNow) || len(got) != 21 {
		t.Fatalf("restored from the etcd snapshot: %d instances, want %d", len(got), len(wantNow))
	}
	// The online bbolt snapshot restores into a fresh etcd prefix.
	t.Log(strings.TrimSpace(runCLI(t, "store", "restore", "--in", online, "--to", "etcd:"+eps, "--etcd-prefix", strings.TrimSuffix(h.prefix, "/")+"-restored/")))
	r3 := StartServer(t, "", "--store", "etcd", "--etcd-endpoints", eps, "--etcd-prefix", strings.TrimSuffix(h.prefix, "/")+"-restored/")
	got, err = addresses(r3.Compute(t))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("restored from the online snapshot: %d instances, want %d", len(got), len(want))
	}
}

// TestHATLS: serve reaches an etcd cluster that requires client
// certificates through --etcd-cert, --etcd-key and --etcd-ca.
func TestHATLS(t *testing.T) {
	c := etcdtest.Start(t, 1, etcdtest.Options{TLS: true, NoFsync: true})
	s := StartServer(t, "", "--store", "etcd", "--etcd-endpoints", c.Endpoints()[0], "--etcd-prefix", "/tls/",
		"--etcd-cert", c.TLS.ClientCert, "--etcd-key", c.TLS.ClientKey, "--etcd-ca", c.TLS.CA)
	haSeed(t, s.Compute(t))
	if st := status(t, s); !st.Replicated {
		t.Fatalf("status %+v", st)
	}
	// Without the client certificate the server refuses to start.
	cmd := exec.Command(binary, "serve", "--listen", freePort(t), "--store", "etcd", "--etcd-endpoints", c.Endpoints()[0], "--etcd-ca", c.TLS.CA)
	done := make(chan error, 1)
	go func() { _, err := cmd.CombinedOutput(); done <- err }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("serve started without a client certificate")
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatal("serve without a client certificate neither failed nor served")
	}
}
