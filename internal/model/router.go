package model

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Routers (GCE regions/R/routers, "Cloud Router") announce the address
// ranges of their network to on-premises peers over BGP and learn the
// peers' routes (dynamic routes, see route.go). This file holds the
// resource and GCE's rules for it; the BGP sessions themselves are run by
// package routing, which reads routers from the change stream.
//
// Seed 000: "Alias IP addresses can be announced by Cloud Router to an
// on-premises network connected via VPN or Interconnect" — in DEFAULT mode a
// router advertises every primary AND secondary range of the subnets it
// covers, so container (alias) ranges are reachable from on-prem; CUSTOM
// mode chooses, e.g. only the secondary range ("you don't want the primary
// VM IP addresses to be reachable through the VPN").

// Advertisement modes and groups (bgp.advertiseMode, bgp.advertisedGroups).
const (
	AdvertiseDefault = "DEFAULT"
	AdvertiseCustom  = "CUSTOM"
	// GroupAllSubnets stands for every subnet range the router covers.
	GroupAllSubnets = "ALL_SUBNETS"

	// DefaultAdvertisedRoutePriority is the MED a peer gets when the
	// request does not set advertisedRoutePriority (GCE's base priority).
	DefaultAdvertisedRoutePriority = 100
	// MaxAdvertisedRoutePriority is GCE's upper bound (inclusive).
	MaxAdvertisedRoutePriority = 65535
	// MaxAdvertisedRanges bounds custom advertised ranges per router/peer.
	MaxAdvertisedRanges = 200
)

// Router is a Cloud Router.
type Router struct {
	Project     string `json:"project"`
	Region      string `json:"region"`
	Name        string `json:"name"`
	ID          uint64 `json:"id,string"`
	Description string `json:"description,omitempty"`
	Created     string `json:"created"`
	Network     string `json:"network"`
	// BGP is nil for a router without BGP (GCE allows that for NAT-only
	// routers); a router with peers needs it.
	BGP        *RouterBGP        `json:"bgp,omitempty"`
	Interfaces []RouterInterface `json:"interfaces,omitempty"`
	Peers      []BGPPeer         `json:"bgpPeers,omitempty"`
	Extra      json.RawMessage   `json:"extra,omitempty"`
}

// RouterBGP is the router's own BGP settings.
type RouterBGP struct {
	ASN uint32 `json:"asn"`
	Advertisement
	// KeepaliveInterval is GCE's keepalive in seconds (20-60); 0 = 20.
	KeepaliveInterval int `json:"keepaliveInterval,omitempty"`
}

// Advertisement is what a router (or one peer) announces. Mode "" means
// DEFAULT for a router and "inherit the router's" for a peer.
type Advertisement struct {
	Mode   string            `json:"advertiseMode,omitempty"`
	Groups []string          `json:"advertisedGroups,omitempty"`
	Ranges []AdvertisedRange `json:"advertisedIpRanges,omitempty"`
}

// AdvertisedRange is one custom advertised prefix.
type AdvertisedRange struct {
	Range       netip.Prefix `json:"range"`
	Description string       `json:"description,omitempty"`
}

// RouterInterface names one link of the router (a VPN tunnel or an
// Interconnect attachment in GCE). IPRange is the router's address with
// the link's prefix length, e.g. 169.254.0.1/30.
type RouterInterface struct {
	Name                         string       `json:"name"`
	IPRange                      netip.Prefix `json:"ipRange,omitzero"`
	LinkedVPNTunnel              string       `json:"linkedVpnTunnel,omitempty"`
	LinkedInterconnectAttachment string       `json:"linkedInterconnectAttachment,omitempty"`
}

// BGPPeer is one BGP session of the router.
type BGPPeer struct {
	Name          string `json:"name"`
	InterfaceName string `json:"interfaceName"`
	// IPAddress is the router's side of the session (optional: the
	// interface's address when it has one).
	IPAddress     netip.Addr `json:"ipAddress,omitzero"`
	PeerIPAddress netip.Addr `json:"peerIpAddress"`
	PeerASN       uint32     `json:"peerAsn"`
	// Priority is advertisedRoutePriority: the MED sent with every route.
	Priority int `json:"advertisedRoutePriority"`
	// Advertisement overrides the router's when Mode is CUSTOM.
	Advertisement
	// Disabled is GCE's enable: FALSE (the session is not run).
	Disabled bool `json:"disabled,omitempty"`
}

