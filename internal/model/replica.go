package model

import (
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
)

// ApplyRemote brings the state up to date with a change another writer
// (another replica) committed: puts holds the resources as they are now,
// deleted the store keys that were removed. It re-indexes only what the
// change touches: an interface's addresses incrementally, a network's
// whole range index when one of its subnets changed (then its service IPs
// are claimed again), the EIP index when an EIP changed, and for
// Kubernetes clusters, nodes and service IPs the cluster indexes and the
// service IPs' addresses (k8sRelease, k8sClaim). Everything else is a
// plain replacement, as in Load.
//
// It is not a mutation (nothing to undo, no Change recorded). An error
// means the result would break an invariant or the change holds a key of a
// kind this function does not know; the caller then rebuilds the whole
// state with Load, which is always correct.
func (s *State) ApplyRemote(puts Snapshot, deleted []string) error {
	// Kinds added to Snapshot after this function was written are not
	// applied here: say so, and the caller reloads.
	v := reflect.ValueOf(puts)
	for i := range v.NumField() {
		if f := v.Field(i); f.Kind() == reflect.Slice && f.Len() > 0 && !appliedKinds[v.Type().Field(i).Name] {
			return fmt.Errorf("apply: %s are not applied incrementally", v.Type().Field(i).Name)
		}
	}
	reindex := map[netRef]bool{}
	eipsChanged := len(puts.EIPs) > 0
	var k8s *k8sDelta
	if K8sChange(puts, deleted) {
		k8s = &k8sDelta{puts: puts}
	}

	// Classify deletions first.
	var delIfcs []*Interface
	for _, k := range deleted {
		parts := strings.Split(k, "/")
		if len(parts) < 4 || parts[0] != "projects" {
			return fmt.Errorf("apply: unknown key %q", k)
		}
		p := s.proj(parts[1])
		rest := parts[2:]
		switch {
		case len(rest) == 3 && rest[0] == "global" && rest[1] == "networks":
			delete(p.networks, rest[2])
			reindex[netRef{p.name, rest[2]}] = true
		case len(rest) == 4 && rest[0] == "regions" && rest[2] == "subnetworks":
			if sn := p.subnets[rest[1]+"/"+rest[3]]; sn != nil {
				reindex[netRef{p.name, sn.Network}] = true
				delete(p.subnets, rest[1]+"/"+rest[3])
			}
		case len(rest) == 4 && rest[0] == "zones" && rest[2] == "instances":
			delete(p.instances, rest[1]+"/"+rest[3])
		case len(rest) == 2 && rest[0] == "interfaces":
			if ifc := p.interfaces[rest[1]]; ifc != nil {
				delIfcs = append(delIfcs, ifc)
			}
		case len(rest) == 3 && rest[0] == "global" && rest[1] == "instanceTemplates":
			delete(p.templates, rest[2])
		case len(rest) == 2 && rest[0] == "eips":
			delete(p.eips, rest[1])
			eipsChanged = true
		case len(rest) == 3 && rest[0] == "global" && rest[1] == "routes":
			delete(p.routes, rest[2])
		case len(rest) == 3 && rest[0] == "global" && rest[1] == "firewalls":
			delete(p.firewalls, rest[2])
		case len(rest) == 3 && rest[0] == "global" && rest[1] == "dynamicRoutes":
			delete(p.dynamic, rest[2])
		case len(rest) == 4 && rest[0] == "regions" && rest[2] == "routers":
			delete(p.routers, rest[1]+"/"+rest[3])
		case len(rest) == 2 && rest[0] == "managedZones":
			delete(p.dnsZones, rest[1])
		case rest[0] == "locations" && k8s != nil:
			if !k8s.deleted(p.name, rest) {
				return fmt.Errorf("apply: unknown key %q", k)
			}
		default:
			return fmt.Errorf("apply: unknown key %q", k)
		}
	}
	for _, n := range puts.Networks {
		s.proj(n.Project).networks[n.Name] = n
	}
	for _, sn := range puts.Subnets {
		p := s.proj(sn.Project)
		if old := p.subnets[sn.Region+"/"+sn.Name]; old != nil {
			reindex[netRef{p.name, old.Network}] = true
		}
		p.subnets[sn.Region+"/"+sn.Name] = sn
		reindex[netRef{p.name, sn.Network}] = true
	}
	// Interfaces: release every old address first, then claim the new
	// ones, so an address that moved between two interfaces of the change
	// does not collide with itself. Networks about to be re-indexed are
	// skipped (re-indexing claims everything again).
	for _, ifc := range delIfcs {
		p := s.projects[ifc.Project]
		if !reindex[netRef{p.name, ifc.Network}] {
			s.unindexInterface(p, ifc)
		}
		delete(p.interfaces, ifc.ID)
	}
	for _, ifc := range puts.Interfaces {
		p := s.proj(ifc.Project)
		if old := p.interfaces[ifc.ID]; old != nil {
			if !reindex[netRef{p.name, old.Network}] {
				s.unindexInterface(p, old)
			}
		}
	}
	// Service IPs are released before any interface claims and claimed
	// after, for the same reason (an address may move between a service
	// and an interface in one change).
	if k8s != nil {
		if err := s.k8sRelease(k8s, reindex); err != nil {
			return err
		}
	}
	for _, ifc := range puts.Interfaces {
		p := s.proj(ifc.Project)
		p.interfaces[ifc.ID] = ifc
		if reindex[netRef{p.name, ifc.Network}] {
			continue
		}
		p.byIP[netAddr{ifc.Network, ifc.IP}] = ifc.ID
		if err := s.indexInterface(p, ifc); err != nil {
			return fmt.Errorf("apply interface %s: %w", InterfaceKey(ifc.Project, ifc.ID), err)
		}
	}
	for _, in := range puts.Instances {
		s.proj(in.Project).instances[in.Zone+"/"+in.Name] = in
	}
	for _, it := range puts.Templates {
		s.proj(it.Project).templates[it.Name] = it
	}
	for _, r := range puts.Routes {
		s.proj(r.Project).routes[r.Name] = r
	}
	for _, f := range puts.Firewalls {
		s.proj(f.Project).firewalls[f.Name] = f
	}
	for _, d := range puts.Dynamic {
		s.proj(d.Project).dynamic[d.Network] = d
	}
	for _, r := range puts.Routers {
		s.proj(r.Project).routers[r.Region+"/"+r.Name] = r
	}
	for _, z := range puts.DNSZones {
		s.proj(z.Project).dnsZones[z.Name] = z
	}
	for _, e := range puts.EIPs {
		s.proj(e.Project).eips[e.ID] = e
	}
	if k8s != nil {
		if err := s.k8sClaim(k8s, reindex); err != nil {
			return err
		}
	}
	for ref := range reindex {
		if err := s.reindexNetwork(s.proj(ref.project), ref.network); err != nil {
			return fmt.Errorf("apply: re-index network %s: %w", NetworkKey(ref.project, ref.network), err)
		}
		// The rebuilt pools hold what subnets and interfaces claim;
		// service IPs are held by their own records.
		if err := s.ReclaimServiceIPs(ref.project, ref.network); err != nil {
			return fmt.Errorf("apply: re-index network %s: %w", NetworkKey(ref.project, ref.network), err)
		}
	}
	if eipsChanged {
		clear(s.eipAddrs)
		for _, p := range s.projects {
			for _, e := range p.eips {
				if prev, ok := s.eipAddrs[e.Address]; ok {
					return fmt.Errorf("apply: address %s held by EIPs %s and %s/%s", e.Address, prev, e.Project, e.ID)
				}
				s.eipAddrs[e.Address] = e.Project + "/" + e.ID
			}
		}
		if err := s.Configure(s.cfg); err != nil {
			return fmt.Errorf("apply: EIP pools: %w", err)
		}
	}
	return nil
}

