package cli

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	compute "google.golang.org/api/compute/v1"
	"google.golang.org/api/option"

	"github.com/aliasnet/aliasnet/internal/control"
	"github.com/aliasnet/aliasnet/internal/model"
	"github.com/aliasnet/aliasnet/internal/server"
)

// guestEnv is an in-process server with one instance with two NICs:
// vm1 nic0 in s1 (10.10.0.0/24, secondary pods 10.20.0.0/20) with aliases
// 10.20.1.0/24 and 10.10.0.50/32; nic1 in s2 (10.30.0.0/24).
type guestEnv struct {
	url string
	srv *server.Server
}

func startGuestEnv(t *testing.T) *guestEnv {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := server.New(ctx, server.Config{Listen: "127.0.0.1:0", DataDir: t.TempDir(), NoSync: true,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	e := &guestEnv{url: "http://" + s.Addr(), srv: s}
	c, err := compute.NewService(ctx, option.WithEndpoint(e.url+"/compute/v1/"), option.WithoutAuthentication())
	if err != nil {
		t.Fatal(err)
	}
	const p, r, z = "gp", "us-central1", "us-central1-a"
	ok := func(op *compute.Operation, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if op.Error != nil {
			t.Fatalf("%+v", op.Error.Errors[0])
		}
	}
	ok(c.Networks.Insert(p, &compute.Network{Name: "n1", ForceSendFields: []string{"AutoCreateSubnetworks"}}).Do())
	ok(c.Networks.Insert(p, &compute.Network{Name: "n2", ForceSendFields: []string{"AutoCreateSubnetworks"}}).Do())
	ok(c.Subnetworks.Insert(p, r, &compute.Subnetwork{Name: "s1", Network: "global/networks/n1", IpCidrRange: "10.10.0.0/24",
		SecondaryIpRanges: []*compute.SubnetworkSecondaryRange{{RangeName: "pods", IpCidrRange: "10.20.0.0/20"}}}).Do())
	ok(c.Subnetworks.Insert(p, r, &compute.Subnetwork{Name: "s2", Network: "global/networks/n2", IpCidrRange: "10.30.0.0/24"}).Do())
	ok(c.Instances.Insert(p, z, &compute.Instance{Name: "vm1", NetworkInterfaces: []*compute.NetworkInterface{
		{Subnetwork: "regions/" + r + "/subnetworks/s1", AliasIpRanges: []*compute.AliasIpRange{
			{IpCidrRange: "10.20.1.0/24", SubnetworkRangeName: "pods"}, {IpCidrRange: "10.10.0.50"}}},
		{Subnetwork: "regions/" + r + "/subnetworks/s2"},
	}}).Do())
	return e
}

func (e *guestEnv) run(args ...string) (string, string, error) {
	root := NewRoot()
	root.SetArgs(append([]string{"--server=" + e.url, "--project=gp"}, args...))
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	err := root.Execute()
	return out.String(), errb.String(), err
}

func TestGuestConfigCommand(t *testing.T) {
	e := startGuestEnv(t)

	out, _, err := e.run("guest-config", "vm1", "--zone", "us-central1-a", "--os", "netplan")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"# ==> /etc/netplan/", "42:01:0a:0a:00:02", "10.10.0.2/24", "10.10.0.50/24", "10.20.1.0/24",
		"10.10.0.1", "eth1", "42:01:0a:1e:00:02", "10.30.0.2/24", "99-disable-network-config.cfg", "netplan apply",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("netplan output lacks %q:\n%s", want, out)
		}
	}

	// --form local-routes: the /32 is a route, not an address.
	out, _, err = e.run("guest-config", "vm1", "--zone", "us-central1-a", "--os", "debian", "--form", "local-routes", "--nic", "0")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "eth1") || !strings.Contains(out, "10.10.0.50/32") || strings.Contains(out, "10.10.0.50/24") {
		t.Errorf("debian local-routes nic0:\n%s", out)
	}

	// --out writes real paths.
	dir := t.TempDir()
	_, errs, err := e.run("guest-config", "vm1", "--zone", "us-central1-a", "--os", "rhel", "--out", dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"etc/sysconfig/network-scripts/ifcfg-eth0", "etc/sysconfig/network-scripts/ifcfg-eth1", "etc/cloud/cloud.cfg.d/99-disable-network-config.cfg"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Errorf("missing %s (stderr: %s)", p, errs)
		}
	}
	b, _ := os.ReadFile(filepath.Join(dir, "etc/sysconfig/network-scripts/ifcfg-eth0"))
	if !strings.Contains(string(b), "10.10.0.2") || !strings.Contains(strings.ToLower(string(b)), "42:01:0a:0a:00:02") {
		t.Errorf("ifcfg-eth0:\n%s", b)
	}

	// Every family renders.
	for _, o := range []string{"nmcli", "suse", "ubuntu", "centos"} {
		if _, _, err := e.run("guest-config", "vm1", "--zone", "us-central1-a", "--os", o); err != nil {
			t.Errorf("--os %s: %v", o, err)
		}
	}
	// Windows has no local routes: a /24 alias cannot be rendered, nic1 can.
	if _, _, err := e.run("guest-config", "vm1", "--zone", "us-central1-a", "--os", "windows"); err == nil || !strings.Contains(err.Error(), "no local routes") {
		t.Errorf("windows with a /24 alias: %v", err)
	}
	if out, _, err := e.run("guest-config", "vm1", "--zone", "us-central1-a", "--os", "windows", "--nic", "1"); err != nil || !strings.Contains(out, "New-NetIPAddress") {
		t.Errorf("windows nic1: %v\n%s", err, out)
	}

	// Errors.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"guest-config", "nope", "--zone", "us-central1-a", "--os", "rhel"}, "instance nope"},
		{[]string{"guest-config", "vm1", "--os", "rhel"}, "--zone"},
		{[]string{"guest-config", "vm1", "--zone", "us-central1-a"}, "--os"},
		{[]string{"guest-config", "vm1", "--zone", "us-central1-a", "--os", "beos"}, "unknown OS"},
		{[]string{"guest-config", "vm1", "--zone", "us-central1-a", "--os", "rhel", "--nic", "5"}, "--nic"},
		{[]string{"guest-config", "vm1", "--zone", "us-central1-a", "--os", "rhel", "--form", "x"}, "--form"},
	} {
		_, _, err := e.run(tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err %v, want %q", tc.args, err, tc.want)
		}
	}
}

