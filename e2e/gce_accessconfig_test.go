package e2e

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/aliyun/alibaba-cloud-sdk-go/services/vpc"
	compute "google.golang.org/api/compute/v1"
	"google.golang.org/api/googleapi"
)

// natOf returns nic0's access config of an instance (nil when none).
func natOf(t *testing.T, c *compute.Service, name string) *compute.AccessConfig {
	t.Helper()
	in, err := c.Instances.Get(proj, zone, name).Do()
	if err != nil {
		t.Fatal(err)
	}
	acs := in.NetworkInterfaces[0].AccessConfigs
	if len(acs) > 1 {
		t.Fatalf("%s has %d access configs", name, len(acs))
	}
	if len(acs) == 0 {
		return nil
	}
	return acs[0]
}

func withNAT(ac *compute.AccessConfig) []*compute.NetworkInterface {
	nis := nic()
	nis[0].AccessConfigs = []*compute.AccessConfig{ac}
	return nis
}

// wantAPIError checks an HTTP error: status and a fragment of the message.
func wantAPIError(t *testing.T, err error, status int, msg string) {
	t.Helper()
	var ge *googleapi.Error
	if !errors.As(err, &ge) || ge.Code != status || !strings.Contains(ge.Message, msg) {
		t.Fatalf("want HTTP %d %q, got %v", status, msg, err)
	}
}

