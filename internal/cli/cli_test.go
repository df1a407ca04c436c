package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	compute "google.golang.org/api/compute/v1"
	"sigs.k8s.io/yaml"

	"github.com/aliasnet/aliasnet/internal/server"
)

// env is a real aliasnet server in-process and a way to run CLI verbs
// against it through the cobra root, exactly as the binary would.
type env struct {
	t   *testing.T
	url string
}

func startServer(t *testing.T) *env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := server.New(ctx, server.Config{Listen: "127.0.0.1:0", DataDir: t.TempDir(),
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
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
	})
	return &env{t: t, url: "http://" + s.Addr()}
}

// run executes one CLI invocation and returns stdout, stderr and the error
// that would make the binary exit non-zero.
func (e *env) run(args ...string) (string, string, error) {
	root := NewRoot()
	root.SetArgs(append([]string{"--server=" + e.url}, args...))
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	err := root.Execute()
	return out.String(), errb.String(), err
}

func (e *env) ok(args ...string) (string, string) {
	e.t.Helper()
	out, errs, err := e.run(args...)
	if err != nil {
		e.t.Fatalf("aliasnet %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, errs)
	}
	return out, errs
}

// fail runs a verb that must fail with an error containing want.
func (e *env) fail(want string, args ...string) {
	e.t.Helper()
	out, _, err := e.run(args...)
	if err == nil {
		e.t.Fatalf("aliasnet %s: succeeded, want error %q\nstdout:\n%s", strings.Join(args, " "), want, out)
	}
	if !strings.Contains(err.Error(), want) {
		e.t.Fatalf("aliasnet %s: error %q, want it to contain %q", strings.Join(args, " "), err, want)
	}
}

func (e *env) instance(name string) *compute.Instance {
	e.t.Helper()
	out, _ := e.ok("instances", "describe", name, "--zone", "us-central1-a", "--format", "json")
	var in compute.Instance
	if err := json.Unmarshal([]byte(out), &in); err != nil {
		e.t.Fatalf("describe %s: %v\n%s", name, err, out)
	}
	return &in
}

func (e *env) subnet(name string) *compute.Subnetwork {
	e.t.Helper()
	out, _ := e.ok("subnets", "describe", name, "--region", "us-central1", "--format", "json")
	var sn compute.Subnetwork
	if err := json.Unmarshal([]byte(out), &sn); err != nil {
		e.t.Fatalf("describe %s: %v\n%s", name, err, out)
	}
	return &sn
}

// aliases are nic0's alias ranges as "RANGE:CIDR" or "CIDR".
func (e *env) aliases(name string) []string {
	in := e.instance(name)
	var out []string
	for _, a := range in.NetworkInterfaces[0].AliasIpRanges {
		if a.SubnetworkRangeName != "" {
			out = append(out, a.SubnetworkRangeName+":"+a.IpCidrRange)
		} else {
			out = append(out, a.IpCidrRange)
		}
	}
	return out
}

// rows splits table output into rows of fields, header first.
func rows(out string) [][]string {
	var rs [][]string
	for _, l := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		if l != "" {
			rs = append(rs, strings.Fields(l))
		}
	}
	return rs
}

func wantRow(t *testing.T, out string, want ...string) {
	t.Helper()
	rs := rows(out)
	for _, r := range rs[1:] {
		if strings.Join(r, " ") == strings.Join(want, " ") {
			return
		}
	}
	t.Fatalf("no row %q in:\n%s", want, out)
}

