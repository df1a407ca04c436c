package model

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestPodBlockBits(t *testing.T) {
	for _, c := range []struct{ pods, bits int }{
		{110, 24}, {256, 23}, {128, 24}, {129, 23}, {100, 24}, {64, 25}, {65, 24}, {32, 26}, {16, 27}, {8, 28},
	} {
		if got := PodBlockBits(c.pods); got != c.bits {
			t.Errorf("PodBlockBits(%d) = /%d, want /%d", c.pods, got, c.bits)
		}
	}
}

// k8sFixture records every change so that the state can be reloaded.
type k8sFixture struct {
	*fixture
	store map[string]any
}

func newK8s(t *testing.T) *k8sFixture {
	f := &k8sFixture{fixture: newFixture(t), store: map[string]any{}}
	f.do(func(tx *Txn) error {
		if _, err := tx.CreateNetwork(Network{Project: "p", Name: "default"}); err != nil {
			return err
		}
		_, err := tx.CreateSubnet(Subnet{Project: "p", Region: "us-central1", Name: "default", Network: "default",
			Range: pfx("10.128.0.0/20"), Secondary: []SecondaryRange{
				{Name: "pods-range", Range: pfx("172.16.0.0/20")},
				{Name: "services-range", Range: pfx("172.20.0.0/29")},
				{Name: "other", Range: pfx("172.21.0.0/20")},
			}})
		return err
	})
	return f
}

// try runs m like control.Do: rollback on error, record changes on success.
func (f *k8sFixture) try(m func(tx *Txn) error) error {
	tx := f.tx()
	if err := m(tx); err != nil {
		tx.Rollback()
		return err
	}
	for _, c := range tx.Changes() {
		if c.Value == nil {
			delete(f.store, c.Key)
		} else {
			f.store[c.Key] = c.Value
		}
	}
	return nil
}

func (f *k8sFixture) do(m func(tx *Txn) error) {
	f.t.Helper()
	if err := f.try(m); err != nil {
		f.t.Fatal(err)
	}
}

// reload rebuilds the state from the recorded store through JSON.
func (f *k8sFixture) reload() {
	f.t.Helper()
	var snap Snapshot
	for _, v := range f.store {
		b, _ := json.Marshal(v)
		switch v.(type) {
		case *Network:
			x := new(Network)
			json.Unmarshal(b, x)
			snap.Networks = append(snap.Networks, x)
		case *Subnet:
			x := new(Subnet)
			json.Unmarshal(b, x)
			snap.Subnets = append(snap.Subnets, x)
		case *Instance:
			x := new(Instance)
			json.Unmarshal(b, x)
			snap.Instances = append(snap.Instances, x)
		case *Interface:
			x := new(Interface)
			json.Unmarshal(b, x)
			snap.Interfaces = append(snap.Interfaces, x)
		case *Cluster:
			x := new(Cluster)
			json.Unmarshal(b, x)
			snap.Clusters = append(snap.Clusters, x)
		case *ClusterNode:
			x := new(ClusterNode)
			json.Unmarshal(b, x)
			snap.ClusterNodes = append(snap.ClusterNodes, x)
		case *ServiceIP:
			x := new(ServiceIP)
			json.Unmarshal(b, x)
			snap.ServiceIPs = append(snap.ServiceIPs, x)
		default:
			f.t.Fatalf("unexpected stored %T", v)
		}
	}
	s, err := Load(snap)
	if err != nil {
		f.t.Fatal(err)
	}
	f.s = s
}

func (f *k8sFixture) seed002(nodes int) *Cluster {
	var c *Cluster
	f.do(func(tx *Txn) error {
		var err error
		c, _, err = tx.CreateCluster(CreateClusterReq{
			Cluster:   Cluster{Project: "p", Location: "us-central1-a", Name: "my-cluster", PodsRange: "pods-range", ServicesRange: "services-range", NodePools: []NodePool{{Name: "default-pool"}}},
			PoolSizes: []int{nodes},
		})
		return err
	})
	return c
}

