package netpolicy

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/gaissmai/bart"

	"github.com/aliasnet/aliasnet/internal/model"
)

// Route kinds (GCE route types; PEERING_SUBNET is what GCE shows for
// subnet routes imported over a peering, DYNAMIC is GCE's BGP).
const (
	KindSubnet        = "SUBNET"
	KindPeeringSubnet = "PEERING_SUBNET"
	KindStatic        = "STATIC"
	KindDynamic       = "DYNAMIC"
)

// Next hop kinds.
const (
	HopNetwork  = "network"          // deliver to the owner of the address in this network
	HopPeering  = "peering"          // deliver to the owner in the peer network
	HopInstance = "instance"         // a next-hop instance's interface (nextHopInstance / nextHopIp)
	HopInternet = "internet-gateway" // default-internet-gateway
	HopExternal = "external"         // a BGP next hop outside the VPC
)

// NextHop is where a route sends packets.
type NextHop struct {
	Kind string `json:"kind"`
	// Network is "PROJECT/NETWORK" for HopNetwork and HopPeering.
	Network string `json:"network,omitempty"`
	// Peering is the peering's name (HopPeering).
	Peering string `json:"peering,omitempty"`
	// Instance is "PROJECT/ZONE/NAME" and Interface the interface ID
	// (HopInstance; a dynamic route whose next hop is an instance's
	// primary IP also resolves to HopInstance).
	Instance  string `json:"instance,omitempty"`
	Interface string `json:"interface,omitempty"`
	// IP is nextHopIp or the BGP next hop.
	IP netip.Addr `json:"ip,omitzero"`
}

// Route is one route of a network's table as netpolicy sees it.
type Route struct {
	Name     string       `json:"name"`
	Kind     string       `json:"kind"`
	Dst      netip.Prefix `json:"destRange"`
	Priority int          `json:"priority"`
	// Tags restrict a static route to instances with one of them.
	Tags    []string `json:"tags,omitempty"`
	NextHop NextHop  `json:"nextHop"`
	// Subnet ("REGION/NAME") and RangeName ("" for primary) describe a
	// subnet or peering subnet route; Peer is the peer "PROJECT/NETWORK".
	Subnet    string `json:"subnet,omitempty"`
	RangeName string `json:"rangeName,omitempty"`
	// Usable is false when the route is never chosen; Reason says why.
	Usable bool   `json:"usable"`
	Reason string `json:"reason,omitempty"`
	// Warnings are GCE's route warnings (a usable route may carry
	// NEXT_HOP_CANNOT_IP_FORWARD).
	Warnings []string `json:"warnings,omitempty"`

	rank int // kind order for ties: static before dynamic
}

func kindRank(k string) int {
	switch k {
	case KindSubnet:
		return 0
	case KindPeeringSubnet:
		return 1
	case KindStatic:
		return 2
	}
	return 3
}

// better orders routes of one destination: lowest priority number, then
// kind (subnet, peering subnet, static, dynamic), then name.
func better(a, b *Route) int {
	if c := cmp.Compare(a.Priority, b.Priority); c != 0 {
		return c
	}
	if c := cmp.Compare(a.rank, b.rank); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Name, b.Name); c != 0 {
		return c
	}
	return a.NextHop.IP.Compare(b.NextHop.IP)
}

// slot is one destination prefix of a route view: the chosen route and
// the other applicable candidates, best first.
type slot struct {
	win    *Route
	others []*Route
}

// view is the routing table of a set of instances (those to which the same
// tagged static routes apply).
type view struct {
	tbl *bart.Table[*slot]
	f4  *flat4 // IPv4 hot-path index of tbl
}

// Engine is a compiled snapshot. It is immutable and safe for concurrent
// use.
type Engine struct {
	nets   map[string]*netw  // "PROJECT/NETWORK"
	insts  map[string]*inst  // "PROJECT/ZONE/NAME"
	ifaces map[string]*iface // "PROJECT/ID"
}

type inst struct {
	key          string // PROJECT/ZONE/NAME
	project      string
	zone, name   string
	tags         []string
	canIPForward bool
	status       string
	nics         []*iface
}

type iface struct {
	key      string // PROJECT/ID
	id       string
	name     string // nicN
	inst     *inst  // nil when detached
	net      *netw
	ip       netip.Addr
	aliases  []netip.Prefix
	external netip.Addr
	view     *view
	in, eg   *ruleSet
}

type netw struct {
	key, project, name string
	peers              []peerRef
	subnets            *bart.Table[*Route] // subnet + peering subnet routes by range
	owners             *bart.Table[*iface] // primary /32|/128 and alias ranges
	routes             []*Route            // every candidate, for listings
	base               *view
	tagged             []*Route // usable tagged static routes
	taggedTags         map[string]bool
	views              map[string]*view
	fw                 *netFirewall
	ifaces             []*iface
}

