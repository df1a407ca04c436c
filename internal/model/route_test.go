package model

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

// wantField checks a refusal's code and the field it names.
func wantField(t *testing.T, err error, code Code, field, substr string) {
	t.Helper()
	if err == nil {
		t.Fatalf("want %v error on field %q, got success", code, field)
	}
	var me *Error
	if !errors.As(err, &me) {
		t.Fatalf("want a model error, got %T: %v", err, err)
	}
	if me.Code != code || me.Field != field {
		t.Fatalf("want %v on field %q, got %v on %q: %v", code, field, me.Code, me.Field, err)
	}
	if !strings.Contains(err.Error(), substr) {
		t.Fatalf("error %q does not contain %q", err, substr)
	}
}

// policyFixture is seed 000 plus a gateway VM (canIpForward), a VM with a
// /24 alias, and a peered network.
func policyFixture(t *testing.T) *fixture {
	f := seed000(t)
	f.must(func(tx *Txn) error {
		if _, _, err := tx.CreateInstance(CreateInstanceReq{Instance: Instance{Project: "p", Zone: "us-central1-a", Name: "gw", CanIPForward: true},
			NICs: []NICSpec{{Subnet: "subnet-a", IP: netip.MustParseAddr("10.128.0.2")}}}); err != nil {
			return err
		}
		if _, _, err := tx.CreateInstance(CreateInstanceReq{Instance: Instance{Project: "p", Zone: "us-central1-a", Name: "vm1"},
			NICs: []NICSpec{{Subnet: "subnet-a", IP: netip.MustParseAddr("10.128.0.3"), Aliases: []AliasSpec{aliasIn("container-range", "172.16.0.0/24"), alias("10.128.9.0/24")}}}}); err != nil {
			return err
		}
		if _, err := tx.CreateNetwork(Network{Project: "p", Name: "other"}); err != nil {
			return err
		}
		if _, err := tx.CreateSubnet(Subnet{Project: "p", Region: "us-central1", Name: "other-a", Network: "other", Range: pfx("10.200.0.0/16")}); err != nil {
			return err
		}
		if _, err := tx.AddPeering("p", "vpc", Peering{Name: "to-other", Peer: "p/other"}); err != nil {
			return err
		}
		_, err := tx.AddPeering("p", "other", Peering{Name: "to-vpc", Peer: "p/vpc"})
		return err
	})
	return f
}

