package model

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/aliasnet/aliasnet/internal/ipam"
)

// MaxSecondaryRanges is GCE's per-subnet limit.
const MaxSecondaryRanges = 30

// unusable are ranges no subnet may use: "this network", loopback,
// link-local (the metadata server lives there), multicast and reserved.
var unusable = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("224.0.0.0/4"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("::/8"),
	netip.MustParsePrefix("fe80::/10"),
	netip.MustParsePrefix("ff00::/8"),
}

func checkUnicastRange(field string, p netip.Prefix) error {
	if !p.IsValid() {
		return &Error{Code: Required, Field: field, Reason: fmt.Sprintf("Required field 'resource.%s' not specified", field)}
	}
	for _, u := range unusable {
		if p.Overlaps(u) {
			return errf(Invalid, field, p.String(), "Invalid IPCidrRange: %s overlaps the reserved range %s.", p, u)
		}
	}
	return nil
}

// checkSubnetRange validates a primary or secondary IPv4 range's size.
func checkSubnetRange(field string, p netip.Prefix) error {
	if err := checkUnicastRange(field, p); err != nil {
		return err
	}
	if !p.Addr().Is4() {
		return errf(Invalid, field, p.String(), "Invalid IPCidrRange: %s is not an IPv4 range.", p)
	}
	if p.Bits() > 29 || p.Bits() < 4 {
		return errf(Invalid, field, p.String(), "Invalid IPCidrRange: %s. The prefix length must be between /4 and /29.", p)
	}
	return nil
}

// CreateSubnet adds a subnet with its secondary ranges.
func (t *Txn) CreateSubnet(sn Subnet) (*Subnet, error) { return t.createSubnet(sn, false) }

func (t *Txn) createSubnet(sn Subnet, auto bool) (*Subnet, error) {
	if err := ValidName("name", sn.Name); err != nil {
		return nil, err
	}
	if sn.Region == "" {
		return nil, &Error{Code: Required, Field: "region", Reason: "Required field 'resource.region' not specified"}
	}
	p := t.s.proj(sn.Project)
	if p.subnets[sn.Region+"/"+sn.Name] != nil {
		return nil, &Error{Code: AlreadyExists, Reason: fmt.Sprintf("The resource '%s' already exists", SubnetKey(sn.Project, sn.Region, sn.Name))}
	}
	n := p.networks[sn.Network]
	if sn.Network == "" {
		return nil, &Error{Code: Required, Field: "network", Reason: "Required field 'resource.network' not specified"}
	}
	if n == nil {
		return nil, &Error{Code: NotFound, Field: "network", Value: sn.Network,
			Reason: fmt.Sprintf("The resource '%s' was not found", NetworkKey(sn.Project, sn.Network))}
	}
	if err := checkSubnetRange("ipCidrRange", sn.Range); err != nil {
		return nil, err
	}
	if len(sn.Secondary) > MaxSecondaryRanges {
		return nil, errf(Invalid, "secondaryIpRanges", "", "A subnetwork can have at most %d secondary IP ranges, got %d.", MaxSecondaryRanges, len(sn.Secondary))
	}
	if sn.Reserve == "" {
		sn.Reserve = ReserveGCE
	}
	nn := sn
	nn.Secondary = slices.Clone(sn.Secondary)
	nn.ID = t.NewID()
	nn.Created = t.Now
	nn.Fingerprint = t.fingerprint()
	ni := p.netIdx(sn.Network)

	if err := t.addRange(p, n, &nn, "", nn.Range, "ipCidrRange", auto); err != nil {
		return nil, err
	}
	names := map[string]bool{}
	for i, r := range nn.Secondary {
		f := fmt.Sprintf("secondaryIpRanges[%d]", i)
		if err := ValidName(f+".rangeName", r.Name); err != nil {
			return nil, err
		}
		if names[r.Name] {
			return nil, errf(Invalid, f+".rangeName", r.Name, "Secondary range names must be unique within a subnetwork: '%s' is used twice.", r.Name)
		}
		names[r.Name] = true
		if err := checkSubnetRange(f+".ipCidrRange", r.Range); err != nil {
			return nil, err
		}
		if err := t.addRange(p, n, &nn, r.Name, r.Range, f+".ipCidrRange", false); err != nil {
			return nil, err
		}
	}
	if nn.Range6.IsValid() {
		if err := checkUnicastRange("ipv6CidrRange", nn.Range6); err != nil {
			return nil, err
		}
		if nn.Range6.Addr().Is4() || nn.Range6.Bits() > 64 {
			return nil, errf(Invalid, "ipv6CidrRange", nn.Range6.String(), "Invalid IPv6 range %s: it must be an IPv6 /64 or larger.", nn.Range6)
		}
		if err := t.addRange(p, n, &nn, ipv6RangeName, nn.Range6, "ipv6CidrRange", false); err != nil {
			return nil, err
		}
	}
	_ = ni
	t.putSubnet(p, &nn)
	return &nn, nil
}

