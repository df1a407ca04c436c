package cli

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// This file holds the parsers of gcloud's compound flag values:
//
//	--network-interface "network=N,subnet=S,private-network-ip=IP,aliases=RANGE:CIDR;CIDR;/32,no-address"
//	--aliases "RANGE:CIDR;CIDR;/32"
//	--secondary-range / --add-secondary-ranges "NAME=CIDR[,NAME=CIDR]"
//	--remove-secondary-ranges "NAME[,NAME]"
//
// Every parsed value renders back (String) to a canonical flag value that
// parses to the same thing, so what the CLI echoes can be pasted back.

// FlagError is a bad flag value: it names the flag and the offending part.
type FlagError struct {
	Flag string // "--network-interface"
	Msg  string
}

func (e *FlagError) Error() string { return e.Flag + ": " + e.Msg }

func flagErr(flag, format string, args ...any) error {
	return &FlagError{Flag: flag, Msg: fmt.Sprintf(format, args...)}
}

// AliasForm says how an alias entry names its range.
type AliasForm uint8

const (
	// AliasCIDR is an explicit, aligned CIDR ("10.128.1.0/24").
	AliasCIDR AliasForm = iota + 1
	// AliasIP is a single address ("10.128.7.29"), i.e. a /32.
	AliasIP
	// AliasNetmask is a size only ("/24"), allocated by the server.
	AliasNetmask
)

// Alias is one entry of gcloud's alias syntax: [RANGE_NAME:]CIDR|IP|/N.
// Alias IP ranges are IPv4, as in gcloud (whose syntax reserves ':' for the
// range name).
type Alias struct {
	RangeName string       // subnet secondary range; "" = the primary range
	Form      AliasForm    // which of the three forms was written
	Prefix    netip.Prefix // AliasCIDR, AliasIP (a /32)
	Bits      int          // AliasNetmask
}

// CIDR is the ipCidrRange value sent to the API.
func (a Alias) CIDR() string {
	switch a.Form {
	case AliasIP:
		return a.Prefix.Addr().String()
	case AliasNetmask:
		return "/" + strconv.Itoa(a.Bits)
	}
	return a.Prefix.String()
}

func (a Alias) String() string {
	if a.RangeName != "" {
		return a.RangeName + ":" + a.CIDR()
	}
	return a.CIDR()
}

// FormatAliases renders aliases in the flag syntax ("r:10.0.0.0/24;/32").
func FormatAliases(as []Alias) string {
	parts := make([]string, len(as))
	for i, a := range as {
		parts[i] = a.String()
	}
	return strings.Join(parts, ";")
}

// ParseAliases parses the value of --aliases. The empty string (or only
// separators) is the empty list, which clears an interface's aliases.
func ParseAliases(s string) ([]Alias, error) {
	as, err := parseAliases(s)
	if err != nil {
		return nil, &FlagError{Flag: "--aliases", Msg: err.Error()}
	}
	return as, nil
}

