package model

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
)

// InstanceType is what an instance type allows on the network, as the
// instance-family tables of Alibaba (and AWS) publish it: how many ENIs an
// instance takes, the primary ENI included, and how many private
// addresses each ENI holds, the primary address included ("Private IPv4
// addresses per ENI").
type InstanceType struct {
	Name       string `json:"name"`
	ENIs       int    `json:"enis"`
	IPv4PerENI int    `json:"privateIpv4PerEni"`
	// IPv6PerENI is "IPv6 addresses per ENI"; 0 means no IPv6.
	IPv6PerENI int `json:"ipv6PerEni"`
}

// Limits an instance-type file may not exceed (sanity bounds, well above
// any published type).
const (
	MaxTypeENIs       = 64
	MaxTypeIPsPerENI  = 256
	maxTypeNameLength = 64
)

// shippedInstanceTypes is the table aliasnet ships (DESIGN §4): Alibaba
// g6/g7 types and AWS-style t3/m5 types, with the ENI and per-ENI address
// counts their vendors publish.
var shippedInstanceTypes = []InstanceType{
	{Name: "ecs.g7.large", ENIs: 3, IPv4PerENI: 6, IPv6PerENI: 6},
	{Name: "ecs.g7.xlarge", ENIs: 4, IPv4PerENI: 15, IPv6PerENI: 15},
	{Name: "ecs.g6.large", ENIs: 2, IPv4PerENI: 6, IPv6PerENI: 1},
	{Name: "ecs.g6.xlarge", ENIs: 3, IPv4PerENI: 10, IPv6PerENI: 1},
	{Name: "t3.medium", ENIs: 3, IPv4PerENI: 6, IPv6PerENI: 6},
	{Name: "m5.large", ENIs: 3, IPv4PerENI: 10, IPv6PerENI: 10},
	{Name: "m5.xlarge", ENIs: 4, IPv4PerENI: 15, IPv6PerENI: 15},
}

// InstanceTypes is a table of instance types by name.
type InstanceTypes map[string]InstanceType

// DefaultInstanceTypes returns a fresh copy of the shipped table.
func DefaultInstanceTypes() InstanceTypes {
	ts := InstanceTypes{}
	for _, t := range shippedInstanceTypes {
		ts[t.Name] = t
	}
	return ts
}

// Names lists the table's type names in order.
func (ts InstanceTypes) Names() []string { return slices.Sorted(maps.Keys(ts)) }

// CheckInstanceType validates one row of an operator's table.
func CheckInstanceType(t InstanceType) error {
	switch {
	case t.Name == "" || len(t.Name) > maxTypeNameLength || strings.ContainsAny(t.Name, " \t\r\n,/"):
		return fmt.Errorf("instance type %q: the name must be 1 to %d characters without spaces, commas or slashes", t.Name, maxTypeNameLength)
	case t.ENIs < 1 || t.ENIs > MaxTypeENIs:
		return fmt.Errorf("instance type %s: enis must be between 1 and %d, got %d", t.Name, MaxTypeENIs, t.ENIs)
	case t.IPv4PerENI < 1 || t.IPv4PerENI > MaxTypeIPsPerENI:
		return fmt.Errorf("instance type %s: privateIpv4PerEni (which counts the primary address) must be between 1 and %d, got %d", t.Name, MaxTypeIPsPerENI, t.IPv4PerENI)
	case t.IPv6PerENI < 0 || t.IPv6PerENI > MaxTypeIPsPerENI:
		return fmt.Errorf("instance type %s: ipv6PerEni must be between 0 and %d, got %d", t.Name, MaxTypeIPsPerENI, t.IPv6PerENI)
	}
	return nil
}

// With returns a copy of the table with extra rows added; a row with the
// name of an existing type replaces it (operators may correct the shipped
// figures). Every row is checked; a name given twice in extra is an error.
func (ts InstanceTypes) With(extra ...InstanceType) (InstanceTypes, error) {
	out := maps.Clone(ts)
	if out == nil {
		out = InstanceTypes{}
	}
	seen := map[string]bool{}
	for _, t := range extra {
		if err := CheckInstanceType(t); err != nil {
			return nil, err
		}
		if seen[t.Name] {
			return nil, fmt.Errorf("instance type %s is defined twice", t.Name)
		}
		seen[t.Name] = true
		out[t.Name] = t
	}
	return out, nil
}

// Quotas of ENIs (seed 003 and the instance-family tables).
const (
	// MaxAvailableSecondaryIPv4: an ENI in the Available state holds at
	// most 10 secondary private IPv4 addresses (seed 003).
	MaxAvailableSecondaryIPv4 = 10
	// MaxAvailableIPv6 bounds IPv6 addresses on an Available ENI alike.
	MaxAvailableIPv6 = 10
	// Security groups per ENI: 1 to 5.
	MinENISecurityGroups = 1
	MaxENISecurityGroups = 5
)

// SecondaryIPv4Quota is how many secondary private IPv4 slots an ENI may
// hold: 10 while Available; once attached, the instance type's "private
// IPv4 addresses per ENI" figure minus the primary address. Each secondary
// /32 and each IPv4 prefix takes one slot. An instance whose type is not in
// the table (a GCE machine type) is bounded by MaxAliasesPerNIC.
func SecondaryIPv4Quota(attached bool, it InstanceType, known bool) int {
	switch {
	case !attached:
		return MaxAvailableSecondaryIPv4
	case !known:
		return MaxAliasesPerNIC
	}
	return it.IPv4PerENI - 1
}

// IPv6Quota is how many IPv6 addresses an ENI may hold: 10 while
// Available; once attached, the instance type's "IPv6 addresses per ENI".
func IPv6Quota(attached bool, it InstanceType, known bool) int {
	switch {
	case !attached:
		return MaxAvailableIPv6
	case !known:
		return MaxAliasesPerNIC
	}
	return it.IPv6PerENI
}

// ENIQuota is how many ENIs, the primary one included, an instance of the
// type takes; an unknown type is bounded by MaxNICs.
func ENIQuota(it InstanceType, known bool) int {
	if !known {
		return MaxNICs
	}
	return it.ENIs
}

// ipv4Slots counts the secondary IPv4 slots an interface uses: every IPv4
// alias (a /32 secondary address or a prefix) is one.
func (ifc *Interface) ipv4Slots() int {
	n := 0
	for _, a := range ifc.Aliases {
		if a.Range.Addr().Is4() {
			n++
		}
	}
	return n
}

// ipv6Slots counts the IPv6 aliases of an interface.
func (ifc *Interface) ipv6Slots() int { return len(ifc.Aliases) - ifc.ipv4Slots() }

// Config is the operator's configuration the model applies: the instance
// type table and the EIP pools. It is not stored with the resources; the
// control layer applies it after every load.
type Config struct {
	InstanceTypes InstanceTypes
	EIPPools      []netip.Prefix
}

// instanceTypes is the configured table, or the shipped one.
func (s *State) instanceTypes() InstanceTypes {
	if s.cfg.InstanceTypes == nil {
		return DefaultInstanceTypes()
	}
	return s.cfg.InstanceTypes
}

// InstanceType looks a type up in the configured table.
func (s *State) InstanceType(name string) (InstanceType, bool) {
	t, ok := s.instanceTypes()[name]
	return t, ok
}

// InstanceTypes returns the configured table (do not modify it).
func (s *State) InstanceTypes() InstanceTypes { return s.instanceTypes() }
