package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"

	compute "google.golang.org/api/compute/v1"
	"google.golang.org/api/googleapi"
)

const (
	proj   = "seed-project"
	region = "us-central1"
	zone   = "us-central1-a"
)

// opErr returns the operation's error, or the call's.
func opErr(op *compute.Operation, err error) error {
	if err != nil {
		return err
	}
	if op.Status != "DONE" {
		return fmt.Errorf("operation %s is %s", op.Name, op.Status)
	}
	if op.Error != nil && len(op.Error.Errors) > 0 {
		e := op.Error.Errors[0]
		return fmt.Errorf("%s: %s (http %d)", e.Code, e.Message, op.HttpErrorStatusCode)
	}
	return nil
}

// must fails the test unless the call and its operation succeeded.
func must(t *testing.T) func(*compute.Operation, error) *compute.Operation {
	return func(op *compute.Operation, err error) *compute.Operation {
		t.Helper()
		if err := opErr(op, err); err != nil {
			t.Fatal(err)
		}
		return op
	}
}

func apiCode(err error) int {
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		return ge.Code
	}
	return 0
}

// seedNetwork creates seed 000's subnet: primary 10.128.0.0/16, secondary
// container-range 172.16.0.0/20.
func seedNetwork(t *testing.T, c *compute.Service) {
	t.Helper()
	must(t)(c.Networks.Insert(proj, &compute.Network{Name: "vpc", AutoCreateSubnetworks: false,
		ForceSendFields: []string{"AutoCreateSubnetworks"}}).Do())
	must(t)(c.Subnetworks.Insert(proj, region, &compute.Subnetwork{
		Name: "subnet-a", Network: "projects/" + proj + "/global/networks/vpc", IpCidrRange: "10.128.0.0/16",
		SecondaryIpRanges: []*compute.SubnetworkSecondaryRange{{RangeName: "container-range", IpCidrRange: "172.16.0.0/20"}},
	}).Do())
}

func nic(aliases ...*compute.AliasIpRange) []*compute.NetworkInterface {
	return []*compute.NetworkInterface{{Subnetwork: "regions/" + region + "/subnetworks/subnet-a", AliasIpRanges: aliases}}
}

func sec(r string) *compute.AliasIpRange {
	return &compute.AliasIpRange{IpCidrRange: r, SubnetworkRangeName: "container-range"}
}

func prim(r string) *compute.AliasIpRange { return &compute.AliasIpRange{IpCidrRange: r} }

