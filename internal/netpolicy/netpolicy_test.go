package netpolicy

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"github.com/aliasnet/aliasnet/internal/model"
)

const (
	proj = "p"
	zone = "us-central1-a"
)

var (
	pfx  = netip.MustParsePrefix
	addr = netip.MustParseAddr
)

// world builds a model state through real transactions.
type world struct {
	t  *testing.T
	s  *model.State
	id uint64
}

func newWorld(t *testing.T) *world { return &world{t: t, s: model.NewState()} }

func (w *world) do(m func(tx *model.Txn) error) {
	w.t.Helper()
	tx := w.s.Begin("2026-01-01T00:00:00Z", func() uint64 { w.id++; return w.id })
	if err := m(tx); err != nil {
		tx.Rollback()
		w.t.Fatal(err)
	}
}

func (w *world) network(name string, subnet string, rng string, secondary ...model.SecondaryRange) {
	w.t.Helper()
	w.do(func(tx *model.Txn) error {
		if _, err := tx.CreateNetwork(model.Network{Project: proj, Name: name}); err != nil {
			return err
		}
		_, err := tx.CreateSubnet(model.Subnet{Project: proj, Region: "us-central1", Name: subnet, Network: name, Range: pfx(rng), Secondary: secondary})
		return err
	})
}

type vmOpt struct {
	tags    []string
	forward bool
	nics    []model.NICSpec
}

func nicSpec(subnet, ip string, aliases ...string) model.NICSpec {
	n := model.NICSpec{Subnet: subnet, IP: addr(ip)}
	for _, a := range aliases {
		rn, r, ok := strings.Cut(a, ":")
		if !ok {
			rn, r = "", a
		}
		spec, err := model.ParseAliasSpec(r)
		if err != nil {
			panic(err)
		}
		spec.RangeName = rn
		n.Aliases = append(n.Aliases, spec)
	}
	return n
}

func (w *world) vm(name string, o vmOpt) {
	w.t.Helper()
	w.do(func(tx *model.Txn) error {
		_, _, err := tx.CreateInstance(model.CreateInstanceReq{
			Instance: model.Instance{Project: proj, Zone: zone, Name: name, Tags: o.tags, CanIPForward: o.forward}, NICs: o.nics})
		return err
	})
}

func (w *world) route(r model.Route) {
	w.t.Helper()
	r.Project = proj
	if r.Priority == 0 {
		r.Priority = 1000
	}
	w.do(func(tx *model.Txn) error { _, err := tx.CreateRoute(r); return err })
}

func (w *world) fw(f model.Firewall) {
	w.t.Helper()
	f.Project = proj
	if f.Priority == 0 {
		f.Priority = 1000
	}
	w.do(func(tx *model.Txn) error { _, err := tx.CreateFirewall(f); return err })
}

func (w *world) engine() *Engine { return Compile(FromState(w.s, proj)) }

func allow(specs ...string) []model.FirewallProtocol { return protos(specs) }

func protos(specs []string) []model.FirewallProtocol {
	var out []model.FirewallProtocol
	for _, s := range specs {
		p, ports, ok := strings.Cut(s, ":")
		fp := model.FirewallProtocol{Protocol: p}
		if ok {
			fp.Ports = strings.Split(ports, ",")
		}
		out = append(out, fp)
	}
	return out
}

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, pfx(s))
	}
	return out
}

// tc is one trace expectation: the verdict, the kind of the last step,
// and the rule or route names that must appear.
type tc struct {
	name     string
	from     string // instance[:nic]
	src      string
	to       string
	proto    uint8
	port     uint16
	verdict  string
	lastKind string
	rule     string // rule of the deciding firewall step ("" = don't care)
	route    string // route chosen ("" = don't care)
	to2      string // instance that receives ("" = don't care)
	detail   string // substring of the last step's detail
}

