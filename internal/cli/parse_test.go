package cli

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func TestParseAliases(t *testing.T) {
	tests := []struct {
		in    string
		want  []Alias
		canon string
	}{
		{"", nil, ""},
		{" ; ;", nil, ""},
		{"container-range:172.16.0.0/24", []Alias{{RangeName: "container-range", Form: AliasCIDR, Prefix: pfx("172.16.0.0/24")}}, "container-range:172.16.0.0/24"},
		{"container-range:/24", []Alias{{RangeName: "container-range", Form: AliasNetmask, Bits: 24}}, "container-range:/24"},
		{"/27;/32;/32", []Alias{{Form: AliasNetmask, Bits: 27}, {Form: AliasNetmask, Bits: 32}, {Form: AliasNetmask, Bits: 32}}, "/27;/32;/32"},
		{"10.128.7.29", []Alias{{Form: AliasIP, Prefix: pfx("10.128.7.29/32")}}, "10.128.7.29"},
		{"10.128.7.29/32", []Alias{{Form: AliasCIDR, Prefix: pfx("10.128.7.29/32")}}, "10.128.7.29/32"},
		{" r1 : 10.0.0.0/8 ; 10.1.2.3 ;", []Alias{{RangeName: "r1", Form: AliasCIDR, Prefix: pfx("10.0.0.0/8")}, {Form: AliasIP, Prefix: pfx("10.1.2.3/32")}}, "r1:10.0.0.0/8;10.1.2.3"},
		{"/0", []Alias{{Form: AliasNetmask, Bits: 0}}, "/0"},
	}
	for _, tc := range tests {
		got, err := ParseAliases(tc.in)
		if err != nil {
			t.Errorf("ParseAliases(%q): %v", tc.in, err)
			continue
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("ParseAliases(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
		if s := FormatAliases(got); s != tc.canon {
			t.Errorf("FormatAliases(ParseAliases(%q)) = %q, want %q", tc.in, s, tc.canon)
		}
	}
}

func TestParseAliasesErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"10.0.0.5/24", `--aliases: "10.0.0.5/24": 10.0.0.5/24 is not aligned to its mask (did you mean 10.0.0.0/24?)`},
		{"/33", `--aliases: "/33": netmask "/33" must be /0 to /32`},
		{"/024", `netmask "/024"`},
		{"/+4", `netmask "/+4"`},
		{"/", `netmask "/"`},
		{"fd00::/64", `expected RANGE_NAME:CIDR with one ':'`},
		{"r:fd00::1", `expected RANGE_NAME:CIDR with one ':'`},
		{"Bad_Name:10.0.0.0/8", `range name "Bad_Name" must be`},
		{":10.0.0.0/8", `range name ""`},
		{"r:", `"r:": missing CIDR range`},
		{"10.0.0.300", `"10.0.0.300" is not an IPv4 address, CIDR range or /N netmask`},
		{"10.0.0.0/33", `"10.0.0.0/33" is not an IPv4 CIDR range`},
		{"::ffff:10.0.0.1", `one ':'`},
		{"r:::1/128", `one ':'`},
		{"10.0.0.1;nonsense", `"nonsense" is not an IPv4 address`},
	}
	for _, tc := range tests {
		_, err := ParseAliases(tc.in)
		if err == nil {
			t.Errorf("ParseAliases(%q): no error, want %q", tc.in, tc.want)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "--aliases: ") {
			t.Errorf("ParseAliases(%q) error %q, want it to contain %q", tc.in, err, tc.want)
		}
	}
}

