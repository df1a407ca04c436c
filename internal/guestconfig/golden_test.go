package guestconfig

import (
	"bytes"
	"flag"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/<case>/<os>.golden")

type testCase struct {
	name   string
	form   Form
	ifaces []Interface
}

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func pfx(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

var (
	p  = netip.MustParsePrefix
	ip = netip.MustParseAddr
)

// gceVM is seed 000's VM: primary 10.128.0.2 in 10.128.0.0/16 with an alias
// /24 from the secondary range 172.16.0.0/16, plus a /27 and two /32s.
var gceVM = Interface{
	Name:         "eth0",
	MAC:          mustMAC("42:01:0a:80:00:02"),
	Primary:      p("10.128.0.2/16"),
	Gateway:      ip("10.128.0.1"),
	Aliases:      pfx("172.16.0.0/24", "172.16.1.0/27", "10.128.0.10/32", "172.16.2.5/32"),
	DefaultRoute: true,
}

var testCases = []testCase{
	{
		// Seed 003's example: eth0 with secondaries .202 and .203.
		name: "seed003",
		ifaces: []Interface{{
			Name:         "eth0",
			MAC:          mustMAC("00:16:3e:16:43:01"),
			Primary:      p("192.168.1.201/24"),
			Gateway:      ip("192.168.1.253"),
			Aliases:      pfx("192.168.1.202/32", "192.168.1.203/32"),
			DefaultRoute: true,
		}},
	},
	{name: "gce-alias-ranges", ifaces: []Interface{gceVM}},
	{name: "gce-local-routes", form: FormLocalRoutes, ifaces: []Interface{gceVM}},
	{
		// A primary ENI with the default route and a secondary ENI without
		// one; the secondary has no MAC (netplan then matches by name).
		name: "two-nics",
		ifaces: []Interface{
			{
				Name:         "eth0",
				MAC:          mustMAC("00:16:3e:16:43:01"),
				Primary:      p("192.168.1.201/24"),
				Gateway:      ip("192.168.1.253"),
				Aliases:      pfx("192.168.1.202/32"),
				DefaultRoute: true,
			},
			{
				Name:    "eth1",
				Primary: p("192.168.2.201/24"),
				Gateway: ip("192.168.2.253"),
				Aliases: pfx("192.168.2.202/32", "172.16.5.0/28"),
			},
		},
	},
	{
		name: "ipv6",
		ifaces: []Interface{{
			Name:         "eth0",
			MAC:          mustMAC("00:16:3e:16:43:01"),
			Primary:      p("192.168.1.201/24"),
			Gateway:      ip("192.168.1.253"),
			Primary6:     p("2408:4003:1f40:100::5/64"),
			Gateway6:     ip("fe80::1"),
			Aliases:      pfx("192.168.1.202/32", "2408:4003:1f40:100::6/128", "2408:4003:1f40:100::7/128", "2408:4003:1f40:200::/124"),
			DefaultRoute: true,
		}},
	},
}

func TestGolden(t *testing.T) {
	for _, tc := range testCases {
		for _, fam := range osNames {
			t.Run(tc.name+"/"+string(fam), func(t *testing.T) {
				got := renderText(t, fam, tc)
				path := filepath.Join("testdata", tc.name, string(fam)+".golden")
				if *update {
					writeGolden(t, path, got)
					return
				}
				want, err := readGolden(path)
				if err != nil {
					t.Fatalf("%v (run go test -update)", err)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("%s differs from the rendered output (run go test -update to accept):\n--- got\n%s", path, got)
				}
			})
		}
	}
}

func renderText(t *testing.T, fam OS, tc testCase) []byte {
	t.Helper()
	r, err := Render(fam, tc.ifaces, tc.form)
	if err != nil {
		return []byte("error: " + err.Error() + "\n")
	}
	var b bytes.Buffer
	if err := Format(&b, r); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func writeGolden(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func readGolden(path string) ([]byte, error) { return os.ReadFile(path) }

// expected is the test's own statement of what each interface must end up
// with, derived from the Interface and not from the renderer's model.
type expected struct {
	addrs  []netip.Prefix // interface addresses, primaries first
	locals []netip.Prefix // local routes
}

func expect(in Interface, form Form) expected {
	e := expected{addrs: []netip.Prefix{in.Primary}}
	if in.Primary6.IsValid() {
		e.addrs = append(e.addrs, in.Primary6)
	}
	for _, a := range in.Aliases {
		single := a.Bits() == a.Addr().BitLen()
		if form == FormLocalRoutes || !single {
			e.locals = append(e.locals, a)
			continue
		}
		subnet := in.Primary
		if a.Addr().Is6() {
			subnet = in.Primary6
		}
		if subnet.IsValid() && subnet.Masked().Contains(a.Addr()) {
			e.addrs = append(e.addrs, netip.PrefixFrom(a.Addr(), subnet.Bits()))
		} else {
			e.addrs = append(e.addrs, a)
		}
	}
	return e
}