func runTrace(t *testing.T, e *Engine, c tc) Result {
	t.Helper()
	inst, nic, _ := strings.Cut(c.from, ":")
	q := Query{Project: proj, Zone: zone, Instance: inst, NIC: nic, Dst: addr(c.to), Protocol: c.proto, Port: c.port}
	if c.src != "" {
		q.Src = addr(c.src)
	}
	res, err := e.Trace(q)
	if err != nil {
		t.Fatalf("%s: %v", c.name, err)
	}
	dump := func() string { b, _ := json.MarshalIndent(res, "", "  "); return string(b) }
	if res.Verdict != c.verdict {
		t.Fatalf("%s: verdict %s, want %s\n%s", c.name, res.Verdict, c.verdict, dump())
	}
	last := res.Steps[len(res.Steps)-1]
	if c.lastKind != "" && last.Kind != c.lastKind {
		t.Fatalf("%s: last step %s, want %s\n%s", c.name, last.Kind, c.lastKind, dump())
	}
	if c.rule != "" {
		found := false
		for _, s := range res.Steps {
			if (s.Kind == StepIngress || s.Kind == StepEgress) && s.Rule == c.rule && (s.Result == Drop || c.verdict == Delivered) {
				found = true
			}
		}
		if !found {
			t.Fatalf("%s: no firewall step decided by %s\n%s", c.name, c.rule, dump())
		}
	}
	if c.route != "" {
		found := false
		for _, s := range res.Steps {
			if s.Kind == StepRoute && (s.Route == c.route || s.RouteKind == c.route) {
				found = true
			}
		}
		if !found {
			t.Fatalf("%s: route %s not taken\n%s", c.name, c.route, dump())
		}
	}
	if c.to2 != "" {
		if res.DeliveredTo == nil || !strings.HasSuffix(res.DeliveredTo.Instance, "/"+c.to2) {
			t.Fatalf("%s: delivered to %+v, want %s\n%s", c.name, res.DeliveredTo, c.to2, dump())
		}
	}
	if c.detail != "" && !strings.Contains(last.Detail, c.detail) {
		t.Fatalf("%s: last step detail %q lacks %q\n%s", c.name, last.Detail, c.detail, dump())
	}
	return res
}

const tcp, udp, icmp = 6, 17, 1

// seed000 is the seed's VPN scenario: subnet 10.128.0.0/16 with the
// secondary range 172.16.0.0/20, VMs with a /24 alias each, a VPN gateway
// VM (canIpForward) reached on-prem 192.168.0.0/16 by a static route, a
// rule denying on-prem the primary range and one allowing it the
// secondary range.
func seed000(t *testing.T) *world {
	w := newWorld(t)
	w.network("vpc", "subnet-a", "10.128.0.0/16", model.SecondaryRange{Name: "container-range", Range: pfx("172.16.0.0/20")})
	w.vm("vpn-gw", vmOpt{forward: true, tags: []string{"vpn"}, nics: []model.NICSpec{nicSpec("subnet-a", "10.128.0.2")}})
	w.vm("vm1", vmOpt{nics: []model.NICSpec{nicSpec("subnet-a", "10.128.0.3", "container-range:172.16.0.0/24")}})
	w.vm("vm2", vmOpt{nics: []model.NICSpec{nicSpec("subnet-a", "10.128.0.4", "container-range:172.16.1.0/24")}})
	w.route(model.Route{Name: "to-onprem", Network: "vpc", DestRange: pfx("192.168.0.0/16"), NextHopInstance: zone + "/vpn-gw"})
	w.fw(model.Firewall{Name: "deny-onprem-to-primary", Network: "vpc", Denied: allow("all"),
		SourceRanges: prefixes("192.168.0.0/16"), DestinationRanges: prefixes("10.128.0.0/16")})
	w.fw(model.Firewall{Name: "allow-onprem-to-containers", Network: "vpc", Allowed: allow("tcp", "udp", "icmp"),
		SourceRanges: prefixes("192.168.0.0/16"), DestinationRanges: prefixes("172.16.0.0/20")})
	w.fw(model.Firewall{Name: "allow-internal", Network: "vpc", Allowed: allow("all"), Priority: 2000,
		SourceRanges: prefixes("10.128.0.0/16", "172.16.0.0/20")})
	return w
}

