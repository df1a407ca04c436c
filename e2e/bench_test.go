package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
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
	fingerprint := func(name string) string {
		resp, err := hc.Get(s.URL() + "/compute/v1/projects/" + proj + "/zones/" + zone + "/instances/" + name)
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		var in compute.Instance
		json.NewDecoder(resp.Body).Decode(&in)
		return in.NetworkInterfaces[0].Fingerprint
	}
	var done sync.WaitGroup
	work := make(chan int, b.N)
	for i := range b.N {
		work <- i
	}
	close(work)
	b.ResetTimer()
	for w := range clients {
		done.Add(1)
		go func() {
			defer done.Done()
			name := fmt.Sprintf("vm%d", w)
			alias := [2]string{fmt.Sprintf("10.1.%d.1/32", w), fmt.Sprintf("10.1.%d.2/32", w)}
			// The fingerprint is a hash of the NIC's content, so a client
			// learns it once per content and reuses it.
			fp := map[int]string{-1: fingerprint(name)}
			cur := -1
			url := s.URL() + "/compute/v1/projects/" + proj + "/zones/" + zone + "/instances/" + name + "/updateNetworkInterface?networkInterface=nic0"
			for k := range work {
				nextSet := k % 2
				if cur >= 0 && nextSet == cur {
					nextSet = 1 - cur
				}
				body, _ := json.Marshal(map[string]any{"fingerprint": fp[cur], "aliasIpRanges": []map[string]string{{"ipCidrRange": alias[nextSet]}}})
				req, _ := http.NewRequest(http.MethodPatch, url, bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				resp, err := hc.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				var op compute.Operation
				json.NewDecoder(resp.Body).Decode(&op)
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || op.Error != nil {
					b.Errorf("update %s: HTTP %d %+v", name, resp.StatusCode, op.Error)
					return
				}
				cur = nextSet
				if _, ok := fp[cur]; !ok {
					fp[cur] = fingerprint(name)
				}
			}
		}()
	}
	done.Wait()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "updates/s")
}
