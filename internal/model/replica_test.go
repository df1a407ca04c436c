package model

import (
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// dumpState renders every resource and every index entry (allocations by
// holder, primary-IP index, EIP index) so two states can be compared.
func dumpState(s *State) string {
	var b strings.Builder
	for _, name := range s.Projects() {
		p := s.projects[name]
		j, _ := json.Marshal([]any{p.networks, p.subnets, p.instances, p.interfaces, p.templates, p.eips,
			p.routes, p.firewalls, p.dynamic, p.routers, p.dnsZones})
		fmt.Fprintf(&b, "project %s %s\n", name, j)
		if k := p.k8s; k != nil {
			// Empty per-cluster maps are an artefact of lookups, not state.
			nodes := map[string]map[string]*ClusterNode{}
			for ck, m := range k.nodes {
				if len(m) > 0 {
					nodes[ck] = m
				}
			}
			svcs := map[string]map[string]*ServiceIP{}
			for ck, m := range k.services {
				if len(m) > 0 {
					svcs[ck] = m
				}
			}
			nodeOf := map[string]string{}
			for in, ck := range k.nodeOf {
				nodeOf[in] = *ck
			}
			if len(k.clusters)+len(nodes)+len(svcs)+len(nodeOf) > 0 {
				j, _ := json.Marshal([]any{k.clusters, nodes, svcs, nodeOf})
				fmt.Fprintf(&b, " k8s %s\n", j)
			}
		}
		var nets []string
		for n, ni := range p.nets {
			if ni.ranges.Size() > 0 {
				nets = append(nets, n)
			}
		}
		slices.Sort(nets)
		for _, n := range nets {
			for pfx, e := range p.nets[n].ranges.AllSorted() {
				fmt.Fprintf(&b, " range %s %s %s/%s:", n, pfx, e.subnet, e.name)
				for q, o := range e.pool.All {
					fmt.Fprintf(&b, " %s=%v", q, s.OwnerRef(o))
				}
				b.WriteString("\n")
			}
		}
		var ips []string
		for a, id := range p.byIP {
			ips = append(ips, fmt.Sprintf("%s/%s=%s", a.network, a.addr, id))
		}
		slices.Sort(ips)
		fmt.Fprintf(&b, " byIP %v\n", ips)
	}
	var eips []string
	for a, k := range s.eipAddrs {
		eips = append(eips, a.String()+"="+k)
	}
	slices.Sort(eips)
	fmt.Fprintf(&b, "eips %v\n", eips)
	for _, pool := range s.eipPools {
		fmt.Fprintf(&b, "eip pool %s:", pool.Range())
		for q, o := range pool.All {
			fmt.Fprintf(&b, " %s=%v", q, s.OwnerRef(o))
		}
		b.WriteString("\n")
	}
	return b.String()
}

// replicate turns a transaction's changes into what another replica
// receives from the store (JSON) and applies them there.
func replicate(t *testing.T, chs []Change, to *State) {
	t.Helper()
	var snap Snapshot
	var deleted []string
	for _, c := range chs {
		if c.Value == nil {
			deleted = append(deleted, c.Key)
			continue
		}
		b, err := json.Marshal(c.Value)
		if err != nil {
			t.Fatal(err)
		}
		v := reflect.New(reflect.TypeOf(c.Value).Elem()).Interface()
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatal(err)
		}
		switch v := v.(type) {
		case *Network:
			snap.Networks = append(snap.Networks, v)
		case *Subnet:
			snap.Subnets = append(snap.Subnets, v)
		case *Instance:
			snap.Instances = append(snap.Instances, v)
		case *Interface:
			snap.Interfaces = append(snap.Interfaces, v)
		case *InstanceTemplate:
			snap.Templates = append(snap.Templates, v)
		case *EIP:
			snap.EIPs = append(snap.EIPs, v)
		case *Route:
			snap.Routes = append(snap.Routes, v)
		case *Firewall:
			snap.Firewalls = append(snap.Firewalls, v)
		case *DynamicRoutes:
			snap.Dynamic = append(snap.Dynamic, v)
		case *Router:
			snap.Routers = append(snap.Routers, v)
		case *DNSZone:
			snap.DNSZones = append(snap.DNSZones, v)
		case *Cluster:
			snap.Clusters = append(snap.Clusters, v)
		case *ClusterNode:
			snap.ClusterNodes = append(snap.ClusterNodes, v)
		case *ServiceIP:
			snap.ServiceIPs = append(snap.ServiceIPs, v)
		default:
			t.Fatalf("replicate: unknown resource %T", v)
		}
	}
	if err := to.ApplyRemote(snap, deleted); err != nil {
		t.Fatal(err)
	}
}