func (f *k8sFixture) usage(name string) ClusterUsage {
	f.t.Helper()
	c := f.s.Cluster("p", "us-central1-a", name)
	if c == nil {
		f.t.Fatalf("cluster %s missing", name)
	}
	u, err := f.s.Usage(c)
	if err != nil {
		f.t.Fatal(err)
	}
	return u
}

func nodeRanges(s *State, c string) []string {
	var out []string
	for _, n := range s.ClusterNodes("p", "us-central1-a", c) {
		out = append(out, n.PodRange.String())
	}
	slices.Sort(out)
	return out
}

func TestClusterSeed002(t *testing.T) {
	f := newK8s(t)
	c := f.seed002(2)
	if c.MaxPodsPerNode != 110 || c.Subnet != "us-central1/default" || c.Network != "default" || c.Status != ClusterRunning {
		t.Fatalf("cluster = %+v", c)
	}
	nodes := f.s.ClusterNodes("p", "us-central1-a", "my-cluster")
	if len(nodes) != 2 {
		t.Fatalf("nodes = %d", len(nodes))
	}
	for _, n := range nodes {
		if !strings.HasPrefix(n.Instance, "gke-my-cluster-default-pool-") || len(n.Instance) != len("gke-my-cluster-default-pool-")+4 {
			t.Errorf("node name %q", n.Instance)
		}
		in := f.s.Instance("p", "us-central1-a", n.Instance)
		if in == nil {
			t.Fatalf("instance %s missing", n.Instance)
		}
		ifc := f.s.NICs(in)[0]
		if ifc.Subnet != "us-central1/default" || !pfx("10.128.0.0/20").Contains(ifc.IP) {
			t.Errorf("nic0 = %+v", ifc)
		}
		want := []Alias{{Range: n.PodRange, RangeName: "pods-range"}}
		if !reflect.DeepEqual(ifc.Aliases, want) || n.PodRange.Bits() != 24 || !pfx("172.16.0.0/20").Contains(n.PodRange.Addr()) {
			t.Errorf("node %s aliases %v, record %v", n.Instance, ifc.Aliases, n.PodRange)
		}
	}
	if got := nodeRanges(f.s, "my-cluster"); fmt.Sprint(got) != "[172.16.0.0/24 172.16.1.0/24]" {
		t.Errorf("pod ranges %v", got)
	}
	u := f.usage("my-cluster")
	if u.NodesUsed != 2 || u.NodesPossible != 16 || u.ServiceIPsUsed != 0 || u.ServiceIPsPossible != 6 || u.PodRangeBits != 24 {
		t.Errorf("usage %+v", u)
	}
	// A second cluster cannot take the same pods range, nor use it for services.
	for _, req := range []CreateClusterReq{
		{Cluster: Cluster{Project: "p", Location: "us-central1-a", Name: "c2", PodsRange: "pods-range", ServicesRange: "other"}},
		{Cluster: Cluster{Project: "p", Location: "us-central1-a", Name: "c2", PodsRange: "other", ServicesRange: "pods-range"}},
	} {
		err := f.try(func(tx *Txn) error { _, _, err := tx.CreateCluster(req); return err })
		wantCode(t, err, Invalid, "already used by cluster 'my-cluster'")
	}
	err := f.try(func(tx *Txn) error {
		_, _, err := tx.CreateCluster(CreateClusterReq{Cluster: Cluster{Project: "p", Location: "us-central1-a", Name: "c2", PodsRange: "nope", ServicesRange: "other"}})
		return err
	})
	wantCode(t, err, Invalid, "Secondary range 'nope' not found")
	err = f.try(func(tx *Txn) error {
		_, _, err := tx.CreateCluster(CreateClusterReq{Cluster: Cluster{Project: "p", Location: "us-central1-a", Name: "my-cluster"}})
		return err
	})
	wantCode(t, err, AlreadyExists, "my-cluster")
}

