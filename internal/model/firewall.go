package model

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Firewall rules (GCE global/firewalls) are per network, stateful, and
// evaluated by package netpolicy. This file holds the resource and GCE's
// validation rules.

// Firewall directions and limits.
const (
	Ingress                 = "INGRESS"
	Egress                  = "EGRESS"
	DefaultFirewallPriority = 1000
	// MaxSourceTags and MaxTargetTags are GCE's per-rule limits; MaxRanges
	// bounds sourceRanges and destinationRanges each.
	MaxSourceTags = 30
	MaxTargetTags = 70
	MaxRanges     = 5000
)

// Firewall is a VPC firewall rule. Exactly one of Allowed and Denied is
// non-empty. After validation an INGRESS rule always has SourceRanges or
// SourceTags (neither given means sourceRanges 0.0.0.0/0, as GCE stores it)
// and an EGRESS rule always has DestinationRanges (default 0.0.0.0/0).
type Firewall struct {
	Project     string `json:"project"`
	Name        string `json:"name"`
	ID          uint64 `json:"id,string"`
	Description string `json:"description,omitempty"`
	Created     string `json:"created"`
	Network     string `json:"network"`
	Direction   string `json:"direction"`
	Priority    int    `json:"priority"`
	// Allowed and Denied hold the protocol and port lists of the action.
	Allowed           []FirewallProtocol `json:"allowed,omitempty"`
	Denied            []FirewallProtocol `json:"denied,omitempty"`
	SourceRanges      []netip.Prefix     `json:"sourceRanges,omitempty"`
	DestinationRanges []netip.Prefix     `json:"destinationRanges,omitempty"`
	// SourceTags match the primary IP of the interface, in the rule's
	// network, of instances with one of the tags: never their alias IPs.
	SourceTags []string `json:"sourceTags,omitempty"`
	// TargetTags select the instances the rule applies to; empty means all
	// instances of the network.
	TargetTags []string        `json:"targetTags,omitempty"`
	Disabled   bool            `json:"disabled,omitempty"`
	Extra      json.RawMessage `json:"extra,omitempty"`
}

// FirewallProtocol is one allowed[] or denied[] entry as GCE spells it.
type FirewallProtocol struct {
	Protocol string   `json:"IPProtocol"`
	Ports    []string `json:"ports,omitempty"`
}

// Deny reports whether the rule denies.
func (f *Firewall) Deny() bool { return len(f.Denied) > 0 }

// Protocols returns the entries of the rule's action.
func (f *Firewall) Protocols() []FirewallProtocol {
	if f.Deny() {
		return f.Denied
	}
	return f.Allowed
}

// FirewallKey is the store key of a firewall rule.
func FirewallKey(p, n string) string { return "projects/" + p + "/global/firewalls/" + n }

// --- protocol and port parsing ---

// Protocol numbers GCE accepts by name.
var protocolNames = map[string]uint8{
	"tcp": 6, "udp": 17, "icmp": 1, "esp": 50, "ah": 51, "sctp": 132, "ipip": 4,
}

// ProtocolName is the GCE name of a protocol number, or the number.
func ProtocolName(n uint8) string {
	for k, v := range protocolNames {
		if v == n {
			return k
		}
	}
	return strconv.Itoa(int(n))
}

// PortRange is an inclusive range of ports.
type PortRange struct {
	Lo uint16 `json:"lo"`
	Hi uint16 `json:"hi"`
}

func (r PortRange) String() string {
	if r.Lo == r.Hi {
		return strconv.Itoa(int(r.Lo))
	}
	return strconv.Itoa(int(r.Lo)) + "-" + strconv.Itoa(int(r.Hi))
}

// Contains reports whether port is in the range.
func (r PortRange) Contains(port uint16) bool { return port >= r.Lo && port <= r.Hi }

// ProtoMatch is a compiled allowed[]/denied[] entry: All matches every
// protocol; otherwise Number, and Ports (empty: every port) for the
// port-carrying protocols.
type ProtoMatch struct {
	All    bool        `json:"all,omitempty"`
	Number uint8       `json:"number"`
	Ports  []PortRange `json:"ports,omitempty"`
}

// Matches reports whether a packet of protocol proto to port matches.
// Port is ignored for protocols without ports.
func (m ProtoMatch) Matches(proto uint8, port uint16) bool {
	if m.All {
		return true
	}
	if m.Number != proto {
		return false
	}
	if len(m.Ports) == 0 {
		return true
	}
	for _, r := range m.Ports {
		if r.Contains(port) {
			return true
		}
	}
	return false
}

