package model

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = addr(s)
	}
	return out
}

// wantErr checks the model code and the sentinel of a refused request.
func wantErr(t *testing.T, err error, code Code, sentinel error) {
	t.Helper()
	if err == nil {
		t.Fatalf("want %v (%v), got success", code, sentinel)
	}
	if CodeOf(err) != code {
		t.Fatalf("want code %v, got %v: %v", code, CodeOf(err), err)
	}
	if sentinel != nil && !errors.Is(err, sentinel) {
		t.Fatalf("want %v, got %v", sentinel, err)
	}
}

// alibaba builds seed 003's network: VPC 192.168.0.0/16 with vSwitch
// 192.168.1.0/24 in cn-hangzhou-h, and a second vSwitch in zone i.
func alibaba(t *testing.T) *fixture {
	f := newFixture(t)
	f.must(func(tx *Txn) error {
		if _, err := tx.CreateVPC(Network{Project: "p", Name: "vpc-1", CIDRBlocks: []netip.Prefix{pfx("192.168.0.0/16")}}); err != nil {
			return err
		}
		if _, err := tx.CreateVSwitch(Subnet{Project: "p", Region: "cn-hangzhou", Zone: "cn-hangzhou-h", Name: "vsw-1", Network: "vpc-1",
			Range: pfx("192.168.1.0/24"), Range6: pfx("2408:4000:1:100::/64")}); err != nil {
			return err
		}
		_, err := tx.CreateVSwitch(Subnet{Project: "p", Region: "cn-hangzhou", Zone: "cn-hangzhou-i", Name: "vsw-2", Network: "vpc-1",
			Range: pfx("192.168.2.0/24")})
		return err
	})
	return f
}

func (f *fixture) ecs(name, typ, subnet, ip string) (*Instance, *Interface, error) {
	var in *Instance
	var ifc *Interface
	err := f.run(func(tx *Txn) error {
		sn := tx.State().Subnet("p", "cn-hangzhou", subnet)
		if sn == nil {
			return fmt.Errorf("no subnet %s", subnet)
		}
		var a netip.Addr
		if ip != "" {
			a = addr(ip)
		}
		var err error
		in, ifc, err = tx.RunInstance(RunInstanceReq{Instance: Instance{Project: "p", Zone: sn.Zone, Name: name, MachineType: typ},
			Subnet: "cn-hangzhou/" + subnet, ENI: "eni-" + name, IP: a, Random: tx.Random()})
		return err
	})
	return in, ifc, err
}

func (f *fixture) eni(id, subnet, ip string, secondary ...string) (*Interface, error) {
	var out *Interface
	err := f.run(func(tx *Txn) error {
		var a netip.Addr
		if ip != "" {
			a = addr(ip)
		}
		var err error
		out, err = tx.CreateENI(CreateENIReq{Project: "p", ID: id, Subnet: "cn-hangzhou/" + subnet, IP: a,
			SecurityGroups: []string{"sg-1"}, Secondary: AssignReq{IPs: addrs(secondary...)}, Random: tx.Random()})
		return err
	})
	return out, err
}

func (f *fixture) assign(id string, count int, ips ...string) (Assigned, error) {
	var got Assigned
	err := f.run(func(tx *Txn) error {
		var err error
		_, got, err = tx.AssignPrivateIPs(AssignReq{Project: "p", ENI: id, IPs: addrs(ips...), Count: count, Random: tx.Random()})
		return err
	})
	return got, err
}

func secondaries(ifc *Interface) []string {
	var out []string
	for _, a := range ifc.Aliases {
		out = append(out, shortPrefix(a.Range))
	}
	return out
}

func TestInstanceTypeTable(t *testing.T) {
	ts := DefaultInstanceTypes()
	for _, c := range []struct {
		name      string
		enis, ips int
	}{
		{"ecs.g7.large", 3, 6}, {"ecs.g7.xlarge", 4, 15}, {"ecs.g6.large", 2, 6}, {"ecs.g6.xlarge", 3, 10},
		{"t3.medium", 3, 6}, {"m5.large", 3, 10}, {"m5.xlarge", 4, 15},
	} {
		it, ok := ts[c.name]
		if !ok || it.ENIs != c.enis || it.IPv4PerENI != c.ips {
			t.Errorf("%s: got %+v, want %d ENIs x %d IPv4", c.name, it, c.enis, c.ips)
		}
	}
	more, err := ts.With(InstanceType{Name: "ecs.c7.2xlarge", ENIs: 4, IPv4PerENI: 15, IPv6PerENI: 15},
		InstanceType{Name: "ecs.g7.large", ENIs: 3, IPv4PerENI: 10})
	if err != nil {
		t.Fatal(err)
	}
	if more["ecs.c7.2xlarge"].ENIs != 4 || more["ecs.g7.large"].IPv4PerENI != 10 || ts["ecs.g7.large"].IPv4PerENI != 6 {
		t.Errorf("With: %v (original %v)", more, ts["ecs.g7.large"])
	}
	for _, bad := range []InstanceType{
		{Name: "", ENIs: 1, IPv4PerENI: 1},
		{Name: "a b", ENIs: 1, IPv4PerENI: 1},
		{Name: "x", ENIs: 0, IPv4PerENI: 1},
		{Name: "x", ENIs: 1, IPv4PerENI: 0},
		{Name: "x", ENIs: MaxTypeENIs + 1, IPv4PerENI: 2},
		{Name: "x", ENIs: 1, IPv4PerENI: 2, IPv6PerENI: -1},
	} {
		if _, err := ts.With(bad); err == nil {
			t.Errorf("With(%+v) accepted", bad)
		}
	}
	if _, err := ts.With(InstanceType{Name: "x", ENIs: 1, IPv4PerENI: 1}, InstanceType{Name: "x", ENIs: 2, IPv4PerENI: 1}); err == nil {
		t.Error("a type defined twice was accepted")
	}
}

