package model

import (
	"net/netip"
	"testing"
)

func TestParseAliasSpec(t *testing.T) {
	cases := []struct {
		in   string
		want AliasSpec
		err  bool
	}{
		{"10.128.1.0/24", AliasSpec{Prefix: netip.MustParsePrefix("10.128.1.0/24")}, false},
		{"10.128.7.29", AliasSpec{Prefix: netip.MustParsePrefix("10.128.7.29/32")}, false},
		{"/24", AliasSpec{Bits: 24}, false},
		{"/32", AliasSpec{Bits: 32}, false},
		{"2001:db8::1", AliasSpec{Prefix: netip.MustParsePrefix("2001:db8::1/128")}, false},
		{" 10.0.0.0/8 ", AliasSpec{Prefix: netip.MustParsePrefix("10.0.0.0/8")}, false},
		{"10.128.1.5/24", AliasSpec{}, true},
		{"/33x", AliasSpec{}, true},
		{"/129", AliasSpec{}, true},
		{"/-1", AliasSpec{}, true},
		{"/024", AliasSpec{}, true},
		{"", AliasSpec{}, true},
		{"fe80::1%eth0", AliasSpec{}, true},
		{"::ffff:10.0.0.1", AliasSpec{}, true},
		{"10.0.0.256", AliasSpec{}, true},
	}
	for _, c := range cases {
		got, err := ParseAliasSpec(c.in)
		if (err != nil) != c.err || (!c.err && got != c.want) {
			t.Errorf("ParseAliasSpec(%q) = %+v, %v; want %+v, err=%v", c.in, got, err, c.want, c.err)
		}
	}
}

// FuzzParseAliasSpec: the parser never panics, and anything it accepts
// prints back to a string that parses to the same spec.
func FuzzParseAliasSpec(f *testing.F) {
	for _, s := range []string{"10.128.1.0/24", "10.128.7.29", "/24", "2001:db8::/64", "/0", "1.2.3.4/32"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseAliasSpec(s)
		if err != nil {
			return
		}
		b, err := ParseAliasSpec(a.String())
		if err != nil || a != b {
			t.Fatalf("%q -> %+v -> %q -> %+v, %v", s, a, a.String(), b, err)
		}
		if !a.Auto() && a.Prefix.Masked() != a.Prefix {
			t.Fatalf("%q accepted unaligned %s", s, a.Prefix)
		}
	})
}

func FuzzParseRange(f *testing.F) {
	for _, s := range []string{"10.0.0.0/8", "172.16.0.0/20", "1.2.3.4/5", "::/0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseRange("f", s)
		if err != nil {
			if CodeOf(err) != Invalid {
				t.Fatalf("error without Invalid code: %v", err)
			}
			return
		}
		if p.Masked() != p || !p.IsValid() {
			t.Fatalf("%q accepted as %s", s, p)
		}
	})
}
