package fabric

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"go4.org/netipx"

	"github.com/aliasnet/aliasnet/internal/model"
	"github.com/aliasnet/aliasnet/internal/netpolicy"
)

// Kernel objects the fabric owns in a router namespace (or on a host).
//
// Policy routing: a packet entering through port P first looks up
// TableDeliver (the delivery entries: primary IPs and alias ranges of the
// network's interfaces, no default), then P's VPC route table. Delivery
// entries lie inside subnet ranges, where no static or dynamic route is
// ever used (netpolicy), so "delivery first" gives the same answer as one
// longest-prefix match over both, with one copy of the 10,000 alias
// entries whatever the number of route tables.
const (
	TableDeliver = 999
	// TableDrop holds only a blackhole default: packets from a peered
	// network's fabric that no delivery entry takes end there (peering is
	// not transitive: they never see this network's VPC routes).
	TableDrop = 998
	// TableBase + RouteTable.ID is the kernel table of a netpolicy route
	// table (the routes one group of instances sees), ending with a
	// blackhole default when the VPC has no default route.
	TableBase = 1000
	// RulePriority and RulePriority+1 are the priorities of the fabric's
	// `ip rule`s (before main at 32766).
	RulePriority = 100
	// RouteProtocol marks the fabric's routes (rtnetlink protocol number;
	// the guest agent uses 66).
	RouteProtocol = 77
	// IGW is the device the internet gateway (and BGP next hops outside
	// the VPC) route to: packets sent there are counted by nftables and
	// dropped by the device (a dummy; a bridge without ports where the
	// kernel has no dummy driver). There is no internet in the lab.
	IGW = "igw0"
	// NFTTable is the nftables table (family ip) of the fabric.
	NFTTable = "aliasnet"
)

// MetadataAddr is the metadata server's address, present on the router.
var MetadataAddr = netip.MustParseAddr("169.254.169.254")

// RouterPlan is everything one router namespace must hold for one
// network. It is plain data, compared field by field by Router.Apply.
type RouterPlan struct {
	Network string `json:"network"`
	// LocalAddrs are /32s added to lo: the subnets' gateways (every port
	// answers ARP for them) and, when enabled, the metadata address.
	LocalAddrs []netip.Prefix `json:"localAddrs"`
	Ports      []Port         `json:"ports"`
	PeerLinks  []PeerLink     `json:"peerLinks,omitempty"`
	Routes     []KRoute       `json:"routes"`
	Rules      []KRule        `json:"rules"`
	// Sets are the firewall's named address sets (content-named).
	Sets []NftSet `json:"sets"`
	// Chains are the firewall chains (content-named), one per netpolicy
	// chain used by a port.
	Chains []NftChain `json:"chains"`
}

// Port is the fabric side of one instance interface.
type Port struct {
	Name      string     `json:"name"`
	Interface string     `json:"interface"`
	Instance  string     `json:"instance"`
	IP        netip.Addr `json:"ip"`
	// Up: the instance is running (the link is down otherwise).
	Up    bool `json:"up"`
	Table int  `json:"table"`
	// AntiSpoof are the addresses that may leave the port (primary /32
	// and alias ranges), normalised to ranges; nil: canIpForward (no
	// source check, no destination check).
	AntiSpoof []netipx.IPRange `json:"antiSpoof"`
	Ingress   string           `json:"ingress"`
	Egress    string           `json:"egress"`
}

// PeerLink is the link from this network's router to a peered network's.
type PeerLink struct {
	Name string `json:"name"`
	Peer string `json:"peer"` // PROJECT/NETWORK
}

// Route types of a KRoute.
const (
	RouteDev       = "dev"       // Dst dev Dev (scope link)
	RouteVia       = "via"       // Dst via Via dev Dev onlink
	RouteBlackhole = "blackhole" // Dst blackhole
	// RouteLocal is "local Dst dev Dev scope host" (the guest side's
	// alias routes, table local).
	RouteLocal = "local"
)

// KRoute is one kernel route.
type KRoute struct {
	Table int          `json:"table"`
	Dst   netip.Prefix `json:"dst"`
	Type  string       `json:"type"`
	Dev   string       `json:"dev,omitempty"`
	Via   netip.Addr   `json:"via,omitzero"`
}

