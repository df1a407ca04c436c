package model

import (
	"testing"
)

func privateZone(name, dnsName string, networks ...string) DNSZone {
	return DNSZone{Project: "p", Name: name, DNSName: dnsName, Visibility: VisibilityPrivate, Networks: networks}
}

func TestDNSZoneRules(t *testing.T) {
	f := seed000(t)
	f.must(func(tx *Txn) error {
		_, err := tx.CreateNetwork(Network{Project: "p", Name: "vpc2"})
		return err
	})
	for _, tc := range []struct {
		name  string
		z     DNSZone
		code  Code
		field string
		text  string
	}{
		{"bad name", privateZone("Z", "z.internal.", "p/vpc"), Invalid, "name", "regex"},
		{"no dns name", privateZone("z", "", "p/vpc"), Required, "dnsName", "dnsName"},
		{"not fully qualified", privateZone("z", "z.internal", "p/vpc"), Invalid, "dnsName", "dot"},
		{"bad label", privateZone("z", "a..internal.", "p/vpc"), Invalid, "dnsName", "label"},
		{"bad visibility", DNSZone{Project: "p", Name: "z", DNSName: "z.internal.", Visibility: "secret"}, Invalid, "visibility", "private"},
		{"public with networks", DNSZone{Project: "p", Name: "z", DNSName: "z.internal.", Visibility: VisibilityPublic, Networks: []string{"p/vpc"}}, Invalid, "privateVisibilityConfig", "private"},
		{"missing network", privateZone("z", "z.internal.", "p/nope"), NotFound, "privateVisibilityConfig.networks[0].networkUrl", "nope"},
		{"network twice", privateZone("z", "z.internal.", "p/vpc", "p/vpc"), Invalid, "privateVisibilityConfig.networks[1].networkUrl", "twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := f.run(func(tx *Txn) error { _, err := tx.CreateDNSZone(tc.z); return err })
			wantField(t, err, tc.code, tc.field, tc.text)
		})
	}

	// Same dnsName: fine for disjoint networks, refused when a network
	// would see both (the DNS server could not choose).
	f.must(func(tx *Txn) error {
		_, err := tx.CreateDNSZone(privateZone("a", "Corp.Internal.", "p/vpc"))
		return err
	})
	if z := f.s.DNSZone("p", "a"); z.DNSName != "corp.internal." {
		t.Errorf("dnsName not normalised: %q", z.DNSName)
	}
	f.must(func(tx *Txn) error {
		_, err := tx.CreateDNSZone(privateZone("b", "corp.internal.", "p/vpc2"))
		return err
	})
	err := f.run(func(tx *Txn) error {
		_, err := tx.CreateDNSZone(privateZone("c", "corp.internal.", "p/vpc2"))
		return err
	})
	wantField(t, err, Invalid, "dnsName", "network 'p/vpc2'")
	err = f.run(func(tx *Txn) error {
		_, err := tx.CreateDNSZone(privateZone("a", "other.internal.", "p/vpc2"))
		return err
	})
	if CodeOf(err) != AlreadyExists {
		t.Errorf("duplicate zone name: %v", err)
	}
	// Two public zones with one name collide, across projects too.
	f.must(func(tx *Txn) error {
		_, err := tx.CreateDNSZone(DNSZone{Project: "p", Name: "pub", DNSName: "pub.internal."})
		return err
	})
	if z := f.s.DNSZone("p", "pub"); z.Visibility != VisibilityPublic {
		t.Errorf("default visibility %q, want public (as Cloud DNS)", z.Visibility)
	}
	err = f.run(func(tx *Txn) error {
		_, err := tx.CreateDNSZone(DNSZone{Project: "q", Name: "pub", DNSName: "pub.internal.", Visibility: VisibilityPublic})
		return err
	})
	wantField(t, err, Invalid, "dnsName", "every network")
	// Update: networks change, the name may not.
	u := *f.s.DNSZone("p", "b")
	u.Networks = []string{"p/vpc"}
	wantField(t, f.run(func(tx *Txn) error { _, err := tx.UpdateDNSZone(u); return err }), Invalid, "dnsName", "zone 'a'")
	u.Networks, u.DNSName = nil, "x.internal."
	wantField(t, f.run(func(tx *Txn) error { _, err := tx.UpdateDNSZone(u); return err }), Invalid, "dnsName", "cannot be changed")
}

