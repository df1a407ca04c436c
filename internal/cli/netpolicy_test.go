package cli

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/aliasnet/aliasnet/internal/model"
)

func TestParseRules(t *testing.T) {
	good := []struct {
		in   string
		want []model.FirewallProtocol
	}{
		{"tcp:80,udp:53-60,icmp", []model.FirewallProtocol{{Protocol: "tcp", Ports: []string{"80"}}, {Protocol: "udp", Ports: []string{"53-60"}}, {Protocol: "icmp"}}},
		{"tcp:80,tcp:443", []model.FirewallProtocol{{Protocol: "tcp", Ports: []string{"80", "443"}}}},
		{"tcp:80,tcp", []model.FirewallProtocol{{Protocol: "tcp"}}},
		{"tcp,tcp:80", []model.FirewallProtocol{{Protocol: "tcp"}}},
		{"all", []model.FirewallProtocol{{Protocol: "all"}}},
		{"TCP:22", []model.FirewallProtocol{{Protocol: "tcp", Ports: []string{"22"}}}},
		{"47,6:22", []model.FirewallProtocol{{Protocol: "47"}, {Protocol: "6", Ports: []string{"22"}}}},
	}
	for _, c := range good {
		got, err := ParseRules("--allow", c.in)
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%q: got %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
	bad := map[string]string{
		"":           "empty",
		"tcp:80,":    "empty entry",
		"gre":        "not a protocol name",
		"icmp:1":     "tcp, udp and sctp",
		"tcp:99999":  "out of range",
		"tcp:90-80":  "greater than",
		"tcp:":       "empty port",
		"all:1":      "tcp, udp and sctp",
		"udp:53:54":  "not a port number",
		"tcp:1-2-3":  "not a port number",
		"tcp: 22":    "not a port number",
		"tcp:80,,22": "empty entry",
	}
	for in, want := range bad {
		_, err := ParseRules("--allow", in)
		var fe *FlagError
		if err == nil || !errors.As(err, &fe) || fe.Flag != "--allow" || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want a --allow error containing %q", in, err, want)
		}
	}
}

// FuzzParseRules: the gcloud rule syntax either fails naming the flag, or
// yields entries the model accepts that render back to a spec parsing to
// the same entries.
func FuzzParseRules(f *testing.F) {
	for _, s := range []string{"tcp:80,udp:53-60,icmp", "all", "tcp:80,tcp", "6:22", "esp", "sctp:1-65535", "tcp:0", "udp:53,udp:54-60,tcp"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ps, err := ParseRules("--allow", s)
		if err != nil {
			var fe *FlagError
			if !errors.As(err, &fe) || fe.Flag != "--allow" {
				t.Fatalf("%q: error %v does not name --allow", s, err)
			}
			return
		}
		for i, p := range ps {
			if _, err := model.CompileProtocol(p, "allowed[0]"); err != nil {
				t.Fatalf("%q: entry %d %+v refused by the model: %v", s, i, p, err)
			}
		}
		back, err := ParseRules("--allow", FormatRules(ps))
		if err != nil || !reflect.DeepEqual(back, ps) {
			t.Fatalf("%q: renders as %q which parses to %+v, %v; want %+v", s, FormatRules(ps), back, err, ps)
		}
	})
}