func TestClusterResizeAndExhaustion(t *testing.T) {
	f := newK8s(t)
	f.seed002(2)
	before := nodeRanges(f.s, "my-cluster")
	err := f.try(func(tx *Txn) error {
		_, err := tx.SetNodePoolSize("p", "us-central1-a", "my-cluster", "default-pool", 17)
		return err
	})
	wantCode(t, err, Exhausted, "Pod range 'pods-range' (172.16.0.0/20) of subnetwork 'default' is exhausted: it can hold 14 more node(s) with a /24 pod range each (110 pods per node); 15 more were asked for.")
	if got := nodeRanges(f.s, "my-cluster"); !slices.Equal(got, before) || len(f.s.Instances("p", "")) != 2 {
		t.Fatalf("failed resize changed state: %v", got)
	}
	f.do(func(tx *Txn) error {
		_, err := tx.SetNodePoolSize("p", "us-central1-a", "my-cluster", "default-pool", 16)
		return err
	})
	if u := f.usage("my-cluster"); u.NodesUsed != 16 || u.NodesPossible != 16 {
		t.Fatalf("usage %+v", u)
	}
	f.do(func(tx *Txn) error {
		_, err := tx.SetNodePoolSize("p", "us-central1-a", "my-cluster", "default-pool", 14)
		return err
	})
	if u := f.usage("my-cluster"); u.NodesUsed != 14 || u.NodesPossible != 16 || len(f.s.Instances("p", "")) != 14 {
		t.Fatalf("usage %+v", u)
	}
	err = f.try(func(tx *Txn) error {
		_, err := tx.SetNodePoolSize("p", "us-central1-a", "my-cluster", "default-pool", 20)
		return err
	})
	wantCode(t, err, Exhausted, "it can hold 2 more node(s)")
	f.reload()
	if u := f.usage("my-cluster"); u.NodesUsed != 14 || u.NodesPossible != 16 {
		t.Fatalf("usage after reload %+v", u)
	}
	f.do(func(tx *Txn) error {
		_, err := tx.SetNodePoolSize("p", "us-central1-a", "my-cluster", "default-pool", 0)
		return err
	})
	if u := f.usage("my-cluster"); u.NodesUsed != 0 || u.NodesPossible != 16 || len(f.s.Instances("p", "")) != 0 {
		t.Fatalf("usage %+v", u)
	}
}

func TestClusterNodeDeletedElsewhere(t *testing.T) {
	f := newK8s(t)
	f.seed002(2)
	gone := f.s.ClusterNodes("p", "us-central1-a", "my-cluster")[0]
	f.do(func(tx *Txn) error { return tx.DeleteInstance("p", gone.Zone, gone.Instance) })
	if u := f.usage("my-cluster"); u.NodesUsed != 1 || u.NodesPossible != 16 {
		t.Fatalf("usage %+v", u)
	}
	f.do(func(tx *Txn) error {
		_, err := tx.SetNodePoolSize("p", "us-central1-a", "my-cluster", "default-pool", 2)
		return err
	})
	if n := len(f.s.ClusterNodes("p", "us-central1-a", "my-cluster")); n != 2 || f.s.NodeOf("p", gone.Zone, gone.Instance) != nil {
		t.Fatalf("%d nodes after resize", n)
	}
	f.reload()
	f.do(func(tx *Txn) error { return tx.DeleteCluster("p", "us-central1-a", "my-cluster") })
}