func TestParseNetworkInterface(t *testing.T) {
	tests := []struct {
		in    string
		want  NICSpec
		canon string
	}{
		{"", NICSpec{}, ""},
		{"subnet=subnet-a", NICSpec{Subnet: "subnet-a"}, "subnet=subnet-a"},
		{"subnet=subnet-a,aliases=container-range:172.16.0.0/24",
			NICSpec{Subnet: "subnet-a", Aliases: []Alias{{RangeName: "container-range", Form: AliasCIDR, Prefix: pfx("172.16.0.0/24")}}},
			"subnet=subnet-a,aliases=container-range:172.16.0.0/24"},
		{"aliases=/27;/32;10.128.0.9, no-address ,private-network-ip=10.128.0.10,network=vpc,subnet=regions/us-central1/subnetworks/s",
			NICSpec{Network: "vpc", Subnet: "regions/us-central1/subnetworks/s", PrivateIP: netip.MustParseAddr("10.128.0.10"), NoAddress: true,
				Aliases: []Alias{{Form: AliasNetmask, Bits: 27}, {Form: AliasNetmask, Bits: 32}, {Form: AliasIP, Prefix: pfx("10.128.0.9/32")}}},
			"network=vpc,subnet=regions/us-central1/subnetworks/s,private-network-ip=10.128.0.10,aliases=/27;/32;10.128.0.9,no-address"},
		{"subnet=s,aliases=", NICSpec{Subnet: "s"}, "subnet=s"},
		{"no-address=false,network=n", NICSpec{Network: "n"}, "network=n"},
		{"no-address=true", NICSpec{NoAddress: true}, "no-address"},
		{"network=https://h/compute/v1/projects/p/global/networks/n,", NICSpec{Network: "https://h/compute/v1/projects/p/global/networks/n"}, "network=https://h/compute/v1/projects/p/global/networks/n"},
	}
	for _, tc := range tests {
		got, err := ParseNetworkInterface(tc.in)
		if err != nil {
			t.Errorf("ParseNetworkInterface(%q): %v", tc.in, err)
			continue
		}
		if !nicEqual(got, tc.want) {
			t.Errorf("ParseNetworkInterface(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
		if s := got.String(); s != tc.canon {
			t.Errorf("String() of %q = %q, want %q", tc.in, s, tc.canon)
		}
	}
}

func TestParseNetworkInterfaceErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"subnett=subnet-a", `--network-interface: unknown key "subnett" (valid: network, subnet, private-network-ip, aliases, no-address)`},
		{"subnet=a,subnet=b", `--network-interface: key "subnet" given twice`},
		{"subnet=", `--network-interface: subnet: needs a value (subnet=NAME)`},
		{"network", `--network-interface: network: needs a value`},
		{"private-network-ip=10.0.0.256", `--network-interface: private-network-ip: "10.0.0.256" is not an IPv4 address`},
		{"private-network-ip=fd00::1", `private-network-ip: "fd00::1" is not an IPv4 address`},
		{"subnet=s,aliases=r:10.0.0.1/8", `--network-interface: aliases: "r:10.0.0.1/8": 10.0.0.1/8 is not aligned to its mask (did you mean 10.0.0.0/8?)`},
		{"no-address=maybe", `--network-interface: no-address takes no value (got "maybe")`},
		{"=x", `unknown key ""`},
		{"subnet=default,aliases=10.128.1.32/32,10.128.1.33/32", `--network-interface: unknown key "10.128.1.33/32" (valid: network, subnet, private-network-ip, aliases, no-address); separate alias ranges with ';', not ','`},
	}
	for _, tc := range tests {
		_, err := ParseNetworkInterface(tc.in)
		if err == nil {
			t.Errorf("ParseNetworkInterface(%q): no error, want %q", tc.in, tc.want)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseNetworkInterface(%q) error %q, want it to contain %q", tc.in, err, tc.want)
		}
	}
}