// RouterKey is the store key of a router.
func RouterKey(p, region, name string) string {
	return "projects/" + p + "/regions/" + region + "/routers/" + name
}

// Effective returns the advertisement a peer actually uses: its own in
// CUSTOM mode, otherwise the router's (GCE: a peer in DEFAULT mode follows
// the router-level advertisement).
func (p *BGPPeer) Effective(r *Router) Advertisement {
	if p.Mode == AdvertiseCustom {
		return p.Advertisement
	}
	if r.BGP == nil {
		return Advertisement{Mode: AdvertiseDefault}
	}
	a := r.BGP.Advertisement
	if a.Mode == "" {
		a.Mode = AdvertiseDefault
	}
	return a
}

// --- validation rules, one function each ---

// checkASN: a private ASN (64512-65534, 4200000000-4294967294) or 16550
// (Partner Interconnect), as GCE requires of a Cloud Router.
func checkRouterASN(field string, asn uint32) error {
	if asn == 0 {
		return &Error{Code: Required, Field: field, Reason: "Required field 'resource." + field + "' not specified"}
	}
	if asn == 16550 || asn >= 64512 && asn <= 65534 || asn >= 4200000000 && asn <= 4294967294 {
		return nil
	}
	return errf(Invalid, field, fmt.Sprint(asn),
		"The ASN of a Cloud Router must be a private ASN (64512-65534 or 4200000000-4294967294) or 16550.")
}

// checkPeerASN: any ASN but 0 and 4294967295, different from the router's
// (Cloud Router speaks eBGP only).
func checkPeerASN(field string, asn, own uint32) error {
	switch {
	case asn == 0:
		return &Error{Code: Required, Field: field, Reason: "Required field 'resource." + field + "' not specified"}
	case asn == 4294967295:
		return errf(Invalid, field, fmt.Sprint(asn), "ASN 4294967295 is reserved.")
	case asn == own:
		return errf(Invalid, field, fmt.Sprint(asn), "The peer ASN must differ from the router's ASN %d: Cloud Router only speaks eBGP.", own)
	}
	return nil
}

// checkAdvertisement: mode DEFAULT or CUSTOM (a peer may leave it empty);
// groups and ranges only in CUSTOM mode; groups from the known set, ranges
// canonical CIDRs; no duplicates. prefix is "bgp" or "bgpPeers[i]".
func checkAdvertisement(prefix string, a Advertisement) error {
	switch a.Mode {
	case "", AdvertiseDefault, AdvertiseCustom:
	default:
		return errf(Invalid, prefix+".advertiseMode", a.Mode, "Advertise mode must be %s or %s.", AdvertiseDefault, AdvertiseCustom)
	}
	if a.Mode != AdvertiseCustom {
		if len(a.Groups) > 0 {
			return errf(Invalid, prefix+".advertisedGroups[0]", a.Groups[0],
				"Custom advertisements (advertisedGroups) can only be set in advertise mode %s.", AdvertiseCustom)
		}
		if len(a.Ranges) > 0 {
			return errf(Invalid, prefix+".advertisedIpRanges[0].range", a.Ranges[0].Range.String(),
				"Custom advertisements (advertisedIpRanges) can only be set in advertise mode %s.", AdvertiseCustom)
		}
		return nil
	}
	for i, g := range a.Groups {
		f := fmt.Sprintf("%s.advertisedGroups[%d]", prefix, i)
		if g != GroupAllSubnets {
			return errf(Invalid, f, g, "Unknown advertised group; the only group is %s.", GroupAllSubnets)
		}
		if slices.Contains(a.Groups[:i], g) {
			return errf(Invalid, f, g, "Advertised group %s is listed twice.", g)
		}
	}
	if len(a.Ranges) > MaxAdvertisedRanges {
		return errf(Invalid, prefix+".advertisedIpRanges", fmt.Sprint(len(a.Ranges)), "At most %d advertised IP ranges are allowed.", MaxAdvertisedRanges)
	}
	for i, r := range a.Ranges {
		f := fmt.Sprintf("%s.advertisedIpRanges[%d].range", prefix, i)
		if !r.Range.IsValid() {
			return &Error{Code: Required, Field: f, Reason: "Required field 'resource." + f + "' not specified"}
		}
		if r.Range.Addr().Zone() != "" || r.Range.Addr().Is4In6() || r.Range.Masked() != r.Range {
			return errf(Invalid, f, r.Range.String(), "Invalid IP range: %s is not a valid network address; did you mean %s?", r.Range, r.Range.Masked())
		}
		for _, o := range a.Ranges[:i] {
			if o.Range == r.Range {
				return errf(Invalid, f, r.Range.String(), "Advertised IP range %s is listed twice.", r.Range)
			}
		}
	}
	return nil
}