// ipv6RangeName keys a subnet's IPv6 range in the network index. It is not
// a valid RFC 1035 name, so it never collides with a secondary range.
const ipv6RangeName = "@ipv6"

// addRange checks pfx against every range of the network and of its peers
// and indexes a new pool for it. The primary range gets its reserved
// addresses claimed.
func (t *Txn) addRange(p *project, n *Network, sn *Subnet, rangeName string, pfx netip.Prefix, field string, auto bool) error {
	if n.AutoMode && !auto && rangeName != ipv6RangeName && pfx.Overlaps(AutoModeRange) {
		return errf(Invalid, field, pfx.String(), "Extended subnetworks in auto subnet mode networks cannot overlap with 10.128.0.0/9.")
	}
	if len(n.CIDRBlocks) > 0 && rangeName != ipv6RangeName {
		inside := false
		for _, b := range n.CIDRBlocks {
			if b.Bits() <= pfx.Bits() && b.Contains(pfx.Addr()) {
				inside = true
			}
		}
		if !inside {
			return errf(Invalid, field, pfx.String(), "Invalid IPCidrRange: %s is not inside any CIDR block of network '%s'.", pfx, n.Name)
		}
	}
	ni := p.netIdx(sn.Network)
	if q, e, ok := ni.overlapping(pfx); ok {
		region, name := splitKey(e.subnet)
		if e.subnet == sn.Region+"/"+sn.Name {
			return errf(Invalid, field, pfx.String(), "Invalid IPCidrRange: %s conflicts with %s, another range of the same subnetwork.", pfx, q)
		}
		return errf(Invalid, field, pfx.String(), "Invalid IPCidrRange: %s conflicts with existing subnetwork '%s' in region '%s'.", pfx, name, region)
	}
	for _, pi := range t.s.peerIndexes(sn.Project, sn.Network) {
		if q, e, ok := pi.idx.overlapping(pfx); ok {
			_, name := splitKey(e.subnet)
			return errf(Invalid, field, pfx.String(), "Invalid IPCidrRange: %s conflicts with %s of subnetwork '%s' in peer network '%s'.", pfx, q, name, NetworkKey(pi.project, pi.network))
		}
	}
	pool, err := ipam.NewPool(pfx)
	if err != nil {
		return errf(Invalid, field, pfx.String(), "Invalid IPCidrRange: %v", err)
	}
	if rangeName == "" {
		o := t.s.owner(OwnerRef{Kind: "reserved", Key: SubnetKey(sn.Project, sn.Region, sn.Name)})
		for _, a := range reservedAddrs(sn.Reserve, pfx) {
			if err := pool.Claim(netip.PrefixFrom(a, a.BitLen()), o); err != nil {
				return fmt.Errorf("reserving %s in %s: %w", a, pfx, err)
			}
		}
	}
	t.insertRange(ni, pfx, &rangeEntry{subnet: sn.Region + "/" + sn.Name, name: rangeName, pool: pool})
	return nil
}

func reservedAddrs(pol ReservePolicy, pfx netip.Prefix) []netip.Addr {
	if pol == ReserveAlibaba {
		return ipam.ReservedAlibaba(pfx)
	}
	return ipam.ReservedGCE(pfx)
}

func splitKey(k string) (string, string) {
	for i := 0; i < len(k); i++ {
		if k[i] == '/' {
			return k[:i], k[i+1:]
		}
	}
	return "", k
}

