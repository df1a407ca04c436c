package e2e

import (
	"net/netip"
	"strings"
	"testing"
)

// gcloud gives an instance an external IP unless --no-address; describe
// shows it as natIP, and delete-access-config / add-access-config
// --address change it.
func TestExternalIPWithGcloud(t *testing.T) {
	s := StartServer(t, "", "--eip-pool", "198.51.100.0/29")
	g := newGcloud(t, s, proj)
	seedNetwork(t, s.Compute(t)) // the Go client is quicker than two gcloud runs
	pool := netip.MustParsePrefix("198.51.100.0/29")
	natIP := func() string {
		return strings.TrimSpace(g.ok("compute", "instances", "describe", "vm1", "--zone="+zone,
			"--format=value(networkInterfaces[0].accessConfigs[0].natIP)"))
	}

	g.ok("compute", "instances", "create", "vm1", "--zone="+zone, "--subnet=subnet-a")
	got := natIP()
	if a, err := netip.ParseAddr(got); err != nil || !pool.Contains(a) {
		t.Fatalf("gcloud describe shows natIP %q, want an address of %s", got, pool)
	}
	g.ok("compute", "instances", "delete-access-config", "vm1", "--zone="+zone, "--access-config-name=external-nat")
	if got := natIP(); got != "" {
		t.Fatalf("natIP %q after delete-access-config", got)
	}
	g.ok("compute", "instances", "add-access-config", "vm1", "--zone="+zone, "--address=198.51.100.6")
	if got := natIP(); got != "198.51.100.6" {
		t.Fatalf("natIP %q after add-access-config --address=198.51.100.6", got)
	}
	g.ok("compute", "instances", "create", "vm2", "--zone="+zone, "--subnet=subnet-a", "--no-address")
	out := g.ok("compute", "instances", "describe", "vm2", "--zone="+zone, "--format=value(networkInterfaces[0].accessConfigs)")
	if strings.TrimSpace(out) != "" {
		t.Fatalf("--no-address instance has access configs: %s", out)
	}
}