// checkRouterInterfaces: unique RFC 1035 names; an ipRange is an address
// with a prefix length shorter than a host route (the link), e.g.
// 169.254.0.1/30.
func checkRouterInterfaces(ifs []RouterInterface) error {
	for i, ifc := range ifs {
		f := fmt.Sprintf("interfaces[%d]", i)
		if err := ValidName(f+".name", ifc.Name); err != nil {
			return err
		}
		for _, o := range ifs[:i] {
			if o.Name == ifc.Name {
				return errf(Invalid, f+".name", ifc.Name, "Interface name '%s' is used twice in this router.", ifc.Name)
			}
		}
		if ifc.IPRange.IsValid() {
			a := ifc.IPRange.Addr()
			if a.Zone() != "" || a.Is4In6() || ifc.IPRange.Bits() >= a.BitLen() ||
				(ifc.IPRange.Bits() < a.BitLen()-1 && a == ifc.IPRange.Masked().Addr()) {
				return errf(Invalid, f+".ipRange", ifc.IPRange.String(),
					"The interface IP range must be the router's address with the link's prefix length, e.g. 169.254.0.1/30.")
			}
		}
	}
	return nil
}

// checkBGPPeers: unique names and peer addresses; the interface exists;
// the router's address (ipAddress, defaulting to the interface's) is of the
// peer's family and inside the interface's range; eBGP peer ASN; priority
// 0-65535; the peer's advertisement. Peers get their defaults filled in.
func checkBGPPeers(r *Router) error {
	var own uint32
	if r.BGP != nil {
		own = r.BGP.ASN
	}
	for i := range r.Peers {
		p := &r.Peers[i]
		f := fmt.Sprintf("bgpPeers[%d]", i)
		if err := ValidName(f+".name", p.Name); err != nil {
			return err
		}
		if p.InterfaceName == "" {
			return &Error{Code: Required, Field: f + ".interfaceName", Reason: "Required field 'resource." + f + ".interfaceName' not specified"}
		}
		k := slices.IndexFunc(r.Interfaces, func(ifc RouterInterface) bool { return ifc.Name == p.InterfaceName })
		if k < 0 {
			return errf(Invalid, f+".interfaceName", p.InterfaceName, "Router '%s' has no interface named '%s'.", r.Name, p.InterfaceName)
		}
		if !p.PeerIPAddress.IsValid() {
			return &Error{Code: Required, Field: f + ".peerIpAddress", Reason: "Required field 'resource." + f + ".peerIpAddress' not specified"}
		}
		if a := p.PeerIPAddress; a.Zone() != "" || a.Is4In6() || a.IsUnspecified() || a.IsMulticast() {
			return errf(Invalid, f+".peerIpAddress", a.String(), "Invalid peer IP address.")
		}
		ifr := r.Interfaces[k].IPRange
		if !p.IPAddress.IsValid() && ifr.IsValid() {
			p.IPAddress = ifr.Addr()
		}
		if a := p.IPAddress; a.IsValid() {
			switch {
			case a.Zone() != "" || a.Is4In6() || a.IsUnspecified() || a.IsMulticast():
				return errf(Invalid, f+".ipAddress", a.String(), "Invalid IP address.")
			case a.Is4() != p.PeerIPAddress.Is4():
				return errf(Invalid, f+".ipAddress", a.String(), "The router's address %s and the peer's %s are of different IP versions.", a, p.PeerIPAddress)
			case a == p.PeerIPAddress:
				return errf(Invalid, f+".ipAddress", a.String(), "The router's address must differ from the peer's.")
			case ifr.IsValid() && !ifr.Contains(a):
				return errf(Invalid, f+".ipAddress", a.String(), "The address is not inside the IP range %s of interface '%s'.", ifr, p.InterfaceName)
			}
		}
		if err := checkPeerASN(f+".peerAsn", p.PeerASN, own); err != nil {
			return err
		}
		if p.Priority < 0 || p.Priority > MaxAdvertisedRoutePriority {
			return errf(Invalid, f+".advertisedRoutePriority", itoa(p.Priority), "Priority must be between 0 and %d inclusive.", MaxAdvertisedRoutePriority)
		}
		if err := checkAdvertisement(f, p.Advertisement); err != nil {
			return err
		}
		for j, o := range r.Peers[:i] {
			if o.Name == p.Name {
				return errf(Invalid, f+".name", p.Name, "BGP peer name '%s' is used twice in this router.", p.Name)
			}
			if o.PeerIPAddress == p.PeerIPAddress {
				return errf(Invalid, f+".peerIpAddress", p.PeerIPAddress.String(), "BGP peers[%d] '%s' already uses peer IP address %s.", j, o.Name, p.PeerIPAddress)
			}
		}
	}
	return nil
}

