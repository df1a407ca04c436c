package model

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// ParseAliasSpec parses one alias IP range in any of GCE's three forms:
// "10.128.1.0/24" (explicit CIDR), "10.128.7.29" (single IP, becomes /32 or
// /128) and "/24" (netmask, auto-allocated). An explicit CIDR must be
// aligned: "10.128.1.5/24" is refused rather than silently masked, because
// a user who wrote it meant something we cannot guess.
func ParseAliasSpec(s string) (AliasSpec, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return AliasSpec{}, fmt.Errorf("alias IP range is empty")
	}
	if strings.HasPrefix(s, "/") {
		n, err := strconv.Atoi(s[1:])
		if err != nil || n < 0 || n > 128 || s[1:] != strconv.Itoa(n) {
			return AliasSpec{}, fmt.Errorf("alias IP range %q: netmask must be /0 to /128", s)
		}
		return AliasSpec{Bits: n}, nil
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return AliasSpec{}, fmt.Errorf("alias IP range %q: %w", s, err)
		}
		if p.Addr().Zone() != "" {
			return AliasSpec{}, fmt.Errorf("alias IP range %q: zones are not allowed", s)
		}
		if p.Masked() != p {
			return AliasSpec{}, fmt.Errorf("alias IP range %q is not aligned to its mask (did you mean %s?)", s, p.Masked())
		}
		return AliasSpec{Prefix: p}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return AliasSpec{}, fmt.Errorf("alias IP range %q: %w", s, err)
	}
	if a.Zone() != "" || a.Is4In6() {
		return AliasSpec{}, fmt.Errorf("alias IP range %q: use a plain IPv4 or IPv6 address", s)
	}
	return AliasSpec{Prefix: netip.PrefixFrom(a, a.BitLen())}, nil
}

// ParseRange parses a subnet or secondary range: an aligned CIDR.
func ParseRange(field, s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(strings.TrimSpace(s))
	if err != nil {
		return netip.Prefix{}, errf(Invalid, field, s, "Invalid IPCidrRange: %s.", s)
	}
	if p.Addr().Zone() != "" || p.Addr().Is4In6() {
		return netip.Prefix{}, errf(Invalid, field, s, "Invalid IPCidrRange: %s.", s)
	}
	if p.Masked() != p {
		return netip.Prefix{}, errf(Invalid, field, s, "Invalid IPCidrRange: %s is not a valid network address; did you mean %s?", s, p.Masked())
	}
	return p, nil
}

// ValidName checks a GCE resource name: RFC 1035 label, 1-63 characters,
// lowercase letters, digits and hyphens, starting with a letter and not
// ending with a hyphen.
func ValidName(field, name string) error {
	if name == "" {
		return &Error{Code: Required, Field: field, Reason: "Required field 'resource." + field + "' not specified"}
	}
	ok := len(name) <= 63 && name[0] >= 'a' && name[0] <= 'z' && name[len(name)-1] != '-'
	for i := 0; ok && i < len(name); i++ {
		c := name[i]
		ok = c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-'
	}
	if !ok {
		return errf(Invalid, field, name, "Must be a match of regex '(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)'")
	}
	return nil
}

func itoa(n int) string { return strconv.Itoa(n) }

// lastN returns the address n before the end of p (n=0: the last address).
func lastN(p netip.Prefix, n int) netip.Addr {
	a := lastAddr(p)
	for ; n > 0; n-- {
		a = a.Prev()
	}
	return a
}

// lastAddr is the highest address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	p = p.Masked()
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// overlaps reports whether two prefixes share any address.
func overlaps(a, b netip.Prefix) bool { return a.Overlaps(b) }
