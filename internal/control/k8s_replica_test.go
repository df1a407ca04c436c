package control_test

import (
	"context"
	"net/netip"
	"slices"
	"testing"

	"github.com/aliasnet/aliasnet/internal/control"
	"github.com/aliasnet/aliasnet/internal/model"
)

// k8sView is what one replica holds of a cluster: its nodes' blocks, its
// service IPs with their holders, and the range usage.
func k8sView(t *testing.T, svc *control.Service) (nodes []string, services []string, usage model.ClusterUsage) {
	t.Helper()
	svc.Read(func(st *model.State) {
		c := st.Cluster("p", zone, "c1")
		if c == nil {
			t.Fatal("cluster c1 missing")
		}
		for _, n := range st.ClusterNodes("p", zone, "c1") {
			nodes = append(nodes, n.Instance+"="+n.PodRange.String())
		}
		for _, sv := range st.ServiceIPs("p", zone, "c1") {
			_, who, ok := st.Holder("p", "default", netip.PrefixFrom(sv.IP, 32))
			if !ok {
				t.Errorf("service IP %s (%s) is not held", sv.IP, sv.Name)
			}
			services = append(services, sv.Name+"="+sv.IP.String()+" held by "+who.Kind+" "+who.Key)
		}
		var err error
		if usage, err = st.Usage(c); err != nil {
			t.Fatal(err)
		}
	})
	return nodes, services, usage
}

