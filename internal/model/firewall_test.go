package model

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestFirewallRules(t *testing.T) {
	tcp22 := []FirewallProtocol{{Protocol: "tcp", Ports: []string{"22"}}}
	base := Firewall{Project: "p", Name: "fw", Network: "vpc", Priority: 1000, Allowed: tcp22}
	with := func(m func(f *Firewall)) Firewall { f := base; m(&f); return f }
	many := func(n int, s string) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = s
		}
		return out
	}
	cases := []struct {
		name  string
		f     Firewall
		code  Code
		field string
		msg   string
	}{
		{"ok allow", base, 0, "", ""},
		{"ok deny all", with(func(f *Firewall) { f.Allowed = nil; f.Denied = []FirewallProtocol{{Protocol: "all"}} }), 0, "", ""},
		{"ok egress", with(func(f *Firewall) { f.Direction = Egress; f.SourceRanges = []netip.Prefix{pfx("10.0.0.0/8")} }), 0, "", ""},
		{"ok numbers and ranges", with(func(f *Firewall) {
			f.Allowed = []FirewallProtocol{{Protocol: "6", Ports: []string{"0", "1000-2000", "65535"}}, {Protocol: "UDP", Ports: []string{"53"}}, {Protocol: "icmp"}, {Protocol: "47"}, {Protocol: "sctp", Ports: []string{"9"}}}
		}), 0, "", ""},
		{"bad name", with(func(f *Firewall) { f.Name = "-x" }), Invalid, "name", "regex"},
		{"unknown network", with(func(f *Firewall) { f.Network = "nope" }), NotFound, "network", "global/networks/nope"},
		{"default network missing", with(func(f *Firewall) { f.Network = "" }), NotFound, "network", "global/networks/default"},
		{"bad direction", with(func(f *Firewall) { f.Direction = "ingress" }), Invalid, "direction", "INGRESS or EGRESS"},
		{"bad priority", with(func(f *Firewall) { f.Priority = 70000 }), Invalid, "priority", "between 0 and 65535"},
		{"no action", with(func(f *Firewall) { f.Allowed = nil }), Required, "allowed", "allowed[] or denied[]"},
		{"both actions", with(func(f *Firewall) { f.Denied = tcp22 }), Invalid, "denied", "both allowed[] and denied[]"},
		{"no protocol", with(func(f *Firewall) { f.Allowed = []FirewallProtocol{{}} }), Required, "allowed[0].IPProtocol", "IPProtocol"},
		{"unknown protocol", with(func(f *Firewall) { f.Allowed = []FirewallProtocol{{Protocol: "gre"}} }), Invalid, "allowed[0].IPProtocol", "not a protocol name"},
		{"protocol number too big", with(func(f *Firewall) { f.Allowed = []FirewallProtocol{{Protocol: "256"}} }), Invalid, "allowed[0].IPProtocol", "out of range"},
		{"ports on icmp", with(func(f *Firewall) { f.Allowed = []FirewallProtocol{{Protocol: "icmp", Ports: []string{"1"}}} }), Invalid, "allowed[0].ports", "tcp, udp and sctp"},
		{"ports on all", with(func(f *Firewall) { f.Allowed = []FirewallProtocol{{Protocol: "all", Ports: []string{"1"}}} }), Invalid, "allowed[0].ports", "tcp, udp and sctp"},
		{"bad port", with(func(f *Firewall) { f.Allowed = []FirewallProtocol{{Protocol: "tcp", Ports: []string{"22", "http"}}} }), Invalid, "allowed[0].ports[1]", "not a port number"},
		{"port too big", with(func(f *Firewall) { f.Allowed = []FirewallProtocol{{Protocol: "tcp", Ports: []string{"65536"}}} }), Invalid, "allowed[0].ports[0]", "out of range"},
		{"reversed range", with(func(f *Firewall) {
			f.Denied, f.Allowed = []FirewallProtocol{{Protocol: "udp", Ports: []string{"60-53"}}}, nil
		}), Invalid, "denied[0].ports[0]", "greater than"},
		{"egress source tags", with(func(f *Firewall) { f.Direction = Egress; f.SourceTags = []string{"web"} }), Invalid, "sourceTags", "EGRESS"},
		{"bad source tag", with(func(f *Firewall) { f.SourceTags = []string{"Web"} }), Invalid, "sourceTags[0]", "regex"},
		{"bad target tag", with(func(f *Firewall) { f.TargetTags = []string{"a", "b_c"} }), Invalid, "targetTags[1]", "regex"},
		{"too many source tags", with(func(f *Firewall) { f.SourceTags = many(31, "t") }), Invalid, "sourceTags", "at most 30"},
		{"too many target tags", with(func(f *Firewall) { f.TargetTags = many(71, "t") }), Invalid, "targetTags", "at most 70"},
		{"unaligned range", with(func(f *Firewall) {
			f.SourceRanges = []netip.Prefix{netip.PrefixFrom(netip.MustParseAddr("10.0.0.5"), 8)}
		}), Invalid, "sourceRanges[0]", "Invalid IPCidrRange"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := policyFixture(t)
			err := f.run(func(tx *Txn) error { _, err := tx.CreateFirewall(c.f); return err })
			if c.code == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantField(t, err, c.code, c.field, c.msg)
			if f.s.Firewall("p", c.f.Name) != nil {
				t.Fatal("refused rule was stored")
			}
		})
	}
}

