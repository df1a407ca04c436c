package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	compute "google.golang.org/api/compute/v1"
	"google.golang.org/api/googleapi"
)

// traceResult is the part of the trace answer the tests read.
type traceResult struct {
	Kind    string `json:"kind"`
	Verdict string `json:"verdict"`
	Steps   []struct {
		Kind      string `json:"kind"`
		Result    string `json:"result"`
		Rule      string `json:"rule"`
		Route     string `json:"route"`
		RouteKind string `json:"routeKind"`
		Instance  string `json:"instance"`
		Detail    string `json:"detail"`
	} `json:"steps"`
	DeliveredTo *struct {
		Instance  string `json:"instance"`
		Interface string `json:"interface"`
		Forwarded bool   `json:"forwarded"`
	} `json:"deliveredTo"`
}

func getJSON(t *testing.T, u string, v any) int {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	return resp.StatusCode
}

func trace(t *testing.T, s *Server, params map[string]string) traceResult {
	t.Helper()
	q := url.Values{}
	for k, v := range params {
		q.Set(k, v)
	}
	var r traceResult
	if code := getJSON(t, s.URL()+"/aliasnet/v1/projects/"+proj+"/trace?"+q.Encode(), &r); code != 200 {
		t.Fatalf("trace %v: HTTP %d", params, code)
	}
	return r
}

// wantErrField checks a refused call: HTTP 400 with a message naming the
// field.
func wantErrField(t *testing.T, err error, field, substr string) {
	t.Helper()
	var ge *googleapi.Error
	if err == nil {
		t.Fatalf("want an error on %s, got success", field)
	}
	if !asGoogleErr(err, &ge) || ge.Code != 400 {
		t.Fatalf("want HTTP 400 on %s, got %v", field, err)
	}
	if !strings.Contains(ge.Message, "'resource."+field+"'") || !strings.Contains(ge.Message, substr) {
		t.Fatalf("error %q does not name field %s / contain %q", ge.Message, field, substr)
	}
}

func asGoogleErr(err error, ge **googleapi.Error) bool {
	e, ok := err.(*googleapi.Error)
	if ok {
		*ge = e
	}
	return ok
}

// policySeed is seed 000's VPN scenario through the official client.
func policySeed(t *testing.T, c *compute.Service) {
	seedNetwork(t, c)
	must(t)(c.Instances.Insert(proj, zone, &compute.Instance{Name: "vpn-gw", CanIpForward: true,
		NetworkInterfaces: []*compute.NetworkInterface{{Subnetwork: "regions/" + region + "/subnetworks/subnet-a", NetworkIP: "10.128.0.2"}}}).Do())
	for i, name := range []string{"vm1", "vm2"} {
		ni := nic(sec(fmt.Sprintf("172.16.%d.0/24", i)))
		ni[0].NetworkIP = fmt.Sprintf("10.128.0.%d", 3+i)
		must(t)(c.Instances.Insert(proj, zone, &compute.Instance{Name: name, NetworkInterfaces: ni}).Do())
	}
}