func TestSeed000VPN(t *testing.T) {
	e := seed000(t).engine()
	for _, c := range []tc{
		{name: "on-prem to a VM's primary IP is denied", from: "vpn-gw", src: "192.168.1.10", to: "10.128.0.3", proto: tcp, port: 80,
			verdict: Dropped, lastKind: StepIngress, rule: "deny-onprem-to-primary"},
		{name: "on-prem to an alias IP is delivered", from: "vpn-gw", src: "192.168.1.10", to: "172.16.0.5", proto: tcp, port: 80,
			verdict: Delivered, lastKind: StepDeliver, rule: "allow-onprem-to-containers", to2: "vm1", detail: "inside the alias IP range 172.16.0.0/24"},
		{name: "on-prem to vm2's alias", from: "vpn-gw", src: "192.168.200.1", to: "172.16.1.200", proto: udp, port: 53,
			verdict: Delivered, to2: "vm2"},
		{name: "on-prem icmp to a primary IP", from: "vpn-gw", src: "192.168.1.10", to: "10.128.0.4", proto: icmp,
			verdict: Dropped, rule: "deny-onprem-to-primary"},
		{name: "a container replies towards on-prem through the gateway", from: "vm1", src: "172.16.0.5", to: "192.168.1.10", proto: tcp, port: 40000,
			verdict: Delivered, route: "to-onprem", to2: "vpn-gw", detail: "handed to next-hop instance"},
		{name: "secondary range, unallocated address", from: "vpn-gw", src: "192.168.1.10", to: "172.16.9.9", proto: tcp, port: 80,
			verdict: Dropped, lastKind: StepDeliver, detail: "no instance"},
		{name: "internal traffic between primaries", from: "vm1", to: "10.128.0.4", proto: tcp, port: 22,
			verdict: Delivered, rule: "allow-internal", route: KindSubnet, to2: "vm2"},
		{name: "no route outside the VPC", from: "vm1", to: "8.8.8.8", proto: udp, port: 53,
			verdict: Dropped, lastKind: StepRoute},
	} {
		t.Run(c.name, func(t *testing.T) { runTrace(t, e, c) })
	}
}

func TestAntiSpoof(t *testing.T) {
	w := seed000(t)
	e := w.engine()
	for _, c := range []tc{
		{name: "primary IP passes", from: "vm1", src: "10.128.0.3", to: "10.128.0.4", proto: tcp, port: 22, verdict: Delivered},
		{name: "alias IP passes", from: "vm1", src: "172.16.0.77", to: "10.128.0.4", proto: tcp, port: 22, verdict: Delivered},
		{name: "another VM's IP is dropped", from: "vm1", src: "10.128.0.4", to: "10.128.0.2", proto: tcp, port: 22,
			verdict: Dropped, lastKind: StepAntiSpoof, detail: "canIpForward is false"},
		{name: "another VM's alias is dropped", from: "vm1", src: "172.16.1.1", to: "10.128.0.4", proto: tcp, port: 22,
			verdict: Dropped, lastKind: StepAntiSpoof},
		{name: "canIpForward turns it off", from: "vpn-gw", src: "203.0.113.9", to: "172.16.0.1", proto: tcp, port: 22,
			verdict: Dropped, lastKind: StepIngress, rule: "implied-deny-all-ingress"},
	} {
		t.Run(c.name, func(t *testing.T) { runTrace(t, e, c) })
	}
	// The same packet from vm1 without canIpForward vs with it.
	res := runTrace(t, e, tc{name: "spoof", from: "vm1", src: "192.168.1.1", to: "10.128.0.4", proto: tcp, port: 1, verdict: Dropped, lastKind: StepAntiSpoof})
	if res.Steps[0].Kind != StepAntiSpoof || res.Steps[0].Result != Drop {
		t.Fatalf("steps: %+v", res.Steps)
	}
	in := FromState(w.s, proj)
	for i, inst := range in.Instances {
		if inst.Name == "vm1" {
			c := *inst
			c.CanIPForward = true
			in.Instances[i] = &c
		}
	}
	e2 := Compile(in)
	runTrace(t, e2, tc{name: "spoof with canIpForward passes anti-spoofing", from: "vm1", src: "192.168.1.1", to: "10.128.0.4", proto: tcp, port: 1,
		verdict: Dropped, lastKind: StepIngress, rule: "deny-onprem-to-primary"})
	runTrace(t, e2, tc{name: "spoof with canIpForward to an alias", from: "vm1", src: "192.168.1.1", to: "172.16.1.4", proto: tcp, port: 1,
		verdict: Delivered, rule: "allow-onprem-to-containers", to2: "vm2"})
	d, _ := e2.Fabric(proj, "vpc")
	for _, f := range d.Interfaces {
		as, ok := d.AntiSpoof[f.ID]
		switch {
		case !ok:
			t.Fatalf("no anti-spoof entry for %s", f.ID)
		case strings.HasSuffix(f.Instance, "/vm1") || strings.HasSuffix(f.Instance, "/vpn-gw"):
			if as != nil {
				t.Fatalf("%s has canIpForward, anti-spoof %v", f.Instance, as)
			}
		case strings.HasSuffix(f.Instance, "/vm2"):
			if len(as) != 2 || as[0] != pfx("10.128.0.4/32") || as[1] != pfx("172.16.1.0/24") {
				t.Fatalf("vm2 anti-spoof %v", as)
			}
		}
	}
}

