package model

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

// extFixture is seed 000's network with a small external pool
// 203.0.113.0/29 (.1 to .6 usable), vm1 with an ephemeral external IP,
// an Available EIP 203.0.113.5 in us-central1, one in europe-west1
// (.6) and vm2 without an access config.
func extFixture(t *testing.T) *fixture {
	t.Helper()
	f := seed000(t)
	if err := f.s.Configure(Config{EIPPools: []netip.Prefix{pfx("203.0.113.0/29")}}); err != nil {
		t.Fatal(err)
	}
	f.must(func(tx *Txn) error {
		if _, err := tx.AllocateEIP(EIP{Project: "p", ID: "eip-static", Region: "us-central1", Address: addr("203.0.113.5")}); err != nil {
			return err
		}
		_, err := tx.AllocateEIP(EIP{Project: "p", ID: "eip-europe", Region: "europe-west1", Address: addr("203.0.113.6")})
		return err
	})
	if _, _, err := f.vm("vm1", NICSpec{Subnet: "subnet-a", AccessConfigs: []AccessConfigSpec{{Name: "external-nat", Type: AccessConfigType}}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.vm("vm2", NICSpec{Subnet: "subnet-a"}); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) nic0(vm string) *Interface {
	return f.s.NICs(f.s.Instance("p", "us-central1-a", vm))[0]
}

func acs(specs ...AccessConfigSpec) NICSpec {
	return NICSpec{Subnet: "subnet-a", AccessConfigs: specs}
}

func TestAccessConfigRules(t *testing.T) {
	cases := []struct {
		name  string
		do    func(f *fixture, tx *Txn) error
		code  Code
		field string
		want  string
	}{
		{"two access configs", func(f *fixture, tx *Txn) error {
			_, _, err := tx.CreateInstance(CreateInstanceReq{Instance: Instance{Project: "p", Zone: "us-central1-a", Name: "x"},
				NICs: []NICSpec{acs(AccessConfigSpec{}, AccessConfigSpec{Name: "second"})}})
			return err
		}, Invalid, "networkInterfaces[0].accessConfigs", "At most one access config currently supported"},
		{"IPv6 type", func(f *fixture, tx *Txn) error {
			_, _, err := tx.CreateInstance(CreateInstanceReq{Instance: Instance{Project: "p", Zone: "us-central1-a", Name: "x"},
				NICs: []NICSpec{acs(AccessConfigSpec{Type: "DIRECT_IPV6"})}})
			return err
		}, Invalid, "networkInterfaces[0].accessConfigs[0].type", "ipv6AccessConfigs"},
		{"unknown type", func(f *fixture, tx *Txn) error {
			_, err := tx.AddAccessConfig("p", "us-central1-a", "vm2", "nic0", AccessConfigSpec{Type: "NAT"})
			return err
		}, Invalid, "type", "must be ONE_TO_ONE_NAT"},
		{"unknown tier", func(f *fixture, tx *Txn) error {
			_, err := tx.AddAccessConfig("p", "us-central1-a", "vm2", "nic0", AccessConfigSpec{NetworkTier: "GOLD"})
			return err
		}, Invalid, "networkTier", "PREMIUM or STANDARD"},
		{"IPv6 natIP", func(f *fixture, tx *Txn) error {
			_, err := tx.AddAccessConfig("p", "us-central1-a", "vm2", "nic0", AccessConfigSpec{NatIP: addr("2001:db8::1")})
			return err
		}, Invalid, "natIP", "IPv4"},
		{"natIP outside the pools", func(f *fixture, tx *Txn) error {
			_, err := tx.AddAccessConfig("p", "us-central1-a", "vm2", "nic0", AccessConfigSpec{NatIP: addr("198.51.100.1")})
			return err
		}, Invalid, "natIP", "not in any EIP pool of this server (203.0.113.0/29)"},
		{"natIP is the pool's broadcast address", func(f *fixture, tx *Txn) error {
			_, err := tx.AddAccessConfig("p", "us-central1-a", "vm2", "nic0", AccessConfigSpec{NatIP: addr("203.0.113.7")})
			return err
		}, Invalid, "natIP", "network or broadcast address"},
		{"natIP of another instance", func(f *fixture, tx *Txn) error {
			_, err := tx.AddAccessConfig("p", "us-central1-a", "vm2", "nic0", AccessConfigSpec{NatIP: f.nic0("vm1").ExternalIP})
			return err
		}, InUse, "natIP", "is already being used by another resource"},
		{"natIP of another project's EIP", func(f *fixture, tx *Txn) error {
			_, err := tx.AddAccessConfig("p", "us-central1-a", "vm2", "nic0", AccessConfigSpec{NatIP: addr("203.0.113.4")})
			return err
		}, InUse, "natIP", "IP '203.0.113.4' is already being used by another resource."},
		{"natIP of an EIP in another region", func(f *fixture, tx *Txn) error {
			_, err := tx.AddAccessConfig("p", "us-central1-a", "vm2", "nic0", AccessConfigSpec{NatIP: addr("203.0.113.6")})
			return err
		}, Invalid, "natIP", "not found in region 'us-central1'"},
		{"second access config on a NIC", func(f *fixture, tx *Txn) error {
			_, err := tx.AddAccessConfig("p", "us-central1-a", "vm1", "nic0", AccessConfigSpec{})
			return err
		}, Invalid, "networkInterface", "already has 'external-nat'"},
		{"unknown NIC", func(f *fixture, tx *Txn) error {
			_, err := tx.AddAccessConfig("p", "us-central1-a", "vm2", "nic3", AccessConfigSpec{})
			return err
		}, Invalid, "networkInterface", "has no network interface 'nic3'"},
		{"unknown instance", func(f *fixture, tx *Txn) error {
			_, err := tx.AddAccessConfig("p", "us-central1-a", "vm9", "nic0", AccessConfigSpec{})
			return err
		}, NotFound, "", "vm9"},
		{"delete with a wrong name", func(f *fixture, tx *Txn) error {
			_, err := tx.DeleteAccessConfig("p", "us-central1-a", "vm1", "nic0", "External NAT")
			return err
		}, Invalid, "accessConfig", "its access config is 'external-nat'"},
		{"delete where there is none", func(f *fixture, tx *Txn) error {
			_, err := tx.DeleteAccessConfig("p", "us-central1-a", "vm2", "nic0", "external-nat")
			return err
		}, Invalid, "accessConfig", "has no access config"},
		{"pools exhausted", func(f *fixture, tx *Txn) error {
			for i := range 2 { // .1 to .4 minus vm1's and project q's: two left
				if _, err := tx.AllocateEIP(EIP{Project: "p", ID: fmt.Sprintf("eip-%d", i)}); err != nil {
					return err
				}
			}
			_, err := tx.AddAccessConfig("p", "us-central1-a", "vm2", "nic0", AccessConfigSpec{})
			return err
		}, Exhausted, "natIP", "No external IP address is left in the pools of this server (203.0.113.0/29): start it with more --eip-pool ranges, or create the instance without an access config (gcloud/aliasnet --no-address)."},
		{"template with two access configs", func(f *fixture, tx *Txn) error {
			_, err := tx.CreateTemplate(InstanceTemplate{Project: "p", Name: "t", NICs: []NICSpec{acs(AccessConfigSpec{}, AccessConfigSpec{})}})
			return err
		}, Invalid, "properties.networkInterfaces[0].accessConfigs", "At most one"},
		{"Alibaba EIP on a NIC with an access config", func(f *fixture, tx *Txn) error {
			_, err := tx.AssociateEIP(AssociateEIPReq{Project: "p", ID: "eip-static", InstanceType: EIPToENI, InstanceID: f.nic0("vm1").ID, PrivateIP: f.nic0("vm1").IP})
			return err
		}, FailedPrecondition, "", "already has the EIP ac-"},
		{"Alibaba release of an access config's address", func(f *fixture, tx *Txn) error {
			return tx.ReleaseEIP("p", accessConfigEIPID(f.nic0("vm1").ID))
		}, FailedPrecondition, "", "not an EIP; delete the access config"},
		{"Alibaba unassociate of an access config's address", func(f *fixture, tx *Txn) error {
			_, err := tx.UnassociateEIP("p", accessConfigEIPID(f.nic0("vm1").ID), "")
			return err
		}, FailedPrecondition, "", "projects/p/zones/us-central1-a/instances/vm1"},
		{"Alibaba EIP at an access config's address", func(f *fixture, tx *Txn) error {
			_, err := tx.AllocateEIP(EIP{Project: "p", ID: "eip-x", Address: f.nic0("vm1").ExternalIP})
			return err
		}, InUse, "ipAddress", "is already allocated"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := extFixture(t)
			f.must(func(tx *Txn) error {
				_, err := tx.AllocateEIP(EIP{Project: "q", ID: "eip-q", Address: addr("203.0.113.4")})
				return err
			})
			before := dumpState(f.s)
			err := f.run(func(tx *Txn) error { return c.do(f, tx) })
			wantCode(t, err, c.code, c.want)
			var me *Error
			if errors.As(err, &me) && me.Field != c.field && !strings.HasSuffix(me.Field, "."+c.field) {
				t.Errorf("field %q, want %q", me.Field, c.field)
			}
			if after := dumpState(f.s); after != before {
				t.Errorf("refused request changed the state:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}

func TestAccessConfigLifecycle(t *testing.T) {
	f := extFixture(t)
	pool := pfx("203.0.113.0/29")
	vm1 := f.nic0("vm1")
	first := vm1.ExternalIP
	if ac := vm1.AccessConfig; !pool.Contains(first) || first == addr("203.0.113.5") || ac == nil ||
		ac.Name != "external-nat" || ac.NetworkTier != TierPremium || !ac.Ephemeral || ac.Extra != nil {
		t.Fatalf("vm1 nic0 = %s %+v", first, vm1.AccessConfig)
	}
	if e := f.s.EIP("p", accessConfigEIPID(vm1.ID)); e == nil || !e.ForAccessConfig || e.Address != first || e.Interface != vm1.ID || e.Region != "us-central1" {
		t.Fatalf("record of the address: %+v", e)
	}

	// Stop releases the ephemeral address and keeps the access config;
	// start picks another (the released one waits in quarantine).
	power := func(status string) {
		f.must(func(tx *Txn) error {
			_, err := tx.SetInstanceStatus("p", "us-central1-a", "vm1", status)
			return err
		})
	}
	power(InstanceStopped)
	if n := f.nic0("vm1"); n.ExternalIP.IsValid() || n.AccessConfig == nil || f.s.EIP("p", accessConfigEIPID(n.ID)) != nil {
		t.Fatalf("stopped: %s %+v", n.ExternalIP, n.AccessConfig)
	}
	if n := f.nic0("vm1"); n.Fingerprint == vm1.Fingerprint {
		t.Error("the NIC fingerprint did not change with its external IP")
	}
	// The address-less access config still owns the NIC's NAT.
	err := f.run(func(tx *Txn) error {
		_, err := tx.AssociateEIP(AssociateEIPReq{Project: "p", ID: "eip-static", InstanceType: EIPToENI, InstanceID: vm1.ID, PrivateIP: vm1.IP})
		return err
	})
	wantErr(t, err, FailedPrecondition, ErrEIPDuplicate)
	power(InstanceRunning)
	second := f.nic0("vm1").ExternalIP
	if !pool.Contains(second) || second == first {
		t.Fatalf("restarted with %s (was %s)", second, first)
	}

	// An Available EIP named as natIP is associated, like a reserved
	// static address, and is Available again when the access config goes.
	f.must(func(tx *Txn) error {
		_, err := tx.AddAccessConfig("p", "us-central1-a", "vm2", "nic0", AccessConfigSpec{NatIP: addr("203.0.113.5"), NetworkTier: TierStandard})
		return err
	})
	vm2 := f.nic0("vm2")
	if e := f.s.EIP("p", "eip-static"); e.Status() != EIPInUse || e.Interface != vm2.ID || vm2.ExternalIP != e.Address ||
		vm2.AccessConfig.Name != DefaultAccessConfigName || vm2.AccessConfig.NetworkTier != TierStandard || vm2.AccessConfig.Ephemeral {
		t.Fatalf("static natIP: EIP %+v, NIC %s %+v", e, vm2.ExternalIP, vm2.AccessConfig)
	}
	f.must(func(tx *Txn) error {
		_, err := tx.SetInstanceStatus("p", "us-central1-a", "vm2", InstanceStopped)
		return err
	})
	if f.nic0("vm2").ExternalIP != addr("203.0.113.5") {
		t.Fatal("a stop released an address the user named")
	}
	f.must(func(tx *Txn) error {
		_, err := tx.DeleteAccessConfig("p", "us-central1-a", "vm2", "nic0", DefaultAccessConfigName)
		return err
	})
	if e, n := f.s.EIP("p", "eip-static"), f.nic0("vm2"); e.Status() != EIPAvailable || n.ExternalIP.IsValid() || n.AccessConfig != nil {
		t.Fatalf("after deleteAccessConfig: EIP %s, NIC %s %+v", e.Status(), n.ExternalIP, n.AccessConfig)
	}

	// A free pool address named as natIP is the access config's own, and
	// goes back to the pool with the instance.
	f.must(func(tx *Txn) error {
		_, err := tx.AddAccessConfig("p", "us-central1-a", "vm2", "nic0", AccessConfigSpec{NatIP: first})
		return err
	})
	if n := f.nic0("vm2"); n.ExternalIP != first || n.AccessConfig.Ephemeral {
		t.Fatalf("natIP %s: %s %+v", first, n.ExternalIP, n.AccessConfig)
	}
	// An Alibaba EIP associated through the ECS API shows as an access
	// config too, and deleteAccessConfig ends that association.
	var vm3 *Interface
	f.must(func(tx *Txn) error {
		_, ifcs, err := tx.CreateInstance(CreateInstanceReq{Instance: Instance{Project: "p", Zone: "us-central1-a", Name: "vm3"}, NICs: []NICSpec{{Subnet: "subnet-a"}}})
		if err != nil {
			return err
		}
		vm3 = ifcs[0]
		_, err = tx.AssociateEIP(AssociateEIPReq{Project: "p", ID: "eip-static", InstanceType: EIPToENI, InstanceID: vm3.ID, PrivateIP: vm3.IP})
		return err
	})
	if ac := f.nic0("vm3").ShownAccessConfig(); ac == nil || ac.Name != DefaultAccessConfigName {
		t.Fatalf("EIP shown as %+v", ac)
	}
	f.must(func(tx *Txn) error {
		_, err := tx.DeleteAccessConfig("p", "us-central1-a", "vm3", "nic0", DefaultAccessConfigName)
		return err
	})
	if e := f.s.EIP("p", "eip-static"); e.Status() != EIPAvailable || f.nic0("vm3").ExternalIP.IsValid() {
		t.Fatalf("EIP after deleteAccessConfig: %+v", e)
	}

	// Deleting the instances gives every access config address back.
	for _, vm := range []string{"vm1", "vm2", "vm3"} {
		f.must(func(tx *Txn) error { return tx.DeleteInstance("p", "us-central1-a", vm) })
	}
	pools := f.s.EIPPools()
	if len(pools) != 1 || pools[0].Allocated != 4 { // .0, .7 and the two EIPs
		t.Fatalf("pools after the deletes: %+v", pools)
	}
	if es := f.s.EIPs("p"); len(es) != 2 {
		t.Fatalf("EIP records left: %d", len(es))
	}
}

// Same-named instances in two zones: deleting one leaves the other's
// external IP alone.
func TestAccessConfigSameNameOtherZone(t *testing.T) {
	f := extFixture(t)
	f.must(func(tx *Txn) error {
		_, _, err := tx.CreateInstance(CreateInstanceReq{Instance: Instance{Project: "p", Zone: "us-central1-b", Name: "vm1"}, NICs: []NICSpec{acs(AccessConfigSpec{})}})
		return err
	})
	other := f.s.NICs(f.s.Instance("p", "us-central1-b", "vm1"))[0]
	f.must(func(tx *Txn) error { return tx.DeleteInstance("p", "us-central1-a", "vm1") })
	if e := f.s.EIP("p", accessConfigEIPID(other.ID)); e == nil || e.Address != other.ExternalIP {
		t.Fatalf("the other zone's vm1 lost its external IP: %+v", e)
	}
}

// GCE external IPs and Alibaba EIPs, taken in turns from one pool, never
// share an address, and run out together.
func TestAccessConfigsAndEIPsShareThePool(t *testing.T) {
	f := seed000(t)
	if err := f.s.Configure(Config{EIPPools: []netip.Prefix{pfx("203.0.113.0/29")}}); err != nil {
		t.Fatal(err)
	}
	seen := map[netip.Addr]string{}
	for i := range 6 {
		var a netip.Addr
		if i%2 == 0 {
			_, ifcs, err := f.vm(fmt.Sprintf("vm%d", i), acs(AccessConfigSpec{}))
			if err != nil {
				t.Fatal(err)
			}
			a = ifcs[0].ExternalIP
		} else {
			f.must(func(tx *Txn) error {
				e, err := tx.AllocateEIP(EIP{Project: "p", ID: fmt.Sprintf("eip-%d", i)})
				if e != nil {
					a = e.Address
				}
				return err
			})
		}
		if prev, dup := seen[a]; dup || !a.IsValid() {
			t.Fatalf("step %d got %s, already held by %s", i, a, prev)
		}
		seen[a] = fmt.Sprint(i)
	}
	_, _, err := f.vm("vm-late", acs(AccessConfigSpec{}))
	wantCode(t, err, Exhausted, "No external IP address is left")
	err = f.run(func(tx *Txn) error {
		_, err := tx.AllocateEIP(EIP{Project: "p", ID: "eip-late"})
		return err
	})
	wantErr(t, err, Exhausted, ErrEIPExhausted)
}

// Without --eip-pool the documentation ranges are the pools.
func TestDefaultExternalPools(t *testing.T) {
	f := seed000(t)
	if err := f.s.Configure(Config{}); err != nil {
		t.Fatal(err)
	}
	_, ifcs, err := f.vm("vm1", acs(AccessConfigSpec{}))
	if err != nil {
		t.Fatal(err)
	}
	in := false
	for _, p := range DefaultEIPPools {
		in = in || p.Contains(ifcs[0].ExternalIP)
	}
	if !in {
		t.Fatalf("external IP %s is outside %v", ifcs[0].ExternalIP, DefaultEIPPools)
	}
	if got := len(f.s.EIPPools()); got != len(DefaultEIPPools) {
		t.Fatalf("%d pools", got)
	}
}

// A template's access config applies to instances made from it.
func TestAccessConfigFromTemplate(t *testing.T) {
	f := extFixture(t)
	var ifc *Interface
	f.must(func(tx *Txn) error {
		it, err := tx.CreateTemplate(InstanceTemplate{Project: "p", Name: "t", NICs: []NICSpec{acs(AccessConfigSpec{Name: "nat"})}})
		if err != nil {
			return err
		}
		_, ifcs, err := tx.CreateInstance(CreateInstanceReq{Instance: Instance{Project: "p", Zone: "us-central1-a", Name: "from-t"}, NICs: it.NICs})
		if err == nil {
			ifc = ifcs[0]
		}
		return err
	})
	if !ifc.ExternalIP.IsValid() || ifc.AccessConfig.Name != "nat" {
		t.Fatalf("instance from template: %s %+v", ifc.ExternalIP, ifc.AccessConfig)
	}
}

// Another replica that applies the changes, and a fresh Load, end with
// the same external addresses and pools.
func TestAccessConfigReplicates(t *testing.T) {
	cfg := Config{EIPPools: []netip.Prefix{pfx("203.0.113.0/29")}}
	f := seed000(t)
	dst := NewState()
	if err := dst.Configure(cfg); err != nil {
		t.Fatal(err)
	}
	if err := f.s.Configure(cfg); err != nil {
		t.Fatal(err)
	}
	replicate(t, changesOf(t, snapshotOf(f.s)), dst)
	steps := []func(tx *Txn) error{
		func(tx *Txn) error {
			_, _, err := tx.CreateInstance(CreateInstanceReq{Instance: Instance{Project: "p", Zone: "us-central1-a", Name: "vm1"}, NICs: []NICSpec{acs(AccessConfigSpec{})}})
			return err
		},
		func(tx *Txn) error {
			_, err := tx.SetInstanceStatus("p", "us-central1-a", "vm1", InstanceStopped)
			return err
		},
		func(tx *Txn) error {
			_, err := tx.SetInstanceStatus("p", "us-central1-a", "vm1", InstanceRunning)
			return err
		},
		func(tx *Txn) error {
			_, err := tx.DeleteAccessConfig("p", "us-central1-a", "vm1", "nic0", DefaultAccessConfigName)
			return err
		},
		func(tx *Txn) error {
			_, err := tx.AddAccessConfig("p", "us-central1-a", "vm1", "nic0", AccessConfigSpec{NatIP: addr("203.0.113.3")})
			return err
		},
		func(tx *Txn) error { return tx.DeleteInstance("p", "us-central1-a", "vm1") },
	}
	for i, step := range steps {
		tx := f.tx()
		if err := step(tx); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		replicate(t, tx.Changes(), dst)
		if got, want := dumpState(dst), dumpState(f.s); got != want {
			t.Fatalf("step %d: replica differs\nsource:\n%s\nreplica:\n%s", i, want, got)
		}
		loaded, err := Load(snapshotOf(f.s))
		if err != nil {
			t.Fatal(err)
		}
		if err := loaded.Configure(cfg); err != nil {
			t.Fatal(err)
		}
		if got, want := dumpState(loaded), dumpState(f.s); got != want {
			t.Fatalf("step %d: Load differs\nsource:\n%s\nloaded:\n%s", i, want, got)
		}
	}
}

// changesOf turns a snapshot into the changes that create it.
func changesOf(t *testing.T, snap Snapshot) []Change {
	t.Helper()
	var out []Change
	for _, n := range snap.Networks {
		out = append(out, Change{Key: NetworkKey(n.Project, n.Name), Value: n})
	}
	for _, sn := range snap.Subnets {
		out = append(out, Change{Key: SubnetKey(sn.Project, sn.Region, sn.Name), Value: sn})
	}
	return out
}
