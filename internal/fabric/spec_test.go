package fabric

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/aliasnet/aliasnet/internal/fabric/fabrictest"
	"github.com/aliasnet/aliasnet/internal/model"
)

const (
	proj = "p"
	zone = "us-central1-a"
)

var pfx = netip.MustParsePrefix

type world struct{ *fabrictest.World }

func (w *world) vm(name string, tags []string, forward bool, subnet string, aliases ...string) {
	w.T.Helper()
	n := model.NICSpec{Subnet: subnet}
	for _, a := range aliases {
		rn, r, ok := strings.Cut(a, ":")
		if !ok {
			rn, r = "", a
		}
		spec, err := model.ParseAliasSpec(r)
		if err != nil {
			w.T.Fatal(err)
		}
		spec.RangeName = rn
		n.Aliases = append(n.Aliases, spec)
	}
	w.Do(func(tx *model.Txn) error {
		_, _, err := tx.CreateInstance(model.CreateInstanceReq{Instance: model.Instance{Project: proj, Zone: zone, Name: name, Tags: tags, CanIPForward: forward},
			NICs: []model.NICSpec{n}})
		return err
	})
}

func testWorld(t *testing.T) *world {
	w := &world{fabrictest.NewWorld(t)}
	w.Do(func(tx *model.Txn) error {
		for _, n := range []struct{ net, sub, rng, sec string }{{"vpc", "s1", "10.128.0.0/16", "172.16.0.0/20"}, {"other", "s2", "10.200.0.0/16", "172.20.0.0/20"}} {
			if _, err := tx.CreateNetwork(model.Network{Project: proj, Name: n.net}); err != nil {
				return err
			}
			if _, err := tx.CreateSubnet(model.Subnet{Project: proj, Region: "us-central1", Name: n.sub, Network: n.net, Range: pfx(n.rng),
				Secondary: []model.SecondaryRange{{Name: "pods", Range: pfx(n.sec)}}}); err != nil {
				return err
			}
		}
		if _, err := tx.AddPeering(proj, "vpc", model.Peering{Name: "to-other", Peer: proj + "/other", ExchangeSubnetRoutes: true}); err != nil {
			return err
		}
		_, err := tx.AddPeering(proj, "other", model.Peering{Name: "to-vpc", Peer: proj + "/vpc", ExchangeSubnetRoutes: true})
		return err
	})
	w.vm("vm1", nil, false, "s1", "pods:172.16.0.0/24", "10.128.7.7")
	w.vm("vm2", []string{"web"}, false, "s1", "pods:/28")
	w.vm("gw", nil, true, "s1")
	w.vm("o1", nil, false, "s2", "pods:172.20.1.0/24")
	w.Do(func(tx *model.Txn) error {
		_, err := tx.CreateRoute(model.Route{Project: proj, Name: "r1", Network: "vpc", DestRange: pfx("192.168.0.0/16"), Priority: 1000, NextHopInstance: zone + "/gw"})
		return err
	})
	w.Do(func(tx *model.Txn) error {
		_, err := tx.CreateFirewall(model.Firewall{Project: proj, Name: "f1", Network: "vpc", Direction: model.Ingress, Priority: 1000,
			Allowed:      []model.FirewallProtocol{{Protocol: "tcp", Ports: []string{"80", "8000-8080"}}, {Protocol: "icmp"}},
			SourceRanges: []netip.Prefix{pfx("10.0.0.0/8"), pfx("10.128.0.0/16"), pfx("172.16.0.0/24")}, SourceTags: []string{"web"}})
		return err
	})
	return w
}

