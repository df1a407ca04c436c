package model

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Routes of a network come in four kinds (GCE "route types"):
//
//   - subnet routes: one per primary and secondary range of every subnet of
//     the network. They are implicit: derived from the subnets, never stored,
//     never one per alias (alias IP ranges are routable without routes).
//   - peering subnet routes: the subnet ranges of every network this one has
//     an ACTIVE peering with.
//   - static routes (global/routes): stored resources, below.
//   - dynamic routes: learned by the BGP layer, set whole per network with
//     SetDynamicRoutes.
//
// The routing decision itself lives in package netpolicy; this file holds
// the resources and their validation rules.

// Route defaults and limits GCE documents.
const (
	DefaultRoutePriority = 1000
	MaxRoutePriority     = 65535
	// DefaultInternetGateway is the only gateway a static route may name.
	DefaultInternetGateway = "default-internet-gateway"
)

// Route is a static route (GCE global/routes). Exactly one next hop is set.
type Route struct {
	Project     string       `json:"project"`
	Name        string       `json:"name"`
	ID          uint64       `json:"id,string"`
	Description string       `json:"description,omitempty"`
	Created     string       `json:"created"`
	Network     string       `json:"network"`
	DestRange   netip.Prefix `json:"destRange"`
	Priority    int          `json:"priority"`
	// Tags limit the route to instances carrying one of them; empty means
	// every instance of the network.
	Tags []string `json:"tags,omitempty"`
	// NextHopInstance is "ZONE/NAME" of an instance in the route's project;
	// packets go to its interface in the route's network.
	NextHopInstance string `json:"nextHopInstance,omitempty"`
	// NextHopIP must be the primary IP of an interface in the network.
	NextHopIP netip.Addr `json:"nextHopIp,omitzero"`
	// NextHopGateway is DefaultInternetGateway.
	NextHopGateway string          `json:"nextHopGateway,omitempty"`
	Extra          json.RawMessage `json:"extra,omitempty"`
}

// DynamicRoutes is the set of routes the BGP layer learned for one network.
// It is stored (so the data plane sees it in the change stream) and
// replaced whole on every update.
type DynamicRoutes struct {
	Project string         `json:"project"`
	Network string         `json:"network"`
	Routes  []DynamicRoute `json:"routes"`
}

// DynamicRoute is one learned prefix. Priority is GCE's route priority of a
// learned route (the MED); NextHop is the BGP next hop; Peer names the
// session it came from.
type DynamicRoute struct {
	Dest     netip.Prefix `json:"dest"`
	NextHop  netip.Addr   `json:"nextHop"`
	Priority int          `json:"priority"`
	Peer     string       `json:"peer,omitempty"`
}

// RouteKey is the store key of a static route.
func RouteKey(p, n string) string { return "projects/" + p + "/global/routes/" + n }

// DynamicRoutesKey is the store key of a network's learned routes.
func DynamicRoutesKey(p, network string) string {
	return "projects/" + p + "/global/dynamicRoutes/" + network
}

// RouteWarning is GCE's route warning: a route that exists but whose next
// hop cannot take packets now. Such a route is not used.
type RouteWarning struct {
	Code    string
	Message string
}

// GCE route warning codes.
const (
	WarnNextHopInstanceNotFound   = "NEXT_HOP_INSTANCE_NOT_FOUND"
	WarnNextHopInstanceNotOnNet   = "NEXT_HOP_INSTANCE_NOT_ON_NETWORK"
	WarnNextHopNotRunning         = "NEXT_HOP_NOT_RUNNING"
	WarnNextHopCannotIPForward    = "NEXT_HOP_CANNOT_IP_FORWARD"
	WarnNextHopAddressNotAssigned = "NEXT_HOP_ADDRESS_NOT_ASSIGNED"
	// WarnShadowedBySubnetRoute is aliasnet's own code for a route whose
	// destination a subnet route now covers (netpolicy never uses it).
	WarnShadowedBySubnetRoute = "SHADOWED_BY_SUBNET_ROUTE"
)

// --- validation rules, one function each ---