func TestQuotaRules(t *testing.T) {
	g7 := DefaultInstanceTypes()["ecs.g7.large"]
	for _, c := range []struct {
		attached, known bool
		v4, v6          int
	}{
		{false, false, 10, 10}, // seed 003: an Available ENI holds 10 secondary IPs
		{false, true, 10, 10},
		{true, true, 5, 6}, // ecs.g7.large: 6 per ENI with the primary
		{true, false, MaxAliasesPerNIC, MaxAliasesPerNIC},
	} {
		if got := SecondaryIPv4Quota(c.attached, g7, c.known); got != c.v4 {
			t.Errorf("SecondaryIPv4Quota(%v, g7, %v) = %d, want %d", c.attached, c.known, got, c.v4)
		}
		if got := IPv6Quota(c.attached, g7, c.known); got != c.v6 {
			t.Errorf("IPv6Quota(%v, g7, %v) = %d, want %d", c.attached, c.known, got, c.v6)
		}
	}
	if ENIQuota(g7, true) != 3 || ENIQuota(g7, false) != MaxNICs {
		t.Error("ENIQuota")
	}
}

func TestVPCBlocks(t *testing.T) {
	for _, c := range []struct {
		p         string
		secondary bool
		ok        bool
	}{
		{"10.0.0.0/8", false, true},
		{"192.168.0.0/16", false, true},
		{"120.55.3.0/24", true, true}, // seed 004: a public block (the EIP's /24)
		{"10.0.0.0/8", true, false},   // secondary blocks are /16 to /28
		{"172.16.0.0/16", true, true},
		{"172.16.0.0/28", true, true},
		{"172.16.0.0/29", true, false},
		{"100.64.0.0/16", true, false}, // excluded
		{"100.127.255.0/24", false, false},
		{"127.0.0.0/16", true, false},
		{"169.254.0.0/16", true, false},
		{"224.0.0.0/16", false, false},
		{"2001:db8::/56", true, false},
	} {
		err := CheckVPCBlock("b", pfx(c.p), c.secondary)
		if (err == nil) != c.ok {
			t.Errorf("CheckVPCBlock(%s, secondary=%v) = %v, want ok=%v", c.p, c.secondary, err, c.ok)
		}
	}
	if err := CheckVPCBlock("b", netip.PrefixFrom(addr("10.1.2.3"), 16), true); !errors.Is(err, ErrCIDRInvalid) {
		t.Errorf("unmasked block: %v", err)
	}

	f := newFixture(t)
	f.must(func(tx *Txn) error {
		_, err := tx.CreateVPC(Network{Project: "p", Name: "vpc-1", CIDRBlocks: []netip.Prefix{pfx("10.0.0.0/8")}})
		return err
	})
	add := func(b string) error {
		return f.run(func(tx *Txn) error { _, err := tx.AddVPCBlock("p", "vpc-1", pfx(b)); return err })
	}
	remove := func(b string) error {
		return f.run(func(tx *Txn) error { _, err := tx.RemoveVPCBlock("p", "vpc-1", pfx(b)); return err })
	}
	wantErr(t, add("10.1.0.0/16"), Invalid, ErrCIDROverlap)
	if err := add("120.55.3.0/24"); err != nil {
		t.Fatal(err)
	}
	wantErr(t, add("120.55.3.128/25"), Invalid, ErrCIDROverlap)
	for i := range 4 {
		if err := add(fmt.Sprintf("172.%d.0.0/16", 16+i)); err != nil {
			t.Fatal(err)
		}
	}
	wantErr(t, add("172.30.0.0/16"), QuotaExceeded, nil)
	// A vSwitch in the secondary block pins it.
	f.must(func(tx *Txn) error {
		_, err := tx.CreateVSwitch(Subnet{Project: "p", Region: "cn-hangzhou", Zone: "cn-hangzhou-h", Name: "vsw-2", Network: "vpc-1", Range: pfx("120.55.3.0/25")})
		return err
	})
	wantErr(t, remove("120.55.3.0/24"), FailedPrecondition, ErrCIDRInUse)
	wantErr(t, remove("10.0.0.0/8"), Invalid, ErrCIDRNotFound)
	wantErr(t, remove("192.168.0.0/16"), Invalid, ErrCIDRNotFound)
	if err := remove("172.16.0.0/16"); err != nil {
		t.Fatal(err)
	}
	if n := f.s.Network("p", "vpc-1"); len(n.CIDRBlocks) != 5 || n.CIDRBlocks[0] != pfx("10.0.0.0/8") {
		t.Errorf("blocks: %v", n.CIDRBlocks)
	}
}