func TestRouteRules(t *testing.T) {
	ip := netip.MustParseAddr
	base := Route{Project: "p", Name: "r", Network: "vpc", DestRange: pfx("192.168.0.0/16"), Priority: 1000, NextHopInstance: "us-central1-a/gw"}
	with := func(m func(r *Route)) Route { r := base; m(&r); return r }
	cases := []struct {
		name  string
		r     Route
		code  Code
		field string
		msg   string
	}{
		{"ok instance", base, 0, "", ""},
		{"ok primary ip", with(func(r *Route) { r.NextHopInstance = ""; r.NextHopIP = ip("10.128.0.2") }), 0, "", ""},
		{"ok unassigned primary-range ip (GCE: warning only)", with(func(r *Route) { r.NextHopInstance = ""; r.NextHopIP = ip("10.128.0.77") }), 0, "", ""},
		{"ok gateway", with(func(r *Route) {
			r.NextHopInstance = ""
			r.NextHopGateway = DefaultInternetGateway
			r.DestRange = pfx("0.0.0.0/0")
		}), 0, "", ""},
		{"ok broader than a subnet", with(func(r *Route) { r.DestRange = pfx("10.0.0.0/8") }), 0, "", ""},
		{"ok tags and priority 0", with(func(r *Route) { r.Tags = []string{"vpn"}; r.Priority = 0 }), 0, "", ""},
		{"bad name", with(func(r *Route) { r.Name = "Bad_Name" }), Invalid, "name", "regex"},
		{"no name", with(func(r *Route) { r.Name = "" }), Required, "name", "Required"},
		{"no network", with(func(r *Route) { r.Network = "" }), Required, "network", "network"},
		{"unknown network", with(func(r *Route) { r.Network = "nope" }), NotFound, "network", "global/networks/nope"},
		{"no dest", with(func(r *Route) { r.DestRange = netip.Prefix{} }), Required, "destRange", "destRange"},
		{"unaligned dest", with(func(r *Route) { r.DestRange = netip.PrefixFrom(ip("192.168.1.1"), 16) }), Invalid, "destRange", "did you mean 192.168.0.0/16"},
		{"priority too high", with(func(r *Route) { r.Priority = 65536 }), Invalid, "priority", "between 0 and 65535"},
		{"negative priority", with(func(r *Route) { r.Priority = -1 }), Invalid, "priority", "between 0 and 65535"},
		{"bad tag", with(func(r *Route) { r.Tags = []string{"ok", "NO"} }), Invalid, "tags[1]", "regex"},
		{"no next hop", with(func(r *Route) { r.NextHopInstance = "" }), Required, "nextHop", "nextHopInstance, nextHopIp or nextHopGateway"},
		{"two next hops", with(func(r *Route) { r.NextHopIP = ip("10.128.0.3") }), Invalid, "nextHop", "exactly one next hop"},
		{"other gateway", with(func(r *Route) { r.NextHopInstance = ""; r.NextHopGateway = "my-gw" }), Invalid, "nextHopGateway", "default-internet-gateway"},
		{"missing instance", with(func(r *Route) { r.NextHopInstance = "us-central1-a/ghost" }), NotFound, "nextHopInstance", "instances/ghost"},
		{"malformed instance", with(func(r *Route) { r.NextHopInstance = "ghost" }), Invalid, "nextHopInstance", "zones/ZONE/instances/NAME"},
		{"instance not on network", with(func(r *Route) { r.Network = "other" }), Invalid, "nextHopInstance", "no network interface in network 'other'"},
		{"alias ip in secondary alias range", with(func(r *Route) { r.NextHopInstance = ""; r.NextHopIP = ip("172.16.0.5") }), Invalid, "nextHopIp", "alias IP"},
		{"alias ip in primary-range alias", with(func(r *Route) { r.NextHopInstance = ""; r.NextHopIP = ip("10.128.9.9") }), Invalid, "nextHopIp", "alias IP range 10.128.9.0/24"},
		{"unallocated secondary-range ip", with(func(r *Route) { r.NextHopInstance = ""; r.NextHopIP = ip("172.16.5.5") }), Invalid, "nextHopIp", "secondary range 'container-range'"},
		{"reserved gateway ip", with(func(r *Route) { r.NextHopInstance = ""; r.NextHopIP = ip("10.128.0.1") }), Invalid, "nextHopIp", "reserved"},
		{"ip outside network", with(func(r *Route) { r.NextHopInstance = ""; r.NextHopIP = ip("10.9.9.9") }), Invalid, "nextHopIp", "not inside any subnetwork range"},
		{"ip version mismatch", with(func(r *Route) { r.NextHopInstance = ""; r.NextHopIP = ip("fd00::1") }), Invalid, "nextHopIp", "IP version"},
		{"equal to subnet route", with(func(r *Route) { r.DestRange = pfx("10.128.0.0/16") }), Invalid, "destRange", "equal to the subnet route"},
		{"within subnet route", with(func(r *Route) { r.DestRange = pfx("10.128.4.0/24") }), Invalid, "destRange", "fits within the subnet route"},
		{"within secondary range", with(func(r *Route) { r.DestRange = pfx("172.16.0.0/24") }), Invalid, "destRange", "secondary range 'container-range'"},
		{"within peering subnet route", with(func(r *Route) { r.DestRange = pfx("10.200.1.0/24") }), Invalid, "destRange", "peering 'to-other'"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := policyFixture(t)
			err := f.run(func(tx *Txn) error { _, err := tx.CreateRoute(c.r); return err })
			if c.code == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if got := f.s.Route("p", c.r.Name); got == nil || got.DestRange != c.r.DestRange {
					t.Fatalf("route not stored: %+v", got)
				}
				return
			}
			wantField(t, err, c.code, c.field, c.msg)
			if f.s.Route("p", c.r.Name) != nil {
				t.Fatal("refused route was stored")
			}
		})
	}
}

func TestRouteDuplicateAndDelete(t *testing.T) {
	f := policyFixture(t)
	r := Route{Project: "p", Name: "r", Network: "vpc", DestRange: pfx("192.168.0.0/16"), Priority: 1000, NextHopInstance: "us-central1-a/gw"}
	f.must(func(tx *Txn) error { _, err := tx.CreateRoute(r); return err })
	err := f.run(func(tx *Txn) error { _, err := tx.CreateRoute(r); return err })
	wantCode(t, err, AlreadyExists, "projects/p/global/routes/r")
	f.must(func(tx *Txn) error { return tx.DeleteRoute("p", "r") })
	wantCode(t, f.run(func(tx *Txn) error { return tx.DeleteRoute("p", "r") }), NotFound, "routes/r")
	// A rolled-back delete leaves the route.
	f.must(func(tx *Txn) error { _, err := tx.CreateRoute(r); return err })
	tx := f.tx()
	if err := tx.DeleteRoute("p", "r"); err != nil {
		t.Fatal(err)
	}
	tx.Rollback()
	if f.s.Route("p", "r") == nil {
		t.Fatal("rollback lost the route")
	}
}