// TestReplicasApplyK8sChanges: clusters, nodes and service IPs made
// through one replica are applied by the other without a reload, and a
// subnet change that rebuilds the network's range index there keeps the
// service IPs held: the second replica refuses them to anyone else and
// never hands them out again.
func TestReplicasApplyK8sChanges(t *testing.T) {
	svcs, _ := replicas(t, 2)
	do(t, svcs[0], func(tx *model.Txn) error {
		if _, err := tx.CreateNetwork(model.Network{Project: "p", Name: "default"}); err != nil {
			return err
		}
		_, err := tx.CreateSubnet(model.Subnet{Project: "p", Region: region, Name: "default", Network: "default",
			Range: netip.MustParsePrefix("10.128.0.0/20"), Secondary: []model.SecondaryRange{
				{Name: "pods-range", Range: netip.MustParsePrefix("172.16.0.0/20")},
				{Name: "services-range", Range: netip.MustParsePrefix("172.20.0.0/29")}}})
		return err
	})
	syncAll(t, svcs)
	reloads := svcs[1].ReplicaStats().Reloads
	do(t, svcs[0], func(tx *model.Txn) error {
		_, _, err := tx.CreateCluster(model.CreateClusterReq{
			Cluster: model.Cluster{Project: "p", Location: zone, Name: "c1", PodsRange: "pods-range", ServicesRange: "services-range",
				NodePools: []model.NodePool{{Name: "default-pool"}}},
			PoolSizes: []int{2}})
		return err
	})
	do(t, svcs[0], func(tx *model.Txn) error {
		_, err := tx.AllocateServiceIP("p", zone, "c1", "default.kubernetes", netip.Addr{})
		return err
	})
	do(t, svcs[0], func(tx *model.Txn) error {
		_, err := tx.AllocateServiceIP("p", zone, "c1", "default.web", netip.MustParseAddr("172.20.0.5"))
		return err
	})
	do(t, svcs[0], func(tx *model.Txn) error {
		_, err := tx.SetNodePoolSize("p", zone, "c1", "default-pool", 3)
		return err
	})
	// The change that used to drop the service IPs on other replicas (last,
	// so that no later Kubernetes change repairs them).
	do(t, svcs[0], func(tx *model.Txn) error {
		sn := tx.State().Subnet("p", region, "default")
		_, err := tx.SetSecondaryRanges("p", region, "default", sn.Fingerprint,
			append(slices.Clone(sn.Secondary), model.SecondaryRange{Name: "extra", Range: netip.MustParsePrefix("172.22.0.0/24")}))
		return err
	})
	syncAll(t, svcs)

	n0, s0, u0 := k8sView(t, svcs[0])
	n1, s1, u1 := k8sView(t, svcs[1])
	if !slices.Equal(n0, n1) || !slices.Equal(s0, s1) || u0 != u1 {
		t.Fatalf("replicas differ:\n0: %v %v %+v\n1: %v %v %+v", n0, s0, u0, n1, s1, u1)
	}
	if len(n1) != 3 || len(s1) != 2 || u1.ServiceIPsUsed != 2 || u1.ServiceIPsPossible != 6 {
		t.Fatalf("replica 1: nodes %v services %v usage %+v", n1, s1, u1)
	}
	if got := svcs[1].ReplicaStats().Reloads; got != reloads {
		t.Errorf("replica 1 reloaded %d times to apply the cluster's changes", got-reloads)
	}

	// Replica 1 decides on its own state: the held addresses are refused
	// and the remaining four are what it hands out.
	op, err := svcs[1].Do(context.Background(), control.Op{Project: "p", Scope: "zones/" + zone, Type: "allocateServiceIP"},
		func(tx *model.Txn) (uint64, any, error) {
			_, err := tx.AllocateServiceIP("p", zone, "c1", "default.copy", netip.MustParseAddr("172.20.0.5"))
			return 0, nil, err
		})
	if err != nil || op.Error == nil || op.Error.Code != model.InUse {
		t.Fatalf("replica 1 gave a held service IP again: %v %+v", err, op)
	}
	var kubernetesIP netip.Addr
	svcs[0].Read(func(st *model.State) { kubernetesIP = st.ServiceIPs("p", zone, "c1")[0].IP })
	op, err = svcs[1].Do(context.Background(), control.Op{Project: "p", Scope: "zones/" + zone, Type: "insert"},
		func(tx *model.Txn) (uint64, any, error) {
			_, _, err := tx.CreateInstance(model.CreateInstanceReq{Instance: model.Instance{Project: "p", Zone: zone, Name: "thief"},
				NICs: []model.NICSpec{{Subnet: "default", Aliases: []model.AliasSpec{{Prefix: netip.PrefixFrom(kubernetesIP, 32), RangeName: "services-range"}}}}})
			return 0, nil, err
		})
	if err != nil || op.Error == nil || op.Error.Code != model.InUse {
		t.Fatalf("replica 1 gave the kubernetes service's address to an instance: %v %+v", err, op)
	}
	var got, want []netip.Addr
	for a := netip.MustParseAddr("172.20.0.1"); a.Compare(netip.MustParseAddr("172.20.0.6")) <= 0; a = a.Next() {
		if a != kubernetesIP && a != netip.MustParseAddr("172.20.0.5") {
			want = append(want, a)
		}
	}
	for _, name := range []string{"a.s1", "a.s2", "a.s3", "a.s4"} {
		var ip netip.Addr
		do(t, svcs[1], func(tx *model.Txn) error {
			sv, err := tx.AllocateServiceIP("p", zone, "c1", name, netip.Addr{})
			if err == nil {
				ip = sv.IP
			}
			return err
		})
		got = append(got, ip)
	}
	slices.SortFunc(got, netip.Addr.Compare)
	if !slices.Equal(got, want) {
		t.Fatalf("replica 1 handed out %v, want %v", got, want)
	}
	syncAll(t, svcs)
	_, s0, u0 = k8sView(t, svcs[0])
	_, s1, u1 = k8sView(t, svcs[1])
	if !slices.Equal(s0, s1) || u0 != u1 || u0.ServiceIPsUsed != 6 {
		t.Fatalf("after replica 1's allocations:\n0: %v %+v\n1: %v %+v", s0, u0, s1, u1)
	}
	// Deleting the cluster through replica 1 reaches replica 0.
	do(t, svcs[1], func(tx *model.Txn) error { return tx.DeleteCluster("p", zone, "c1") })
	syncAll(t, svcs)
	svcs[0].Read(func(st *model.State) {
		if st.Cluster("p", zone, "c1") != nil || len(st.Instances("p", zone)) != 0 {
			t.Errorf("replica 0 still has the cluster or its nodes")
		}
		if _, who, ok := st.Holder("p", "default", netip.PrefixFrom(kubernetesIP, 32)); ok {
			t.Errorf("replica 0 still holds %s for %v", kubernetesIP, who)
		}
	})
	for i, s := range svcs {
		if got := s.ReplicaStats().Reloads; i == 1 && got != reloads {
			t.Errorf("replica %d reloaded", i)
		}
	}
}
