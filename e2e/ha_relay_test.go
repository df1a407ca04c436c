package e2e

import (
	"fmt"
	"testing"

	compute "google.golang.org/api/compute/v1"

	"github.com/aliasnet/aliasnet/internal/store/etcdtest"
)

// TestHARelayWrites: replicas relay mutations to the elected committer.
// A client of another replica reads its own writes there at once; the
// committer commits them; when the committer is killed the survivors
// commit themselves at once and elect a new committer among them.
func TestHARelayWrites(t *testing.T) {
	h := startHA(t, 3, etcdtest.Options{NoFsync: true})
	ci := committerOf(t, h.replicas)
	var relays []int
	for i := range h.replicas {
		if i != ci {
			relays = append(relays, i)
		}
	}
	before := status(t, h.replicas[ci]).Stats.Requests

	// Every mutation through a relaying replica, each read back from that
	// replica right after its reply: no waiting, no retry.
	for n, ri := range relays {
		c := h.replicas[ri].Compute(t)
		nw, sub, vm := fmt.Sprintf("vpc%d", n), fmt.Sprintf("s%d", n), fmt.Sprintf("vm%d", n)
		must(t)(c.Networks.Insert(proj, &compute.Network{Name: nw, ForceSendFields: []string{"AutoCreateSubnetworks"}}).Do())
		if _, err := c.Networks.Get(proj, nw).Do(); err != nil {
			t.Fatalf("replica %d: network it relayed: %v", ri, err)
		}
		must(t)(c.Subnetworks.Insert(proj, region, &compute.Subnetwork{Name: sub, Network: "global/networks/" + nw,
			IpCidrRange: fmt.Sprintf("10.%d.0.0/20", n)}).Do())
		must(t)(c.Instances.Insert(proj, zone, &compute.Instance{Name: vm,
			NetworkInterfaces: []*compute.NetworkInterface{{Subnetwork: "regions/" + region + "/subnetworks/" + sub}}}).Do())
		for k := range 5 {
			in, err := c.Instances.Get(proj, zone, vm).Do()
			if err != nil {
				t.Fatal(err)
			}
			want := fmt.Sprintf("10.%d.1.%d/32", n, k+1)
			must(t)(c.Instances.UpdateNetworkInterface(proj, zone, vm, "nic0", &compute.NetworkInterface{
				Fingerprint: in.NetworkInterfaces[0].Fingerprint, AliasIpRanges: []*compute.AliasIpRange{{IpCidrRange: want}}}).Do())
			in, err = c.Instances.Get(proj, zone, vm).Do()
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, a := range in.NetworkInterfaces[0].AliasIpRanges {
				got = append(got, a.IpCidrRange)
			}
			if len(got) != 1 || got[0] != want {
				t.Fatalf("replica %d answered the update to %s, then shows %v", ri, want, got)
			}
		}
		st := status(t, h.replicas[ri])
		if st.Routing.Relayed < 8 || st.Stats.Commits != 0 {
			t.Errorf("replica %d relayed %d mutations and committed %d transactions itself; want 8 relayed, none itself", ri, st.Routing.Relayed, st.Stats.Commits)
		}
	}
	if got := status(t, h.replicas[ci]).Stats.Requests - before; got < 16 {
		t.Errorf("the committer committed %d mutations, want the 16 relayed to it", got)
	}

	// The committer dies without resigning: the survivors cannot reach it
	// and commit themselves, at once (its lease still names it).
	h.replicas[ci].Kill()
	c := h.replicas[relays[0]].Compute(t)
	must(t)(c.Networks.Insert(proj, &compute.Network{Name: "after-kill", ForceSendFields: []string{"AutoCreateSubnetworks"}}).Do())
	if st := status(t, h.replicas[relays[0]]); st.Routing.Fallbacks == 0 || st.Stats.Commits == 0 {
		t.Errorf("with the committer dead: %d fallbacks, %d own commits; want the mutation committed here", st.Routing.Fallbacks, st.Stats.Commits)
	}
	// Its lease runs out and a survivor takes the role.
	survivors := []*Server{h.replicas[relays[0]], h.replicas[relays[1]]}
	nc := committerOf(t, survivors)
	other := survivors[1-nc]
	relayed := status(t, other).Routing.Relayed
	oc := other.Compute(t)
	must(t)(oc.Networks.Insert(proj, &compute.Network{Name: "new-committer", ForceSendFields: []string{"AutoCreateSubnetworks"}}).Do())
	if _, err := oc.Networks.Get(proj, "new-committer").Do(); err != nil {
		t.Fatal(err)
	}
	if got := status(t, other).Routing.Relayed; got != relayed+1 {
		t.Errorf("after the new election the other survivor relayed %d mutations, want 1", got-relayed)
	}
}
