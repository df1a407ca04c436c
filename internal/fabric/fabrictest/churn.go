// Package fabrictest holds test helpers shared by the fabric's and the
// lab's tests: a generator of random control-plane changes that a data
// plane following the control plane must keep up with.
package fabrictest

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"

	"github.com/aliasnet/aliasnet/internal/model"
)

// AddCluster gives a world what Churn's node changes need: secondary
// ranges "k8s-pods" (172.24.0.0/16) and "k8s-svc" (172.25.0.0/20) on
// subnet s1 of network "vpc" in us-central1, and cluster "k" using them
// with an empty node pool "pool" in zone. do runs a mutation that must
// succeed.
func AddCluster(s *model.State, do func(func(tx *model.Txn) error), project, zone string) {
	do(func(tx *model.Txn) error {
		sn := s.Subnet(project, "us-central1", "s1")
		_, err := tx.SetSecondaryRanges(project, "us-central1", "s1", sn.Fingerprint, append(slices.Clone(sn.Secondary),
			model.SecondaryRange{Name: "k8s-pods", Range: netip.MustParsePrefix("172.24.0.0/16")},
			model.SecondaryRange{Name: "k8s-svc", Range: netip.MustParsePrefix("172.25.0.0/20")}))
		return err
	})
	do(func(tx *model.Txn) error {
		_, _, err := tx.CreateCluster(model.CreateClusterReq{Cluster: model.Cluster{Project: project, Location: zone, Name: "k", Network: "vpc",
			Subnet: "us-central1/s1", PodsRange: "k8s-pods", ServicesRange: "k8s-svc", MaxPodsPerNode: 32,
			NodePools: []model.NodePool{{Name: "pool", Zones: []string{zone}}}}, PoolSizes: []int{0}})
		return err
	})
}

// Churn makes random changes to a world: mostly the instance-local ones a
// fabric builder patches (aliases set, moved and cleared, instances
// stopped and started, nodes joining and leaving a cluster), and now and
// then ones it must compile afresh (instances created and deleted, tags,
// firewall rules, static routes).
//
// The world must have, in Project: a network "vpc" with subnet "s1" in
// Zone's region whose primary range holds PrimaryBase's /24 and whose
// secondary range "pods" holds the five /24s from AliasBase, and a cluster
// "k" (pods range "k8s-pods") with node pool "pool" in Zone.
type Churn struct {
	S       *model.State
	R       *rand.Rand
	Project string
	Zone    string
	// VMs are the instances changes pick from; Create adds to it.
	VMs []string
	// Keep lists instances never deleted.
	Keep []string
	// AliasBase starts the five /24s /32 aliases come from: four for
	// alias sets, the fifth for the address moved between instances.
	AliasBase netip.Addr
	// PrimaryBase starts a /24 of the primary range that now and then
	// gives an alias outside any secondary range.
	PrimaryBase netip.Addr
	// Try runs one mutation, reporting whether it committed.
	Try func(m func(tx *model.Txn) error) bool
	n   int
}

// Create adds an instance with one NIC in s1.
func (c *Churn) Create(name string) bool {
	ok := c.Try(func(tx *model.Txn) error {
		_, _, err := tx.CreateInstance(model.CreateInstanceReq{Instance: model.Instance{Project: c.Project, Zone: c.Zone, Name: name},
			NICs: []model.NICSpec{{Subnet: "s1"}}})
		return err
	})
	if ok {
		c.VMs = append(c.VMs, name)
	}
	return ok
}

// SetAliases replaces vm's nic0 aliases (a cluster node keeps its pods).
func (c *Churn) SetAliases(vm string, specs []model.AliasSpec) bool {
	return c.Try(func(tx *model.Txn) error {
		ifc := c.S.Interface(c.Project, c.S.Instance(c.Project, c.Zone, vm).NICs[0])
		if n := c.S.NodeOf(c.Project, c.Zone, vm); n != nil {
			specs = append(specs, model.AliasSpec{Prefix: n.PodRange, RangeName: "k8s-pods"})
		}
		_, err := tx.UpdateAliases(c.Project, c.Zone, vm, "nic0", ifc.Fingerprint, specs)
		return err
	})
}

// host32 is the /32 of host in the b-th /24 from base.
func host32(base netip.Addr, b, host int) netip.Prefix {
	a := base.As4()
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{a[0], a[1], a[2] + byte(b), byte(host)}), 32)
}

