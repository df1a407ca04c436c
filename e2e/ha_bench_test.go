package e2e

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	compute "google.golang.org/api/compute/v1"

	"github.com/aliasnet/aliasnet/internal/server"
	"github.com/aliasnet/aliasnet/internal/store"
	"github.com/aliasnet/aliasnet/internal/store/etcdtest"
)

// BenchmarkHA compares alias allocation throughput and latency of one
// server on the embedded bbolt store with three replicas on a 3-member
// etcd cluster (fsync on), in the same run, on this one machine: the
// clients, the servers and the etcd members share its cores.
//
// 64 clients each own one instance and move its nic0 alias between two
// /32 addresses of their own with updateNetworkInterface (PATCH with the
// NIC fingerprint, learned once per content): every request releases one
// address and allocates another, durably. Clients are spread round-robin
// over the replicas. Layouts: all instances in one subnet (one conflict
// domain: every replica contends for it), one subnet in each of 64
// networks (64 domains), and 64 subnets of one network (one domain
// again: the conflict domain is the network).
//
// Run: go test ./e2e -run '^$' -bench BenchmarkHA -benchtime 1x
// (each case loads for haBenchFor regardless of b.N).
func BenchmarkHA(b *testing.B) {
	cases := []struct {
		name     string
		replicas int // 0: bbolt
		networks int
		subnets  int // per network
		extra    []string
	}{
		{"bbolt/replicas=1/subnet=1", 0, 1, 1, nil},
		{"etcd/replicas=3/subnet=1", 3, 1, 1, nil},
		{"bbolt/replicas=1/networks=64", 0, 64, 1, nil},
		{"etcd/replicas=3/networks=64", 3, 64, 1, nil},
		{"etcd/replicas=3/subnets=64-in-1-network", 3, 1, 64, nil},
		// Every replica commits its own clients' mutations.
		{"etcd/no-relay/replicas=3/networks=64", 3, 64, 1, []string{"--relay-writes=false"}},
		{"etcd/no-relay/replicas=3/subnet=1", 3, 1, 1, []string{"--relay-writes=false"}},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			var servers []*Server
			if tc.replicas == 0 {
				servers = []*Server{StartServer(b, "")}
			} else {
				h := startHA(b, tc.replicas, etcdtest.Options{}, tc.extra...)
				servers = h.replicas
			}
			res := haLoad(b, servers, tc.networks, tc.subnets)
			b.ReportMetric(res.rate, "allocs/s")
			b.ReportMetric(res.p50.Seconds()*1000, "p50-ms")
			b.ReportMetric(res.p99.Seconds()*1000, "p99-ms")
			if tc.replicas > 0 {
				var st replicaStatus
				var relayed, waitMicros int64
				for _, s := range servers {
					x := status(b, s)
					if x.Routing != nil {
						relayed += x.Routing.Relayed
						waitMicros += x.Routing.WaitMicros
					}
					st.Stats.Commits += x.Stats.Commits
					st.Stats.Requests += x.Stats.Requests
					st.Stats.Conflicts += x.Stats.Conflicts
					st.Stats.Retries += x.Stats.Retries
					st.Stats.CommitMicros += x.Stats.CommitMicros
					st.Stats.ScheduleMicros += x.Stats.ScheduleMicros
					st.Stats.CommitOps += x.Stats.CommitOps
					st.Stats.CommitBytes += x.Stats.CommitBytes
				}
				n := float64(st.Stats.Requests)
				b.ReportMetric(float64(st.Stats.Conflicts)/float64(st.Stats.Commits+st.Stats.Conflicts), "conflicts/txn")
				b.ReportMetric(float64(st.Stats.Retries)/n, "retries/alloc")
				b.ReportMetric(n/float64(st.Stats.Commits), "allocs/txn")
				b.ReportMetric(float64(st.Stats.CommitMicros)/float64(st.Stats.Commits)/1000, "txn-ms")
				b.ReportMetric(float64(st.Stats.ScheduleMicros)/float64(st.Stats.Commits)/1000, "sched-ms/txn")
				b.ReportMetric(float64(st.Stats.CommitOps)/float64(st.Stats.Commits), "writes/txn")
				b.ReportMetric(float64(st.Stats.CommitBytes)/float64(st.Stats.Commits), "bytes/txn")
				if relayed > 0 {
					b.ReportMetric(float64(relayed)/n, "relayed/alloc")
					b.ReportMetric(float64(waitMicros)/float64(relayed)/1000, "relay-wait-ms")
				}
			}
		})
	}
}