// appliedKinds are the Snapshot fields ApplyRemote handles.
var appliedKinds = map[string]bool{"Networks": true, "Subnets": true, "Instances": true, "Interfaces": true,
	"Templates": true, "EIPs": true, "Routes": true, "Firewalls": true, "Dynamic": true, "Routers": true, "DNSZones": true,
	"Clusters": true, "ClusterNodes": true, "ServiceIPs": true}

// netRef names a network across projects.
type netRef struct{ project, network string }

// unindexInterface releases what indexInterface claimed for ifc.
func (s *State) unindexInterface(p *project, ifc *Interface) {
	if p.byIP[netAddr{ifc.Network, ifc.IP}] == ifc.ID {
		delete(p.byIP, netAddr{ifc.Network, ifc.IP})
	}
	ni := p.nets[ifc.Network]
	if ni == nil {
		return
	}
	o, ok := s.ownerIdx[OwnerRef{Kind: "interface", Key: InterfaceKey(p.name, ifc.ID)}]
	if !ok {
		return
	}
	pfxs := []netip.Prefix{netip.PrefixFrom(ifc.IP, ifc.IP.BitLen())}
	for _, a := range ifc.Aliases {
		pfxs = append(pfxs, a.Range)
	}
	for _, pfx := range slices.Compact(pfxs) {
		if e, ok := ni.rangeFor(pfx); ok {
			if holder, ok := e.pool.OwnerOf(pfx); ok && holder == o {
				_ = e.pool.Release(pfx)
			}
		}
	}
}

// reindexNetwork rebuilds a network's range index from its subnets and
// re-claims every address of its interfaces, as Load does.
func (s *State) reindexNetwork(p *project, network string) error {
	delete(p.nets, network)
	for a := range p.byIP {
		if a.network == network {
			delete(p.byIP, a)
		}
	}
	var sns []*Subnet
	for _, sn := range p.subnets {
		if sn.Network == network {
			sns = append(sns, sn)
		}
	}
	slices.SortFunc(sns, func(a, b *Subnet) int { return strings.Compare(a.Region+"/"+a.Name, b.Region+"/"+b.Name) })
	for _, sn := range sns {
		if err := s.indexSubnet(p, sn); err != nil {
			return fmt.Errorf("subnet %s: %w", SubnetKey(sn.Project, sn.Region, sn.Name), err)
		}
	}
	for _, ifc := range p.interfaces {
		if ifc.Network != network {
			continue
		}
		p.byIP[netAddr{ifc.Network, ifc.IP}] = ifc.ID
		if err := s.indexInterface(p, ifc); err != nil {
			return fmt.Errorf("interface %s: %w", InterfaceKey(ifc.Project, ifc.ID), err)
		}
	}
	return nil
}