func TestSourceTagsVsSourceRanges(t *testing.T) {
	w := newWorld(t)
	w.network("vpc", "subnet-a", "10.128.0.0/16", model.SecondaryRange{Name: "pods", Range: pfx("172.16.0.0/20")})
	w.vm("fe", vmOpt{tags: []string{"frontend"}, nics: []model.NICSpec{nicSpec("subnet-a", "10.128.0.10", "pods:172.16.2.0/24")}})
	w.vm("be", vmOpt{tags: []string{"backend"}, nics: []model.NICSpec{nicSpec("subnet-a", "10.128.0.20")}})
	w.vm("other", vmOpt{nics: []model.NICSpec{nicSpec("subnet-a", "10.128.0.30")}})
	w.fw(model.Firewall{Name: "web-from-frontend", Network: "vpc", Allowed: allow("tcp:8080"), SourceTags: []string{"frontend"}, TargetTags: []string{"backend"}})
	e := w.engine()
	for _, c := range []tc{
		{name: "tag matches the primary IP", from: "fe", to: "10.128.0.20", proto: tcp, port: 8080, verdict: Delivered, rule: "web-from-frontend", to2: "be"},
		{name: "tag never matches an alias IP", from: "fe", src: "172.16.2.9", to: "10.128.0.20", proto: tcp, port: 8080,
			verdict: Dropped, rule: "implied-deny-all-ingress"},
		{name: "untagged source", from: "other", to: "10.128.0.20", proto: tcp, port: 8080, verdict: Dropped, rule: "implied-deny-all-ingress"},
		{name: "target tag: rule does not apply to fe", from: "be", to: "10.128.0.10", proto: tcp, port: 8080, verdict: Dropped},
		{name: "other port", from: "fe", to: "10.128.0.20", proto: tcp, port: 8081, verdict: Dropped},
	} {
		t.Run(c.name, func(t *testing.T) { runTrace(t, e, c) })
	}
	res := runTrace(t, e, tc{name: "explain", from: "fe", to: "10.128.0.20", proto: tcp, port: 8080, verdict: Delivered})
	for _, s := range res.Steps {
		if s.Kind == StepIngress && !strings.Contains(s.Detail, "primary IP of an instance tagged 'frontend'") {
			t.Fatalf("ingress detail: %s", s.Detail)
		}
	}
	// A source range admits the alias.
	w.fw(model.Firewall{Name: "web-from-pods", Network: "vpc", Allowed: allow("tcp:8080"), SourceRanges: prefixes("172.16.2.0/24"), TargetTags: []string{"backend"}})
	e = w.engine()
	runTrace(t, e, tc{name: "range matches the alias", from: "fe", src: "172.16.2.9", to: "10.128.0.20", proto: tcp, port: 8080,
		verdict: Delivered, rule: "web-from-pods"})
	// Fabric: the tag contributes the primary /32 only.
	d, _ := e.Fabric(proj, "vpc")
	found := false
	for _, ch := range d.Chains {
		for _, r := range ch.Rules {
			if r.Name == "web-from-frontend" {
				found = true
				if len(r.SourceTagIPs) != 1 || r.SourceTagIPs[0] != addr("10.128.0.10") || len(r.Sources) != 1 || r.Sources[0] != pfx("10.128.0.10/32") {
					t.Fatalf("fabric rule %+v", r)
				}
			}
		}
	}
	if !found {
		t.Fatal("web-from-frontend missing from the fabric chains")
	}
}