func TestSeed000WithGoClient(t *testing.T) {
	s := StartServer(t, "")
	c := s.Compute(t)
	seedNetwork(t, c)

	sn, err := c.Subnetworks.Get(proj, region, "subnet-a").Do()
	if err != nil {
		t.Fatal(err)
	}
	if sn.GatewayAddress != "10.128.0.1" || len(sn.SecondaryIpRanges) != 1 || sn.Fingerprint == "" {
		t.Fatalf("subnet = %+v", sn)
	}

	// The seed's instance template: every VM gets a primary IP and its own
	// /24 from the secondary range.
	must(t)(c.InstanceTemplates.Insert(proj, &compute.InstanceTemplate{Name: "containers", Properties: &compute.InstanceProperties{
		MachineType: "e2-medium", NetworkInterfaces: nic(sec("/24")),
		Disks: []*compute.AttachedDisk{{Boot: true, AutoDelete: true, InitializeParams: &compute.AttachedDiskInitializeParams{SourceImage: "projects/debian-cloud/global/images/family/debian-12"}}},
	}}).Do())
	seen := map[string]bool{}
	for i := range 3 {
		name := fmt.Sprintf("vm%d", i)
		must(t)(c.Instances.Insert(proj, zone, &compute.Instance{Name: name}).SourceInstanceTemplate("global/instanceTemplates/containers").Do())
		in, err := c.Instances.Get(proj, zone, name).Do()
		if err != nil {
			t.Fatal(err)
		}
		ni := in.NetworkInterfaces[0]
		if len(ni.AliasIpRanges) != 1 {
			t.Fatalf("%s aliases = %v", name, ni.AliasIpRanges)
		}
		a := ni.AliasIpRanges[0]
		p := netip.MustParsePrefix(a.IpCidrRange)
		if p.Bits() != 24 || !netip.MustParsePrefix("172.16.0.0/20").Contains(p.Addr()) || a.SubnetworkRangeName != "container-range" || seen[a.IpCidrRange] {
			t.Fatalf("%s alias = %+v", name, a)
		}
		seen[a.IpCidrRange] = true
		if !netip.MustParsePrefix("10.128.0.0/16").Contains(netip.MustParseAddr(ni.NetworkIP)) {
			t.Fatalf("%s primary IP %s", name, ni.NetworkIP)
		}
		if !strings.HasSuffix(in.MachineType, "/machineTypes/e2-medium") || len(in.Disks) != 1 {
			t.Errorf("%s did not inherit the template's machine type and disks: %q %d", name, in.MachineType, len(in.Disks))
		}
	}

	// One VM with a /27 for non-migratable containers and /32s for
	// migratable ones.
	must(t)(c.Instances.Insert(proj, zone, &compute.Instance{Name: "mixed", MachineType: "zones/" + zone + "/machineTypes/e2-small",
		NetworkInterfaces: nic(prim("/27"), prim("10.128.7.29"), prim("10.128.7.30/32"))}).Do())
	mixed, _ := c.Instances.Get(proj, zone, "mixed").Do()
	var got []string
	for _, a := range mixed.NetworkInterfaces[0].AliasIpRanges {
		got = append(got, a.IpCidrRange)
	}
	if fmt.Sprint(got) != "[10.128.0.32/27 10.128.7.29/32 10.128.7.30/32]" {
		t.Errorf("mixed aliases = %v", got)
	}

	// Conflicts come back as failed operations with GCE's code.
	op, err := c.Instances.Insert(proj, zone, &compute.Instance{Name: "clash", NetworkInterfaces: nic(prim("10.128.7.29"))}).Do()
	if err != nil || op.Error == nil || op.Error.Errors[0].Code != "IP_IN_USE_BY_ANOTHER_RESOURCE" ||
		op.Error.Errors[0].Message != "IP '10.128.7.29/32' is already being used by another resource." || op.HttpErrorStatusCode != 400 {
		t.Fatalf("conflict: op=%+v err=%v", op, err)
	}
	if _, err := c.Instances.Get(proj, zone, "clash").Do(); apiCode(err) != http.StatusNotFound {
		t.Errorf("failed insert left an instance behind: %v", err)
	}
	// Polling the failed operation returns it again (clients poll).
	op2, err := c.ZoneOperations.Get(proj, zone, op.Name).Do()
	if err != nil || op2.Error == nil || op2.OperationType != "insert" {
		t.Errorf("operation get: %+v %v", op2, err)
	}
	op3, err := c.ZoneOperations.Wait(proj, zone, op.Name).Do()
	if err != nil || op3.Status != "DONE" {
		t.Errorf("operation wait: %+v %v", op3, err)
	}
	// Exhaustion.
	op, err = c.Instances.Insert(proj, zone, &compute.Instance{Name: "big", NetworkInterfaces: nic(sec("/20"))}).Do()
	if err != nil || op.Error == nil || op.Error.Errors[0].Code != "IP_SPACE_EXHAUSTED" {
		t.Fatalf("exhaustion: op=%+v err=%v", op, err)
	}
	// Malformed requests are HTTP 400 with the field named.
	_, err = c.Instances.Insert(proj, zone, &compute.Instance{Name: "bad", NetworkInterfaces: nic(prim("10.128.7.5/24"))}).Do()
	if apiCode(err) != 400 || !strings.Contains(err.Error(), "networkInterfaces[0].aliasIpRanges[0].ipCidrRange") {
		t.Errorf("unaligned alias: %v", err)
	}

	// Move a /32 from "mixed" to vm0 (the seed's migratable container).
	ni := mixed.NetworkInterfaces[0]
	stale := ni.Fingerprint
	must(t)(c.Instances.UpdateNetworkInterface(proj, zone, "mixed", "nic0", &compute.NetworkInterface{
		Fingerprint: ni.Fingerprint, AliasIpRanges: []*compute.AliasIpRange{prim("10.128.0.32/27"), prim("10.128.7.30/32")}}).Do())
	_, err = c.Instances.UpdateNetworkInterface(proj, zone, "mixed", "nic0", &compute.NetworkInterface{Fingerprint: stale,
		AliasIpRanges: []*compute.AliasIpRange{}, ForceSendFields: []string{"AliasIpRanges"}}).Do()
	if apiCode(err) != http.StatusPreconditionFailed {
		t.Errorf("stale fingerprint: %v", err)
	}
	vm0, _ := c.Instances.Get(proj, zone, "vm0").Do()
	must(t)(c.Instances.UpdateNetworkInterface(proj, zone, "vm0", "nic0", &compute.NetworkInterface{
		Fingerprint:   vm0.NetworkInterfaces[0].Fingerprint,
		AliasIpRanges: append(vm0.NetworkInterfaces[0].AliasIpRanges, prim("10.128.7.29"))}).Do())
	vm0, _ = c.Instances.Get(proj, zone, "vm0").Do()
	if n := len(vm0.NetworkInterfaces[0].AliasIpRanges); n != 2 {
		t.Errorf("vm0 has %d aliases after the move", n)
	}
	// [] clears.
	mixed, _ = c.Instances.Get(proj, zone, "mixed").Do()
	must(t)(c.Instances.UpdateNetworkInterface(proj, zone, "mixed", "nic0", &compute.NetworkInterface{
		Fingerprint: mixed.NetworkInterfaces[0].Fingerprint, AliasIpRanges: []*compute.AliasIpRange{}, ForceSendFields: []string{"AliasIpRanges"}}).Do())
	mixed, _ = c.Instances.Get(proj, zone, "mixed").Do()
	if n := len(mixed.NetworkInterfaces[0].AliasIpRanges); n != 0 {
		t.Errorf("cleared NIC still has %d aliases", n)
	}

	// Secondary ranges on a live subnet.
	sn, _ = c.Subnetworks.Get(proj, region, "subnet-a").Do()
	withPods := append(sn.SecondaryIpRanges, &compute.SubnetworkSecondaryRange{RangeName: "pods", IpCidrRange: "172.20.0.0/16"})
	must(t)(c.Subnetworks.Patch(proj, region, "subnet-a", &compute.Subnetwork{Fingerprint: sn.Fingerprint, SecondaryIpRanges: withPods}).Do())
	_, err = c.Subnetworks.Patch(proj, region, "subnet-a", &compute.Subnetwork{Fingerprint: sn.Fingerprint, SecondaryIpRanges: withPods[:1]}).Do()
	if apiCode(err) != http.StatusPreconditionFailed {
		t.Errorf("stale subnet fingerprint: %v", err)
	}
	sn, _ = c.Subnetworks.Get(proj, region, "subnet-a").Do()
	_, err = c.Subnetworks.Patch(proj, region, "subnet-a", &compute.Subnetwork{Fingerprint: sn.Fingerprint,
		SecondaryIpRanges: []*compute.SubnetworkSecondaryRange{sn.SecondaryIpRanges[1], {RangeName: "svc", IpCidrRange: "172.21.0.0/20"}}}).Do()
	if apiCode(err) != 400 || !strings.Contains(err.Error(), "Cannot add and remove secondary IP ranges in the same request.") {
		t.Errorf("add+remove: %v", err)
	}
	_, err = c.Subnetworks.Patch(proj, region, "subnet-a", &compute.Subnetwork{Fingerprint: sn.Fingerprint,
		SecondaryIpRanges: []*compute.SubnetworkSecondaryRange{sn.SecondaryIpRanges[1]}}).Do()
	if apiCode(err) != 400 || !strings.Contains(err.Error(), "instances/vm") {
		t.Errorf("removing a range in use must name the user: %v", err)
	}
	// A range overlapping another subnet: GCE's exact message.
	must(t)(c.Subnetworks.Insert(proj, "us-west1", &compute.Subnetwork{Name: "subnet-01", Network: "global/networks/vpc", IpCidrRange: "192.168.64.0/24"}).Do())
	_, err = c.Subnetworks.Insert(proj, "us-west1", &compute.Subnetwork{Name: "subnet-02", Network: "global/networks/vpc", IpCidrRange: "10.0.0.0/24",
		SecondaryIpRanges: []*compute.SubnetworkSecondaryRange{{RangeName: "r", IpCidrRange: "192.168.64.0/24"}}}).Do()
	want := "Invalid value for field 'resource.secondaryIpRanges[0].ipCidrRange': '192.168.64.0/24'. Invalid IPCidrRange: 192.168.64.0/24 conflicts with existing subnetwork 'subnet-01' in region 'us-west1'."
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("overlap message: %v", err)
	}
	// expandIpCidrRange grows to a superset only.
	must(t)(c.Subnetworks.ExpandIpCidrRange(proj, "us-west1", "subnet-01", &compute.SubnetworksExpandIpCidrRangeRequest{IpCidrRange: "192.168.64.0/23"}).Do())
	_, err = c.Subnetworks.ExpandIpCidrRange(proj, "us-west1", "subnet-01", &compute.SubnetworksExpandIpCidrRangeRequest{IpCidrRange: "192.168.80.0/24"}).Do()
	if apiCode(err) != 400 {
		t.Errorf("expand to non-superset: %v", err)
	}

	// Deleting what is in use is refused.
	if _, err := c.Subnetworks.Delete(proj, region, "subnet-a").Do(); apiCode(err) != 400 {
		t.Errorf("delete subnet in use: %v", err)
	}
	if _, err := c.Networks.Delete(proj, "vpc").Do(); apiCode(err) != 400 {
		t.Errorf("delete network in use: %v", err)
	}
	// Delete releases: a freed explicit alias can be taken again at once.
	must(t)(c.Instances.Delete(proj, zone, "vm0").Do())
	must(t)(c.Instances.Insert(proj, zone, &compute.Instance{Name: "taker", NetworkInterfaces: nic(prim("10.128.7.29"))}).Do())

	// Aggregated list, as gcloud's `instances list` uses.
	agg, err := c.Instances.AggregatedList(proj).Do()
	if err != nil || len(agg.Items["zones/"+zone].Instances) != 4 {
		t.Errorf("aggregated list: %v %v", err, agg)
	}
}

