package model

import (
	"fmt"
	"net/netip"
	"slices"
)

// Snapshot is every resource of the address plane, as the store holds it.
type Snapshot struct {
	Networks   []*Network
	Subnets    []*Subnet
	Instances  []*Instance
	Interfaces []*Interface
	Templates  []*InstanceTemplate
	EIPs       []*EIP
	// Network policy: static routes, firewall rules, learned routes.
	Routes    []*Route
	Firewalls []*Firewall
	Dynamic   []*DynamicRoutes
	// Cloud Router and Cloud DNS managed zones.
	Routers  []*Router
	DNSZones []*DNSZone
	// Kubernetes clusters, their nodes and service IPs (cluster.go).
	Clusters     []*Cluster
	ClusterNodes []*ClusterNode
	ServiceIPs   []*ServiceIP
}

// Load builds a State from stored resources: it re-creates the range
// indexes and re-claims every allocation. It fails on data that breaks an
// invariant (overlapping ranges, an address held twice), which would mean
// the store was corrupted or written by something else.
func Load(snap Snapshot) (*State, error) {
	s := NewState()
	for _, n := range snap.Networks {
		s.proj(n.Project).networks[n.Name] = n
	}
	for _, sn := range snap.Subnets {
		p := s.proj(sn.Project)
		if p.networks[sn.Network] == nil {
			return nil, fmt.Errorf("load subnet %s: network %q missing", SubnetKey(sn.Project, sn.Region, sn.Name), sn.Network)
		}
		p.subnets[sn.Region+"/"+sn.Name] = sn
		if err := s.indexSubnet(p, sn); err != nil {
			return nil, fmt.Errorf("load subnet %s: %w", SubnetKey(sn.Project, sn.Region, sn.Name), err)
		}
	}
	for _, ifc := range snap.Interfaces {
		p := s.proj(ifc.Project)
		p.interfaces[ifc.ID] = ifc
		p.byIP[netAddr{ifc.Network, ifc.IP}] = ifc.ID
		if err := s.indexInterface(p, ifc); err != nil {
			return nil, fmt.Errorf("load interface %s: %w", InterfaceKey(ifc.Project, ifc.ID), err)
		}
	}
	for _, in := range snap.Instances {
		s.proj(in.Project).instances[in.Zone+"/"+in.Name] = in
	}
	for _, it := range snap.Templates {
		s.proj(it.Project).templates[it.Name] = it
	}
	for _, r := range snap.Routes {
		s.proj(r.Project).routes[r.Name] = r
	}
	for _, f := range snap.Firewalls {
		s.proj(f.Project).firewalls[f.Name] = f
	}
	for _, d := range snap.Dynamic {
		s.proj(d.Project).dynamic[d.Network] = d
	}
	for _, r := range snap.Routers {
		s.proj(r.Project).routers[r.Region+"/"+r.Name] = r
	}
	for _, z := range snap.DNSZones {
		s.proj(z.Project).dnsZones[z.Name] = z
	}
	for _, e := range snap.EIPs {
		if err := s.indexEIP(e); err != nil {
			return nil, fmt.Errorf("load EIP %s: %w", EIPKey(e.Project, e.ID), err)
		}
	}
	if err := s.loadK8s(snap.Clusters, snap.ClusterNodes, snap.ServiceIPs); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *State) indexSubnet(p *project, sn *Subnet) error {
	ni := p.netIdx(sn.Network)
	add := func(name string, pfx netip.Prefix, reserve bool) error {
		if q, _, ok := ni.overlapping(pfx); ok {
			return fmt.Errorf("range %s overlaps %s", pfx, q)
		}
		pool, err := newPool(pfx)
		if err != nil {
			return err
		}
		if reserve {
			o := s.owner(OwnerRef{Kind: "reserved", Key: SubnetKey(sn.Project, sn.Region, sn.Name)})
			for _, a := range reservedAddrs(sn.Reserve, pfx) {
				if err := pool.Claim(netip.PrefixFrom(a, a.BitLen()), o); err != nil {
					return err
				}
			}
		}
		ni.ranges.Insert(pfx, &rangeEntry{subnet: sn.Region + "/" + sn.Name, name: name, pool: pool})
		return nil
	}
	if err := add("", sn.Range, true); err != nil {
		return err
	}
	for _, r := range sn.Secondary {
		if err := add(r.Name, r.Range, false); err != nil {
			return err
		}
	}
	if sn.Range6.IsValid() {
		return add(ipv6RangeName, sn.Range6, false)
	}
	return nil
}

func (s *State) indexInterface(p *project, ifc *Interface) error {
	region, name := splitKey(ifc.Subnet)
	sn := p.subnets[region+"/"+name]
	if sn == nil {
		return fmt.Errorf("subnet %q missing", ifc.Subnet)
	}
	ni := p.nets[sn.Network]
	o := s.owner(OwnerRef{Kind: "interface", Key: InterfaceKey(p.name, ifc.ID)})
	pfxs := []netip.Prefix{netip.PrefixFrom(ifc.IP, ifc.IP.BitLen())}
	for _, a := range ifc.Aliases {
		pfxs = append(pfxs, a.Range)
	}
	for _, pfx := range slices.Compact(pfxs) {
		e, ok := ni.rangeFor(pfx)
		if !ok {
			return fmt.Errorf("%s is outside every range of network %q", pfx, sn.Network)
		}
		if err := e.pool.Claim(pfx, o); err != nil {
			return err
		}
	}
	return nil
}