func TestFirewallPrecedence(t *testing.T) {
	build := func(rules ...model.Firewall) *Engine {
		w := newWorld(t)
		w.network("vpc", "subnet-a", "10.128.0.0/16")
		w.vm("a", vmOpt{nics: []model.NICSpec{nicSpec("subnet-a", "10.128.0.10")}})
		w.vm("b", vmOpt{tags: []string{"db"}, nics: []model.NICSpec{nicSpec("subnet-a", "10.128.0.20")}})
		for _, r := range rules {
			w.fw(r)
		}
		return w.engine()
	}
	all := prefixes("0.0.0.0/0")
	cases := []struct {
		name    string
		rules   []model.Firewall
		port    uint16
		verdict string
		rule    string
	}{
		{"implied deny ingress", nil, 22, Dropped, ImpliedDenyIngress},
		{"allow", []model.Firewall{{Name: "a", Network: "vpc", Allowed: allow("tcp:22")}}, 22, Delivered, "a"},
		{"deny wins at equal priority", []model.Firewall{
			{Name: "a-allow", Network: "vpc", Allowed: allow("tcp:22")},
			{Name: "z-deny", Network: "vpc", Denied: allow("tcp:22")}}, 22, Dropped, "z-deny"},
		{"lower number wins", []model.Firewall{
			{Name: "allow", Network: "vpc", Priority: 900, Allowed: allow("tcp:22")},
			{Name: "deny", Network: "vpc", Priority: 1000, Denied: allow("tcp")}}, 22, Delivered, "allow"},
		{"deny at higher priority", []model.Firewall{
			{Name: "allow", Network: "vpc", Priority: 1000, Allowed: allow("tcp:22")},
			{Name: "deny", Network: "vpc", Priority: 10, Denied: allow("all")}}, 22, Dropped, "deny"},
		{"allow at 65535 loses to the implied deny", []model.Firewall{
			{Name: "late", Network: "vpc", Priority: 65535, Allowed: allow("tcp")}}, 22, Dropped, ImpliedDenyIngress},
		{"disabled rule is ignored", []model.Firewall{
			{Name: "off", Network: "vpc", Allowed: allow("tcp"), Disabled: true}}, 22, Dropped, ImpliedDenyIngress},
		{"target tag selects b", []model.Firewall{
			{Name: "db", Network: "vpc", Allowed: allow("tcp:5432"), TargetTags: []string{"db"}}}, 5432, Delivered, "db"},
		{"destinationRanges on ingress", []model.Firewall{
			{Name: "elsewhere", Network: "vpc", Allowed: allow("tcp"), DestinationRanges: prefixes("10.129.0.0/16")}}, 22, Dropped, ImpliedDenyIngress},
		{"egress deny", []model.Firewall{
			{Name: "in", Network: "vpc", Allowed: allow("tcp")},
			{Name: "no-egress", Network: "vpc", Direction: model.Egress, Denied: allow("tcp:22"), DestinationRanges: all}}, 22, Dropped, "no-egress"},
		{"egress deny with a non-matching source range", []model.Firewall{
			{Name: "in", Network: "vpc", Allowed: allow("tcp")},
			{Name: "no-egress", Network: "vpc", Direction: model.Egress, Denied: allow("tcp:22"), SourceRanges: prefixes("10.0.0.0/30")}}, 22, Delivered, "in"},
		{"egress deny at 65535 beats the implied allow", []model.Firewall{
			{Name: "in", Network: "vpc", Allowed: allow("tcp")},
			{Name: "late-deny", Network: "vpc", Direction: model.Egress, Priority: 65535, Denied: allow("all")}}, 22, Dropped, "late-deny"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := build(c.rules...)
			runTrace(t, e, tc{name: c.name, from: "a", to: "10.128.0.20", proto: tcp, port: c.port, verdict: c.verdict, rule: c.rule})
		})
	}
}

