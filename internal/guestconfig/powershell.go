package guestconfig

import (
	"fmt"
	"net/netip"
	"strings"
)

const windowsScript = "aliasnet.ps1"

// maxWindowsExpand is the number of host bits up to which Windows renders an
// alias range as individual addresses (/28 for IPv4, /124 for IPv6: 16
// addresses). Windows has no local routes, so a larger range is an error.
const maxWindowsExpand = 4

const psHelpers = `#Requires -RunAsAdministrator
$ErrorActionPreference = 'Stop'

function Add-AliasnetAddress([uint32]$Index, [string]$Address, [byte]$PrefixLength, [bool]$SkipAsSource) {
    if (Get-NetIPAddress -InterfaceIndex $Index -IPAddress $Address -ErrorAction SilentlyContinue) { return }
    New-NetIPAddress -InterfaceIndex $Index -IPAddress $Address -PrefixLength $PrefixLength -SkipAsSource $SkipAsSource | Out-Null
}

function Add-AliasnetDefaultRoute([uint32]$Index, [string]$Destination, [string]$NextHop) {
    if (Get-NetRoute -InterfaceIndex $Index -DestinationPrefix $Destination -ErrorAction SilentlyContinue |
        Where-Object { $_.NextHop -eq $NextHop }) { return }
    New-NetRoute -InterfaceIndex $Index -DestinationPrefix $Destination -NextHop $NextHop | Out-Null
}
`

func renderWindows(nics []*nic) (Result, error) {
	var b strings.Builder
	b.WriteString(header("#", "PowerShell script for Windows Server 2012 R2 and later"))
	b.WriteString("# Run as Administrator from the VM console (serial console/VNC): switching the primary\n")
	b.WriteString("# address from DHCP to static, as Alibaba Cloud's procedure requires, interrupts RDP briefly.\n")
	b.WriteString(psHelpers)
	for _, n := range nics {
		extra4, extra6, err := windowsAddresses(n)
		if err != nil {
			return Result{}, err
		}
		fmt.Fprintf(&b, "\n# %s\n", describe(n))
		if len(n.MAC) > 0 {
			mac := strings.ToUpper(strings.ReplaceAll(macString(n.MAC), ":", "-"))
			fmt.Fprintf(&b, "$nic = @(Get-NetAdapter | Where-Object { $_.MacAddress -eq %s })\n", psQuote(mac))
			fmt.Fprintf(&b, "if ($nic.Count -ne 1) { throw %s }\n", psQuote("aliasnet: expected one adapter with MAC "+mac))
		} else {
			fmt.Fprintf(&b, "$nic = @(Get-NetAdapter -Name %s)\n", psQuote(n.Name))
		}
		b.WriteString("$idx = $nic[0].ifIndex\n")
		b.WriteString("$dns = @((Get-DnsClientServerAddress -InterfaceIndex $idx -AddressFamily IPv4).ServerAddresses | Where-Object { $_ })\n")
		b.WriteString("Set-NetIPInterface -InterfaceIndex $idx -AddressFamily IPv4 -Dhcp Disabled\n")
		addr := func(p netip.Prefix, skip bool) {
			s := "$false"
			if skip {
				s = "$true"
			}
			fmt.Fprintf(&b, "Add-AliasnetAddress $idx %s %d %s\n", psQuote(p.Addr().String()), p.Bits(), s)
		}
		addr(n.Primary, false)
		if n.gw4() {
			fmt.Fprintf(&b, "Add-AliasnetDefaultRoute $idx '0.0.0.0/0' %s\n", psQuote(n.Gateway.String()))
		}
		for _, p := range extra4 {
			addr(p, true)
		}
		if n.hasPrimary6() {
			b.WriteString("Set-NetIPInterface -InterfaceIndex $idx -AddressFamily IPv6 -Dhcp Disabled\n")
			addr(n.Primary6, false)
			if n.gw6() {
				fmt.Fprintf(&b, "Add-AliasnetDefaultRoute $idx '::/0' %s\n", psQuote(n.Gateway6.String()))
			}
		}
		for _, p := range extra6 {
			addr(p, true)
		}
		b.WriteString("if ($dns.Count -gt 0) { Set-DnsClientServerAddress -InterfaceIndex $idx -ServerAddresses $dns }\n")
	}
	r := Result{
		Files: []File{{Path: windowsScript, Mode: 0o644, Content: []byte(b.String())}},
		Apply: []string{`powershell.exe -NoProfile -ExecutionPolicy Bypass -File .\` + windowsScript},
		Notes: []string{
			"Windows keeps DHCP and persistent static addresses apart (New-NetIPAddress fails on a DHCP-enabled interface), so the script sets the primary address statically and keeps the DNS servers the adapter had.",
			"Secondary addresses are added with -SkipAsSource $true so outgoing traffic keeps using the primary address.",
		},
	}
	for _, n := range nics {
		if len(n.ranges) > 0 {
			r.Notes = append(r.Notes, fmt.Sprintf("Windows has no local routes: alias ranges up to /%d (IPv4) and /%d (IPv6) are expanded into individual addresses.", 32-maxWindowsExpand, 128-maxWindowsExpand))
			break
		}
	}
	return r, nil
}

// windowsAddresses lists every address beyond the primaries: single aliases
// and the members of small alias ranges, each with the subnet's prefix length
// when it lies in the primary subnet.
func windowsAddresses(n *nic) (v4, v6 []netip.Prefix, err error) {
	add := func(a netip.Addr) {
		if a.Is4() {
			v4 = append(v4, hostPrefix(a, n.Primary))
		} else {
			v6 = append(v6, hostPrefix(a, n.Primary6))
		}
	}
	for _, p := range n.singles {
		add(p.Addr())
	}
	for _, p := range n.ranges {
		if p.Addr().BitLen()-p.Bits() > maxWindowsExpand {
			return nil, nil, fmt.Errorf("guestconfig: windows: alias range %s on %s has more than %d addresses; Windows has no local routes, so only ranges up to /%d (IPv4) or /%d (IPv6) can be rendered, as individual addresses",
				p, n.Name, 1<<maxWindowsExpand, 32-maxWindowsExpand, 128-maxWindowsExpand)
		}
		for a := p.Addr(); p.Contains(a); a = a.Next() {
			add(a)
			if !a.Next().IsValid() {
				break
			}
		}
	}
	return v4, v6, nil
}