func TestParseSecondaryRanges(t *testing.T) {
	got, err := ParseSecondaryRanges("--secondary-range", "container-range=172.16.0.0/20, svc = 172.17.0.0/24,")
	if err != nil {
		t.Fatal(err)
	}
	want := []SecondaryRange{{"container-range", pfx("172.16.0.0/20")}, {"svc", pfx("172.17.0.0/24")}}
	if !slices.Equal(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if s := FormatSecondaryRanges(got); s != "container-range=172.16.0.0/20,svc=172.17.0.0/24" {
		t.Fatalf("FormatSecondaryRanges = %q", s)
	}
	for _, tc := range []struct{ in, want string }{
		{"a", `--secondary-range: "a": expected RANGE_NAME=CIDR`},
		{"a=", `expected RANGE_NAME=CIDR`},
		{"A=10.0.0.0/8", `range name "A" must be`},
		{"a=10.0.0.1/8", `10.0.0.1/8 is not aligned to its mask (did you mean 10.0.0.0/8?)`},
		{"a=10.0.0.0", `"10.0.0.0" is not a CIDR range`},
		{"a=10.0.0.0/8,a=11.0.0.0/8", `range name "a" given twice`},
	} {
		_, err := ParseSecondaryRanges("--secondary-range", tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseSecondaryRanges(%q) error %v, want %q", tc.in, err, tc.want)
		}
	}
	names, err := ParseRangeNames("--remove-secondary-ranges", "a, b,a,")
	if err != nil || !slices.Equal(names, []string{"a", "b"}) {
		t.Fatalf("ParseRangeNames = %v, %v", names, err)
	}
	if _, err := ParseRangeNames("--remove-secondary-ranges", "a,B"); err == nil || !strings.HasPrefix(err.Error(), "--remove-secondary-ranges: range name \"B\"") {
		t.Fatalf("ParseRangeNames(a,B) error %v", err)
	}
}

func nicEqual(a, b NICSpec) bool {
	return a.Network == b.Network && a.Subnet == b.Subnet && a.PrivateIP == b.PrivateIP &&
		a.NoAddress == b.NoAddress && slices.Equal(a.Aliases, b.Aliases)
}

var fuzzSeeds = []string{
	"", "subnet=subnet-a,aliases=container-range:172.16.0.0/24", "subnet=s,aliases=container-range:/24",
	"subnet=s,aliases=/27;/32;/32", "network=n,subnet=s,private-network-ip=10.0.0.2,no-address",
	"aliases=r:10.0.0.0/8;10.1.2.3;/0", "subnett=x", "no-address=0", "network= a=b ,,", "aliases=r:fd00::/64",
}

// FuzzParseNetworkInterface: never panics; whatever parses renders to a
// canonical string that parses to the same spec and renders identically.
func FuzzParseNetworkInterface(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseNetworkInterface(s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "--network-interface: ") {
				t.Fatalf("error does not name the flag: %v", err)
			}
			return
		}
		r := n.String()
		n2, err := ParseNetworkInterface(r)
		if err != nil {
			t.Fatalf("%q parsed, its rendering %q does not: %v", s, r, err)
		}
		if !nicEqual(n, n2) {
			t.Fatalf("%q -> %+v -> %q -> %+v", s, n, r, n2)
		}
		if r2 := n2.String(); r2 != r {
			t.Fatalf("rendering not canonical: %q then %q", r, r2)
		}
	})
}

// FuzzParseAliases: never panics; parse(render(parse(s))) == parse(s).
func FuzzParseAliases(f *testing.F) {
	for _, s := range []string{"", "container-range:172.16.0.0/24", "container-range:/24", "/27;/32;/32",
		"10.128.7.29", "r:10.0.0.0/8;10.1.2.3;/0", "fd00::/64", "a:b:c", "/024", " x : 1.2.3.4 ;;"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		as, err := ParseAliases(s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "--aliases: ") {
				t.Fatalf("error does not name the flag: %v", err)
			}
			return
		}
		for _, a := range as {
			if a.Form != AliasNetmask && (!a.Prefix.IsValid() || !a.Prefix.Addr().Is4() || a.Prefix.Masked() != a.Prefix) {
				t.Fatalf("%q: bad prefix in %+v", s, a)
			}
		}
		r := FormatAliases(as)
		as2, err := ParseAliases(r)
		if err != nil {
			t.Fatalf("%q parsed, its rendering %q does not: %v", s, r, err)
		}
		if !slices.Equal(as, as2) {
			t.Fatalf("%q -> %+v -> %q -> %+v", s, as, r, as2)
		}
		if r2 := FormatAliases(as2); r2 != r {
			t.Fatalf("rendering not canonical: %q then %q", r, r2)
		}
	})
}

// FuzzParseSecondaryRanges: never panics; rendering round-trips.
func FuzzParseSecondaryRanges(f *testing.F) {
	for _, s := range []string{"container-range=172.16.0.0/20", "a=10.0.0.0/8,b=fd00::/64", "a=", "=x", "a=1.2.3.4/32,a=1.2.3.4/32"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rs, err := ParseSecondaryRanges("--secondary-range", s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "--secondary-range: ") {
				t.Fatalf("error does not name the flag: %v", err)
			}
			return
		}
		r := FormatSecondaryRanges(rs)
		rs2, err := ParseSecondaryRanges("--secondary-range", r)
		if err != nil || !slices.Equal(rs, rs2) {
			t.Fatalf("%q -> %+v -> %q -> %+v, %v", s, rs, r, rs2, err)
		}
	})
}