// HasPorts reports whether a protocol carries ports (TCP, UDP, SCTP): only
// those may list ports in a rule.
func HasPorts(proto uint8) bool { return proto == 6 || proto == 17 || proto == 132 }

// ParseIPProtocol parses GCE's IPProtocol: a name (tcp, udp, icmp, esp, ah,
// sctp, ipip), "all", or a number 0-255. Names are case-insensitive.
func ParseIPProtocol(s string) (num uint8, all bool, err error) {
	l := strings.ToLower(s)
	if l == "all" {
		return 0, true, nil
	}
	if n, ok := protocolNames[l]; ok {
		return n, false, nil
	}
	if l == "" {
		return 0, false, fmt.Errorf("the protocol is empty")
	}
	if !isDecimal(l) {
		return 0, false, fmt.Errorf("'%s' is not a protocol name (tcp, udp, icmp, esp, ah, sctp, ipip, all) or number (0-255)", s)
	}
	v, err := strconv.Atoi(l)
	if err != nil || v > 255 {
		return 0, false, fmt.Errorf("protocol number %s is out of range 0-255", s)
	}
	return uint8(v), false, nil
}

// ParsePortRange parses a port entry: "22" or "1000-2000", ports 0-65535,
// decimal without sign, spaces or leading zeros, low <= high.
func ParsePortRange(s string) (PortRange, error) {
	lo, hi, isRange := strings.Cut(s, "-")
	a, err := parsePort(lo)
	if err != nil {
		return PortRange{}, fmt.Errorf("invalid port '%s': %v", s, err)
	}
	if !isRange {
		return PortRange{a, a}, nil
	}
	b, err := parsePort(hi)
	if err != nil {
		return PortRange{}, fmt.Errorf("invalid port range '%s': %v", s, err)
	}
	if a > b {
		return PortRange{}, fmt.Errorf("invalid port range '%s': the first port is greater than the last", s)
	}
	return PortRange{a, b}, nil
}

func parsePort(s string) (uint16, error) {
	if s == "" {
		return 0, fmt.Errorf("empty port")
	}
	if !isDecimal(s) || (len(s) > 1 && s[0] == '0') {
		return 0, fmt.Errorf("'%s' is not a port number", s)
	}
	if len(s) > 5 {
		return 0, fmt.Errorf("port %s is out of range 0-65535", s)
	}
	v, _ := strconv.Atoi(s)
	if v > 65535 {
		return 0, fmt.Errorf("port %s is out of range 0-65535", s)
	}
	return uint16(v), nil
}

