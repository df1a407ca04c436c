// Package guestconfig renders the operating-system network configuration that
// makes a VM's guest accept its secondary addresses (Alibaba Cloud ENI
// secondary private IPs) and alias IP ranges (GCE).
//
// The output follows Alibaba Cloud's "Secondary private IP addresses" procedure
// (nmcli, RHEL ifcfg-eth0 + ifcfg-eth0:N, netplan with match/set-name,
// /etc/network/interfaces, SUSE ifcfg IPADDR_N/NETMASK_N/LABEL_N + routes,
// Windows) filled with real addresses, plus the cloud-init drop-in that stops
// cloud-init from overwriting it. Alias ranges are installed the way GCE's guest
// agent does it: as routes of type local in the local table (table 255, scope
// host, and protocol 66 where the format can say so).
//
// The package is pure: Render only builds bytes; WriteTree writes them under a
// directory of the caller's choice.
package guestconfig

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"sort"
	"strings"
)

// Interface is one network interface of the VM.
type Interface struct {
	// Name is the OS device name, e.g. "eth0": 1..15 characters of
	// [A-Za-z0-9_.-], not starting with '-', not "." or "..".
	Name string
	// MAC is the interface's Ethernet address (6 bytes). Optional for the
	// Linux file formats; netplan uses it for match/set-name and Windows to
	// find the adapter.
	MAC net.HardwareAddr
	// Primary is the primary IPv4 address with the subnet's prefix length,
	// e.g. 192.168.1.201/24. Required.
	Primary netip.Prefix
	// Gateway is the IPv4 default gateway, inside Primary's subnet. It is
	// only used when DefaultRoute is true and may be left zero otherwise.
	Gateway netip.Addr
	// Aliases are the secondary addresses (/32, /128) and alias ranges
	// (e.g. 172.16.0.0/24), IPv4 or IPv6, without host bits.
	Aliases []netip.Prefix
	// Primary6 is an optional primary IPv6 address with its prefix length.
	Primary6 netip.Prefix
	// Gateway6 is the optional IPv6 default gateway (global or link-local);
	// used only when DefaultRoute is true and Primary6 is set.
	Gateway6 netip.Addr
	// DefaultRoute marks the interface that carries the default route (nic0).
	DefaultRoute bool
}

// OS names a guest configuration family.
type OS string

// The supported families.
const (
	NMCLI   OS = "nmcli"   // NetworkManager via nmcli con modify
	RHEL    OS = "rhel"    // /etc/sysconfig/network-scripts/ifcfg-*
	Netplan OS = "netplan" // /etc/netplan/*.yaml (Ubuntu 18+, Debian 12 cloud images)
	Debian  OS = "debian"  // /etc/network/interfaces (ifupdown)
	SUSE    OS = "suse"    // /etc/sysconfig/network/ifcfg-* (wicked)
	Windows OS = "windows" // PowerShell NetTCPIP cmdlets
)

var osNames = []OS{NMCLI, RHEL, Netplan, Debian, SUSE, Windows}

var osAliases = map[string]OS{
	"nmcli": NMCLI, "networkmanager": NMCLI, "nm": NMCLI,
	"rhel": RHEL, "redhat": RHEL, "centos": RHEL, "alinux": RHEL, "alibaba": RHEL,
	"alibabacloudlinux": RHEL, "anolis": RHEL, "fedora": RHEL, "rocky": RHEL,
	"almalinux": RHEL, "alma": RHEL, "oraclelinux": RHEL, "ol": RHEL, "el": RHEL,
	"ifcfg": RHEL, "network-scripts": RHEL,
	"netplan": Netplan, "ubuntu": Netplan, "debian12": Netplan,
	"debian": Debian, "ifupdown": Debian, "interfaces": Debian,
	"suse": SUSE, "sles": SUSE, "opensuse": SUSE, "sled": SUSE, "wicked": SUSE,
	"windows": Windows, "win": Windows, "powershell": Windows,
}

// ParseOS maps a family name or a common distribution alias (ubuntu, centos,
// alinux, redhat, sles, opensuse, ...) to an OS. Matching is case-insensitive.
func ParseOS(s string) (OS, error) {
	k := strings.ToLower(strings.TrimSpace(s))
	if os, ok := osAliases[k]; ok {
		return os, nil
	}
	aliases := make([]string, 0, len(osAliases))
	for a, os := range osAliases {
		if a != string(os) {
			aliases = append(aliases, a)
		}
	}
	sort.Strings(aliases)
	names := make([]string, len(osNames))
	for i, o := range osNames {
		names[i] = string(o)
	}
	return "", fmt.Errorf("guestconfig: unknown OS %q: valid: %s (aliases: %s)",
		s, strings.Join(names, ", "), strings.Join(aliases, ", "))
}

