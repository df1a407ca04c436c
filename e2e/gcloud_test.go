package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// gcloud runs the real gcloud against a server, with a private config dir
// whose every API endpoint points at aliasnet, so it never reaches Google.
type gcloud struct {
	t      *testing.T
	config string
}

func newGcloud(t *testing.T, s *Server, project string) *gcloud {
	t.Helper()
	if _, err := exec.LookPath("gcloud"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("gcloud is not installed; CI machines have it")
		}
		t.Skip("gcloud not installed: skipping the gcloud client tests")
	}
	g := &gcloud{t: t, config: t.TempDir()}
	for _, kv := range [][2]string{
		{"api_endpoint_overrides/compute", s.URL() + "/compute/v1/"},
		{"api_endpoint_overrides/container", s.URL() + "/"},
		{"api_endpoint_overrides/serviceusage", s.URL() + "/"},
		{"auth/disable_credentials", "true"},
		{"core/should_prompt_to_enable_api", "false"},
		{"core/disable_usage_reporting", "true"},
		{"component_manager/disable_update_check", "true"},
		{"core/project", project},
	} {
		if out, err := g.run("config", "set", kv[0], kv[1]); err != nil {
			t.Fatalf("gcloud config set %s: %v\n%s", kv[0], err, out)
		}
	}
	return g
}

func (g *gcloud) run(args ...string) (string, error) {
	cmd := exec.Command("gcloud", append(args, "--quiet")...)
	cmd.Env = append(os.Environ(), "CLOUDSDK_CONFIG="+g.config, "CLOUDSDK_CORE_DISABLE_PROMPTS=1")
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-done:
		case <-time.After(120 * time.Second):
			cmd.Process.Kill()
		}
	}()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (g *gcloud) ok(args ...string) string {
	g.t.Helper()
	out, err := g.run(args...)
	if err != nil {
		g.t.Fatalf("gcloud %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func TestSeed000WithGcloud(t *testing.T) {
	s := StartServer(t, "")
	g := newGcloud(t, s, "gcloud-project")
	g.ok("compute", "networks", "create", "vpc", "--subnet-mode=custom")
	g.ok("compute", "networks", "subnets", "create", "subnet-a", "--network=vpc", "--region=us-central1",
		"--range=10.128.0.0/16", "--secondary-range=container-range=172.16.0.0/20")
	// Seed 000 step 2 and seed 002's command shape.
	g.ok("compute", "instances", "create", "vm1", "--zone=us-central1-a",
		"--network-interface=subnet=subnet-a,aliases=container-range:172.16.0.0/24")
	g.ok("compute", "instances", "create", "vm2", "--zone=us-central1-a",
		"--network-interface=subnet=subnet-a,aliases=/27;10.128.7.29;10.128.7.30/32")
	out, err := g.run("compute", "instances", "create", "vm3", "--zone=us-central1-a",
		"--network-interface=subnet=subnet-a,aliases=container-range:172.16.0.0/24")
	if err == nil || !strings.Contains(out, "is already being used by another resource") {
		t.Fatalf("conflicting alias accepted or wrong message: %v\n%s", err, out)
	}
	out = g.ok("compute", "instances", "describe", "vm2", "--zone=us-central1-a", "--format=json")
	var inst struct {
		NetworkInterfaces []struct {
			NetworkIP     string `json:"networkIP"`
			AliasIPRanges []struct {
				IPCidrRange string `json:"ipCidrRange"`
			} `json:"aliasIpRanges"`
		} `json:"networkInterfaces"`
	}
	if err := json.Unmarshal([]byte(out), &inst); err != nil {
		t.Fatalf("describe output: %v\n%s", err, out)
	}
	var got []string
	for _, a := range inst.NetworkInterfaces[0].AliasIPRanges {
		got = append(got, a.IPCidrRange)
	}
	if strings.Join(got, " ") != "10.128.0.32/27 10.128.7.29/32 10.128.7.30/32" {
		t.Errorf("vm2 aliases = %v", got)
	}
	// Move 10.128.7.30 to vm1: clear it from vm2, add it to vm1.
	g.ok("compute", "instances", "network-interfaces", "update", "vm2", "--zone=us-central1-a", "--aliases=/27;10.128.7.29")
	g.ok("compute", "instances", "network-interfaces", "update", "vm1", "--zone=us-central1-a", "--aliases=container-range:172.16.0.0/24;10.128.7.30")
	g.ok("compute", "networks", "subnets", "update", "subnet-a", "--region=us-central1", "--add-secondary-ranges=pods=172.20.0.0/16")
	out = g.ok("compute", "instances", "list", "--format=value(name,networkInterfaces[0].aliasIpRanges[].ipCidrRange.list())")
	if !strings.Contains(out, "172.16.0.0/24,10.128.7.30/32") && !strings.Contains(out, "10.128.7.30/32,172.16.0.0/24") {
		t.Errorf("instances list after the move:\n%s", out)
	}
}
