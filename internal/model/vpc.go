package model

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

// Alibaba VPC rules: a VPC has a primary CIDR block and up to
// MaxSecondaryCIDRBlocks secondary blocks; a vSwitch is a zonal subnet
// whose CIDR lies inside one block and whose first and last three
// addresses are reserved.

// Limits of VPC blocks and vSwitches.
const (
	MaxSecondaryCIDRBlocks = 5
	MinVPCPrimaryBits      = 8
	MinVPCSecondaryBits    = 16
	MaxVPCBlockBits        = 28
	MinVSwitchBits         = 16
	MaxVSwitchBits         = 29
)

// Errors of the VPC rules, wrapped in *Error (Err).
var (
	ErrCIDRInvalid  = errors.New("CIDR block is not allowed")
	ErrCIDROverlap  = errors.New("CIDR block overlaps")
	ErrCIDRNotInVPC = errors.New("CIDR block is outside the VPC's blocks")
	ErrCIDRNotFound = errors.New("CIDR block is not a block of the VPC")
	ErrCIDRInUse    = errors.New("CIDR block is in use")
	ErrZoneRegion   = errors.New("zone is not in the region")
)

// vpcExcluded are ranges no VPC block may overlap: besides the ranges no
// subnet may use, Alibaba keeps 100.64.0.0/10 (its shared address space
// for cloud services) out of VPCs.
var vpcExcluded = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("224.0.0.0/4"),
	netip.MustParsePrefix("240.0.0.0/4"),
}

// CheckVPCBlock validates a VPC CIDR block: IPv4, masked, /8 (primary) or
// /16 (secondary) to /28, outside the excluded ranges. Any other unicast
// range is allowed, public ones included (seed 004 adds an EIP's /24).
func CheckVPCBlock(field string, p netip.Prefix, secondary bool) error {
	if !p.IsValid() {
		return &Error{Code: Required, Field: field, Reason: fmt.Sprintf("Required field '%s' not specified", field)}
	}
	minBits := MinVPCPrimaryBits
	if secondary {
		minBits = MinVPCSecondaryBits
	}
	switch {
	case !p.Addr().Is4() || p.Addr().Zone() != "":
		return &Error{Code: Invalid, Field: field, Value: p.String(), Err: ErrCIDRInvalid, Reason: "The CIDR block must be an IPv4 prefix."}
	case p.Masked() != p:
		return &Error{Code: Invalid, Field: field, Value: p.String(), Err: ErrCIDRInvalid,
			Reason: fmt.Sprintf("The CIDR block %s is not a network address; did you mean %s?", p, p.Masked())}
	case p.Bits() < minBits || p.Bits() > MaxVPCBlockBits:
		return &Error{Code: Invalid, Field: field, Value: p.String(), Err: ErrCIDRInvalid,
			Reason: fmt.Sprintf("The mask of the CIDR block %s must be between /%d and /%d.", p, minBits, MaxVPCBlockBits)}
	}
	for _, x := range vpcExcluded {
		if p.Overlaps(x) {
			return &Error{Code: Invalid, Field: field, Value: p.String(), Err: ErrCIDRInvalid,
				Reason: fmt.Sprintf("The CIDR block %s overlaps %s, which cannot be used in a VPC.", p, x)}
		}
	}
	return nil
}

// CreateVPC creates a network with one CIDR block (its primary one).
func (t *Txn) CreateVPC(n Network) (*Network, error) {
	if len(n.CIDRBlocks) != 1 {
		return nil, &Error{Code: Required, Field: "cidrBlock", Reason: "A VPC is created with exactly one CIDR block (its primary block)."}
	}
	if err := CheckVPCBlock("cidrBlock", n.CIDRBlocks[0], false); err != nil {
		return nil, err
	}
	n.AutoMode = false
	return t.CreateNetwork(n)
}

func (t *Txn) vpc(project, name string) (*project, *Network, error) {
	p := t.s.projects[project]
	if p == nil || p.networks[name] == nil {
		return nil, nil, notFound("network", NetworkKey(project, name))
	}
	return p, p.networks[name], nil
}

// AddVPCBlock adds a secondary CIDR block to a VPC. It must not overlap
// the primary block or another secondary block, nor a peer's ranges.
func (t *Txn) AddVPCBlock(project, name string, block netip.Prefix) (*Network, error) {
	p, n, err := t.vpc(project, name)
	if err != nil {
		return nil, err
	}
	if len(n.CIDRBlocks) == 0 {
		return nil, errf(Invalid, "vpcId", name, "Network '%s' has no primary CIDR block (a GCE network); secondary blocks are for VPCs created with a CIDR block.", name)
	}
	if err := CheckVPCBlock("secondaryCidrBlock", block, true); err != nil {
		return nil, err
	}
	for i, b := range n.CIDRBlocks {
		if b.Overlaps(block) {
			what := "secondary CIDR block"
			if i == 0 {
				what = "primary CIDR block"
			}
			return nil, &Error{Code: Invalid, Field: "secondaryCidrBlock", Value: block.String(), Err: ErrCIDROverlap,
				Reason: fmt.Sprintf("The CIDR block %s overlaps the %s %s of %s.", block, what, b, name)}
		}
	}
	for _, pi := range t.s.peerIndexes(project, name) {
		if q, _, ok := pi.idx.overlapping(block); ok {
			return nil, &Error{Code: Invalid, Field: "secondaryCidrBlock", Value: block.String(), Err: ErrCIDROverlap,
				Reason: fmt.Sprintf("The CIDR block %s overlaps %s of peer network '%s'.", block, q, NetworkKey(pi.project, pi.network))}
		}
	}
	if len(n.CIDRBlocks)-1 >= MaxSecondaryCIDRBlocks {
		return nil, &Error{Code: QuotaExceeded, Field: "secondaryCidrBlock", Value: block.String(),
			Reason: fmt.Sprintf("VPC %s already has %d secondary CIDR blocks, the most it can have.", name, MaxSecondaryCIDRBlocks)}
	}
	nn := *n
	nn.CIDRBlocks = append(slices.Clone(n.CIDRBlocks), block)
	t.putNetwork(p, &nn)
	return &nn, nil
}