func isDecimal(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// CompileProtocol checks one allowed[]/denied[] entry and compiles it.
// field is its path, e.g. "allowed[0]".
func CompileProtocol(fp FirewallProtocol, field string) (ProtoMatch, error) {
	if fp.Protocol == "" {
		return ProtoMatch{}, &Error{Code: Required, Field: field + ".IPProtocol", Reason: "Required field 'resource." + field + ".IPProtocol' not specified"}
	}
	num, all, err := ParseIPProtocol(fp.Protocol)
	if err != nil {
		return ProtoMatch{}, errf(Invalid, field+".IPProtocol", fp.Protocol, "Invalid protocol: %v.", err)
	}
	m := ProtoMatch{All: all, Number: num}
	if len(fp.Ports) > 0 && (all || !HasPorts(num)) {
		return ProtoMatch{}, errf(Invalid, field+".ports", strings.Join(fp.Ports, ","),
			"Ports may only be specified for the tcp, udp and sctp protocols, not '%s'.", fp.Protocol)
	}
	for i, p := range fp.Ports {
		r, err := ParsePortRange(p)
		if err != nil {
			return ProtoMatch{}, errf(Invalid, fmt.Sprintf("%s.ports[%d]", field, i), p, "%s.", upperFirst(err.Error()))
		}
		m.Ports = append(m.Ports, r)
	}
	return m, nil
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// ParseFirewallRange parses a source or destination range: a CIDR or a
// single address (a /32 or /128). An unaligned CIDR is masked, as GCE
// accepts "10.0.0.5/24" for 10.0.0.0/24.
func ParseFirewallRange(field, s string) (netip.Prefix, error) {
	t := strings.TrimSpace(s)
	var p netip.Prefix
	var err error
	if strings.Contains(t, "/") {
		p, err = netip.ParsePrefix(t)
	} else {
		var a netip.Addr
		if a, err = netip.ParseAddr(t); err == nil {
			p = netip.PrefixFrom(a, a.BitLen())
		}
	}
	if err != nil || p.Addr().Zone() != "" || p.Addr().Is4In6() {
		return netip.Prefix{}, errf(Invalid, field, s, "Invalid IPCidrRange: %s.", s)
	}
	return p.Masked(), nil
}

// --- validation rules, one function each ---

// checkFirewallDirection: INGRESS (default) or EGRESS.
func checkFirewallDirection(d string) (string, error) {
	switch d {
	case "":
		return Ingress, nil
	case Ingress, Egress:
		return d, nil
	}
	return "", errf(Invalid, "direction", d, "Direction must be INGRESS or EGRESS.")
}

// checkFirewallAction: exactly one of allowed and denied, each entry valid.
func checkFirewallAction(f *Firewall) error {
	switch {
	case len(f.Allowed) == 0 && len(f.Denied) == 0:
		return &Error{Code: Required, Field: "allowed", Reason: "Required field 'resource.allowed' not specified: a firewall rule needs allowed[] or denied[]."}
	case len(f.Allowed) > 0 && len(f.Denied) > 0:
		return errf(Invalid, "denied", "", "A firewall rule cannot have both allowed[] and denied[] entries.")
	}
	name := "allowed"
	if f.Deny() {
		name = "denied"
	}
	for i, p := range f.Protocols() {
		if _, err := CompileProtocol(p, fmt.Sprintf("%s[%d]", name, i)); err != nil {
			return err
		}
	}
	return nil
}

// checkFirewallTags: RFC 1035 tag names, within GCE's counts; EGRESS rules
// take no sourceTags ("For EGRESS traffic, you cannot specify the
// sourceTags fields").
func checkFirewallTags(f *Firewall) error {
	if f.Direction == Egress && len(f.SourceTags) > 0 {
		return errf(Invalid, "sourceTags", strings.Join(f.SourceTags, ","), "Source tags cannot be specified for EGRESS firewall rules.")
	}
	if len(f.SourceTags) > MaxSourceTags {
		return errf(Invalid, "sourceTags", "", "A firewall rule can have at most %d source tags, got %d.", MaxSourceTags, len(f.SourceTags))
	}
	if len(f.TargetTags) > MaxTargetTags {
		return errf(Invalid, "targetTags", "", "A firewall rule can have at most %d target tags, got %d.", MaxTargetTags, len(f.TargetTags))
	}
	for i, t := range f.SourceTags {
		if err := ValidName(fmt.Sprintf("sourceTags[%d]", i), t); err != nil {
			return err
		}
	}
	for i, t := range f.TargetTags {
		if err := ValidName(fmt.Sprintf("targetTags[%d]", i), t); err != nil {
			return err
		}
	}
	return nil
}

// checkFirewallRanges: valid ranges within the count limit.
func checkFirewallRanges(field string, rs []netip.Prefix) error {
	if len(rs) > MaxRanges {
		return errf(Invalid, field, "", "A firewall rule can have at most %d %s, got %d.", MaxRanges, field, len(rs))
	}
	for i, r := range rs {
		if !r.IsValid() || r.Masked() != r {
			return errf(Invalid, fmt.Sprintf("%s[%d]", field, i), r.String(), "Invalid IPCidrRange: %s.", r)
		}
	}
	return nil
}

// firewallDefaults fills GCE's defaults: an INGRESS rule with neither
// sourceRanges nor sourceTags gets sourceRanges 0.0.0.0/0, an EGRESS rule
// without destinationRanges gets 0.0.0.0/0.
func firewallDefaults(f *Firewall) {
	any4 := netip.MustParsePrefix("0.0.0.0/0")
	if f.Direction == Ingress && len(f.SourceRanges) == 0 && len(f.SourceTags) == 0 {
		f.SourceRanges = []netip.Prefix{any4}
	}
	if f.Direction == Egress && len(f.DestinationRanges) == 0 {
		f.DestinationRanges = []netip.Prefix{any4}
	}
}

// validateFirewall runs every rule and fills defaults in place. Defaults
// apply at creation only: an update that leaves an INGRESS rule with
// neither sourceRanges nor sourceTags is refused rather than silently
// widened to 0.0.0.0/0.
func (s *State) validateFirewall(f *Firewall, create bool) error {
	if f.Network == "" {
		f.Network = "default"
	}
	if err := s.checkNetworkRef(f.Project, f.Network); err != nil {
		return err
	}
	d, err := checkFirewallDirection(f.Direction)
	if err != nil {
		return err
	}
	f.Direction = d
	if err := checkPriority("priority", f.Priority); err != nil {
		return err
	}
	if err := checkFirewallAction(f); err != nil {
		return err
	}
	if err := checkFirewallRanges("sourceRanges", f.SourceRanges); err != nil {
		return err
	}
	if err := checkFirewallRanges("destinationRanges", f.DestinationRanges); err != nil {
		return err
	}
	if err := checkFirewallTags(f); err != nil {
		return err
	}
	if !create {
		if f.Direction == Ingress && len(f.SourceRanges) == 0 && len(f.SourceTags) == 0 {
			return &Error{Code: Required, Field: "sourceRanges", Reason: "An INGRESS rule needs sourceRanges or sourceTags; give 0.0.0.0/0 explicitly to match every source."}
		}
		if f.Direction == Egress && len(f.DestinationRanges) == 0 {
			return &Error{Code: Required, Field: "destinationRanges", Reason: "An EGRESS rule needs destinationRanges; give 0.0.0.0/0 explicitly to match every destination."}
		}
	}
	firewallDefaults(f)
	return nil
}

func cloneFirewall(f Firewall) Firewall {
	n := f
	n.Allowed = cloneProtos(f.Allowed)
	n.Denied = cloneProtos(f.Denied)
	n.SourceRanges = slices.Clone(f.SourceRanges)
	n.DestinationRanges = slices.Clone(f.DestinationRanges)
	n.SourceTags = slices.Clone(f.SourceTags)
	n.TargetTags = slices.Clone(f.TargetTags)
	for i := range n.Allowed {
		n.Allowed[i].Protocol = strings.ToLower(n.Allowed[i].Protocol)
	}
	for i := range n.Denied {
		n.Denied[i].Protocol = strings.ToLower(n.Denied[i].Protocol)
	}
	return n
}

func cloneProtos(ps []FirewallProtocol) []FirewallProtocol {
	if ps == nil {
		return nil
	}
	out := make([]FirewallProtocol, len(ps))
	for i, p := range ps {
		out[i] = FirewallProtocol{Protocol: p.Protocol, Ports: slices.Clone(p.Ports)}
	}
	return out
}

// CreateFirewall adds a firewall rule. The dialect fills Priority with
// DefaultFirewallPriority when the request has none; Network "" is
// "default", as in GCE.
func (t *Txn) CreateFirewall(f Firewall) (*Firewall, error) {
	if err := firewallsByName.checkNew(t.s, f.Project, f.Name); err != nil {
		return nil, err
	}
	nf := cloneFirewall(f)
	if err := t.s.validateFirewall(&nf, true); err != nil {
		return nil, err
	}
	nf.ID = t.NewID()
	nf.Created = t.Now
	firewallsByName.put(t, f.Project, nf.Name, &nf)
	return &nf, nil
}

// UpdateFirewall replaces a rule's content (GCE update and, after the
// dialect merged the patch, patch). Name, network and direction cannot
// change; id and creation time are kept.
func (t *Txn) UpdateFirewall(f Firewall) (*Firewall, error) {
	old := firewallsByName.get(t.s, f.Project, f.Name)
	if old == nil {
		return nil, notFound("firewall", FirewallKey(f.Project, f.Name))
	}
	nf := cloneFirewall(f)
	if nf.Network == "" {
		nf.Network = old.Network
	}
	if nf.Network != old.Network {
		return nil, errf(Invalid, "network", nf.Network, "The network of a firewall rule cannot be changed (it is '%s').", old.Network)
	}
	if nf.Direction == "" {
		nf.Direction = old.Direction
	}
	if nf.Direction != old.Direction {
		return nil, errf(Invalid, "direction", nf.Direction, "The direction of a firewall rule cannot be changed (it is %s).", old.Direction)
	}
	if err := t.s.validateFirewall(&nf, false); err != nil {
		return nil, err
	}
	nf.ID, nf.Created = old.ID, old.Created
	firewallsByName.put(t, f.Project, nf.Name, &nf)
	return &nf, nil
}

// DeleteFirewall removes a firewall rule.
func (t *Txn) DeleteFirewall(project, name string) error {
	return firewallsByName.remove(t, project, name)
}

// Firewall returns a firewall rule or nil.
func (s *State) Firewall(p, name string) *Firewall { return firewallsByName.get(s, p, name) }

// Firewalls lists a project's firewall rules by name.
func (s *State) Firewalls(p string) []*Firewall { return firewallsByName.list(s, p, nil) }

// FirewallsOfNetwork lists the firewall rules of one network.
func (s *State) FirewallsOfNetwork(p, network string) []*Firewall {
	return firewallsByName.list(s, p, func(f *Firewall) bool { return f.Network == network })
}