func TestExternalIPsWithGoClient(t *testing.T) {
	s := StartServer(t, "", "--eip-pool", "198.51.100.0/29") // .1 to .6
	c := s.Compute(t)
	seedNetwork(t, c)
	pool := netip.MustParsePrefix("198.51.100.0/29")

	// gcloud's default: an ephemeral address.
	must(t)(c.Instances.Insert(proj, zone, &compute.Instance{Name: "vm1",
		NetworkInterfaces: withNAT(&compute.AccessConfig{Name: "External NAT", Type: "ONE_TO_ONE_NAT",
			SetPublicPtr: true, PublicPtrDomainName: "vm1.example.com."})}).Do())
	ac := natOf(t, c, "vm1")
	if ac == nil || !pool.Contains(netip.MustParseAddr(ac.NatIP)) || ac.Kind != "compute#accessConfig" || ac.Name != "External NAT" ||
		ac.Type != "ONE_TO_ONE_NAT" || ac.NetworkTier != "PREMIUM" || !ac.SetPublicPtr || ac.PublicPtrDomainName != "vm1.example.com." {
		t.Fatalf("vm1 access config = %+v", ac)
	}
	first := ac.NatIP
	// An explicit address for vm2 later: any pool address but vm1's
	// (which was picked at random).
	explicit := "198.51.100.6"
	if first == explicit {
		explicit = "198.51.100.5"
	}

	// An address in use: the operation fails as GCE's does.
	op, err := c.Instances.Insert(proj, zone, &compute.Instance{Name: "vm2",
		NetworkInterfaces: withNAT(&compute.AccessConfig{Name: "External NAT", NatIP: first})}).Do()
	if err != nil || op.Error == nil || op.Error.Errors[0].Code != "IP_IN_USE_BY_ANOTHER_RESOURCE" || op.HttpErrorStatusCode != 400 ||
		op.Error.Errors[0].Message != "IP '"+first+"' is already being used by another resource." {
		t.Fatalf("natIP in use: %v %+v", err, op)
	}
	if _, err := c.Instances.Get(proj, zone, "vm2").Do(); apiCode(err) != http.StatusNotFound {
		t.Fatalf("a refused insert left vm2: %v", err)
	}
	// Bad requests name the field.
	two := nic()
	two[0].AccessConfigs = []*compute.AccessConfig{{Name: "a"}, {Name: "b"}}
	_, err = c.Instances.Insert(proj, zone, &compute.Instance{Name: "vm2", NetworkInterfaces: two}).Do()
	wantAPIError(t, err, 400, "At most one access config currently supported")
	_, err = c.Instances.Insert(proj, zone, &compute.Instance{Name: "vm2", NetworkInterfaces: withNAT(&compute.AccessConfig{NatIP: "my-address"})}).Do()
	wantAPIError(t, err, 400, "'resource.networkInterfaces[0].accessConfigs[0].natIP': 'my-address'")
	_, err = c.Instances.Insert(proj, zone, &compute.Instance{Name: "vm2", NetworkInterfaces: withNAT(&compute.AccessConfig{NatIP: "192.0.2.9"})}).Do()
	wantAPIError(t, err, 400, "not in any EIP pool of this server (198.51.100.0/29)")
	_, err = c.Instances.Insert(proj, zone, &compute.Instance{Name: "vm2", NetworkInterfaces: withNAT(&compute.AccessConfig{NetworkTier: "GOLD"})}).Do()
	wantAPIError(t, err, 400, "'resource.networkInterfaces[0].accessConfigs[0].networkTier': 'GOLD'")

	// addAccessConfig / deleteAccessConfig on a NIC without one.
	must(t)(c.Instances.Insert(proj, zone, &compute.Instance{Name: "vm2", NetworkInterfaces: nic()}).Do())
	if ac := natOf(t, c, "vm2"); ac != nil {
		t.Fatalf("vm2 has an access config it did not ask for: %+v", ac)
	}
	op = must(t)(c.Instances.AddAccessConfig(proj, zone, "vm2", "nic0",
		&compute.AccessConfig{Name: "nat", NatIP: explicit, NetworkTier: "STANDARD"}).Do())
	if op.OperationType != "addAccessConfig" || !strings.HasSuffix(op.Zone, "/zones/"+zone) || !strings.HasSuffix(op.TargetLink, "/instances/vm2") {
		t.Errorf("operation = %+v", op)
	}
	if ac := natOf(t, c, "vm2"); ac == nil || ac.NatIP != explicit || ac.Name != "nat" || ac.NetworkTier != "STANDARD" {
		t.Fatalf("vm2 after addAccessConfig: %+v", ac)
	}
	_, err = c.Instances.AddAccessConfig(proj, zone, "vm2", "nic0", &compute.AccessConfig{Name: "second"}).Do()
	wantAPIError(t, err, 400, "At most one access config currently supported")
	_, err = c.Instances.AddAccessConfig(proj, zone, "vm2", "nic5", &compute.AccessConfig{}).Do()
	wantAPIError(t, err, 400, "no network interface 'nic5'")
	_, err = c.Instances.DeleteAccessConfig(proj, zone, "vm2", "External NAT", "nic0").Do()
	wantAPIError(t, err, 400, "no access config named 'External NAT'")
	op = must(t)(c.Instances.DeleteAccessConfig(proj, zone, "vm2", "nat", "nic0").Do())
	if op.OperationType != "deleteAccessConfig" {
		t.Errorf("operation type %q", op.OperationType)
	}
	if ac := natOf(t, c, "vm2"); ac != nil {
		t.Fatalf("vm2 after deleteAccessConfig: %+v", ac)
	}
	resp, err := http.Post(s.URL()+"/compute/v1/projects/"+proj+"/zones/"+zone+"/instances/vm2/deleteAccessConfig?networkInterface=nic0", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("deleteAccessConfig without accessConfig: HTTP %d", resp.StatusCode)
	}

	// Stop gives the ephemeral address back and keeps the access config;
	// start takes a new one.
	must(t)(c.Instances.Stop(proj, zone, "vm1").Do())
	if ac := natOf(t, c, "vm1"); ac == nil || ac.NatIP != "" || ac.Name != "External NAT" {
		t.Fatalf("stopped vm1: %+v", ac)
	}
	must(t)(c.Instances.Start(proj, zone, "vm1").Do())
	second := natOf(t, c, "vm1").NatIP
	if second == "" || second == first || !pool.Contains(netip.MustParseAddr(second)) {
		t.Fatalf("restarted vm1 has %q (had %s)", second, first)
	}

	// Deleting the instance releases its address: it can be named again.
	must(t)(c.Instances.Delete(proj, zone, "vm1").Do())
	must(t)(c.Instances.Insert(proj, zone, &compute.Instance{Name: "vm3", NetworkInterfaces: withNAT(&compute.AccessConfig{NatIP: second})}).Do())
	if ac := natOf(t, c, "vm3"); ac == nil || ac.NatIP != second {
		t.Fatalf("vm3 = %+v, want natIP %s", ac, second)
	}
}

// Without --eip-pool, external IPs come from the RFC 5737 ranges, and a
// template's access config applies to instances made from it.
func TestExternalIPDefaultPoolAndTemplate(t *testing.T) {
	s := StartServer(t, "")
	c := s.Compute(t)
	seedNetwork(t, c)
	must(t)(c.InstanceTemplates.Insert(proj, &compute.InstanceTemplate{Name: "with-ip", Properties: &compute.InstanceProperties{
		NetworkInterfaces: withNAT(&compute.AccessConfig{Name: "external-nat", Type: "ONE_TO_ONE_NAT"})}}).Do())
	must(t)(c.Instances.Insert(proj, zone, &compute.Instance{Name: "vm1"}).SourceInstanceTemplate("global/instanceTemplates/with-ip").Do())
	ac := natOf(t, c, "vm1")
	if ac == nil || ac.Name != "external-nat" {
		t.Fatalf("instance from template: %+v", ac)
	}
	a := netip.MustParseAddr(ac.NatIP)
	in := false
	for _, p := range []string{"192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"} {
		in = in || netip.MustParsePrefix(p).Contains(a)
	}
	if !in {
		t.Fatalf("natIP %s is outside the default pools", a)
	}
}