func TestClusterReleasedBlockNotReusedAtOnce(t *testing.T) {
	f := newK8s(t)
	f.seed002(3)
	nodes := f.s.ClusterNodes("p", "us-central1-a", "my-cluster")
	victim := nodes[0]
	f.do(func(tx *Txn) error {
		return tx.RemoveNode("p", "us-central1-a", "my-cluster", victim.Zone, victim.Instance)
	})
	if f.s.Instance("p", victim.Zone, victim.Instance) != nil {
		t.Fatal("managed node instance not deleted")
	}
	f.do(func(tx *Txn) error {
		_, err := tx.SetNodePoolSize("p", "us-central1-a", "my-cluster", "default-pool", 3)
		return err
	})
	if slices.Contains(nodeRanges(f.s, "my-cluster"), victim.PodRange.String()) {
		t.Errorf("released %s handed out again at once: %v", victim.PodRange, nodeRanges(f.s, "my-cluster"))
	}
}

func TestClusterCreatesRanges(t *testing.T) {
	f := newK8s(t)
	var c *Cluster
	f.do(func(tx *Txn) error {
		var err error
		c, _, err = tx.CreateCluster(CreateClusterReq{
			Cluster:  Cluster{Project: "p", Location: "us-central1-a", Name: "auto", MaxPodsPerNode: 32, NodePools: []NodePool{{Name: "pool-1", MachineType: "e2-standard-4"}}},
			PodsCIDR: "/14", ServicesCIDR: "10.200.0.0/20", PoolSizes: []int{3},
		})
		return err
	})
	sn := f.s.Subnet("p", "us-central1", "default")
	h := hash8(c.ID)
	want := []SecondaryRange{
		{Name: "pods-range", Range: pfx("172.16.0.0/20")},
		{Name: "services-range", Range: pfx("172.20.0.0/29")},
		{Name: "other", Range: pfx("172.21.0.0/20")},
		{Name: "gke-auto-pods-" + h, Range: pfx("10.0.0.0/14")},
		{Name: "gke-auto-services-" + h, Range: pfx("10.200.0.0/20")},
	}
	if !reflect.DeepEqual(sn.Secondary, want) {
		t.Fatalf("secondary ranges %v", sn.Secondary)
	}
	if c.PodsRange != want[3].Name || c.ServicesRange != want[4].Name || !c.CreatedPodsRange || !c.CreatedServicesRange {
		t.Fatalf("cluster %+v", c)
	}
	if got := nodeRanges(f.s, "auto"); fmt.Sprint(got) != "[10.0.0.0/26 10.0.0.128/26 10.0.0.64/26]" {
		t.Errorf("pod ranges %v", got)
	}
	in := f.s.Instance("p", "us-central1-a", f.s.ClusterNodes("p", "us-central1-a", "auto")[0].Instance)
	if in.MachineType != "e2-standard-4" || len(in.Tags) != 1 || in.Tags[0] != "gke-auto-"+h+"-node" {
		t.Errorf("node instance %+v", in)
	}
	// A second cluster's automatic range lands after the first.
	f.do(func(tx *Txn) error {
		_, _, err := tx.CreateCluster(CreateClusterReq{Cluster: Cluster{Project: "p", Location: "us-central1-a", Name: "auto2"}})
		return err
	})
	c2 := f.s.Cluster("p", "us-central1-a", "auto2")
	u2 := f.usage("auto2")
	if u2.PodsRange != pfx("10.4.0.0/14") || u2.ServicesRange != pfx("10.8.0.0/20") || c2.MaxPodsPerNode != 110 {
		t.Errorf("auto2 usage %+v", u2)
	}
	f.reload()
	f.do(func(tx *Txn) error { return tx.DeleteCluster("p", "us-central1-a", "auto") })
	f.do(func(tx *Txn) error { return tx.DeleteCluster("p", "us-central1-a", "auto2") })
	if sn := f.s.Subnet("p", "us-central1", "default"); !reflect.DeepEqual(sn.Secondary, want[:3]) {
		t.Errorf("ranges left after delete: %v", sn.Secondary)
	}
	if len(f.s.Instances("p", "")) != 0 || len(f.s.Clusters("p", "")) != 0 {
		t.Errorf("left: %d instances, %d clusters", len(f.s.Instances("p", "")), len(f.s.Clusters("p", "")))
	}
	f.reload()
}

