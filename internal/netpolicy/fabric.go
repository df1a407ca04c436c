package netpolicy

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"

	"github.com/aliasnet/aliasnet/internal/model"
)

// Desired is everything a data plane must program for one network, as
// plain data (no Linux types): the lab turns it into netlink routes and
// nftables sets/chains; a host agent into its own tables. It is compiled
// from the same Engine Trace uses, so a data plane that implements these
// semantics exactly agrees with Trace.
//
// Packet semantics a data plane must implement with it:
//
//  1. A packet from interface I: if AntiSpoof[I] is non-nil, its source
//     must be inside one of AntiSpoof[I] (else drop). nil: no check
//     (canIpForward).
//  2. Egress chain Interfaces[I].EgressChain: first matching rule decides
//     (conntrack: packets of established connections pass).
//  3. Route: longest prefix match of the destination in
//     RouteTables[Interfaces[I].RouteTable] (one winner per prefix).
//     NextHop.Kind network: Forwarding (longest match) names the receiving
//     interface; none: drop. peering: the peer network's Desired.Forwarding.
//     instance: NextHop.Interface. internet-gateway: out only if the
//     sending interface has an ExternalIP. external: towards NextHop.IP.
//  4. Ingress chain of the receiving interface: first matching rule decides.
//  5. Destination check: the receiving interface takes the packet if the
//     destination is its IP or in its Aliases, or its instance has
//     CanIPForward; otherwise drop.
type Desired struct {
	Project string `json:"project"`
	Network string `json:"network"`
	// Peers are the ACTIVE peerings: packets for their ranges cross to the
	// peer's fabric.
	Peers      []FabricPeer      `json:"peers,omitempty"`
	Interfaces []FabricInterface `json:"interfaces"`
	// Forwarding is the fabric's own delivery table: every interface's
	// primary IP (/32, /128) and alias ranges, pointing at the interface.
	// These are not VPC routes and spend no route quota.
	Forwarding  []Forward    `json:"forwarding"`
	RouteTables []RouteTable `json:"routeTables"`
	// AntiSpoof lists, per interface ID, the source prefixes allowed out
	// of it: the primary IP and the alias ranges. The value is nil when the
	// instance has canIpForward (anti-spoofing off).
	AntiSpoof map[string][]netip.Prefix `json:"antiSpoof"`
	// Chains are the firewall rule lists, one per group of instances that
	// the same rules apply to, per direction.
	Chains []Chain `json:"chains"`
}

// FabricPeer is an ACTIVE peering.
type FabricPeer struct {
	Peering string `json:"peering"`
	Network string `json:"network"` // PROJECT/NETWORK
}

// FabricInterface is an interface in the network.
type FabricInterface struct {
	ID         string         `json:"id"`
	Instance   string         `json:"instance,omitempty"` // PROJECT/ZONE/NAME; "" when detached
	Name       string         `json:"name"`               // nicN
	IP         netip.Addr     `json:"ip"`
	Aliases    []netip.Prefix `json:"aliases,omitempty"`
	ExternalIP netip.Addr     `json:"externalIp,omitzero"`
	// Running: only running instances send and receive.
	Running      bool     `json:"running"`
	CanIPForward bool     `json:"canIpForward,omitempty"`
	Tags         []string `json:"tags,omitempty"`
	// RouteTable, IngressChain and EgressChain index RouteTables and
	// Chains (by ID); -1 for detached interfaces.
	RouteTable   int `json:"routeTable"`
	IngressChain int `json:"ingressChain"`
	EgressChain  int `json:"egressChain"`
}

// Forward is one delivery entry of the fabric.
type Forward struct {
	Dst       netip.Prefix `json:"dst"`
	Interface string       `json:"interface"`
	// Alias is true for an alias range, false for the primary IP.
	Alias bool `json:"alias,omitempty"`
}

// RouteTable is the VPC routing table of the instances whose tags select
// the same static routes: the winning route per destination prefix.
type RouteTable struct {
	ID int `json:"id"`
	// Tags are the instance tags that select this table's tagged routes
	// ([] for the network's base table).
	Tags   []string `json:"tags"`
	Routes []Route  `json:"routes"`
}