// checkRouter runs every rule on a router as it would be stored; it fills
// defaults (modes, peer addresses) in r.
func (s *State) checkRouter(r *Router) error {
	if err := ValidName("name", r.Name); err != nil {
		return err
	}
	if _, ok := RegionByName(r.Region); !ok {
		return errf(Invalid, "region", r.Region, "Unknown region '%s'.", r.Region)
	}
	if r.Network == "" {
		return &Error{Code: Required, Field: "network", Reason: "Required field 'resource.network' not specified"}
	}
	if s.Network(r.Project, r.Network) == nil {
		return &Error{Code: NotFound, Field: "network", Value: r.Network,
			Reason: fmt.Sprintf("The resource '%s' was not found", NetworkKey(r.Project, r.Network))}
	}
	if r.BGP == nil && len(r.Peers) > 0 {
		return &Error{Code: Required, Field: "bgp.asn", Reason: "Required field 'resource.bgp.asn' not specified: a router with BGP peers needs an ASN."}
	}
	if r.BGP != nil {
		if err := checkRouterASN("bgp.asn", r.BGP.ASN); err != nil {
			return err
		}
		if err := checkAdvertisement("bgp", r.BGP.Advertisement); err != nil {
			return err
		}
		if r.BGP.Mode == "" {
			r.BGP.Mode = AdvertiseDefault
		}
		if k := r.BGP.KeepaliveInterval; k != 0 && (k < 20 || k > 60) {
			return errf(Invalid, "bgp.keepaliveInterval", itoa(k), "The keepalive interval must be between 20 and 60 seconds.")
		}
	}
	if err := checkRouterInterfaces(r.Interfaces); err != nil {
		return err
	}
	return checkBGPPeers(r)
}

func cloneRouter(r Router) *Router {
	nr := r
	if r.BGP != nil {
		b := *r.BGP
		b.Groups = slices.Clone(b.Groups)
		b.Ranges = slices.Clone(b.Ranges)
		nr.BGP = &b
	}
	nr.Interfaces = slices.Clone(r.Interfaces)
	nr.Peers = slices.Clone(r.Peers)
	for i := range nr.Peers {
		nr.Peers[i].Groups = slices.Clone(nr.Peers[i].Groups)
		nr.Peers[i].Ranges = slices.Clone(nr.Peers[i].Ranges)
	}
	return &nr
}

