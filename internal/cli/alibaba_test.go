package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/netip"
	"regexp"
	"strings"
	"testing"

	"github.com/aliasnet/aliasnet/internal/api/ecs"
	"github.com/aliasnet/aliasnet/internal/server"
)

// aliEnv is an in-process server with the Alibaba dialect and a way to run
// Alibaba verbs against it through the cobra root, as the binary would.
type aliEnv struct {
	t    *testing.T
	url  string
	args []string
}

func startAliServer(t *testing.T) *aliEnv {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := server.New(ctx, server.Config{Listen: "127.0.0.1:0", DataDir: t.TempDir(), NoSync: true,
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		AccessKeys: []ecs.AccessKey{{ID: "ak-cli", Secret: "sk-cli", Project: "default"}},
		EIPPools:   []netip.Prefix{netip.MustParsePrefix("120.55.3.0/24")}})
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
	url := "http://" + s.Addr()
	return &aliEnv{t: t, url: url, args: []string{"--server=" + url, "--access-key-id=ak-cli", "--access-key-secret=sk-cli"}}
}

func (e *aliEnv) run(args ...string) (string, string, error) {
	root := NewRoot()
	// Credential flags belong to the verb groups: put them after the group.
	full := append([]string{args[0]}, e.args...)
	root.SetArgs(append(full, args[1:]...))
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	err := root.Execute()
	return out.String(), errb.String(), err
}

func (e *aliEnv) ok(args ...string) string {
	e.t.Helper()
	out, errs, err := e.run(args...)
	if err != nil {
		e.t.Fatalf("aliasnet %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, errs)
	}
	return out
}

func (e *aliEnv) fail(want string, args ...string) {
	e.t.Helper()
	out, _, err := e.run(args...)
	if err == nil {
		e.t.Fatalf("aliasnet %s succeeded, want %q\n%s", strings.Join(args, " "), want, out)
	}
	if !strings.Contains(err.Error(), want) {
		e.t.Fatalf("aliasnet %s: %v, want %q", strings.Join(args, " "), err, want)
	}
}

// jsonField decodes --format json output and returns a top-level field.
func jsonField(t *testing.T, out, field string) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	s, _ := m[field].(string)
	return s
}

var idRe = regexp.MustCompile(`\b(vpc|vsw|eni|eip|i)-[0-9a-z]+\b`)

