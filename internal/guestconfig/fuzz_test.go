package guestconfig

import (
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

type netplanDoc struct {
	Network struct {
		Version   int `json:"version"`
		Ethernets map[string]struct {
			DHCP4 *bool `json:"dhcp4"`
			DHCP6 *bool `json:"dhcp6"`
			Match struct {
				MACAddress string `json:"macaddress"`
			} `json:"match"`
			SetName   string   `json:"set-name"`
			Addresses []string `json:"addresses"`
			Routes    []struct {
				To    string `json:"to"`
				Via   string `json:"via"`
				Type  string `json:"type"`
				Scope string `json:"scope"`
				Table int    `json:"table"`
			} `json:"routes"`
		} `json:"ethernets"`
	} `json:"network"`
}

// fuzzInterface builds an Interface from raw fuzz input. aliases is a
// sequence of records: a tag byte, then 4+1 bytes (IPv4 address, prefix
// length) for an even tag or 16+1 bytes for an odd one; tag bit 1 keeps the
// host bits (an input Render must reject).
func fuzzInterface(name string, mac, v4 []byte, bits4 uint8, v6 []byte, bits6 uint8, aliases []byte, gw byte) Interface {
	in := Interface{Name: name}
	if len(mac) > 0 {
		in.MAC = net.HardwareAddr(mac)
	}
	if len(v4) >= 4 {
		in.Primary = netip.PrefixFrom(netip.AddrFrom4([4]byte(v4[:4])), int(bits4%33))
		if gw != 0 {
			b := in.Primary.Masked().Addr().As4()
			b[3] |= gw
			in.Gateway = netip.AddrFrom4(b)
			in.DefaultRoute = true
		}
	}
	if len(v6) >= 16 {
		in.Primary6 = netip.PrefixFrom(netip.AddrFrom16([16]byte(v6[:16])), int(bits6%129))
		if gw&1 == 1 {
			in.Gateway6 = netip.MustParseAddr("fe80::1")
		}
	}
	for len(aliases) > 0 {
		tag := aliases[0]
		aliases = aliases[1:]
		n := 4
		if tag&1 == 1 {
			n = 16
		}
		if len(aliases) < n+1 {
			break
		}
		var a netip.Addr
		if n == 4 {
			a = netip.AddrFrom4([4]byte(aliases[:4]))
		} else {
			a = netip.AddrFrom16([16]byte(aliases[:16]))
		}
		pf := netip.PrefixFrom(a, int(aliases[n])%(a.BitLen()+1))
		if tag&2 == 0 {
			pf = pf.Masked()
		}
		in.Aliases = append(in.Aliases, pf)
		aliases = aliases[n+1:]
	}
	return in
}

func FuzzRender(f *testing.F) {
	f.Add("eth0", []byte{0x00, 0x16, 0x3e, 0x16, 0x43, 0x01}, []byte{192, 168, 1, 201}, uint8(24), []byte(nil), uint8(0),
		[]byte{0, 192, 168, 1, 202, 32, 0, 192, 168, 1, 203, 32, 0, 172, 16, 0, 0, 24}, false, byte(253))
	f.Add("ens4", []byte{0x42, 0x01, 0x0a, 0x80, 0x00, 0x02}, []byte{10, 128, 0, 2}, uint8(16),
		[]byte{0x24, 0x08, 0x40, 0x03, 0x1f, 0x40, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 5}, uint8(64),
		[]byte{1, 0x24, 0x08, 0x40, 0x03, 0x1f, 0x40, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 6, 128,
			1, 0x26, 0, 0x19, 0, 0x40, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 96}, true, byte(1))
	f.Add("eth0:0", []byte{1, 2, 3}, []byte{10, 0, 0, 1}, uint8(8), []byte(nil), uint8(0), []byte{2, 10, 0, 0, 5, 24}, false, byte(0))
	f.Add("yes", []byte(nil), []byte{10, 0, 0, 1}, uint8(32), []byte(nil), uint8(0), []byte{0, 10, 0, 0, 2, 32}, true, byte(0))
	f.Add("x234567890123-5", []byte(nil), []byte{100, 64, 0, 1}, uint8(10), []byte(nil), uint8(0), []byte{0, 100, 64, 0, 9, 32}, false, byte(7))

	f.Fuzz(func(t *testing.T, name string, mac, v4 []byte, bits4 uint8, v6 []byte, bits6 uint8, aliases []byte, localRoutes bool, gw byte) {
		in := fuzzInterface(name, mac, v4, bits4, v6, bits6, aliases, gw)
		form := FormAuto
		if localRoutes {
			form = FormLocalRoutes
		}
		ifaces := []Interface{in}
		results := map[OS]Result{}
		for _, fam := range osNames {
			r, err := Render(fam, ifaces, form)
			if err == nil {
				results[fam] = r
			}
		}
		e := expect(in, form)
		if r, ok := results[Netplan]; ok {
			checkFuzzNetplan(t, in, e, r)
		}
		if r, ok := results[Debian]; ok {
			checkFuzzDebian(t, in, e, r)
		}
		// Apart from the per-family limits (alias labels, Windows ranges),
		// the families agree on what is valid.
		if _, ok := results[Netplan]; ok != (results[NMCLI].Files != nil) || ok != (results[SUSE].Files != nil) {
			t.Fatalf("netplan/nmcli/suse disagree on validity of %+v", in)
		}
	})
}

func checkFuzzNetplan(t *testing.T, in Interface, e expected, r Result) {
	var content []byte
	for _, f := range r.Files {
		if f.Path == netplanPath {
			content = f.Content
		}
	}
	var doc netplanDoc
	if err := yaml.UnmarshalStrict(content, &doc); err != nil {
		t.Fatalf("netplan output is not valid YAML: %v\n%s", err, content)
	}
	eth, ok := doc.Network.Ethernets[in.Name]
	if doc.Network.Version != 2 || !ok || len(doc.Network.Ethernets) != 1 {
		t.Fatalf("netplan structure: %+v\n%s", doc, content)
	}
	if eth.DHCP4 == nil || *eth.DHCP4 {
		t.Fatalf("dhcp4 not false:\n%s", content)
	}
	if len(in.MAC) > 0 && (eth.Match.MACAddress != in.MAC.String() || eth.SetName != in.Name) {
		t.Fatalf("match/set-name: %+v\n%s", eth, content)
	}
	got := slices.Clone(eth.Addresses)
	sort.Strings(got)
	if want := prefixStrings(e.addrs); !slices.Equal(got, want) {
		t.Fatalf("addresses round-trip %v, want %v\n%s", got, want, content)
	}
	var gotLocal, gotVia []string
	for _, rt := range eth.Routes {
		switch {
		case rt.To == "default":
			gotVia = append(gotVia, rt.Via)
		case rt.Type == "local" && rt.Table == 255:
			gotLocal = append(gotLocal, rt.To)
		default:
			t.Fatalf("unexpected route %+v", rt)
		}
	}
	if want := prefixStrings(e.locals); !slices.Equal(sorted(gotLocal), want) {
		t.Fatalf("local routes %v, want %v", gotLocal, want)
	}
	if want := wantDefaults(in); !slices.Equal(sorted(gotVia), want) {
		t.Fatalf("default routes via %v, want %v", gotVia, want)
	}
}

func checkFuzzDebian(t *testing.T, in Interface, e expected, r Result) {
	var content string
	for _, f := range r.Files {
		if f.Path == debianPath {
			content = string(f.Content)
		}
	}
	var ifaces, addrs []string
	for _, l := range strings.Split(content, "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) == 4 && f[0] == "iface" && f[1] != "lo":
			ifaces = append(ifaces, f[1])
		case len(f) == 2 && f[0] == "address":
			addrs = append(addrs, f[1])
		case len(f) > 0 && f[0] == "iface" && f[1] != "lo":
			t.Fatalf("malformed iface line %q", l)
		}
	}
	if len(ifaces) != len(e.addrs) || len(addrs) != len(e.addrs) {
		t.Fatalf("%d iface stanzas and %d address lines for %d addresses:\n%s", len(ifaces), len(addrs), len(e.addrs), content)
	}
	var want []string
	for _, a := range e.addrs {
		if a.Addr().Is4() {
			want = append(want, a.Addr().String())
		} else {
			want = append(want, a.String())
		}
	}
	if !slices.Equal(sorted(addrs), sorted(want)) {
		t.Fatalf("addresses %v, want %v", addrs, want)
	}
	for _, l := range e.locals {
		if !strings.Contains(content, " local "+l.String()+" dev "+in.Name+" table local ") {
			t.Fatalf("no local route for %s:\n%s", l, content)
		}
	}
}