// DeleteSubnet removes a subnet; refused while any interface uses it.
func (t *Txn) DeleteSubnet(project, region, name string) error {
	p := t.s.projects[project]
	if p == nil || p.subnets[region+"/"+name] == nil {
		return notFound("subnetwork", SubnetKey(project, region, name))
	}
	sn := p.subnets[region+"/"+name]
	key := region + "/" + name
	for _, ifc := range sortedValues(p.interfaces, func(i *Interface) bool { return i.Subnet == key && i.Network == sn.Network }) {
		return &Error{Code: FailedPrecondition, Reason: fmt.Sprintf("The subnetwork resource '%s' is already being used by '%s'", SubnetKey(project, region, name), t.s.interfaceUser(ifc))}
	}
	ni := p.nets[sn.Network]
	if err := t.checkRangesFree(p, sn, ni, nil, true); err != nil {
		return err
	}
	t.deleteRange(ni, sn.Range)
	for _, r := range sn.Secondary {
		t.deleteRange(ni, r.Range)
	}
	if sn.Range6.IsValid() {
		t.deleteRange(ni, sn.Range6)
	}
	t.deleteSubnet(p, region, name)
	return nil
}

// checkRangesFree refuses when a range of only (every range of the subnet
// when all is set) still holds an allocation other than the subnet's own
// reserved addresses.
func (t *Txn) checkRangesFree(p *project, sn *Subnet, ni *netIndex, only []SecondaryRange, all bool) error {
	check := func(rangeName string, pfx netip.Prefix) error {
		e, ok := ni.ranges.Get(pfx)
		if !ok {
			return nil
		}
		for q, o := range e.pool.All {
			if t.s.OwnerRef(o).Kind == "reserved" {
				continue
			}
			what := "primary range"
			if rangeName != "" {
				what = "secondary range '" + rangeName + "'"
			}
			return &Error{Code: FailedPrecondition, Field: "secondaryIpRanges", Holder: t.s.holderName(o),
				Reason: fmt.Sprintf("Cannot remove %s (%s) of subnetwork '%s': %s is in use by '%s'.", what, pfx, sn.Name, q, t.s.holderName(o))}
		}
		return nil
	}
	if !all {
		for _, r := range only {
			if err := check(r.Name, r.Range); err != nil {
				return err
			}
		}
		return nil
	}
	if err := check("", sn.Range); err != nil {
		return err
	}
	for _, r := range sn.Secondary {
		if err := check(r.Name, r.Range); err != nil {
			return err
		}
	}
	return nil
}

// SetSecondaryRanges replaces a subnet's secondary ranges (GCE subnet
// PATCH). The fingerprint must match. A request may add ranges or remove
// ranges, never both; a removed range must be unused.
func (t *Txn) SetSecondaryRanges(project, region, name, fingerprint string, ranges []SecondaryRange) (*Subnet, error) {
	p := t.s.projects[project]
	if p == nil || p.subnets[region+"/"+name] == nil {
		return nil, notFound("subnetwork", SubnetKey(project, region, name))
	}
	sn := p.subnets[region+"/"+name]
	if fingerprint == "" {
		return nil, &Error{Code: Required, Field: "fingerprint", Reason: "Required field 'resource.fingerprint' not specified"}
	}
	if fingerprint != sn.Fingerprint {
		return nil, &Error{Code: ConditionNotMet, Field: "fingerprint", Reason: fmt.Sprintf("Supplied fingerprint does not match current fingerprint of subnetwork '%s'.", name)}
	}
	if len(ranges) > MaxSecondaryRanges {
		return nil, errf(Invalid, "secondaryIpRanges", "", "A subnetwork can have at most %d secondary IP ranges, got %d.", MaxSecondaryRanges, len(ranges))
	}
	old := map[SecondaryRange]bool{}
	for _, r := range sn.Secondary {
		old[r] = true
	}
	var added, removed []SecondaryRange
	seen := map[string]bool{}
	keep := map[SecondaryRange]bool{}
	for i, r := range ranges {
		f := fmt.Sprintf("secondaryIpRanges[%d]", i)
		if err := ValidName(f+".rangeName", r.Name); err != nil {
			return nil, err
		}
		if seen[r.Name] {
			return nil, errf(Invalid, f+".rangeName", r.Name, "Secondary range names must be unique within a subnetwork: '%s' is used twice.", r.Name)
		}
		seen[r.Name] = true
		if old[r] {
			keep[r] = true
			continue
		}
		if err := checkSubnetRange(f+".ipCidrRange", r.Range); err != nil {
			return nil, err
		}
		added = append(added, r)
	}
	for _, r := range sn.Secondary {
		if !keep[r] {
			removed = append(removed, r)
		}
	}
	if len(added) > 0 && len(removed) > 0 {
		return nil, errf(Invalid, "secondaryIpRanges", "", "Cannot add and remove secondary IP ranges in the same request.")
	}
	ni := p.nets[sn.Network]
	if err := t.checkRangesFree(p, sn, ni, removed, false); err != nil {
		return nil, err
	}
	for _, r := range removed {
		t.deleteRange(ni, r.Range)
	}
	nn := *sn
	nn.Secondary = slices.Clone(ranges)
	nn.Fingerprint = t.fingerprint()
	n := p.networks[sn.Network]
	for _, r := range added {
		i := slices.Index(ranges, r)
		if err := t.addRange(p, n, &nn, r.Name, r.Range, fmt.Sprintf("secondaryIpRanges[%d].ipCidrRange", i), false); err != nil {
			return nil, err
		}
	}
	t.putSubnet(p, &nn)
	return &nn, nil
}

