package e2e

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	sdkerr "github.com/aliyun/alibaba-cloud-sdk-go/sdk/errors"
	"github.com/aliyun/alibaba-cloud-sdk-go/sdk/requests"
	"github.com/aliyun/alibaba-cloud-sdk-go/services/ecs"
	"github.com/aliyun/alibaba-cloud-sdk-go/services/vpc"
	compute "google.golang.org/api/compute/v1"
)

// The Alibaba dialect is driven with the official Go SDK
// (github.com/aliyun/alibaba-cloud-sdk-go, services/ecs and services/vpc)
// against the real binary: client.Domain points at the server and every
// request uses Scheme "http".

const (
	akID     = "LTAI5tAliasnetTest"
	akSecret = "aliasnet-secret-1"
	// A second tenant: its own project.
	ak2ID     = "LTAI5tOtherTenant"
	ak2Secret = "other-secret"
	aliRegion = "cn-hangzhou"
	zoneH     = "cn-hangzhou-h"
	zoneI     = "cn-hangzhou-i"
)

// ali is a server with the Alibaba dialect enabled and SDK clients for it.
type ali struct {
	t   testing.TB
	s   *Server
	ecs *ecs.Client
	vpc *vpc.Client
}

func aliArgs() []string {
	return []string{"--access-key", akID + ":" + akSecret, "--access-key", ak2ID + ":" + ak2Secret + ":tenant2",
		"--eip-pool", "120.55.3.0/24", "--eip-pool", "203.0.113.0/28"}
}

func startAli(t testing.TB, extra ...string) *ali {
	t.Helper()
	s := StartServer(t, "", append(aliArgs(), extra...)...)
	return aliClients(t, s, akID, akSecret)
}

func aliClients(t testing.TB, s *Server, id, secret string) *ali {
	return aliClientsIn(t, s, aliRegion, id, secret)
}

func aliClientsIn(t testing.TB, s *Server, region, id, secret string) *ali {
	t.Helper()
	ec, err := ecs.NewClientWithAccessKey(region, id, secret)
	if err != nil {
		t.Fatal(err)
	}
	ec.Domain = s.Addr
	vc, err := vpc.NewClientWithAccessKey(region, id, secret)
	if err != nil {
		t.Fatal(err)
	}
	vc.Domain = s.Addr
	return &ali{t: t, s: s, ecs: ec, vpc: vc}
}

// http sets the scheme of an SDK request.
func httpReq[R interface{ SetScheme(string) }](r R) R { r.SetScheme("http"); return r }

// mustA returns v or fails the test (by panicking: Go cannot pass a
// multi-value call along with t).
func mustA[T any](v T, err error) T {
	if err != nil {
		panic(fmt.Sprintf("unexpected error: %v", err))
	}
	return v
}

// wantCode checks that err is a server error with that code (and HTTP
// status when status != 0).
func wantAliCode(t testing.TB, err error, code string, status int) *sdkerr.ServerError {
	t.Helper()
	var se *sdkerr.ServerError
	if !errors.As(err, &se) {
		t.Fatalf("want server error %s, got %v", code, err)
	}
	if se.ErrorCode() != code || (status != 0 && se.HttpStatus() != status) {
		t.Fatalf("want %s (HTTP %d), got %s (HTTP %d): %s", code, status, se.ErrorCode(), se.HttpStatus(), se.Message())
	}
	if se.RequestId() == "" || se.Message() == "" {
		t.Fatalf("error envelope lacks RequestId or Message: %v", se)
	}
	return se
}

func (a *ali) createVpc(cidr string) string {
	a.t.Helper()
	r := httpReq(vpc.CreateCreateVpcRequest())
	r.CidrBlock, r.VpcName = cidr, "vpc-test"
	return mustA(a.vpc.CreateVpc(r)).VpcId
}

func (a *ali) createVSwitch(vpcID, zone, cidr string) string {
	a.t.Helper()
	r := httpReq(vpc.CreateCreateVSwitchRequest())
	r.VpcId, r.ZoneId, r.CidrBlock, r.VSwitchName = vpcID, zone, cidr, "vsw-"+zone
	return mustA(a.vpc.CreateVSwitch(r)).VSwitchId
}

func (a *ali) run(vsw, itype, ip string) string {
	a.t.Helper()
	r := httpReq(ecs.CreateRunInstancesRequest())
	r.VSwitchId, r.InstanceType, r.PrivateIpAddress, r.InstanceName, r.ImageId = vsw, itype, ip, "vm", "aliyun_3_x64"
	resp := mustA(a.ecs.RunInstances(r))
	if len(resp.InstanceIdSets.InstanceIdSet) != 1 {
		a.t.Fatalf("RunInstances: %+v", resp)
	}
	return resp.InstanceIdSets.InstanceIdSet[0]
}

func (a *ali) createENI(vsw, primary string, secondary ...string) (*ecs.CreateNetworkInterfaceResponse, error) {
	r := httpReq(ecs.CreateCreateNetworkInterfaceRequest())
	r.VSwitchId, r.PrimaryIpAddress, r.SecurityGroupId = vsw, primary, "sg-aliasnet"
	if len(secondary) > 0 {
		r.PrivateIpAddress = &secondary
	}
	return a.ecs.CreateNetworkInterface(r)
}

func (a *ali) eni(vsw, primary string, secondary ...string) string {
	a.t.Helper()
	return mustA(a.createENI(vsw, primary, secondary...)).NetworkInterfaceId
}

func (a *ali) assign(eni string, count int, ips ...string) ([]string, error) {
	r := httpReq(ecs.CreateAssignPrivateIpAddressesRequest())
	r.NetworkInterfaceId = eni
	if count > 0 {
		r.SecondaryPrivateIpAddressCount = requests.NewInteger(count)
	}
	if len(ips) > 0 {
		r.PrivateIpAddress = &ips
	}
	resp, err := a.ecs.AssignPrivateIpAddresses(r)
	if err != nil {
		return nil, err
	}
	if resp.AssignedPrivateIpAddressesSet.NetworkInterfaceId != eni {
		a.t.Fatalf("assign answered for %q", resp.AssignedPrivateIpAddressesSet.NetworkInterfaceId)
	}
	return resp.AssignedPrivateIpAddressesSet.PrivateIpSet.PrivateIpAddress, nil
}

func (a *ali) unassign(eni string, ips ...string) error {
	r := httpReq(ecs.CreateUnassignPrivateIpAddressesRequest())
	r.NetworkInterfaceId, r.PrivateIpAddress = eni, &ips
	_, err := a.ecs.UnassignPrivateIpAddresses(r)
	return err
}