func TestFirewallDefaults(t *testing.T) {
	f := policyFixture(t)
	var in, tagged, eg *Firewall
	f.must(func(tx *Txn) error {
		var err error
		if in, err = tx.CreateFirewall(Firewall{Project: "p", Name: "in", Network: "vpc", Priority: 1000, Allowed: []FirewallProtocol{{Protocol: "TCP"}}}); err != nil {
			return err
		}
		if tagged, err = tx.CreateFirewall(Firewall{Project: "p", Name: "tagged", Network: "vpc", Priority: 1000, SourceTags: []string{"web"}, Allowed: []FirewallProtocol{{Protocol: "tcp"}}}); err != nil {
			return err
		}
		eg, err = tx.CreateFirewall(Firewall{Project: "p", Name: "eg", Network: "vpc", Direction: Egress, Priority: 1000, Denied: []FirewallProtocol{{Protocol: "all"}}})
		return err
	})
	if in.Direction != Ingress || !slices.Equal(in.SourceRanges, []netip.Prefix{pfx("0.0.0.0/0")}) {
		t.Fatalf("ingress defaults: %+v", in)
	}
	if in.Allowed[0].Protocol != "tcp" {
		t.Fatalf("protocol not lowercased: %q", in.Allowed[0].Protocol)
	}
	if len(tagged.SourceRanges) != 0 {
		t.Fatalf("sourceTags rule got default sourceRanges: %v", tagged.SourceRanges)
	}
	if !slices.Equal(eg.DestinationRanges, []netip.Prefix{pfx("0.0.0.0/0")}) || len(eg.SourceRanges) != 0 {
		t.Fatalf("egress defaults: %+v", eg)
	}
}

func TestFirewallUpdate(t *testing.T) {
	f := policyFixture(t)
	var orig *Firewall
	f.must(func(tx *Txn) error {
		var err error
		orig, err = tx.CreateFirewall(Firewall{Project: "p", Name: "fw", Network: "vpc", Priority: 1000, Allowed: []FirewallProtocol{{Protocol: "tcp", Ports: []string{"22"}}}})
		return err
	})
	upd := *orig
	upd.Priority = 10
	upd.Disabled = true
	upd.TargetTags = []string{"web"}
	f.must(func(tx *Txn) error { _, err := tx.UpdateFirewall(upd); return err })
	got := f.s.Firewall("p", "fw")
	if got.Priority != 10 || !got.Disabled || got.ID != orig.ID || got.Created != orig.Created || orig.Priority != 1000 {
		t.Fatalf("update: %+v (orig %+v)", got, orig)
	}
	bad := *got
	bad.Direction = Egress
	wantField(t, f.run(func(tx *Txn) error { _, err := tx.UpdateFirewall(bad); return err }), Invalid, "direction", "cannot be changed")
	bad = *got
	bad.Network = "other"
	wantField(t, f.run(func(tx *Txn) error { _, err := tx.UpdateFirewall(bad); return err }), Invalid, "network", "cannot be changed")
	bad = *got
	bad.Allowed = []FirewallProtocol{{Protocol: "tcp", Ports: []string{"x"}}}
	wantField(t, f.run(func(tx *Txn) error { _, err := tx.UpdateFirewall(bad); return err }), Invalid, "allowed[0].ports[0]", "port")
	if f.s.Firewall("p", "fw").Allowed[0].Ports[0] != "22" {
		t.Fatal("refused update changed the rule")
	}
	bad = *got
	bad.SourceRanges = nil
	wantField(t, f.run(func(tx *Txn) error { _, err := tx.UpdateFirewall(bad); return err }), Required, "sourceRanges", "0.0.0.0/0 explicitly")
	wantCode(t, f.run(func(tx *Txn) error { _, err := tx.UpdateFirewall(Firewall{Project: "p", Name: "nope"}); return err }), NotFound, "firewalls/nope")
	f.must(func(tx *Txn) error { return tx.DeleteFirewall("p", "fw") })
	wantCode(t, f.run(func(tx *Txn) error { return tx.DeleteFirewall("p", "fw") }), NotFound, "firewalls/fw")
}