type peerRef struct {
	name string // peering name
	net  *netw
}

// Compile builds an Engine from an Input.
func Compile(in Input) *Engine {
	e := &Engine{nets: map[string]*netw{}, insts: map[string]*inst{}, ifaces: map[string]*iface{}}
	for _, n := range in.Networks {
		k := n.Project + "/" + n.Name
		e.nets[k] = &netw{key: k, project: n.Project, name: n.Name,
			subnets: &bart.Table[*Route]{}, owners: &bart.Table[*iface]{}, views: map[string]*view{}}
	}
	// Peerings: exchanged only when both sides are ACTIVE.
	for _, n := range in.Networks {
		nw := e.nets[n.Project+"/"+n.Name]
		for _, pe := range n.Peerings {
			if pe.State != "ACTIVE" {
				continue
			}
			pp, pn := model.ParseNetworkRef(pe.Peer, n.Project)
			if peer := e.nets[pp+"/"+pn]; peer != nil {
				nw.peers = append(nw.peers, peerRef{name: pe.Name, net: peer})
			}
		}
	}
	for _, inst0 := range in.Instances {
		k := inst0.Project + "/" + inst0.Zone + "/" + inst0.Name
		e.insts[k] = &inst{key: k, project: inst0.Project, zone: inst0.Zone, name: inst0.Name,
			tags: slices.Clone(inst0.Tags), canIPForward: inst0.CanIPForward, status: inst0.Status}
	}
	ifcs := slices.Clone(in.Interfaces)
	slices.SortFunc(ifcs, func(a, b *model.Interface) int {
		return cmp.Or(cmp.Compare(a.Project, b.Project), cmp.Compare(a.Instance, b.Instance), cmp.Compare(a.Device, b.Device), cmp.Compare(a.ID, b.ID))
	})
	for _, mi := range ifcs {
		nw := e.nets[mi.Project+"/"+mi.Network]
		if nw == nil {
			continue
		}
		f := &iface{key: mi.Project + "/" + mi.ID, id: mi.ID, name: fmt.Sprintf("nic%d", mi.Device), net: nw, ip: mi.IP, external: mi.ExternalIP}
		if mi.Instance != "" {
			f.inst = e.insts[mi.Project+"/"+mi.Instance]
		}
		if f.inst == nil {
			// Detached (an Available ENI): it holds addresses but nothing
			// sends or receives through it.
			f.name = mi.ID
		}
		for _, a := range mi.Aliases {
			f.aliases = append(f.aliases, a.Range)
		}
		e.ifaces[f.key] = f
		nw.ifaces = append(nw.ifaces, f)
		if f.inst != nil {
			f.inst.nics = append(f.inst.nics, f)
		}
		if f.ip.IsValid() {
			nw.owners.Insert(netip.PrefixFrom(f.ip, f.ip.BitLen()), f)
		}
		for _, a := range f.aliases {
			nw.owners.Insert(a, f)
		}
	}
	// Subnet routes.
	for _, sn := range in.Subnets {
		nw := e.nets[sn.Project+"/"+sn.Network]
		if nw == nil {
			continue
		}
		add := func(name string, pfx netip.Prefix) {
			if !pfx.IsValid() {
				return
			}
			nw.subnets.Insert(pfx, &Route{
				Name: model.SubnetRouteName(sn.Project, sn.Network, pfx), Kind: KindSubnet, Dst: pfx, Priority: 0,
				NextHop: NextHop{Kind: HopNetwork, Network: nw.key}, Subnet: sn.Region + "/" + sn.Name, RangeName: name, Usable: true,
			})
		}
		add("", sn.Range)
		for _, r := range sn.Secondary {
			add(r.Name, r.Range)
		}
		add("", sn.Range6)
	}
	// Peering subnet routes: the peer's subnet routes, imported.
	for _, nw := range sortedNets(e) {
		for _, pr := range nw.peers {
			for pfx, r := range pr.net.subnets.AllSorted() {
				if r.Kind != KindSubnet {
					continue
				}
				nw.subnets.Insert(pfx, &Route{
					Name: "peering-route-" + model.RouteHash(nw.key, pr.name, pfx.String()), Kind: KindPeeringSubnet, Dst: pfx,
					NextHop: NextHop{Kind: HopPeering, Network: pr.net.key, Peering: pr.name}, Subnet: r.Subnet, RangeName: r.RangeName, Usable: true,
				})
			}
		}
	}
	for _, nw := range e.nets {
		for _, r := range nw.subnets.AllSorted() {
			r.rank = kindRank(r.Kind)
			nw.routes = append(nw.routes, r)
		}
	}
	e.compileStatic(in)
	e.compileDynamic(in)
	for _, nw := range e.nets {
		nw.buildViews()
		nw.fw = compileFirewall(nw, in.Firewalls)
		for _, f := range nw.ifaces {
			if f.inst != nil {
				f.view = nw.viewFor(f.inst.tags)
				f.in, f.eg = nw.fw.setsFor(f.inst.tags)
			}
		}
	}
	return e
}