func TestClusterCreateSubnetAndRegional(t *testing.T) {
	f := newK8s(t)
	f.do(func(tx *Txn) error {
		_, _, err := tx.CreateCluster(CreateClusterReq{
			Cluster:      Cluster{Project: "p", Location: "us-central1", Name: "reg", NodePools: []NodePool{{Name: "default-pool"}}},
			CreateSubnet: true, PoolSizes: []int{1},
		})
		return err
	})
	c := f.s.Cluster("p", "us-central1", "reg")
	if !c.CreatedSubnet || !strings.HasPrefix(c.Subnet, "us-central1/gke-reg-subnet-") {
		t.Fatalf("cluster %+v", c)
	}
	r, n := splitKey(c.Subnet)
	if sn := f.s.Subnet("p", r, n); sn.Range != pfx("10.0.0.0/20") {
		t.Errorf("node subnet %v", sn.Range)
	}
	var zones []string
	for _, nd := range f.s.ClusterNodes("p", "us-central1", "reg") {
		zones = append(zones, nd.Zone)
	}
	if fmt.Sprint(zones) != "[us-central1-a us-central1-b us-central1-c]" {
		t.Errorf("node zones %v", zones)
	}
	f.do(func(tx *Txn) error { return tx.DeleteCluster("p", "us-central1", "reg") })
	if f.s.Subnet("p", r, n) != nil {
		t.Error("created subnet not deleted")
	}
}

func TestClusterJoinLeave(t *testing.T) {
	f := newK8s(t)
	f.seed002(0)
	f.do(func(tx *Txn) error {
		_, _, err := tx.CreateInstance(CreateInstanceReq{Instance: Instance{Project: "p", Zone: "us-central1-a", Name: "vm1"},
			NICs: []NICSpec{{Subnet: "default", Aliases: []AliasSpec{aliasIn("other", "/28")}}}})
		return err
	})
	var n *ClusterNode
	f.do(func(tx *Txn) error {
		var err error
		n, err = tx.JoinNode("p", "us-central1-a", "my-cluster", "", "us-central1-a", "vm1")
		return err
	})
	ifc := f.s.NICs(f.s.Instance("p", "us-central1-a", "vm1"))[0]
	if n.PodRange != pfx("172.16.0.0/24") || n.Managed || n.Pool != "default-pool" ||
		fmt.Sprint(ifc.Aliases) != "[{172.16.0.0/24 pods-range} {172.21.0.0/28 other}]" {
		t.Fatalf("joined node %+v, aliases %v", n, ifc.Aliases)
	}
	err := f.try(func(tx *Txn) error {
		_, err := tx.JoinNode("p", "us-central1-a", "my-cluster", "", "us-central1-a", "vm1")
		return err
	})
	wantCode(t, err, AlreadyExists, "already a node")
	if f.s.NodeOf("p", "us-central1-a", "vm1") == nil {
		t.Error("NodeOf vm1 = nil")
	}
	f.reload()
	f.do(func(tx *Txn) error { return tx.RemoveNode("p", "us-central1-a", "my-cluster", "us-central1-a", "vm1") })
	ifc = f.s.NICs(f.s.Instance("p", "us-central1-a", "vm1"))[0]
	if fmt.Sprint(ifc.Aliases) != "[{172.21.0.0/28 other}]" || f.s.NodeOf("p", "us-central1-a", "vm1") != nil {
		t.Fatalf("after leave: aliases %v", ifc.Aliases)
	}
	// Join again and delete the cluster: the instance stays, its pod range goes.
	f.do(func(tx *Txn) error {
		_, err := tx.JoinNode("p", "us-central1-a", "my-cluster", "", "us-central1-a", "vm1")
		return err
	})
	f.do(func(tx *Txn) error { return tx.DeleteCluster("p", "us-central1-a", "my-cluster") })
	ifc = f.s.NICs(f.s.Instance("p", "us-central1-a", "vm1"))[0]
	if fmt.Sprint(ifc.Aliases) != "[{172.21.0.0/28 other}]" {
		t.Fatalf("after cluster delete: aliases %v", ifc.Aliases)
	}
	// An instance in another subnet cannot join.
	f.seed002(0)
	f.do(func(tx *Txn) error {
		if _, err := tx.CreateSubnet(Subnet{Project: "p", Region: "us-central1", Name: "s2", Network: "default", Range: pfx("10.129.0.0/24")}); err != nil {
			return err
		}
		_, _, err := tx.CreateInstance(CreateInstanceReq{Instance: Instance{Project: "p", Zone: "us-central1-a", Name: "vm2"}, NICs: []NICSpec{{Subnet: "s2"}}})
		return err
	})
	err = f.try(func(tx *Txn) error {
		_, err := tx.JoinNode("p", "us-central1-a", "my-cluster", "", "us-central1-a", "vm2")
		return err
	})
	wantCode(t, err, Invalid, "not in the cluster's subnetwork")
}