// Form chooses how aliases are rendered.
type Form int

const (
	// FormAuto renders single addresses (/32, /128) as interface addresses
	// — with the subnet's prefix length when they fall inside the primary
	// subnet, as Alibaba's procedure shows (192.168.1.202/24), otherwise as
	// host prefixes — and larger alias ranges as local routes.
	FormAuto Form = iota
	// FormLocalRoutes renders every alias as a local route, as GCE's guest
	// agent does.
	FormLocalRoutes
)

func (f Form) String() string {
	switch f {
	case FormAuto:
		return "auto"
	case FormLocalRoutes:
		return "local-routes"
	}
	return fmt.Sprintf("Form(%d)", int(f))
}

// File is one rendered file. Path is the absolute path on the guest; for nmcli
// and windows it is a relative pseudo-path naming the script to run.
type File struct {
	Path    string
	Mode    fs.FileMode
	Content []byte
}

// Result is what Render produces.
type Result struct {
	Files []File
	Apply []string // commands that apply the files, in order
	Notes []string // caveats the operator should read
}

// Limits that keep rendered output bounded.
const (
	maxInterfaces = 64
	maxAliases    = 1024
	ifNameMax     = 15 // IFNAMSIZ - 1
)

// Render builds the configuration for os from ifaces.
func Render(os OS, ifaces []Interface, form Form) (Result, error) {
	if form != FormAuto && form != FormLocalRoutes {
		return Result{}, fmt.Errorf("guestconfig: unknown form %d", int(form))
	}
	nics, err := normalize(ifaces, form)
	if err != nil {
		return Result{}, err
	}
	var r Result
	switch os {
	case NMCLI:
		r, err = renderNMCLI(nics)
	case RHEL:
		r, err = renderRHEL(nics)
	case Netplan:
		r, err = renderNetplan(nics)
	case Debian:
		r, err = renderDebian(nics)
	case SUSE:
		r, err = renderSUSE(nics)
	case Windows:
		r, err = renderWindows(nics)
	default:
		_, perr := ParseOS(string(os))
		if perr == nil {
			perr = fmt.Errorf("guestconfig: OS %q is an alias, use ParseOS", os)
		}
		return Result{}, perr
	}
	if err != nil {
		return Result{}, err
	}
	if os != Windows {
		r.Files = append([]File{cloudInitFile()}, r.Files...)
		r.Notes = append(r.Notes, noteCloudInit, noteDNS)
	}
	if len(nics) > 1 {
		r.Notes = append(r.Notes, noteMultiNIC)
	}
	return r, nil
}

const cloudInitPath = "/etc/cloud/cloud.cfg.d/99-disable-network-config.cfg"

const noteCloudInit = cloudInitPath + " stops cloud-init from regenerating the network configuration at boot; without it a reboot may overwrite these files."

func cloudInitFile() File {
	return File{Path: cloudInitPath, Mode: 0o644, Content: []byte("network: {config: disabled}\n")}
}

const noteDNS = "The primary address is configured statically (DHCP off), as in Alibaba Cloud's procedure, so DNS resolvers learned from DHCP are no longer applied; keep or add them (GCE: 169.254.169.254; Alibaba Cloud: 100.100.2.136 and 100.100.2.138)."

const noteMultiNIC = "Only the interface marked DefaultRoute gets a default route; replies from the other interfaces' addresses leave through it unless you add source-based policy routing."

// nic is a validated interface with its addresses sorted into what each
// renderer needs.
type nic struct {
	Interface
	addrs4 []netip.Prefix // primary first, then secondary addresses
	addrs6 []netip.Prefix // Primary6 first when set, then secondary addresses
	local4 []netip.Prefix // IPv4 ranges rendered as local routes
	local6 []netip.Prefix // IPv6 ranges rendered as local routes
	// singles are the aliases in input order as addresses (for Windows,
	// which has no local routes); ranges are the larger aliases.
	singles []netip.Prefix
	ranges  []netip.Prefix
}

func (n *nic) hasPrimary6() bool { return n.Primary6.IsValid() }
func (n *nic) gw4() bool         { return n.DefaultRoute && n.Gateway.IsValid() }
func (n *nic) gw6() bool         { return n.DefaultRoute && n.Gateway6.IsValid() }

// secondary4 returns the IPv4 addresses after the primary.
func (n *nic) secondary4() []netip.Prefix { return n.addrs4[1:] }

// secondary6 returns the IPv6 addresses other than Primary6.
func (n *nic) secondary6() []netip.Prefix {
	if n.hasPrimary6() {
		return n.addrs6[1:]
	}
	return n.addrs6
}