func TestVSwitchRules(t *testing.T) {
	f := alibaba(t)
	vsw := func(name, zone, cidr string) error {
		return f.run(func(tx *Txn) error {
			r, _ := ZoneRegion(zone)
			_, err := tx.CreateVSwitch(Subnet{Project: "p", Region: r, Zone: zone, Name: name, Network: "vpc-1", Range: pfx(cidr)})
			return err
		})
	}
	wantErr(t, vsw("vsw-3", "cn-hangzhou-h", "192.168.1.128/25"), Invalid, ErrCIDROverlap)
	wantErr(t, vsw("vsw-3", "cn-hangzhou-h", "10.0.0.0/24"), Invalid, ErrCIDRNotInVPC)
	wantErr(t, vsw("vsw-3", "cn-hangzhou-h", "192.168.8.0/30"), Invalid, ErrCIDRInvalid)
	wantErr(t, vsw("vsw-3", "cn-hangzhou-h", "192.0.0.0/15"), Invalid, ErrCIDRInvalid)
	if err := vsw("vsw-3", "cn-hangzhou-h", "192.168.8.0/29"); err != nil {
		t.Fatal(err)
	}
	// Alibaba reserves the first and the last three addresses.
	for _, a := range []string{"192.168.1.0", "192.168.1.253", "192.168.1.254", "192.168.1.255"} {
		_, err := f.eni("eni-r", "vsw-1", a)
		wantErr(t, err, Invalid, ErrIPNotInSubnet)
	}
	if _, err := f.eni("eni-r", "vsw-1", "192.168.1.1"); err != nil {
		t.Fatal(err)
	}
	// A used vSwitch cannot go; the VPC neither while it has vSwitches.
	err := f.run(func(tx *Txn) error { return tx.DeleteSubnet("p", "cn-hangzhou", "vsw-1") })
	wantCode(t, err, FailedPrecondition, "eni-r")
	err = f.run(func(tx *Txn) error { return tx.DeleteNetwork("p", "vpc-1") })
	wantCode(t, err, FailedPrecondition, "")
}

