package guestconfig

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// GCE's guest agent tags the local routes of alias ranges with protocol 66.
const routeProto = "66"

// ---------------------------------------------------------------- nmcli

const nmcliScript = "aliasnet.sh"

func renderNMCLI(nics []*nic) (Result, error) {
	var b strings.Builder
	b.WriteString("#!/bin/sh\n")
	b.WriteString(header("#", "nmcli commands for NetworkManager"))
	b.WriteString("# Run as root. Each connection is looked up from its device; the fallback is\n")
	b.WriteString("# the \"System <device>\" name RHEL-family images use.\n")
	b.WriteString("set -eu\n")
	for _, n := range nics {
		b.WriteString("\n")
		fmt.Fprintf(&b, "# %s\n", describe(n))
		fmt.Fprintf(&b, "con=$(nmcli -g GENERAL.CONNECTION device show %s 2>/dev/null || true)\n", shellQuote(n.Name))
		fmt.Fprintf(&b, "[ -n \"$con\" ] || con=%s\n", shellQuote("System "+n.Name))
		mod := func(prop, val string) {
			fmt.Fprintf(&b, "nmcli con modify \"$con\" %s %s\n", prop, shellQuote(val))
		}
		mod("ipv4.addresses", joinPrefixes(n.addrs4, ","))
		if n.gw4() {
			mod("ipv4.gateway", n.Gateway.String())
		} else {
			mod("ipv4.gateway", "")
			mod("ipv4.never-default", "yes")
		}
		mod("ipv4.method", "manual")
		for _, r := range n.local4 {
			mod("+ipv4.routes", r.String()+" table=255 type=local scope=254")
		}
		if len(n.addrs6) > 0 {
			mod("ipv6.addresses", joinPrefixes(n.addrs6, ","))
		}
		if n.hasPrimary6() {
			if n.gw6() {
				mod("ipv6.gateway", n.Gateway6.String())
			} else {
				mod("ipv6.gateway", "")
				mod("ipv6.never-default", "yes")
			}
			mod("ipv6.method", "manual")
		}
		for _, r := range n.local6 {
			mod("+ipv6.routes", r.String()+" table=255 type=local")
		}
		b.WriteString("nmcli con up \"$con\"\n")
	}
	r := Result{
		Files: []File{{Path: nmcliScript, Mode: 0o755, Content: []byte(b.String())}},
		Apply: []string{"sh ./" + nmcliScript},
		Notes: []string{"nmcli applies immediately (nmcli con up); no network restart is needed."},
	}
	if hasLocal(nics) {
		r.Notes = append(r.Notes, "Local routes use the NetworkManager route attributes type=local table=255 (NetworkManager 1.20 or later); NetworkManager cannot set the route protocol, so they carry proto static instead of GCE's proto 66.")
	}
	return r, nil
}

// ---------------------------------------------------------------- rhel

const rhelDir = "/etc/sysconfig/network-scripts/"

