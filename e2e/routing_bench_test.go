package e2e

// BGP convergence through the whole server path (bench/routing.md):
//
//	ALIASNET_BGP_BENCH=1 go test ./e2e/ -run TestBGPConvergence -v -count=1
//
// 1,000 subnets, each a primary /24 and two secondary /24s (3,000
// prefixes), created through the API; then a router with one BIRD peer is
// inserted and the time until BIRD has imported all 3,000 is measured
// (router start → convergence), several times; then one new secondary
// range is added with a subnet PATCH and the time until BIRD has it is
// measured, many times.

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	compute "google.golang.org/api/compute/v1"
)

var birdImported = regexp.MustCompile(`(?m)^\s+Routes:\s+(\d+) imported`)

func (b *birdPeer) imported() (int, string) {
	s, _ := b.birdc("show", "protocols", "all", "aliasnet")
	if m := birdImported.FindStringSubmatch(s); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n, s
	}
	return 0, s
}

func pct(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

func TestBGPConvergence(t *testing.T) {
	if os.Getenv("ALIASNET_BGP_BENCH") == "" {
		t.Skip("set ALIASNET_BGP_BENCH=1 to run the BGP convergence benchmark")
	}
	requireBIRD(t)
	const subnets = 1000
	port := bgpPort(t)
	b := startBIRD(t, "127.0.0.2", port, 65001, "")
	s := StartServer(t, "", "--bgp-listen", fmt.Sprintf("127.0.0.1:%d", port))
	c := s.Compute(t)
	must(t)(c.Networks.Insert(proj, &compute.Network{Name: "vpc", ForceSendFields: []string{"AutoCreateSubnetworks"}}).Do())
	start := time.Now()
	var wg sync.WaitGroup
	next := make(chan int)
	for range 4 {
		wg.Go(func() {
			for i := range next {
				ip := func(base int) string { return fmt.Sprintf("10.%d.%d.0/24", base+i/256, i%256) }
				must(t)(c.Subnetworks.Insert(proj, region, &compute.Subnetwork{
					Name: fmt.Sprintf("s%04d", i), Network: "projects/" + proj + "/global/networks/vpc", IpCidrRange: ip(0),
					SecondaryIpRanges: []*compute.SubnetworkSecondaryRange{{RangeName: "a", IpCidrRange: ip(64)}, {RangeName: "b", IpCidrRange: ip(128)}},
				}).Do())
			}
		})
	}
	for i := range subnets {
		next <- i
	}
	close(next)
	wg.Wait()
	t.Logf("created %d subnets (3 ranges each) in %v", subnets, time.Since(start))

	router := &compute.Router{Name: "cr", Network: "projects/" + proj + "/global/networks/vpc", Bgp: &compute.RouterBgp{Asn: 65000},
		Interfaces: []*compute.RouterInterface{{Name: "if0", IpRange: "127.0.0.1/8"}},
		BgpPeers:   []*compute.RouterBgpPeer{{Name: "bird", InterfaceName: "if0", PeerIpAddress: "127.0.0.2", PeerAsn: 65001}}}

	// Router start → all 3,000 prefixes at BIRD.
	var total, est, call []time.Duration
	for run := range 5 {
		waitUntil(t, 30*time.Second, "BIRD idle", func() (bool, string) {
			n, raw := b.imported()
			state, _ := b.session()
			return n == 0 && state != "Established", raw
		})
		t0 := time.Now()
		must(t)(c.Routers.Insert(proj, region, router).Do())
		call = append(call, time.Since(t0))
		var tEst time.Duration
		waitUntil(t, 30*time.Second, "3,000 prefixes at BIRD", func() (bool, string) {
			n, raw := b.imported()
			if tEst == 0 {
				if state, _ := b.session(); state == "Established" {
					tEst = time.Since(t0)
				}
			}
			return n == 3*subnets, raw
		})
		total = append(total, time.Since(t0))
		est = append(est, tEst)
		t.Logf("run %d: insert call %v, Established after %v, 3,000 prefixes at BIRD after %v", run, call[run], tEst, total[run])
		if run < 4 {
			must(t)(c.Routers.Delete(proj, region, "cr").Do())
		}
	}
	t.Logf("router start → 3,000 at BIRD: median %v, max %v (Established median %v)", pct(total, 0.5), pct(total, 1), pct(est, 0.5))

	// One new secondary range on an established session.
	var add, del []time.Duration
	for i := range 40 {
		name := fmt.Sprintf("s%04d", i*20)
		sn, err := c.Subnetworks.Get(proj, region, name).Do()
		if err != nil {
			t.Fatal(err)
		}
		newRange := fmt.Sprintf("100.64.%d.0/24", i)
		ranges := append(slices.Clone(sn.SecondaryIpRanges), &compute.SubnetworkSecondaryRange{RangeName: "new", IpCidrRange: newRange})
		t0 := time.Now()
		must(t)(c.Subnetworks.Patch(proj, region, name, &compute.Subnetwork{SecondaryIpRanges: ranges, Fingerprint: sn.Fingerprint}).Do())
		waitUntil(t, 10*time.Second, newRange+" at BIRD", func() (bool, string) {
			out, _ := b.birdc("show", "route", "for", fmt.Sprintf("100.64.%d.1", i), "protocol", "aliasnet")
			return birdRouteHeadIn(out, newRange), out
		})
		add = append(add, time.Since(t0))
		sn, _ = c.Subnetworks.Get(proj, region, name).Do()
		t0 = time.Now()
		must(t)(c.Subnetworks.Patch(proj, region, name, &compute.Subnetwork{SecondaryIpRanges: ranges[:2], Fingerprint: sn.Fingerprint}).Do())
		waitUntil(t, 10*time.Second, newRange+" withdrawn", func() (bool, string) {
			out, _ := b.birdc("show", "route", "for", fmt.Sprintf("100.64.%d.1", i), "protocol", "aliasnet")
			return !birdRouteHeadIn(out, newRange), out
		})
		del = append(del, time.Since(t0))
	}
	t.Logf("new secondary range → at BIRD (PATCH start to birdc): median %v, p90 %v, max %v", pct(add, 0.5), pct(add, 0.9), pct(add, 1))
	t.Logf("removed secondary range → withdrawn at BIRD: median %v, p90 %v, max %v", pct(del, 0.5), pct(del, 0.9), pct(del, 1))
	if n, _ := b.imported(); n != 3*subnets {
		t.Errorf("BIRD has %d prefixes at the end, want %d", n, 3*subnets)
	}
}

func birdRouteHeadIn(out, prefix string) bool {
	for _, m := range regexp.MustCompile(`(?m)^([0-9.]+/\d+)\s`).FindAllStringSubmatch(out, -1) {
		if m[1] == prefix {
			return true
		}
	}
	return false
}
