package e2e

// Internal DNS end to end: the real binary with --dns-listen, resources
// created with the official compute and dns Go clients, and the answers
// read with real `dig` (dnsutils).

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	compute "google.golang.org/api/compute/v1"
	dnsv1 "google.golang.org/api/dns/v1"
	"google.golang.org/api/option"
)

// dnsPort is a port free for both UDP and TCP on 127.0.0.1.
func dnsPort(t testing.TB) int {
	t.Helper()
	for range 50 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		pc.Close()
		if err == nil {
			ln.Close()
			return port
		}
	}
	t.Fatal("no port free for UDP and TCP")
	return 0
}

func requireDig(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("dig"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("dig not found (CI=true): apt-get install -y dnsutils")
		}
		t.Skip("dig not found: install dnsutils")
	}
}

// dig runs `dig @127.0.0.1 -p PORT args...` and returns its output.
func dig(t testing.TB, port int, args ...string) string {
	t.Helper()
	out, err := exec.Command("dig", append([]string{"@127.0.0.1", "-p", fmt.Sprint(port), "+time=2", "+tries=1"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("dig %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// digShort is `dig +short`: the answer's data, one per line.
func digShort(t testing.TB, port int, args ...string) []string {
	t.Helper()
	out := strings.Fields(dig(t, port, append(args, "+short")...))
	slices.Sort(out)
	return out
}

func digStatus(t testing.TB, port int, args ...string) string {
	t.Helper()
	out := dig(t, port, args...)
	if i := strings.Index(out, "status: "); i >= 0 {
		return strings.TrimSuffix(strings.Fields(out[i+8:])[0], ",")
	}
	return "?\n" + out
}

func (s *Server) DNS(t testing.TB) *dnsv1.Service {
	t.Helper()
	svc, err := dnsv1.NewService(context.Background(), option.WithEndpoint(s.URL()+"/"), option.WithoutAuthentication())
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// TestInternalDNSWithDig: seed 000's DNS facts with real dig queries.
func TestInternalDNSWithDig(t *testing.T) {
	requireDig(t)
	port := dnsPort(t)
	s := StartServer(t, "", "--dns-listen", fmt.Sprintf("127.0.0.1:%d", port))
	c := s.Compute(t)
	seedNetwork(t, c)
	// A second network for nic1.
	must(t)(c.Networks.Insert(proj, &compute.Network{Name: "vpc2", AutoCreateSubnetworks: false, ForceSendFields: []string{"AutoCreateSubnetworks"}}).Do())
	must(t)(c.Subnetworks.Insert(proj, region, &compute.Subnetwork{Name: "sub2", Network: "projects/" + proj + "/global/networks/vpc2", IpCidrRange: "192.168.0.0/24"}).Do())
	must(t)(c.Instances.Insert(proj, zone, &compute.Instance{Name: "vm1", NetworkInterfaces: []*compute.NetworkInterface{
		{Subnetwork: "regions/" + region + "/subnetworks/subnet-a", NetworkIP: "10.128.0.10",
			AliasIpRanges: []*compute.AliasIpRange{sec("172.16.0.0/24"), prim("10.128.9.0/24")}},
		{Subnetwork: "regions/" + region + "/subnetworks/sub2", NetworkIP: "192.168.0.10"},
	}}).Do())
	zonal := "vm1." + zone + ".c." + proj + ".internal"
	global := "vm1.c." + proj + ".internal"

	t.Run("nic0 primary IP only", func(t *testing.T) {
		for _, name := range []string{zonal, global, strings.ToUpper(zonal)} {
			if got := digShort(t, port, name); !slices.Equal(got, []string{"10.128.0.10"}) {
				t.Errorf("dig %s = %v, want only nic0's primary 10.128.0.10 (no alias, no nic1)", name, got)
			}
		}
		if got := digShort(t, port, zonal, "AAAA"); len(got) != 0 {
			t.Errorf("AAAA %s = %v, want none", zonal, got)
		}
		if got := digShort(t, port, "+tcp", zonal); !slices.Equal(got, []string{"10.128.0.10"}) {
			t.Errorf("over TCP: %v", got)
		}
	})

	t.Run("PTR", func(t *testing.T) {
		if got := digShort(t, port, "-x", "10.128.0.10"); !slices.Equal(got, []string{zonal + "."}) {
			t.Errorf("dig -x 10.128.0.10 = %v, want %s.", got, zonal)
		}
		for _, a := range []string{"172.16.0.5", "10.128.9.1", "192.168.0.10"} {
			if st := digStatus(t, port, "-x", a); st != "NXDOMAIN" {
				t.Errorf("dig -x %s (alias or nic1): %s, want NXDOMAIN", a, st)
			}
		}
	})

	t.Run("NXDOMAIN for unknown names", func(t *testing.T) {
		for _, name := range []string{"nope." + zone + ".c." + proj + ".internal", "nope.c." + proj + ".internal", "vm1.c.other-project.internal"} {
			if st := digStatus(t, port, name); st != "NXDOMAIN" {
				t.Errorf("dig %s: %s, want NXDOMAIN", name, st)
			}
		}
	})

	t.Run("managed zone names an alias IP", func(t *testing.T) {
		d := s.DNS(t)
		netURL := s.URL() + "/compute/v1/projects/" + proj + "/global/networks/vpc"
		if _, err := d.ManagedZones.Create(proj, &dnsv1.ManagedZone{Name: "containers", DnsName: "containers.internal.",
			Description: "names for alias IPs", Visibility: "private",
			PrivateVisibilityConfig: &dnsv1.ManagedZonePrivateVisibilityConfig{Networks: []*dnsv1.ManagedZonePrivateVisibilityConfigNetwork{{NetworkUrl: netURL}}},
		}).Do(); err != nil {
			t.Fatal(err)
		}
		// rrsets.create, as `gcloud dns record-sets create` does...
		if _, err := d.ResourceRecordSets.Create(proj, "containers", &dnsv1.ResourceRecordSet{Name: "web.containers.internal.",
			Type: "A", Ttl: 60, Rrdatas: []string{"172.16.0.5"}}).Do(); err != nil {
			t.Fatal(err)
		}
		// ...and a change with additions, as the older transaction flow does.
		ch, err := d.Changes.Create(proj, "containers", &dnsv1.Change{Additions: []*dnsv1.ResourceRecordSet{
			{Name: "db.containers.internal.", Type: "A", Ttl: 300, Rrdatas: []string{"172.16.0.6", "172.16.0.7"}},
			{Name: "www.containers.internal.", Type: "CNAME", Ttl: 300, Rrdatas: []string{"web.containers.internal."}},
		}}).Do()
		if err != nil || ch.Status != "done" {
			t.Fatalf("change: %+v %v", ch, err)
		}
		if got := digShort(t, port, "web.containers.internal"); !slices.Equal(got, []string{"172.16.0.5"}) {
			t.Errorf("web = %v", got)
		}
		if got := digShort(t, port, "db.containers.internal"); !slices.Equal(got, []string{"172.16.0.6", "172.16.0.7"}) {
			t.Errorf("db = %v", got)
		}
		if got := digShort(t, port, "www.containers.internal"); !slices.Equal(got, []string{"172.16.0.5", "web.containers.internal."}) {
			t.Errorf("www (CNAME) = %v", got)
		}
		// Refusals name the field.
		_, err = d.ResourceRecordSets.Create(proj, "containers", &dnsv1.ResourceRecordSet{Name: "bad.containers.internal.", Type: "A", Ttl: 60, Rrdatas: []string{"172.16.0"}}).Do()
		if apiCode(err) != 400 || !strings.Contains(err.Error(), "rrdatas[0]") {
			t.Errorf("bad rrdata: %v", err)
		}
		_, err = d.ResourceRecordSets.Create(proj, "containers", &dnsv1.ResourceRecordSet{Name: "web.containers.internal.", Type: "A", Ttl: 60, Rrdatas: []string{"172.16.0.9"}}).Do()
		if apiCode(err) != 409 {
			t.Errorf("duplicate rrset: %v, want 409", err)
		}
		// Patch, list, delete.
		if _, err := d.ResourceRecordSets.Patch(proj, "containers", "web.containers.internal.", "A",
			&dnsv1.ResourceRecordSet{Rrdatas: []string{"172.16.0.8"}}).Do(); err != nil {
			t.Fatal(err)
		}
		if got := digShort(t, port, "web.containers.internal"); !slices.Equal(got, []string{"172.16.0.8"}) {
			t.Errorf("web after patch = %v", got)
		}
		l, err := d.ResourceRecordSets.List(proj, "containers").Do()
		if err != nil || len(l.Rrsets) != 3 {
			t.Fatalf("list: %v %v", l, err)
		}
		if _, err := d.ResourceRecordSets.Delete(proj, "containers", "db.containers.internal.", "A").Do(); err != nil {
			t.Fatal(err)
		}
		if st := digStatus(t, port, "db.containers.internal"); st != "NXDOMAIN" {
			t.Errorf("deleted rrset: %s", st)
		}
		if err := d.ManagedZones.Delete(proj, "containers").Do(); apiCode(err) != 400 {
			t.Errorf("deleting a non-empty zone: %v, want 400", err)
		}
		if z, err := d.ManagedZones.Get(proj, "containers").Do(); err != nil || z.Visibility != "private" ||
			len(z.PrivateVisibilityConfig.Networks) != 1 || !strings.HasSuffix(z.PrivateVisibilityConfig.Networks[0].NetworkUrl, "/global/networks/vpc") {
			t.Errorf("get zone: %+v %v", z, err)
		}
	})

	t.Run("deleted instance: name gone at once", func(t *testing.T) {
		start := time.Now()
		must(t)(c.Instances.Delete(proj, zone, "vm1").Do())
		api := time.Since(start)
		d := waitUntil(t, 2*time.Second, "vm1's name gone", func() (bool, string) {
			st := digStatus(t, port, zonal)
			return st == "NXDOMAIN", st
		})
		t.Logf("NXDOMAIN %v after the delete returned (the call took %v)", d, api)
		if st := digStatus(t, port, "-x", "10.128.0.10"); st != "NXDOMAIN" {
			t.Errorf("PTR after delete: %s", st)
		}
	})

	t.Run("malformed packets never crash the server", func(t *testing.T) {
		conn, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		for _, p := range [][]byte{{}, {0}, {0xff, 0xff}, make([]byte, 12), append(make([]byte, 12), 0xc0, 0x0c), {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}} {
			conn.Write(p)
		}
		if got := digShort(t, port, "web.containers.internal"); !slices.Equal(got, []string{"172.16.0.8"}) {
			t.Errorf("after garbage: %v", got)
		}
	})
}