// CreateRouter adds a router. The dialect fills peers' Priority with
// DefaultAdvertisedRoutePriority when the request has none.
func (t *Txn) CreateRouter(r Router) (*Router, error) {
	s := t.s
	nr := cloneRouter(r)
	if err := s.checkRouter(nr); err != nil {
		return nil, err
	}
	if s.Router(r.Project, r.Region, r.Name) != nil {
		return nil, &Error{Code: AlreadyExists, Reason: fmt.Sprintf("The resource '%s' already exists", RouterKey(r.Project, r.Region, r.Name))}
	}
	nr.ID = t.NewID()
	nr.Created = t.Now
	p := s.proj(r.Project)
	putMap(t, p.routers, nr.Region+"/"+nr.Name, nr)
	t.record(RouterKey(nr.Project, nr.Region, nr.Name), nr)
	return nr, nil
}

// UpdateRouter replaces a router's settings (GCE update, and patch after
// the dialect merged the request into the stored router). The network
// cannot change.
func (t *Txn) UpdateRouter(r Router) (*Router, error) {
	s := t.s
	old := s.Router(r.Project, r.Region, r.Name)
	if old == nil {
		return nil, notFound("router", RouterKey(r.Project, r.Region, r.Name))
	}
	if r.Network != "" && r.Network != old.Network {
		return nil, errf(Invalid, "network", r.Network, "The network of router '%s' cannot be changed (it is '%s').", r.Name, old.Network)
	}
	nr := cloneRouter(r)
	nr.Network = old.Network
	if err := s.checkRouter(nr); err != nil {
		return nil, err
	}
	nr.ID, nr.Created = old.ID, old.Created
	p := s.proj(r.Project)
	putMap(t, p.routers, nr.Region+"/"+nr.Name, nr)
	t.record(RouterKey(nr.Project, nr.Region, nr.Name), nr)
	return nr, nil
}

// DeleteRouter removes a router (its sessions close).
func (t *Txn) DeleteRouter(project, region, name string) error {
	p := t.s.projects[project]
	if p == nil || p.routers[region+"/"+name] == nil {
		return notFound("router", RouterKey(project, region, name))
	}
	putMap[string, Router](t, p.routers, region+"/"+name, nil)
	t.record(RouterKey(project, region, name), nil)
	return nil
}

// --- reads ---

// Router returns a router or nil.
func (s *State) Router(p, region, name string) *Router {
	if pr := s.projects[p]; pr != nil {
		return pr.routers[region+"/"+name]
	}
	return nil
}

// Routers lists a project's routers; region "" lists all regions.
func (s *State) Routers(p, region string) []*Router {
	if pr := s.projects[p]; pr != nil {
		return sortedValues(pr.routers, func(r *Router) bool { return region == "" || r.Region == region })
	}
	return nil
}

// RoutersOfNetwork lists the routers of one network.
func (s *State) RoutersOfNetwork(p, network string) []*Router {
	if pr := s.projects[p]; pr != nil {
		return sortedValues(pr.routers, func(r *Router) bool { return r.Network == network })
	}
	return nil
}

// RouterSubnetRanges lists the subnet ranges a router covers: the primary
// and secondary ranges of the subnets of its network — in the router's
// region only, unless the network's dynamic routing mode is GLOBAL (GCE:
// "with regional dynamic routing, each Cloud Router advertises the subnets
// in its region"). These are what DEFAULT mode and the ALL_SUBNETS group
// announce.
func (s *State) RouterSubnetRanges(r *Router) []netip.Prefix {
	global := false
	if n := s.Network(r.Project, r.Network); n != nil {
		global = strings.EqualFold(n.RoutingMode, "GLOBAL")
	} else {
		return nil
	}
	var out []netip.Prefix
	for _, ru := range s.Ranges(r.Project, r.Network) {
		region, _, _ := strings.Cut(ru.Subnet, "/")
		if global || region == r.Region {
			out = append(out, ru.Range)
		}
	}
	return out
}