// checkPriority: 0 to 65535 inclusive.
func checkPriority(field string, v int) error {
	if v < 0 || v > MaxRoutePriority {
		return errf(Invalid, field, itoa(v), "Priority must be between 0 and %d inclusive.", MaxRoutePriority)
	}
	return nil
}

// checkRouteDest: a valid, aligned IPv4 or IPv6 CIDR.
func checkRouteDest(p netip.Prefix) error {
	if !p.IsValid() {
		return &Error{Code: Required, Field: "destRange", Reason: "Required field 'resource.destRange' not specified"}
	}
	if p.Addr().Zone() != "" || p.Addr().Is4In6() || p.Masked() != p {
		return errf(Invalid, "destRange", p.String(), "Invalid IPCidrRange: %s is not a valid network address; did you mean %s?", p, p.Masked())
	}
	return nil
}

// checkRouteTags: every tag is an RFC 1035 name.
func checkRouteTags(tags []string) error {
	for i, t := range tags {
		if err := ValidName(fmt.Sprintf("tags[%d]", i), t); err != nil {
			return err
		}
	}
	return nil
}

// checkNotWithinSubnetRoute is GCE's rule for static routes: a static
// route's destination may not be equal to, or fit within, the destination
// of a subnet route or a peering subnet route (the primary and secondary
// ranges of the network's subnets and of its ACTIVE peers). A broader
// destination (e.g. 10.0.0.0/8 over a 10.128.0.0/16 subnet) is allowed:
// the subnet route still wins for its own range by longest prefix.
func (s *State) checkNotWithinSubnetRoute(project, network string, dest netip.Prefix) error {
	check := func(pp, pn string, peering string) error {
		p := s.projects[pp]
		if p == nil {
			return nil
		}
		ni := p.nets[pn]
		if ni == nil {
			return nil
		}
		for q, e := range ni.ranges.Supernets(dest) {
			region, sname := splitKey(e.subnet)
			which := "primary range"
			if e.name != "" {
				which = "secondary range '" + e.name + "'"
			}
			where := fmt.Sprintf("subnetwork '%s' (%s %s)", SubnetKey(pp, region, sname), which, q)
			if peering != "" {
				where = fmt.Sprintf("peered %s via peering '%s'", where, peering)
			}
			if q == dest {
				return errf(Invalid, "destRange", dest.String(),
					"The destination range is equal to the subnet route of %s; a static route cannot have a destination equal to or more specific than a subnet route.", where)
			}
			return errf(Invalid, "destRange", dest.String(),
				"The destination range fits within the subnet route of %s; a static route cannot have a destination equal to or more specific than a subnet route.", where)
		}
		return nil
	}
	if err := check(project, network, ""); err != nil {
		return err
	}
	n := s.Network(project, network)
	if n == nil {
		return nil
	}
	for _, pe := range n.Peerings {
		if pe.State != "ACTIVE" {
			continue
		}
		pp, pn := ParseNetworkRef(pe.Peer, project)
		if err := check(pp, pn, pe.Name); err != nil {
			return err
		}
	}
	return nil
}