func TestAutoModeAndPeering(t *testing.T) {
	s := StartServer(t, "")
	c := s.Compute(t)
	must(t)(c.Networks.Insert(proj, &compute.Network{Name: "auto", AutoCreateSubnetworks: true}).Do())
	n, err := c.Networks.Get(proj, "auto").Do()
	if err != nil || len(n.Subnetworks) < 20 {
		t.Fatalf("auto network: %v %+v", err, n)
	}
	sn, err := c.Subnetworks.Get(proj, "us-central1", "auto").Do()
	if err != nil || sn.IpCidrRange != "10.128.0.0/20" {
		t.Fatalf("auto subnet: %v %+v", err, sn)
	}
	_, err = c.Subnetworks.Insert(proj, "us-east1", &compute.Subnetwork{Name: "x", Network: "global/networks/auto", IpCidrRange: "10.200.0.0/24"}).Do()
	if err == nil || !strings.Contains(err.Error(), "Extended subnetworks in auto subnet mode networks cannot overlap with 10.128.0.0/9.") {
		t.Errorf("auto overlap: %v", err)
	}
	// Alias from an auto subnet's primary range, with gcloud's example.
	must(t)(c.Instances.Insert(proj, zone, &compute.Instance{Name: "my-vm", NetworkInterfaces: []*compute.NetworkInterface{{
		Network: "global/networks/auto", AliasIpRanges: []*compute.AliasIpRange{{IpCidrRange: "10.128.1.0/24"}}}}}).Do())

	// Peering refuses overlap, and guards new ranges while peered.
	must(t)(c.Networks.Insert(proj, &compute.Network{Name: "custom", ForceSendFields: []string{"AutoCreateSubnetworks"}}).Do())
	must(t)(c.Subnetworks.Insert(proj, "us-east1", &compute.Subnetwork{Name: "c1", Network: "global/networks/custom", IpCidrRange: "10.142.0.0/24"}).Do())
	_, err = c.Networks.AddPeering(proj, "custom", &compute.NetworksAddPeeringRequest{NetworkPeering: &compute.NetworkPeering{
		Name: "to-auto", Network: "projects/" + proj + "/global/networks/auto", ExchangeSubnetRoutes: true}}).Do()
	if apiCode(err) != 400 || !strings.Contains(err.Error(), "overlaps") {
		t.Errorf("overlapping peering: %v", err)
	}
	must(t)(c.Subnetworks.Delete(proj, "us-east1", "c1").Do())
	must(t)(c.Subnetworks.Insert(proj, "us-east1", &compute.Subnetwork{Name: "c1", Network: "global/networks/custom", IpCidrRange: "192.168.0.0/24"}).Do())
	must(t)(c.Networks.AddPeering(proj, "custom", &compute.NetworksAddPeeringRequest{NetworkPeering: &compute.NetworkPeering{
		Name: "to-auto", Network: "projects/" + proj + "/global/networks/auto", ExchangeSubnetRoutes: true}}).Do())
	must(t)(c.Networks.AddPeering(proj, "auto", &compute.NetworksAddPeeringRequest{Name: "to-custom", PeerNetwork: "global/networks/custom"}).Do())
	n, _ = c.Networks.Get(proj, "custom").Do()
	if len(n.Peerings) != 1 || n.Peerings[0].State != "ACTIVE" {
		t.Errorf("peering = %+v", n.Peerings)
	}
	_, err = c.Subnetworks.Insert(proj, "us-east1", &compute.Subnetwork{Name: "c2", Network: "global/networks/custom", IpCidrRange: "10.150.0.0/24"}).Do()
	if apiCode(err) != 400 || !strings.Contains(err.Error(), "peer network") {
		t.Errorf("overlap with peer: %v", err)
	}
	must(t)(c.Networks.RemovePeering(proj, "custom", &compute.NetworksRemovePeeringRequest{Name: "to-auto"}).Do())
}

