package dnsrt

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/aliasnet/aliasnet/internal/control"
	"github.com/aliasnet/aliasnet/internal/control/controltest"
	"github.com/aliasnet/aliasnet/internal/dnsserver"
	"github.com/aliasnet/aliasnet/internal/model"
	"github.com/aliasnet/aliasnet/internal/store"
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func ip(s string) netip.Addr    { return netip.MustParseAddr(s) }

func newService(t testing.TB) *control.Service {
	t.Helper()
	svc := controltest.New(t)
	return svc
}

func do(t testing.TB, svc *control.Service, m func(tx *model.Txn) error) {
	t.Helper()
	_, err := svc.Do(context.Background(), control.Op{Project: "p", Scope: "global", Type: "test"}, func(tx *model.Txn) (uint64, any, error) {
		return 0, nil, m(tx)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// fixture: network a (10.0.0.0/24, secondary 172.16.0.0/20) and network b
// (10.1.0.0/24); vm-a with nic0 in a (alias 172.16.0.0/24) and nic1 in b;
// vm-b with nic0 in b; a private zone visible to a only.
func fixture(t *testing.T) (*control.Service, *Runtime) {
	svc := newService(t)
	do(t, svc, func(tx *model.Txn) error {
		for _, n := range []string{"a", "b"} {
			if _, err := tx.CreateNetwork(model.Network{Project: "p", Name: n}); err != nil {
				return err
			}
		}
		if _, err := tx.CreateSubnet(model.Subnet{Project: "p", Region: "us-central1", Name: "sa", Network: "a", Range: pfx("10.0.0.0/24"),
			Secondary: []model.SecondaryRange{{Name: "pods", Range: pfx("172.16.0.0/20")}}}); err != nil {
			return err
		}
		if _, err := tx.CreateSubnet(model.Subnet{Project: "p", Region: "us-central1", Name: "sb", Network: "b", Range: pfx("10.1.0.0/24")}); err != nil {
			return err
		}
		if _, _, err := tx.CreateInstance(model.CreateInstanceReq{Instance: model.Instance{Project: "p", Zone: "us-central1-a", Name: "vm-a"},
			NICs: []model.NICSpec{{Subnet: "sa", IP: ip("10.0.0.10"), Aliases: []model.AliasSpec{{Prefix: pfx("172.16.0.0/24"), RangeName: "pods"}}},
				{Subnet: "sb", IP: ip("10.1.0.10")}}}); err != nil {
			return err
		}
		if _, _, err := tx.CreateInstance(model.CreateInstanceReq{Instance: model.Instance{Project: "p", Zone: "us-central1-a", Name: "vm-b"},
			NICs: []model.NICSpec{{Subnet: "sb", IP: ip("10.1.0.20")}}}); err != nil {
			return err
		}
		if _, err := tx.CreateDNSZone(model.DNSZone{Project: "p", Name: "z", DNSName: "svc.internal.", Visibility: model.VisibilityPrivate, Networks: []string{"p/a"}}); err != nil {
			return err
		}
		if _, err := tx.CreateDNSZone(model.DNSZone{Project: "p", Name: "dark", DNSName: "dark.internal.", Visibility: model.VisibilityPrivate}); err != nil {
			return err
		}
		for z, name := range map[string]string{"z": "web.svc.internal.", "dark": "web.dark.internal."} {
			if _, _, err := tx.ChangeRRSets("p", z, []model.DNSRecordSet{{Name: name, Type: "A", TTL: 60, RRDatas: []string{"172.16.0.5"}}}, nil); err != nil {
				return err
			}
		}
		return nil
	})
	rt := New(svc, Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	rt.Rebuild()
	return svc, rt
}

func TestSnapshotPublishesNic0PrimaryOnly(t *testing.T) {
	svc, _ := fixture(t)
	var snap = func() []string {
		var out []string
		svc.Read(func(st *model.State) {
			s := Snapshot(st)
			for _, in := range s.Instances {
				out = append(out, in.Name+"="+in.IP.String()+"@"+in.Network)
			}
			for _, z := range s.Zones {
				out = append(out, "zone "+z.Name)
			}
		})
		return out
	}()
	want := []string{"vm-a=10.0.0.10@p/a", "vm-b=10.1.0.20@p/b", "zone z"} // "dark" lists no network: served to no one
	if !slices.Equal(snap, want) {
		t.Errorf("snapshot = %v, want %v", snap, want)
	}
}

func TestNetworkOf(t *testing.T) {
	_, rt := fixture(t)
	for a, want := range map[string]string{
		"10.0.0.10":  "p/a", // vm-a nic0
		"10.1.0.10":  "p/b", // vm-a nic1: its own network
		"172.16.0.7": "p/a", // inside vm-a's alias range (a container)
		"10.1.0.20":  "p/b",
		"10.0.0.99":  "", // nobody
	} {
		if got := rt.NetworkOf(ip(a)); got != want {
			t.Errorf("NetworkOf(%s) = %q, want %q", a, got, want)
		}
	}
}

type fakeWriter struct {
	remote net.Addr
	msg    *dns.Msg
}

func (w *fakeWriter) LocalAddr() net.Addr         { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53} }
func (w *fakeWriter) RemoteAddr() net.Addr        { return w.remote }
func (w *fakeWriter) WriteMsg(m *dns.Msg) error   { w.msg = m; return nil }
func (w *fakeWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *fakeWriter) Close() error                { return nil }
func (w *fakeWriter) TsigStatus() error           { return nil }
func (w *fakeWriter) TsigTimersOnly(bool)         {}
func (w *fakeWriter) Hijack()                     {}

func query(rt *Runtime, from, name string) (int, []string) {
	w := &fakeWriter{remote: &net.UDPAddr{IP: net.ParseIP(from), Port: 5353}}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeA)
	rt.ServeDNS(w, m)
	var out []string
	for _, rr := range w.msg.Answer {
		if a, ok := rr.(*dns.A); ok {
			out = append(out, a.A.String())
		}
	}
	return w.msg.Rcode, out
}

// TestVisibilityByClientNetwork: "the DNS lookup on that host name only
// works in the network that contains the primary interface" (seed 000).
func TestVisibilityByClientNetwork(t *testing.T) {
	_, rt := fixture(t)
	vmA, vmB, web := "vm-a.us-central1-a.c.p.internal", "vm-b.c.p.internal", "web.svc.internal"
	for _, tc := range []struct {
		from, name string
		rcode      int
		answer     []string
	}{
		{"10.0.0.10", vmA, dns.RcodeSuccess, []string{"10.0.0.10"}},
		{"172.16.0.9", vmA, dns.RcodeSuccess, []string{"10.0.0.10"}}, // a container on vm-a
		{"10.0.0.10", vmB, dns.RcodeNameError, nil},                  // vm-b lives in network b
		{"10.1.0.20", vmB, dns.RcodeSuccess, []string{"10.1.0.20"}},
		{"10.1.0.10", vmA, dns.RcodeNameError, nil}, // from vm-a's nic1 (network b)
		{"10.0.0.10", web, dns.RcodeSuccess, []string{"172.16.0.5"}},
		{"10.1.0.20", web, dns.RcodeNameError, nil}, // the private zone is a's only (internal. answers)
		{"192.0.2.1", vmA, dns.RcodeNameError, nil},
		{"127.0.0.1", vmA, dns.RcodeSuccess, []string{"10.0.0.10"}}, // loopback sees every network
		{"127.0.0.1", vmB, dns.RcodeSuccess, []string{"10.1.0.20"}},
		{"127.0.0.1", web, dns.RcodeSuccess, []string{"172.16.0.5"}},
		{"127.0.0.1", "web.dark.internal", dns.RcodeNameError, nil}, // no networks: nobody
	} {
		rcode, ans := query(rt, tc.from, tc.name)
		if rcode != tc.rcode || !slices.Equal(ans, tc.answer) {
			t.Errorf("from %s %s: %s %v, want %s %v", tc.from, tc.name, dns.RcodeToString[rcode], ans, dns.RcodeToString[tc.rcode], tc.answer)
		}
	}
}

// TestRebuildFollowsChanges: the served table changes with the model.
func TestRebuildFollowsChanges(t *testing.T) {
	svc, rt := fixture(t)
	do(t, svc, func(tx *model.Txn) error { return tx.DeleteInstance("p", "us-central1-a", "vm-a") })
	rt.Rebuild()
	if rcode, _ := query(rt, "127.0.0.1", "vm-a.c.p.internal"); rcode != dns.RcodeNameError {
		t.Errorf("deleted instance: %s", dns.RcodeToString[rcode])
	}
	if n := rt.NetworkOf(ip("10.0.0.10")); n != "" {
		t.Errorf("deleted instance's address still placed in %q", n)
	}
}

// TestBuildDropsWhatFails: a zone the DNS server refuses (here: a CNAME
// beside an A record, which the model never lets through) is left out and
// logged; every instance and the other zones are still served.
func TestBuildDropsWhatFails(t *testing.T) {
	svc, rt := fixture(t)
	var snap dnsserver.Snapshot
	svc.Read(func(st *model.State) { snap = Snapshot(st) })
	snap.Zones = append(snap.Zones, dnsserver.Zone{Project: "p", Name: "broken", DNSName: "broken.internal.", RRSets: []dnsserver.RRSet{
		{Name: "x.broken.internal.", Type: "A", TTL: 60, RRDatas: []string{"10.9.9.9"}},
		{Name: "x.broken.internal.", Type: "CNAME", TTL: 60, RRDatas: []string{"y.broken.internal."}},
	}})
	if _, err := dnsserver.Build(snap); err == nil {
		t.Fatal("the broken zone builds; the test needs one that does not")
	}
	tab := rt.build(snap)
	if tab == nil {
		t.Fatal("nothing served")
	}
	rt.all.Update(tab)
	if rcode, ans := query(rt, "127.0.0.1", "vm-a.c.p.internal"); rcode != dns.RcodeSuccess || !slices.Equal(ans, []string{"10.0.0.10"}) {
		t.Errorf("instances not served after a bad zone: %s %v", dns.RcodeToString[rcode], ans)
	}
	if rcode, ans := query(rt, "127.0.0.1", "web.svc.internal"); rcode != dns.RcodeSuccess || len(ans) != 1 {
		t.Errorf("good zone not served: %s %v", dns.RcodeToString[rcode], ans)
	}
	if rcode, _ := query(rt, "127.0.0.1", "x.broken.internal"); rcode != dns.RcodeNameError {
		t.Errorf("broken zone: %s, want it left out (NXDOMAIN from internal.)", dns.RcodeToString[rcode])
	}
}

// TestClassify: only changes DNS shows trigger a table rebuild; an
// interface's alias ranges only refresh the client index; operations,
// subnets and learned routes do nothing.
func TestClassify(t *testing.T) {
	svc, rt := fixture(t)
	var ifc model.Interface
	svc.Read(func(st *model.State) {
		in := st.Instance("p", "us-central1-a", "vm-a")
		ifc = *st.NICs(in)[0]
	})
	key := model.InterfaceKey("p", ifc.ID)
	put := func(v model.Interface) store.Event {
		b, _ := json.Marshal(v)
		return store.Event{Puts: []store.KV{{Key: key, Value: b}}}
	}
	aliasOnly := ifc
	aliasOnly.Aliases = append(aliasOnly.Aliases, model.Alias{Range: pfx("172.16.1.0/24"), RangeName: "pods"})
	moved := ifc
	moved.IP = ip("10.0.0.11")
	for _, tc := range []struct {
		name        string
		ev          store.Event
		full, index bool
	}{
		{"alias ranges only", put(aliasOnly), false, true},
		{"primary IP", put(moved), true, false},
		{"instance", store.Event{Puts: []store.KV{{Key: model.InstanceKey("p", "us-central1-a", "vm-c"), Value: []byte("{}")}}}, true, false},
		{"zone", store.Event{Deletes: []string{model.DNSZoneKey("p", "z")}}, true, false},
		{"operation and learned routes", store.Event{Puts: []store.KV{{Key: "projects/p/global/operations/op-1", Value: []byte("{}")},
			{Key: model.DynamicRoutesKey("p", "a"), Value: []byte("{}")}, {Key: model.SubnetKey("p", "us-central1", "sa"), Value: []byte("{}")}}}, false, false},
	} {
		if full, index := rt.classify(tc.ev); full != tc.full || index != tc.index {
			t.Errorf("%s: full=%v index=%v, want %v %v", tc.name, full, index, tc.full, tc.index)
		}
	}
}

// TestServeFollowsChangeStream: the real listener over UDP, and the watch
// loop: a deleted instance and a new record are answered differently
// right after their commits.
func TestServeFollowsChangeStream(t *testing.T) {
	svc, _ := fixture(t)
	rt := New(svc, Config{Listen: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	pc, ln, err := rt.Listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rt.Serve(ctx, pc, ln) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	<-rt.Ready()
	c := &dns.Client{Timeout: 2 * time.Second}
	ask := func(name string) (int, int) {
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(name), dns.TypeA)
		r, _, err := c.Exchange(m, rt.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		return r.Rcode, len(r.Answer)
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out: %s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	if rcode, n := ask("vm-a.c.p.internal"); rcode != dns.RcodeSuccess || n != 1 {
		t.Fatalf("vm-a: %s %d", dns.RcodeToString[rcode], n)
	}
	do(t, svc, func(tx *model.Txn) error { return tx.DeleteInstance("p", "us-central1-a", "vm-a") })
	waitFor("vm-a gone", func() bool { rcode, _ := ask("vm-a.c.p.internal"); return rcode == dns.RcodeNameError })
	do(t, svc, func(tx *model.Txn) error {
		_, _, err := tx.ChangeRRSets("p", "z", []model.DNSRecordSet{{Name: "db.svc.internal.", Type: "A", TTL: 60, RRDatas: []string{"172.16.0.6"}}}, nil)
		return err
	})
	waitFor("db present", func() bool { rcode, n := ask("db.svc.internal"); return rcode == dns.RcodeSuccess && n == 1 })
}