func (a *ali) attach(eni, inst string) error {
	r := httpReq(ecs.CreateAttachNetworkInterfaceRequest())
	r.NetworkInterfaceId, r.InstanceId = eni, inst
	_, err := a.ecs.AttachNetworkInterface(r)
	return err
}

func (a *ali) detach(eni, inst string) error {
	r := httpReq(ecs.CreateDetachNetworkInterfaceRequest())
	r.NetworkInterfaceId, r.InstanceId = eni, inst
	_, err := a.ecs.DetachNetworkInterface(r)
	return err
}

func (a *ali) describeENI(id string) ecs.NetworkInterfaceSet {
	a.t.Helper()
	r := httpReq(ecs.CreateDescribeNetworkInterfacesRequest())
	r.NetworkInterfaceId = &[]string{id}
	resp := mustA(a.ecs.DescribeNetworkInterfaces(r))
	if len(resp.NetworkInterfaceSets.NetworkInterfaceSet) != 1 {
		a.t.Fatalf("DescribeNetworkInterfaces %s: %+v", id, resp)
	}
	return resp.NetworkInterfaceSets.NetworkInterfaceSet[0]
}

func (a *ali) instance(id string) ecs.Instance {
	a.t.Helper()
	r := httpReq(ecs.CreateDescribeInstancesRequest())
	r.InstanceIds = `["` + id + `"]`
	resp := mustA(a.ecs.DescribeInstances(r))
	if len(resp.Instances.Instance) != 1 {
		a.t.Fatalf("DescribeInstances %s: %+v", id, resp)
	}
	return resp.Instances.Instance[0]
}

// ips lists an ENI's private IPv4 addresses, primary first.
func ips(set ecs.NetworkInterfaceSet) []string {
	var out []string
	for _, p := range set.PrivateIpSets.PrivateIpSet {
		out = append(out, p.PrivateIpAddress)
	}
	return out
}

func sorted(s []string) []string { s = slices.Clone(s); slices.Sort(s); return s }

// primaryENI is the ID of an instance's primary ENI.
func primaryENI(in ecs.Instance) string {
	for _, n := range in.NetworkInterfaces.NetworkInterface {
		if n.Type == "Primary" {
			return n.NetworkInterfaceId
		}
	}
	return ""
}