// Step makes one random change and says what it was.
func (c *Churn) Step() string {
	c.n++
	r := c.R
	p, z := c.Project, c.Zone
	vm := c.VMs[r.IntN(len(c.VMs))]
	switch k := r.IntN(100); {
	case k < 45: // a few /32s and sometimes an automatically picked block
		var specs []model.AliasSpec
		for range r.IntN(4) {
			specs = append(specs, model.AliasSpec{Prefix: host32(c.AliasBase, r.IntN(4), r.IntN(256)), RangeName: "pods"})
		}
		if r.IntN(3) == 0 {
			specs = append(specs, model.AliasSpec{Bits: 28, RangeName: "pods"})
		}
		if r.IntN(4) == 0 {
			specs = append(specs, model.AliasSpec{Prefix: host32(c.PrimaryBase, 0, r.IntN(256))})
		}
		c.SetAliases(vm, specs)
		return "aliases " + vm
	case k < 55: // move a /32 from one instance to another in two commits
		a := host32(c.AliasBase, 4, r.IntN(8))
		for _, v := range c.VMs {
			ifc := c.S.Interface(p, c.S.Instance(p, z, v).NICs[0])
			if slices.ContainsFunc(ifc.Aliases, func(x model.Alias) bool { return x.Range == a }) {
				c.SetAliases(v, nil)
			}
		}
		c.SetAliases(vm, []model.AliasSpec{{Prefix: a, RangeName: "pods"}})
		return "move " + a.String() + " to " + vm
	case k < 65:
		st := model.InstanceStopped
		if r.IntN(2) == 0 {
			st = model.InstanceRunning
		}
		c.Try(func(tx *model.Txn) error { _, err := tx.SetInstanceStatus(p, z, vm, st); return err })
		return "status " + vm + " " + st
	case k < 73:
		if c.S.NodeOf(p, z, vm) != nil {
			c.Try(func(tx *model.Txn) error { return tx.RemoveNode(p, z, "k", z, vm) })
			return "node leaves " + vm
		}
		c.Try(func(tx *model.Txn) error { _, err := tx.JoinNode(p, z, "k", "pool", z, vm); return err })
		return "node joins " + vm
	case k < 79:
		name := fmt.Sprintf("churn%d", c.n)
		c.Create(name)
		return "create " + name
	case k < 83:
		if !slices.Contains(c.Keep, vm) && c.Try(func(tx *model.Txn) error { return tx.DeleteInstance(p, z, vm) }) {
			c.VMs = slices.DeleteFunc(c.VMs, func(s string) bool { return s == vm })
		}
		return "delete " + vm
	case k < 88:
		var tags []string
		if r.IntN(2) == 0 {
			tags = []string{"web"}
		}
		c.Try(func(tx *model.Txn) error { _, err := tx.SetTags(p, z, vm, tags); return err })
		return "tags " + vm
	case k < 94:
		name := fmt.Sprintf("churn-fw%d", r.IntN(3))
		if c.Try(func(tx *model.Txn) error { return tx.DeleteFirewall(p, name) }) {
			return "delete firewall " + name
		}
		c.Try(func(tx *model.Txn) error {
			_, err := tx.CreateFirewall(model.Firewall{Project: p, Name: name, Network: "vpc", Direction: model.Ingress, Priority: 800 + r.IntN(200),
				Allowed:      []model.FirewallProtocol{{Protocol: "tcp", Ports: []string{"22"}}},
				SourceRanges: []netip.Prefix{netip.PrefixFrom(c.AliasBase, 22).Masked()}, TargetTags: []string{"web"}})
			return err
		})
		return "create firewall " + name
	default:
		name := fmt.Sprintf("churn-r%d", r.IntN(2))
		if c.Try(func(tx *model.Txn) error { return tx.DeleteRoute(p, name) }) {
			return "delete route " + name
		}
		c.Try(func(tx *model.Txn) error {
			_, err := tx.CreateRoute(model.Route{Project: p, Name: name, Network: "vpc",
				DestRange: netip.MustParsePrefix(fmt.Sprintf("192.168.%d.0/24", 100+r.IntN(50))),
				Priority:  1000, NextHopInstance: z + "/" + vm})
			return err
		})
		return "create route " + name + " via " + vm
	}
}