func parseAliases(s string) ([]Alias, error) {
	var out []Alias
	for _, e := range strings.Split(s, ";") {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		a, err := parseAlias(e)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

func parseAlias(e string) (Alias, error) {
	var a Alias
	rng := e
	if name, r, ok := strings.Cut(e, ":"); ok {
		if strings.Contains(r, ":") {
			return a, fmt.Errorf("%q: expected RANGE_NAME:CIDR with one ':' (alias IP ranges are IPv4)", e)
		}
		name, r = strings.TrimSpace(name), strings.TrimSpace(r)
		if err := checkName(name); err != nil {
			return a, fmt.Errorf("%q: range name %q %v", e, name, err)
		}
		a.RangeName, rng = name, r
	}
	switch {
	case rng == "":
		return a, fmt.Errorf("%q: missing CIDR range, IP address or /N netmask", e)
	case strings.HasPrefix(rng, "/"):
		n, err := strconv.Atoi(rng[1:])
		if err != nil || n < 0 || n > 32 || rng[1:] != strconv.Itoa(n) {
			return a, fmt.Errorf("%q: netmask %q must be /0 to /32", e, rng)
		}
		a.Form, a.Bits = AliasNetmask, n
	case strings.Contains(rng, "/"):
		p, err := netip.ParsePrefix(rng)
		if err != nil || !p.Addr().Is4() {
			return a, fmt.Errorf("%q: %q is not an IPv4 CIDR range", e, rng)
		}
		if p.Masked() != p {
			return a, fmt.Errorf("%q: %s is not aligned to its mask (did you mean %s?)", e, rng, p.Masked())
		}
		a.Form, a.Prefix = AliasCIDR, p
	default:
		ip, err := netip.ParseAddr(rng)
		if err != nil || !ip.Is4() {
			return a, fmt.Errorf("%q: %q is not an IPv4 address, CIDR range or /N netmask", e, rng)
		}
		a.Form, a.Prefix = AliasIP, netip.PrefixFrom(ip, 32)
	}
	return a, nil
}

// checkName checks a GCE resource name (RFC 1035 label, at most 63).
func checkName(s string) error {
	ok := s != "" && len(s) <= 63 && s[0] >= 'a' && s[0] <= 'z' && s[len(s)-1] != '-'
	for i := 0; ok && i < len(s); i++ {
		c := s[i]
		ok = c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-'
	}
	if !ok {
		return fmt.Errorf("must be 1-63 lowercase letters, digits or hyphens, starting with a letter and not ending with a hyphen")
	}
	return nil
}

// NICSpec is one parsed --network-interface value.
type NICSpec struct {
	Network   string     // name or URL; "" = the subnet's (or "default")
	Subnet    string     // name or URL
	PrivateIP netip.Addr // zero = allocated by the server
	Aliases   []Alias
	NoAddress bool // no external address (accessConfig)
}

// nicKeys are the keys --network-interface accepts, in rendering order.
var nicKeys = []string{"network", "subnet", "private-network-ip", "aliases", "no-address"}

// ParseNetworkInterface parses one --network-interface value: a comma
// separated list of key=value (no-address takes no value). The aliases
// value uses ';' between entries, so it never clashes with ','.
func ParseNetworkInterface(s string) (NICSpec, error) {
	const flag = "--network-interface"
	var n NICSpec
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, hasValue := strings.Cut(part, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if seen[k] {
			return NICSpec{}, flagErr(flag, "key %q given twice", k)
		}
		seen[k] = true
		switch k {
		case "network", "subnet":
			if v == "" {
				return NICSpec{}, flagErr(flag, "%s: needs a value (%s=NAME)", k, k)
			}
			if k == "network" {
				n.Network = v
			} else {
				n.Subnet = v
			}
		case "private-network-ip":
			ip, err := netip.ParseAddr(v)
			if err != nil || !ip.Is4() {
				return NICSpec{}, flagErr(flag, "private-network-ip: %q is not an IPv4 address", v)
			}
			n.PrivateIP = ip
		case "aliases":
			as, err := parseAliases(v)
			if err != nil {
				return NICSpec{}, flagErr(flag, "aliases: %v", err)
			}
			n.Aliases = as
		case "no-address":
			if hasValue {
				b, err := strconv.ParseBool(v)
				if err != nil {
					return NICSpec{}, flagErr(flag, "no-address takes no value (got %q)", v)
				}
				n.NoAddress = b
			} else {
				n.NoAddress = true
			}
		default:
			if _, err := parseAlias(k); err == nil && !hasValue && seen["aliases"] {
				// "aliases=10.0.0.1/32,10.0.0.2/32" (seen in the wild)
				return NICSpec{}, flagErr(flag, "unknown key %q (valid: %s); separate alias ranges with ';', not ','", k, strings.Join(nicKeys, ", "))
			}
			return NICSpec{}, flagErr(flag, "unknown key %q (valid: %s)", k, strings.Join(nicKeys, ", "))
		}
	}
	return n, nil
}

// String renders the spec as a canonical --network-interface value.
func (n NICSpec) String() string {
	var parts []string
	if n.Network != "" {
		parts = append(parts, "network="+n.Network)
	}
	if n.Subnet != "" {
		parts = append(parts, "subnet="+n.Subnet)
	}
	if n.PrivateIP.IsValid() {
		parts = append(parts, "private-network-ip="+n.PrivateIP.String())
	}
	if len(n.Aliases) > 0 {
		parts = append(parts, "aliases="+FormatAliases(n.Aliases))
	}
	if n.NoAddress {
		parts = append(parts, "no-address")
	}
	return strings.Join(parts, ",")
}

// SecondaryRange is one NAME=CIDR of a subnet.
type SecondaryRange struct {
	Name  string
	Range netip.Prefix
}

func (r SecondaryRange) String() string { return r.Name + "=" + r.Range.String() }

// FormatSecondaryRanges renders ranges as a NAME=CIDR,NAME=CIDR value.
func FormatSecondaryRanges(rs []SecondaryRange) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = r.String()
	}
	return strings.Join(parts, ",")
}

// ParseSecondaryRanges parses NAME=CIDR[,NAME=CIDR] for the given flag
// (--secondary-range, --add-secondary-ranges). Names must be unique.
func ParseSecondaryRanges(flag, s string) ([]SecondaryRange, error) {
	var out []SecondaryRange
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, cidr, ok := strings.Cut(part, "=")
		name, cidr = strings.TrimSpace(name), strings.TrimSpace(cidr)
		if !ok || cidr == "" {
			return nil, flagErr(flag, "%q: expected RANGE_NAME=CIDR", part)
		}
		if err := checkName(name); err != nil {
			return nil, flagErr(flag, "%q: range name %q %v", part, name, err)
		}
		p, err := netip.ParsePrefix(cidr)
		if err != nil || p.Addr().Zone() != "" || p.Addr().Is4In6() {
			return nil, flagErr(flag, "%q: %q is not a CIDR range", part, cidr)
		}
		if p.Masked() != p {
			return nil, flagErr(flag, "%q: %s is not aligned to its mask (did you mean %s?)", part, cidr, p.Masked())
		}
		if seen[name] {
			return nil, flagErr(flag, "range name %q given twice", name)
		}
		seen[name] = true
		out = append(out, SecondaryRange{Name: name, Range: p})
	}
	return out, nil
}

// ParseRangeNames parses NAME[,NAME] (--remove-secondary-ranges).
func ParseRangeNames(flag, s string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if err := checkName(part); err != nil {
			return nil, flagErr(flag, "range name %q %v", part, err)
		}
		if !seen[part] {
			seen[part] = true
			out = append(out, part)
		}
	}
	return out, nil
}