func renderRHEL(nics []*nic) (Result, error) {
	var r Result
	var ups []string
	for _, n := range nics {
		var b strings.Builder
		b.WriteString(header("#", "main configuration of "+n.Name))
		kv := func(k, v string) { fmt.Fprintf(&b, "%s=%s\n", k, v) }
		kv("DEVICE", n.Name)
		kv("TYPE", "Ethernet")
		if len(n.MAC) > 0 {
			kv("HWADDR", macString(n.MAC))
		}
		kv("BOOTPROTO", "static")
		kv("ONBOOT", "yes")
		kv("IPADDR", n.Primary.Addr().String())
		kv("NETMASK", netmask(n.Primary.Bits()))
		if n.gw4() {
			kv("GATEWAY", n.Gateway.String())
			kv("DEFROUTE", "yes")
		} else {
			kv("DEFROUTE", "no")
		}
		if len(n.addrs6) > 0 {
			kv("IPV6INIT", "yes")
			if n.hasPrimary6() {
				kv("IPV6_AUTOCONF", "no")
				kv("IPV6ADDR", n.Primary6.String())
				if n.gw6() {
					kv("IPV6_DEFAULTGW", n.Gateway6.String())
				}
			}
			if sec := n.secondary6(); len(sec) > 0 {
				kv("IPV6ADDR_SECONDARIES", `"`+joinPrefixes(sec, " ")+`"`)
			}
		}
		r.Files = append(r.Files, File{Path: rhelDir + "ifcfg-" + n.Name, Mode: 0o644, Content: []byte(b.String())})

		for i, a := range n.secondary4() {
			label, err := aliasLabel(n.Name, i)
			if err != nil {
				return Result{}, err
			}
			var b strings.Builder
			b.WriteString(header("#", fmt.Sprintf("secondary address %d of %s", i, n.Name)))
			fmt.Fprintf(&b, "DEVICE=%s\nTYPE=Ethernet\nBOOTPROTO=static\nIPADDR=%s\nNETMASK=%s\n",
				label, a.Addr(), netmask(a.Bits()))
			r.Files = append(r.Files, File{Path: rhelDir + "ifcfg-" + label, Mode: 0o644, Content: []byte(b.String())})
		}
		// NetworkManager's ifcfg-rh reader accepts the route type keyword and
		// numeric tables only ("table local" and "proto" make it reject the
		// whole file), so the lines stay within that common subset.
		if len(n.local4) > 0 {
			var b strings.Builder
			b.WriteString(header("#", "local routes of "+n.Name+" (each line is `ip route add LINE`)"))
			for _, p := range n.local4 {
				fmt.Fprintf(&b, "local %s dev %s table 255 scope host\n", p, n.Name)
			}
			r.Files = append(r.Files, File{Path: rhelDir + "route-" + n.Name, Mode: 0o644, Content: []byte(b.String())})
		}
		if len(n.local6) > 0 {
			var b strings.Builder
			b.WriteString(header("#", "IPv6 local routes of "+n.Name+" (each line is `ip -6 route add LINE`)"))
			for _, p := range n.local6 {
				fmt.Fprintf(&b, "local %s dev %s table 255\n", p, n.Name)
			}
			r.Files = append(r.Files, File{Path: rhelDir + "route6-" + n.Name, Mode: 0o644, Content: []byte(b.String())})
		}
		ups = append(ups, "nmcli con up "+shellQuote("System "+n.Name))
	}
	r.Apply = []string{
		"systemctl restart network  # RHEL/CentOS 7, Alibaba Cloud Linux 2, Anolis 7 (network-scripts); RHEL/CentOS 6: service network restart",
		"nmcli con reload && " + strings.Join(ups, " && ") + "  # RHEL/CentOS 8 and 9, Alibaba Cloud Linux 3, Anolis 8, Fedora (NetworkManager with ifcfg-rh)",
	}
	r.Notes = []string{
		"RHEL 9 deprecates ifcfg files and RHEL 10 no longer reads them; there, use the nmcli output instead.",
	}
	if hasLocal(nics) {
		r.Notes = append(r.Notes, "route-IFACE and route6-IFACE use table 255 (the local table) without GCE's proto 66, because NetworkManager's ifcfg-rh reader rejects `table local` and `proto`.")
	}
	return r, nil
}

// ---------------------------------------------------------------- netplan

// netplanPath sorts after cloud-init's 50-cloud-init.yaml: netplan reads
// /etc/netplan/*.yaml in lexical order and later files override earlier
// scalars, so dhcp4: false here wins over cloud-init's dhcp4: true.
const netplanPath = "/etc/netplan/90-aliasnet.yaml"