// ExpandRange grows a subnet's primary range to a superset. The reserved
// addresses at the top of the old range are freed and those of the new
// range reserved.
func (t *Txn) ExpandRange(project, region, name string, newRange netip.Prefix) (*Subnet, error) {
	p := t.s.projects[project]
	if p == nil || p.subnets[region+"/"+name] == nil {
		return nil, notFound("subnetwork", SubnetKey(project, region, name))
	}
	sn := p.subnets[region+"/"+name]
	if err := checkSubnetRange("ipCidrRange", newRange); err != nil {
		return nil, err
	}
	if newRange.Bits() >= sn.Range.Bits() || !newRange.Contains(sn.Range.Addr()) {
		return nil, errf(Invalid, "ipCidrRange", newRange.String(),
			"The new range must be a strict superset of the current range %s (a shorter prefix containing it).", sn.Range)
	}
	n := p.networks[sn.Network]
	ni := p.nets[sn.Network]
	// Check the added space against everything but the old range itself.
	for q, e := range ni.ranges.All() {
		if q != sn.Range && q.Overlaps(newRange) {
			region, other := splitKey(e.subnet)
			return nil, errf(Invalid, "ipCidrRange", newRange.String(), "Invalid IPCidrRange: %s conflicts with existing subnetwork '%s' in region '%s'.", newRange, other, region)
		}
	}
	for _, pi := range t.s.peerIndexes(project, sn.Network) {
		if q, e, ok := pi.idx.overlapping(newRange); ok {
			_, other := splitKey(e.subnet)
			return nil, errf(Invalid, "ipCidrRange", newRange.String(), "Invalid IPCidrRange: %s conflicts with %s of subnetwork '%s' in peer network '%s'.", newRange, q, other, NetworkKey(pi.project, pi.network))
		}
	}
	if n.AutoMode && !isAutoSubnet(sn) && newRange.Overlaps(AutoModeRange) {
		return nil, errf(Invalid, "ipCidrRange", newRange.String(), "Extended subnetworks in auto subnet mode networks cannot overlap with 10.128.0.0/9.")
	}
	e, _ := ni.ranges.Get(sn.Range)
	for _, a := range reservedAddrs(sn.Reserve, sn.Range) {
		pfx := netip.PrefixFrom(a, a.BitLen())
		// The network address and gateway stay reserved in the new range.
		if a == newRange.Addr() || a == newRange.Addr().Next() {
			continue
		}
		t.release(e.pool, pfx)
	}
	if err := t.resizePool(ni, sn.Range, newRange); err != nil {
		return nil, errf(Invalid, "ipCidrRange", newRange.String(), "%v", err)
	}
	o := t.s.owner(OwnerRef{Kind: "reserved", Key: SubnetKey(project, region, name)})
	for _, a := range reservedAddrs(sn.Reserve, newRange) {
		pfx := netip.PrefixFrom(a, a.BitLen())
		if _, ok := e.pool.OwnerOf(pfx); ok {
			continue
		}
		if err := t.claim(e.pool, pfx, o); err != nil {
			return nil, fmt.Errorf("reserving %s: %w", a, err)
		}
	}
	nn := *sn
	nn.Range = newRange
	nn.Fingerprint = t.fingerprint()
	t.putSubnet(p, &nn)
	return &nn, nil
}

func newPool(pfx netip.Prefix) (*ipam.Pool, error) { return ipam.NewPool(pfx) }