func TestParsePortRange(t *testing.T) {
	good := map[string]PortRange{"0": {0, 0}, "22": {22, 22}, "1000-2000": {1000, 2000}, "65535": {65535, 65535}, "5-5": {5, 5}}
	for s, want := range good {
		got, err := ParsePortRange(s)
		if err != nil || got != want {
			t.Errorf("%q: got %v, %v", s, got, err)
		}
		if got.String() != s && s != "5-5" {
			t.Errorf("%q renders as %q", s, got.String())
		}
	}
	for _, s := range []string{"", "-", "1-", "-1", "022", "+1", " 1", "1 ", "65536", "99999999999", "2-1", "1-2-3", "0x10", "１"} {
		if _, err := ParsePortRange(s); err == nil {
			t.Errorf("%q: want error", s)
		}
	}
}

func TestParseIPProtocol(t *testing.T) {
	for s, want := range map[string]uint8{"tcp": 6, "UDP": 17, "icmp": 1, "esp": 50, "ah": 51, "sctp": 132, "ipip": 4, "0": 0, "255": 255, "47": 47} {
		n, all, err := ParseIPProtocol(s)
		if err != nil || all || n != want {
			t.Errorf("%q: got %d %v %v", s, n, all, err)
		}
	}
	if _, all, err := ParseIPProtocol("ALL"); err != nil || !all {
		t.Errorf("all: %v %v", all, err)
	}
	for _, s := range []string{"", "gre", "256", "-1", "6 ", "tcp:22"} {
		if _, _, err := ParseIPProtocol(s); err == nil {
			t.Errorf("%q: want error", s)
		}
	}
}

// FuzzFirewallProtocol: whatever the input, CompileProtocol either
// refuses it with a model error naming a field of the entry, or compiles
// ranges that are well-formed and that re-parse from their rendering.
func FuzzFirewallProtocol(f *testing.F) {
	for _, s := range []string{"tcp|22", "udp|53-60", "icmp|", "all|", "6|0,65535", "tcp|1000-2000,22", "sctp|9", "17|1-1", "tcp|a", "esp|1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		proto, ports, _ := strings.Cut(s, "|")
		fp := FirewallProtocol{Protocol: proto}
		if ports != "" {
			fp.Ports = strings.Split(ports, ",")
		}
		m, err := CompileProtocol(fp, "allowed[0]")
		if err != nil {
			me, ok := err.(*Error)
			if !ok || !strings.HasPrefix(me.Field, "allowed[0].") {
				t.Fatalf("%q: error %v does not name a field of the entry", s, err)
			}
			return
		}
		if m.All && len(m.Ports) > 0 || len(m.Ports) > 0 && !HasPorts(m.Number) {
			t.Fatalf("%q: ports on a portless protocol: %+v", s, m)
		}
		if len(m.Ports) != len(fp.Ports) {
			t.Fatalf("%q: %d ports compiled from %d", s, len(m.Ports), len(fp.Ports))
		}
		for i, r := range m.Ports {
			if r.Lo > r.Hi {
				t.Fatalf("%q: range %v inverted", s, r)
			}
			back, err := ParsePortRange(r.String())
			if err != nil || back != r {
				t.Fatalf("%q: %v renders as %q which parses to %v, %v", s, r, r.String(), back, err)
			}
			if p := fp.Ports[i]; !strings.Contains(p, "-") && r.String() != p {
				t.Fatalf("%q: single port %q renders as %q", s, p, r.String())
			}
		}
	})
}
