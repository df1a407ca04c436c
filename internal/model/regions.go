package model

import (
	"net/netip"
	"strings"
)

// Region is a region with its zones and the /20 that GCE gives it in
// auto-mode networks.
type Region struct {
	Name     string
	Zones    []string
	AutoCIDR netip.Prefix
}

// AutoModeRange is the block auto-mode networks carve their subnets from;
// user subnets in auto-mode networks must stay outside it.
var AutoModeRange = netip.MustParsePrefix("10.128.0.0/9")

func r(name, cidr string, zones ...string) Region {
	zs := make([]string, len(zones))
	for i, z := range zones {
		zs[i] = name + "-" + z
	}
	return Region{Name: name, Zones: zs, AutoCIDR: netip.MustParsePrefix(cidr)}
}

// Regions is GCE's published auto-mode table (the IP ranges table of the
// "Subnets" page) for the regions aliasnet ships. The ranges are real GCE
// values, so scripts that expect "10.128.0.0/20 in us-central1" hold here.
var Regions = []Region{
	r("us-central1", "10.128.0.0/20", "a", "b", "c", "f"),
	r("europe-west1", "10.132.0.0/20", "b", "c", "d"),
	r("us-west1", "10.138.0.0/20", "a", "b", "c"),
	r("asia-east1", "10.140.0.0/20", "a", "b", "c"),
	r("us-east1", "10.142.0.0/20", "b", "c", "d"),
	r("asia-northeast1", "10.146.0.0/20", "a", "b", "c"),
	r("asia-southeast1", "10.148.0.0/20", "a", "b", "c"),
	r("us-east4", "10.150.0.0/20", "a", "b", "c"),
	r("australia-southeast1", "10.152.0.0/20", "a", "b", "c"),
	r("europe-west2", "10.154.0.0/20", "a", "b", "c"),
	r("europe-west3", "10.156.0.0/20", "a", "b", "c"),
	r("southamerica-east1", "10.158.0.0/20", "a", "b", "c"),
	r("asia-south1", "10.160.0.0/20", "a", "b", "c"),
	r("northamerica-northeast1", "10.162.0.0/20", "a", "b", "c"),
	r("europe-west4", "10.164.0.0/20", "a", "b", "c"),
	r("europe-north1", "10.166.0.0/20", "a", "b", "c"),
	r("us-west2", "10.168.0.0/20", "a", "b", "c"),
	r("asia-east2", "10.170.0.0/20", "a", "b", "c"),
	r("europe-west6", "10.172.0.0/20", "a", "b", "c"),
	r("asia-northeast2", "10.174.0.0/20", "a", "b", "c"),
}

// RegionByName finds a region.
func RegionByName(name string) (Region, bool) {
	for _, rg := range Regions {
		if rg.Name == name {
			return rg, true
		}
	}
	return Region{}, false
}

// ZoneRegion returns the region of a zone name ("us-central1-a" ->
// "us-central1"). Zones outside the shipped table are accepted when they
// have the REGION-LETTER shape, so Alibaba zones ("cn-hangzhou-h") work.
func ZoneRegion(zone string) (string, bool) {
	i := strings.LastIndexByte(zone, '-')
	if i <= 0 || i == len(zone)-1 {
		return "", false
	}
	return zone[:i], true
}
