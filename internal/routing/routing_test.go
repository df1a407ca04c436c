package routing

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/aliasnet/aliasnet/internal/model"
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func ip(s string) netip.Addr    { return netip.MustParseAddr(s) }

var seedRanges = []netip.Prefix{pfx("10.128.0.0/16"), pfx("172.16.0.0/20")}

func peer(name, addr string, adv model.Advertisement) model.BGPPeer {
	return model.BGPPeer{Name: name, InterfaceName: "if0", PeerIPAddress: ip(addr), PeerASN: 65001, Priority: 100, Advertisement: adv}
}

// TestGroups: peers following the router share one advertised set; a
// CUSTOM peer gets its own; disabled peers get none.
func TestGroups(t *testing.T) {
	custom := model.Advertisement{Mode: model.AdvertiseCustom, Ranges: []model.AdvertisedRange{{Range: pfx("172.16.0.0/20")}}}
	r := &model.Router{Name: "cr", BGP: &model.RouterBGP{ASN: 65000, Advertisement: model.Advertisement{Mode: model.AdvertiseDefault}},
		Peers: []model.BGPPeer{
			peer("a", "192.0.2.1", model.Advertisement{}),
			peer("b", "192.0.2.2", custom),
			peer("c", "192.0.2.3", model.Advertisement{Mode: model.AdvertiseDefault}),
			{Name: "off", PeerIPAddress: ip("192.0.2.4"), PeerASN: 65001, Disabled: true},
		}}
	gs, err := groups(r, seedRanges)
	if err != nil {
		t.Fatal(err)
	}
	if len(gs) != 2 {
		t.Fatalf("%d groups, want 2: %+v", len(gs), gs)
	}
	if !slices.Equal(gs[0].adv, seedRanges) || len(gs[0].peers) != 2 || gs[0].peers[1].Name != "c" {
		t.Errorf("DEFAULT group: %+v", gs[0])
	}
	if !slices.Equal(gs[1].adv, []netip.Prefix{pfx("172.16.0.0/20")}) || len(gs[1].peers) != 1 || gs[1].peers[0].Name != "b" {
		t.Errorf("CUSTOM group: %+v", gs[1])
	}
	// Router-level CUSTOM: only the secondary range, for every peer that follows it.
	r.BGP.Advertisement = custom
	r.Peers = r.Peers[:1]
	gs, _ = groups(r, seedRanges)
	if len(gs) != 1 || !slices.Equal(gs[0].adv, []netip.Prefix{pfx("172.16.0.0/20")}) {
		t.Errorf("router CUSTOM: %+v", gs)
	}
	// ALL_SUBNETS plus a range.
	r.BGP.Advertisement = model.Advertisement{Mode: model.AdvertiseCustom, Groups: []string{model.GroupAllSubnets},
		Ranges: []model.AdvertisedRange{{Range: pfx("192.0.2.0/24")}}}
	gs, _ = groups(r, seedRanges)
	if want := []netip.Prefix{pfx("10.128.0.0/16"), pfx("172.16.0.0/20"), pfx("192.0.2.0/24")}; !slices.Equal(gs[0].adv, want) {
		t.Errorf("ALL_SUBNETS + range: %v, want %v", gs[0].adv, want)
	}
}

func TestRouterID(t *testing.T) {
	r := &model.Router{ID: 0x12345678}
	if got := routerID(r, ip("127.0.0.1")); got != ip("127.0.0.1") {
		t.Errorf("listen address: %v", got)
	}
	if got := routerID(r, ip("0.0.0.0")); !got.Is4() || got.As4()[0]&0x80 == 0 {
		t.Errorf("derived: %v", got)
	}
	r.Interfaces = []model.RouterInterface{{Name: "if0", IPRange: pfx("169.254.0.1/30")}}
	if got := routerID(r, ip("127.0.0.1")); got != ip("169.254.0.1") {
		t.Errorf("interface address: %v", got)
	}
	r.Peers = []model.BGPPeer{{IPAddress: ip("169.254.9.1")}}
	if got := routerID(r, ip("127.0.0.1")); got != ip("169.254.9.1") {
		t.Errorf("session address: %v", got)
	}
}