func TestNetworkPolicyWithGoClient(t *testing.T) {
	s := StartServer(t, "")
	c := s.Compute(t)
	policySeed(t, c)
	net := "projects/" + proj + "/global/networks/vpc"

	// --- routes ---
	must(t)(c.Routes.Insert(proj, &compute.Route{Name: "to-onprem", Network: net, DestRange: "192.168.0.0/16",
		NextHopInstance: "zones/" + zone + "/instances/vpn-gw"}).Do())
	_, err := c.Routes.Insert(proj, &compute.Route{Name: "via-alias", Network: net, DestRange: "192.169.0.0/16", NextHopIp: "172.16.0.9"}).Do()
	wantErrField(t, err, "nextHopIp", "alias IP")
	_, err = c.Routes.Insert(proj, &compute.Route{Name: "in-subnet", Network: net, DestRange: "10.128.5.0/24", NextHopIp: "10.128.0.2"}).Do()
	wantErrField(t, err, "destRange", "more specific than a subnet route")
	_, err = c.Routes.Insert(proj, &compute.Route{Name: "ghost", Network: net, DestRange: "192.170.0.0/16", NextHopInstance: "zones/" + zone + "/instances/ghost"}).Do()
	if apiCode(err) != 404 || !strings.Contains(err.Error(), "nextHopInstance") {
		t.Fatalf("ghost next hop: %v", err)
	}
	must(t)(c.Routes.Insert(proj, &compute.Route{Name: "via-vm1", Network: net, DestRange: "192.171.0.0/16", NextHopIp: "10.128.0.3", Priority: 10}).Do())

	r, err := c.Routes.Get(proj, "to-onprem").Do()
	if err != nil {
		t.Fatal(err)
	}
	if r.Priority != 1000 || r.DestRange != "192.168.0.0/16" || !strings.HasSuffix(r.NextHopInstance, "/zones/"+zone+"/instances/vpn-gw") || len(r.Warnings) != 0 {
		t.Fatalf("route = %+v", r)
	}
	r, _ = c.Routes.Get(proj, "via-vm1").Do()
	if r.Priority != 10 || len(r.Warnings) != 1 || r.Warnings[0].Code != "NEXT_HOP_CANNOT_IP_FORWARD" {
		t.Fatalf("via-vm1 = %+v warnings %v", r, r.Warnings)
	}
	rl, err := c.Routes.List(proj).Do()
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]int{}
	var subnetRoute string
	for _, r := range rl.Items {
		types[r.RouteType]++
		if r.RouteType == "SUBNET" && r.DestRange == "172.16.0.0/20" {
			subnetRoute = r.Name
		}
	}
	// Two static routes of the test plus the network's default internet route.
	if types["STATIC"] != 3 || types["SUBNET"] != 2 || subnetRoute == "" {
		t.Fatalf("route types %v", types)
	}
	if _, err := c.Routes.Delete(proj, subnetRoute).Do(); apiCode(err) != 400 || !strings.Contains(err.Error(), "subnet route") {
		t.Fatalf("deleting a subnet route: %v", err)
	}
	must(t)(c.Routes.Delete(proj, "via-vm1").Do())
	if _, err := c.Routes.Get(proj, "via-vm1").Do(); apiCode(err) != 404 {
		t.Fatalf("deleted route: %v", err)
	}

	// --- firewalls ---
	must(t)(c.Firewalls.Insert(proj, &compute.Firewall{Name: "deny-onprem-to-primary", Network: net,
		Denied: []*compute.FirewallDenied{{IPProtocol: "all"}}, SourceRanges: []string{"192.168.0.0/16"}, DestinationRanges: []string{"10.128.0.0/16"}}).Do())
	must(t)(c.Firewalls.Insert(proj, &compute.Firewall{Name: "allow-onprem-to-containers", Network: net,
		Allowed: []*compute.FirewallAllowed{{IPProtocol: "tcp", Ports: []string{"80", "8000-8080"}}}, SourceRanges: []string{"192.168.0.0/16"}, DestinationRanges: []string{"172.16.0.0/20"}}).Do())
	must(t)(c.Firewalls.Insert(proj, &compute.Firewall{Name: "allow-ssh", Network: net,
		Allowed: []*compute.FirewallAllowed{{IPProtocol: "tcp", Ports: []string{"22"}}}}).Do())
	fw, err := c.Firewalls.Get(proj, "allow-ssh").Do()
	if err != nil {
		t.Fatal(err)
	}
	if fw.Priority != 1000 || fw.Direction != "INGRESS" || fmt.Sprint(fw.SourceRanges) != "[0.0.0.0/0]" || fw.Disabled {
		t.Fatalf("defaults: %+v", fw)
	}
	_, err = c.Firewalls.Insert(proj, &compute.Firewall{Name: "bad", Network: net, Allowed: []*compute.FirewallAllowed{{IPProtocol: "icmp", Ports: []string{"1"}}}}).Do()
	wantErrField(t, err, "allowed[0].ports", "tcp, udp and sctp")
	_, err = c.Firewalls.Insert(proj, &compute.Firewall{Name: "bad", Network: net, Allowed: []*compute.FirewallAllowed{{IPProtocol: "tcp", Ports: []string{"22", "70000"}}}}).Do()
	wantErrField(t, err, "allowed[0].ports[1]", "out of range")
	_, err = c.Firewalls.Insert(proj, &compute.Firewall{Name: "bad", Network: net, Direction: "EGRESS", SourceTags: []string{"web"}, Allowed: []*compute.FirewallAllowed{{IPProtocol: "all"}}}).Do()
	wantErrField(t, err, "sourceTags", "EGRESS")

	// Patch: only the fields sent change.
	must(t)(c.Firewalls.Patch(proj, "allow-ssh", &compute.Firewall{Priority: 500, TargetTags: []string{"bastion"}}).Do())
	fw, _ = c.Firewalls.Get(proj, "allow-ssh").Do()
	if fw.Priority != 500 || fmt.Sprint(fw.TargetTags) != "[bastion]" || fmt.Sprint(fw.SourceRanges) != "[0.0.0.0/0]" || fw.Allowed[0].Ports[0] != "22" {
		t.Fatalf("patched: %+v", fw)
	}
	must(t)(c.Firewalls.Patch(proj, "allow-ssh", &compute.Firewall{NullFields: []string{"TargetTags"}, Disabled: true}).Do())
	fw, _ = c.Firewalls.Get(proj, "allow-ssh").Do()
	if len(fw.TargetTags) != 0 || !fw.Disabled {
		t.Fatalf("patched again: %+v", fw)
	}
	// Update (PUT) replaces the rule.
	must(t)(c.Firewalls.Update(proj, "allow-ssh", &compute.Firewall{Name: "allow-ssh", Network: net,
		Allowed: []*compute.FirewallAllowed{{IPProtocol: "tcp", Ports: []string{"2222"}}}, SourceRanges: []string{"10.0.0.0/8"}}).Do())
	fw, _ = c.Firewalls.Get(proj, "allow-ssh").Do()
	if fw.Priority != 1000 || fw.Disabled || fw.Allowed[0].Ports[0] != "2222" || fmt.Sprint(fw.SourceRanges) != "[10.0.0.0/8]" {
		t.Fatalf("updated: %+v", fw)
	}
	_, err = c.Firewalls.Patch(proj, "allow-ssh", &compute.Firewall{Direction: "EGRESS"}).Do()
	wantErrField(t, err, "direction", "cannot be changed")
	fl, err := c.Firewalls.List(proj).Do()
	if err != nil || len(fl.Items) != 3 {
		t.Fatalf("list: %v %v", err, fl)
	}

	// --- trace: seed 000's VPN scenario ---
	tr := trace(t, s, map[string]string{"from": "vpn-gw", "zone": zone, "src": "192.168.1.10", "to": "10.128.0.3", "protocol": "tcp", "port": "80"})
	last := tr.Steps[len(tr.Steps)-1]
	if tr.Kind != "aliasnet#trace" || tr.Verdict != "DROPPED" || last.Kind != "ingress-firewall" || last.Rule != "deny-onprem-to-primary" {
		t.Fatalf("on-prem to primary: %+v", tr)
	}
	tr = trace(t, s, map[string]string{"from": "vpn-gw", "zone": zone, "src": "192.168.1.10", "to": "172.16.1.77", "protocol": "tcp", "port": "8080"})
	if tr.Verdict != "DELIVERED" || tr.DeliveredTo == nil || !strings.HasSuffix(tr.DeliveredTo.Instance, "/vm2") {
		t.Fatalf("on-prem to alias: %+v", tr)
	}
	kinds := []string{}
	for _, st := range tr.Steps {
		kinds = append(kinds, st.Kind)
	}
	if strings.Join(kinds, ",") != "anti-spoof,egress-firewall,route,ingress-firewall,deliver" {
		t.Fatalf("steps %v", kinds)
	}
	// A container answers on-prem through the gateway (static route).
	tr = trace(t, s, map[string]string{"from": "vm1", "zone": zone, "src": "172.16.0.5", "to": "192.168.1.10", "protocol": "tcp", "port": "5000"})
	if tr.Verdict != "DROPPED" || tr.Steps[2].Route != "to-onprem" {
		t.Fatalf("towards on-prem without an ingress rule on the gateway: %+v", tr)
	}
	// Anti-spoofing: vm1 may not send from vm2's alias.
	tr = trace(t, s, map[string]string{"from": "vm1", "src": "172.16.1.5", "to": "vm2", "protocol": "icmp"})
	if tr.Verdict != "DROPPED" || tr.Steps[0].Kind != "anti-spoof" || tr.Steps[0].Result != "DROP" {
		t.Fatalf("spoof: %+v", tr)
	}
	// Errors.
	var e struct {
		Error struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if code := getJSON(t, s.URL()+"/aliasnet/v1/projects/"+proj+"/trace?from=ghost&to=10.0.0.1&protocol=icmp", &e); code != 404 || !strings.Contains(e.Error.Message, "ghost") {
		t.Fatalf("ghost: %d %+v", code, e)
	}
	if code := getJSON(t, s.URL()+"/aliasnet/v1/projects/"+proj+"/trace?from=vm1&to=10.0.0.1&protocol=tcp", &e); code != 400 || !strings.Contains(e.Error.Message, "port") {
		t.Fatalf("no port: %d %+v", code, e)
	}

	// Effective routes and the fabric description.
	var er struct {
		Routes []struct {
			Name   string `json:"name"`
			Kind   string `json:"kind"`
			Status string `json:"status"`
		} `json:"routes"`
	}
	if code := getJSON(t, s.URL()+"/aliasnet/v1/projects/"+proj+"/zones/"+zone+"/instances/vm1/effectiveRoutes", &er); code != 200 || len(er.Routes) != 4 { // 2 subnet routes, to-onprem, the default internet route
		t.Fatalf("effective routes: %d %+v", code, er)
	}
	var fab struct {
		Interfaces []struct {
			ID       string `json:"id"`
			Instance string `json:"instance"`
		} `json:"interfaces"`
		AntiSpoof map[string][]string `json:"antiSpoof"`
		Chains    []struct {
			Direction string `json:"direction"`
		} `json:"chains"`
	}
	if code := getJSON(t, s.URL()+"/aliasnet/v1/projects/"+proj+"/global/networks/vpc/fabric", &fab); code != 200 || len(fab.Interfaces) != 3 || len(fab.Chains) < 2 {
		t.Fatalf("fabric: %d %+v", code, fab)
	}
	for _, f := range fab.Interfaces {
		as := fab.AntiSpoof[f.ID]
		if strings.HasSuffix(f.Instance, "/vpn-gw") != (as == nil) {
			t.Fatalf("anti-spoof of %s: %v", f.Instance, as)
		}
	}

	// Everything survives a restart (the store decodes the new kinds).
	dir := s.DataDir
	s.Stop()
	s2 := StartServer(t, dir)
	c2 := s2.Compute(t)
	if _, err := c2.Routes.Get(proj, "to-onprem").Do(); err != nil {
		t.Fatal(err)
	}
	if _, err := c2.Firewalls.Get(proj, "deny-onprem-to-primary").Do(); err != nil {
		t.Fatal(err)
	}
	tr = trace(t, s2, map[string]string{"from": "vpn-gw", "zone": zone, "src": "192.168.1.10", "to": "172.16.1.77", "protocol": "tcp", "port": "8080"})
	if tr.Verdict != "DELIVERED" {
		t.Fatalf("after restart: %+v", tr)
	}
	must(t)(c2.Firewalls.Delete(proj, "allow-onprem-to-containers").Do())
	tr = trace(t, s2, map[string]string{"from": "vpn-gw", "zone": zone, "src": "192.168.1.10", "to": "172.16.1.77", "protocol": "tcp", "port": "8080"})
	if tr.Verdict != "DROPPED" || tr.Steps[len(tr.Steps)-1].Rule != "implied-deny-all-ingress" {
		t.Fatalf("after deleting the allow rule: %+v", tr)
	}
}