// checkRouteNextHop: exactly one next hop; an instance must exist and have
// an interface in the route's network; an IP must be of the destination's
// family, inside a primary range of the network and never an alias IP
// (seed 000: "In a static route, the next-hop IP address must be the
// primary IP address of the virtual machine instance. An alias IP address
// is not supported as the next-hop IP address.").
func (s *State) checkRouteNextHop(r *Route) error {
	n := 0
	if r.NextHopInstance != "" {
		n++
	}
	if r.NextHopIP.IsValid() {
		n++
	}
	if r.NextHopGateway != "" {
		n++
	}
	switch {
	case n == 0:
		return &Error{Code: Required, Field: "nextHop", Reason: "Required field 'resource.nextHop' not specified: give one of nextHopInstance, nextHopIp or nextHopGateway."}
	case n > 1:
		return errf(Invalid, "nextHop", "", "A route must have exactly one next hop; got %d of nextHopInstance, nextHopIp and nextHopGateway.", n)
	}
	switch {
	case r.NextHopGateway != "":
		if r.NextHopGateway != DefaultInternetGateway {
			return errf(Invalid, "nextHopGateway", r.NextHopGateway, "The only gateway a route can name is '%s'.", DefaultInternetGateway)
		}
	case r.NextHopInstance != "":
		zone, name, ok := strings.Cut(r.NextHopInstance, "/")
		if !ok || zone == "" || name == "" {
			return errf(Invalid, "nextHopInstance", r.NextHopInstance, "A next hop instance is named 'zones/ZONE/instances/NAME'.")
		}
		in := s.Instance(r.Project, zone, name)
		if in == nil {
			return &Error{Code: NotFound, Field: "nextHopInstance", Value: r.NextHopInstance,
				Reason: fmt.Sprintf("The resource '%s' was not found", InstanceKey(r.Project, zone, name))}
		}
		if s.nicInNetwork(in, r.Network) == nil {
			return errf(Invalid, "nextHopInstance", r.NextHopInstance,
				"Next hop instance '%s' has no network interface in network '%s'.", InstanceKey(r.Project, zone, name), r.Network)
		}
	case r.NextHopIP.IsValid():
		a := r.NextHopIP
		if a.Zone() != "" || a.Is4In6() {
			return errf(Invalid, "nextHopIp", a.String(), "Invalid IP address: use a plain IPv4 or IPv6 address.")
		}
		if a.Is4() != r.DestRange.Addr().Is4() {
			return errf(Invalid, "nextHopIp", a.String(), "The next hop IP %s is not of the same IP version as destRange %s.", a, r.DestRange)
		}
		return s.checkNextHopIPIsPrimary(r.Project, r.Network, a)
	}
	return nil
}

// checkNextHopIPIsPrimary refuses a next hop IP that is an alias IP (inside
// an interface's alias range, or anywhere in a secondary range, which only
// alias ranges use), a subnet's reserved address, or outside every primary
// range of the network. An unassigned primary-range address is accepted,
// as GCE does: the route then carries NEXT_HOP_ADDRESS_NOT_ASSIGNED and is
// not used until an instance holds that primary IP.
func (s *State) checkNextHopIPIsPrimary(project, network string, a netip.Addr) error {
	p := s.projects[project]
	host := netip.PrefixFrom(a, a.BitLen())
	var e *rangeEntry
	if p != nil {
		e, _ = p.nets[network].rangeFor(host)
	}
	if e == nil {
		return errf(Invalid, "nextHopIp", a.String(),
			"The next hop IP %s is not inside any subnetwork range of network '%s'; it must be the primary IP of an instance in that network.", a, network)
	}
	if q, o, ok := e.pool.Conflict(host); ok {
		ref := s.OwnerRef(o)
		switch {
		case ref.Kind == "reserved":
			return errf(Invalid, "nextHopIp", a.String(), "The next hop IP %s is a reserved address of %s.", a, ref.Key)
		case q.Bits() != a.BitLen() || q.Addr() != a:
			return errf(Invalid, "nextHopIp", a.String(),
				"The next hop IP %s is an alias IP (alias IP range %s of %s); an alias IP is not supported as a next hop: use the instance's primary IP.", a, q, s.holderName(o))
		}
		if ifc := s.InterfaceInNetwork(project, network, a); ifc == nil {
			return errf(Invalid, "nextHopIp", a.String(),
				"The next hop IP %s is an alias IP of %s; an alias IP is not supported as a next hop: use the instance's primary IP.", a, s.holderName(o))
		}
		return nil
	}
	if e.name != "" {
		region, sname := splitKey(e.subnet)
		return errf(Invalid, "nextHopIp", a.String(),
			"The next hop IP %s is in secondary range '%s' of subnetwork '%s', which holds only alias IP ranges; an alias IP is not supported as a next hop: use an instance's primary IP.",
			a, e.name, SubnetKey(project, region, sname))
	}
	return nil
}

// nicInNetwork is an instance's interface in a network, or nil.
func (s *State) nicInNetwork(in *Instance, network string) *Interface {
	for _, ifc := range s.NICs(in) {
		if ifc.Network == network {
			return ifc
		}
	}
	return nil
}