// TestSeed000 drives the whole scenario of seed 000 (alias IP ranges from
// secondary and primary ranges, conflicts, moving a /32, secondary range
// changes, auto mode) through the CLI against a real server.
func TestSeed000(t *testing.T) {
	e := startServer(t)
	base := e.url + "/compute/v1/projects/default/"

	// The network and the subnet with a secondary range for containers.
	out, errs := e.ok("networks", "create", "vpc", "--subnet-mode=custom")
	if want := "Created [" + base + "global/networks/vpc].\n"; errs != want {
		t.Fatalf("stderr %q, want %q", errs, want)
	}
	if rs := rows(out); len(rs) != 2 || strings.Join(rs[0], " ") != "NAME SUBNET_MODE BGP_ROUTING_MODE MTU" {
		t.Fatalf("networks create output:\n%s", out)
	}
	wantRow(t, out, "vpc", "CUSTOM", "REGIONAL", "1460")
	out, errs = e.ok("subnets", "create", "subnet-a", "--network", "vpc", "--region", "us-central1",
		"--range", "10.128.0.0/16", "--secondary-range", "container-range=172.16.0.0/20")
	if !strings.Contains(errs, "Created ["+base+"regions/us-central1/subnetworks/subnet-a].") {
		t.Fatalf("stderr %q", errs)
	}
	wantRow(t, out, "subnet-a", "us-central1", "vpc", "10.128.0.0/16", "container-range=172.16.0.0/20")

	// vm1: an explicit /24 from the secondary range.
	out, errs = e.ok("instances", "create", "vm1", "--zone", "us-central1-a",
		"--network-interface", "subnet=subnet-a,aliases=container-range:172.16.0.0/24")
	if !strings.Contains(errs, "Created ["+base+"zones/us-central1-a/instances/vm1].") {
		t.Fatalf("stderr %q", errs)
	}
	if rs := rows(out); strings.Join(rs[0], " ") != "NAME ZONE INTERNAL_IP ALIAS_IP_RANGES STATUS" {
		t.Fatalf("instances create output:\n%s", out)
	}
	wantRow(t, out, "vm1", "us-central1-a", "10.128.0.2", "container-range:172.16.0.0/24", "RUNNING")

	// vm2: a /24 netmask from the secondary range gets the next block.
	out, _ = e.ok("instances", "create", "vm2", "--zone", "us-central1-a",
		"--network-interface", "subnet=subnet-a,aliases=container-range:/24")
	wantRow(t, out, "vm2", "us-central1-a", "10.128.0.3", "container-range:172.16.1.0/24", "RUNNING")

	// vm3: a /27 for fixed containers and two /32s for migratable ones,
	// all from the primary range.
	e.ok("instances", "create", "vm3", "--zone", "us-central1-a",
		"--network-interface", "subnet=subnet-a,aliases=/27;/32;/32")
	vm3 := e.instance("vm3")
	primary := netip.MustParsePrefix("10.128.0.0/16")
	var slash27 string
	var slash32s []string
	for _, a := range vm3.NetworkInterfaces[0].AliasIpRanges {
		p := netip.MustParsePrefix(a.IpCidrRange)
		if !primary.Contains(p.Addr()) || a.SubnetworkRangeName != "" {
			t.Fatalf("vm3 alias %+v not from the primary range", a)
		}
		switch p.Bits() {
		case 27:
			slash27 = a.IpCidrRange
		case 32:
			slash32s = append(slash32s, a.IpCidrRange)
		}
		for _, vm := range []string{"vm1", "vm2", "vm3"} {
			if ip := netip.MustParseAddr(e.instance(vm).NetworkInterfaces[0].NetworkIP); p.Contains(ip) {
				t.Fatalf("vm3 alias %s holds %s's primary IP", p, vm)
			}
		}
	}
	if slash27 == "" || len(slash32s) != 2 {
		t.Fatalf("vm3 aliases %v", e.aliases("vm3"))
	}
	moving, staying := slash32s[0], slash32s[1]
	movingIP := strings.TrimSuffix(moving, "/32")

	// Conflicting explicit aliases fail the operation and the exit code.
	e.fail("IP '172.16.0.0/24' is already being used by another resource.",
		"instances", "create", "vm4", "--zone", "us-central1-a",
		"--network-interface", "subnet=subnet-a,aliases=container-range:172.16.0.0/24")
	e.fail("IP '"+moving+"' is already being used by another resource.",
		"instances", "create", "vm4", "--zone", "us-central1-a",
		"--network-interface", "subnet=subnet-a,aliases="+moving)
	e.fail("was not found", "instances", "describe", "vm4", "--zone", "us-central1-a")
	// ...and so does taking vm3's /32 on vm1 before vm3 lets it go.
	e.fail("IP '"+moving+"' is already being used by another resource.",
		"instances", "network-interfaces", "update", "vm1", "--zone", "us-central1-a",
		"--aliases", "container-range:172.16.0.0/24;"+movingIP)

	// Move the /32: vm3 drops it, vm1 takes it (explicitly, at once).
	out, errs = e.ok("instances", "network-interfaces", "update", "vm3", "--zone", "us-central1-a",
		"--aliases", slash27+";"+staying)
	if !strings.Contains(errs, "Updated ["+base+"zones/us-central1-a/instances/vm3].") {
		t.Fatalf("stderr %q", errs)
	}
	if got := e.aliases("vm3"); len(got) != 2 || strings.Contains(strings.Join(got, ";"), moving) {
		t.Fatalf("vm3 aliases after update: %v", got)
	}
	e.ok("instances", "network-interfaces", "update", "vm1", "--zone", "us-central1-a",
		"--network-interface", "nic0", "--aliases", "container-range:172.16.0.0/24;"+movingIP)
	if got := strings.Join(e.aliases("vm1"), ";"); !strings.Contains(got, "container-range:172.16.0.0/24") || !strings.Contains(got, moving) {
		t.Fatalf("vm1 aliases after the move: %s", got)
	}
	_ = out

	// "" clears every alias (aliasIpRanges [] with the NIC fingerprint).
	e.ok("instances", "network-interfaces", "update", "vm2", "--zone", "us-central1-a", "--aliases", "")
	if got := e.aliases("vm2"); len(got) != 0 {
		t.Fatalf("vm2 aliases after clearing: %v", got)
	}
	// A netmask request does not hand the just-released block out again at
	// once (reuse cooldown), but it is still from the secondary range.
	out, _ = e.ok("instances", "network-interfaces", "update", "vm2", "--zone", "us-central1-a", "--aliases", "container-range:/24")
	vm2Alias := e.aliases("vm2")
	if len(vm2Alias) != 1 || !strings.HasPrefix(vm2Alias[0], "container-range:172.16.") || !strings.HasSuffix(vm2Alias[0], "/24") {
		t.Fatalf("vm2 aliases %v", vm2Alias)
	}
	wantRow(t, out, "vm2", "us-central1-a", "10.128.0.3", vm2Alias[0], "RUNNING")
	e.fail(`--network-interface: instance 'vm2' has no network interface "nic1" (has: nic0)`,
		"instances", "network-interfaces", "update", "vm2", "--zone", "us-central1-a", "--network-interface", "nic1", "--aliases", "")
	e.fail("--aliases: required", "instances", "network-interfaces", "update", "vm2", "--zone", "us-central1-a")

	// Secondary ranges: add two, remove one; never both at once; never
	// one in use.
	out, _ = e.ok("subnets", "update", "subnet-a", "--region", "us-central1",
		"--add-secondary-ranges", "svc-range=172.17.0.0/20,extra=172.18.0.0/24")
	wantRow(t, out, "subnet-a", "us-central1", "vpc", "10.128.0.0/16",
		"container-range=172.16.0.0/20,svc-range=172.17.0.0/20,extra=172.18.0.0/24")
	e.ok("subnets", "update", "subnet-a", "--region", "us-central1", "--remove-secondary-ranges", "extra")
	if got := secondaryString(e.subnet("subnet-a")); got != "container-range=172.16.0.0/20,svc-range=172.17.0.0/20" {
		t.Fatalf("secondary ranges %q", got)
	}
	e.fail("Cannot add and remove secondary IP ranges in the same request.",
		"subnets", "update", "subnet-a", "--region", "us-central1",
		"--add-secondary-ranges", "extra=172.18.0.0/24", "--remove-secondary-ranges", "svc-range")
	e.fail("is in use by 'projects/default/zones/us-central1-a/instances/vm1'",
		"subnets", "update", "subnet-a", "--region", "us-central1", "--remove-secondary-ranges", "container-range")
	e.fail(`--remove-secondary-ranges: subnetwork 'subnet-a' has no secondary range "nope" (has: container-range, svc-range)`,
		"subnets", "update", "subnet-a", "--region", "us-central1", "--remove-secondary-ranges", "nope")
	e.fail("conflicts with", "subnets", "update", "subnet-a", "--region", "us-central1",
		"--add-secondary-ranges", "dup=172.16.8.0/24")
	e.ok("subnets", "update", "subnet-a", "--region", "us-central1", "--remove-secondary-ranges", "svc-range")
	if got := secondaryString(e.subnet("subnet-a")); got != "container-range=172.16.0.0/20" {
		t.Fatalf("secondary ranges %q", got)
	}

	// Expanding the primary range keeps every address.
	out, _ = e.ok("subnets", "expand-ip-range", "subnet-a", "--region", "us-central1", "--prefix-length", "15")
	wantRow(t, out, "subnet-a", "us-central1", "vpc", "10.128.0.0/15", "container-range=172.16.0.0/20")
	e.fail("--prefix-length: must be shorter than the current /15", "subnets", "expand-ip-range", "subnet-a", "--region", "us-central1", "--prefix-length", "16")

	// The whole picture.
	out, _ = e.ok("instances", "list")
	wantRow(t, out, "vm2", "us-central1-a", "10.128.0.3", vm2Alias[0], "RUNNING")
	wantRow(t, out, "vm3", "us-central1-a", "10.128.0.4", strings.Join(e.aliases("vm3"), ";"), "RUNNING")
	if n := len(rows(out)); n != 4 {
		t.Fatalf("instances list has %d rows:\n%s", n, out)
	}
	out, _ = e.ok("instances", "list", "--zone", "us-central1-b")
	if out != "" {
		t.Fatalf("us-central1-b has instances:\n%s", out)
	}

	// Auto mode: one subnet per region.
	out, _ = e.ok("networks", "create", "auto-net", "--subnet-mode=auto")
	wantRow(t, out, "auto-net", "AUTO", "REGIONAL", "1460")
	out, _ = e.ok("subnets", "list", "--network", "auto-net")
	if n := len(rows(out)) - 1; n != 20 {
		t.Fatalf("auto-mode network has %d subnets:\n%s", n, out)
	}
	wantRow(t, out, "auto-net", "us-central1", "auto-net", "10.128.0.0/20")
	out, _ = e.ok("subnets", "list", "--region", "us-central1")
	if n := len(rows(out)) - 1; n != 2 {
		t.Fatalf("us-central1 has %d subnets:\n%s", n, out)
	}

	// Deleting what is in use is refused; then everything goes.
	e.fail("is already being used by", "subnets", "delete", "subnet-a", "--region", "us-central1")
	_, errs = e.ok("instances", "delete", "vm1", "vm2", "vm3", "--zone", "us-central1-a")
	if strings.Count(errs, "Deleted [") != 3 {
		t.Fatalf("delete stderr %q", errs)
	}
	// The last secondary range can go once unused: PATCH sends [].
	out, _ = e.ok("subnets", "update", "subnet-a", "--region", "us-central1", "--remove-secondary-ranges", "container-range")
	wantRow(t, out, "subnet-a", "us-central1", "vpc", "10.128.0.0/15")
	if sn := e.subnet("subnet-a"); len(sn.SecondaryIpRanges) != 0 {
		t.Fatalf("secondary ranges left: %+v", sn.SecondaryIpRanges)
	}
	e.ok("subnets", "delete", "subnet-a", "--region", "us-central1")
	e.ok("networks", "delete", "vpc", "auto-net")
	out, errs = e.ok("networks", "list")
	if out != "" || errs != "Listed 0 items.\n" {
		t.Fatalf("networks list after delete: %q %q", out, errs)
	}
}