// TestSourceTagsWithGoClient: a source-tag rule admits a tagged VM's
// primary IP and not its alias; setTags changes the verdict.
func TestSourceTagsWithGoClient(t *testing.T) {
	s := StartServer(t, "")
	c := s.Compute(t)
	policySeed(t, c)
	must(t)(c.Firewalls.Insert(proj, &compute.Firewall{Name: "from-frontend", Network: "global/networks/vpc",
		Allowed: []*compute.FirewallAllowed{{IPProtocol: "tcp", Ports: []string{"8080"}}}, SourceTags: []string{"frontend"}}).Do())
	q := map[string]string{"from": "vm1", "zone": zone, "to": "vm2", "protocol": "tcp", "port": "8080"}
	if tr := trace(t, s, q); tr.Verdict != "DROPPED" {
		t.Fatalf("untagged: %+v", tr)
	}
	in, _ := c.Instances.Get(proj, zone, "vm1").Do()
	must(t)(c.Instances.SetTags(proj, zone, "vm1", &compute.Tags{Items: []string{"frontend"}, Fingerprint: in.Tags.Fingerprint}).Do())
	if tr := trace(t, s, q); tr.Verdict != "DELIVERED" || tr.Steps[3].Rule != "from-frontend" {
		t.Fatalf("tagged primary: %+v", tr)
	}
	q["src"] = "172.16.0.9"
	if tr := trace(t, s, q); tr.Verdict != "DROPPED" || tr.Steps[3].Rule != "implied-deny-all-ingress" {
		t.Fatalf("tagged VM's alias: %+v", tr)
	}
}