// Chain is an ordered firewall rule list; the first matching rule decides.
// The last rule is the implied one (rules it shadows are left out).
type Chain struct {
	ID        int          `json:"id"`
	Direction string       `json:"direction"`
	Tags      []string     `json:"tags"` // the target tags selecting it
	Rules     []FabricRule `json:"rules"`
}

// FabricRule is a compiled firewall rule.
type FabricRule struct {
	Name     string `json:"name"`
	Priority int    `json:"priority"`
	// Action is "ALLOW" or "DENY".
	Action    string             `json:"action"`
	Implied   bool               `json:"implied,omitempty"`
	Protocols []model.ProtoMatch `json:"protocols"`
	// AnySource / AnyDestination: no constraint on that side. Otherwise
	// the address must be in Sources / Destinations. For INGRESS rules
	// Sources is sourceRanges plus the primary IPs (/32, /128) of the
	// instances with a source tag (SourceTagIPs lists those separately).
	AnySource      bool           `json:"anySource,omitempty"`
	Sources        []netip.Prefix `json:"sources,omitempty"`
	SourceTagIPs   []netip.Addr   `json:"sourceTagIps,omitempty"`
	AnyDestination bool           `json:"anyDestination,omitempty"`
	Destinations   []netip.Prefix `json:"destinations,omitempty"`
}

// Networks lists the compiled networks ("PROJECT/NETWORK").
func (e *Engine) Networks() []string {
	var out []string
	for _, n := range sortedNets(e) {
		out = append(out, n.key)
	}
	return out
}

// Fabric returns the desired data plane state of one network.
func (e *Engine) Fabric(project, network string) (*Desired, error) {
	nw := e.nets[project+"/"+network]
	if nw == nil {
		return nil, fmt.Errorf("netpolicy: network %s/%s is not compiled", project, network)
	}
	d := &Desired{Project: project, Network: network, AntiSpoof: map[string][]netip.Prefix{}}
	for _, p := range nw.peers {
		d.Peers = append(d.Peers, FabricPeer{Peering: p.name, Network: p.net.key})
	}
	tables := map[*view]int{}
	chains := map[*ruleSet]int{}
	tableOf := func(v *view, tags []string) int {
		if id, ok := tables[v]; ok {
			return id
		}
		id := len(d.RouteTables)
		tables[v] = id
		rt := RouteTable{ID: id, Tags: tags}
		for _, s := range v.tbl.AllSorted() {
			rt.Routes = append(rt.Routes, *s.win)
		}
		d.RouteTables = append(d.RouteTables, rt)
		return id
	}
	chainOf := func(s *ruleSet) int {
		if id, ok := chains[s]; ok {
			return id
		}
		id := len(d.Chains)
		chains[s] = id
		d.Chains = append(d.Chains, fabricChain(id, s))
		return id
	}
	tableOf(nw.base, []string{})
	for _, f := range nw.ifaces {
		fi := FabricInterface{ID: f.id, Name: f.name, IP: f.ip, Aliases: slices.Clone(f.aliases), ExternalIP: f.external,
			RouteTable: -1, IngressChain: -1, EgressChain: -1}
		if f.ip.IsValid() {
			d.Forwarding = append(d.Forwarding, Forward{Dst: netip.PrefixFrom(f.ip, f.ip.BitLen()), Interface: f.id})
		}
		for _, a := range f.aliases {
			d.Forwarding = append(d.Forwarding, Forward{Dst: a, Interface: f.id, Alias: true})
		}
		if f.inst != nil {
			fi.Instance = f.inst.key
			fi.Running = f.inst.status == model.InstanceRunning
			fi.CanIPForward = f.inst.canIPForward
			fi.Tags = slices.Clone(f.inst.tags)
			fi.RouteTable = tableOf(f.view, relevantTags(f.inst.tags, nw.taggedTags))
			fi.IngressChain = chainOf(f.in)
			fi.EgressChain = chainOf(f.eg)
			if f.inst.canIPForward {
				d.AntiSpoof[f.id] = nil
			} else {
				d.AntiSpoof[f.id] = append([]netip.Prefix{netip.PrefixFrom(f.ip, f.ip.BitLen())}, f.aliases...)
			}
		}
		d.Interfaces = append(d.Interfaces, fi)
	}
	slices.SortFunc(d.Forwarding, func(a, b Forward) int {
		return cmp.Or(a.Dst.Addr().Compare(b.Dst.Addr()), cmp.Compare(a.Dst.Bits(), b.Dst.Bits()))
	})
	return d, nil
}