// Seed 003: an ENI with primary 192.168.1.201 and secondaries .202, .203;
// failover by detaching and attaching, and by moving one address.
func TestSeed003(t *testing.T) {
	f := alibaba(t)
	if _, _, err := f.ecs("i-a", "ecs.g7.large", "vsw-1", "192.168.1.10"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.ecs("i-b", "ecs.g7.large", "vsw-1", ""); err != nil {
		t.Fatal(err)
	}
	ifc, err := f.eni("eni-1", "vsw-1", "192.168.1.201", "192.168.1.202", "192.168.1.203")
	if err != nil {
		t.Fatal(err)
	}
	if ifc.IP != addr("192.168.1.201") || !slices.Equal(secondaries(ifc), []string{"192.168.1.202", "192.168.1.203"}) || ifc.ENIStatus() != ENIAvailable {
		t.Fatalf("ENI: %+v", ifc)
	}
	attach := func(eni, in string) error {
		return f.run(func(tx *Txn) error { _, err := tx.AttachENI("p", eni, in); return err })
	}
	detach := func(eni, in string) error {
		return f.run(func(tx *Txn) error { _, err := tx.DetachENI("p", eni, in); return err })
	}
	if err := attach("eni-1", "i-a"); err != nil {
		t.Fatal(err)
	}
	if got := f.s.Interface("p", "eni-1"); got.ENIStatus() != ENIInUse || got.Device != 1 || got.Instance != "cn-hangzhou-h/i-a" {
		t.Fatalf("attached: %+v", got)
	}
	wantErr(t, attach("eni-1", "i-b"), FailedPrecondition, ErrENIState)
	wantErr(t, detach("eni-i-a", "i-a"), FailedPrecondition, ErrDetachPrimary)
	wantErr(t, detach("eni-1", "i-b"), FailedPrecondition, ErrENIState)
	// Failover: i-a fails; its ENI moves to i-b with every address.
	if err := detach("eni-1", "i-a"); err != nil {
		t.Fatal(err)
	}
	wantErr(t, detach("eni-1", ""), FailedPrecondition, ErrENIState)
	if err := attach("eni-1", "i-b"); err != nil {
		t.Fatal(err)
	}
	got := f.s.Interface("p", "eni-1")
	if got.Instance != "cn-hangzhou-h/i-b" || got.IP != addr("192.168.1.201") || !slices.Equal(secondaries(got), []string{"192.168.1.202", "192.168.1.203"}) {
		t.Fatalf("after failover: %+v", got)
	}
	if nics := f.s.NICs(f.s.InstanceNamed("p", "i-b")); len(nics) != 2 || nics[1].ID != "eni-1" {
		t.Fatalf("i-b NICs: %v", nics)
	}
	if nics := f.s.NICs(f.s.InstanceNamed("p", "i-a")); len(nics) != 1 {
		t.Fatalf("i-a NICs: %v", nics)
	}
	// Failover of one address: unassign from eni-1, assign to i-a's primary.
	_, err = f.assign("eni-i-a", 0, "192.168.1.203")
	wantErr(t, err, InUse, nil)
	if err := f.run(func(tx *Txn) error {
		_, err := tx.UnassignPrivateIPs("p", "eni-1", addrs("192.168.1.203"), nil)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.assign("eni-i-a", 0, "192.168.1.203"); err != nil {
		t.Fatal(err)
	}
	if got := secondaries(f.s.Interface("p", "eni-i-a")); !slices.Equal(got, []string{"192.168.1.203"}) {
		t.Fatalf("i-a secondaries: %v", got)
	}
	// Deleting an instance leaves its secondary ENIs Available.
	if err := f.run(func(tx *Txn) error { return tx.DeleteECSInstance("p", "i-b", false) }); err == nil {
		t.Fatal("deleting a running instance without force succeeded")
	}
	if err := f.run(func(tx *Txn) error { return tx.DeleteECSInstance("p", "i-b", true) }); err != nil {
		t.Fatal(err)
	}
	if got := f.s.Interface("p", "eni-1"); got == nil || got.ENIStatus() != ENIAvailable || len(got.Aliases) != 1 {
		t.Fatalf("after instance delete: %+v", got)
	}
	if f.s.Interface("p", "eni-i-b") != nil {
		t.Fatal("primary ENI survived its instance")
	}
}

func TestAssignRules(t *testing.T) {
	f := alibaba(t)
	if _, err := f.eni("eni-1", "vsw-1", ""); err != nil {
		t.Fatal(err)
	}
	before := snapshot(f.s)
	for _, c := range []struct {
		name     string
		count    int
		ips      []string
		code     Code
		sentinel error
	}{
		{"both", 1, []string{"192.168.1.50"}, Invalid, ErrBothExplicitAuto},
		{"none", 0, nil, Required, nil},
		{"outside", 0, []string{"192.168.2.5"}, Invalid, ErrIPNotInSubnet},
		{"reserved", 0, []string{"192.168.1.255"}, Invalid, ErrIPNotInSubnet},
		{"listed twice", 0, []string{"192.168.1.50", "192.168.1.50"}, Invalid, ErrIPAssigned},
		{"ipv6 as v4", 0, []string{"2408:4000:1:100::5"}, Invalid, ErrIPNotInSubnet},
		{"eleven by count", 11, nil, QuotaExceeded, ErrIPLimit},
		{"eleven explicit", 0, []string{"192.168.1.50", "192.168.1.51", "192.168.1.52", "192.168.1.53", "192.168.1.54",
			"192.168.1.55", "192.168.1.56", "192.168.1.57", "192.168.1.58", "192.168.1.59", "192.168.1.60"}, QuotaExceeded, ErrIPLimit},
		// All or nothing: the first address is fine, the second is not.
		{"partial", 0, []string{"192.168.1.50", "10.9.9.9"}, Invalid, ErrIPNotInSubnet},
	} {
		_, err := f.assign("eni-1", c.count, c.ips...)
		t.Run(c.name, func(t *testing.T) { wantErr(t, err, c.code, c.sentinel) })
		if after := snapshot(f.s); after != before {
			t.Fatalf("%s: refused request left a trace:\n%s\n%s", c.name, before, after)
		}
	}
	// 10 secondaries are accepted on an Available ENI, the 11th is not.
	got, err := f.assign("eni-1", 9)
	if err != nil || len(got.IPs) != 9 {
		t.Fatal(got, err)
	}
	if _, err := f.assign("eni-1", 0, "192.168.1.77"); err != nil {
		t.Fatal("10th:", err)
	}
	_, err = f.assign("eni-1", 1)
	wantErr(t, err, QuotaExceeded, ErrIPLimit)
	_, err = f.assign("eni-1", 0, "192.168.1.78")
	wantErr(t, err, QuotaExceeded, ErrIPLimit)
	// Assigning an address the ENI holds is refused as assigned.
	err = f.run(func(tx *Txn) error {
		_, err := tx.UnassignPrivateIPs("p", "eni-1", addrs("192.168.1.77"), nil)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.assign("eni-1", 0, f.s.Interface("p", "eni-1").IP.String())
	wantErr(t, err, Invalid, ErrIPAssigned)
	// Unassign rules.
	unassign := func(ips ...string) error {
		return f.run(func(tx *Txn) error { _, err := tx.UnassignPrivateIPs("p", "eni-1", addrs(ips...), nil); return err })
	}
	wantErr(t, unassign("192.168.1.77"), Invalid, ErrIPNotAssigned)
	wantErr(t, unassign(f.s.Interface("p", "eni-1").IP.String()), Invalid, ErrIPNotAssigned)
	// Random picks: nine distinct addresses, not the lowest ones in order.
	seen := map[netip.Addr]bool{}
	for _, a := range got.IPs {
		if seen[a] || !pfx("192.168.1.0/24").Contains(a) {
			t.Fatalf("bad pick %s in %v", a, got.IPs)
		}
		seen[a] = true
	}
}

func TestInUseQuotaAndAttachRules(t *testing.T) {
	f := alibaba(t)
	if _, _, err := f.ecs("i-a", "ecs.g7.large", "vsw-1", ""); err != nil {
		t.Fatal(err)
	}
	// Primary ENI of ecs.g7.large: 6 private IPv4 with the primary -> 5 secondaries.
	if _, err := f.assign("eni-i-a", 5); err != nil {
		t.Fatal(err)
	}
	_, err := f.assign("eni-i-a", 1)
	wantErr(t, err, QuotaExceeded, ErrIPLimit)
	if !strings.Contains(err.Error(), "ecs.g7.large") {
		t.Errorf("quota message does not name the type: %v", err)
	}
	attach := func(eni, in string) error {
		return f.run(func(tx *Txn) error { _, err := tx.AttachENI("p", eni, in); return err })
	}
	// An Available ENI with 8 secondaries does not fit a g7.large ENI.
	if _, err := f.eni("eni-big", "vsw-1", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := f.assign("eni-big", 8); err != nil {
		t.Fatal(err)
	}
	wantErr(t, attach("eni-big", "i-a"), QuotaExceeded, ErrIPLimit)
	// Zone mismatch: eni in zone i, instance in zone h.
	if _, err := f.eni("eni-z", "vsw-2", ""); err != nil {
		t.Fatal(err)
	}
	wantErr(t, attach("eni-z", "i-a"), FailedPrecondition, ErrZoneMismatch)
	// A 4th ENI is refused on ecs.g7.large (3 ENIs with the primary).
	for _, id := range []string{"eni-2", "eni-3", "eni-4"} {
		if _, err := f.eni(id, "vsw-1", ""); err != nil {
			t.Fatal(err)
		}
	}
	if err := attach("eni-2", "i-a"); err != nil {
		t.Fatal(err)
	}
	if err := attach("eni-3", "i-a"); err != nil {
		t.Fatal(err)
	}
	wantErr(t, attach("eni-4", "i-a"), QuotaExceeded, ErrENILimit)
	// InUse secondary ENI: 5 secondaries at most.
	if _, err := f.assign("eni-2", 5); err != nil {
		t.Fatal(err)
	}
	_, err = f.assign("eni-2", 1)
	wantErr(t, err, QuotaExceeded, ErrIPLimit)
	// Detaching frees an ENI slot and lifts the ENI to the Available quota.
	if err := f.run(func(tx *Txn) error { _, err := tx.DetachENI("p", "eni-2", "i-a"); return err }); err != nil {
		t.Fatal(err)
	}
	if _, err := f.assign("eni-2", 5); err != nil {
		t.Fatal(err)
	}
	if err := attach("eni-4", "i-a"); err != nil {
		t.Fatal(err)
	}
	if d := f.s.Interface("p", "eni-4").Device; d != 1 {
		t.Errorf("eni-4 took device %d, want the freed 1", d)
	}
	// Stopped instances take ENIs; a stopping one does not.
	f.must(func(tx *Txn) error { _, err := tx.SetECSStatus("p", "i-a", InstanceStopped); return err })
	wantErr(t, f.run(func(tx *Txn) error { _, err := tx.SetECSStatus("p", "i-a", InstanceStopped); return err }), FailedPrecondition, ErrInstanceState)
	if err := f.run(func(tx *Txn) error { _, err := tx.DetachENI("p", "eni-4", ""); return err }); err != nil {
		t.Fatal(err)
	}
	f.must(func(tx *Txn) error {
		_, err := tx.SetInstanceStatus("p", "cn-hangzhou-h", "i-a", InstanceStopping)
		return err
	})
	wantErr(t, attach("eni-4", "i-a"), FailedPrecondition, ErrInstanceState)
	// Delete: InUse refused, Available accepted; addresses come free.
	wantErr(t, f.run(func(tx *Txn) error { return tx.DeleteENI("p", "eni-3") }), FailedPrecondition, ErrENIState)
	ip := f.s.Interface("p", "eni-4").IP
	f.must(func(tx *Txn) error { return tx.DeleteENI("p", "eni-4") })
	if _, err := f.eni("eni-5", "vsw-1", ip.String()); err != nil {
		t.Fatalf("address of a deleted ENI not free: %v", err)
	}
}

func TestIPv6AndPrefixes(t *testing.T) {
	f := alibaba(t)
	if _, err := f.eni("eni-1", "vsw-1", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := f.eni("eni-2", "vsw-2", ""); err != nil {
		t.Fatal(err)
	}
	v6 := func(eni string, count int, ips ...string) (Assigned, error) {
		var got Assigned
		err := f.run(func(tx *Txn) error {
			var err error
			_, got, err = tx.AssignIPv6(AssignReq{Project: "p", ENI: eni, IPs: addrs(ips...), Count: count, Random: tx.Random()})
			return err
		})
		return got, err
	}
	_, err := v6("eni-2", 1)
	wantErr(t, err, Invalid, ErrIPv6Disabled)
	got, err := v6("eni-1", 2)
	if err != nil || len(got.IPs) != 2 || !pfx("2408:4000:1:100::/64").Contains(got.IPs[0]) {
		t.Fatal(got, err)
	}
	if _, err := v6("eni-1", 0, "2408:4000:1:100::42"); err != nil {
		t.Fatal(err)
	}
	_, err = v6("eni-1", 0, "2408:4000:1:101::42")
	wantErr(t, err, Invalid, ErrIPNotInSubnet)
	if err := f.run(func(tx *Txn) error { _, err := tx.UnassignIPv6("p", "eni-1", addrs("2408:4000:1:100::42")); return err }); err != nil {
		t.Fatal(err)
	}
	// IPv4 /28 prefixes share the secondary slots.
	var pg Assigned
	err = f.run(func(tx *Txn) error {
		var err error
		_, pg, err = tx.AssignPrivateIPs(AssignReq{Project: "p", ENI: "eni-1", PrefixCount: 2, Random: tx.Random()})
		return err
	})
	if err != nil || len(pg.Prefixes) != 2 || pg.Prefixes[0].Bits() != 28 {
		t.Fatal(pg, err)
	}
	err = f.run(func(tx *Txn) error {
		_, _, err := tx.AssignPrivateIPs(AssignReq{Project: "p", ENI: "eni-1", Prefixes: []netip.Prefix{pfx("192.168.1.8/29")}})
		return err
	})
	wantErr(t, err, Invalid, ErrIPNotInSubnet)
	// An address inside an assigned prefix is taken.
	_, err = f.assign("eni-1", 0, pg.Prefixes[0].Addr().Next().String())
	wantErr(t, err, InUse, nil)
	if _, err := f.assign("eni-1", 8); err != nil {
		t.Fatal(err)
	}
	_, err = f.assign("eni-1", 1)
	wantErr(t, err, QuotaExceeded, ErrIPLimit)
	if err := f.run(func(tx *Txn) error {
		_, err := tx.UnassignPrivateIPs("p", "eni-1", nil, pg.Prefixes[:1])
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.assign("eni-1", 1); err != nil {
		t.Fatal(err)
	}
}

// Seed 004: an EIP's /24 as a VPC secondary block, vSwitch 2 (/25) in the
// instance's zone, a secondary ENI whose primary address is the EIP, the
// EIP associated with it and the ENI attached to the instance.
func TestSeed004(t *testing.T) {
	f := newFixture(t)
	if err := f.s.Configure(Config{EIPPools: []netip.Prefix{pfx("120.55.3.0/24")}}); err != nil {
		t.Fatal(err)
	}
	var eip *EIP
	f.must(func(tx *Txn) error {
		if _, err := tx.CreateVPC(Network{Project: "p", Name: "vpc-1", CIDRBlocks: []netip.Prefix{pfx("10.0.0.0/8")}}); err != nil {
			return err
		}
		if _, err := tx.CreateVSwitch(Subnet{Project: "p", Region: "cn-hangzhou", Zone: "cn-hangzhou-h", Name: "vsw-1", Network: "vpc-1", Range: pfx("10.0.0.0/24")}); err != nil {
			return err
		}
		if _, _, err := tx.RunInstance(RunInstanceReq{Instance: Instance{Project: "p", Zone: "cn-hangzhou-h", Name: "i-a", MachineType: "ecs.g7.large"},
			Subnet: "cn-hangzhou/vsw-1", ENI: "eni-a", IP: addr("10.0.0.202")}); err != nil {
			return err
		}
		var err error
		eip, err = tx.AllocateEIP(EIP{Project: "p", ID: "eip-1", Region: "cn-hangzhou", Address: addr("120.55.3.106")})
		return err
	})
	// vSwitch 2 cannot be made before the secondary block.
	vsw2 := func(tx *Txn) error {
		_, err := tx.CreateVSwitch(Subnet{Project: "p", Region: "cn-hangzhou", Zone: "cn-hangzhou-h", Name: "vsw-2", Network: "vpc-1", Range: pfx("120.55.3.0/25")})
		return err
	}
	wantErr(t, f.run(vsw2), Invalid, ErrCIDRNotInVPC)
	f.must(func(tx *Txn) error { _, err := tx.AddVPCBlock("p", "vpc-1", pfx("120.55.3.0/24")); return err })
	f.must(vsw2)
	if _, err := f.eni("eni-2", "vsw-2", eip.Address.String()); err != nil {
		t.Fatal(err)
	}
	f.must(func(tx *Txn) error {
		_, err := tx.AssociateEIP(AssociateEIPReq{Project: "p", ID: "eip-1", InstanceType: EIPToENI, InstanceID: "eni-2", PrivateIP: eip.Address})
		return err
	})
	f.must(func(tx *Txn) error { _, err := tx.AttachENI("p", "eni-2", "i-a"); return err })
	nics := f.s.NICs(f.s.InstanceNamed("p", "i-a"))
	if len(nics) != 2 || nics[1].IP != addr("120.55.3.106") || nics[1].ExternalIP != addr("120.55.3.106") {
		t.Fatalf("instance NICs: %+v", nics)
	}
	if e := f.s.EIP("p", "eip-1"); e.Status() != EIPInUse || e.Interface != "eni-2" || e.Mode != EIPModeNAT {
		t.Fatalf("EIP: %+v", e)
	}
	// The ENI cannot be deleted nor the EIP released while associated.
	f.must(func(tx *Txn) error { _, err := tx.DetachENI("p", "eni-2", ""); return err })
	wantErr(t, f.run(func(tx *Txn) error { return tx.DeleteENI("p", "eni-2") }), FailedPrecondition, ErrEIPAssociated)
	wantErr(t, f.run(func(tx *Txn) error { return tx.ReleaseEIP("p", "eip-1") }), FailedPrecondition, ErrEIPState)
	f.must(func(tx *Txn) error { _, err := tx.UnassociateEIP("p", "eip-1", "eni-2"); return err })
	if ifc := f.s.Interface("p", "eni-2"); ifc.ExternalIP.IsValid() {
		t.Fatal("ExternalIP kept after unassociate")
	}
	f.must(func(tx *Txn) error { return tx.ReleaseEIP("p", "eip-1") })
	f.must(func(tx *Txn) error {
		_, err := tx.AllocateEIP(EIP{Project: "q", ID: "eip-9", Address: addr("120.55.3.106")})
		return err
	})
}

func TestEIPRules(t *testing.T) {
	f := alibaba(t)
	if err := f.s.Configure(Config{EIPPools: []netip.Prefix{pfx("203.0.113.0/30"), pfx("198.51.100.7/32")}}); err != nil {
		t.Fatal(err)
	}
	alloc := func(proj, id, a string) (*EIP, error) {
		var e *EIP
		err := f.run(func(tx *Txn) error {
			var ad netip.Addr
			if a != "" {
				ad = addr(a)
			}
			var err error
			e, err = tx.AllocateEIP(EIP{Project: proj, ID: id, Address: ad})
			return err
		})
		return e, err
	}
	_, err := alloc("p", "eip-x", "203.0.113.0") // network address of the pool
	wantErr(t, err, Invalid, ErrEIPNotInPool)
	_, err = alloc("p", "eip-x", "192.0.2.1")
	wantErr(t, err, Invalid, ErrEIPNotInPool)
	seen := map[netip.Addr]bool{}
	for i := range 3 {
		e, err := alloc("p", fmt.Sprintf("eip-%d", i), "")
		if err != nil {
			t.Fatal(err)
		}
		seen[e.Address] = true
	}
	if len(seen) != 3 || !seen[addr("198.51.100.7")] || seen[addr("203.0.113.0")] || seen[addr("203.0.113.3")] {
		t.Fatalf("picked %v", seen)
	}
	_, err = alloc("q", "eip-9", "")
	wantErr(t, err, Exhausted, ErrEIPExhausted)
	_, err = alloc("q", "eip-9", "198.51.100.7") // another project's
	wantErr(t, err, InUse, ErrEIPTaken)

	if _, _, err := f.ecs("i-a", "ecs.g7.large", "vsw-1", "192.168.1.10"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.eni("eni-1", "vsw-1", "192.168.1.20", "192.168.1.21"); err != nil {
		t.Fatal(err)
	}
	assoc := func(id, kind, target, priv, mode string) error {
		return f.run(func(tx *Txn) error {
			var a netip.Addr
			if priv != "" {
				a = addr(priv)
			}
			_, err := tx.AssociateEIP(AssociateEIPReq{Project: "p", ID: id, InstanceType: kind, InstanceID: target, PrivateIP: a, Mode: mode})
			return err
		})
	}
	wantErr(t, assoc("eip-0", EIPToENI, "eni-1", "", ""), Required, nil)
	wantErr(t, assoc("eip-0", EIPToENI, "eni-1", "192.168.1.99", ""), Invalid, ErrPrivateIPNotOn)
	wantErr(t, assoc("eip-0", EIPToENI, "eni-1", "192.168.1.21", EIPModeBinded), Invalid, nil)
	wantErr(t, assoc("eip-0", "Bogus", "eni-1", "192.168.1.21", ""), Invalid, nil)
	wantErr(t, assoc("eip-nope", EIPToENI, "eni-1", "192.168.1.21", ""), NotFound, nil)
	if err := assoc("eip-0", EIPToENI, "eni-1", "192.168.1.21", ""); err != nil {
		t.Fatal(err)
	}
	wantErr(t, assoc("eip-0", EIPToENI, "eni-1", "192.168.1.20", ""), FailedPrecondition, ErrEIPState)
	wantErr(t, assoc("eip-1", EIPToENI, "eni-1", "192.168.1.21", ""), FailedPrecondition, ErrEIPDuplicate)
	if err := assoc("eip-1", EIPToInstance, "i-a", "", ""); err != nil {
		t.Fatal(err)
	}
	if ifc := f.s.Interface("p", "eni-i-a"); ifc.ExternalIP != f.s.EIP("p", "eip-1").Address {
		t.Fatalf("instance EIP not on its primary ENI: %+v", ifc)
	}
	// A secondary address with an EIP cannot be unassigned.
	err = f.run(func(tx *Txn) error {
		_, err := tx.UnassignPrivateIPs("p", "eni-1", addrs("192.168.1.21"), nil)
		return err
	})
	wantErr(t, err, FailedPrecondition, ErrEIPAssociated)
	wantErr(t, f.run(func(tx *Txn) error { _, err := tx.UnassociateEIP("p", "eip-0", "eni-9"); return err }), Invalid, ErrEIPState)
	// Deleting the instance frees its EIP.
	f.must(func(tx *Txn) error { return tx.DeleteECSInstance("p", "i-a", true) })
	if e := f.s.EIP("p", "eip-1"); e.Status() != EIPAvailable {
		t.Fatalf("EIP after instance delete: %+v", e)
	}
}

func TestAlibabaLoadRoundTrip(t *testing.T) {
	f := alibaba(t)
	cfg := Config{EIPPools: []netip.Prefix{pfx("203.0.113.0/24")}}
	if err := f.s.Configure(cfg); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.ecs("i-a", "ecs.g7.large", "vsw-1", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := f.eni("eni-1", "vsw-1", "192.168.1.201", "192.168.1.202"); err != nil {
		t.Fatal(err)
	}
	f.must(func(tx *Txn) error {
		if _, err := tx.AllocateEIP(EIP{Project: "p", ID: "eip-1", Address: addr("203.0.113.9")}); err != nil {
			return err
		}
		_, err := tx.AssociateEIP(AssociateEIPReq{Project: "p", ID: "eip-1", InstanceType: EIPToENI, InstanceID: "eni-1", PrivateIP: addr("192.168.1.202")})
		return err
	})
	snap := Snapshot{Networks: f.s.Networks("p"), Subnets: f.s.Subnets("p", ""), Instances: f.s.Instances("p", ""),
		Interfaces: f.s.Interfaces("p"), EIPs: f.s.EIPs("p")}
	s2, err := Load(snap)
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Configure(cfg); err != nil {
		t.Fatal(err)
	}
	g := &fixture{t: t, s: s2, id: 1000}
	_, err = g.assign("eni-i-a", 0, "192.168.1.202")
	wantErr(t, err, InUse, nil)
	err = g.run(func(tx *Txn) error {
		_, err := tx.AllocateEIP(EIP{Project: "p", ID: "eip-2", Address: addr("203.0.113.9")})
		return err
	})
	wantErr(t, err, InUse, ErrEIPTaken)
	if pools := s2.EIPPools(); len(pools) != 1 || pools[0].Allocated != 3 { // .0, .255 and the EIP
		t.Fatalf("pools after load: %+v", pools)
	}
}