func TestRequestIDIsIdempotent(t *testing.T) {
	s := StartServer(t, "")
	c := s.Compute(t)
	seedNetwork(t, c)
	in := &compute.Instance{Name: "once", NetworkInterfaces: nic(sec("/24"))}
	op1 := must(t)(c.Instances.Insert(proj, zone, in).RequestId("5f0c6e0e-8b6a-4c4e-9f61-2d8a4b1c9e01").Do())
	op2 := must(t)(c.Instances.Insert(proj, zone, in).RequestId("5f0c6e0e-8b6a-4c4e-9f61-2d8a4b1c9e01").Do())
	if op1.Name != op2.Name {
		t.Errorf("retry returned a new operation %s != %s", op2.Name, op1.Name)
	}
	// Without the request id the same insert is a second request.
	op3, err := c.Instances.Insert(proj, zone, in).Do()
	if apiCode(err) != http.StatusConflict {
		t.Errorf("second insert: %+v %v", op3, err)
	}
}

// Many concurrent clients never get the same address twice.
func TestConcurrentAllocationsNeverCollide(t *testing.T) {
	s := StartServer(t, "")
	c := s.Compute(t)
	seedNetwork(t, c)
	const clients, each = 32, 8
	var wg sync.WaitGroup
	errs := make(chan error, clients*each)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range each {
				op, err := c.Instances.Insert(proj, zone, &compute.Instance{Name: fmt.Sprintf("c%d-%d", i, j),
					NetworkInterfaces: nic(sec("/28"), prim("/32"), prim("/30"))}).Context(context.Background()).Do()
				if err := opErr(op, err); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	checkNoOverlaps(t, c, clients*each)
}

func checkNoOverlaps(t *testing.T, c *compute.Service, want int) {
	t.Helper()
	list, err := c.Instances.List(proj, zone).Do()
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != want {
		t.Fatalf("%d instances, want %d", len(list.Items), want)
	}
	var all []netip.Prefix
	for _, in := range list.Items {
		for _, ni := range in.NetworkInterfaces {
			all = append(all, netip.MustParsePrefix(ni.NetworkIP+"/32"))
			for _, a := range ni.AliasIpRanges {
				all = append(all, netip.MustParsePrefix(a.IpCidrRange))
			}
		}
	}
	for i := range all {
		for j := i + 1; j < len(all); j++ {
			if all[i].Overlaps(all[j]) {
				t.Fatalf("%s overlaps %s", all[i], all[j])
			}
		}
	}
}