// RemoveVPCBlock removes a secondary CIDR block that no subnet uses.
func (t *Txn) RemoveVPCBlock(project, name string, block netip.Prefix) (*Network, error) {
	p, n, err := t.vpc(project, name)
	if err != nil {
		return nil, err
	}
	i := slices.Index(n.CIDRBlocks, block)
	switch {
	case i == 0:
		return nil, &Error{Code: Invalid, Field: "secondaryCidrBlock", Value: block.String(), Err: ErrCIDRNotFound,
			Reason: fmt.Sprintf("%s is the primary CIDR block of %s; it cannot be removed.", block, name)}
	case i < 0:
		return nil, &Error{Code: Invalid, Field: "secondaryCidrBlock", Value: block.String(), Err: ErrCIDRNotFound,
			Reason: fmt.Sprintf("%s is not a secondary CIDR block of %s.", block, name)}
	}
	if _, e, ok := p.nets[name].overlapping(block); ok {
		region, sub := splitKey(e.subnet)
		return nil, &Error{Code: FailedPrecondition, Field: "secondaryCidrBlock", Value: block.String(), Err: ErrCIDRInUse,
			Holder: SubnetKey(project, region, sub),
			Reason: fmt.Sprintf("The CIDR block %s of %s is used by vSwitch %s; delete it first.", block, name, sub)}
	}
	nn := *n
	nn.CIDRBlocks = slices.Delete(slices.Clone(n.CIDRBlocks), i, i+1)
	t.putNetwork(p, &nn)
	return &nn, nil
}

// CreateVSwitch creates a zonal subnet with Alibaba's reserved addresses:
// its CIDR (/16 to /29) lies inside one of the VPC's blocks and overlaps no
// other subnet.
func (t *Txn) CreateVSwitch(sn Subnet) (*Subnet, error) {
	if sn.Zone == "" {
		return nil, &Error{Code: Required, Field: "zoneId", Reason: "Required field 'zoneId' not specified"}
	}
	if r, ok := ZoneRegion(sn.Zone); !ok || r != sn.Region {
		return nil, &Error{Code: Invalid, Field: "zoneId", Value: sn.Zone, Err: ErrZoneRegion,
			Reason: fmt.Sprintf("Zone %s is not a zone of region %s.", sn.Zone, sn.Region)}
	}
	pfx := sn.Range
	switch {
	case !pfx.IsValid():
		return nil, &Error{Code: Required, Field: "cidrBlock", Reason: "Required field 'cidrBlock' not specified"}
	case !pfx.Addr().Is4() || pfx.Masked() != pfx || pfx.Bits() < MinVSwitchBits || pfx.Bits() > MaxVSwitchBits:
		return nil, &Error{Code: Invalid, Field: "cidrBlock", Value: pfx.String(), Err: ErrCIDRInvalid,
			Reason: fmt.Sprintf("The vSwitch CIDR block %s must be an IPv4 network address with a mask between /%d and /%d.", pfx, MinVSwitchBits, MaxVSwitchBits)}
	}
	p := t.s.projects[sn.Project]
	if p == nil || p.networks[sn.Network] == nil {
		return nil, notFound("network", NetworkKey(sn.Project, sn.Network))
	}
	n := p.networks[sn.Network]
	if len(n.CIDRBlocks) > 0 && !slices.ContainsFunc(n.CIDRBlocks, func(b netip.Prefix) bool { return b.Bits() <= pfx.Bits() && b.Contains(pfx.Addr()) }) {
		return nil, &Error{Code: Invalid, Field: "cidrBlock", Value: pfx.String(), Err: ErrCIDRNotInVPC,
			Reason: fmt.Sprintf("The vSwitch CIDR block %s is not inside any CIDR block of VPC %s (%s).", pfx, n.Name, joinPrefixes(n.CIDRBlocks))}
	}
	if q, e, ok := p.nets[sn.Network].overlapping(pfx); ok {
		_, other := splitKey(e.subnet)
		return nil, &Error{Code: Invalid, Field: "cidrBlock", Value: pfx.String(), Err: ErrCIDROverlap,
			Reason: fmt.Sprintf("The vSwitch CIDR block %s overlaps %s of vSwitch %s.", pfx, q, other)}
	}
	sn.Reserve = ReserveAlibaba
	return t.CreateSubnet(sn)
}

func joinPrefixes(ps []netip.Prefix) string {
	s := ""
	for i, p := range ps {
		if i > 0 {
			s += ", "
		}
		s += p.String()
	}
	return s
}