func TestServiceIPs(t *testing.T) {
	f := newK8s(t)
	f.seed002(1)
	alloc := func(name, ip string) (*ServiceIP, error) {
		var sv *ServiceIP
		err := f.try(func(tx *Txn) error {
			var a netip.Addr
			if ip != "" {
				a = netip.MustParseAddr(ip)
			}
			var err error
			sv, err = tx.AllocateServiceIP("p", "us-central1-a", "my-cluster", name, a)
			return err
		})
		return sv, err
	}
	var got []string
	for _, n := range []string{"default.kubernetes", "default.web", "kube-system.dns"} {
		sv, err := alloc(n, "")
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, sv.IP.String())
	}
	if fmt.Sprint(got) != "[172.20.0.1 172.20.0.2 172.20.0.3]" {
		t.Errorf("service IPs %v", got)
	}
	if _, err := alloc("default.web", ""); CodeOf(err) != AlreadyExists {
		t.Errorf("duplicate name: %v", err)
	}
	_, err := alloc("x.explicit", "172.20.0.2")
	wantCode(t, err, InUse, "already being used")
	for _, a := range []string{"172.20.0.0", "172.20.0.7"} {
		_, err = alloc("x.reserved", a)
		wantCode(t, err, InUse, "already being used")
	}
	_, err = alloc("x.outside", "172.16.9.9")
	wantCode(t, err, Invalid, "outside the services range")
	_, err = alloc("Bad_Name", "")
	wantCode(t, err, Invalid, "DNS labels")
	// Nothing else can take a service IP: an alias on a VM is refused.
	err = f.try(func(tx *Txn) error {
		_, _, err := tx.CreateInstance(CreateInstanceReq{Instance: Instance{Project: "p", Zone: "us-central1-a", Name: "thief"},
			NICs: []NICSpec{{Subnet: "default", Aliases: []AliasSpec{aliasIn("services-range", "172.20.0.3")}}}})
		return err
	})
	wantCode(t, err, InUse, "already being used")
	f.reload()
	for _, a := range []string{"172.20.0.0", "172.20.0.2", "172.20.0.7"} {
		_, err = alloc("x.explicit", a)
		wantCode(t, err, InUse, "already being used")
	}
	// Release: the address is not the next one handed out.
	f.do(func(tx *Txn) error {
		_, err := tx.ReleaseServiceIP("p", "us-central1-a", "my-cluster", "default.web")
		return err
	})
	sv, err := alloc("default.web2", "")
	if err != nil || sv.IP.String() != "172.20.0.4" {
		t.Errorf("after release got %v, %v", sv, err)
	}
	for i := range 2 {
		if _, err := alloc(fmt.Sprintf("ns.s%d", i), ""); err != nil {
			t.Fatal(err)
		}
	}
	// 5 in use, the released .2 waits in quarantine: it is the last one.
	sv, err = alloc("ns.last", "")
	if err != nil || sv.IP.String() != "172.20.0.2" {
		t.Errorf("last got %v, %v", sv, err)
	}
	_, err = alloc("ns.full", "")
	wantCode(t, err, Exhausted, "Services range 'services-range' (172.20.0.0/29) of cluster 'my-cluster' is exhausted")
	if u := f.usage("my-cluster"); u.ServiceIPsUsed != 6 || u.ServiceIPsPossible != 6 {
		t.Errorf("usage %+v", u)
	}
	// Deleting the cluster releases every service IP.
	f.do(func(tx *Txn) error { return tx.DeleteCluster("p", "us-central1-a", "my-cluster") })
	f.do(func(tx *Txn) error {
		_, _, err := tx.CreateInstance(CreateInstanceReq{Instance: Instance{Project: "p", Zone: "us-central1-a", Name: "vm"},
			NICs: []NICSpec{{Subnet: "default", Aliases: []AliasSpec{aliasIn("services-range", "172.20.0.0/29")}}}})
		return err
	})
}