func TestPeeringRoutes(t *testing.T) {
	w := newWorld(t)
	w.network("vpc", "subnet-a", "10.128.0.0/16", model.SecondaryRange{Name: "pods", Range: pfx("172.16.0.0/20")})
	w.network("other", "subnet-b", "10.200.0.0/16", model.SecondaryRange{Name: "pods-b", Range: pfx("172.17.0.0/20")})
	w.vm("a", vmOpt{tags: []string{"frontend"}, nics: []model.NICSpec{nicSpec("subnet-a", "10.128.0.10", "pods:172.16.0.0/24")}})
	w.vm("b", vmOpt{nics: []model.NICSpec{nicSpec("subnet-b", "10.200.0.10", "pods-b:172.17.3.0/24")}})
	w.fw(model.Firewall{Name: "from-vpc", Network: "other", Allowed: allow("tcp"), SourceRanges: prefixes("10.128.0.0/16", "172.16.0.0/20")})
	w.fw(model.Firewall{Name: "tag-from-vpc", Network: "other", Allowed: allow("udp"), SourceTags: []string{"frontend"}})
	w.do(func(tx *model.Txn) error {
		_, err := tx.AddPeering(proj, "vpc", model.Peering{Name: "to-other", Peer: proj + "/other"})
		return err
	})
	runTrace(t, w.engine(), tc{name: "inactive peering: no route", from: "a", to: "10.200.0.10", proto: tcp, port: 22, verdict: Dropped, lastKind: StepRoute})
	w.do(func(tx *model.Txn) error {
		_, err := tx.AddPeering(proj, "other", model.Peering{Name: "to-vpc", Peer: proj + "/vpc"})
		return err
	})
	e := w.engine()
	for _, c := range []tc{
		{name: "peer primary range", from: "a", to: "10.200.0.10", proto: tcp, port: 22, verdict: Delivered, route: KindPeeringSubnet, rule: "from-vpc", to2: "b"},
		{name: "peer secondary range (alias)", from: "a", src: "172.16.0.5", to: "172.17.3.3", proto: tcp, port: 22, verdict: Delivered, route: KindPeeringSubnet, to2: "b"},
		{name: "source tags do not cross peerings", from: "a", to: "10.200.0.10", proto: udp, port: 53, verdict: Dropped, rule: ImpliedDenyIngress},
		{name: "back towards vpc: vpc's implied deny", from: "b", to: "10.128.0.10", proto: tcp, port: 22, verdict: Dropped, route: KindPeeringSubnet, rule: ImpliedDenyIngress},
	} {
		t.Run(c.name, func(t *testing.T) { runTrace(t, e, c) })
	}
	ers, err := e.EffectiveRoutes(proj, zone, "a", "nic0")
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, r := range ers {
		kinds[r.Kind]++
		if r.Status != "ACTIVE" {
			t.Fatalf("route %+v not active", r)
		}
	}
	if kinds[KindSubnet] != 2 || kinds[KindPeeringSubnet] != 2 {
		t.Fatalf("effective routes %v", kinds)
	}
}

