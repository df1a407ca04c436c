package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestClusters drives the cluster verbs: seed 002's create, describe with
// range utilisation, node join/leave, resize up to exhaustion, node pools,
// service IPs, delete.
func TestClusters(t *testing.T) {
	e := startServer(t)
	e.ok("networks", "create", "default", "--subnet-mode", "custom")
	e.ok("subnets", "create", "default", "--network", "default", "--region", "us-central1", "--range", "10.128.0.0/20",
		"--secondary-range", "pods-range=172.16.0.0/20,services-range=172.20.0.0/28")
	out, _ := e.ok("clusters", "create", "my-cluster", "--zone", "us-central1-a", "--enable-ip-alias",
		"--cluster-secondary-range-name=pods-range", "--services-secondary-range-name=services-range", "--num-nodes", "2")
	wantRow(t, out, "my-cluster", "us-central1-a", "2", "pods-range=172.16.0.0/20", "(/24", "per", "node)", "2/16", "services-range=172.20.0.0/28", "0/14", "RUNNING")

	out, errs := e.ok("clusters", "describe", "my-cluster", "--zone", "us-central1-a")
	if !strings.Contains(out, "clusterSecondaryRangeName: pods-range") || !strings.Contains(out, "nodesPossible: 16") {
		t.Errorf("describe:\n%s", out)
	}
	if !strings.Contains(errs, "Pods range pods-range (172.16.0.0/20, /24 per node): 2 of 16 nodes.") ||
		!strings.Contains(errs, "Services range services-range (172.20.0.0/28): 0 of 14 service IPs.") {
		t.Errorf("describe utilisation:\n%s", errs)
	}

	// An existing instance joins: nic0 gets a /24 from the pods range.
	e.ok("instances", "create", "vm1", "--zone", "us-central1-a", "--subnet", "default")
	out, _ = e.ok("clusters", "nodes", "join", "my-cluster", "--zone", "us-central1-a", "--instance", "vm1")
	wantRow(t, out, "vm1", "us-central1-a", "default-pool", "172.16.2.0/24", "false")
	if got := e.aliases("vm1"); len(got) != 1 || got[0] != "pods-range:172.16.2.0/24" {
		t.Errorf("vm1 aliases %v", got)
	}
	out, _ = e.ok("clusters", "nodes", "list", "my-cluster", "--zone", "us-central1-a")
	if len(rows(out)) != 4 {
		t.Errorf("nodes:\n%s", out)
	}
	e.fail("Pod range 'pods-range' (172.16.0.0/20) of subnetwork 'default' is exhausted: it can hold 13 more node(s) with a /24 pod range each (110 pods per node); 17 more were asked for.",
		"clusters", "resize", "my-cluster", "--zone", "us-central1-a", "--num-nodes", "20")
	_, errs = e.ok("clusters", "resize", "my-cluster", "--zone", "us-central1-a", "--num-nodes", "4")
	if !strings.Contains(errs, "4 of 16 nodes") {
		t.Errorf("resize:\n%s", errs)
	}
	e.ok("clusters", "nodes", "leave", "my-cluster", "--zone", "us-central1-a", "--instance", "vm1")
	if got := e.aliases("vm1"); len(got) != 0 {
		t.Errorf("vm1 aliases after leave %v", got)
	}

	// A pool with 32 pods per node gets /26 blocks.
	e.ok("clusters", "node-pools", "create", "small", "--cluster", "my-cluster", "--zone", "us-central1-a", "--num-nodes", "1", "--max-pods-per-node", "32")
	out, _ = e.ok("clusters", "node-pools", "list", "--cluster", "my-cluster", "--zone", "us-central1-a")
	wantRow(t, out, "small", "e2-medium", "1", "us-central1-a", "32", "/26")

	// Service IPs.
	out, _ = e.ok("clusters", "services", "allocate", "my-cluster", "--zone", "us-central1-a", "--name", "default.kubernetes")
	wantRow(t, out, "default.kubernetes", "172.20.0.1")
	e.ok("clusters", "services", "allocate", "my-cluster", "--zone", "us-central1-a", "--name", "default.web", "--ip", "172.20.0.9")
	e.fail("already being used", "clusters", "services", "allocate", "my-cluster", "--zone", "us-central1-a", "--name", "default.x", "--ip", "172.20.0.9")
	e.fail("outside the services range", "clusters", "services", "allocate", "my-cluster", "--zone", "us-central1-a", "--name", "default.y", "--ip", "172.16.0.9")
	_, errs = e.ok("clusters", "services", "release", "my-cluster", "--zone", "us-central1-a", "--name", "default.web")
	if !strings.Contains(errs, "Released 172.20.0.9") {
		t.Errorf("release: %s", errs)
	}
	out, _ = e.ok("clusters", "services", "list", "my-cluster", "--zone", "us-central1-a", "--format", "json")
	var svcs []serviceIP
	if err := json.Unmarshal([]byte(out), &svcs); err != nil || len(svcs) != 1 || svcs[0].IP != "172.20.0.1" {
		t.Errorf("services list: %v\n%s", err, out)
	}

	out, _ = e.ok("clusters", "list")
	wantRow(t, out, "my-cluster", "us-central1-a", "4", "pods-range=172.16.0.0/20", "(/24", "per", "node)", "4/16", "services-range=172.20.0.0/28", "1/14", "RUNNING")
	e.ok("clusters", "delete", "my-cluster", "--zone", "us-central1-a")
	out, _ = e.ok("instances", "list", "--format", "json")
	var ins []json.RawMessage
	if json.Unmarshal([]byte(out), &ins); len(ins) != 1 {
		t.Errorf("instances after delete:\n%s", out)
	}
	e.fail("Not found", "clusters", "describe", "my-cluster", "--zone", "us-central1-a")
}

func TestCNIInstall(t *testing.T) {
	dir := t.TempDir()
	e := &env{t: t, url: "http://127.0.0.1:1"}
	e.ok("cni", "install", "--bin-dir", filepath.Join(dir, "bin"), "--conf-dir", filepath.Join(dir, "net.d"), "--range", "172.16.3.0/24")
	if st, err := os.Stat(filepath.Join(dir, "bin", "aliasnet")); err != nil || st.Mode()&0o100 == 0 {
		t.Fatalf("plugin not installed: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "net.d", "10-aliasnet.conflist"))
	if err != nil || !strings.Contains(string(b), `"range": "172.16.3.0/24"`) || !strings.Contains(string(b), `"type": "aliasnet"`) {
		t.Fatalf("conflist: %v\n%s", err, b)
	}
}