func sortedNets(e *Engine) []*netw {
	out := make([]*netw, 0, len(e.nets))
	for _, n := range e.nets {
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b *netw) int { return cmp.Compare(a.key, b.key) })
	return out
}

// shadow reports the subnet route that makes a static or dynamic route
// unusable: one whose range equals or contains the route's destination.
func (nw *netw) shadow(dst netip.Prefix) (*Route, bool) {
	_, r, ok := nw.subnets.LookupPrefixLPM(dst)
	return r, ok
}

func (e *Engine) compileStatic(in Input) {
	for _, sr := range in.Routes {
		nw := e.nets[sr.Project+"/"+sr.Network]
		if nw == nil {
			continue
		}
		r := &Route{Name: sr.Name, Kind: KindStatic, Dst: sr.DestRange, Priority: sr.Priority, Tags: slices.Clone(sr.Tags), rank: kindRank(KindStatic), Usable: true}
		switch {
		case sr.NextHopGateway != "":
			r.NextHop = NextHop{Kind: HopInternet}
		default:
			r.NextHop = NextHop{Kind: HopInstance, IP: sr.NextHopIP}
			if f := e.ifaces[sr.Project+"/"+sr.Interface]; f != nil && f.inst != nil {
				r.NextHop.Interface = f.id
				r.NextHop.Instance = f.inst.key
				if !sr.NextHopIP.IsValid() {
					r.NextHop.IP = f.ip
				}
			} else if sr.NextHopInstance != "" {
				r.NextHop.Instance = sr.Project + "/" + sr.NextHopInstance
			}
		}
		for _, w := range sr.Warnings {
			r.Warnings = append(r.Warnings, w.Code)
		}
		if !model.RouteUsable(sr.Warnings) {
			r.Usable = false
			for _, w := range sr.Warnings {
				if w.Code != model.WarnNextHopCannotIPForward {
					r.Reason = w.Code + ": " + w.Message
					break
				}
			}
		} else if r.NextHop.Kind == HopInstance && r.NextHop.Interface == "" {
			r.Usable, r.Reason = false, "the next hop's interface is unknown"
		}
		if sub, ok := nw.shadow(r.Dst); ok && r.Usable {
			r.Usable = false
			r.Reason = fmt.Sprintf("%s: destination %s equals or fits within the subnet route %s (%s)", model.WarnShadowedBySubnetRoute, r.Dst, sub.Name, sub.Dst)
		}
		nw.routes = append(nw.routes, r)
	}
}

func (e *Engine) compileDynamic(in Input) {
	for _, d := range in.Dynamic {
		nw := e.nets[d.Project+"/"+d.Network]
		if nw == nil {
			continue
		}
		for _, dr := range d.Routes {
			r := &Route{Name: "dynamic-" + model.RouteHash(nw.key, dr.Peer, dr.Dest.String(), dr.NextHop.String()), Kind: KindDynamic,
				Dst: dr.Dest, Priority: dr.Priority, rank: kindRank(KindDynamic), Usable: true,
				NextHop: NextHop{Kind: HopExternal, IP: dr.NextHop}}
			if o, ok := nw.owners.Lookup(dr.NextHop); ok && o.ip == dr.NextHop && o.inst != nil {
				r.NextHop = NextHop{Kind: HopInstance, IP: dr.NextHop, Instance: o.inst.key, Interface: o.id}
			}
			if sub, ok := nw.shadow(r.Dst); ok {
				r.Usable = false
				r.Reason = fmt.Sprintf("%s: destination %s equals or fits within the subnet route %s (%s)", model.WarnShadowedBySubnetRoute, r.Dst, sub.Name, sub.Dst)
			}
			nw.routes = append(nw.routes, r)
		}
	}
}

// buildViews makes the base table (routes without tags) and records the
// tagged routes; per-tag-set views are derived on demand in viewFor.
func (nw *netw) buildViews() {
	byDst := map[netip.Prefix][]*Route{}
	nw.taggedTags = map[string]bool{}
	for _, r := range nw.routes {
		if !r.Usable {
			continue
		}
		if len(r.Tags) > 0 {
			nw.tagged = append(nw.tagged, r)
			for _, t := range r.Tags {
				nw.taggedTags[t] = true
			}
			continue
		}
		byDst[r.Dst] = append(byDst[r.Dst], r)
	}
	tbl := &bart.Table[*slot]{}
	for dst, rs := range byDst {
		slices.SortFunc(rs, better)
		tbl.Insert(dst, &slot{win: rs[0], others: rs[1:]})
	}
	nw.base = &view{tbl: tbl, f4: buildFlat4(tbl)}
	nw.views[""] = nw.base
}