// CreateRoute adds a static route. The dialect fills Priority with
// DefaultRoutePriority when the request has none.
func (t *Txn) CreateRoute(r Route) (*Route, error) {
	s := t.s
	if err := routesByName.checkNew(s, r.Project, r.Name); err != nil {
		return nil, err
	}
	if r.Network == "" {
		return nil, &Error{Code: Required, Field: "network", Reason: "Required field 'resource.network' not specified"}
	}
	if err := s.checkNetworkRef(r.Project, r.Network); err != nil {
		return nil, err
	}
	if err := checkRouteDest(r.DestRange); err != nil {
		return nil, err
	}
	if err := checkPriority("priority", r.Priority); err != nil {
		return nil, err
	}
	if err := checkRouteTags(r.Tags); err != nil {
		return nil, err
	}
	if err := s.checkRouteNextHop(&r); err != nil {
		return nil, err
	}
	if err := s.checkNotWithinSubnetRoute(r.Project, r.Network, r.DestRange); err != nil {
		return nil, err
	}
	nr := r
	nr.ID = t.NewID()
	nr.Created = t.Now
	nr.Tags = slices.Clone(r.Tags)
	routesByName.put(t, r.Project, nr.Name, &nr)
	return &nr, nil
}

// DeleteRoute removes a static route.
func (t *Txn) DeleteRoute(project, name string) error {
	return routesByName.remove(t, project, name)
}

// SetDynamicRoutes replaces the learned routes of a network (the BGP
// layer's hook). An empty list deletes the record. Learned prefixes that
// match or fit within a subnet route are kept but never used (GCE: Cloud
// Router ignores them); netpolicy reports them as shadowed.
func (t *Txn) SetDynamicRoutes(project, network string, routes []DynamicRoute) (*DynamicRoutes, error) {
	if t.s.Network(project, network) == nil {
		return nil, notFound("network", NetworkKey(project, network))
	}
	for i, r := range routes {
		f := fmt.Sprintf("routes[%d]", i)
		if !r.Dest.IsValid() || r.Dest.Masked() != r.Dest {
			return nil, errf(Invalid, f+".dest", r.Dest.String(), "Invalid destination prefix.")
		}
		if !r.NextHop.IsValid() || r.NextHop.Is4() != r.Dest.Addr().Is4() {
			return nil, errf(Invalid, f+".nextHop", r.NextHop.String(), "The next hop must be an address of the destination's IP version.")
		}
		if r.Priority < 0 {
			return nil, errf(Invalid, f+".priority", itoa(r.Priority), "Priority must not be negative.")
		}
	}
	p := t.s.proj(project)
	if len(routes) == 0 {
		putMap[string, DynamicRoutes](t, p.dynamic, network, nil)
		t.record(DynamicRoutesKey(project, network), nil)
		return nil, nil
	}
	d := &DynamicRoutes{Project: project, Network: network, Routes: slices.Clone(routes)}
	slices.SortStableFunc(d.Routes, func(a, b DynamicRoute) int {
		if c := a.Dest.Addr().Compare(b.Dest.Addr()); c != 0 {
			return c
		}
		if c := cmp.Compare(a.Dest.Bits(), b.Dest.Bits()); c != 0 {
			return c
		}
		return cmp.Compare(a.Priority, b.Priority)
	})
	putMap(t, p.dynamic, network, d)
	t.record(DynamicRoutesKey(project, network), d)
	return d, nil
}

// --- reads ---

// Route returns a static route or nil.
func (s *State) Route(p, name string) *Route { return routesByName.get(s, p, name) }

// Routes lists a project's static routes by name.
func (s *State) Routes(p string) []*Route { return routesByName.list(s, p, nil) }

// RoutesOfNetwork lists the static routes of one network.
func (s *State) RoutesOfNetwork(p, network string) []*Route {
	return routesByName.list(s, p, func(r *Route) bool { return r.Network == network })
}

// DynamicRoutesOf returns a network's learned routes (nil when none).
func (s *State) DynamicRoutesOf(p, network string) *DynamicRoutes {
	if pr := s.projects[p]; pr != nil {
		return pr.dynamic[network]
	}
	return nil
}

// AllDynamicRoutes lists every network's learned routes in a project.
func (s *State) AllDynamicRoutes(p string) []*DynamicRoutes {
	if pr := s.projects[p]; pr != nil {
		return sortedValues(pr.dynamic, nil)
	}
	return nil
}