func snapshotOf(s *State) Snapshot {
	var snap Snapshot
	for _, name := range s.Projects() {
		p := s.projects[name]
		snap.Networks = append(snap.Networks, sortedValues(p.networks, nil)...)
		snap.Subnets = append(snap.Subnets, sortedValues(p.subnets, nil)...)
		snap.Instances = append(snap.Instances, sortedValues(p.instances, nil)...)
		snap.Interfaces = append(snap.Interfaces, sortedValues(p.interfaces, nil)...)
		snap.Templates = append(snap.Templates, sortedValues(p.templates, nil)...)
		snap.EIPs = append(snap.EIPs, sortedValues(p.eips, nil)...)
		snap.Routes = append(snap.Routes, sortedValues(p.routes, nil)...)
		snap.Firewalls = append(snap.Firewalls, sortedValues(p.firewalls, nil)...)
		snap.Dynamic = append(snap.Dynamic, sortedValues(p.dynamic, nil)...)
		snap.Routers = append(snap.Routers, sortedValues(p.routers, nil)...)
		snap.DNSZones = append(snap.DNSZones, sortedValues(p.dnsZones, nil)...)
		if k := p.k8s; k != nil {
			snap.Clusters = append(snap.Clusters, sortedValues(k.clusters, nil)...)
			for _, ck := range slices.Sorted(maps.Keys(k.nodes)) {
				snap.ClusterNodes = append(snap.ClusterNodes, sortedValues(k.nodes[ck], nil)...)
			}
			for _, ck := range slices.Sorted(maps.Keys(k.services)) {
				snap.ServiceIPs = append(snap.ServiceIPs, sortedValues(k.services[ck], nil)...)
			}
		}
	}
	return snap
}