func relevantTags(tags []string, rel map[string]bool) []string {
	out := []string{}
	for _, t := range tags {
		if rel[t] {
			out = append(out, t)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func fabricChain(id int, s *ruleSet) Chain {
	dir := model.Ingress
	if s.dir == dirOut {
		dir = model.Egress
	}
	c := Chain{ID: id, Direction: dir, Tags: slices.Clone(s.tags)}
	if c.Tags == nil {
		c.Tags = []string{}
	}
	// The implied rule takes its place by precedence (an allow at 65535
	// comes after the implied deny); rules after it can never match.
	rs := append(slices.Clone(s.rules), s.implied)
	slices.SortStableFunc(rs, precedence)
	rs = rs[:slices.Index(rs, s.implied)+1]
	for _, r := range rs {
		fr := FabricRule{Name: r.name, Priority: r.priority, Action: "ALLOW", Implied: r.implied, Protocols: r.protos}
		if r.deny {
			fr.Action = "DENY"
		}
		fr.AnySource = r.src.any
		if !fr.AnySource {
			fr.Sources = slices.Clone(r.src.prefix)
		}
		for a := range r.tagIPs {
			fr.SourceTagIPs = append(fr.SourceTagIPs, a)
		}
		slices.SortFunc(fr.SourceTagIPs, netip.Addr.Compare)
		fr.AnyDestination = r.dst.any
		if !fr.AnyDestination {
			fr.Destinations = slices.Clone(r.dst.prefix)
		}
		c.Rules = append(c.Rules, fr)
	}
	return c
}

// EffectiveRoute is a route as it applies to one interface.
type EffectiveRoute struct {
	Route
	// Status: ACTIVE (chosen for its destination), OVERRIDDEN (another
	// route of the same destination wins), INACTIVE (never used: see
	// Reason).
	Status string `json:"status"`
	// OverriddenBy names the winning route when OVERRIDDEN.
	OverriddenBy string `json:"overriddenBy,omitempty"`
}

// EffectiveRoutes lists the routes of an instance interface's network that
// apply to it (static routes with a tag it lacks are left out), by
// destination then preference.
func (e *Engine) EffectiveRoutes(project, zone, instance, nic string) ([]EffectiveRoute, error) {
	f, err := e.iface(project, zone, instance, nic)
	if err != nil {
		return nil, err
	}
	has := map[string]bool{}
	for _, t := range f.inst.tags {
		has[t] = true
	}
	var out []EffectiveRoute
	for _, r := range f.net.routes {
		if len(r.Tags) > 0 {
			ok := false
			for _, t := range r.Tags {
				ok = ok || has[t]
			}
			if !ok {
				continue
			}
		}
		er := EffectiveRoute{Route: *r, Status: "INACTIVE"}
		if r.Usable {
			s, _ := f.view.tbl.Get(r.Dst)
			if s != nil && s.win == r {
				er.Status = "ACTIVE"
			} else if s != nil {
				er.Status = "OVERRIDDEN"
				er.OverriddenBy = s.win.Name
			}
		}
		out = append(out, er)
	}
	slices.SortFunc(out, func(a, b EffectiveRoute) int {
		return cmp.Or(a.Dst.Addr().Compare(b.Dst.Addr()), cmp.Compare(a.Dst.Bits(), b.Dst.Bits()), better(&a.Route, &b.Route))
	})
	return out, nil
}