// TestNetworkPolicyWithGcloud: the real gcloud creates, lists, updates and
// deletes routes and firewall rules.
func TestNetworkPolicyWithGcloud(t *testing.T) {
	s := StartServer(t, "")
	g := newGcloud(t, s, proj)
	policySeed(t, s.Compute(t))
	out := g.ok("compute", "routes", "create", "to-onprem", "--network=vpc", "--destination-range=192.168.0.0/16",
		"--next-hop-instance=vpn-gw", "--next-hop-instance-zone="+zone)
	if !strings.Contains(out, "Created [") {
		t.Fatalf("routes create: %s", out)
	}
	if out, err := g.run("compute", "routes", "create", "bad", "--network=vpc", "--destination-range=192.169.0.0/16", "--next-hop-address=172.16.0.9"); err == nil || !strings.Contains(out, "alias IP") {
		t.Fatalf("alias next hop accepted by gcloud: %v\n%s", err, out)
	}
	out = g.ok("compute", "routes", "list")
	if !strings.Contains(out, "to-onprem") || !strings.Contains(out, "192.168.0.0/16") || !strings.Contains(out, "172.16.0.0/20") {
		t.Fatalf("routes list:\n%s", out)
	}
	g.ok("compute", "firewall-rules", "create", "allow-onprem", "--network=vpc", "--allow=tcp:80,udp:53-60,icmp",
		"--source-ranges=192.168.0.0/16", "--destination-ranges=172.16.0.0/20")
	g.ok("compute", "firewall-rules", "update", "allow-onprem", "--priority=900")
	out = g.ok("compute", "firewall-rules", "describe", "allow-onprem", "--format=json")
	var fw compute.Firewall
	if err := json.Unmarshal([]byte(out), &fw); err != nil {
		t.Fatal(err)
	}
	if fw.Priority != 900 || len(fw.Allowed) != 3 || fw.Allowed[1].Ports[0] != "53-60" || fmt.Sprint(fw.DestinationRanges) != "[172.16.0.0/20]" {
		t.Fatalf("firewall after gcloud: %+v", fw)
	}
	tr := trace(t, s, map[string]string{"from": "vpn-gw", "src": "192.168.1.10", "to": "172.16.0.9", "protocol": "udp", "port": "55"})
	if tr.Verdict != "DELIVERED" {
		t.Fatalf("trace: %+v", tr)
	}
	g.ok("compute", "firewall-rules", "delete", "allow-onprem")
	g.ok("compute", "routes", "delete", "to-onprem")
}