// TestApplyRemoteMatchesLoad: a replica that applies every committed
// change of another state ends with the same resources and the same
// indexes as that state, and as a fresh Load of its resources.
func TestApplyRemoteMatchesLoad(t *testing.T) {
	cfg := Config{EIPPools: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/28")}}
	for seed := range uint64(8) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rnd := rand.New(rand.NewPCG(seed, 99))
			src, dst := NewState(), NewState()
			for _, s := range []*State{src, dst} {
				if err := s.Configure(cfg); err != nil {
					t.Fatal(err)
				}
			}
			id := uint64(0)
			run := func(m func(tx *Txn) error) bool {
				tx := src.Begin("2026-01-01T00:00:00Z", func() uint64 { id++; return id })
				if err := m(tx); err != nil {
					tx.Rollback()
					return false
				}
				replicate(t, tx.Changes(), dst)
				return true
			}
			if !run(func(tx *Txn) error {
				for _, n := range []string{"n1", "n2"} {
					if _, err := tx.CreateNetwork(Network{Project: "p", Name: n}); err != nil {
						return err
					}
				}
				if _, err := tx.CreateSubnet(Subnet{Project: "p", Region: "us-central1", Name: "s1", Network: "n1", Range: netip.MustParsePrefix("10.0.0.0/26"),
					Secondary: []SecondaryRange{{Name: "sec", Range: netip.MustParsePrefix("10.1.0.0/26")}}}); err != nil {
					return err
				}
				_, err := tx.CreateSubnet(Subnet{Project: "p", Region: "us-central1", Name: "s2", Network: "n2", Range: netip.MustParsePrefix("10.2.0.0/27")})
				return err
			}) {
				t.Fatal("setup refused")
			}
			applied := 0
			kinds := map[int]int{}
			for i := range 400 {
				var ok bool
				op := rnd.IntN(10)
				switch {
				case op < 4: // create an instance with aliases
					sub := []string{"s1", "s2"}[rnd.IntN(2)]
					var as []AliasSpec
					for range rnd.IntN(3) {
						switch rnd.IntN(3) {
						case 0:
							as = append(as, AliasSpec{Bits: 32})
						case 1:
							as = append(as, AliasSpec{Bits: 30})
						default:
							if sub == "s1" {
								as = append(as, AliasSpec{Bits: 29, RangeName: "sec"})
							} else {
								as = append(as, AliasSpec{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 2, 0, byte(rnd.IntN(32))}), 32)})
							}
						}
					}
					ok = run(func(tx *Txn) error {
						_, _, err := tx.CreateInstance(CreateInstanceReq{Instance: Instance{Project: "p", Zone: "us-central1-a", Name: fmt.Sprintf("vm%d", i)},
							NICs: []NICSpec{{Subnet: sub, Aliases: as}}})
						return err
					})
				case op < 6: // move aliases (an address may move between VMs)
					ins := src.Instances("p", "")
					if len(ins) == 0 {
						continue
					}
					in := ins[rnd.IntN(len(ins))]
					nic := src.NICs(in)[0]
					spec := []AliasSpec{{Bits: 31}}
					if others := src.Instances("p", ""); rnd.IntN(2) == 0 {
						o := src.NICs(others[rnd.IntN(len(others))])[0]
						if len(o.Aliases) > 0 && o.Network == nic.Network && o.ID != nic.ID {
							spec = []AliasSpec{{Prefix: o.Aliases[0].Range, RangeName: o.Aliases[0].RangeName}}
							// Release it from o first, in the same transaction.
							ok = run(func(tx *Txn) error {
								if _, err := tx.UpdateAliases("p", "us-central1-a", strings.TrimPrefix(o.Instance, "us-central1-a/"), "nic0", o.Fingerprint, nil); err != nil {
									return err
								}
								_, err := tx.UpdateAliases("p", "us-central1-a", in.Name, "nic0", nic.Fingerprint, spec)
								return err
							})
							break
						}
					}
					ok = ok || run(func(tx *Txn) error {
						_, err := tx.UpdateAliases("p", "us-central1-a", in.Name, "nic0", nic.Fingerprint, spec)
						return err
					})
				case op < 7:
					ins := src.Instances("p", "")
					if len(ins) == 0 {
						continue
					}
					in := ins[rnd.IntN(len(ins))]
					ok = run(func(tx *Txn) error { return tx.DeleteInstance("p", "us-central1-a", in.Name) })
				case op < 8: // change the secondary ranges of s1
					sn := src.Subnet("p", "us-central1", "s1")
					rs := slices.Clone(sn.Secondary)
					if len(rs) == 2 {
						rs = rs[:1]
					} else {
						rs = append(rs, SecondaryRange{Name: "sec2", Range: netip.MustParsePrefix("10.3.0.0/28")})
					}
					ok = run(func(tx *Txn) error {
						_, err := tx.SetSecondaryRanges("p", "us-central1", "s1", sn.Fingerprint, rs)
						return err
					})
				case op < 9:
					ok = run(func(tx *Txn) error {
						_, err := tx.AllocateEIP(EIP{Project: "p", ID: fmt.Sprintf("eip-%d", i), Region: "us-central1"})
						return err
					})
				default:
					es := src.EIPs("p")
					if len(es) == 0 {
						continue
					}
					e := es[rnd.IntN(len(es))]
					ok = run(func(tx *Txn) error { return tx.ReleaseEIP("p", e.ID) })
				}
				if ok {
					applied++
					kinds[op]++
				}
				if i%50 == 0 || i == 399 {
					want := dumpState(src)
					if got := dumpState(dst); got != want {
						t.Fatalf("step %d: replica differs\nsource:\n%s\nreplica:\n%s", i, want, got)
					}
				}
			}
			loaded, err := Load(snapshotOf(src))
			if err != nil {
				t.Fatal(err)
			}
			if err := loaded.Configure(cfg); err != nil {
				t.Fatal(err)
			}
			if got, want := dumpState(dst), dumpState(loaded); got != want {
				t.Fatalf("replica differs from Load\nload:\n%s\nreplica:\n%s", want, got)
			}
			if applied < 100 || len(kinds) < 10 {
				t.Errorf("only %d changes applied (by kind %v)", applied, kinds)
			}
		})
	}
}