func TestFormats(t *testing.T) {
	e := startServer(t)
	e.ok("networks", "create", "vpc", "--subnet-mode", "custom", "--description", "seed", "--mtu", "1500")
	e.ok("subnets", "create", "s", "--network", "vpc", "--region", "us-central1", "--range", "10.0.0.0/24",
		"--secondary-range", "a=172.16.0.0/24,b=172.16.1.0/24", "--secondary-range", "c=172.16.2.0/24")
	e.ok("instances", "create", "vm1", "vm2", "--zone", "us-central1-a", "--subnet", "s",
		"--tags", "web,db", "--can-ip-forward", "--machine-type", "e2-small")

	// json: what the API returns, parsed back by the official types.
	out, _ := e.ok("--format", "json", "networks", "list")
	var ns []*compute.Network
	if err := json.Unmarshal([]byte(out), &ns); err != nil || len(ns) != 1 {
		t.Fatalf("networks list json: %v\n%s", err, out)
	}
	if n := ns[0]; n.Name != "vpc" || n.AutoCreateSubnetworks || n.Mtu != 1500 || n.Description != "seed" || n.Id == 0 || len(n.Subnetworks) != 1 {
		t.Fatalf("network %+v", n)
	}
	if !strings.Contains(out, `"autoCreateSubnetworks": false`) {
		t.Fatalf("json lost autoCreateSubnetworks:false:\n%s", out)
	}
	out, _ = e.ok("subnets", "list", "--format=json")
	var sns []*compute.Subnetwork
	if err := json.Unmarshal([]byte(out), &sns); err != nil || len(sns) != 1 || len(sns[0].SecondaryIpRanges) != 3 || sns[0].Fingerprint == "" {
		t.Fatalf("subnets list json: %v\n%s", err, out)
	}
	out, _ = e.ok("instances", "list", "--format=json")
	var ins []*compute.Instance
	if err := json.Unmarshal([]byte(out), &ins); err != nil || len(ins) != 2 {
		t.Fatalf("instances list json: %v\n%s", err, out)
	}
	if in := ins[0]; in.Name != "vm1" || !in.CanIpForward || lastSegment(in.MachineType) != "e2-small" ||
		in.Tags == nil || strings.Join(in.Tags.Items, ",") != "web,db" || in.NetworkInterfaces[0].Fingerprint == "" {
		t.Fatalf("instance %+v", in)
	}

	// yaml: describe defaults to it, like gcloud; lists are "---" documents.
	out, _ = e.ok("instances", "describe", "vm2", "--zone", "us-central1-a")
	var in compute.Instance
	if err := yaml.Unmarshal([]byte(out), &in); err != nil || in.Name != "vm2" || in.Id == 0 || in.NetworkInterfaces[0].NetworkIP == "" {
		t.Fatalf("describe yaml: %v %+v\n%s", err, in, out)
	}
	out, _ = e.ok("instances", "list", "--format", "yaml")
	docs := strings.Split(out, "---\n")
	if docs[0] != "" || len(docs) != 3 {
		t.Fatalf("instances list yaml:\n%s", out)
	}
	for i, d := range docs[1:] {
		var in compute.Instance
		if err := yaml.Unmarshal([]byte(d), &in); err != nil || in.Name != []string{"vm1", "vm2"}[i] {
			t.Fatalf("yaml doc %d: %v\n%s", i, err, d)
		}
	}
	out, _ = e.ok("subnets", "describe", "s", "--region", "us-central1", "--format", "yaml")
	var sn compute.Subnetwork
	if err := yaml.Unmarshal([]byte(out), &sn); err != nil || sn.IpCidrRange != "10.0.0.0/24" || len(sn.SecondaryIpRanges) != 3 {
		t.Fatalf("subnet yaml: %v\n%s", err, out)
	}
	// describe --format table is one row.
	out, _ = e.ok("networks", "describe", "vpc", "--format", "table")
	wantRow(t, out, "vpc", "CUSTOM", "REGIONAL", "1500")
	// create --format json prints the created resource.
	out, _ = e.ok("networks", "create", "n2", "--subnet-mode=custom", "--format", "json")
	var n2 compute.Network
	if err := json.Unmarshal([]byte(out), &n2); err != nil || n2.Name != "n2" {
		t.Fatalf("create json: %v\n%s", err, out)
	}
	e.fail(`--format: unknown format "xml" (valid: table, json, yaml)`, "networks", "list", "--format", "xml")
}