// GCE external IPs and Alibaba EIPs come from one pool and never share an
// address; an Available EIP named as natIP is used like a GCE static
// address.
func TestExternalIPsAndAlibabaEIPs(t *testing.T) {
	a := aliClientsIn(t, StartServer(t, "", aliArgs()...), "us-central1", akID, akSecret)
	c := a.s.Compute(t)
	ctx := context.Background()
	const p = "default" // the project the Alibaba key acts for
	must(t)(c.Networks.Insert(p, &compute.Network{Name: "vpc", ForceSendFields: []string{"AutoCreateSubnetworks"}}).Context(ctx).Do())
	must(t)(c.Subnetworks.Insert(p, region, &compute.Subnetwork{Name: "subnet-a", Network: "global/networks/vpc", IpCidrRange: "10.128.0.0/16"}).Context(ctx).Do())
	nis := func(natIP string) []*compute.NetworkInterface {
		return []*compute.NetworkInterface{{Subnetwork: "regions/" + region + "/subnetworks/subnet-a",
			AccessConfigs: []*compute.AccessConfig{{Name: "External NAT", Type: "ONE_TO_ONE_NAT", NatIP: natIP}}}}
	}
	get := func(name string) *compute.AccessConfig {
		in, err := c.Instances.Get(p, zone, name).Context(ctx).Do()
		if err != nil {
			t.Fatal(err)
		}
		return in.NetworkInterfaces[0].AccessConfigs[0]
	}

	// An ephemeral GCE address cannot be allocated as an EIP.
	must(t)(c.Instances.Insert(p, zone, &compute.Instance{Name: "vm1", NetworkInterfaces: nis("")}).Context(ctx).Do())
	eph := get("vm1").NatIP
	ar := httpReq(vpc.CreateAllocateEipAddressRequest())
	ar.IpAddress = eph
	_, err := a.vpc.AllocateEipAddress(ar)
	wantAliCode(t, err, "InvalidIpAddress.AlreadyAllocated", 400)

	// An EIP's address cannot be taken by GCE while the EIP exists in
	// another tenant; in this tenant an Available one is associated.
	other := aliClientsIn(t, a.s, "us-central1", ak2ID, ak2Secret)
	theirs := mustA(other.vpc.AllocateEipAddress(httpReq(vpc.CreateAllocateEipAddressRequest())))
	op, err := c.Instances.Insert(p, zone, &compute.Instance{Name: "vm2", NetworkInterfaces: nis(theirs.EipAddress)}).Context(ctx).Do()
	if err != nil || op.Error == nil || op.Error.Errors[0].Code != "IP_IN_USE_BY_ANOTHER_RESOURCE" {
		t.Fatalf("GCE took another tenant's EIP: %v %+v", err, op)
	}
	mine := mustA(a.vpc.AllocateEipAddress(httpReq(vpc.CreateAllocateEipAddressRequest())))
	if mine.EipAddress == eph {
		t.Fatalf("the EIP got vm1's address %s", eph)
	}
	must(t)(c.Instances.Insert(p, zone, &compute.Instance{Name: "vm2", NetworkInterfaces: nis(mine.EipAddress)}).Context(ctx).Do())
	if got := get("vm2").NatIP; got != mine.EipAddress {
		t.Fatalf("vm2 natIP %s, want the EIP %s", got, mine.EipAddress)
	}
	status := func() string {
		dr := httpReq(vpc.CreateDescribeEipAddressesRequest())
		dr.AllocationId = mine.AllocationId
		es := mustA(a.vpc.DescribeEipAddresses(dr)).EipAddresses.EipAddress
		if len(es) != 1 {
			t.Fatalf("DescribeEipAddresses %s: %d results", mine.AllocationId, len(es))
		}
		return es[0].Status + " " + es[0].InstanceId
	}
	if s := status(); s != "InUse vm2" {
		t.Fatalf("EIP used by vm2 is %q", s)
	}
	must(t)(c.Instances.Delete(p, zone, "vm2").Context(ctx).Do())
	if s := status(); s != "Available " {
		t.Fatalf("EIP of a deleted instance is %q", s)
	}
}