// TestApplyRemoteRefusesUnknownKinds: a resource kind ApplyRemote does
// not know makes it fail (the caller reloads) rather than drop it.
func TestApplyRemoteRefusesUnknownKinds(t *testing.T) {
	v := reflect.ValueOf(Snapshot{})
	for i := range v.NumField() {
		name := v.Type().Field(i).Name
		if appliedKinds[name] {
			continue
		}
		var snap Snapshot
		f := reflect.ValueOf(&snap).Elem().Field(i)
		f.Set(reflect.MakeSlice(f.Type(), 1, 1))
		if err := NewState().ApplyRemote(snap, nil); err == nil {
			t.Errorf("%s applied without an error", name)
		}
	}
}

// k8sProbe is what a replica would decide next about a cluster: every
// service IP it could still hand out and how it fails after them, how
// many more nodes the pods range takes, and whether each held service IP
// is refused to an interface. The probe is rolled back.
func k8sProbe(t *testing.T, s *State) string {
	t.Helper()
	var b strings.Builder
	for _, c := range s.Clusters("p", "") {
		u, err := s.Usage(c)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s: nodes %d/%d services %d/%d;", c.Name, u.NodesUsed, u.NodesPossible, u.ServiceIPsUsed, u.ServiceIPsPossible)
		held := s.ServiceIPs("p", c.Location, c.Name)
		tx := s.Begin("2026-01-01T00:00:00Z", func() uint64 { return 1 << 40 })
		var got []string
		for i := 0; ; i++ {
			sv, err := tx.AllocateServiceIP("p", c.Location, c.Name, fmt.Sprintf("probe.s%d", i), netip.Addr{})
			if err != nil {
				fmt.Fprintf(&b, " then %v: %s;", CodeOf(err), err)
				break
			}
			got = append(got, sv.IP.String())
		}
		slices.Sort(got)
		fmt.Fprintf(&b, " free %v;", got)
		tx.Rollback()
		sn := s.Subnet("p", strings.Split(c.Subnet, "/")[0], strings.Split(c.Subnet, "/")[1])
		for _, sv := range held {
			tx := s.Begin("2026-01-01T00:00:00Z", func() uint64 { return 1 << 41 })
			_, _, err := tx.CreateInstance(CreateInstanceReq{Instance: Instance{Project: "p", Zone: "us-central1-a", Name: "probe-vm"},
				NICs: []NICSpec{{Subnet: sn.Name, Aliases: []AliasSpec{{Prefix: netip.PrefixFrom(sv.IP, 32), RangeName: c.ServicesRange}}}}})
			tx.Rollback()
			fmt.Fprintf(&b, " %s to an interface: %v;", sv.IP, CodeOf(err))
		}
		b.WriteString("\n")
	}
	return b.String()
}