// BenchmarkHAInProcess is BenchmarkHA's 64-network etcd case with the
// three replicas running as servers inside the test process (one Go
// runtime for clients, replicas and etcd members): the same work without
// the cost of four processes sharing two cores.
func BenchmarkHAInProcess(b *testing.B) {
	c := etcdtest.Start(b, 3, etcdtest.Options{})
	var servers []*Server
	for range 3 {
		cfg := server.Config{Listen: "127.0.0.1:0", DataDir: b.TempDir(), Store: "etcd",
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			Etcd:   store.EtcdOptions{Endpoints: c.Endpoints(), Prefix: "/inprocess/"}}
		s, err := server.New(context.Background(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Listen(); err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		b.Cleanup(cancel)
		go s.Serve(ctx)
		servers = append(servers, &Server{t: b, Addr: s.Addr()})
	}
	res := haLoad(b, servers, 64, 1)
	b.ReportMetric(res.rate, "allocs/s")
	b.ReportMetric(res.p50.Seconds()*1000, "p50-ms")
	b.ReportMetric(res.p99.Seconds()*1000, "p99-ms")
}

const (
	haBenchClients = 64
	haBenchWarmup  = 2 * time.Second
	haBenchFor     = 8 * time.Second
)

type haResult struct {
	rate     float64
	p50, p99 time.Duration
}

func haLoad(b *testing.B, servers []*Server, networks, subnetsPer int) haResult {
	c := servers[0].Compute(b)
	mustB := func(op *compute.Operation, err error) {
		b.Helper()
		if err := opErr(op, err); err != nil {
			b.Fatal(err)
		}
	}
	// Layout: instance i lives in subnet i % (networks*subnetsPer); each
	// subnet is a /20 of 10.0.0.0/8.
	nsub := networks * subnetsPer
	for n := range networks {
		mustB(c.Networks.Insert(proj, &compute.Network{Name: fmt.Sprintf("net%d", n), ForceSendFields: []string{"AutoCreateSubnetworks"}}).Do())
		for s := range subnetsPer {
			k := n*subnetsPer + s
			mustB(c.Subnetworks.Insert(proj, region, &compute.Subnetwork{Name: fmt.Sprintf("s%d", k), Network: fmt.Sprintf("global/networks/net%d", n),
				IpCidrRange: fmt.Sprintf("10.%d.%d.0/20", k/16, (k%16)*16)}).Do())
		}
	}
	var wg sync.WaitGroup
	for i := range haBenchClients {
		wg.Go(func() {
			cc := servers[i%len(servers)].Compute(b)
			k := i % nsub
			if err := opErr(cc.Instances.Insert(proj, zone, &compute.Instance{Name: fmt.Sprintf("vm%d", i),
				NetworkInterfaces: []*compute.NetworkInterface{{Subnetwork: fmt.Sprintf("regions/%s/subnetworks/s%d", region, k)}}}).Do()); err != nil {
				b.Error(err)
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: haBenchClients}}
	var mu sync.Mutex
	var lat []time.Duration
	var done int
	start := time.Now()
	measureFrom := start.Add(haBenchWarmup)
	end := measureFrom.Add(haBenchFor)
	for i := range haBenchClients {
		wg.Go(func() {
			s := servers[i%len(servers)]
			name := fmt.Sprintf("vm%d", i)
			k := i % nsub
			// Two /32s only this client uses, in its instance's subnet
			// (above .1.0 of the /20: far from the primary IPs).
			alias := [2]string{
				fmt.Sprintf("10.%d.%d.%d/32", k/16, (k%16)*16+1+i/nsub/100, 10+2*(i/nsub%100)),
				fmt.Sprintf("10.%d.%d.%d/32", k/16, (k%16)*16+1+i/nsub/100, 11+2*(i/nsub%100)),
			}
			f, err := newAliasFlipper(hc, s.URL()+"/compute/v1/projects/"+proj+"/zones/"+zone+"/instances/"+name, alias)
			if err != nil {
				b.Error(err)
				return
			}
			var mine []time.Duration
			n := 0
			for {
				t0 := time.Now()
				if t0.After(end) {
					break
				}
				if err := f.flip(); err != nil {
					b.Error(err)
					return
				}
				if t0.After(measureFrom) {
					mine = append(mine, time.Since(t0))
					n++
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			done += n
			mu.Unlock()
		})
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
	slices.Sort(lat)
	q := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	return haResult{rate: float64(done) / haBenchFor.Seconds(), p50: q(0.50), p99: q(0.99)}
}