func renderNetplan(nics []*nic) (Result, error) {
	var b strings.Builder
	b.WriteString(header("#", "netplan configuration"))
	b.WriteString("# netplan merges /etc/netplan/*.yaml in lexical order (later files win); this file\n")
	b.WriteString("# sorts after cloud-init's 50-cloud-init.yaml.\n")
	b.WriteString("network:\n    version: 2\n    ethernets:\n")
	for _, n := range nics {
		fmt.Fprintf(&b, "        %s: # %s\n", yq(n.Name), describe(n))
		b.WriteString("            dhcp4: false\n")
		if n.hasPrimary6() {
			b.WriteString("            dhcp6: false\n")
		}
		if len(n.MAC) > 0 {
			fmt.Fprintf(&b, "            match:\n                macaddress: %s\n", yq(macString(n.MAC)))
			fmt.Fprintf(&b, "            set-name: %s\n", yq(n.Name))
		}
		b.WriteString("            addresses:\n")
		for _, a := range append(append([]netip.Prefix(nil), n.addrs4...), n.addrs6...) {
			fmt.Fprintf(&b, "                - %s\n", yq(a.String()))
		}
		if n.gw4() || n.gw6() || len(n.local4)+len(n.local6) > 0 {
			b.WriteString("            routes:\n")
			if n.gw4() {
				fmt.Fprintf(&b, "                - to: default\n                  via: %s\n", yq(n.Gateway.String()))
			}
			if n.gw6() {
				fmt.Fprintf(&b, "                - to: default\n                  via: %s\n", yq(n.Gateway6.String()))
			}
			for _, p := range n.local4 {
				fmt.Fprintf(&b, "                - to: %s\n                  type: local\n                  scope: host\n                  table: 255\n", yq(p.String()))
			}
			for _, p := range n.local6 {
				fmt.Fprintf(&b, "                - to: %s\n                  type: local\n                  table: 255\n", yq(p.String()))
			}
		}
	}
	r := Result{
		Files: []File{{Path: netplanPath, Mode: 0o600, Content: []byte(b.String())}},
		Apply: []string{"netplan apply"},
		Notes: []string{
			"netplan reads every /etc/netplan/*.yaml; " + netplanPath + " overrides cloud-init's 50-cloud-init.yaml, which you may delete once cloud-init's network configuration is disabled.",
			"`to: default` needs netplan 0.103 or later (Ubuntu 22.04+, Debian 12); local routes need route `type` support; netplan cannot set the route protocol, so GCE's proto 66 is not carried.",
		},
	}
	return r, nil
}

// yq renders a YAML double-quoted scalar. Every value passed here is ASCII
// from a validated name, a MAC or a netip value.
func yq(s string) string { return strconv.Quote(s) }

// ---------------------------------------------------------------- debian

const debianPath = "/etc/network/interfaces"

func renderDebian(nics []*nic) (Result, error) {
	var b strings.Builder
	b.WriteString(header("#", "ifupdown configuration"))
	b.WriteString("# This replaces /etc/network/interfaces and does not source interfaces.d/,\n")
	b.WriteString("# so cloud-init's interfaces.d/50-cloud-init no longer applies.\n\n")
	b.WriteString("auto lo\niface lo inet loopback\n")
	for _, n := range nics {
		fmt.Fprintf(&b, "\n# %s\n", describe(n))
		fmt.Fprintf(&b, "auto %s\niface %s inet static\n", n.Name, n.Name)
		fmt.Fprintf(&b, "    address %s\n    netmask %s\n", n.Primary.Addr(), netmask(n.Primary.Bits()))
		if n.gw4() {
			fmt.Fprintf(&b, "    gateway %s\n", n.Gateway)
		}
		for _, p := range n.local4 {
			fmt.Fprintf(&b, "    up ip route replace local %s dev %s table local scope host proto %s\n", p, n.Name, routeProto)
			fmt.Fprintf(&b, "    down ip route del local %s dev %s table local || true\n", p, n.Name)
		}
		for _, p := range n.local6 {
			fmt.Fprintf(&b, "    up ip -6 route replace local %s dev %s table local proto %s\n", p, n.Name, routeProto)
			fmt.Fprintf(&b, "    down ip -6 route del local %s dev %s table local || true\n", p, n.Name)
		}
		for i, a := range n.addrs6 {
			fmt.Fprintf(&b, "\niface %s inet6 static\n    address %s\n", n.Name, a)
			if i == 0 && n.hasPrimary6() && n.gw6() {
				fmt.Fprintf(&b, "    gateway %s\n", n.Gateway6)
			}
		}
		for i, a := range n.secondary4() {
			label, err := aliasLabel(n.Name, i)
			if err != nil {
				return Result{}, err
			}
			fmt.Fprintf(&b, "\nauto %s\niface %s inet static\n    address %s\n    netmask %s\n",
				label, label, a.Addr(), netmask(a.Bits()))
		}
	}
	return Result{
		Files: []File{{Path: debianPath, Mode: 0o644, Content: []byte(b.String())}},
		Apply: []string{"systemctl restart networking  # or, per interface: ifdown IFACE; ifup IFACE"},
		Notes: []string{
			"For Debian 8-11 and Ubuntu 14/16 (ifupdown). Ubuntu 18+ and Debian 12 cloud images use netplan.",
		},
	}, nil
}