// TestNetworkPolicyVerbs drives routes, firewall-rules and trace through
// the CLI against a real server: seed 000's VPN scenario.
func TestNetworkPolicyVerbs(t *testing.T) {
	e := startServer(t)
	z := "--zone=us-central1-a"
	e.ok("networks", "create", "vpc", "--subnet-mode=custom")
	e.ok("subnets", "create", "subnet-a", "--network=vpc", "--region=us-central1", "--range=10.128.0.0/16", "--secondary-range=container-range=172.16.0.0/20")
	e.ok("instances", "create", "vpn-gw", z, "--can-ip-forward", "--network-interface=subnet=subnet-a,private-network-ip=10.128.0.2")
	e.ok("instances", "create", "vm1", z, "--network-interface=subnet=subnet-a,private-network-ip=10.128.0.3,aliases=container-range:172.16.0.0/24")

	out, errs := e.ok("routes", "create", "to-onprem", "--network=vpc", "--destination-range=192.168.0.0/16", "--next-hop-instance=vpn-gw", "--next-hop-instance-zone=us-central1-a")
	wantRow(t, out, "to-onprem", "vpc", "192.168.0.0/16", "us-central1-a/vpn-gw", "1000")
	if !strings.Contains(errs, "Created [") {
		t.Fatalf("stderr %q", errs)
	}
	e.fail("'resource.nextHopIp'", "routes", "create", "bad", "--network=vpc", "--destination-range=192.169.0.0/16", "--next-hop-address=172.16.0.9")
	e.fail("--next-hop-instance", "routes", "create", "bad", "--network=vpc", "--destination-range=192.169.0.0/16")
	e.fail("--next-hop-instance-zone", "routes", "create", "bad", "--network=vpc", "--destination-range=192.169.0.0/16", "--next-hop-instance=vpn-gw")
	_, errs = e.ok("routes", "create", "via-vm1", "--network=vpc", "--destination-range=192.170.0.0/16", "--next-hop-address=10.128.0.3", "--priority=5")
	if !strings.Contains(errs, "WARNING: NEXT_HOP_CANNOT_IP_FORWARD") {
		t.Fatalf("no warning for a next hop without canIpForward: %q", errs)
	}
	out, _ = e.ok("routes", "list", "--network=vpc")
	wantRow(t, out, "via-vm1", "vpc", "192.170.0.0/16", "10.128.0.3", "5")
	hasDefault := false
	for _, r := range rows(out)[1:] {
		hasDefault = hasDefault || strings.HasPrefix(r[0], "default-route-") && strings.Join(r[1:], " ") == "vpc 0.0.0.0/0 default-internet-gateway 1000"
	}
	if !hasDefault {
		t.Fatalf("no default internet route in:\n%s", out)
	}
	if len(rows(out)) != 6 { // header, default route, 2 subnet routes, 2 static
		t.Fatalf("routes list:\n%s", out)
	}
	out, _ = e.ok("routes", "describe", "to-onprem")
	if !strings.Contains(out, "destRange: 192.168.0.0/16") || !strings.Contains(out, "routeType: STATIC") {
		t.Fatalf("describe:\n%s", out)
	}
	e.ok("routes", "delete", "via-vm1")
	out, _ = e.ok("routes", "list-effective", "vm1", z)
	wantRow(t, out, "to-onprem", "STATIC", "192.168.0.0/16", "instance", "default/us-central1-a/vpn-gw", "1000", "ACTIVE")

	out, _ = e.ok("firewall-rules", "create", "deny-onprem-primary", "--network=vpc", "--action=DENY", "--rules=all",
		"--source-ranges=192.168.0.0/16", "--destination-ranges=10.128.0.0/16")
	wantRow(t, out, "deny-onprem-primary", "vpc", "INGRESS", "1000", "all", "false")
	e.ok("firewall-rules", "create", "allow-onprem-containers", "--network=vpc", "--allow=tcp:80,udp:53-60,icmp",
		"--source-ranges=192.168.0.0/16", "--destination-ranges=172.16.0.0/20")
	e.fail("--allow: entry \"icmp:8\"", "firewall-rules", "create", "x", "--network=vpc", "--allow=icmp:8")
	e.fail("'resource.sourceTags'", "firewall-rules", "create", "x", "--network=vpc", "--direction=EGRESS", "--allow=all", "--source-tags=a")
	out, _ = e.ok("firewall-rules", "list")
	wantRow(t, out, "allow-onprem-containers", "vpc", "INGRESS", "1000", "tcp:80,udp:53-60,icmp", "false")

	// Text trace: numbered steps and the verdict.
	out, _ = e.ok("trace", "--from=vpn-gw", z, "--src=192.168.1.10", "--to=10.128.0.3", "--protocol=tcp", "--port=80")
	if !strings.Contains(out, " 4. ingress-firewall DROP      [deny-onprem-primary]") || !strings.HasSuffix(out, "Verdict: DROPPED\n") {
		t.Fatalf("trace to the primary IP:\n%s", out)
	}
	out, _ = e.ok("trace", "--from=vpn-gw", z, "--src=192.168.1.10", "--to=172.16.0.5", "--protocol=tcp", "--port=80")
	if !strings.Contains(out, "[allow-onprem-containers]") || !strings.Contains(out, "inside the alias IP range 172.16.0.0/24") || !strings.HasSuffix(out, "Verdict: DELIVERED\n") {
		t.Fatalf("trace to an alias IP:\n%s", out)
	}
	// JSON trace.
	out, _ = e.ok("trace", "--from=vm1", "--to=vpn-gw", "--protocol=icmp", "--format=json")
	var tr struct {
		Verdict string `json:"verdict"`
		Steps   []struct {
			Kind string `json:"kind"`
			Rule string `json:"rule"`
		} `json:"steps"`
	}
	if err := json.Unmarshal([]byte(out), &tr); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if tr.Verdict != "DROPPED" || tr.Steps[len(tr.Steps)-1].Rule != "implied-deny-all-ingress" {
		t.Fatalf("json trace: %+v", tr)
	}
	e.fail("port", "trace", "--from=vm1", "--to=vpn-gw", "--protocol=tcp")
	e.fail("--from", "trace", "--to=vpn-gw", "--protocol=icmp")

	// update: only the flags given change; an allow for vm1 from vpn-gw.
	e.ok("firewall-rules", "create", "internal", "--network=vpc", "--allow=icmp", "--source-ranges=10.128.0.0/16", "--disabled")
	out, _ = e.ok("trace", "--from=vm1", "--to=vpn-gw", "--protocol=icmp")
	if !strings.HasSuffix(out, "Verdict: DROPPED\n") {
		t.Fatalf("disabled rule applied:\n%s", out)
	}
	out, _ = e.ok("firewall-rules", "update", "internal", "--disabled=false", "--priority=10")
	wantRow(t, out, "internal", "vpc", "INGRESS", "10", "icmp", "false")
	out, _ = e.ok("trace", "--from=vm1", "--to=vpn-gw", "--protocol=icmp")
	if !strings.Contains(out, "[internal]") || !strings.HasSuffix(out, "Verdict: DELIVERED\n") {
		t.Fatalf("after enabling:\n%s", out)
	}
	e.fail("0.0.0.0/0 explicitly", "firewall-rules", "update", "internal", "--source-ranges=")
	out, _ = e.ok("firewall-rules", "update", "internal", "--rules=tcp:22")
	wantRow(t, out, "internal", "vpc", "INGRESS", "10", "tcp:22", "false")
	out, _ = e.ok("firewall-rules", "describe", "internal", "--format=json")
	if !strings.Contains(out, `"sourceRanges": [`) || !strings.Contains(out, `"10.128.0.0/16"`) {
		t.Fatalf("describe:\n%s", out)
	}
	e.ok("firewall-rules", "delete", "internal", "deny-onprem-primary")
	out, _ = e.ok("firewall-rules", "list", "--format=json")
	var fws []map[string]any
	if err := json.Unmarshal([]byte(out), &fws); err != nil || len(fws) != 1 {
		t.Fatalf("after delete: %v\n%s", err, out)
	}
}