func TestClusterValidation(t *testing.T) {
	f := newK8s(t)
	for _, c := range []struct {
		req  CreateClusterReq
		code Code
		msg  string
	}{
		{CreateClusterReq{Cluster: Cluster{Project: "p", Location: "us-central1-a", Name: "Bad"}}, Invalid, "regex"},
		{CreateClusterReq{Cluster: Cluster{Project: "p", Location: "us-central1-a", Name: strings.Repeat("a", 41)}}, Invalid, "at most 40"},
		{CreateClusterReq{Cluster: Cluster{Project: "p", Location: "us-central1-a", Name: "c", MaxPodsPerNode: 300}}, Invalid, "between 8 and 256"},
		{CreateClusterReq{Cluster: Cluster{Project: "p", Location: "us-central1-a", Name: "c", PodsRange: "pods-range", ServicesRange: "pods-range"}}, Invalid, "must be different"},
		{CreateClusterReq{Cluster: Cluster{Project: "p", Location: "us-central1-a", Name: "c", PodsRange: "services-range", ServicesRange: "other"}}, Invalid, "smaller than one node's block"},
		{CreateClusterReq{Cluster: Cluster{Project: "p", Location: "us-central1-a", Name: "c", Network: "nope"}}, NotFound, "nope"},
		{CreateClusterReq{Cluster: Cluster{Project: "p", Location: "us-central1-a", Name: "c"}, PodsCIDR: "10.128.0.0/16"}, Invalid, "conflicts with"},
		{CreateClusterReq{Cluster: Cluster{Project: "p", Location: "us-central1-a", Name: "c", PodsRange: "pods-range", ServicesRange: "services-range",
			NodePools: []NodePool{{Name: "a"}}}, PoolSizes: []int{17}}, Exhausted, "can hold 16 more"},
	} {
		err := f.try(func(tx *Txn) error { _, _, err := tx.CreateCluster(c.req); return err })
		wantCode(t, err, c.code, c.msg)
	}
	if len(f.s.Clusters("p", "")) != 0 || len(f.s.Instances("p", "")) != 0 || len(f.s.Subnet("p", "us-central1", "default").Secondary) != 3 {
		t.Fatal("refused creates left traces")
	}
}

func TestFindFreeRangeSkips(t *testing.T) {
	f := newK8s(t)
	f.do(func(tx *Txn) error {
		_, err := tx.CreateSubnet(Subnet{Project: "p", Region: "us-central1", Name: "s2", Network: "default", Range: pfx("10.0.0.0/16"),
			Secondary: []SecondaryRange{{Name: "x", Range: pfx("10.1.64.0/18")}}})
		return err
	})
	for _, c := range []struct {
		bits int
		want string
	}{{16, "10.2.0.0/16"}, {18, "10.1.0.0/18"}, {14, "10.4.0.0/14"}, {8, "invalid Prefix"}, {12, "10.16.0.0/12"}} {
		got, _ := f.s.findFreeRange("p", "default", c.bits)
		if got.String() != c.want {
			t.Errorf("/%d: got %v, want %s", c.bits, got, c.want)
		}
	}
}

