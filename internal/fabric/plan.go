package fabric

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
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
	if o.Names.Port == nil {
		o.Names.Port = PortName
	}
	if o.Names.PeerLink == nil {
		o.Names.PeerLink = PeerLinkName
	}
	nw := s.Network(networkKey)
	if nw == nil || nw.Desired == nil {
		return nil
	}
	d := nw.Desired
	project := d.Project
	p := &RouterPlan{Network: networkKey, LocalAddrs: []netip.Prefix{}, Ports: []Port{}, Routes: []KRoute{}, Rules: []KRule{},
		Sets: []NftSet{}, Chains: []NftChain{}}

	for _, sn := range nw.Subnets {
		if sn.Gateway.Is4() {
			p.LocalAddrs = append(p.LocalAddrs, netip.PrefixFrom(sn.Gateway, 32))
		}
	}
	if o.Metadata {
		p.LocalAddrs = append(p.LocalAddrs, netip.PrefixFrom(MetadataAddr, 32))
	}
	slices.SortFunc(p.LocalAddrs, netip.Prefix.Compare)
	p.LocalAddrs = slices.Compact(p.LocalAddrs)

	// Peer links: only towards peers this spec realises.
	peerLink := map[string]string{}
	for _, pe := range d.Peers {
		if s.Network(pe.Network) == nil {
			continue
		}
		name := o.Names.PeerLink(networkKey, pe.Network)
		peerLink[pe.Network] = name
		p.PeerLinks = append(p.PeerLinks, PeerLink{Name: name, Peer: pe.Network})
	}

	// Firewall chains and their sets.
	sets := map[string]NftSet{}
	chainName := map[int]string{}
	for _, c := range d.Chains {
		ch := compileChain(c, sets)
		chainName[c.ID] = ch.Name
		if !slices.ContainsFunc(p.Chains, func(x NftChain) bool { return x.Name == ch.Name }) {
			p.Chains = append(p.Chains, ch)
		}
	}

	// Ports.
	ports := map[string]*Port{} // by interface ID
	for _, fi := range d.Interfaces {
		if fi.Instance == "" || fi.RouteTable < 0 {
			continue // detached: nothing sends or receives through it
		}
		pt := Port{Name: o.Names.Port(project, fi.ID), Interface: fi.ID, Instance: fi.Instance, IP: fi.IP, Up: fi.Running,
			Table: TableBase + fi.RouteTable, Ingress: chainName[fi.IngressChain], Egress: chainName[fi.EgressChain]}
		if as, ok := nw.AntiSpoofOf(fi.ID); ok && as != nil && !fi.CanIPForward {
			pt.AntiSpoof = ranges4(as)
			if pt.AntiSpoof == nil {
				pt.AntiSpoof = []netipx.IPRange{}
			}
		}
		p.Ports = append(p.Ports, pt)
	}
	slices.SortFunc(p.Ports, func(a, b Port) int { return cmp.Compare(a.Name, b.Name) })
	for i := range p.Ports {
		ports[p.Ports[i].Interface] = &p.Ports[i]
	}

	// Delivery entries: the primary IP on the link, alias ranges via the
	// primary IP (one neighbour entry per interface, whatever the number
	// of aliases). A stopped instance receives nothing.
	any4 := netip.MustParsePrefix("0.0.0.0/0")
	p.Routes = make([]KRoute, 0, len(d.Forwarding)+16)
	p.Routes = append(p.Routes, KRoute{Table: TableDrop, Dst: any4, Type: RouteBlackhole})
	for _, f := range d.Forwarding {
		if !f.Dst.Addr().Is4() {
			continue
		}
		pt := ports[f.Interface]
		if pt == nil {
			continue
		}
		r := KRoute{Table: TableDeliver, Dst: f.Dst}
		switch {
		case !pt.Up:
			r.Type = RouteBlackhole
		case f.Dst.Bits() == 32 && f.Dst.Addr() == pt.IP:
			r.Type, r.Dev = RouteDev, pt.Name
		default:
			r.Type, r.Dev, r.Via = RouteVia, pt.Name, pt.IP
		}
		p.Routes = append(p.Routes, r)
	}
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
				if l, ok := peerLink[r.NextHop.Network]; ok {
					kr.Type, kr.Dev = RouteDev, l
				}
			case netpolicy.HopInstance:
				if pt := ports[r.NextHop.Interface]; pt != nil && pt.Up {
					kr.Type, kr.Dev, kr.Via = RouteVia, pt.Name, pt.IP
				}
			case netpolicy.HopInternet, netpolicy.HopExternal:
				kr.Type, kr.Dev = RouteDev, IGW
			}
			hasDefault = hasDefault || r.Dst.Bits() == 0
			p.Routes = append(p.Routes, kr)
		}
		if !hasDefault {
			p.Routes = append(p.Routes, KRoute{Table: table, Dst: any4, Type: RouteBlackhole})
		}
	}

	// In the Router's order (sorted already when netpolicy's tables are).
	if !slices.IsSortedFunc(p.Routes, routeOrder) {
		slices.SortFunc(p.Routes, routeOrder)
	}

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

	for _, s := range sets {
		p.Sets = append(p.Sets, s)
	}
	slices.SortFunc(p.Sets, func(a, b NftSet) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(p.Rules, func(a, b KRule) int {
		return cmp.Or(cmp.Compare(a.Priority, b.Priority), cmp.Compare(a.Iif, b.Iif), cmp.Compare(a.Table, b.Table))
	})
	slices.SortFunc(p.Chains, func(a, b NftChain) int { return cmp.Compare(a.Name, b.Name) })
	return p
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