func TestRouteSelection(t *testing.T) {
	w := newWorld(t)
	w.network("vpc", "subnet-a", "10.128.0.0/16")
	w.vm("gw1", vmOpt{forward: true, nics: []model.NICSpec{nicSpec("subnet-a", "10.128.0.2")}})
	w.vm("gw2", vmOpt{forward: true, nics: []model.NICSpec{nicSpec("subnet-a", "10.128.0.3")}})
	w.vm("nofwd", vmOpt{nics: []model.NICSpec{nicSpec("subnet-a", "10.128.0.4")}})
	w.vm("src", vmOpt{nics: []model.NICSpec{nicSpec("subnet-a", "10.128.0.10")}})
	w.vm("tagged", vmOpt{tags: []string{"special"}, nics: []model.NICSpec{nicSpec("subnet-a", "10.128.0.11")}})
	w.fw(model.Firewall{Name: "allow-all", Network: "vpc", Allowed: allow("all")})
	w.route(model.Route{Name: "wide", Network: "vpc", DestRange: pfx("10.0.0.0/8"), NextHopInstance: zone + "/gw1"})
	w.route(model.Route{Name: "narrow", Network: "vpc", DestRange: pfx("10.50.0.0/16"), NextHopInstance: zone + "/gw1"})
	w.route(model.Route{Name: "narrow-better", Network: "vpc", DestRange: pfx("10.50.0.0/16"), Priority: 100, NextHopIP: addr("10.128.0.3")})
	w.route(model.Route{Name: "for-special", Network: "vpc", DestRange: pfx("10.50.0.0/16"), Priority: 10, Tags: []string{"special"}, NextHopInstance: zone + "/gw1"})
	w.route(model.Route{Name: "to-nofwd", Network: "vpc", DestRange: pfx("10.60.0.0/16"), NextHopInstance: zone + "/nofwd"})
	w.route(model.Route{Name: "to-nobody", Network: "vpc", DestRange: pfx("10.70.0.0/16"), Priority: 1, NextHopIP: addr("10.128.0.99")})
	w.route(model.Route{Name: "internet", Network: "vpc", DestRange: pfx("0.0.0.0/0"), NextHopGateway: model.DefaultInternetGateway})
	w.do(func(tx *model.Txn) error {
		_, err := tx.SetDynamicRoutes(proj, "vpc", []model.DynamicRoute{
			{Dest: pfx("192.168.0.0/16"), NextHop: addr("169.254.1.1"), Priority: 100, Peer: "onprem"},
			{Dest: pfx("192.168.0.0/16"), NextHop: addr("169.254.1.2"), Priority: 200, Peer: "onprem2"},
			{Dest: pfx("10.128.5.0/24"), NextHop: addr("169.254.1.1"), Priority: 0, Peer: "onprem"}, // shadowed by the subnet
			{Dest: pfx("10.80.0.0/16"), NextHop: addr("10.128.0.2"), Priority: 0, Peer: "gw"},
		})
		return err
	})
	e := w.engine()
	for _, c := range []tc{
		{name: "subnet route beats a broader static route", from: "src", to: "10.128.0.4", proto: tcp, port: 1, verdict: Delivered, route: KindSubnet, to2: "nofwd"},
		{name: "longest prefix", from: "src", to: "10.9.9.9", proto: tcp, port: 1, verdict: Delivered, route: "wide", to2: "gw1"},
		{name: "lowest priority number at equal prefix", from: "src", to: "10.50.1.1", proto: tcp, port: 1, verdict: Delivered, route: "narrow-better", to2: "gw2"},
		{name: "tagged route for tagged instance only", from: "tagged", to: "10.50.1.1", proto: tcp, port: 1, verdict: Delivered, route: "for-special", to2: "gw1"},
		{name: "next hop without canIpForward drops", from: "src", to: "10.60.1.1", proto: tcp, port: 1, verdict: Dropped, route: "to-nofwd", lastKind: StepDeliver, detail: "destination check"},
		{name: "unassigned next hop IP: route unused, falls back", from: "src", to: "10.70.1.1", proto: tcp, port: 1, verdict: Delivered, route: "wide"},
		{name: "internet gateway needs an external IP", from: "src", to: "8.8.8.8", proto: udp, port: 53, verdict: Dropped, route: "internet", detail: "external IP"},
		{name: "dynamic route, best MED", from: "src", to: "192.168.3.3", proto: tcp, port: 1, verdict: Delivered, route: KindDynamic, detail: "169.254.1.1"},
		{name: "dynamic route via an instance", from: "src", to: "10.80.0.1", proto: tcp, port: 1, verdict: Delivered, route: KindDynamic, to2: "gw1"},
		{name: "shadowed dynamic route unused", from: "src", to: "10.128.5.5", proto: tcp, port: 1, verdict: Dropped, route: KindSubnet, detail: "no instance"},
		{name: "to self", from: "src", to: "10.128.0.10", proto: tcp, port: 1, verdict: Delivered, detail: "sending instance itself"},
	} {
		t.Run(c.name, func(t *testing.T) { runTrace(t, e, c) })
	}
	// Stopping gw1 makes its routes unusable: 10.9.9.9 then takes the
	// internet route.
	w.do(func(tx *model.Txn) error {
		_, err := tx.SetInstanceStatus(proj, zone, "gw1", model.InstanceStopped)
		return err
	})
	runTrace(t, w.engine(), tc{name: "stopped next hop", from: "src", to: "10.9.9.9", proto: tcp, port: 1, verdict: Dropped, route: "internet"})
	// Effective routes of src: the tagged route is not listed, the
	// unassigned next hop is INACTIVE, narrow is OVERRIDDEN.
	ers, _ := e.EffectiveRoutes(proj, zone, "src", "")
	st := map[string]string{}
	for _, r := range ers {
		st[r.Name] = r.Status
	}
	want := map[string]string{"wide": "ACTIVE", "narrow": "OVERRIDDEN", "narrow-better": "ACTIVE", "to-nobody": "INACTIVE", "internet": "ACTIVE", "to-nofwd": "ACTIVE"}
	for k, v := range want {
		if st[k] != v {
			t.Fatalf("effective %s = %q, want %q (all: %v)", k, st[k], v, st)
		}
	}
	if _, ok := st["for-special"]; ok {
		t.Fatal("tagged route listed for an untagged instance")
	}
}

