package bgp

import (
	"net/netip"
	"slices"
	"testing"
)

func pfxs(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ss))
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func TestAdvertise(t *testing.T) {
	// The GCE alias-IP example network: subnet primary 10.128.0.0/16 with a
	// secondary (container) range 172.16.0.0/20, another subnet with two
	// secondaries, and a dual-stack range.
	subnets := pfxs("10.128.0.0/16", "172.16.0.0/20", "10.1.0.0/16", "10.2.0.0/20", "10.3.0.0/24", "2600:db8:1::/64")
	sorted := pfxs("10.1.0.0/16", "10.2.0.0/20", "10.3.0.0/24", "10.128.0.0/16", "172.16.0.0/20", "2600:db8:1::/64")
	for _, tc := range []struct {
		name    string
		mode    string
		groups  []string
		ranges  []netip.Prefix
		subnets []netip.Prefix
		want    []netip.Prefix
		wantErr bool
	}{
		{name: "default: all primary and secondary ranges", mode: "DEFAULT", subnets: subnets, want: sorted},
		{name: "empty mode is DEFAULT", mode: "", subnets: subnets, want: sorted},
		{name: "default, no subnets", mode: "DEFAULT", want: nil},
		{name: "default dedupes", mode: "DEFAULT", subnets: pfxs("10.0.0.0/8", "10.0.0.0/8", "10.0.0.0/16"), want: pfxs("10.0.0.0/8", "10.0.0.0/16")},
		{name: "default rejects custom groups", mode: "DEFAULT", groups: []string{"ALL_SUBNETS"}, subnets: subnets, wantErr: true},
		{name: "default rejects custom ranges", mode: "DEFAULT", ranges: pfxs("192.168.0.0/24"), subnets: subnets, wantErr: true},
		{name: "custom ALL_SUBNETS", mode: "CUSTOM", groups: []string{"ALL_SUBNETS"}, subnets: subnets, want: sorted},
		{name: "custom ALL_SUBNETS twice", mode: "CUSTOM", groups: []string{"ALL_SUBNETS", "ALL_SUBNETS"}, subnets: subnets, want: sorted},
		{
			name: "custom: only the secondary range, primary not reachable over the VPN", mode: "CUSTOM",
			ranges: pfxs("172.16.0.0/20"), subnets: subnets, want: pfxs("172.16.0.0/20"),
		},
		{
			name: "custom: group plus explicit ranges, merged and deduped", mode: "CUSTOM", groups: []string{"ALL_SUBNETS"},
			ranges: pfxs("192.168.10.0/24", "172.16.0.0/20", "2600:db8:ff::/48"), subnets: subnets,
			want: pfxs("10.1.0.0/16", "10.2.0.0/20", "10.3.0.0/24", "10.128.0.0/16", "172.16.0.0/20", "192.168.10.0/24", "2600:db8:1::/64", "2600:db8:ff::/48"),
		},
		{name: "custom, nothing chosen", mode: "CUSTOM", subnets: subnets, want: nil},
		{name: "custom unknown group", mode: "CUSTOM", groups: []string{"ALL_PEER_SUBNETS"}, subnets: subnets, wantErr: true},
		{name: "custom range with host bits", mode: "CUSTOM", ranges: pfxs("10.0.0.1/24"), wantErr: true},
		{name: "custom invalid range", mode: "CUSTOM", ranges: []netip.Prefix{{}}, wantErr: true},
		{name: "invalid subnet range", mode: "DEFAULT", subnets: []netip.Prefix{{}}, wantErr: true},
		{name: "unknown mode", mode: "ALL", subnets: subnets, wantErr: true},
		{name: "mode is case-sensitive", mode: "custom", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := slices.Clone(tc.subnets)
			got, err := Advertise(tc.mode, tc.groups, tc.ranges, tc.subnets)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("want error, got %v", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got  %v\nwant %v", got, tc.want)
			}
			if !slices.Equal(in, tc.subnets) {
				t.Errorf("Advertise modified its subnetRanges argument")
			}
		})
	}
}
