package model

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// CreateNetwork adds a network. An auto-mode network gets one subnet per
// shipped region, named like the network, from GCE's auto-mode table.
func (t *Txn) CreateNetwork(n Network) (*Network, error) {
	if err := ValidName("name", n.Name); err != nil {
		return nil, err
	}
	p := t.s.proj(n.Project)
	if p.networks[n.Name] != nil {
		return nil, &Error{Code: AlreadyExists, Reason: fmt.Sprintf("The resource '%s' already exists", NetworkKey(n.Project, n.Name))}
	}
	if n.MTU != 0 && (n.MTU < 1300 || n.MTU > 8896) {
		return nil, errf(Invalid, "mtu", itoa(n.MTU), "MTU must be between 1300 and 8896.")
	}
	for i, b := range n.CIDRBlocks {
		if err := checkUnicastRange(fmt.Sprintf("cidrBlocks[%d]", i), b); err != nil {
			return nil, err
		}
		for _, c := range n.CIDRBlocks[:i] {
			if b.Overlaps(c) {
				return nil, errf(Invalid, fmt.Sprintf("cidrBlocks[%d]", i), b.String(), "CIDR block %s overlaps %s.", b, c)
			}
		}
	}
	nn := n
	nn.ID = t.NewID()
	nn.Created = t.Now
	nn.Peerings = nil
	if nn.RoutingMode == "" {
		nn.RoutingMode = "REGIONAL"
	}
	t.putNetwork(p, &nn)
	if nn.AutoMode {
		for _, rg := range Regions {
			if _, err := t.createSubnet(Subnet{Project: n.Project, Region: rg.Name, Name: n.Name, Network: n.Name,
				Range: rg.AutoCIDR, Reserve: ReserveGCE}, true); err != nil {
				return nil, err
			}
		}
	}
	return &nn, nil
}

// DeleteNetwork removes a network. Subnets that auto mode created go with
// it; any other subnet, an attached interface or a peering refuses it.
func (t *Txn) DeleteNetwork(project, name string) error {
	p := t.s.projects[project]
	if p == nil || p.networks[name] == nil {
		return notFound("network", NetworkKey(project, name))
	}
	n := p.networks[name]
	if len(n.Peerings) > 0 {
		return &Error{Code: FailedPrecondition, Reason: fmt.Sprintf("The network resource '%s' has peering '%s'; remove the peering first.", NetworkKey(project, name), n.Peerings[0].Name)}
	}
	for _, ifc := range sortedValues(p.interfaces, func(i *Interface) bool { return i.Network == name }) {
		return &Error{Code: FailedPrecondition, Reason: fmt.Sprintf("The network resource '%s' is already being used by '%s'", NetworkKey(project, name), t.s.interfaceUser(ifc))}
	}
	for _, r := range t.s.RoutersOfNetwork(project, name) {
		return &Error{Code: FailedPrecondition, Reason: fmt.Sprintf("The network resource '%s' is already being used by '%s'", NetworkKey(project, name), RouterKey(project, r.Region, r.Name))}
	}
	for _, user := range t.s.NetworkPolicyUsers(project, name) {
		if user == RouteKey(project, DefaultRouteName(n)) {
			continue
		}
		return &Error{Code: FailedPrecondition, Reason: fmt.Sprintf("The network resource '%s' is already being used by '%s'", NetworkKey(project, name), user)}
	}
	subs := t.s.SubnetsOfNetwork(project, name)
	for _, sn := range subs {
		if !(n.AutoMode && sn.Name == name && isAutoSubnet(sn)) {
			return &Error{Code: FailedPrecondition, Reason: fmt.Sprintf("The network resource '%s' is already being used by '%s'", NetworkKey(project, name), SubnetKey(project, sn.Region, sn.Name))}
		}
	}
	for _, sn := range subs {
		if err := t.DeleteSubnet(project, sn.Region, sn.Name); err != nil {
			return err
		}
	}
	if t.s.Route(project, DefaultRouteName(n)) != nil {
		if err := t.DeleteRoute(project, DefaultRouteName(n)); err != nil {
			return err
		}
	}
	t.deleteNetwork(p, name)
	return nil
}

// DefaultRouteName names a network's default internet route the way GCE
// does: "default-route-" and a hex string derived from the network.
func DefaultRouteName(n *Network) string { return fmt.Sprintf("default-route-%016x", n.ID) }

// CreateDefaultRoute adds the route to the internet gateway that GCE gives
// every new network (the GCE dialect calls it; a network made by another
// dialect has none). DeleteNetwork removes it with the network.
func (t *Txn) CreateDefaultRoute(project, network string) error {
	n := t.s.Network(project, network)
	if n == nil {
		return notFound("network", NetworkKey(project, network))
	}
	_, err := t.CreateRoute(Route{Project: project, Name: DefaultRouteName(n), Network: network,
		Description: "Default route to the Internet.", DestRange: netip.MustParsePrefix("0.0.0.0/0"),
		Priority: 1000, NextHopGateway: DefaultInternetGateway})
	return err
}

func isAutoSubnet(sn *Subnet) bool {
	rg, ok := RegionByName(sn.Region)
	return ok && rg.AutoCIDR.Addr() == sn.Range.Addr()
}

// interfaceUser names the resource that uses an interface.
func (s *State) interfaceUser(ifc *Interface) string {
	if ifc.Instance != "" {
		z, n, _ := strings.Cut(ifc.Instance, "/")
		return InstanceKey(ifc.Project, z, n)
	}
	return InterfaceKey(ifc.Project, ifc.ID)
}

// ParseNetworkRef splits "PROJECT/NETWORK"; a bare name is in defProject.
func ParseNetworkRef(ref, defProject string) (string, string) {
	if p, n, ok := strings.Cut(ref, "/"); ok {
		return p, n
	}
	return defProject, ref
}