func TestInternetWithExternalIP(t *testing.T) {
	w := newWorld(t)
	w.network("vpc", "subnet-a", "10.128.0.0/16")
	w.vm("src", vmOpt{nics: []model.NICSpec{nicSpec("subnet-a", "10.128.0.10")}})
	w.route(model.Route{Name: "internet", Network: "vpc", DestRange: pfx("0.0.0.0/0"), NextHopGateway: model.DefaultInternetGateway})
	in := FromState(w.s, proj)
	c := *in.Interfaces[0]
	c.ExternalIP = addr("203.0.113.7")
	in.Interfaces[0] = &c
	res := runTrace(t, Compile(in), tc{name: "out", from: "src", to: "8.8.8.8", proto: udp, port: 53, verdict: Delivered, detail: "203.0.113.7"})
	if res.Egress != HopInternet {
		t.Fatalf("egress %q", res.Egress)
	}
}

func TestStoppedInstances(t *testing.T) {
	w := seed000(t)
	w.do(func(tx *model.Txn) error {
		_, err := tx.SetInstanceStatus(proj, zone, "vm2", model.InstanceStopped)
		return err
	})
	e := w.engine()
	runTrace(t, e, tc{name: "to stopped", from: "vm1", to: "10.128.0.4", proto: tcp, port: 22, verdict: Dropped, lastKind: StepDeliver, detail: "TERMINATED"})
	runTrace(t, e, tc{name: "from stopped", from: "vm2", to: "10.128.0.3", proto: tcp, port: 22, verdict: Dropped, lastKind: StepSource})
}

func TestTraceQueryErrors(t *testing.T) {
	e := seed000(t).engine()
	if _, err := e.Trace(Query{Project: proj, Zone: zone, Instance: "ghost", Dst: addr("10.0.0.1")}); model.CodeOf(err) != model.NotFound {
		t.Fatalf("ghost: %v", err)
	}
	if _, err := e.Trace(Query{Project: proj, Zone: zone, Instance: "vm1", NIC: "nic3", Dst: addr("10.0.0.1")}); model.CodeOf(err) != model.Invalid {
		t.Fatalf("nic3: %v", err)
	}
	if _, err := e.Trace(Query{Project: proj, Zone: zone, Instance: "vm1", Dst: addr("fd00::1")}); model.CodeOf(err) != model.Invalid {
		t.Fatalf("mixed versions: %v", err)
	}
}
