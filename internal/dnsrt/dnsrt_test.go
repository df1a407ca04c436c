package dnsrt

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"testing"

	"github.com/miekg/dns"

	"github.com/aliasnet/aliasnet/internal/control"
	"github.com/aliasnet/aliasnet/internal/model"
	"github.com/aliasnet/aliasnet/internal/store"
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func ip(s string) netip.Addr    { return netip.MustParseAddr(s) }

func newService(t *testing.T) *control.Service {
	t.Helper()
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "dns.db"), store.BoltOptions{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	svc, err := control.New(context.Background(), st, control.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

func do(t *testing.T, svc *control.Service, m func(tx *model.Txn) error) {
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
			s, _ := Snapshot(st)
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