// TestApplyRemoteK8s: cluster, node and service IP changes committed on
// one state and applied to another with ApplyRemote (never falling back
// to a reload) leave both with the same indexes and allocations, the same
// free service addresses and node blocks, and the same refusals; a subnet
// change that re-indexes a cluster's network keeps its service IPs held.
func TestApplyRemoteK8s(t *testing.T) {
	src := newK8s(t)
	dst := NewState()
	var loc = "us-central1-a"
	// The fixture's network and subnet reach the replica like any change.
	loaded, err := Load(snapshotOf(src.s))
	if err != nil {
		t.Fatal(err)
	}
	dst = loaded
	fp := func(s *State, inst string) string {
		return s.NICs(s.Instance("p", loc, inst))[0].Fingerprint
	}
	steps := []struct {
		name    string
		m       func(tx *Txn) error
		refused Code // the step must fail with this code (nothing to replicate)
	}{
		{name: "cluster on existing ranges, 2 nodes", m: func(tx *Txn) error {
			_, _, err := tx.CreateCluster(CreateClusterReq{
				Cluster:   Cluster{Project: "p", Location: loc, Name: "c1", PodsRange: "pods-range", ServicesRange: "services-range", NodePools: []NodePool{{Name: "default-pool"}}},
				PoolSizes: []int{2}})
			return err
		}},
		{name: "service IP, automatic", m: func(tx *Txn) error {
			_, err := tx.AllocateServiceIP("p", loc, "c1", "default.kubernetes", netip.Addr{})
			return err
		}},
		{name: "service IP, explicit", m: func(tx *Txn) error {
			_, err := tx.AllocateServiceIP("p", loc, "c1", "default.web", netip.MustParseAddr("172.20.0.5"))
			return err
		}},
		{name: "service IP taken twice", refused: InUse, m: func(tx *Txn) error {
			_, err := tx.AllocateServiceIP("p", loc, "c1", "default.other", netip.MustParseAddr("172.20.0.5"))
			return err
		}},
		{name: "secondary range added: the network is re-indexed", m: func(tx *Txn) error {
			sn := tx.State().Subnet("p", "us-central1", "default")
			_, err := tx.SetSecondaryRanges("p", "us-central1", "default", sn.Fingerprint,
				append(slices.Clone(sn.Secondary), SecondaryRange{Name: "extra", Range: pfx("172.22.0.0/24")}))
			return err
		}},
		{name: "instance joins", m: func(tx *Txn) error {
			if _, _, err := tx.CreateInstance(CreateInstanceReq{Instance: Instance{Project: "p", Zone: loc, Name: "worker"},
				NICs: []NICSpec{{Subnet: "default", Aliases: []AliasSpec{{Bits: 32}}}}}); err != nil {
				return err
			}
			_, err := tx.JoinNode("p", loc, "c1", "", loc, "worker")
			return err
		}},
		{name: "pool grows", m: func(tx *Txn) error { _, err := tx.SetNodePoolSize("p", loc, "c1", "default-pool", 4); return err }},
		{name: "pool shrinks (the joined instance leaves too)", m: func(tx *Txn) error {
			_, err := tx.SetNodePoolSize("p", loc, "c1", "default-pool", 1)
			return err
		}},
		{name: "second pool", m: func(tx *Txn) error {
			_, _, err := tx.CreateNodePool("p", loc, "c1", NodePool{Name: "big", MaxPodsPerNode: 32}, 2)
			return err
		}},
		{name: "pods range exhausted", refused: Exhausted, m: func(tx *Txn) error {
			_, err := tx.SetNodePoolSize("p", loc, "c1", "default-pool", 40)
			return err
		}},
		{name: "service released", m: func(tx *Txn) error { _, err := tx.ReleaseServiceIP("p", loc, "c1", "default.web"); return err }},
		{name: "address moves from a service to an interface in one change", m: func(tx *Txn) error {
			sv, err := tx.ReleaseServiceIP("p", loc, "c1", "default.kubernetes")
			if err != nil {
				return err
			}
			_, err = tx.UpdateAliases("p", loc, "worker", "nic0", fp(tx.State(), "worker"),
				append(aliasSpecs(tx.State().NICs(tx.State().Instance("p", loc, "worker"))[0]), AliasSpec{Prefix: netip.PrefixFrom(sv.IP, 32), RangeName: "services-range"}))
			return err
		}},
		{name: "and back to a service", m: func(tx *Txn) error {
			ifc := tx.State().NICs(tx.State().Instance("p", loc, "worker"))[0]
			specs := aliasSpecs(ifc)
			ip := specs[len(specs)-1].Prefix.Addr()
			if _, err := tx.UpdateAliases("p", loc, "worker", "nic0", ifc.Fingerprint, specs[:len(specs)-1]); err != nil {
				return err
			}
			_, err := tx.AllocateServiceIP("p", loc, "c1", "default.kubernetes", ip)
			return err
		}},
		{name: "services range exhausted", m: func(tx *Txn) error {
			for i := range 5 {
				if _, err := tx.AllocateServiceIP("p", loc, "c1", fmt.Sprintf("ns.s%d", i), netip.Addr{}); err != nil {
					return err
				}
			}
			return nil
		}},
		{name: "no service IP left", refused: Exhausted, m: func(tx *Txn) error {
			_, err := tx.AllocateServiceIP("p", loc, "c1", "ns.more", netip.Addr{})
			return err
		}},
		{name: "cluster with ranges aliasnet creates", m: func(tx *Txn) error {
			_, _, err := tx.CreateCluster(CreateClusterReq{
				Cluster:  Cluster{Project: "p", Location: loc, Name: "c2", Network: "default", Subnet: "default", NodePools: []NodePool{{Name: "p"}}},
				PodsCIDR: "/22", ServicesCIDR: "/28", PoolSizes: []int{1}})
			return err
		}},
		{name: "grouped: services in both clusters and a node leaving", m: func(tx *Txn) error {
			if _, err := tx.AllocateServiceIP("p", loc, "c2", "default.kubernetes", netip.Addr{}); err != nil {
				return err
			}
			if _, err := tx.ReleaseServiceIP("p", loc, "c1", "ns.s0"); err != nil {
				return err
			}
			n := tx.State().ClusterNodes("p", loc, "c1")[0]
			return tx.RemoveNode("p", loc, "c1", n.Zone, n.Instance)
		}},
		{name: "pool deleted", m: func(tx *Txn) error { return tx.DeleteNodePool("p", loc, "c1", "big") }},
		{name: "cluster with created ranges deleted", m: func(tx *Txn) error { return tx.DeleteCluster("p", loc, "c2") }},
		{name: "secondary range removed: re-indexed again", m: func(tx *Txn) error {
			sn := tx.State().Subnet("p", "us-central1", "default")
			_, err := tx.SetSecondaryRanges("p", "us-central1", "default", sn.Fingerprint,
				slices.DeleteFunc(slices.Clone(sn.Secondary), func(r SecondaryRange) bool { return r.Name == "extra" }))
			return err
		}},
		{name: "cluster on existing ranges deleted", m: func(tx *Txn) error { return tx.DeleteCluster("p", loc, "c1") }},
	}
	for _, st := range steps {
		tx := src.tx()
		err := st.m(tx)
		if st.refused != 0 {
			tx.Rollback()
			if CodeOf(err) != st.refused {
				t.Fatalf("%s: want %v, got %v", st.name, st.refused, err)
			}
		} else {
			if err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
			replicate(t, tx.Changes(), dst)
		}
		if got, want := dumpState(dst), dumpState(src.s); got != want {
			t.Fatalf("%s: replica differs\nsource:\n%s\nreplica:\n%s", st.name, want, got)
		}
		if got, want := k8sProbe(t, dst), k8sProbe(t, src.s); got != want {
			t.Fatalf("%s: replica decides differently\nsource:\n%s\nreplica:\n%s", st.name, want, got)
		}
		if got, want := dumpState(dst), dumpState(src.s); got != want {
			t.Fatalf("%s: a rolled-back probe changed a state", st.name)
		}
		reloaded, err := Load(snapshotOf(src.s))
		if err != nil {
			t.Fatal(err)
		}
		if got, want := dumpState(dst), dumpState(reloaded); got != want {
			t.Fatalf("%s: replica differs from Load\nload:\n%s\nreplica:\n%s", st.name, want, got)
		}
	}
}

func aliasSpecs(ifc *Interface) []AliasSpec {
	var out []AliasSpec
	for _, a := range ifc.Aliases {
		out = append(out, AliasSpec{Prefix: a.Range, RangeName: a.RangeName})
	}
	return out
}