func TestRouteNextHopWarnings(t *testing.T) {
	ip := netip.MustParseAddr
	f := policyFixture(t)
	f.must(func(tx *Txn) error {
		for _, r := range []Route{
			{Project: "p", Name: "via-gw", Network: "vpc", DestRange: pfx("192.168.0.0/16"), Priority: 1000, NextHopInstance: "us-central1-a/gw"},
			{Project: "p", Name: "via-vm1", Network: "vpc", DestRange: pfx("192.169.0.0/16"), Priority: 1000, NextHopIP: ip("10.128.0.3")},
			{Project: "p", Name: "via-nobody", Network: "vpc", DestRange: pfx("192.170.0.0/16"), Priority: 1000, NextHopIP: ip("10.128.0.99")},
		} {
			if _, err := tx.CreateRoute(r); err != nil {
				return err
			}
		}
		return nil
	})
	codes := func(name string) []string {
		_, _, ws := f.s.RouteNextHop(f.s.Route("p", name))
		var out []string
		for _, w := range ws {
			out = append(out, w.Code)
		}
		return out
	}
	if ws := codes("via-gw"); len(ws) != 0 {
		t.Fatalf("via-gw: %v", ws)
	}
	if ws := codes("via-vm1"); len(ws) != 1 || ws[0] != WarnNextHopCannotIPForward {
		t.Fatalf("via-vm1: %v", ws)
	}
	if ws := codes("via-nobody"); len(ws) != 1 || ws[0] != WarnNextHopAddressNotAssigned {
		t.Fatalf("via-nobody: %v", ws)
	}
	_, _, ws := f.s.RouteNextHop(f.s.Route("p", "via-vm1"))
	if !RouteUsable(ws) {
		t.Fatal("NEXT_HOP_CANNOT_IP_FORWARD must not make a route unusable")
	}
	f.must(func(tx *Txn) error {
		_, err := tx.SetInstanceStatus("p", "us-central1-a", "gw", InstanceStopped)
		return err
	})
	if ws := codes("via-gw"); len(ws) != 1 || ws[0] != WarnNextHopNotRunning {
		t.Fatalf("stopped gw: %v", ws)
	}
	f.must(func(tx *Txn) error { return tx.DeleteInstance("p", "us-central1-a", "gw") })
	if ws := codes("via-gw"); len(ws) != 1 || ws[0] != WarnNextHopInstanceNotFound {
		t.Fatalf("deleted gw: %v", ws)
	}
	if users := f.s.NetworkPolicyUsers("p", "vpc"); len(users) != 3 {
		t.Fatalf("policy users: %v", users)
	}
}

func TestDynamicRoutes(t *testing.T) {
	ip := netip.MustParseAddr
	f := policyFixture(t)
	rs := []DynamicRoute{{Dest: pfx("192.168.0.0/16"), NextHop: ip("169.254.0.1"), Priority: 100, Peer: "onprem"}}
	f.must(func(tx *Txn) error { _, err := tx.SetDynamicRoutes("p", "vpc", rs); return err })
	if d := f.s.DynamicRoutesOf("p", "vpc"); d == nil || len(d.Routes) != 1 {
		t.Fatalf("dynamic routes: %+v", d)
	}
	err := f.run(func(tx *Txn) error {
		_, err := tx.SetDynamicRoutes("p", "vpc", []DynamicRoute{{Dest: pfx("192.168.0.0/16"), NextHop: ip("fd00::1")}})
		return err
	})
	wantField(t, err, Invalid, "routes[0].nextHop", "IP version")
	wantCode(t, f.run(func(tx *Txn) error { _, err := tx.SetDynamicRoutes("p", "nope", rs); return err }), NotFound, "networks/nope")
	tx := f.tx()
	if _, err := tx.SetDynamicRoutes("p", "vpc", nil); err != nil {
		t.Fatal(err)
	}
	if ch := tx.Changes(); len(ch) != 1 || ch[0].Key != DynamicRoutesKey("p", "vpc") || ch[0].Value != nil {
		t.Fatalf("changes: %+v", ch)
	}
	tx.Rollback()
	if f.s.DynamicRoutesOf("p", "vpc") == nil {
		t.Fatal("rollback lost the dynamic routes")
	}
}

func TestPolicyLoadRoundTrip(t *testing.T) {
	f := policyFixture(t)
	f.must(func(tx *Txn) error {
		if _, err := tx.CreateRoute(Route{Project: "p", Name: "r", Network: "vpc", DestRange: pfx("192.168.0.0/16"), Priority: 7, NextHopInstance: "us-central1-a/gw"}); err != nil {
			return err
		}
		if _, err := tx.CreateFirewall(Firewall{Project: "p", Name: "fw", Network: "vpc", Allowed: []FirewallProtocol{{Protocol: "tcp", Ports: []string{"22"}}}}); err != nil {
			return err
		}
		_, err := tx.SetDynamicRoutes("p", "vpc", []DynamicRoute{{Dest: pfx("192.170.0.0/16"), NextHop: netip.MustParseAddr("169.254.0.1")}})
		return err
	})
	snap := Snapshot{Networks: f.s.Networks("p"), Subnets: f.s.Subnets("p", ""), Instances: f.s.Instances("p", ""),
		Interfaces: f.s.Interfaces("p"), Routes: f.s.Routes("p"), Firewalls: f.s.Firewalls("p"), Dynamic: f.s.AllDynamicRoutes("p")}
	s2, err := Load(snap)
	if err != nil {
		t.Fatal(err)
	}
	if s2.Route("p", "r") == nil || s2.Firewall("p", "fw") == nil || s2.DynamicRoutesOf("p", "vpc") == nil {
		t.Fatal("policy resources lost in Load")
	}
}