// RouteNextHop resolves a static route's next hop now: the interface that
// takes its packets (nil for the internet gateway) and the warnings that
// make the route unusable. NEXT_HOP_CANNOT_IP_FORWARD is a warning that
// does not make the route unusable: packets are sent to the instance, which
// drops every one not addressed to it (GCE's destination check).
func (s *State) RouteNextHop(r *Route) (*Instance, *Interface, []RouteWarning) {
	var in *Instance
	var ifc *Interface
	switch {
	case r.NextHopGateway != "":
		return nil, nil, nil
	case r.NextHopInstance != "":
		zone, name, _ := strings.Cut(r.NextHopInstance, "/")
		in = s.Instance(r.Project, zone, name)
		if in == nil {
			return nil, nil, []RouteWarning{{WarnNextHopInstanceNotFound,
				fmt.Sprintf("Next hop instance '%s' does not exist.", InstanceKey(r.Project, zone, name))}}
		}
		ifc = s.nicInNetwork(in, r.Network)
		if ifc == nil {
			return in, nil, []RouteWarning{{WarnNextHopInstanceNotOnNet,
				fmt.Sprintf("Next hop instance '%s' has no network interface in network '%s'.", InstanceKey(r.Project, zone, name), r.Network)}}
		}
	case r.NextHopIP.IsValid():
		ifc = s.InterfaceInNetwork(r.Project, r.Network, r.NextHopIP)
		if ifc == nil || ifc.Instance == "" {
			return nil, nil, []RouteWarning{{WarnNextHopAddressNotAssigned,
				fmt.Sprintf("Next hop address %s is not the primary IP of any instance in network '%s'.", r.NextHopIP, r.Network)}}
		}
		zone, name, _ := strings.Cut(ifc.Instance, "/")
		in = s.Instance(r.Project, zone, name)
		if in == nil {
			return nil, nil, []RouteWarning{{WarnNextHopAddressNotAssigned,
				fmt.Sprintf("Next hop address %s is not the primary IP of any instance in network '%s'.", r.NextHopIP, r.Network)}}
		}
	}
	var ws []RouteWarning
	if in.Status != InstanceRunning {
		ws = append(ws, RouteWarning{WarnNextHopNotRunning,
			fmt.Sprintf("Next hop instance '%s' is %s.", InstanceKey(in.Project, in.Zone, in.Name), in.Status)})
	}
	if !in.CanIPForward {
		ws = append(ws, RouteWarning{WarnNextHopCannotIPForward,
			fmt.Sprintf("Next hop instance '%s' cannot forward IP packets (canIpForward is false): it drops every packet not addressed to it.", InstanceKey(in.Project, in.Zone, in.Name))})
	}
	return in, ifc, ws
}

// RouteUsable reports whether warnings leave a route in use.
func RouteUsable(ws []RouteWarning) bool {
	for _, w := range ws {
		if w.Code != WarnNextHopCannotIPForward {
			return false
		}
	}
	return true
}

// NetworkPolicyUsers names the routes and firewall rules that use a
// network (a network with any of them should not be deleted; GCE refuses).
func (s *State) NetworkPolicyUsers(project, network string) []string {
	var out []string
	for _, r := range s.RoutesOfNetwork(project, network) {
		out = append(out, RouteKey(project, r.Name))
	}
	for _, f := range s.FirewallsOfNetwork(project, network) {
		out = append(out, FirewallKey(project, f.Name))
	}
	return out
}

// SubnetRouteName is the stable name of the implicit route of a subnet
// range (GCE names system routes "default-route-" plus a hash).
func SubnetRouteName(project, network string, pfx netip.Prefix) string {
	return "default-route-" + RouteHash(project, network, pfx.String())
}

// RouteHash is a stable 16-hex-digit hash (FNV-1a 64) of parts, for the
// names of system-generated routes.
func RouteHash(parts ...string) string {
	var h uint64 = 14695981039346656037
	for _, p := range parts {
		for i := 0; i < len(p); i++ {
			h ^= uint64(p[i])
			h *= 1099511628211
		}
		h *= 1099511628211 // separator
	}
	return fmt.Sprintf("%016x", h)
}