// BenchmarkNodeJoin5000 measures pod range allocation for nodes joining
// one cluster, in the model (no store): one JoinNode per node.
func BenchmarkNodeJoin5000(b *testing.B) {
	for b.Loop() {
		b.StopTimer()
		f := &k8sFixture{fixture: &fixture{t: &testing.T{}, s: NewState()}, store: map[string]any{}}
		f.do(func(tx *Txn) error {
			if _, err := tx.CreateNetwork(Network{Project: "p", Name: "default"}); err != nil {
				return err
			}
			_, err := tx.CreateSubnet(Subnet{Project: "p", Region: "us-central1", Name: "default", Network: "default",
				Range: pfx("10.128.0.0/16"), Secondary: []SecondaryRange{{Name: "pods", Range: pfx("10.0.0.0/10")}, {Name: "svc", Range: pfx("10.64.0.0/20")}}})
			if err != nil {
				return err
			}
			_, _, err = tx.CreateCluster(CreateClusterReq{Cluster: Cluster{Project: "p", Location: "us-central1-a", Name: "big",
				PodsRange: "pods", ServicesRange: "svc", NodePools: []NodePool{{Name: "default-pool"}}}})
			return err
		})
		for i := range 5000 {
			f.do(func(tx *Txn) error {
				_, _, err := tx.CreateInstance(CreateInstanceReq{Instance: Instance{Project: "p", Zone: "us-central1-a", Name: fmt.Sprintf("n%d", i)}, NICs: []NICSpec{{Subnet: "default"}}})
				return err
			})
		}
		b.StartTimer()
		for i := range 5000 {
			tx := f.tx()
			if _, err := tx.JoinNode("p", "us-central1-a", "big", "", "us-central1-a", fmt.Sprintf("n%d", i)); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// A network re-indexed from subnets and interfaces (replica.go) gets its
// service IPs back with ReclaimServiceIPs; K8sChange flags changes that
// ApplyRemote must not apply incrementally.
func TestReclaimServiceIPsAfterReindex(t *testing.T) {
	f := newK8s(t)
	f.seed002(1)
	f.do(func(tx *Txn) error {
		_, err := tx.AllocateServiceIP("p", "us-central1-a", "my-cluster", "default.kubernetes", netip.Addr{})
		return err
	})
	p := f.s.projects["p"]
	if err := f.s.reindexNetwork(p, "default"); err != nil {
		t.Fatal(err)
	}
	if _, o, ok := f.s.Holder("p", "default", pfx("172.20.0.1/32")); ok {
		t.Fatalf("reindex kept the service IP (%v): the test no longer shows the problem", o)
	}
	if err := f.s.ReclaimServiceIPs("p", "default"); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"172.20.0.0/32", "172.20.0.1/32", "172.20.0.7/32"} {
		if _, _, ok := f.s.Holder("p", "default", pfx(a)); !ok {
			t.Errorf("%s not held after ReclaimServiceIPs", a)
		}
	}
	if err := f.s.ReclaimServiceIPs("p", "default"); err != nil {
		t.Fatalf("second reclaim: %v", err)
	}
	if K8sChange(Snapshot{Subnets: []*Subnet{{}}}, []string{"projects/p/zones/z/instances/i"}) ||
		!K8sChange(Snapshot{}, []string{"projects/p/locations/l/clusters/c/serviceIPs/x"}) ||
		!K8sChange(Snapshot{ClusterNodes: []*ClusterNode{{}}}, nil) {
		t.Error("K8sChange")
	}
}