// MACs come from the server: GCE-created NICs have 42:01 + IPv4 (which is
// also the fallback derivation), Alibaba-created ENIs 00:16 + IPv4.
func TestGuestConfigMACs(t *testing.T) {
	e := startGuestEnv(t)
	n := 0
	e.srv.Svc.Read(func(st *model.State) {
		for _, ifc := range st.Interfaces("gp") {
			n++
			if got := guestMAC(ifc.IP).String(); got != ifc.MAC {
				t.Errorf("interface %s (%s): derived MAC %s, model MAC %s", ifc.ID, ifc.IP, got, ifc.MAC)
			}
		}
	})
	if n != 2 {
		t.Fatalf("%d interfaces", n)
	}
	if guestMAC(netip.MustParseAddr("2001:db8::1")) != nil {
		t.Fatal("IPv6 MAC")
	}

	// An instance created in the Alibaba dialect (vSwitch + RunInstance),
	// seen through the GCE API.
	op, err := e.srv.Svc.Do(context.Background(), control.Op{Project: "gp", Scope: "global", Type: "test"},
		func(tx *model.Txn) (uint64, any, error) {
			if _, err := tx.CreateSubnet(model.Subnet{Project: "gp", Region: "us-central1", Zone: "us-central1-a", Name: "vsw",
				Network: "n2", Range: netip.MustParsePrefix("10.31.0.0/24"), Reserve: model.ReserveAlibaba}); err != nil {
				return 0, nil, err
			}
			_, _, err := tx.RunInstance(model.RunInstanceReq{Instance: model.Instance{Project: "gp", Zone: "us-central1-a",
				Name: "i-ali", MachineType: "ecs.g7.large"}, Subnet: "us-central1/vsw", ENI: "eni-1"})
			return 0, nil, err
		})
	if err != nil || op.Error != nil {
		t.Fatalf("%v %+v", err, op)
	}
	var ifc *model.Interface
	e.srv.Svc.Read(func(st *model.State) { ifc = st.Interface("gp", "eni-1") })
	out, errs, err := e.run("guest-config", "i-ali", "--zone", "us-central1-a", "--os", "netplan")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(ifc.MAC, "00:16:") || !strings.Contains(out, ifc.MAC) || strings.Contains(errs, "WARNING") {
		t.Fatalf("ENI MAC %s not rendered (stderr %q):\n%s", ifc.MAC, errs, out)
	}
}
