package e2e

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// TestRoutersAndDNSWithGcloud: the real gcloud drives Cloud Router and
// Cloud DNS verbs against aliasnet; the records it creates resolve.
func TestRoutersAndDNSWithGcloud(t *testing.T) {
	requireDig(t)
	port := dnsPort(t)
	s := StartServer(t, "", "--dns-listen", fmt.Sprintf("127.0.0.1:%d", port))
	g := newGcloud(t, s, proj)
	g.ok("config", "set", "api_endpoint_overrides/dns", s.URL()+"/dns/v1/")
	g.ok("compute", "networks", "create", "vpc", "--subnet-mode=custom")
	g.ok("compute", "networks", "subnets", "create", "subnet-a", "--network=vpc", "--region="+region,
		"--range=10.128.0.0/16", "--secondary-range=container-range=172.16.0.0/20")

	g.ok("compute", "routers", "create", "cr", "--network=vpc", "--region="+region, "--asn=65000",
		"--advertisement-mode=custom", "--set-advertisement-groups=all_subnets", "--set-advertisement-ranges=192.0.2.0/24")
	g.ok("compute", "routers", "add-interface", "cr", "--region="+region, "--interface-name=if-tunnel0",
		"--ip-address=169.254.0.1", "--mask-length=30", "--vpn-tunnel=tunnel0", "--vpn-tunnel-region="+region)
	g.ok("compute", "routers", "add-bgp-peer", "cr", "--region="+region, "--peer-name=on-prem", "--interface=if-tunnel0",
		"--peer-ip-address=169.254.0.2", "--peer-asn=65001", "--advertised-route-priority=120")
	g.ok("compute", "routers", "update", "cr", "--region="+region, "--advertisement-mode=custom",
		"--set-advertisement-ranges=172.16.0.0/20")
	var r struct {
		Bgp struct {
			AdvertiseMode      string   `json:"advertiseMode"`
			AdvertisedGroups   []string `json:"advertisedGroups"`
			AdvertisedIPRanges []struct {
				Range string `json:"range"`
			} `json:"advertisedIpRanges"`
		} `json:"bgp"`
		BgpPeers []struct {
			Name                    string `json:"name"`
			IPAddress               string `json:"ipAddress"`
			AdvertisedRoutePriority int    `json:"advertisedRoutePriority"`
		} `json:"bgpPeers"`
	}
	if err := json.Unmarshal([]byte(g.ok("compute", "routers", "describe", "cr", "--region="+region, "--format=json")), &r); err != nil {
		t.Fatal(err)
	}
	if r.Bgp.AdvertiseMode != "CUSTOM" || len(r.Bgp.AdvertisedIPRanges) != 1 || r.Bgp.AdvertisedIPRanges[0].Range != "172.16.0.0/20" ||
		len(r.BgpPeers) != 1 || r.BgpPeers[0].IPAddress != "169.254.0.1" || r.BgpPeers[0].AdvertisedRoutePriority != 120 {
		t.Errorf("router after gcloud: %+v", r)
	}
	if out := g.ok("compute", "routers", "get-status", "cr", "--region="+region); !strings.Contains(out, "name: on-prem") || !strings.Contains(out, "status: DOWN") {
		t.Errorf("get-status:\n%s", out)
	}
	if out := g.ok("compute", "routers", "list"); !strings.Contains(out, "cr") {
		t.Errorf("list:\n%s", out)
	}
	g.ok("compute", "routers", "delete", "cr", "--region="+region)

	g.ok("dns", "managed-zones", "create", "containers", "--dns-name=containers.internal.", "--visibility=private",
		"--networks=vpc", "--description=names for alias IPs")
	g.ok("dns", "record-sets", "create", "web.containers.internal.", "--zone=containers", "--type=A", "--ttl=60", "--rrdatas=172.16.0.5")
	if out := g.ok("dns", "record-sets", "list", "--zone=containers"); !strings.Contains(out, "172.16.0.5") {
		t.Errorf("record-sets list:\n%s", out)
	}
	if got := digShort(t, port, "web.containers.internal"); !slices.Equal(got, []string{"172.16.0.5"}) {
		t.Errorf("dig web.containers.internal = %v", got)
	}
	g.ok("dns", "record-sets", "update", "web.containers.internal.", "--zone=containers", "--type=A", "--ttl=60", "--rrdatas=172.16.0.6")
	if got := digShort(t, port, "web.containers.internal"); !slices.Equal(got, []string{"172.16.0.6"}) {
		t.Errorf("dig after update = %v", got)
	}
	g.ok("dns", "record-sets", "delete", "web.containers.internal.", "--zone=containers", "--type=A")
	g.ok("dns", "managed-zones", "delete", "containers")
	if st := digStatus(t, port, "web.containers.internal"); st != "NXDOMAIN" {
		t.Errorf("after delete: %s", st)
	}
}