// ValidName reports whether name is usable as a Linux interface name in every
// rendered format without quoting.
func ValidName(name string) error {
	if len(name) == 0 || len(name) > ifNameMax {
		return fmt.Errorf("interface name %q: must be 1..%d characters", name, ifNameMax)
	}
	if name == "." || name == ".." {
		return fmt.Errorf("interface name %q is reserved", name)
	}
	if name[0] == '-' {
		return fmt.Errorf("interface name %q must not start with '-'", name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '.', c == '-':
		default:
			return fmt.Errorf("interface name %q: character %q not allowed (use [A-Za-z0-9_.-])", name, c)
		}
	}
	return nil
}

func checkUnicast(what string, a netip.Addr) error {
	switch {
	case a.Is4In6():
		return fmt.Errorf("%s %s: IPv4-mapped IPv6 addresses are not supported", what, a)
	case a.IsUnspecified(), a.IsMulticast(), a.IsLoopback(), a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return fmt.Errorf("%s %s is not a unicast address", what, a)
	case a.Zone() != "":
		return fmt.Errorf("%s %s: zones are not allowed", what, a)
	}
	return nil
}

// hostPrefix gives the prefix an individual address gets on the interface:
// the subnet's length when it lies in subnet, otherwise a host prefix.
func hostPrefix(a netip.Addr, subnet netip.Prefix) netip.Prefix {
	if subnet.IsValid() && subnet.Masked().Contains(a) {
		return netip.PrefixFrom(a, subnet.Bits())
	}
	return netip.PrefixFrom(a, a.BitLen())
}

func isSingle(p netip.Prefix) bool { return p.Bits() == p.Addr().BitLen() }

