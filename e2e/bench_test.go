package e2e

import (
	"fmt"
	"net/http"
	"sync"
	"testing"

	compute "google.golang.org/api/compute/v1"
)

// BenchmarkHTTPAliasUpdates: 64 concurrent clients each move their own
// instance's /32 alias back and forth with updateNetworkInterface (PATCH,
// with the NIC fingerprint), against the real binary on its durable store.
// The server and the clients share this machine's cores.
func BenchmarkHTTPAliasUpdates(b *testing.B) {
	s := StartServer(b, "")
	c := s.Compute(b)
	mustB := func(op *compute.Operation, err error) {
		if err := opErr(op, err); err != nil {
			b.Fatal(err)
		}
	}
	mustB(c.Networks.Insert(proj, &compute.Network{Name: "vpc", ForceSendFields: []string{"AutoCreateSubnetworks"}}).Do())
	mustB(c.Subnetworks.Insert(proj, region, &compute.Subnetwork{Name: "s", Network: "global/networks/vpc", IpCidrRange: "10.0.0.0/8"}).Do())
	const clients = 64
	for i := range clients {
		mustB(c.Instances.Insert(proj, zone, &compute.Instance{Name: fmt.Sprintf("vm%d", i), NetworkInterfaces: []*compute.NetworkInterface{{Subnetwork: "regions/" + region + "/subnetworks/s"}}}).Do())
	}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	var done sync.WaitGroup
	work := make(chan int, b.N)
	for i := range b.N {
		work <- i
	}
	close(work)
	b.ResetTimer()
	for w := range clients {
		done.Go(func() {
			f, err := newAliasFlipper(hc, s.URL()+"/compute/v1/projects/"+proj+"/zones/"+zone+"/instances/"+fmt.Sprintf("vm%d", w),
				[2]string{fmt.Sprintf("10.1.%d.1/32", w), fmt.Sprintf("10.1.%d.2/32", w)})
			if err != nil {
				b.Error(err)
				return
			}
			for range work {
				if err := f.flip(); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	done.Wait()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "updates/s")
}