// TestWireRoundTrip: the gob form leaves Forwarding, AntiSpoof and NIC
// aliases out and DecodeGob derives them; they must equal netpolicy's.
func TestWireRoundTrip(t *testing.T) {
	w := testWorld(t)
	s, err := BuildSpec(proj, FromState(w.S, proj))
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.EncodeGob()
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeGob(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.ETag != s.ETag || len(got.Networks) != 2 || len(got.Instances) != 4 {
		t.Fatalf("decoded %s %d networks %d instances", got.ETag, len(got.Networks), len(got.Instances))
	}
	str := func(v any) string { return fmt.Sprintf("%v", v) }
	for i, nw := range s.Networks {
		g := got.Networks[i]
		if str(g.Desired.Forwarding) != str(nw.Desired.Forwarding) {
			t.Errorf("%s forwarding:\n got %v\nwant %v", nw.Key, g.Desired.Forwarding, nw.Desired.Forwarding)
		}
		if str(g.AntiSpoof) != str(nw.AntiSpoof) {
			t.Errorf("%s anti-spoof:\n got %v\nwant %v", nw.Key, g.AntiSpoof, nw.AntiSpoof)
		}
		if len(nw.AntiSpoof) == 0 || len(nw.Desired.Forwarding) == 0 {
			t.Errorf("%s: nothing to compare", nw.Key)
		}
	}
	for i, in := range s.Instances {
		for j, n := range in.NICs {
			if !slices.Equal(got.Instances[i].NICs[j].Aliases, n.Aliases) {
				t.Errorf("%s nic%d aliases %v, want %v", in.Key, j, got.Instances[i].NICs[j].Aliases, n.Aliases)
			}
		}
	}
	// Same content, same ETag; a change, another.
	s2, _ := BuildSpec(proj, FromState(w.S, proj))
	if s2.ETag != s.ETag {
		t.Fatal("ETag not deterministic")
	}
	w.vm("vm3", nil, false, "s1")
	s3, _ := BuildSpec(proj, FromState(w.S, proj))
	if s3.ETag == s.ETag {
		t.Fatal("ETag unchanged after a change")
	}
}

func TestPlan(t *testing.T) {
	w := testWorld(t)
	s, err := BuildSpec(proj, FromState(w.S, proj))
	if err != nil {
		t.Fatal(err)
	}
	p := Plan(s, proj+"/vpc", PlanOptions{Metadata: true})
	if len(p.Ports) != 3 || len(p.PeerLinks) != 1 {
		t.Fatalf("ports %d peer links %d", len(p.Ports), len(p.PeerLinks))
	}
	has := func(table int, dst, typ string) KRoute {
		t.Helper()
		for _, r := range p.Routes {
			if r.Table == table && r.Dst == pfx(dst) && r.Type == typ {
				return r
			}
		}
		t.Fatalf("no %s route %s in table %d: %v", typ, dst, table, p.Routes)
		return KRoute{}
	}
	vm1 := has(TableDeliver, "10.128.0.2/32", RouteDev)
	if r := has(TableDeliver, "172.16.0.0/24", RouteVia); r.Via != netip.MustParseAddr("10.128.0.2") || r.Dev != vm1.Dev {
		t.Errorf("alias route %+v", r)
	}
	has(TableBase, "10.128.0.0/16", RouteBlackhole) // subnet route: unowned addresses dropped
	has(TableBase, "172.20.0.0/20", RouteDev)       // peering subnet route: the peer link
	has(TableBase, "192.168.0.0/16", RouteVia)      // static route via the gateway instance
	has(TableBase, "0.0.0.0/0", RouteBlackhole)     // no default route in the VPC
	has(TableDrop, "0.0.0.0/0", RouteBlackhole)
	for _, pt := range p.Ports {
		gwPort := pt.Instance == proj+"/"+zone+"/gw"
		if gwPort != (pt.AntiSpoof == nil) {
			t.Errorf("port %s of %s: anti-spoof %v", pt.Name, pt.Instance, pt.AntiSpoof)
		}
	}
	// The firewall: tag IPs and ranges merged into one interval set.
	found := false
	for _, c := range p.Chains {
		for _, r := range c.Rules {
			if r.Firewall == "f1" {
				found = true
				if r.Src == "" {
					t.Errorf("f1 without a source set: %+v", r)
				}
			}
		}
	}
	if !found {
		t.Error("f1 not compiled")
	}
	for _, st := range p.Sets {
		for i := 1; i < len(st.Ranges); i++ {
			if st.Ranges[i].From().Compare(st.Ranges[i-1].To().Next()) <= 0 {
				t.Errorf("set %s: ranges overlap or touch: %v", st.Name, st.Ranges)
			}
		}
	}
}

func TestRanges4(t *testing.T) {
	got := ranges4([]netip.Prefix{pfx("10.0.0.0/24"), pfx("10.0.1.0/24"), pfx("10.0.0.5/32"), pfx("10.0.3.0/24"), pfx("::/0")})
	want := "[10.0.0.0-10.0.1.255 10.0.3.0-10.0.3.255]"
	if fmt.Sprint(got) != want {
		t.Fatalf("ranges4 = %v, want %s", got, want)
	}
}