func normalize(ifaces []Interface, form Form) ([]*nic, error) {
	if len(ifaces) == 0 {
		return nil, errors.New("guestconfig: no interfaces")
	}
	if len(ifaces) > maxInterfaces {
		return nil, fmt.Errorf("guestconfig: %d interfaces, at most %d", len(ifaces), maxInterfaces)
	}
	var (
		nics     []*nic
		names    = map[string]bool{}
		macs     = map[string]string{}
		defaults []string
		// every address or range claimed so far, with its owner, to reject overlaps
		claimed []claim
	)
	for i := range ifaces {
		in := ifaces[i]
		in.Aliases = append([]netip.Prefix(nil), in.Aliases...)
		in.MAC = append(net.HardwareAddr(nil), in.MAC...)
		fail := func(format string, a ...any) error {
			return fmt.Errorf("guestconfig: interface %d (%q): %s", i, in.Name, fmt.Sprintf(format, a...))
		}
		if err := ValidName(in.Name); err != nil {
			return nil, fail("%v", err)
		}
		if in.Name == "lo" {
			return nil, fail("the loopback interface cannot be configured")
		}
		if names[in.Name] {
			return nil, fail("duplicate interface name")
		}
		names[in.Name] = true
		if len(in.MAC) > 0 {
			if len(in.MAC) != 6 {
				return nil, fail("MAC %s: want a 6-byte Ethernet address", in.MAC)
			}
			if in.MAC[0]&1 != 0 || string(in.MAC) == "\x00\x00\x00\x00\x00\x00" {
				return nil, fail("MAC %s is not a unicast Ethernet address", in.MAC)
			}
			if other, dup := macs[string(in.MAC)]; dup {
				return nil, fail("MAC %s already used by %q", in.MAC, other)
			}
			macs[string(in.MAC)] = in.Name
		}
		if !in.Primary.IsValid() || !in.Primary.Addr().Is4() {
			return nil, fail("primary must be an IPv4 address with its subnet prefix length, got %v", in.Primary)
		}
		if in.Primary.Bits() == 0 {
			return nil, fail("primary %s: prefix length 0", in.Primary)
		}
		if err := checkUnicast("primary", in.Primary.Addr()); err != nil {
			return nil, fail("%v", err)
		}
		if in.DefaultRoute {
			defaults = append(defaults, in.Name)
			if !in.Gateway.IsValid() {
				return nil, fail("DefaultRoute needs a Gateway")
			}
		}
		if in.Gateway.IsValid() {
			g := in.Gateway
			if !g.Is4() {
				return nil, fail("gateway %s is not IPv4", g)
			}
			if err := checkUnicast("gateway", g); err != nil {
				return nil, fail("%v", err)
			}
			if !in.Primary.Masked().Contains(g) || g == in.Primary.Addr() {
				return nil, fail("gateway %s is not another address in the primary subnet %s", g, in.Primary.Masked())
			}
		}
		if in.Primary6.IsValid() {
			p := in.Primary6
			if !p.Addr().Is6() || p.Addr().Is4In6() {
				return nil, fail("primary6 %s is not IPv6", p)
			}
			if p.Bits() == 0 {
				return nil, fail("primary6 %s: prefix length 0", p)
			}
			if err := checkUnicast("primary6", p.Addr()); err != nil {
				return nil, fail("%v", err)
			}
			if p.Addr().IsLinkLocalUnicast() {
				return nil, fail("primary6 %s is link-local", p)
			}
		}
		if in.Gateway6.IsValid() {
			g := in.Gateway6
			if !in.Primary6.IsValid() {
				return nil, fail("Gateway6 needs Primary6")
			}
			if !g.Is6() {
				return nil, fail("gateway6 %s is not IPv6", g)
			}
			if err := checkUnicast("gateway6", g); err != nil {
				return nil, fail("%v", err)
			}
			if g == in.Primary6.Addr() {
				return nil, fail("gateway6 %s equals primary6", g)
			}
		}
		if len(in.Aliases) > maxAliases {
			return nil, fail("%d aliases, at most %d", len(in.Aliases), maxAliases)
		}

		n := &nic{Interface: in}
		n.addrs4 = []netip.Prefix{in.Primary}
		if in.Primary6.IsValid() {
			n.addrs6 = []netip.Prefix{in.Primary6}
		}
		own := []claim{{netip.PrefixFrom(in.Primary.Addr(), 32), in.Name}}
		if in.Primary6.IsValid() {
			own = append(own, claim{netip.PrefixFrom(in.Primary6.Addr(), 128), in.Name})
		}
		for _, c := range own {
			if err := checkOverlap(claimed, c); err != nil {
				return nil, fail("%v", err)
			}
			claimed = append(claimed, c)
		}
		for _, a := range in.Aliases {
			if !a.IsValid() {
				return nil, fail("invalid alias %v", a)
			}
			if err := checkUnicast("alias", a.Addr()); err != nil {
				return nil, fail("%v", err)
			}
			if a.Bits() == 0 {
				return nil, fail("alias %s: prefix length 0", a)
			}
			if a != a.Masked() {
				return nil, fail("alias %s has host bits set (did you mean %s?)", a, a.Masked())
			}
			if a.Addr().Is6() && a.Addr().IsLinkLocalUnicast() {
				return nil, fail("alias %s is link-local", a)
			}
			c := claim{a, in.Name}
			if err := checkOverlap(claimed, c); err != nil {
				return nil, fail("%v", err)
			}
			claimed = append(claimed, c)

			if isSingle(a) {
				n.singles = append(n.singles, a)
			} else {
				n.ranges = append(n.ranges, a)
			}
			local := form == FormLocalRoutes || !isSingle(a)
			switch {
			case local && a.Addr().Is4():
				n.local4 = append(n.local4, a)
			case local:
				n.local6 = append(n.local6, a)
			case a.Addr().Is4():
				n.addrs4 = append(n.addrs4, hostPrefix(a.Addr(), in.Primary))
			default:
				n.addrs6 = append(n.addrs6, hostPrefix(a.Addr(), in.Primary6))
			}
		}
		nics = append(nics, n)
	}
	if len(defaults) > 1 {
		return nil, fmt.Errorf("guestconfig: DefaultRoute set on %s; at most one interface carries the default route", strings.Join(defaults, ", "))
	}
	return nics, nil
}

type claim struct {
	p     netip.Prefix
	owner string
}

func checkOverlap(claimed []claim, c claim) error {
	for _, o := range claimed {
		if o.p.Overlaps(c.p) {
			if o.owner == c.owner {
				return fmt.Errorf("%s overlaps %s", c.p, o.p)
			}
			return fmt.Errorf("%s overlaps %s of interface %q", c.p, o.p, o.owner)
		}
	}
	return nil
}

// netmask renders an IPv4 prefix length as a dotted mask.
func netmask(bits int) string {
	m := net.CIDRMask(bits, 32)
	return net.IP(m).String()
}

// macString is the canonical lower-case colon form.
func macString(m net.HardwareAddr) string { return m.String() }

// aliasLabel is the ifupdown/ifcfg alias device "eth0:N"; Linux limits
// address labels to IFNAMSIZ-1 characters.
func aliasLabel(name string, i int) (string, error) {
	l := fmt.Sprintf("%s:%d", name, i)
	if len(l) > ifNameMax {
		return "", fmt.Errorf("guestconfig: alias label %q is longer than %d characters; use a shorter interface name", l, ifNameMax)
	}
	return l, nil
}

// header is the comment that starts each generated file.
func header(comment, what string) string {
	return comment + " Generated by aliasnet guestconfig: " + what + ".\n" +
		comment + " Follows Alibaba Cloud's \"Secondary private IP addresses\" procedure; alias ranges\n" +
		comment + " become local routes as GCE's guest agent installs them. Edits are overwritten on re-render.\n"
}