// KRule is one `ip rule`: packets entering through Iif look up Table.
type KRule struct {
	Priority int    `json:"priority"`
	Iif      string `json:"iif"`
	Table    int    `json:"table"`
}

// NftSet is a named interval set of IPv4 addresses.
type NftSet struct {
	Name   string           `json:"name"`
	Ranges []netipx.IPRange `json:"ranges"`
}

// NftChain is a firewall chain: rules in order, first match decides.
type NftChain struct {
	Name      string    `json:"name"`
	Direction string    `json:"direction"` // INGRESS or EGRESS
	Rules     []NftRule `json:"rules"`
}

// Verdicts of an NftRule.
const (
	VerdictAccept = "accept"
	VerdictDrop   = "drop"
	// VerdictReturn ends an egress chain with "allowed": the packet goes on
	// to the receiver's ingress chain.
	VerdictReturn = "return"
)

// NftRule is one compiled match: every set field must match.
type NftRule struct {
	// Firewall is the firewall rule's name (or the implied rule's).
	Firewall string `json:"firewall"`
	// Src and Dst name an NftSet ("" = any address).
	Src string `json:"src,omitempty"`
	Dst string `json:"dst,omitempty"`
	// Proto is the IP protocol (0 with AnyProto: every protocol).
	AnyProto bool  `json:"anyProto,omitempty"`
	Proto    uint8 `json:"proto,omitempty"`
	// PortLo..PortHi is the destination port range (both 0: any port).
	PortLo  uint16 `json:"portLo,omitempty"`
	PortHi  uint16 `json:"portHi,omitempty"`
	Verdict string `json:"verdict"`
}

// Names decides the link names of a realisation. The defaults (PortName,
// PeerLinkName) suit the lab; a host agent maps interfaces to its VMs' tap
// devices instead.
type Names struct {
	// Port names the fabric-side link of an interface.
	Port func(project, iface string) string
	// PeerLink names, in network's router, the link towards peer.
	PeerLink func(network, peer string) string
}

// PlanOptions tune Plan.
type PlanOptions struct {
	Names Names
	// Metadata adds MetadataAddr to the router (a proxy listens there).
	Metadata bool
}

func shortHash(n int, parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(h[:])[:n]
}

// PortName is the default fabric-side link name of an interface: "v"
// and 10 hex digits of a hash (IFNAMSIZ allows 15 characters).
func PortName(project, iface string) string { return "v" + shortHash(10, project, iface) }

// PeerLinkName is the default name of the link towards a peer network.
func PeerLinkName(network, peer string) string { return "p" + shortHash(10, network, peer) }

// Plan compiles one network of a Spec into a RouterPlan.
func Plan(s *Spec, networkKey string, o PlanOptions) *RouterPlan {
	return (&Planner{Network: networkKey, Options: o}).Plan(s, nil)
}

// Planner compiles the RouterPlans of one network, one spec after
// another. Told which interfaces changed since the spec it planned last
// (Changes.Network), it recomputes only their ports and delivery routes
// and reuses everything else; at 10,000 aliases that is a fraction of a
// millisecond instead of several. Its plans equal Plan's
// (TestPlannerMatchesPlan). A Planner is not safe for concurrent use.
type Planner struct {
	Network string
	Options PlanOptions

	st *planState
}

// planState is what the last plan was made of.
type planState struct {
	plan       *RouterPlan
	peerSig    string
	localAddrs []netip.Prefix
	peerLinks  []PeerLink
	peerLink   map[string]string // peer network -> link
	sets       []NftSet
	chains     []NftChain
	chainName  map[int]string
	// hops are the interfaces route tables send to (their ports' names,
	// addresses and states are in those routes).
	hops  map[string]bool
	fis   map[string]netpolicy.FabricInterface // by ID
	ports map[string]Port                      // by interface ID
	// tables are the routes of the drop table and the VPC route tables,
	// routes all of the plan's (those and table TableDeliver), both in
	// routeOrder.
	tables, routes []KRoute
}

// Reset makes the next Plan start from scratch.
func (pl *Planner) Reset() { pl.st = nil }

