package bgp

import (
	"fmt"
	"net/netip"
	"slices"
)

// Advertise modes and groups, as in GCE's Cloud Router API
// (bgp.advertiseMode, bgp.advertisedGroups).
const (
	ModeDefault = "DEFAULT"
	ModeCustom  = "CUSTOM"

	GroupAllSubnets = "ALL_SUBNETS"
)

// Advertise computes the set of prefixes a Cloud Router announces, per GCE
// semantics:
//
//   - DEFAULT (or ""): every subnet range of the network — primary AND
//     secondary (alias IP) ranges — i.e. subnetRanges. groups and ranges must
//     be empty, as GCE rejects custom advertisements in DEFAULT mode.
//   - CUSTOM: the ranges of the chosen groups (ALL_SUBNETS = subnetRanges)
//     plus the explicit ranges. With no group and only a secondary range in
//     ranges, the primary ranges are not announced ("the VM primary range is
//     not reachable through the VPN").
//
// The result is deduplicated and sorted (IPv4 before IPv6, then by address,
// then by prefix length). Explicit ranges must be canonical (no host bits);
// subnet ranges are trusted but must be valid.
func Advertise(mode string, groups []string, ranges []netip.Prefix, subnetRanges []netip.Prefix) ([]netip.Prefix, error) {
	var out []netip.Prefix
	addSubnets := func() error {
		for _, p := range subnetRanges {
			if !p.IsValid() {
				return fmt.Errorf("bgp: invalid subnet range %v", p)
			}
			out = append(out, p.Masked())
		}
		return nil
	}
	switch mode {
	case ModeDefault, "":
		if len(groups) > 0 || len(ranges) > 0 {
			return nil, fmt.Errorf("bgp: advertised groups/ranges require advertise mode %s", ModeCustom)
		}
		if err := addSubnets(); err != nil {
			return nil, err
		}
	case ModeCustom:
		seenAll := false
		for _, g := range groups {
			switch g {
			case GroupAllSubnets:
				if !seenAll {
					seenAll = true
					if err := addSubnets(); err != nil {
						return nil, err
					}
				}
			default:
				return nil, fmt.Errorf("bgp: unknown advertised group %q", g)
			}
		}
		for _, p := range ranges {
			if !p.IsValid() {
				return nil, fmt.Errorf("bgp: invalid advertised range %v", p)
			}
			if p != p.Masked() {
				return nil, fmt.Errorf("bgp: advertised range %v has host bits set (want %v)", p, p.Masked())
			}
			out = append(out, p)
		}
	default:
		return nil, fmt.Errorf("bgp: unknown advertise mode %q (want %s or %s)", mode, ModeDefault, ModeCustom)
	}
	return sortPrefixes(out), nil
}

// sortPrefixes sorts and deduplicates in place.
func sortPrefixes(ps []netip.Prefix) []netip.Prefix {
	slices.SortFunc(ps, comparePrefix)
	return slices.Compact(ps)
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}