func rr(name, typ string, ttl int, datas ...string) DNSRecordSet {
	return DNSRecordSet{Name: name, Type: typ, TTL: ttl, RRDatas: datas}
}

func TestDNSRecordChanges(t *testing.T) {
	f := seed000(t)
	f.must(func(tx *Txn) error { _, err := tx.CreateDNSZone(privateZone("z", "c.internal.", "p/vpc")); return err })
	change := func(adds, dels []DNSRecordSet) error {
		return f.run(func(tx *Txn) error { _, _, err := tx.ChangeRRSets("p", "z", adds, dels); return err })
	}
	if err := change([]DNSRecordSet{rr("Web.C.Internal.", "a", 60, "172.16.0.5"), rr("c.internal.", "TXT", 60, `"apex"`)}, nil); err != nil {
		t.Fatal(err)
	}
	z := f.s.DNSZone("p", "z")
	if r, ok := z.RRSet("web.c.internal.", "A"); !ok || r.TTL != 60 || z.LastChange != 1 || len(z.Changes) != 1 {
		t.Fatalf("rrset not stored normalised: %+v", z)
	}
	for _, tc := range []struct {
		name       string
		adds, dels []DNSRecordSet
		code       Code
		field      string
		text       string
	}{
		{"empty change", nil, nil, Required, "additions", "at least one"},
		{"outside the zone", []DNSRecordSet{rr("x.other.internal.", "A", 60, "10.0.0.1")}, nil, Invalid, "additions[0].name", "c.internal."},
		{"duplicate", []DNSRecordSet{rr("web.c.internal.", "A", 60, "10.0.0.1")}, nil, AlreadyExists, "additions[0]", "already exists"},
		{"CNAME beside A", []DNSRecordSet{rr("web.c.internal.", "CNAME", 60, "x.c.internal.")}, nil, Invalid, "additions[0].type", "CNAME"},
		{"no rrdatas", []DNSRecordSet{rr("n.c.internal.", "A", 60)}, nil, Required, "additions[0].rrdatas", "rrdatas"},
		{"no type", []DNSRecordSet{rr("n.c.internal.", "", 60, "10.0.0.1")}, nil, Required, "additions[0].type", "type"},
		{"delete missing", nil, []DNSRecordSet{rr("nope.c.internal.", "A", 60, "10.0.0.1")}, NotFound, "deletions[0]", "does not exist"},
		{"delete mismatch", nil, []DNSRecordSet{rr("web.c.internal.", "A", 300, "172.16.0.5")}, ConditionNotMet, "deletions[0]", "ttl 60"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantField(t, change(tc.adds, tc.dels), tc.code, tc.field, tc.text)
			if z2 := f.s.DNSZone("p", "z"); z2 != z {
				t.Fatal("a refused change was stored")
			}
		})
	}
	// Replace in one change: delete then add.
	if err := change([]DNSRecordSet{rr("web.c.internal.", "A", 60, "172.16.0.6")}, []DNSRecordSet{rr("web.c.internal.", "A", 60, "172.16.0.5")}); err != nil {
		t.Fatal(err)
	}
	if err := f.run(func(tx *Txn) error { return tx.DeleteDNSZone("p", "z") }); CodeOf(err) != FailedPrecondition {
		t.Errorf("deleting a non-empty zone: %v", err)
	}
	z = f.s.DNSZone("p", "z")
	if err := change(nil, z.RRSets); err != nil {
		t.Fatal(err)
	}
	f.must(func(tx *Txn) error { return tx.DeleteDNSZone("p", "z") })
	// Change history is bounded.
	f.must(func(tx *Txn) error { _, err := tx.CreateDNSZone(privateZone("h", "h.internal.", "p/vpc")); return err })
	for i := range MaxZoneChanges + 5 {
		name := "n" + itoa(i) + ".h.internal."
		f.must(func(tx *Txn) error {
			_, _, err := tx.ChangeRRSets("p", "h", []DNSRecordSet{rr(name, "A", 60, "10.0.0.1")}, nil)
			return err
		})
	}
	if z := f.s.DNSZone("p", "h"); len(z.Changes) != MaxZoneChanges || z.LastChange != MaxZoneChanges+5 || z.Changes[0].ID != 6 {
		t.Errorf("history: %d changes, last %d, first id %d", len(z.Changes), z.LastChange, z.Changes[0].ID)
	}
}