// viewFor returns the routing view of an instance with tags: the base
// table plus the tagged static routes that name one of its tags. Views
// share structure with the base (bart persistent inserts) and are cached
// per relevant tag set.
func (nw *netw) viewFor(tags []string) *view {
	var rel []string
	for _, t := range tags {
		if nw.taggedTags[t] {
			rel = append(rel, t)
		}
	}
	slices.Sort(rel)
	rel = slices.Compact(rel)
	key := strings.Join(rel, ",")
	if v := nw.views[key]; v != nil {
		return v
	}
	has := map[string]bool{}
	for _, t := range rel {
		has[t] = true
	}
	add := map[netip.Prefix][]*Route{}
	for _, r := range nw.tagged {
		for _, t := range r.Tags {
			if has[t] {
				add[r.Dst] = append(add[r.Dst], r)
				break
			}
		}
	}
	tbl := nw.base.tbl
	for dst, rs := range add {
		if s, ok := nw.base.tbl.Get(dst); ok {
			rs = append(rs, s.win)
			rs = append(rs, s.others...)
		}
		slices.SortFunc(rs, better)
		tbl = tbl.InsertPersist(dst, &slot{win: rs[0], others: rs[1:]})
	}
	v := &view{tbl: tbl, f4: buildFlat4(tbl)}
	nw.views[key] = v
	return v
}

// lookup is the route an instance's packet to dst takes.
func (v *view) lookup(dst netip.Addr) (*slot, bool) { return v.tbl.Lookup(dst) }

// --- lookups used by the API ---

// Iface finds an instance's interface by name ("nic0", or "" for nic0) or
// by ID.
func (e *Engine) iface(project, zone, instance, nic string) (*iface, error) {
	in := e.insts[project+"/"+zone+"/"+instance]
	if in == nil {
		return nil, &model.Error{Code: model.NotFound, Reason: fmt.Sprintf("The resource '%s' was not found", model.InstanceKey(project, zone, instance))}
	}
	if nic == "" {
		nic = "nic0"
	}
	for _, f := range in.nics {
		if f.name == nic || f.id == nic {
			return f, nil
		}
	}
	return nil, &model.Error{Code: model.Invalid, Field: "networkInterface", Value: nic,
		Reason: fmt.Sprintf("Instance '%s' has no network interface '%s'.", instance, nic)}
}

// owner is the interface holding addr in network nw (primary or alias).
func (nw *netw) owner(addr netip.Addr) (*iface, netip.Prefix, bool) {
	pfx, f, ok := nw.owners.LookupPrefixLPM(netip.PrefixFrom(addr, addr.BitLen()))
	return f, pfx, ok
}

// LookupRoute is the route a packet from an instance's interface to dst
// takes, or false when the network has none. It is the hot path measured
// by BenchmarkRouteLookup.
func (e *Engine) LookupRoute(project, zone, instance, nic string, dst netip.Addr) (*Route, bool) {
	f, err := e.iface(project, zone, instance, nic)
	if err != nil || f.view == nil {
		return nil, false
	}
	s, ok := f.view.lookup(dst)
	if !ok {
		return nil, false
	}
	return s.win, true
}

// NIC is a compiled instance interface, for callers that ask many
// questions about the same sender or receiver (benchmarks, a data plane
// cross-check). Obtain it once with Engine.NIC.
type NIC struct{ f *iface }

// NIC returns the handle of an instance's interface ("" = nic0).
func (e *Engine) NIC(project, zone, instance, nic string) (*NIC, error) {
	f, err := e.iface(project, zone, instance, nic)
	if err != nil {
		return nil, err
	}
	return &NIC{f: f}, nil
}

// Route is the route a packet from this interface to dst takes.
func (n *NIC) Route(dst netip.Addr) (*Route, bool) {
	if dst.Is4() {
		a := dst.As4()
		r := n.f.view.f4.lookup(uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3]))
		return r, r != nil
	}
	s, ok := n.f.view.lookup(dst)
	if !ok {
		return nil, false
	}
	return s.win, true
}

// Ingress returns the firewall rule deciding a packet arriving at this
// interface, and whether it is allowed.
func (n *NIC) Ingress(src, dst netip.Addr, proto uint8, port uint16) (string, bool) {
	r := n.f.in.eval(src, dst, proto, port)
	return r.name, !r.deny
}

// Egress returns the firewall rule deciding a packet leaving this
// interface, and whether it is allowed.
func (n *NIC) Egress(src, dst netip.Addr, proto uint8, port uint16) (string, bool) {
	r := n.f.eg.eval(src, dst, proto, port)
	return r.name, !r.deny
}