func TestTemplatesPeeringsAndErrors(t *testing.T) {
	e := startServer(t)
	e.ok("networks", "create", "vpc", "--subnet-mode=custom")
	e.ok("subnets", "create", "subnet-a", "--network", "vpc", "--region", "us-central1", "--range", "10.128.0.0/16",
		"--secondary-range", "container-range=172.16.0.0/20")
	e.ok("networks", "create", "other", "--subnet-mode=custom")
	e.ok("subnets", "create", "o", "--network", "other", "--region", "us-central1", "--range", "10.200.0.0/24")

	// Instance templates carry the alias spec; instances made from them
	// get their own block.
	out, errs := e.ok("instance-templates", "create", "containers", "--machine-type", "e2-small",
		"--network-interface", "subnet=subnet-a,aliases=container-range:/24", "--tags", "ct")
	if !strings.Contains(errs, "Created ["+e.url+"/compute/v1/projects/default/global/instanceTemplates/containers].") {
		t.Fatalf("stderr %q", errs)
	}
	wantRow(t, rowsPrefix(out, 2), "containers", "e2-small")
	out, _ = e.ok("instance-templates", "list")
	if len(rows(out)) != 2 {
		t.Fatalf("templates list:\n%s", out)
	}
	out, _ = e.ok("instance-templates", "describe", "containers", "--format", "json")
	var it compute.InstanceTemplate
	if err := json.Unmarshal([]byte(out), &it); err != nil || it.Properties == nil || len(it.Properties.NetworkInterfaces) != 1 ||
		it.Properties.NetworkInterfaces[0].AliasIpRanges[0].IpCidrRange != "/24" {
		t.Fatalf("template json: %v\n%s", err, out)
	}
	e.ok("instances", "create", "t1", "t2", "--zone", "us-central1-a", "--source-instance-template", "containers")
	got1, got2 := e.aliases("t1"), e.aliases("t2")
	if len(got1) != 1 || len(got2) != 1 || got1[0] == got2[0] || !strings.HasPrefix(got1[0], "container-range:172.16.") {
		t.Fatalf("aliases from template: %v %v", got1, got2)
	}
	if in := e.instance("t1"); lastSegment(in.MachineType) != "e2-small" || in.Tags == nil || len(in.Tags.Items) != 1 {
		t.Fatalf("template properties not applied: %+v", in)
	}

	// Two NICs, one per network; a fixed primary IP.
	out, _ = e.ok("instances", "create", "multi", "--zone", "us-central1-a",
		"--network-interface", "subnet=subnet-a,private-network-ip=10.128.9.9,no-address",
		"--network-interface", "network=other,subnet=o,aliases=10.200.0.16/28")
	wantRow(t, out, "multi", "us-central1-a", "10.128.9.9,"+e.instance("multi").NetworkInterfaces[1].NetworkIP, ",10.200.0.16/28", "RUNNING")
	e.ok("instances", "network-interfaces", "update", "multi", "--zone", "us-central1-a", "--network-interface", "nic1", "--aliases", "/30")
	if in := e.instance("multi"); len(in.NetworkInterfaces[1].AliasIpRanges) != 1 || !strings.HasSuffix(in.NetworkInterfaces[1].AliasIpRanges[0].IpCidrRange, "/30") {
		t.Fatalf("nic1 after update: %+v", in.NetworkInterfaces[1])
	}

	// Peerings: ACTIVE once both sides peer; overlapping networks refuse.
	out, errs = e.ok("networks", "peerings", "create", "vpc-other", "--network", "vpc", "--peer-network", "other")
	if !strings.Contains(errs, "Updated [") {
		t.Fatalf("stderr %q", errs)
	}
	wantRow(t, out, "vpc-other", "vpc", "default", "other", "INACTIVE")
	e.ok("networks", "peerings", "create", "other-vpc", "--network", "other", "--peer-network", "vpc", "--peer-project", "default")
	out, _ = e.ok("networks", "peerings", "list")
	wantRow(t, out, "vpc-other", "vpc", "default", "other", "ACTIVE")
	wantRow(t, out, "other-vpc", "other", "default", "vpc", "ACTIVE")
	e.ok("networks", "peerings", "delete", "vpc-other", "--network", "vpc")
	e.ok("networks", "peerings", "delete", "other-vpc", "--network", "other")
	out, _ = e.ok("networks", "peerings", "list", "--network", "vpc")
	if out != "" {
		t.Fatalf("peerings left:\n%s", out)
	}

	// Errors: the server's message, non-zero exit; flag errors name the flag.
	e.fail("The resource 'projects/default/global/networks/nope' was not found", "networks", "describe", "nope")
	e.fail("The resource 'projects/default/zones/us-central1-a/instances/nope' was not found",
		"instances", "network-interfaces", "update", "nope", "--zone", "us-central1-a", "--aliases", "")
	e.fail("already exists", "networks", "create", "vpc", "--subnet-mode=custom")
	e.fail(`--network-interface: unknown key "subnett" (valid: network, subnet, private-network-ip, aliases, no-address)`,
		"instances", "create", "x", "--zone", "us-central1-a", "--network-interface", "subnett=subnet-a")
	e.fail(`--network-interface: aliases: "/33": netmask "/33" must be /0 to /32`,
		"instances", "create", "x", "--zone", "us-central1-a", "--network-interface", "subnet=subnet-a,aliases=/33")
	e.fail("--zone: required", "instances", "create", "x", "--subnet", "subnet-a")
	e.fail("--subnet-mode: legacy networks are not supported", "networks", "create", "x", "--subnet-mode", "legacy")
	e.fail("--secondary-range: \"a=10.0.0.1/8\"", "subnets", "create", "x", "--network", "vpc", "--region", "us-central1",
		"--range", "10.1.0.0/16", "--secondary-range", "a=10.0.0.1/8")
	e.fail("Invalid value for field", "subnets", "create", "x", "--network", "vpc", "--region", "us-central1", "--range", "10.1.0.1/16")
	e.fail("--network-interface: cannot be combined", "instances", "create", "x", "--zone", "us-central1-a",
		"--subnet", "subnet-a", "--network-interface", "subnet=subnet-a")

	// Projects are separate address planes.
	out, errs = e.ok("--project", "p2", "networks", "list")
	if out != "" || !strings.Contains(errs, "Listed 0 items.") {
		t.Fatalf("project p2 sees %q", out)
	}

	e.ok("instances", "delete", "t1", "t2", "multi", "--zone", "us-central1-a")
	e.ok("instance-templates", "delete", "containers")
	out, _ = e.ok("instance-templates", "list")
	if out != "" {
		t.Fatalf("templates left:\n%s", out)
	}
}

// TestServerFromEnv: ALIASNET_SERVER and ALIASNET_PROJECT set the globals.
func TestServerFromEnv(t *testing.T) {
	e := startServer(t)
	t.Setenv("ALIASNET_SERVER", e.url)
	t.Setenv("ALIASNET_PROJECT", "envproj")
	root := NewRoot()
	root.SetArgs([]string{"networks", "create", "n", "--subnet-mode=custom"})
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(errb.String(), "/projects/envproj/global/networks/n]") {
		t.Fatalf("stderr %q", errb.String())
	}
}

// rowsPrefix keeps the first n columns of each row (for tables with
// timestamps).
func rowsPrefix(out string, n int) string {
	var b strings.Builder
	for _, r := range rows(out) {
		b.WriteString(strings.Join(r[:min(n, len(r))], " ") + "\n")
	}
	return b.String()
}