// Seed 003 and seed 004 through the CLI.
func TestAlibabaCLISeeds(t *testing.T) {
	e := startAliServer(t)
	out := e.ok("vpcs", "create", "--cidr-block", "192.168.0.0/16", "--name", "seed003", "--format", "json")
	vpcID := jsonField(t, out, "VpcId")
	out = e.ok("vswitches", "create", "--vpc", vpcID, "--zone", "cn-hangzhou-h", "--cidr-block", "192.168.1.0/24", "--format", "json")
	vsw := jsonField(t, out, "VSwitchId")
	if jsonField(t, out, "CidrBlock") != "192.168.1.0/24" {
		t.Fatalf("vswitch: %s", out)
	}
	instA := jsonField(t, e.ok("ecs-instances", "create", "--vswitch", vsw, "--instance-type", "ecs.g7.large", "--format", "json"), "InstanceId")
	instB := jsonField(t, e.ok("ecs-instances", "create", "--vswitch", vsw, "--instance-type", "ecs.g7.large", "--format", "json"), "InstanceId")

	out = e.ok("enis", "create", "--vswitch", vsw, "--security-group", "sg-1", "--primary-ip", "192.168.1.201", "--format", "json")
	eni := jsonField(t, out, "NetworkInterfaceId")
	if jsonField(t, out, "Status") != "Available" || jsonField(t, out, "PrivateIpAddress") != "192.168.1.201" {
		t.Fatalf("eni: %s", out)
	}
	out = e.ok("enis", "assign-ips", eni, "--ip", "192.168.1.202", "--ip", "192.168.1.203")
	if out != "192.168.1.202\n192.168.1.203\n" {
		t.Fatalf("assign-ips printed %q", out)
	}
	e.ok("enis", "attach", eni, "--instance", instA)
	out = e.ok("enis", "describe", "--instance", instA)
	if !strings.Contains(out, eni) || !strings.Contains(out, "InUse") || !strings.Contains(out, "192.168.1.202,192.168.1.203") {
		t.Fatalf("enis describe --instance:\n%s", out)
	}
	// Failover.
	e.ok("enis", "detach", eni, "--instance", instA)
	e.ok("enis", "attach", eni, "--instance", instB)
	out = e.ok("enis", "describe", eni)
	if !strings.Contains(out, "InstanceId: "+instB) || !strings.Contains(out, "PrivateIpAddress: 192.168.1.203") {
		t.Fatalf("enis describe (yaml):\n%s", out)
	}
	e.fail("InvalidOperation.DetachPrimaryEniNotAllowed", "enis", "detach", primaryOf(t, e, instA), "--instance", instA)
	e.fail("InvalidOperation.InvalidEniState", "enis", "delete", eni)
	e.ok("enis", "unassign-ips", eni, "--ip", "192.168.1.203")
	out = e.ok("enis", "assign-ips", primaryOf(t, e, instA), "--ip", "192.168.1.203")
	if out != "192.168.1.203\n" {
		t.Fatalf("moved address: %q", out)
	}
	out = e.ok("enis", "assign-ips", eni, "--count", "2")
	if n := len(strings.Fields(out)); n != 2 {
		t.Fatalf("assign-ips --count 2 printed %q", out)
	}
	e.fail("MaxEniPrivateIpsCountExceeded", "enis", "assign-ips", eni, "--count", "3")

	// Seed 004.
	out = e.ok("vpcs", "create", "--cidr-block", "10.0.0.0/8", "--format", "json")
	vpc2 := jsonField(t, out, "VpcId")
	vsw1 := jsonField(t, e.ok("vswitches", "create", "--vpc", vpc2, "--zone", "cn-hangzhou-h", "--cidr-block", "10.0.0.0/24", "--format", "json"), "VSwitchId")
	inst := jsonField(t, e.ok("ecs-instances", "create", "--vswitch", vsw1, "--instance-type", "ecs.g7.large", "--private-ip", "10.0.0.202", "--format", "json"), "InstanceId")
	eip := jsonField(t, e.ok("eips", "allocate", "--ip", "120.55.3.106", "--format", "json"), "AllocationId")
	e.fail("InvalidCidrBlock.NotInVpc", "vswitches", "create", "--vpc", vpc2, "--zone", "cn-hangzhou-h", "--cidr-block", "120.55.3.0/25")
	out = e.ok("vpcs", "add-cidr-block", vpc2, "120.55.3.0/24")
	if !strings.Contains(out, "120.55.3.0/24") {
		t.Fatalf("add-cidr-block:\n%s", out)
	}
	vsw2 := jsonField(t, e.ok("vswitches", "create", "--vpc", vpc2, "--zone", "cn-hangzhou-h", "--cidr-block", "120.55.3.0/25", "--format", "json"), "VSwitchId")
	eni2 := jsonField(t, e.ok("enis", "create", "--vswitch", vsw2, "--security-group", "sg-1", "--primary-ip", "120.55.3.106", "--format", "json"), "NetworkInterfaceId")
	e.fail("MissingParameter", "eips", "associate", eip, "--instance-type", "NetworkInterface", "--instance", eni2)
	e.ok("eips", "associate", eip, "--instance-type", "NetworkInterface", "--instance", eni2, "--private-ip", "120.55.3.106")
	e.ok("enis", "attach", eni2, "--instance", inst)
	out = e.ok("enis", "describe", "--instance", inst)
	if !strings.Contains(out, "120.55.3.106->120.55.3.106") {
		t.Fatalf("the ENI does not show its EIP:\n%s", out)
	}
	out = e.ok("ecs-instances", "describe", inst, "--format", "json")
	if !strings.Contains(out, `"PrimaryIpAddress": "120.55.3.106"`) {
		t.Fatalf("the instance does not show the EIP as a private address:\n%s", out)
	}
	out = e.ok("eips", "describe")
	if !strings.Contains(out, eip) || !strings.Contains(out, "InUse") || !strings.Contains(out, eni2) {
		t.Fatalf("eips describe:\n%s", out)
	}
	e.fail("IncorrectEipStatus", "eips", "release", eip)
	e.ok("eips", "unassociate", eip)
	e.ok("eips", "release", eip)
	e.fail("DependencyViolation.VSwitch", "vpcs", "remove-cidr-block", vpc2, "120.55.3.0/24")

	// Tables and YAML.
	out = e.ok("vpcs", "describe")
	if !strings.HasPrefix(out, "VPC_ID") || !strings.Contains(out, vpcID) || !strings.Contains(out, "120.55.3.0/24") {
		t.Fatalf("vpcs describe:\n%s", out)
	}
	out = e.ok("vswitches", "describe", "--vpc", vpc2, "--format", "yaml")
	if strings.Count(out, "VSwitchId: vsw-") != 2 || !strings.HasPrefix(out, "---\n") {
		t.Fatalf("vswitches describe --format yaml:\n%s", out)
	}
	if ids := idRe.FindAllString(e.ok("ecs-instances", "describe"), -1); len(ids) < 3 {
		t.Fatalf("ecs-instances describe lists %v", ids)
	}
}

func primaryOf(t *testing.T, e *aliEnv, inst string) string {
	t.Helper()
	out := e.ok("enis", "describe", "--instance", inst, "--format", "json")
	var sets []map[string]any
	if err := json.Unmarshal([]byte(out), &sets); err != nil {
		t.Fatal(err)
	}
	for _, s := range sets {
		if s["Type"] == "Primary" {
			return s["NetworkInterfaceId"].(string)
		}
	}
	t.Fatalf("no primary ENI for %s:\n%s", inst, out)
	return ""
}

func TestAlibabaCLIErrors(t *testing.T) {
	e := startAliServer(t)
	e.fail("--access-key-id and --access-key-secret are required", "vpcs", "describe", "--access-key-id=", "--access-key-secret=")
	e.fail("SignatureDoesNotMatch", "vpcs", "describe", "--access-key-secret=wrong")
	e.fail("InvalidAccessKeyId.NotFound", "vpcs", "describe", "--access-key-id=nobody")
	e.fail("InvalidEniId.NotFound", "enis", "assign-ips", "eni-nothere", "--count", "1")
	e.fail("--vswitch: required", "enis", "create", "--security-group", "sg-1")
	e.fail("--ip and --count", "enis", "assign-ips", "eni-x", "--count", "1", "--ip", "10.0.0.1")
	e.fail("--format", "vpcs", "describe", "--format", "xml")
	// Errors exit non-zero through Main with the code and message.
	_, _, err := e.run("eips", "release", "eip-nothere")
	if err == nil || !strings.HasPrefix(err.Error(), "InvalidAllocationId.NotFound: ") {
		t.Fatalf("release: %v", err)
	}
}