// ---------------------------------------------------------------- suse

const suseDir = "/etc/sysconfig/network/"

func renderSUSE(nics []*nic) (Result, error) {
	var r Result
	var routes strings.Builder
	for _, n := range nics {
		var b strings.Builder
		b.WriteString(header("#", "wicked configuration of "+n.Name))
		kv := func(k, v string) { fmt.Fprintf(&b, "%s='%s'\n", k, v) }
		kv("BOOTPROTO", "static")
		kv("STARTMODE", "auto")
		kv("USERCONTROL", "no")
		kv("IPADDR", n.Primary.Addr().String())
		kv("NETMASK", netmask(n.Primary.Bits()))
		i := 0
		for _, a := range n.secondary4() {
			b.WriteString("\n")
			s := strconv.Itoa(i)
			kv("IPADDR_"+s, a.Addr().String())
			kv("NETMASK_"+s, netmask(a.Bits()))
			// The label is optional; the kernel limits it to 15 characters.
			if _, err := aliasLabel(n.Name, i); err == nil {
				kv("LABEL_"+s, s)
			}
			i++
		}
		for _, a := range n.addrs6 {
			b.WriteString("\n")
			kv("IPADDR_"+strconv.Itoa(i), a.String())
			i++
		}
		r.Files = append(r.Files, File{Path: suseDir + "ifcfg-" + n.Name, Mode: 0o644, Content: []byte(b.String())})

		if n.gw4() {
			fmt.Fprintf(&routes, "default %s - -\n", n.Gateway)
		}
		if n.gw6() {
			fmt.Fprintf(&routes, "default %s - %s\n", n.Gateway6, n.Name)
		}
		if len(n.local4)+len(n.local6) > 0 {
			var b strings.Builder
			b.WriteString(header("#", "local routes of "+n.Name))
			b.WriteString("# Destination  Gateway  Netmask  Interface  Options\n")
			for _, p := range n.local4 {
				fmt.Fprintf(&b, "%s - - %s local table 255 scope host proto %s\n", p, n.Name, routeProto)
			}
			for _, p := range n.local6 {
				fmt.Fprintf(&b, "%s - - %s local table 255 proto %s\n", p, n.Name, routeProto)
			}
			r.Files = append(r.Files, File{Path: suseDir + "ifroute-" + n.Name, Mode: 0o644, Content: []byte(b.String())})
		}
	}
	if routes.Len() > 0 {
		content := header("#", "global routes") + "# Destination  Gateway  Netmask  Interface\n" + routes.String()
		r.Files = append(r.Files, File{Path: suseDir + "routes", Mode: 0o644, Content: []byte(content)})
		r.Notes = append(r.Notes, suseDir+"routes is replaced as a whole; merge any other routes it had.")
	}
	r.Apply = []string{"systemctl restart wicked  # SLES 12/15, openSUSE Leap 15; SLES 11: service network restart"}
	return r, nil
}

// ---------------------------------------------------------------- helpers

func joinPrefixes(ps []netip.Prefix, sep string) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, sep)
}

func describe(n *nic) string {
	d := n.Name
	if len(n.MAC) > 0 {
		d += " " + macString(n.MAC)
	}
	if n.DefaultRoute {
		d += ", default route"
	}
	return d
}

func hasLocal(nics []*nic) bool {
	for _, n := range nics {
		if len(n.local4)+len(n.local6) > 0 {
			return true
		}
	}
	return false
}