// Plan returns the plan of the network in s. ch says what changed since
// the spec of the previous call: nil or Whole, anything (the plan is made
// from scratch); otherwise only the interfaces it lists.
func (pl *Planner) Plan(s *Spec, ch *NetChange) *RouterPlan {
	o := &pl.Options
	if o.Names.Port == nil {
		o.Names.Port = PortName
	}
	if o.Names.PeerLink == nil {
		o.Names.PeerLink = PeerLinkName
	}
	nw := s.Network(pl.Network)
	if nw == nil || nw.Desired == nil {
		pl.st = nil
		return nil
	}
	var peers []string
	for _, pe := range nw.Desired.Peers {
		if s.Network(pe.Network) != nil {
			peers = append(peers, pe.Peering+"="+pe.Network)
		}
	}
	peerSig := strings.Join(peers, ",")
	if ch == nil || ch.Whole || pl.st == nil || pl.st.peerSig != peerSig || !pl.patch(nw, ch) {
		pl.full(s, nw, peerSig)
	}
	return pl.st.plan
}

// full plans the network from scratch.
func (pl *Planner) full(s *Spec, nw *Network, peerSig string) {
	o := pl.Options
	d := nw.Desired
	st := &planState{peerSig: peerSig, localAddrs: []netip.Prefix{}, peerLink: map[string]string{}, chainName: map[int]string{},
		hops: map[string]bool{}, fis: make(map[string]netpolicy.FabricInterface, len(d.Interfaces)), ports: make(map[string]Port, len(d.Interfaces))}
	pl.st = st

	for _, sn := range nw.Subnets {
		if sn.Gateway.Is4() {
			st.localAddrs = append(st.localAddrs, netip.PrefixFrom(sn.Gateway, 32))
		}
	}
	if o.Metadata {
		st.localAddrs = append(st.localAddrs, netip.PrefixFrom(MetadataAddr, 32))
	}
	slices.SortFunc(st.localAddrs, netip.Prefix.Compare)
	st.localAddrs = slices.Compact(st.localAddrs)

	// Peer links: only towards peers this spec realises.
	for _, pe := range d.Peers {
		if s.Network(pe.Network) == nil {
			continue
		}
		name := o.Names.PeerLink(pl.Network, pe.Network)
		st.peerLink[pe.Network] = name
		st.peerLinks = append(st.peerLinks, PeerLink{Name: name, Peer: pe.Network})
	}

	// Firewall chains and their sets.
	sets := map[string]NftSet{}
	st.chains = []NftChain{}
	for _, c := range d.Chains {
		ch := compileChain(c, sets)
		st.chainName[c.ID] = ch.Name
		if !slices.ContainsFunc(st.chains, func(x NftChain) bool { return x.Name == ch.Name }) {
			st.chains = append(st.chains, ch)
		}
	}
	st.sets = make([]NftSet, 0, len(sets))
	for _, s := range sets {
		st.sets = append(st.sets, s)
	}
	slices.SortFunc(st.sets, func(a, b NftSet) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(st.chains, func(a, b NftChain) int { return cmp.Compare(a.Name, b.Name) })

	for _, rt := range d.RouteTables {
		for _, r := range rt.Routes {
			if r.NextHop.Kind == netpolicy.HopInstance && r.NextHop.Interface != "" {
				st.hops[r.NextHop.Interface] = true
			}
		}
	}

	// Ports.
	for _, fi := range d.Interfaces {
		st.fis[fi.ID] = fi
		if pt, ok := pl.port(nw, fi); ok {
			st.ports[fi.ID] = pt
		}
	}

	// Delivery entries: the primary IP on the link, alias ranges via the
	// primary IP (one neighbour entry per interface, whatever the number
	// of aliases). A stopped instance receives nothing.
	st.tables = pl.tableRoutes(d)
	n, _ := slices.BinarySearchFunc(st.tables, TableDeliver, func(r KRoute, t int) int { return r.Table - t })
	st.routes = make([]KRoute, 0, len(d.Forwarding)+len(st.tables))
	st.routes = append(st.routes, st.tables[:n]...)
	for _, f := range d.Forwarding {
		if pt, ok := st.ports[f.Interface]; ok && f.Dst.Addr().Is4() {
			st.routes = append(st.routes, deliverRoute(f.Dst, pt))
		}
	}
	st.routes = append(st.routes, st.tables[n:]...)
	if !slices.IsSortedFunc(st.routes, routeOrder) {
		slices.SortFunc(st.routes, routeOrder)
	}
	pl.assemble()
}

// patch applies the changes of ch's interfaces to the last plan; false
// when it cannot (an interface it does not know).
func (pl *Planner) patch(nw *Network, ch *NetChange) bool {
	st := pl.st
	if len(ch.Interfaces) == 0 {
		return true
	}
	d := nw.Desired
	var idx map[string]int
	if len(ch.Interfaces) > 8 {
		idx = make(map[string]int, len(d.Interfaces))
		for i, fi := range d.Interfaces {
			idx[fi.ID] = i
		}
	}
	var del, add []KRoute
	portsChanged, hopsChanged := false, false
	for _, id := range slices.Sorted(maps.Keys(ch.Interfaces)) {
		i, ok := idx[id]
		if idx == nil {
			i = slices.IndexFunc(d.Interfaces, func(fi netpolicy.FabricInterface) bool { return fi.ID == id })
			ok = i >= 0
		}
		old, known := st.fis[id]
		if !ok || !known {
			return false
		}
		fi := d.Interfaces[i]
		oldPt, hadPt := st.ports[id]
		if hadPt {
			del = appendDeliver(del, old, oldPt)
		}
		pt, hasPt := pl.port(nw, fi)
		if hasPt {
			add = appendDeliver(add, fi, pt)
			st.ports[id] = pt
		} else {
			delete(st.ports, id)
		}
		st.fis[id] = fi
		if hadPt != hasPt || !samePort(oldPt, pt) {
			portsChanged = true
			hopsChanged = hopsChanged || st.hops[id]
		}
	}
	if hopsChanged {
		del = append(del, st.tables...)
		st.tables = pl.tableRoutes(d)
		add = append(add, st.tables...)
	}
	slices.SortFunc(del, routeOrder)
	slices.SortFunc(add, routeOrder)
	// A new list (plans handed out before keep theirs), made in one pass.
	st.routes = patchRoutes(st.routes, del, add)
	if portsChanged {
		pl.assemble()
		return true
	}
	// Same ports and rules: only the routes differ.
	p := *st.plan
	p.Routes = st.routes
	st.plan = &p
	return true
}

func samePort(a, b Port) bool {
	return a.Name == b.Name && a.Interface == b.Interface && a.Instance == b.Instance && a.IP == b.IP && a.Up == b.Up &&
		a.Table == b.Table && a.Ingress == b.Ingress && a.Egress == b.Egress && (a.AntiSpoof == nil) == (b.AntiSpoof == nil) &&
		slices.Equal(a.AntiSpoof, b.AntiSpoof)
}

// port is the port of an interface, if it has one.
func (pl *Planner) port(nw *Network, fi netpolicy.FabricInterface) (Port, bool) {
	if fi.Instance == "" || fi.RouteTable < 0 {
		return Port{}, false // detached: nothing sends or receives through it
	}
	st := pl.st
	pt := Port{Name: pl.Options.Names.Port(nw.Desired.Project, fi.ID), Interface: fi.ID, Instance: fi.Instance, IP: fi.IP, Up: fi.Running,
		Table: TableBase + fi.RouteTable, Ingress: st.chainName[fi.IngressChain], Egress: st.chainName[fi.EgressChain]}
	if as, ok := nw.AntiSpoofOf(fi.ID); ok && as != nil && !fi.CanIPForward {
		pt.AntiSpoof = ranges4(as)
		if pt.AntiSpoof == nil {
			pt.AntiSpoof = []netipx.IPRange{}
		}
	}
	return pt, true
}

// deliverRoute is the delivery route of dst, held by the interface of pt.
func deliverRoute(dst netip.Prefix, pt Port) KRoute {
	r := KRoute{Table: TableDeliver, Dst: dst}
	switch {
	case !pt.Up:
		r.Type = RouteBlackhole
	case dst.Bits() == 32 && dst.Addr() == pt.IP:
		r.Type, r.Dev = RouteDev, pt.Name
	default:
		r.Type, r.Dev, r.Via = RouteVia, pt.Name, pt.IP
	}
	return r
}

// appendDeliver appends the delivery routes of an interface (its entries
// of Forwarding, see appendForwarding).
func appendDeliver(rs []KRoute, fi netpolicy.FabricInterface, pt Port) []KRoute {
	if fi.IP.Is4() {
		rs = append(rs, deliverRoute(netip.PrefixFrom(fi.IP, 32), pt))
	}
	for _, a := range fi.Aliases {
		if a.Addr().Is4() {
			rs = append(rs, deliverRoute(a, pt))
		}
	}
	return rs
}

// patchRoutes returns rs without del's destinations and with add (all
// three in routeOrder; a destination appears once per table).
func patchRoutes(rs, del, add []KRoute) []KRoute {
	return patchSorted(rs, del, add, routeOrder, func(a, b KRoute) bool { return true })
}

// tableRoutes are the routes of the drop table and of the VPC route
// tables.
func (pl *Planner) tableRoutes(d *netpolicy.Desired) []KRoute {
	st := pl.st
	any4 := netip.MustParsePrefix("0.0.0.0/0")
	rs := []KRoute{{Table: TableDrop, Dst: any4, Type: RouteBlackhole}}
	for _, rt := range d.RouteTables {
		table := TableBase + rt.ID
		hasDefault := false
		for _, r := range rt.Routes {
			if !r.Dst.Addr().Is4() {
				continue
			}
			kr := KRoute{Table: table, Dst: r.Dst, Type: RouteBlackhole}
			switch r.NextHop.Kind {
			case netpolicy.HopNetwork:
				// The owner's delivery entry (TableDeliver, looked up
				// first) takes it; an address nobody holds is dropped.
			case netpolicy.HopPeering:
				if l, ok := st.peerLink[r.NextHop.Network]; ok {
					kr.Type, kr.Dev = RouteDev, l
				}
			case netpolicy.HopInstance:
				if pt, ok := st.ports[r.NextHop.Interface]; ok && pt.Up {
					kr.Type, kr.Dev, kr.Via = RouteVia, pt.Name, pt.IP
				}
			case netpolicy.HopInternet, netpolicy.HopExternal:
				kr.Type, kr.Dev = RouteDev, IGW
			}
			hasDefault = hasDefault || r.Dst.Bits() == 0
			rs = append(rs, kr)
		}
		if !hasDefault {
			rs = append(rs, KRoute{Table: table, Dst: any4, Type: RouteBlackhole})
		}
	}
	slices.SortStableFunc(rs, routeOrder)
	return rs
}

// assemble makes the plan from the state.
func (pl *Planner) assemble() {
	st := pl.st
	p := &RouterPlan{Network: pl.Network, LocalAddrs: st.localAddrs, Ports: make([]Port, 0, len(st.ports)), PeerLinks: st.peerLinks,
		Rules: []KRule{}, Sets: st.sets, Chains: st.chains}
	for _, pt := range st.ports {
		p.Ports = append(p.Ports, pt)
	}
	slices.SortFunc(p.Ports, func(a, b Port) int { return cmp.Compare(a.Name, b.Name) })
	p.Routes = st.routes
	for _, pt := range p.Ports {
		p.Rules = append(p.Rules, KRule{Priority: RulePriority, Iif: pt.Name, Table: TableDeliver},
			KRule{Priority: RulePriority + 1, Iif: pt.Name, Table: pt.Table})
	}
	for _, l := range p.PeerLinks {
		p.Rules = append(p.Rules, KRule{Priority: RulePriority, Iif: l.Name, Table: TableDeliver},
			KRule{Priority: RulePriority + 1, Iif: l.Name, Table: TableDrop})
	}
	// The router's own packets (the metadata proxy's answers).
	p.Rules = append(p.Rules, KRule{Priority: RulePriority, Iif: "lo", Table: TableDeliver})
	slices.SortFunc(p.Rules, func(a, b KRule) int {
		return cmp.Or(cmp.Compare(a.Priority, b.Priority), cmp.Compare(a.Iif, b.Iif), cmp.Compare(a.Table, b.Table))
	})
	st.plan = p
}

// ranges4 normalises the IPv4 prefixes of ps into sorted, non-overlapping,
// non-adjacent ranges (what an nftables interval set holds).
func ranges4(ps []netip.Prefix) []netipx.IPRange {
	rs := make([]netipx.IPRange, 0, len(ps))
	for _, p := range ps {
		if p.Addr().Is4() {
			rs = append(rs, netipx.RangeOfPrefix(p.Masked()))
		}
	}
	if len(rs) == 0 {
		return nil
	}
	byFrom := func(a, b netipx.IPRange) int { return a.From().Compare(b.From()) }
	if !slices.IsSortedFunc(rs, byFrom) {
		slices.SortFunc(rs, byFrom)
	}
	out := rs[:1]
	for _, r := range rs[1:] {
		last := &out[len(out)-1]
		// Overlapping or adjacent: merge.
		if r.From().Compare(last.To()) <= 0 || (last.To().Next().IsValid() && r.From() == last.To().Next()) {
			if r.To().Compare(last.To()) > 0 {
				*last = netipx.IPRangeFrom(last.From(), r.To())
			}
			continue
		}
		out = append(out, r)
	}
	return slices.Clip(out)
}

var fullRange4 = netipx.IPRangeFrom(netip.IPv4Unspecified(), netip.AddrFrom4([4]byte{255, 255, 255, 255}))

// setFor returns the name of the set holding the IPv4 part of ps ("" and
// ok for "every address"), registering it in sets; ok is false when ps has
// no IPv4 address (a rule using it cannot match an IPv4 packet).
func setFor(ps []netip.Prefix, sets map[string]NftSet) (string, bool) {
	rs := ranges4(ps)
	if len(rs) == 0 {
		return "", false
	}
	if len(rs) == 1 && rs[0] == fullRange4 {
		return "", true
	}
	b, _ := json.Marshal(rs)
	name := "s_" + shortHash(12, string(b))
	sets[name] = NftSet{Name: name, Ranges: rs}
	return name, true
}

// compileChain turns a netpolicy chain into nftables rules. Rules are in
// precedence order already and the implied rule closes the chain.
func compileChain(c netpolicy.Chain, sets map[string]NftSet) NftChain {
	ch := NftChain{Direction: c.Direction, Rules: []NftRule{}}
	ingress := c.Direction == model.Ingress
	for _, fr := range c.Rules {
		verdict := VerdictDrop
		if fr.Action == "ALLOW" {
			verdict = VerdictReturn
			if ingress {
				verdict = VerdictAccept
			}
		}
		if fr.Implied {
			if ingress {
				ch.Rules = append(ch.Rules, NftRule{Firewall: fr.Name, AnyProto: true, Verdict: VerdictDrop})
			}
			// Implied egress allow: falling off the chain returns.
			break
		}
		base := NftRule{Firewall: fr.Name, Verdict: verdict}
		ok := true
		if !fr.AnySource {
			base.Src, ok = setFor(fr.Sources, sets)
		}
		if ok && !fr.AnyDestination {
			base.Dst, ok = setFor(fr.Destinations, sets)
		}
		if !ok {
			continue // matches no IPv4 packet
		}
		for _, pm := range fr.Protocols {
			r := base
			if pm.All {
				r.AnyProto = true
				ch.Rules = append(ch.Rules, r)
				continue
			}
			r.Proto = pm.Number
			if len(pm.Ports) == 0 || !model.HasPorts(pm.Number) {
				ch.Rules = append(ch.Rules, r)
				continue
			}
			for _, pr := range pm.Ports {
				r.PortLo, r.PortHi = pr.Lo, pr.Hi
				ch.Rules = append(ch.Rules, r)
			}
		}
	}
	b, _ := json.Marshal(ch)
	prefix := "in_"
	if !ingress {
		prefix = "eg_"
	}
	ch.Name = prefix + shortHash(12, string(b))
	return ch
}

// routeOrder sorts routes by table, then destination.
func routeOrder(a, b KRoute) int {
	if a.Table != b.Table {
		return a.Table - b.Table
	}
	if c := a.Dst.Addr().Compare(b.Dst.Addr()); c != 0 {
		return c
	}
	return a.Dst.Bits() - b.Dst.Bits()
}
