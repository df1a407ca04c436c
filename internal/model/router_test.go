package model

import (
	"net/netip"
	"slices"
	"testing"
)

func validRouter() Router {
	return Router{Project: "p", Region: "us-central1", Name: "cr", Network: "vpc",
		BGP:        &RouterBGP{ASN: 65000},
		Interfaces: []RouterInterface{{Name: "if0", IPRange: pfx("169.254.0.1/30")}},
		Peers: []BGPPeer{{Name: "on-prem", InterfaceName: "if0", PeerIPAddress: netip.MustParseAddr("169.254.0.2"),
			PeerASN: 65001, Priority: DefaultAdvertisedRoutePriority}},
	}
}

func TestRouterRules(t *testing.T) {
	for _, tc := range []struct {
		name  string
		mod   func(r *Router)
		code  Code
		field string
		text  string
	}{
		{"bad name", func(r *Router) { r.Name = "Cr" }, Invalid, "name", "regex"},
		{"unknown region", func(r *Router) { r.Region = "mars1" }, Invalid, "region", "mars1"},
		{"no network", func(r *Router) { r.Network = "" }, Required, "network", "network"},
		{"missing network", func(r *Router) { r.Network = "nope" }, NotFound, "network", "nope"},
		{"peers without bgp", func(r *Router) { r.BGP = nil }, Required, "bgp.asn", "ASN"},
		{"public ASN", func(r *Router) { r.BGP.ASN = 15169 }, Invalid, "bgp.asn", "private"},
		{"bad mode", func(r *Router) { r.BGP.Mode = "SOMETIMES" }, Invalid, "bgp.advertiseMode", "CUSTOM"},
		{"groups in default mode", func(r *Router) { r.BGP.Groups = []string{GroupAllSubnets} }, Invalid, "bgp.advertisedGroups[0]", "CUSTOM"},
		{"ranges in default mode", func(r *Router) { r.BGP.Ranges = []AdvertisedRange{{Range: pfx("10.0.0.0/8")}} }, Invalid, "bgp.advertisedIpRanges[0].range", "CUSTOM"},
		{"unknown group", func(r *Router) { r.BGP.Mode, r.BGP.Groups = AdvertiseCustom, []string{"ALL_VPC"} }, Invalid, "bgp.advertisedGroups[0]", "ALL_SUBNETS"},
		{"duplicate range", func(r *Router) {
			r.BGP.Mode, r.BGP.Ranges = AdvertiseCustom, []AdvertisedRange{{Range: pfx("10.0.0.0/8")}, {Range: pfx("10.0.0.0/8")}}
		}, Invalid, "bgp.advertisedIpRanges[1].range", "twice"},
		{"host bits", func(r *Router) {
			r.BGP.Mode, r.BGP.Ranges = AdvertiseCustom, []AdvertisedRange{{Range: pfx("10.0.0.1/8")}}
		}, Invalid, "bgp.advertisedIpRanges[0].range", "10.0.0.0/8"},
		{"keepalive", func(r *Router) { r.BGP.KeepaliveInterval = 5 }, Invalid, "bgp.keepaliveInterval", "20 and 60"},
		{"interface range is a network", func(r *Router) { r.Interfaces[0].IPRange = pfx("169.254.0.0/30") }, Invalid, "interfaces[0].ipRange", "169.254.0.1/30"},
		{"duplicate interface", func(r *Router) { r.Interfaces = append(r.Interfaces, r.Interfaces[0]) }, Invalid, "interfaces[1].name", "twice"},
		{"peer without interface", func(r *Router) { r.Peers[0].InterfaceName = "" }, Required, "bgpPeers[0].interfaceName", "interfaceName"},
		{"peer on a missing interface", func(r *Router) { r.Peers[0].InterfaceName = "if9" }, Invalid, "bgpPeers[0].interfaceName", "if9"},
		{"peer without address", func(r *Router) { r.Peers[0].PeerIPAddress = netip.Addr{} }, Required, "bgpPeers[0].peerIpAddress", "peerIpAddress"},
		{"address outside the interface", func(r *Router) { r.Peers[0].IPAddress = netip.MustParseAddr("169.254.1.1") }, Invalid, "bgpPeers[0].ipAddress", "169.254.0.1/30"},
		{"mixed families", func(r *Router) { r.Peers[0].PeerIPAddress = netip.MustParseAddr("fd00::2") }, Invalid, "bgpPeers[0].ipAddress", "IP versions"},
		{"iBGP", func(r *Router) { r.Peers[0].PeerASN = 65000 }, Invalid, "bgpPeers[0].peerAsn", "eBGP"},
		{"no peer ASN", func(r *Router) { r.Peers[0].PeerASN = 0 }, Required, "bgpPeers[0].peerAsn", "peerAsn"},
		{"priority", func(r *Router) { r.Peers[0].Priority = 65536 }, Invalid, "bgpPeers[0].advertisedRoutePriority", "65535"},
		{"peer groups in default mode", func(r *Router) { r.Peers[0].Groups = []string{GroupAllSubnets} }, Invalid, "bgpPeers[0].advertisedGroups[0]", "CUSTOM"},
		{"duplicate peer address", func(r *Router) {
			p := r.Peers[0]
			p.Name = "other"
			r.Peers = append(r.Peers, p)
		}, Invalid, "bgpPeers[1].peerIpAddress", "already uses"},
		{"duplicate peer name", func(r *Router) {
			p := r.Peers[0]
			p.PeerIPAddress = netip.MustParseAddr("169.254.0.3")
			r.Peers = append(r.Peers, p)
		}, Invalid, "bgpPeers[1].name", "twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := seed000(t)
			r := validRouter()
			tc.mod(&r)
			err := f.run(func(tx *Txn) error { _, err := tx.CreateRouter(r); return err })
			wantField(t, err, tc.code, tc.field, tc.text)
			if f.s.Router("p", "us-central1", "cr") != nil {
				t.Fatal("a refused router was stored")
			}
		})
	}
}