// AddPeering peers network name with peer ("PROJECT/NETWORK"). The peering
// becomes ACTIVE once the peer has a matching peering back. No range of one
// network may overlap a range of the other.
func (t *Txn) AddPeering(project, name string, pe Peering) (*Network, error) {
	p := t.s.projects[project]
	if p == nil || p.networks[name] == nil {
		return nil, notFound("network", NetworkKey(project, name))
	}
	if err := ValidName("networkPeering.name", pe.Name); err != nil {
		return nil, err
	}
	pp, pn := ParseNetworkRef(pe.Peer, project)
	peerProj := t.s.projects[pp]
	if peerProj == nil || peerProj.networks[pn] == nil {
		return nil, &Error{Code: Invalid, Field: "networkPeering.network", Value: pe.Peer,
			Reason: fmt.Sprintf("The resource '%s' was not found", NetworkKey(pp, pn))}
	}
	if pp == project && pn == name {
		return nil, errf(Invalid, "networkPeering.network", pe.Peer, "A network cannot be peered with itself.")
	}
	n := p.networks[name]
	for _, e := range n.Peerings {
		if e.Name == pe.Name {
			return nil, &Error{Code: AlreadyExists, Reason: fmt.Sprintf("A peering named '%s' already exists on network '%s'.", pe.Name, name)}
		}
		if e.Peer == pp+"/"+pn {
			return nil, &Error{Code: AlreadyExists, Reason: fmt.Sprintf("Network '%s' is already peered with '%s'.", name, NetworkKey(pp, pn))}
		}
	}
	// Ranges must be disjoint between the two networks.
	for pfx, e := range p.nets[name].all() {
		if q, qe, ok := peerProj.nets[pn].overlapping(pfx); ok {
			return nil, &Error{Code: Invalid, Reason: fmt.Sprintf(
				"An IP range in the peer network (%s, %s) overlaps with an IP range in the local network (%s, %s). Peering requires disjoint ranges.",
				q, SubnetKey(pp, strings.Split(qe.subnet, "/")[0], strings.Split(qe.subnet, "/")[1]),
				pfx, SubnetKey(project, strings.Split(e.subnet, "/")[0], strings.Split(e.subnet, "/")[1]))}
		}
	}
	nn := *n
	nn.Peerings = slices.Clone(n.Peerings)
	state := "INACTIVE"
	peerNet := peerProj.networks[pn]
	for i, back := range peerNet.Peerings {
		if back.Peer == project+"/"+name {
			state = "ACTIVE"
			pn2 := *peerNet
			pn2.Peerings = slices.Clone(peerNet.Peerings)
			pn2.Peerings[i].State = "ACTIVE"
			t.putNetwork(peerProj, &pn2)
		}
	}
	nn.Peerings = append(nn.Peerings, Peering{Name: pe.Name, Peer: pp + "/" + pn, State: state, ExchangeSubnetRoutes: true})
	t.putNetwork(p, &nn)
	return &nn, nil
}

// RemovePeering deletes a peering; the peer's side turns INACTIVE.
func (t *Txn) RemovePeering(project, name, peering string) (*Network, error) {
	p := t.s.projects[project]
	if p == nil || p.networks[name] == nil {
		return nil, notFound("network", NetworkKey(project, name))
	}
	n := p.networks[name]
	i := slices.IndexFunc(n.Peerings, func(e Peering) bool { return e.Name == peering })
	if i < 0 {
		return nil, errf(Invalid, "name", peering, "There is no peering named '%s' on network '%s'.", peering, name)
	}
	peer := n.Peerings[i].Peer
	nn := *n
	nn.Peerings = slices.Delete(slices.Clone(n.Peerings), i, i+1)
	t.putNetwork(p, &nn)
	pp, pn := ParseNetworkRef(peer, project)
	if peerProj := t.s.projects[pp]; peerProj != nil && peerProj.networks[pn] != nil {
		peerNet := peerProj.networks[pn]
		for j, back := range peerNet.Peerings {
			if back.Peer == project+"/"+name {
				pn2 := *peerNet
				pn2.Peerings = slices.Clone(peerNet.Peerings)
				pn2.Peerings[j].State = "INACTIVE"
				t.putNetwork(peerProj, &pn2)
			}
		}
	}
	return &nn, nil
}

// peerIndexes returns the range indexes of every network peered with
// (project, name), active or not: GCE checks overlap against both.
func (s *State) peerIndexes(project, name string) []peerIdx {
	p := s.projects[project]
	if p == nil || p.networks[name] == nil {
		return nil
	}
	var out []peerIdx
	for _, pe := range p.networks[name].Peerings {
		pp, pn := ParseNetworkRef(pe.Peer, project)
		if peerProj := s.projects[pp]; peerProj != nil {
			out = append(out, peerIdx{project: pp, network: pn, idx: peerProj.nets[pn]})
		}
	}
	return out
}

type peerIdx struct {
	project, network string
	idx              *netIndex
}

// all iterates a network's ranges.
func (ni *netIndex) all() func(yield func(netip.Prefix, *rangeEntry) bool) {
	return func(yield func(netip.Prefix, *rangeEntry) bool) {
		if ni == nil {
			return
		}
		for pfx, e := range ni.ranges.All() {
			if !yield(pfx, e) {
				return
			}
		}
	}
}

// PeeredNetworks lists the networks a network has ACTIVE peerings with.
func (s *State) PeeredNetworks(project, name string) []string {
	n := s.Network(project, name)
	if n == nil {
		return nil
	}
	var out []string
	for _, pe := range n.Peerings {
		if pe.State == "ACTIVE" {
			out = append(out, pe.Peer)
		}
	}
	return out
}
