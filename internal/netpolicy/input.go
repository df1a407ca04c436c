// Package netpolicy decides what happens to a packet in an aliasnet VPC:
// which route it takes, whether anti-spoofing passes it, which firewall rule
// allows or denies it, and which instance and interface receive it. It is
// pure: it compiles a snapshot of model resources into lookup structures
// (bart tables) and answers from them. The same compiled form feeds Trace
// (the explanation), EffectiveRoutes, and Fabric (the plain description a
// data plane programs into netlink/nftables), so that the three agree.
//
// GCE semantics implemented here, in order of a packet's life:
//
//  1. Anti-spoofing: a packet leaving an interface must have as source the
//     interface's primary IP or an address inside one of its alias IP
//     ranges, unless the instance has canIpForward.
//  2. Egress firewall of the sending interface (network of that interface).
//  3. Route: subnet routes (every primary and secondary range of the
//     network), peering subnet routes (the ranges of ACTIVE peers), static
//     routes applicable to the instance (no tags, or a tag it has) and
//     dynamic routes. Static and dynamic routes whose destination equals or
//     fits within a subnet route are never used. Longest prefix wins; then
//     the lowest priority number; then static before dynamic; then name.
//  4. The next hop: the instance/interface owning the destination (primary
//     IP or inside an alias range) in the local or peered network; a
//     next-hop instance; the default internet gateway (needs an external
//     IP); or a BGP next hop outside the VPC.
//  5. Ingress firewall of the receiving interface (its network's rules).
//  6. Destination check: an interface accepts only packets addressed to its
//     primary IP or alias ranges, unless the instance has canIpForward.
//
// Firewall rules are stateful (replies of an allowed connection pass);
// Trace evaluates the first packet of a connection. Among the rules that
// apply to an instance and match a packet the lowest priority number wins,
// and a deny wins over an allow at equal priority; the implied rules (deny
// all ingress, allow all egress) have priority 65535. sourceTags match the
// primary IP of tagged instances' interfaces in the rule's network, never
// their alias IPs; sourceRanges match any address, aliases included.
package netpolicy

import (
	"github.com/aliasnet/aliasnet/internal/model"
)

// Input is what a compilation reads: the resources of one project and of
// the networks its networks are peered with. Resources are not modified.
type Input struct {
	Networks   []*model.Network
	Subnets    []*model.Subnet
	Instances  []*model.Instance
	Interfaces []*model.Interface
	Routes     []StaticRoute
	Firewalls  []*model.Firewall
	Dynamic    []*model.DynamicRoutes
}

// StaticRoute is a static route with its next hop resolved by the model
// (model.State.RouteNextHop), so warnings shown by the API and the routes
// netpolicy uses come from one rule.
type StaticRoute struct {
	*model.Route
	// Interface is the ID of the interface that takes the route's packets
	// ("" for the internet gateway or an unusable route).
	Interface string
	Warnings  []model.RouteWarning
}

// FromState collects the Input for a project: all its resources, plus the
// networks (with their subnets, instances, interfaces and firewall rules)
// that its networks peer with in other projects.
func FromState(st *model.State, project string) Input {
	var in Input
	seen := map[string]bool{}
	addProject := func(p string, only map[string]bool) {
		for _, n := range st.Networks(p) {
			if only != nil && !only[n.Name] {
				continue
			}
			if seen[p+"/"+n.Name] {
				continue
			}
			seen[p+"/"+n.Name] = true
			in.Networks = append(in.Networks, n)
			in.Subnets = append(in.Subnets, st.SubnetsOfNetwork(p, n.Name)...)
			in.Firewalls = append(in.Firewalls, st.FirewallsOfNetwork(p, n.Name)...)
			if only == nil {
				for _, r := range st.RoutesOfNetwork(p, n.Name) {
					_, ifc, ws := st.RouteNextHop(r)
					sr := StaticRoute{Route: r, Warnings: ws}
					if ifc != nil {
						sr.Interface = ifc.ID
					}
					in.Routes = append(in.Routes, sr)
				}
				if d := st.DynamicRoutesOf(p, n.Name); d != nil {
					in.Dynamic = append(in.Dynamic, d)
				}
			}
		}
		for _, ifc := range st.Interfaces(p) {
			if only == nil || only[ifc.Network] {
				in.Interfaces = append(in.Interfaces, ifc)
			}
		}
		for _, inst := range st.Instances(p, "") {
			if only == nil {
				in.Instances = append(in.Instances, inst)
				continue
			}
			for _, ifc := range st.NICs(inst) {
				if only[ifc.Network] {
					in.Instances = append(in.Instances, inst)
					break
				}
			}
		}
	}
	addProject(project, nil)
	others := map[string]map[string]bool{}
	for _, n := range st.Networks(project) {
		for _, pe := range n.Peerings {
			pp, pn := model.ParseNetworkRef(pe.Peer, project)
			if pp == project {
				continue
			}
			if others[pp] == nil {
				others[pp] = map[string]bool{}
			}
			others[pp][pn] = true
		}
	}
	for pp, nets := range others {
		addProject(pp, nets)
	}
	return in
}