func TestRouterLifecycle(t *testing.T) {
	f := seed000(t)
	var created *Router
	f.must(func(tx *Txn) error {
		var err error
		created, err = tx.CreateRouter(validRouter())
		return err
	})
	// Defaults: the interface's address is the peer's; DEFAULT mode.
	if p := created.Peers[0]; p.IPAddress != netip.MustParseAddr("169.254.0.1") || created.BGP.Mode != AdvertiseDefault {
		t.Errorf("defaults not filled: %+v %+v", p, created.BGP)
	}
	if err := f.run(func(tx *Txn) error { _, err := tx.CreateRouter(validRouter()); return err }); CodeOf(err) != AlreadyExists {
		t.Errorf("duplicate: %v", err)
	}
	// The peer follows the router; a CUSTOM peer has its own advertisement.
	if a := created.Peers[0].Effective(created); a.Mode != AdvertiseDefault {
		t.Errorf("effective: %+v", a)
	}
	u := *created
	u.BGP = &RouterBGP{ASN: 65000, Advertisement: Advertisement{Mode: AdvertiseCustom, Ranges: []AdvertisedRange{{Range: pfx("172.16.0.0/20")}}}}
	u.Peers = slices.Clone(created.Peers)
	u.Peers[0].Advertisement = Advertisement{Mode: AdvertiseCustom, Groups: []string{GroupAllSubnets}}
	var updated *Router
	f.must(func(tx *Txn) error {
		var err error
		updated, err = tx.UpdateRouter(u)
		return err
	})
	if updated.ID != created.ID || updated.Created != created.Created {
		t.Error("update changed id or creation time")
	}
	if a := updated.Peers[0].Effective(updated); a.Mode != AdvertiseCustom || !slices.Equal(a.Groups, []string{GroupAllSubnets}) {
		t.Errorf("peer effective: %+v", a)
	}
	u.Network = "other"
	wantField(t, f.run(func(tx *Txn) error { _, err := tx.UpdateRouter(u); return err }), Invalid, "network", "cannot be changed")
	// The stored router is a copy: mutating the input does not reach it.
	u.BGP.Ranges[0].Range = pfx("10.0.0.0/8")
	if f.s.Router("p", "us-central1", "cr").BGP.Ranges[0].Range != pfx("172.16.0.0/20") {
		t.Error("stored router aliases the caller's slices")
	}
	// Load round trip.
	s2, err := Load(Snapshot{Networks: f.s.Networks("p"), Subnets: f.s.Subnets("p", ""), Routers: f.s.Routers("p", "")})
	if err != nil || s2.Router("p", "us-central1", "cr") == nil || len(s2.RoutersOfNetwork("p", "vpc")) != 1 {
		t.Fatalf("load: %v", err)
	}
	f.must(func(tx *Txn) error { return tx.DeleteRouter("p", "us-central1", "cr") })
	if err := f.run(func(tx *Txn) error { return tx.DeleteRouter("p", "us-central1", "cr") }); CodeOf(err) != NotFound {
		t.Errorf("second delete: %v", err)
	}
}

// TestRouterSubnetRanges: DEFAULT covers the primary and secondary ranges
// of the router's region, or of every region with GLOBAL routing.
func TestRouterSubnetRanges(t *testing.T) {
	f := seed000(t)
	f.must(func(tx *Txn) error {
		_, err := tx.CreateSubnet(Subnet{Project: "p", Region: "europe-west1", Name: "eu", Network: "vpc", Range: pfx("10.200.0.0/24"),
			Secondary: []SecondaryRange{{Name: "pods", Range: pfx("172.20.0.0/20")}}, Reserve: ReserveGCE})
		return err
	})
	r := validRouter()
	r.Project = "p"
	got := f.s.RouterSubnetRanges(&r)
	if want := []netip.Prefix{pfx("10.128.0.0/16"), pfx("172.16.0.0/20")}; !slices.Equal(got, want) {
		t.Errorf("regional: %v, want %v", got, want)
	}
	n := *f.s.Network("p", "vpc")
	n.RoutingMode = "GLOBAL"
	f.s.projects["p"].networks["vpc"] = &n
	got = f.s.RouterSubnetRanges(&r)
	if len(got) != 4 {
		t.Errorf("global: %v, want all four ranges", got)
	}
	r.Network = "nope"
	if got := f.s.RouterSubnetRanges(&r); got != nil {
		t.Errorf("missing network: %v", got)
	}
}
