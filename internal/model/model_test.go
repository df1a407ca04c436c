package model

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

// fixture builds a state through real transactions, failing the test on
// any refused step.
type fixture struct {
	t  *testing.T
	s  *State
	id uint64
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	return &fixture{t: t, s: NewState()}
}

func (f *fixture) tx() *Txn {
	return f.s.Begin("2026-01-01T00:00:00Z", func() uint64 { f.id++; return f.id })
}

// run applies m in a transaction and rolls back on error, as control does.
func (f *fixture) run(m func(tx *Txn) error) error {
	tx := f.tx()
	if err := m(tx); err != nil {
		tx.Rollback()
		return err
	}
	return nil
}

func (f *fixture) must(m func(tx *Txn) error) {
	f.t.Helper()
	if err := f.run(m); err != nil {
		f.t.Fatal(err)
	}
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func alias(s string) AliasSpec {
	a, err := ParseAliasSpec(s)
	if err != nil {
		panic(err)
	}
	return a
}

func aliasIn(rangeName, s string) AliasSpec { a := alias(s); a.RangeName = rangeName; return a }

// seed000 is the seed's scenario: subnet 10.128.0.0/16 with a secondary
// range 172.16.0.0/20 for containers.
func seed000(t *testing.T) *fixture {
	f := newFixture(t)
	f.must(func(tx *Txn) error {
		if _, err := tx.CreateNetwork(Network{Project: "p", Name: "vpc"}); err != nil {
			return err
		}
		_, err := tx.CreateSubnet(Subnet{Project: "p", Region: "us-central1", Name: "subnet-a", Network: "vpc",
			Range: pfx("10.128.0.0/16"), Secondary: []SecondaryRange{{Name: "container-range", Range: pfx("172.16.0.0/20")}}})
		return err
	})
	return f
}

func (f *fixture) vm(name string, nics ...NICSpec) (*Instance, []*Interface, error) {
	var in *Instance
	var ifcs []*Interface
	err := f.run(func(tx *Txn) error {
		var err error
		in, ifcs, err = tx.CreateInstance(CreateInstanceReq{Instance: Instance{Project: "p", Zone: "us-central1-a", Name: name}, NICs: nics})
		return err
	})
	return in, ifcs, err
}

func wantCode(t *testing.T, err error, code Code, substr string) {
	t.Helper()
	if err == nil {
		t.Fatalf("want %v error containing %q, got success", code, substr)
	}
	if CodeOf(err) != code {
		t.Fatalf("want code %v, got %v: %v", code, CodeOf(err), err)
	}
	if !strings.Contains(err.Error(), substr) {
		t.Fatalf("error %q does not contain %q", err, substr)
	}
}

func TestAliasForms(t *testing.T) {
	f := seed000(t)
	_, ifcs, err := f.vm("vm1", NICSpec{Subnet: "subnet-a", Aliases: []AliasSpec{
		aliasIn("container-range", "172.16.0.0/24"), // explicit CIDR
		alias("10.128.7.29"),                        // single IP from the primary range
		alias("/27"),                                // netmask from the primary range
		aliasIn("container-range", "/24"),           // netmask from the secondary range
	}})
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(ifcs[0].Aliases)
	// Primary IP is 10.128.0.2 (.0 network, .1 gateway); the /27 is the
	// first free aligned /27 after it: 10.128.0.32/27.
	if ifcs[0].IP != netip.MustParseAddr("10.128.0.2") {
		t.Errorf("primary IP = %s, want 10.128.0.2", ifcs[0].IP)
	}
	for _, want := range []string{"10.128.0.32/27", "10.128.7.29/32", "172.16.0.0/24", "172.16.1.0/24"} {
		if !strings.Contains(got, want) {
			t.Errorf("aliases %s lack %s", got, want)
		}
	}
}

func TestAliasConflicts(t *testing.T) {
	f := seed000(t)
	if _, _, err := f.vm("vm1", NICSpec{Subnet: "subnet-a", IP: netip.MustParseAddr("10.128.0.10"),
		Aliases: []AliasSpec{aliasIn("container-range", "172.16.0.0/24"), alias("10.128.1.0/24")}}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		nic   NICSpec
		code  Code
		want  string
		field string
	}{
		{"same secondary alias", NICSpec{Subnet: "subnet-a", Aliases: []AliasSpec{aliasIn("container-range", "172.16.0.0/24")}}, InUse, "IP '172.16.0.0/24' is already being used by another resource.", "networkInterfaces[0].aliasIpRanges[0].ipCidrRange"},
		{"alias inside alias", NICSpec{Subnet: "subnet-a", Aliases: []AliasSpec{aliasIn("container-range", "172.16.0.5")}}, InUse, "already being used", ""},
		{"alias over alias", NICSpec{Subnet: "subnet-a", Aliases: []AliasSpec{aliasIn("container-range", "172.16.0.0/23")}}, InUse, "already being used", ""},
		{"alias over VM primary IP", NICSpec{Subnet: "subnet-a", Aliases: []AliasSpec{alias("10.128.0.8/29")}}, InUse, "already being used", ""},
		{"alias on gateway", NICSpec{Subnet: "subnet-a", Aliases: []AliasSpec{alias("10.128.0.1")}}, InUse, "already being used", ""},
		{"alias on broadcast", NICSpec{Subnet: "subnet-a", Aliases: []AliasSpec{alias("10.128.255.255")}}, InUse, "already being used", ""},
		{"alias on second-to-last", NICSpec{Subnet: "subnet-a", Aliases: []AliasSpec{alias("10.128.255.254")}}, InUse, "already being used", ""},
		{"primary IP taken by alias", NICSpec{Subnet: "subnet-a", IP: netip.MustParseAddr("10.128.1.7")}, InUse, "already being used", "networkInterfaces[0].networkIP"},
		{"primary IP taken", NICSpec{Subnet: "subnet-a", IP: netip.MustParseAddr("10.128.0.10")}, InUse, "already being used", ""},
		{"primary IP outside", NICSpec{Subnet: "subnet-a", IP: netip.MustParseAddr("10.129.0.10")}, Invalid, "outside the subnetwork's primary range", ""},
		{"alias outside secondary", NICSpec{Subnet: "subnet-a", Aliases: []AliasSpec{aliasIn("container-range", "172.17.0.0/24")}}, Invalid, "is not inside secondary range 'container-range'", ""},
		{"secondary address named as primary", NICSpec{Subnet: "subnet-a", Aliases: []AliasSpec{alias("172.16.5.0/24")}}, Invalid, "is not inside the primary range", ""},
		{"unknown range name", NICSpec{Subnet: "subnet-a", Aliases: []AliasSpec{aliasIn("nope", "/24")}}, Invalid, "Secondary range 'nope' not found", "networkInterfaces[0].aliasIpRanges[0].subnetworkRangeName"},
		{"netmask larger than range", NICSpec{Subnet: "subnet-a", Aliases: []AliasSpec{aliasIn("container-range", "/19")}}, Invalid, "netmask", ""},
		{"exhausted", NICSpec{Subnet: "subnet-a", Aliases: []AliasSpec{aliasIn("container-range", "/20")}}, Exhausted, "exhausted", ""},
		{"two aliases overlap each other", NICSpec{Subnet: "subnet-a", Aliases: []AliasSpec{alias("10.128.64.0/24"), alias("10.128.64.7")}}, InUse, "already being used", ""},
		{"unknown subnet", NICSpec{Subnet: "nope"}, NotFound, "was not found", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := snapshot(f.s)
			_, _, err := f.vm("vm-x", c.nic)
			wantCode(t, err, c.code, c.want)
			var me *Error
			errors.As(err, &me)
			if c.field != "" && me.Field != c.field {
				t.Errorf("field = %q, want %q", me.Field, c.field)
			}
			if after := snapshot(f.s); after != before {
				t.Errorf("failed request changed state:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}

// snapshot renders every allocation of project p, to compare states.
func snapshot(s *State) string {
	var b strings.Builder
	for _, n := range s.Networks("p") {
		for _, r := range s.Ranges("p", n.Name) {
			e, _ := s.projects["p"].nets[n.Name].ranges.Get(r.Range)
			fmt.Fprintf(&b, "%s[", r.Range)
			for q, o := range e.pool.All {
				fmt.Fprintf(&b, "%s=%d ", q, o)
			}
			b.WriteString("] ")
		}
	}
	fmt.Fprintf(&b, "instances=%d interfaces=%d", len(s.Instances("p", "")), len(s.Interfaces("p")))
	return b.String()
}

func TestSubnetRules(t *testing.T) {
	f := seed000(t)
	f.must(func(tx *Txn) error {
		_, err := tx.CreateNetwork(Network{Project: "p", Name: "auto", AutoMode: true})
		return err
	})
	mk := func(sn Subnet) error {
		return f.run(func(tx *Txn) error { _, err := tx.CreateSubnet(sn); return err })
	}
	sec := func(name, r string) []SecondaryRange { return []SecondaryRange{{Name: name, Range: pfx(r)}} }
	var many []SecondaryRange
	for i := range 31 {
		many = append(many, SecondaryRange{Name: fmt.Sprintf("r%d", i), Range: pfx(fmt.Sprintf("192.168.%d.0/24", i))})
	}
	cases := []struct {
		name string
		sn   Subnet
		code Code
		want string
	}{
		{"primary overlaps primary", Subnet{Name: "b", Region: "us-east1", Network: "vpc", Range: pfx("10.128.5.0/24")}, Invalid, "conflicts with existing subnetwork 'subnet-a' in region 'us-central1'"},
		{"secondary overlaps secondary", Subnet{Name: "b", Region: "us-east1", Network: "vpc", Range: pfx("10.1.0.0/24"), Secondary: sec("x", "172.16.8.0/24")}, Invalid, "Invalid value for field 'resource.secondaryIpRanges[0].ipCidrRange': '172.16.8.0/24'. Invalid IPCidrRange: 172.16.8.0/24 conflicts with existing subnetwork 'subnet-a' in region 'us-central1'."},
		{"primary overlaps secondary", Subnet{Name: "b", Region: "us-east1", Network: "vpc", Range: pfx("172.16.0.0/16")}, Invalid, "conflicts with existing subnetwork 'subnet-a'"},
		{"own ranges overlap", Subnet{Name: "b", Region: "us-east1", Network: "vpc", Range: pfx("10.1.0.0/24"), Secondary: sec("x", "10.1.0.0/25")}, Invalid, "another range of the same subnetwork"},
		{"too small", Subnet{Name: "b", Region: "us-east1", Network: "vpc", Range: pfx("10.1.0.0/30")}, Invalid, "between /4 and /29"},
		{"too many secondary", Subnet{Name: "b", Region: "us-east1", Network: "vpc", Range: pfx("10.1.0.0/24"), Secondary: many}, Invalid, "at most 30"},
		{"bad range name", Subnet{Name: "b", Region: "us-east1", Network: "vpc", Range: pfx("10.1.0.0/24"), Secondary: sec("Bad_Name", "10.2.0.0/24")}, Invalid, "regex"},
		{"duplicate range name", Subnet{Name: "b", Region: "us-east1", Network: "vpc", Range: pfx("10.1.0.0/24"), Secondary: []SecondaryRange{{"x", pfx("10.2.0.0/24")}, {"x", pfx("10.3.0.0/24")}}}, Invalid, "unique"},
		{"auto mode overlap", Subnet{Name: "b", Region: "us-east1", Network: "auto", Range: pfx("10.200.0.0/24")}, Invalid, "Extended subnetworks in auto subnet mode networks cannot overlap with 10.128.0.0/9."},
		{"auto mode secondary overlap", Subnet{Name: "b", Region: "us-east1", Network: "auto", Range: pfx("10.0.0.0/24"), Secondary: sec("x", "10.130.0.0/24")}, Invalid, "cannot overlap with 10.128.0.0/9"},
		{"link-local", Subnet{Name: "b", Region: "us-east1", Network: "vpc", Range: pfx("169.254.0.0/24")}, Invalid, "reserved range"},
		{"no network", Subnet{Name: "b", Region: "us-east1", Network: "nope", Range: pfx("10.1.0.0/24")}, NotFound, "was not found"},
		{"duplicate name", Subnet{Name: "subnet-a", Region: "us-central1", Network: "vpc", Range: pfx("10.1.0.0/24")}, AlreadyExists, "already exists"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.sn.Project = "p"
			before := snapshot(f.s)
			wantCode(t, mk(c.sn), c.code, c.want)
			if snapshot(f.s) != before {
				t.Error("failed request changed state")
			}
		})
	}
	// Outside 10.128.0.0/9 an auto network takes extra subnets.
	if err := mk(Subnet{Project: "p", Name: "extra", Region: "us-east1", Network: "auto", Range: pfx("10.0.0.0/24")}); err != nil {
		t.Fatal(err)
	}
	if n := len(f.s.SubnetsOfNetwork("p", "auto")); n != len(Regions)+1 {
		t.Errorf("auto network has %d subnets, want %d", n, len(Regions)+1)
	}
	if sn := f.s.Subnet("p", "us-central1", "auto"); sn == nil || sn.Range != pfx("10.128.0.0/20") {
		t.Errorf("auto subnet in us-central1 = %+v, want 10.128.0.0/20", sn)
	}
}

func TestSecondaryRangeUpdate(t *testing.T) {
	f := seed000(t)
	if _, _, err := f.vm("vm1", NICSpec{Subnet: "subnet-a", Aliases: []AliasSpec{aliasIn("container-range", "/24")}}); err != nil {
		t.Fatal(err)
	}
	sn := func() *Subnet { return f.s.Subnet("p", "us-central1", "subnet-a") }
	set := func(fp string, rs ...SecondaryRange) error {
		return f.run(func(tx *Txn) error {
			_, err := tx.SetSecondaryRanges("p", "us-central1", "subnet-a", fp, rs)
			return err
		})
	}
	cur := sn().Secondary[0]
	wantCode(t, set("stale", cur), ConditionNotMet, "fingerprint")
	wantCode(t, set("", cur), Required, "fingerprint")
	// Add one.
	if err := set(sn().Fingerprint, cur, SecondaryRange{"pods", pfx("172.20.0.0/16")}); err != nil {
		t.Fatal(err)
	}
	// Add and remove at once.
	wantCode(t, set(sn().Fingerprint, cur, SecondaryRange{"svc", pfx("172.21.0.0/16")}), Invalid, "Cannot add and remove secondary IP ranges in the same request.")
	// Changing a range's CIDR under the same name is a remove and an add.
	wantCode(t, set(sn().Fingerprint, SecondaryRange{"container-range", pfx("172.22.0.0/20")}, SecondaryRange{"pods", pfx("172.20.0.0/16")}), Invalid, "Cannot add and remove")
	// Removing the range in use names the instance.
	err := set(sn().Fingerprint, SecondaryRange{"pods", pfx("172.20.0.0/16")})
	wantCode(t, err, FailedPrecondition, "projects/p/zones/us-central1-a/instances/vm1")
	// Removing an unused one works, and its space is free again.
	if err := set(sn().Fingerprint, cur); err != nil {
		t.Fatal(err)
	}
	if err := set(sn().Fingerprint, cur, SecondaryRange{"pods2", pfx("172.20.0.0/17")}); err != nil {
		t.Fatal(err)
	}
}

func TestUpdateAliasesMovesSlash32(t *testing.T) {
	f := seed000(t)
	_, a, err := f.vm("vm-a", NICSpec{Subnet: "subnet-a", Aliases: []AliasSpec{alias("10.128.9.9"), aliasIn("container-range", "/24")}})
	if err != nil {
		t.Fatal(err)
	}
	_, b, err := f.vm("vm-b", NICSpec{Subnet: "subnet-a"})
	if err != nil {
		t.Fatal(err)
	}
	upd := func(vm, fp string, specs ...AliasSpec) error {
		return f.run(func(tx *Txn) error {
			_, err := tx.UpdateAliases("p", "us-central1-a", vm, "nic0", fp, specs)
			return err
		})
	}
	wantCode(t, upd("vm-b", b[0].Fingerprint, alias("10.128.9.9")), InUse, "already being used")
	wantCode(t, upd("vm-a", "wrong", aliasIn("container-range", "172.16.0.0/24")), ConditionNotMet, "fingerprint")
	// Drop the /32 from A (keep the /24 untouched) ...
	keep := AliasSpec{Prefix: a[0].Aliases[1].Range, RangeName: "container-range"}
	if a[0].Aliases[1].Range != pfx("172.16.0.0/24") {
		keep = AliasSpec{Prefix: a[0].Aliases[0].Range, RangeName: a[0].Aliases[0].RangeName}
	}
	if err := upd("vm-a", a[0].Fingerprint, keep); err != nil {
		t.Fatal(err)
	}
	// ... and B takes it at once: an explicit request ignores the
	// quarantine that holds it back from automatic picks.
	if err := upd("vm-b", b[0].Fingerprint, alias("10.128.9.9")); err != nil {
		t.Fatal(err)
	}
	if got := f.s.Interface("p", b[0].ID).Aliases; len(got) != 1 || got[0].Range != pfx("10.128.9.9/32") {
		t.Errorf("vm-b aliases = %v", got)
	}
	// [] clears.
	cur := f.s.Interface("p", a[0].ID)
	if err := upd("vm-a", cur.Fingerprint); err != nil {
		t.Fatal(err)
	}
	if got := f.s.Interface("p", a[0].ID).Aliases; len(got) != 0 {
		t.Errorf("cleared aliases = %v", got)
	}
}

func TestQuarantineOnAutomaticPicks(t *testing.T) {
	f := seed000(t)
	_, a, _ := f.vm("vm-a", NICSpec{Subnet: "subnet-a", Aliases: []AliasSpec{aliasIn("container-range", "/24")}})
	first := a[0].Aliases[0].Range
	f.must(func(tx *Txn) error { return tx.DeleteInstance("p", "us-central1-a", "vm-a") })
	_, b, _ := f.vm("vm-b", NICSpec{Subnet: "subnet-a", Aliases: []AliasSpec{aliasIn("container-range", "/24")}})
	if b[0].Aliases[0].Range == first {
		t.Errorf("automatic pick reused the just-released %s", first)
	}
	if b[0].IP == a[0].IP {
		t.Errorf("automatic pick reused the just-released primary IP %s", a[0].IP)
	}
}

func TestMultiNIC(t *testing.T) {
	f := seed000(t)
	f.must(func(tx *Txn) error {
		if _, err := tx.CreateNetwork(Network{Project: "p", Name: "vpc2"}); err != nil {
			return err
		}
		_, err := tx.CreateSubnet(Subnet{Project: "p", Region: "us-central1", Name: "subnet-b", Network: "vpc2", Range: pfx("192.168.0.0/24")})
		return err
	})
	_, ifcs, err := f.vm("vm", NICSpec{Subnet: "subnet-a"}, NICSpec{Subnet: "subnet-b", Aliases: []AliasSpec{alias("/28")}})
	if err != nil {
		t.Fatal(err)
	}
	if ifcs[1].Name != "nic1" || ifcs[1].Aliases[0].Range != pfx("192.168.0.16/28") {
		t.Errorf("nic1 = %+v", ifcs[1])
	}
	_, _, err = f.vm("vm2", NICSpec{Subnet: "subnet-a"}, NICSpec{Network: "vpc", Subnet: "subnet-a"})
	wantCode(t, err, Invalid, "different network")
	var nine []NICSpec
	for range 9 {
		nine = append(nine, NICSpec{Subnet: "subnet-a"})
	}
	_, _, err = f.vm("vm3", nine...)
	wantCode(t, err, Invalid, "at most 8")
}

func TestDeleteRules(t *testing.T) {
	f := seed000(t)
	f.vm("vm1", NICSpec{Subnet: "subnet-a"})
	wantCode(t, f.run(func(tx *Txn) error { return tx.DeleteSubnet("p", "us-central1", "subnet-a") }), FailedPrecondition, "instances/vm1")
	wantCode(t, f.run(func(tx *Txn) error { return tx.DeleteNetwork("p", "vpc") }), FailedPrecondition, "already being used")
	f.must(func(tx *Txn) error { return tx.DeleteInstance("p", "us-central1-a", "vm1") })
	f.must(func(tx *Txn) error { return tx.DeleteSubnet("p", "us-central1", "subnet-a") })
	f.must(func(tx *Txn) error { return tx.DeleteNetwork("p", "vpc") })
	// An auto-mode network goes with its own subnets.
	f.must(func(tx *Txn) error {
		_, err := tx.CreateNetwork(Network{Project: "p", Name: "auto", AutoMode: true})
		return err
	})
	f.must(func(tx *Txn) error { return tx.DeleteNetwork("p", "auto") })
	if n := len(f.s.Subnets("p", "")); n != 0 {
		t.Errorf("%d subnets left", n)
	}
}

func TestPeering(t *testing.T) {
	f := seed000(t)
	f.must(func(tx *Txn) error {
		if _, err := tx.CreateNetwork(Network{Project: "q", Name: "other"}); err != nil {
			return err
		}
		_, err := tx.CreateSubnet(Subnet{Project: "q", Region: "us-central1", Name: "s", Network: "other", Range: pfx("172.16.8.0/24")})
		return err
	})
	peer := func(p, n, name, to string) error {
		return f.run(func(tx *Txn) error { _, err := tx.AddPeering(p, n, Peering{Name: name, Peer: to}); return err })
	}
	wantCode(t, peer("p", "vpc", "to-other", "q/other"), Invalid, "overlaps")
	f.must(func(tx *Txn) error { return tx.DeleteSubnet("q", "us-central1", "s") })
	if err := peer("p", "vpc", "to-other", "q/other"); err != nil {
		t.Fatal(err)
	}
	if st := f.s.Network("p", "vpc").Peerings[0].State; st != "INACTIVE" {
		t.Errorf("one-sided peering state %s", st)
	}
	if err := peer("q", "other", "back", "p/vpc"); err != nil {
		t.Fatal(err)
	}
	if st := f.s.Network("p", "vpc").Peerings[0].State; st != "ACTIVE" {
		t.Errorf("two-sided peering state %s", st)
	}
	// While peered, new ranges must not overlap the peer's.
	mk := func(sn Subnet) error { return f.run(func(tx *Txn) error { _, err := tx.CreateSubnet(sn); return err }) }
	wantCode(t, mk(Subnet{Project: "q", Region: "us-east1", Name: "s2", Network: "other", Range: pfx("10.1.0.0/24"), Secondary: []SecondaryRange{{"x", pfx("172.16.4.0/24")}}}),
		Invalid, "in peer network 'projects/p/global/networks/vpc'")
	wantCode(t, f.run(func(tx *Txn) error { return tx.DeleteNetwork("p", "vpc") }), FailedPrecondition, "peering")
	f.must(func(tx *Txn) error { _, err := tx.RemovePeering("p", "vpc", "to-other"); return err })
	if st := f.s.Network("q", "other").Peerings[0].State; st != "INACTIVE" {
		t.Errorf("after removal peer side is %s", st)
	}
}

func TestExpandRange(t *testing.T) {
	f := newFixture(t)
	f.must(func(tx *Txn) error {
		tx.CreateNetwork(Network{Project: "p", Name: "vpc"})
		if _, err := tx.CreateSubnet(Subnet{Project: "p", Region: "us-central1", Name: "a", Network: "vpc", Range: pfx("10.0.0.0/24")}); err != nil {
			return err
		}
		_, err := tx.CreateSubnet(Subnet{Project: "p", Region: "us-central1", Name: "b", Network: "vpc", Range: pfx("10.0.4.0/24")})
		return err
	})
	exp := func(r string) error {
		return f.run(func(tx *Txn) error { _, err := tx.ExpandRange("p", "us-central1", "a", pfx(r)); return err })
	}
	wantCode(t, exp("10.0.0.0/25"), Invalid, "superset")
	wantCode(t, exp("10.0.0.0/21"), Invalid, "conflicts with existing subnetwork 'b'")
	if err := exp("10.0.0.0/23"); err != nil {
		t.Fatal(err)
	}
	// The old broadcast is assignable now; the new one is reserved.
	if _, _, err := f.vm("vm", NICSpec{Subnet: "a", IP: netip.MustParseAddr("10.0.0.255")}); err != nil {
		t.Errorf("old broadcast not usable after expansion: %v", err)
	}
	_, _, err := f.vm("vm2", NICSpec{Subnet: "a", IP: netip.MustParseAddr("10.0.1.255")})
	wantCode(t, err, InUse, "already being used")
}

func TestLoadRebuildsIndexes(t *testing.T) {
	f := seed000(t)
	f.vm("vm1", NICSpec{Subnet: "subnet-a", Aliases: []AliasSpec{aliasIn("container-range", "/24"), alias("10.128.3.3")}})
	var snap Snapshot
	for _, p := range f.s.Projects() {
		snap.Networks = append(snap.Networks, f.s.Networks(p)...)
		snap.Subnets = append(snap.Subnets, f.s.Subnets(p, "")...)
		snap.Instances = append(snap.Instances, f.s.Instances(p, "")...)
		snap.Interfaces = append(snap.Interfaces, f.s.Interfaces(p)...)
	}
	s2, err := Load(snap)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := snapshot(f.s), snapshot(s2); strings.Count(a, "=") != strings.Count(b, "=") {
		t.Errorf("reloaded state differs:\n%s\n%s", a, b)
	}
	g := &fixture{t: t, s: s2, id: 1000}
	_, _, err = g.vm("vm2", NICSpec{Subnet: "subnet-a", Aliases: []AliasSpec{alias("10.128.3.3")}})
	wantCode(t, err, InUse, "already being used")
}

func TestUpdateKeepsSatisfiedNetmask(t *testing.T) {
	f := seed000(t)
	_, a, err := f.vm("vm", NICSpec{Subnet: "subnet-a", Aliases: []AliasSpec{alias("/27"), alias("10.128.7.29"), alias("10.128.7.30")}})
	if err != nil {
		t.Fatal(err)
	}
	before := a[0].Aliases[0]
	f.must(func(tx *Txn) error {
		_, err := tx.UpdateAliases("p", "us-central1-a", "vm", "nic0", a[0].Fingerprint, []AliasSpec{alias("/27"), alias("10.128.7.29")})
		return err
	})
	got := f.s.Interface("p", a[0].ID).Aliases
	if len(got) != 2 || got[0] != before {
		t.Errorf("aliases after update = %v, want the /27 %s kept", got, before.Range)
	}
}

// Deleting an instance or dropping an alias through the GCE path ends the
// EIP associations that pointed at them.
func TestGCEPathsEndEIPAssociations(t *testing.T) {
	f := seed000(t)
	if err := f.s.Configure(Config{EIPPools: []netip.Prefix{pfx("203.0.113.0/28")}}); err != nil {
		t.Fatal(err)
	}
	_, a, err := f.vm("vm1", NICSpec{Subnet: "subnet-a", Aliases: []AliasSpec{alias("10.128.9.9")}})
	if err != nil {
		t.Fatal(err)
	}
	f.must(func(tx *Txn) error {
		for i, id := range []string{"eip-a", "eip-b"} {
			if _, err := tx.AllocateEIP(EIP{Project: "p", ID: id, Address: netip.MustParseAddr(fmt.Sprintf("203.0.113.%d", i+1))}); err != nil {
				return err
			}
		}
		if _, err := tx.AssociateEIP(AssociateEIPReq{Project: "p", ID: "eip-a", InstanceType: EIPToInstance, InstanceID: "vm1"}); err != nil {
			return err
		}
		_, err := tx.AssociateEIP(AssociateEIPReq{Project: "p", ID: "eip-b", InstanceType: EIPToENI, InstanceID: a[0].ID, PrivateIP: netip.MustParseAddr("10.128.9.9")})
		return err
	})
	f.must(func(tx *Txn) error {
		_, err := tx.UpdateAliases("p", "us-central1-a", "vm1", "nic0", f.s.Interface("p", a[0].ID).Fingerprint, nil)
		return err
	})
	if e := f.s.EIP("p", "eip-b"); e.Status() != EIPAvailable {
		t.Errorf("EIP on a removed alias is %s", e.Status())
	}
	if e := f.s.EIP("p", "eip-a"); e.Status() != EIPInUse {
		t.Errorf("instance EIP is %s before the delete", e.Status())
	}
	f.must(func(tx *Txn) error { return tx.DeleteInstance("p", "us-central1-a", "vm1") })
	if e := f.s.EIP("p", "eip-a"); e.Status() != EIPAvailable {
		t.Errorf("EIP of a deleted instance is %s", e.Status())
	}
}

func TestDeleteNetworkWithPolicy(t *testing.T) {
	f := newFixture(t)
	f.must(func(tx *Txn) error {
		if _, err := tx.CreateNetwork(Network{Project: "p", Name: "vpc"}); err != nil {
			return err
		}
		if err := tx.CreateDefaultRoute("p", "vpc"); err != nil {
			return err
		}
		_, err := tx.CreateFirewall(Firewall{Project: "p", Name: "allow-ssh", Network: "vpc", Direction: "INGRESS",
			Allowed: []FirewallProtocol{{Protocol: "tcp", Ports: []string{"22"}}}})
		return err
	})
	if len(f.s.RoutesOfNetwork("p", "vpc")) != 1 {
		t.Fatalf("routes = %v", f.s.RoutesOfNetwork("p", "vpc"))
	}
	wantCode(t, f.run(func(tx *Txn) error { return tx.DeleteNetwork("p", "vpc") }), FailedPrecondition, "firewalls/allow-ssh")
	f.must(func(tx *Txn) error { return tx.DeleteFirewall("p", "allow-ssh") })
	f.must(func(tx *Txn) error { return tx.DeleteNetwork("p", "vpc") })
	if len(f.s.RoutesOfNetwork("p", "vpc")) != 0 {
		t.Error("the default route outlived its network")
	}
}