// Seed 003: an ENI with primary 192.168.1.201 and secondaries .202, .203,
// attached, failed over to another instance, and one address moved.
func TestAlibabaSeed003(t *testing.T) {
	a := startAli(t)
	vpcID := a.createVpc("192.168.0.0/16")
	vsw := a.createVSwitch(vpcID, zoneH, "192.168.1.0/24")
	instA := a.run(vsw, "ecs.g7.large", "192.168.1.10")
	instB := a.run(vsw, "ecs.g7.large", "")

	eni := a.eni(vsw, "192.168.1.201")
	got := mustA(a.assign(eni, 0, "192.168.1.202", "192.168.1.203"))
	if !slices.Equal(got, []string{"192.168.1.202", "192.168.1.203"}) {
		t.Fatalf("assigned %v", got)
	}
	set := a.describeENI(eni)
	if set.Status != "Available" || set.Type != "Secondary" || set.PrivateIpAddress != "192.168.1.201" || set.VpcId != vpcID ||
		set.ZoneId != zoneH || !slices.Equal(ips(set), []string{"192.168.1.201", "192.168.1.202", "192.168.1.203"}) ||
		!set.PrivateIpSets.PrivateIpSet[0].Primary || set.PrivateIpSets.PrivateIpSet[1].Primary {
		t.Fatalf("ENI: %+v", set)
	}
	if err := a.attach(eni, instA); err != nil {
		t.Fatal(err)
	}
	set = a.describeENI(eni)
	if set.Status != "InUse" || set.InstanceId != instA || set.Attachment.InstanceId != instA || set.Attachment.DeviceIndex != 1 {
		t.Fatalf("attached ENI: %+v", set)
	}
	in := a.instance(instA)
	if len(in.NetworkInterfaces.NetworkInterface) != 2 || in.VpcAttributes.PrivateIpAddress.IpAddress[0] != "192.168.1.10" {
		t.Fatalf("instance A: %+v", in.NetworkInterfaces)
	}
	// Instance A fails: the ENI moves to B with all its addresses.
	if err := a.detach(eni, instA); err != nil {
		t.Fatal(err)
	}
	if err := a.attach(eni, instB); err != nil {
		t.Fatal(err)
	}
	set = a.describeENI(eni)
	if set.InstanceId != instB || !slices.Equal(ips(set), []string{"192.168.1.201", "192.168.1.202", "192.168.1.203"}) {
		t.Fatalf("after failover: %+v", set)
	}
	inB := a.instance(instB)
	var onB []string
	for _, n := range inB.NetworkInterfaces.NetworkInterface {
		for _, p := range n.PrivateIpSets.PrivateIpSet {
			onB = append(onB, p.PrivateIpAddress)
		}
	}
	for _, want := range []string{"192.168.1.201", "192.168.1.202", "192.168.1.203"} {
		if !slices.Contains(onB, want) {
			t.Fatalf("instance B lacks %s: %v", want, onB)
		}
	}
	// One address fails over in two calls: unassign, then assign elsewhere.
	primA := primaryENI(a.instance(instA))
	_, err := a.assign(primA, 0, "192.168.1.203")
	wantAliCode(t, err, "InvalidPrivateIpAddress.Duplicated", 400)
	if err := a.unassign(eni, "192.168.1.203"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.assign(primA, 0, "192.168.1.203"); err != nil {
		t.Fatal(err)
	}
	if got := ips(a.describeENI(primA)); !slices.Equal(got, []string{"192.168.1.10", "192.168.1.203"}) {
		t.Fatalf("instance A's primary ENI: %v", got)
	}
	if got := ips(a.describeENI(eni)); !slices.Equal(got, []string{"192.168.1.201", "192.168.1.202"}) {
		t.Fatalf("ENI after the move: %v", got)
	}
}

// Seed 004: expose an EIP on a NIC through a VPC secondary block.
func TestAlibabaSeed004(t *testing.T) {
	a := startAli(t)
	vpcID := a.createVpc("10.0.0.0/8")
	vsw1 := a.createVSwitch(vpcID, zoneH, "10.0.0.0/24")
	inst := a.run(vsw1, "ecs.g7.large", "10.0.0.202")

	ar := httpReq(vpc.CreateAllocateEipAddressRequest())
	ar.IpAddress = "120.55.3.106"
	eip := mustA(a.vpc.AllocateEipAddress(ar))
	if eip.EipAddress != "120.55.3.106" || !strings.HasPrefix(eip.AllocationId, "eip-") {
		t.Fatalf("AllocateEipAddress: %+v", eip)
	}
	// Step 1: the EIP's /24 as a secondary block.
	cr := httpReq(vpc.CreateAssociateVpcCidrBlockRequest())
	cr.VpcId, cr.SecondaryCidrBlock = vpcID, "120.55.3.0/24"
	mustA(a.vpc.AssociateVpcCidrBlock(cr))
	// Step 2: vSwitch 2 in it, in the instance's zone.
	vsw2 := a.createVSwitch(vpcID, zoneH, "120.55.3.0/25")
	// Step 3: a secondary ENI whose primary address is the EIP.
	eni := a.eni(vsw2, "120.55.3.106")
	// Step 4: the EIP associated with the ENI in NAT mode.
	as := httpReq(vpc.CreateAssociateEipAddressRequest())
	as.AllocationId, as.InstanceType, as.InstanceId, as.Mode = eip.AllocationId, "NetworkInterface", eni, "NAT"
	_, err := a.vpc.AssociateEipAddress(as)
	wantAliCode(t, err, "MissingParameter", 400) // PrivateIpAddress is required for an ENI
	as.PrivateIpAddress = "120.55.3.106"
	mustA(a.vpc.AssociateEipAddress(as))
	// Step 5: the ENI attached to the instance.
	if err := a.attach(eni, inst); err != nil {
		t.Fatal(err)
	}
	set := a.describeENI(eni)
	if set.PrivateIpAddress != "120.55.3.106" || set.Status != "InUse" || set.InstanceId != inst ||
		set.PrivateIpSets.PrivateIpSet[0].AssociatedPublicIp.PublicIpAddress != "120.55.3.106" ||
		set.AssociatedPublicIp.AllocationId != eip.AllocationId {
		t.Fatalf("ENI: %+v", set)
	}
	in := a.instance(inst)
	found := false
	for _, n := range in.NetworkInterfaces.NetworkInterface {
		if n.NetworkInterfaceId == eni && n.PrimaryIpAddress == "120.55.3.106" && n.PrivateIpSets.PrivateIpSet[0].PrivateIpAddress == "120.55.3.106" {
			found = true
		}
	}
	if !found {
		t.Fatalf("the instance does not show the EIP as a private address of %s: %+v", eni, in.NetworkInterfaces)
	}
	dr := httpReq(vpc.CreateDescribeEipAddressesRequest())
	dr.AllocationId = eip.AllocationId
	eips := mustA(a.vpc.DescribeEipAddresses(dr)).EipAddresses.EipAddress
	if len(eips) != 1 || eips[0].Status != "InUse" || eips[0].InstanceId != eni || eips[0].InstanceType != "NetworkInterface" ||
		eips[0].PrivateIpAddress != "120.55.3.106" || eips[0].Mode != "NAT" || eips[0].VpcId != vpcID {
		t.Fatalf("DescribeEipAddresses: %+v", eips)
	}
	vr := httpReq(vpc.CreateDescribeVpcsRequest())
	vr.VpcId = vpcID
	vpcs := mustA(a.vpc.DescribeVpcs(vr)).Vpcs.Vpc
	if len(vpcs) != 1 || vpcs[0].CidrBlock != "10.0.0.0/8" || !slices.Equal(vpcs[0].SecondaryCidrBlocks.SecondaryCidrBlock, []string{"120.55.3.0/24"}) ||
		len(vpcs[0].VSwitchIds.VSwitchId) != 2 {
		t.Fatalf("DescribeVpcs: %+v", vpcs)
	}
	// Releasing needs unassociating first; the block cannot go while vSwitch 2 uses it.
	rr := httpReq(vpc.CreateReleaseEipAddressRequest())
	rr.AllocationId = eip.AllocationId
	_, err = a.vpc.ReleaseEipAddress(rr)
	wantAliCode(t, err, "IncorrectEipStatus", 400)
	ur := httpReq(vpc.CreateUnassociateVpcCidrBlockRequest())
	ur.VpcId, ur.SecondaryCidrBlock = vpcID, "120.55.3.0/24"
	_, err = a.vpc.UnassociateVpcCidrBlock(ur)
	wantAliCode(t, err, "DependencyViolation.VSwitch", 400)
	un := httpReq(vpc.CreateUnassociateEipAddressRequest())
	un.AllocationId, un.InstanceId, un.InstanceType = eip.AllocationId, eni, "NetworkInterface"
	mustA(a.vpc.UnassociateEipAddress(un))
	mustA(a.vpc.ReleaseEipAddress(rr))
	if err := a.detach(eni, inst); err != nil {
		t.Fatal(err)
	}
	del := httpReq(ecs.CreateDeleteNetworkInterfaceRequest())
	del.NetworkInterfaceId = eni
	mustA(a.ecs.DeleteNetworkInterface(del))
	dv := httpReq(vpc.CreateDeleteVSwitchRequest())
	dv.VSwitchId = vsw2
	mustA(a.vpc.DeleteVSwitch(dv))
	mustA(a.vpc.UnassociateVpcCidrBlock(ur))

	// An EIP associated with the instance itself NATs to its primary
	// address; GCE shows it as the NIC's accessConfig natIP.
	eip2 := mustA(a.vpc.AllocateEipAddress(httpReq(vpc.CreateAllocateEipAddressRequest())))
	as2 := httpReq(vpc.CreateAssociateEipAddressRequest())
	as2.AllocationId, as2.InstanceId = eip2.AllocationId, inst
	mustA(a.vpc.AssociateEipAddress(as2))
	if in := a.instance(inst); in.EipAddress.IpAddress != eip2.EipAddress || in.EipAddress.AllocationId != eip2.AllocationId {
		t.Fatalf("DescribeInstances EipAddress: %+v", in.EipAddress)
	}
	gi, err := a.s.Compute(t).Instances.Get("default", zoneH, inst).Do()
	if err != nil {
		t.Fatal(err)
	}
	if ac := gi.NetworkInterfaces[0].AccessConfigs; len(ac) != 1 || ac[0].NatIP != eip2.EipAddress {
		t.Fatalf("GCE accessConfigs: %+v", ac)
	}
}

func TestAlibabaQuotasAndStates(t *testing.T) {
	a := startAli(t)
	vpcID := a.createVpc("192.168.0.0/16")
	vsw := a.createVSwitch(vpcID, zoneH, "192.168.1.0/24")
	vswI := a.createVSwitch(vpcID, zoneI, "192.168.2.0/24")
	inst := a.run(vsw, "ecs.g7.large", "")

	// Available ENI: the 10th secondary address is accepted, the 11th refused.
	eni := a.eni(vsw, "")
	mustA(a.assign(eni, 9))
	if _, err := a.assign(eni, 0, "192.168.1.100"); err != nil {
		t.Fatal("10th secondary IP:", err)
	}
	_, err := a.assign(eni, 1)
	wantAliCode(t, err, "MaxEniPrivateIpsCountExceeded", 403)
	_, err = a.assign(eni, 0, "192.168.1.101")
	wantAliCode(t, err, "MaxEniPrivateIpsCountExceeded", 403)
	if n := len(ips(a.describeENI(eni))); n != 11 {
		t.Fatalf("ENI holds %d addresses, want 1+10", n)
	}
	// That ENI does not fit an ecs.g7.large (6 per ENI with the primary).
	wantAliCode(t, a.attach(eni, inst), "MaxEniPrivateIpsCountExceeded", 403)

	// InUse: the instance type's figure counts the primary address.
	prim := primaryENI(a.instance(inst))
	mustA(a.assign(prim, 5))
	_, err = a.assign(prim, 1)
	se := wantAliCode(t, err, "MaxEniPrivateIpsCountExceeded", 403)
	if !strings.Contains(se.Message(), "ecs.g7.large") {
		t.Errorf("message does not name the instance type: %s", se.Message())
	}
	// ENIs per instance: 3 on ecs.g7.large, the primary one included.
	e2, e3, e4 := a.eni(vsw, ""), a.eni(vsw, ""), a.eni(vsw, "")
	if err := a.attach(e2, inst); err != nil {
		t.Fatal(err)
	}
	if err := a.attach(e3, inst); err != nil {
		t.Fatal(err)
	}
	wantAliCode(t, a.attach(e4, inst), "EniPerInstanceLimitExceeded", 403)
	// Zone mismatch.
	wantAliCode(t, a.attach(a.eni(vswI, ""), inst), "InvalidOperation.AvailabilityZoneMismatch", 400)
	// States.
	wantAliCode(t, a.attach(e2, inst), "InvalidOperation.InvalidEniState", 400)
	wantAliCode(t, a.detach(e4, inst), "InvalidOperation.InvalidEniState", 400)
	wantAliCode(t, a.detach(prim, inst), "InvalidOperation.DetachPrimaryEniNotAllowed", 400)
	del := httpReq(ecs.CreateDeleteNetworkInterfaceRequest())
	del.NetworkInterfaceId = e2
	_, err = a.ecs.DeleteNetworkInterface(del)
	wantAliCode(t, err, "InvalidOperation.InvalidEniState", 400)
	// Addresses: outside the vSwitch, reserved, unknown ENI, not assigned.
	_, err = a.assign(e4, 0, "192.168.2.7")
	wantAliCode(t, err, "InvalidVSwitchId.IpInvalid", 400)
	_, err = a.assign(e4, 0, "192.168.1.255")
	wantAliCode(t, err, "InvalidVSwitchId.IpInvalid", 400)
	_, err = a.assign("eni-doesnotexist", 1)
	wantAliCode(t, err, "InvalidEniId.NotFound", 404)
	wantAliCode(t, a.unassign(e4, "192.168.1.77"), "InvalidIp.IpUnassigned", 400)
	_, err = a.assign(e4, 1, "192.168.1.50")
	wantAliCode(t, err, "InvalidParameter.Conflict", 400)

	// Stop/start, and the instance state rules.
	stop := httpReq(ecs.CreateStopInstanceRequest())
	stop.InstanceId = inst
	mustA(a.ecs.StopInstance(stop))
	if s := a.instance(inst).Status; s != "Stopped" {
		t.Fatalf("status %s after StopInstance", s)
	}
	_, err = a.ecs.StopInstance(stop)
	wantAliCode(t, err, "IncorrectInstanceStatus", 400)
	if err := a.detach(e3, inst); err != nil { // a Stopped instance takes and gives ENIs
		t.Fatal(err)
	}
	if err := a.attach(e4, inst); err != nil {
		t.Fatal(err)
	}
	start := httpReq(ecs.CreateStartInstanceRequest())
	start.InstanceId = inst
	mustA(a.ecs.StartInstance(start))
	// Deleting a running instance needs Force; its secondary ENIs survive.
	di := httpReq(ecs.CreateDeleteInstanceRequest())
	di.InstanceId = inst
	_, err = a.ecs.DeleteInstance(di)
	wantAliCode(t, err, "IncorrectInstanceStatus", 400)
	di.Force = requests.NewBoolean(true)
	mustA(a.ecs.DeleteInstance(di))
	if s := a.describeENI(e2); s.Status != "Available" || s.InstanceId != "" {
		t.Fatalf("ENI after its instance was deleted: %+v", s)
	}
	r := httpReq(ecs.CreateDescribeNetworkInterfacesRequest())
	r.NetworkInterfaceId = &[]string{prim}
	if n := mustA(a.ecs.DescribeNetworkInterfaces(r)).TotalCount; n != 0 {
		t.Fatalf("the primary ENI of a deleted instance still exists")
	}
	// CreateInstance makes a Stopped instance; an unknown type is refused.
	ci := httpReq(ecs.CreateCreateInstanceRequest())
	ci.VSwitchId, ci.InstanceType, ci.ZoneId = vsw, "ecs.g6.large", zoneH
	id := mustA(a.ecs.CreateInstance(ci)).InstanceId
	if s := a.instance(id).Status; s != "Stopped" {
		t.Fatalf("CreateInstance made a %s instance", s)
	}
	ci.InstanceType = "ecs.nope.large"
	_, err = a.ecs.CreateInstance(ci)
	wantAliCode(t, err, "InvalidInstanceType.ValueNotSupported", 400)
	ci.InstanceType, ci.ZoneId = "ecs.g6.large", zoneI
	_, err = a.ecs.CreateInstance(ci)
	wantAliCode(t, err, "InvalidOperation.AvailabilityZoneMismatch", 400)
}

func TestAlibabaVpcAndVSwitchRules(t *testing.T) {
	a := startAli(t)
	vpcID := a.createVpc("10.0.0.0/8")
	bad := func(block, code string) {
		t.Helper()
		r := httpReq(vpc.CreateAssociateVpcCidrBlockRequest())
		r.VpcId, r.SecondaryCidrBlock = vpcID, block
		_, err := a.vpc.AssociateVpcCidrBlock(r)
		wantAliCode(t, err, code, 400)
	}
	bad("10.1.0.0/16", "InvalidCidrBlock.Overlapped")
	bad("100.64.0.0/16", "InvalidCidrBlock.Malformed")
	bad("172.16.0.0/12", "InvalidCidrBlock.Malformed") // secondary blocks are /16 to /28
	bad("172.16.0.5/16", "InvalidCidrBlock.Malformed")
	r := httpReq(vpc.CreateAssociateVpcCidrBlockRequest())
	r.VpcId, r.SecondaryCidrBlock = vpcID, "172.16.0.0/16"
	mustA(a.vpc.AssociateVpcCidrBlock(r))
	bad("172.16.128.0/17", "InvalidCidrBlock.Overlapped")

	vsw := func(zone, cidr string) error {
		r := httpReq(vpc.CreateCreateVSwitchRequest())
		r.VpcId, r.ZoneId, r.CidrBlock = vpcID, zone, cidr
		_, err := a.vpc.CreateVSwitch(r)
		return err
	}
	if err := vsw(zoneH, "172.16.1.0/24"); err != nil {
		t.Fatal(err)
	}
	wantAliCode(t, vsw(zoneI, "172.16.1.128/25"), "InvalidCidrBlock.Overlapped", 400)
	wantAliCode(t, vsw(zoneI, "192.168.0.0/24"), "InvalidCidrBlock.NotInVpc", 400)
	wantAliCode(t, vsw("us-west1-a", "172.16.2.0/24"), "InvalidZoneId.NotFound", 404)
	wantAliCode(t, vsw(zoneI, "172.16.2.0/30"), "InvalidCidrBlock.Malformed", 400)

	dv := httpReq(vpc.CreateDescribeVSwitchesRequest())
	dv.VpcId = vpcID
	sws := mustA(a.vpc.DescribeVSwitches(dv)).VSwitches.VSwitch
	if len(sws) != 1 || sws[0].CidrBlock != "172.16.1.0/24" || sws[0].ZoneId != zoneH || sws[0].AvailableIpAddressCount != 252 {
		t.Fatalf("DescribeVSwitches: %+v", sws)
	}
	// A VPC with vSwitches cannot be deleted.
	del := httpReq(vpc.CreateDeleteVpcRequest())
	del.VpcId = vpcID
	_, err := a.vpc.DeleteVpc(del)
	wantAliCode(t, err, "DependencyViolation.VSwitch", 400)
	dsw := httpReq(vpc.CreateDeleteVSwitchRequest())
	dsw.VSwitchId = sws[0].VSwitchId
	mustA(a.vpc.DeleteVSwitch(dsw))
	mustA(a.vpc.DeleteVpc(del))
	_, err = a.vpc.DeleteVpc(del)
	wantAliCode(t, err, "InvalidVpcId.NotFound", 404)
}

func TestAlibabaIPv6PrefixesAndPaging(t *testing.T) {
	a := startAli(t)
	cr := httpReq(vpc.CreateCreateVpcRequest())
	cr.CidrBlock, cr.EnableIpv6 = "192.168.0.0/16", requests.NewBoolean(true)
	vpcID := mustA(a.vpc.CreateVpc(cr)).VpcId
	vr := httpReq(vpc.CreateDescribeVpcsRequest())
	vr.VpcId = vpcID
	v := mustA(a.vpc.DescribeVpcs(vr)).Vpcs.Vpc[0]
	vpc6 := netip.MustParsePrefix(v.Ipv6CidrBlock)
	if !v.EnabledIpv6 || vpc6.Bits() != 56 {
		t.Fatalf("VPC IPv6: %+v", v)
	}
	sr := httpReq(vpc.CreateCreateVSwitchRequest())
	sr.VpcId, sr.ZoneId, sr.CidrBlock, sr.Ipv6CidrBlock = vpcID, zoneH, "192.168.1.0/24", requests.NewInteger(7)
	vsw := mustA(a.vpc.CreateVSwitch(sr)).VSwitchId
	dv := httpReq(vpc.CreateDescribeVSwitchesRequest())
	dv.VSwitchId = vsw
	sw6 := netip.MustParsePrefix(mustA(a.vpc.DescribeVSwitches(dv)).VSwitches.VSwitch[0].Ipv6CidrBlock)
	if sw6.Bits() != 64 || !vpc6.Contains(sw6.Addr()) {
		t.Fatalf("vSwitch IPv6 %s not a /64 of %s", sw6, vpc6)
	}
	eni := a.eni(vsw, "")
	a6 := httpReq(ecs.CreateAssignIpv6AddressesRequest())
	a6.NetworkInterfaceId, a6.Ipv6AddressCount = eni, requests.NewInteger(2)
	got := mustA(a.ecs.AssignIpv6Addresses(a6)).Ipv6Sets.Ipv6Address
	if len(got) != 2 || !sw6.Contains(netip.MustParseAddr(got[0])) {
		t.Fatalf("AssignIpv6Addresses: %v", got)
	}
	if s := a.describeENI(eni); len(s.Ipv6Sets.Ipv6Set) != 2 {
		t.Fatalf("Ipv6Sets: %+v", s.Ipv6Sets)
	}
	u6 := httpReq(ecs.CreateUnassignIpv6AddressesRequest())
	u6.NetworkInterfaceId, u6.Ipv6Address = eni, &[]string{got[0]}
	mustA(a.ecs.UnassignIpv6Addresses(u6))
	// IPv4 /28 prefixes.
	ap := httpReq(ecs.CreateAssignPrivateIpAddressesRequest())
	ap.NetworkInterfaceId, ap.Ipv4PrefixCount = eni, requests.NewInteger(1)
	pfx := mustA(a.ecs.AssignPrivateIpAddresses(ap)).AssignedPrivateIpAddressesSet.Ipv4PrefixSet.Ipv4Prefixes
	if len(pfx) != 1 || !strings.HasSuffix(pfx[0], "/28") {
		t.Fatalf("Ipv4Prefixes: %v", pfx)
	}
	if s := a.describeENI(eni); len(s.Ipv4PrefixSets.Ipv4PrefixSet) != 1 || s.Ipv4PrefixSets.Ipv4PrefixSet[0].Ipv4Prefix != pfx[0] {
		t.Fatalf("Ipv4PrefixSets: %+v", s.Ipv4PrefixSets)
	}
	up := httpReq(ecs.CreateUnassignPrivateIpAddressesRequest())
	up.NetworkInterfaceId, up.Ipv4Prefix = eni, &pfx
	mustA(a.ecs.UnassignPrivateIpAddresses(up))

	// Paging: PageNumber/PageSize and NextToken/MaxResults, with filters.
	want := []string{eni}
	for range 6 {
		want = append(want, a.eni(vsw, ""))
	}
	slices.Sort(want)
	var byToken []string
	token := ""
	for {
		r := httpReq(ecs.CreateDescribeNetworkInterfacesRequest())
		r.VSwitchId, r.MaxResults, r.NextToken = vsw, requests.NewInteger(3), token
		resp := mustA(a.ecs.DescribeNetworkInterfaces(r))
		for _, s := range resp.NetworkInterfaceSets.NetworkInterfaceSet {
			byToken = append(byToken, s.NetworkInterfaceId)
		}
		if token = resp.NextToken; token == "" {
			break
		}
	}
	if !slices.Equal(byToken, want) {
		t.Fatalf("NextToken paging: %v, want %v", byToken, want)
	}
	r := httpReq(ecs.CreateDescribeNetworkInterfacesRequest())
	r.VpcId, r.Status, r.PageNumber, r.PageSize = vpcID, "Available", requests.NewInteger(2), requests.NewInteger(5)
	resp := mustA(a.ecs.DescribeNetworkInterfaces(r))
	if resp.TotalCount != 7 || resp.PageNumber != 2 || len(resp.NetworkInterfaceSets.NetworkInterfaceSet) != 2 {
		t.Fatalf("page 2: total %d, page %d, %d items", resp.TotalCount, resp.PageNumber, len(resp.NetworkInterfaceSets.NetworkInterfaceSet))
	}
	r.Status = "InUse"
	if n := mustA(a.ecs.DescribeNetworkInterfaces(r)).TotalCount; n != 0 {
		t.Fatalf("%d InUse ENIs", n)
	}
}

func TestAlibabaCrossDialect(t *testing.T) {
	// Region us-central1, whose zones GCE knows.
	a := aliClientsIn(t, StartServer(t, "", aliArgs()...), "us-central1", akID, akSecret)
	gce := a.s.Compute(t)
	ctx := context.Background()
	// A VPC and vSwitch made here are a GCE network and subnetwork.
	vpcID := a.createVpc("10.20.0.0/16")
	vsw := a.createVSwitch(vpcID, "us-central1-a", "10.20.1.0/24")
	sn, err := gce.Subnetworks.Get("default", "us-central1", vsw).Context(ctx).Do()
	if err != nil {
		t.Fatalf("the vSwitch is not a GCE subnetwork: %v", err)
	}
	if sn.IpCidrRange != "10.20.1.0/24" || !strings.HasSuffix(sn.Network, "/networks/"+vpcID) {
		t.Fatalf("GCE subnetwork: %+v", sn)
	}
	// An ENI's secondary addresses are alias /32s; an ENI is a NIC.
	inst := a.run(vsw, "ecs.g7.large", "10.20.1.10")
	prim := primaryENI(a.instance(inst))
	mustA(a.assign(prim, 0, "10.20.1.11"))
	gi, err := gce.Instances.Get("default", "us-central1-a", inst).Context(ctx).Do()
	if err != nil {
		t.Fatal(err)
	}
	if len(gi.NetworkInterfaces) != 1 || gi.NetworkInterfaces[0].NetworkIP != "10.20.1.10" ||
		len(gi.NetworkInterfaces[0].AliasIpRanges) != 1 || gi.NetworkInterfaces[0].AliasIpRanges[0].IpCidrRange != "10.20.1.11/32" {
		t.Fatalf("GCE view of the instance: %+v", gi.NetworkInterfaces[0])
	}
	// An address taken through GCE is refused here...
	op, err := gce.Instances.Insert("default", "us-central1-a", &compute.Instance{Name: "gce-vm", MachineType: "zones/us-central1-a/machineTypes/e2-small",
		NetworkInterfaces: []*compute.NetworkInterface{{Subnetwork: "regions/us-central1/subnetworks/" + vsw, NetworkIP: "10.20.1.20",
			AliasIpRanges: []*compute.AliasIpRange{{IpCidrRange: "10.20.1.21/32"}}}}}).Context(ctx).Do()
	if err != nil || op.Error != nil {
		t.Fatalf("GCE insert: %v %+v", err, op)
	}
	_, err = a.createENI(vsw, "10.20.1.20")
	se := wantAliCode(t, err, "InvalidPrivateIpAddress.Duplicated", 400)
	if !strings.Contains(se.Message(), "gce-vm") {
		t.Errorf("message does not name the GCE instance: %s", se.Message())
	}
	_, err = a.assign(prim, 0, "10.20.1.21")
	wantAliCode(t, err, "InvalidPrivateIpAddress.Duplicated", 400)
	// ...and one taken here is refused by GCE.
	op, err = gce.Instances.Insert("default", "us-central1-a", &compute.Instance{Name: "gce-vm2",
		NetworkInterfaces: []*compute.NetworkInterface{{Subnetwork: "regions/us-central1/subnetworks/" + vsw,
			AliasIpRanges: []*compute.AliasIpRange{{IpCidrRange: "10.20.1.11/32"}}}}}).Context(ctx).Do()
	if err == nil && (op.Error == nil || op.Error.Errors[0].Code != "IP_IN_USE_BY_ANOTHER_RESOURCE") {
		t.Fatalf("GCE took an address held by an ENI: %+v", op)
	}
	// The GCE instance's NIC shows up as an ENI of the vSwitch.
	r := httpReq(ecs.CreateDescribeNetworkInterfacesRequest())
	r.VSwitchId = vsw
	var seen []string
	for _, s := range mustA(a.ecs.DescribeNetworkInterfaces(r)).NetworkInterfaceSets.NetworkInterfaceSet {
		seen = append(seen, s.PrivateIpAddress)
	}
	if !slices.Contains(seen, "10.20.1.20") {
		t.Fatalf("the GCE NIC is not listed as an ENI: %v", seen)
	}
}

func TestAlibabaAuthAndErrors(t *testing.T) {
	a := startAli(t)
	vpcID := a.createVpc("192.168.0.0/16")
	vsw := a.createVSwitch(vpcID, zoneH, "192.168.1.0/24")
	eni := a.eni(vsw, "")

	// Wrong secret, unknown key.
	bad := aliClients(t, a.s, akID, "wrong-secret")
	_, err := bad.vpc.DescribeVpcs(httpReq(vpc.CreateDescribeVpcsRequest()))
	se := wantAliCode(t, err, "SignatureDoesNotMatch", 400)
	if !strings.Contains(se.Message(), "server string to sign is:POST&%2F&") {
		t.Errorf("SignatureDoesNotMatch does not show the string to sign: %s", se.Message())
	}
	unknown := aliClients(t, a.s, "LTAI-nobody", "x")
	_, err = unknown.ecs.DescribeNetworkInterfaces(httpReq(ecs.CreateDescribeNetworkInterfacesRequest()))
	wantAliCode(t, err, "InvalidAccessKeyId.NotFound", 404)
	// Missing parameters.
	_, err = a.ecs.CreateNetworkInterface(httpReq(ecs.CreateCreateNetworkInterfaceRequest()))
	se = wantAliCode(t, err, "MissingParameter", 400)
	if !strings.Contains(se.Message(), "VSwitchId") {
		t.Errorf("MissingParameter does not name VSwitchId: %s", se.Message())
	}
	cr := httpReq(ecs.CreateCreateNetworkInterfaceRequest())
	cr.VSwitchId = vsw
	_, err = a.ecs.CreateNetworkInterface(cr)
	wantAliCode(t, err, "MissingParameter", 400) // a security group
	cr.SecurityGroupIds = &[]string{"sg-1", "sg-2", "sg-3", "sg-4", "sg-5", "sg-6"}
	_, err = a.ecs.CreateNetworkInterface(cr)
	wantAliCode(t, err, "InvalidParameter.SecurityGroupIds", 400)
	_, err = a.assign(eni, 0, "not-an-ip")
	wantAliCode(t, err, "InvalidIpAddress.Malformed", 400)

	// Another project's resources do not exist for this key.
	other := aliClients(t, a.s, ak2ID, ak2Secret)
	_, err = other.assign(eni, 1)
	wantAliCode(t, err, "InvalidEniId.NotFound", 404)
	dv := httpReq(vpc.CreateDescribeVpcsRequest())
	if n := mustA(other.vpc.DescribeVpcs(dv)).TotalCount; n != 0 {
		t.Fatalf("tenant2 sees %d VPCs", n)
	}
	// Tenants' address spaces are separate: the same CIDR is fine there.
	ovpc := other.createVpc("192.168.0.0/16")
	ovsw := other.createVSwitch(ovpc, zoneH, "192.168.1.0/24")
	other.eni(ovsw, a.describeENI(eni).PrivateIpAddress)

	// Raw HTTP: unsigned, replayed, stale, unknown action, GET.
	resp, err := http.Post(a.s.URL()+"/?Action=DescribeVpcs&Version=2016-04-28&RegionId=cn-hangzhou", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("unsigned request: HTTP %d", resp.StatusCode)
	}
	signed := func(method string, p map[string]string, ts time.Time, nonce string) *http.Response {
		t.Helper()
		return rawCall(t, a.s, method, akID, akSecret, p, ts, nonce)
	}
	p := map[string]string{"Action": "DescribeVpcs", "Version": "2016-04-28", "RegionId": aliRegion}
	r1 := signed("GET", p, time.Now(), "nonce-1")
	r1.Body.Close()
	if r1.StatusCode != 200 {
		t.Fatalf("signed GET: HTTP %d", r1.StatusCode)
	}
	r2 := signed("GET", p, time.Now(), "nonce-1")
	r2.Body.Close()
	if r2.StatusCode != 400 {
		t.Fatalf("replayed nonce: HTTP %d", r2.StatusCode)
	}
	r3 := signed("POST", p, time.Now().Add(-time.Hour), "nonce-2")
	r3.Body.Close()
	if r3.StatusCode != 400 {
		t.Fatalf("stale timestamp: HTTP %d", r3.StatusCode)
	}
	p["Action"] = "DescribeSomethingElse"
	r4 := signed("POST", p, time.Now(), "nonce-3")
	r4.Body.Close()
	if r4.StatusCode != 404 {
		t.Fatalf("unknown action: HTTP %d", r4.StatusCode)
	}
	// GCE and health still answer next to the RPC dialect.
	if _, err := a.s.Compute(t).Networks.List("default").Do(); err != nil {
		t.Fatal(err)
	}
}

// rawCall signs and sends an RPC request by hand (query string for GET,
// form body for POST).
func rawCall(t testing.TB, s *Server, method, id, secret string, p map[string]string, ts time.Time, nonce string) *http.Response {
	t.Helper()
	v := url.Values{}
	for k, x := range p {
		v.Set(k, x)
	}
	v.Set("AccessKeyId", id)
	v.Set("SignatureMethod", "HMAC-SHA1")
	v.Set("SignatureVersion", "1.0")
	v.Set("SignatureNonce", nonce)
	v.Set("Timestamp", ts.UTC().Format("2006-01-02T15:04:05Z"))
	v.Set("Format", "JSON")
	v.Set("Signature", signV1(method, v, secret))
	var resp *http.Response
	var err error
	if method == "GET" {
		resp, err = http.Get(s.URL() + "/?" + v.Encode())
	} else {
		resp, err = http.Post(s.URL()+"/", "application/x-www-form-urlencoded", strings.NewReader(v.Encode()))
	}
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestAlibabaClientToken(t *testing.T) {
	a := startAli(t)
	vpcID := a.createVpc("192.168.0.0/16")
	vsw := a.createVSwitch(vpcID, zoneH, "192.168.1.0/24")
	eni := a.eni(vsw, "")
	call := func(token string, count int) ([]string, error) {
		r := httpReq(ecs.CreateAssignPrivateIpAddressesRequest())
		r.NetworkInterfaceId, r.SecondaryPrivateIpAddressCount, r.ClientToken = eni, requests.NewInteger(count), token
		resp, err := a.ecs.AssignPrivateIpAddresses(r)
		if err != nil {
			return nil, err
		}
		return resp.AssignedPrivateIpAddressesSet.PrivateIpSet.PrivateIpAddress, nil
	}
	first := mustA(call("token-1", 2))
	again := mustA(call("token-1", 2))
	if !slices.Equal(first, again) {
		t.Fatalf("a retry with the same ClientToken assigned %v, first %v", again, first)
	}
	if n := len(ips(a.describeENI(eni))); n != 3 {
		t.Fatalf("the retry assigned again: %d addresses", n)
	}
	_, err := call("token-1", 3)
	wantAliCode(t, err, "IdempotentFailed", 400)
	// CreateNetworkInterface with a ClientToken makes one ENI.
	cr := httpReq(ecs.CreateCreateNetworkInterfaceRequest())
	cr.VSwitchId, cr.SecurityGroupId, cr.ClientToken = vsw, "sg-1", "token-eni"
	e1 := mustA(a.ecs.CreateNetworkInterface(cr)).NetworkInterfaceId
	e2 := mustA(a.ecs.CreateNetworkInterface(cr)).NetworkInterfaceId
	if e1 != e2 {
		t.Fatalf("two ENIs for one ClientToken: %s %s", e1, e2)
	}
}

// 32 goroutines assign addresses by count at once: no address is handed
// out twice, and every ENI holds exactly what it was told it got.
func TestAlibabaConcurrentAssign(t *testing.T) {
	a := startAli(t)
	vpcID := a.createVpc("10.0.0.0/8")
	vsw := a.createVSwitch(vpcID, zoneH, "10.1.0.0/22") // 1020 assignable
	const workers, rounds, per = 32, 3, 3
	enis := make([]string, workers)
	for i := range enis {
		enis[i] = a.eni(vsw, "")
	}
	var mu sync.Mutex
	got := map[string]string{}
	var wg sync.WaitGroup
	errc := make(chan error, workers*rounds)
	for w := range workers {
		wg.Go(func() {
			c := aliClients(t, a.s, akID, akSecret) // one SDK client per goroutine
			for range rounds {
				addrs, err := c.assign(enis[w], per)
				if err != nil {
					errc <- err
					return
				}
				mu.Lock()
				for _, ad := range addrs {
					if prev, dup := got[ad]; dup {
						errc <- fmt.Errorf("%s handed to %s and %s", ad, prev, enis[w])
					}
					got[ad] = enis[w]
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if len(got) != workers*rounds*per {
		t.Fatalf("%d distinct addresses, want %d", len(got), workers*rounds*per)
	}
	for _, eni := range enis {
		s := a.describeENI(eni)
		for _, ad := range ips(s)[1:] {
			if got[ad] != eni {
				t.Fatalf("%s holds %s, which was handed to %q", eni, ad, got[ad])
			}
		}
		if len(ips(s)) != 1+rounds*per {
			t.Fatalf("%s holds %d addresses", eni, len(ips(s)))
		}
	}
}

// Restart: EIPs, ENIs and the EIP pool survive a SIGKILL.
func TestAlibabaRestart(t *testing.T) {
	dir := t.TempDir()
	s := StartServer(t, dir, aliArgs()...)
	a := aliClients(t, s, akID, akSecret)
	vpcID := a.createVpc("192.168.0.0/16")
	vsw := a.createVSwitch(vpcID, zoneH, "192.168.1.0/24")
	eni := a.eni(vsw, "192.168.1.201", "192.168.1.202", "192.168.1.203")
	ar := httpReq(vpc.CreateAllocateEipAddressRequest())
	eip := mustA(a.vpc.AllocateEipAddress(ar))
	as := httpReq(vpc.CreateAssociateEipAddressRequest())
	as.AllocationId, as.InstanceType, as.InstanceId, as.PrivateIpAddress = eip.AllocationId, "NetworkInterface", eni, "192.168.1.202"
	mustA(a.vpc.AssociateEipAddress(as))
	s.Kill()

	s2 := StartServer(t, dir, aliArgs()...)
	b := aliClients(t, s2, akID, akSecret)
	set := b.describeENI(eni)
	if !slices.Equal(ips(set), []string{"192.168.1.201", "192.168.1.202", "192.168.1.203"}) ||
		set.PrivateIpSets.PrivateIpSet[1].AssociatedPublicIp.PublicIpAddress != eip.EipAddress {
		t.Fatalf("after restart: %+v", set)
	}
	ar = httpReq(vpc.CreateAllocateEipAddressRequest()) // a used request keeps the old server's address
	ar.IpAddress = eip.EipAddress
	_, err := b.vpc.AllocateEipAddress(ar)
	wantAliCode(t, err, "InvalidIpAddress.AlreadyAllocated", 400)
	_, err = b.createENI(vsw, "192.168.1.203")
	wantAliCode(t, err, "InvalidPrivateIpAddress.Duplicated", 400)
}

// Operators add instance types in a file.
func TestAlibabaInstanceTypesFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "types.yaml")
	if err := os.WriteFile(file, []byte("instanceTypes:\n- name: ecs.c7.large\n  enis: 2\n  privateIpv4PerEni: 3\n  ipv6PerEni: 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	a := startAli(t, "--instance-types", file)
	vpcID := a.createVpc("192.168.0.0/16")
	vsw := a.createVSwitch(vpcID, zoneH, "192.168.1.0/24")
	inst := a.run(vsw, "ecs.c7.large", "")
	prim := primaryENI(a.instance(inst))
	mustA(a.assign(prim, 2))
	_, err := a.assign(prim, 1)
	wantAliCode(t, err, "MaxEniPrivateIpsCountExceeded", 403)
	if err := a.attach(a.eni(vsw, ""), inst); err != nil {
		t.Fatal(err)
	}
	wantAliCode(t, a.attach(a.eni(vsw, ""), inst), "EniPerInstanceLimitExceeded", 403)
}

// BenchmarkAlibabaAssignByCount: AssignPrivateIpAddresses with
// SecondaryPrivateIpAddressCount=1 through the official SDK, 32 clients in
// parallel (one SDK client each), every request durable (fsync'd through
// the store's group commit) before it is answered. ENIs are made before
// the timer starts, one per 10 requests (the Available ENI quota), and
// handed out round-robin so concurrent requests mostly hit different ENIs.
func BenchmarkAlibabaAssignByCount(b *testing.B) {
	a := startAli(b)
	vpcID := a.createVpc("10.0.0.0/8")
	vsw := a.createVSwitch(vpcID, zoneH, "10.0.0.0/16")
	const clients = 32
	nENI := (b.N + 9) / 10
	enis := make([]string, nENI)
	for i := range enis {
		enis[i] = a.eni(vsw, "")
	}
	work := make(chan string, b.N)
	for i := range b.N {
		work <- enis[i%nENI]
	}
	close(work)
	cs := make([]*ali, clients)
	for i := range cs {
		cs[i] = aliClients(b, a.s, akID, akSecret)
	}
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Go(func() {
			for eni := range work {
				if _, err := c.assign(eni, 1); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "assigns/s")
}

// signV1 is an independent implementation of signature v1 for raw calls.
func signV1(method string, v url.Values, secret string) string {
	c := strings.NewReplacer("+", "%20", "*", "%2A", "%7E", "~").Replace(v.Encode())
	toSign := method + "&%2F&" + url.QueryEscape(c)
	m := hmac.New(sha1.New, []byte(secret+"&"))
	m.Write([]byte(toSign))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}
