package e2e

import (
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	compute "google.golang.org/api/compute/v1"
)

// TestKill9UnderLoad: clients allocate while the server is SIGKILLed.
// After a restart every acknowledged instance is there with the aliases it
// was acknowledged with, and nothing overlaps.
func TestKill9UnderLoad(t *testing.T) {
	dir := t.TempDir()
	s := StartServer(t, dir)
	c := s.Compute(t)
	seedNetwork(t, c)

	type acked struct{ name, ip, alias string }
	var (
		mu    sync.Mutex
		acks  []acked
		count atomic.Int64
		wg    sync.WaitGroup
	)
	stop := make(chan struct{})
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				name := fmt.Sprintf("w%d-%d", w, i)
				op, err := c.Instances.Insert(proj, zone, &compute.Instance{Name: name, NetworkInterfaces: nic(sec("/28"))}).Do()
				if err != nil || op.Error != nil {
					return // the server died under us
				}
				in, err := c.Instances.Get(proj, zone, name).Do()
				if err != nil {
					return
				}
				mu.Lock()
				acks = append(acks, acked{name, in.NetworkInterfaces[0].NetworkIP, in.NetworkInterfaces[0].AliasIpRanges[0].IpCidrRange})
				mu.Unlock()
				count.Add(1)
			}
		}()
	}
	deadline := time.Now().Add(20 * time.Second)
	for count.Load() < 200 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	s.Kill()
	close(stop)
	wg.Wait()
	if len(acks) < 50 {
		t.Fatalf("only %d acknowledged inserts before the kill", len(acks))
	}

	s2 := StartServer(t, dir)
	c2 := s2.Compute(t)
	list, err := c2.Instances.List(proj, zone).Do()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*compute.Instance{}
	for _, in := range list.Items {
		byName[in.Name] = in
		// No half-applied change: every instance has its NIC and alias.
		if len(in.NetworkInterfaces) != 1 || len(in.NetworkInterfaces[0].AliasIpRanges) != 1 {
			t.Errorf("half-applied instance %s: %+v", in.Name, in.NetworkInterfaces)
		}
	}
	for _, a := range acks {
		in := byName[a.name]
		if in == nil {
			t.Errorf("acknowledged instance %s lost", a.name)
			continue
		}
		if in.NetworkInterfaces[0].NetworkIP != a.ip || in.NetworkInterfaces[0].AliasIpRanges[0].IpCidrRange != a.alias {
			t.Errorf("%s changed across restart", a.name)
		}
	}
	checkNoOverlaps(t, c2, len(list.Items))
	// The restarted server keeps allocating without collisions.
	must(t)(c2.Instances.Insert(proj, zone, &compute.Instance{Name: "after", NetworkInterfaces: nic(sec("/28"))}).Do())
	after, _ := c2.Instances.Get(proj, zone, "after").Do()
	p := netip.MustParsePrefix(after.NetworkInterfaces[0].AliasIpRanges[0].IpCidrRange)
	for _, in := range list.Items {
		if netip.MustParsePrefix(in.NetworkInterfaces[0].AliasIpRanges[0].IpCidrRange).Overlaps(p) {
			t.Fatalf("post-restart allocation %s overlaps %s", p, in.Name)
		}
	}
	t.Logf("%d acknowledged before SIGKILL, %d present after restart", len(acks), len(list.Items))
}
