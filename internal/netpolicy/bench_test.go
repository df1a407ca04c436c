package netpolicy

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aliasnet/aliasnet/internal/model"
)

// Benchmarks run on one core (go test -cpu 1). Worlds are built once
// through the real model, then compiled.

func randAddr4(rnd *rand.Rand) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(rnd.IntN(223) + 1), byte(rnd.UintN(256)), byte(rnd.UintN(256)), byte(rnd.UintN(256))})
}

var routeWorld = sync.OnceValues(func() (*Engine, error) { return buildRouteWorld(100_000) })

// buildRouteWorld: one network (10.0.0.0/16 + secondary 172.16.0.0/16),
// 20 instances, n routes: half static (random destinations /8 to /28,
// priorities, next hops: instances, the internet gateway; 1% tagged), half
// dynamic.
func buildRouteWorld(n int) (*Engine, error) {
	rnd := rand.New(rand.NewPCG(42, 1))
	s := model.NewState()
	var id uint64
	tx := s.Begin("2026-01-01T00:00:00Z", func() uint64 { id++; return id })
	if _, err := tx.CreateNetwork(model.Network{Project: proj, Name: "vpc"}); err != nil {
		return nil, err
	}
	if _, err := tx.CreateSubnet(model.Subnet{Project: proj, Region: "us-central1", Name: "s", Network: "vpc", Range: pfx("10.0.0.0/16"),
		Secondary: []model.SecondaryRange{{Name: "sec", Range: pfx("172.16.0.0/16")}}}); err != nil {
		return nil, err
	}
	for i := range 20 {
		var tags []string
		if i%4 == 0 {
			tags = []string{"t" + fmt.Sprint(i%8)}
		}
		if _, _, err := tx.CreateInstance(model.CreateInstanceReq{Instance: model.Instance{Project: proj, Zone: zone, Name: fmt.Sprintf("vm%d", i), CanIPForward: true, Tags: tags},
			NICs: []model.NICSpec{{Subnet: "s"}}}); err != nil {
			return nil, err
		}
	}
	static := 0
	for static < n/2 {
		dst := netip.PrefixFrom(randAddr4(rnd), 8+rnd.IntN(21)).Masked()
		r := model.Route{Project: proj, Name: fmt.Sprintf("r%d", static), Network: "vpc", DestRange: dst, Priority: rnd.IntN(3) * 500}
		if rnd.IntN(100) == 0 {
			r.Tags = []string{"t" + fmt.Sprint(rnd.IntN(8))}
		}
		if rnd.IntN(4) == 0 {
			r.NextHopGateway = model.DefaultInternetGateway
		} else {
			r.NextHopInstance = fmt.Sprintf("%s/vm%d", zone, rnd.IntN(20))
		}
		if _, err := tx.CreateRoute(r); err != nil {
			continue // e.g. inside the subnet ranges
		}
		static++
	}
	var dyn []model.DynamicRoute
	for len(dyn) < n-static {
		dyn = append(dyn, model.DynamicRoute{Dest: netip.PrefixFrom(randAddr4(rnd), 8+rnd.IntN(21)).Masked(), NextHop: netip.MustParseAddr("169.254.0.1"), Priority: rnd.IntN(1000)})
	}
	if _, err := tx.SetDynamicRoutes(proj, "vpc", dyn); err != nil {
		return nil, err
	}
	return Compile(FromState(s, proj)), nil
}

func BenchmarkRouteLookup100k(b *testing.B) {
	e, err := routeWorld()
	if err != nil {
		b.Fatal(err)
	}
	nic, err := e.NIC(proj, zone, "vm1", "")
	if err != nil {
		b.Fatal(err)
	}
	rnd := rand.New(rand.NewPCG(7, 7))
	dsts := make([]netip.Addr, 1<<16)
	for i := range dsts {
		dsts[i] = randAddr4(rnd)
	}
	hits := 0
	b.ReportAllocs()
	b.ResetTimer()
	clk := startCPU()
	for i := 0; b.Loop(); i++ {
		if _, ok := nic.Route(dsts[i&(1<<16-1)]); ok {
			hits++
		}
	}
	clk.report(b, "Mlookups/cpu-s")
	_ = hits
}

// fwWorld: 500 instances in 40 roles (each role a set of 1-3 of 200
// tags), as deployments group instances. fwWorldDistinct: every instance
// has its own random tag set, so nearly every instance gets its own rule
// set (451 of them): the cache-hostile extreme.
var (
	fwWorld         = sync.OnceValues(func() (*fwBench, error) { return buildFirewallWorld(10_000, 500, 40) })
	fwWorldDistinct = sync.OnceValues(func() (*fwBench, error) { return buildFirewallWorld(10_000, 500, 0) })
)

type fwBench struct {
	e     *Engine
	nics  []*NIC
	pkts  []fwPkt
	rules int
}

type fwPkt struct {
	nic      int
	src, dst netip.Addr
	proto    uint8
	port     uint16
}

// buildFirewallWorld: one network with nInst instances carrying 1-3 of
// 200 tags (from nRoles role tag sets; 0: each its own), and nRules
// firewall rules shaped like real rule sets: mostly
// tag-targeted allows from a few /16-/24 source ranges with a few ports,
// source-tag rules, denies, some rules from 0.0.0.0/0, egress rules, and
// 5% of rules applying to every instance.
func buildFirewallWorld(nRules, nInst, nRoles int) (*fwBench, error) {
	rnd := rand.New(rand.NewPCG(42, 2))
	s := model.NewState()
	var id uint64
	tx := s.Begin("2026-01-01T00:00:00Z", func() uint64 { id++; return id })
	if _, err := tx.CreateNetwork(model.Network{Project: proj, Name: "vpc"}); err != nil {
		return nil, err
	}
	if _, err := tx.CreateSubnet(model.Subnet{Project: proj, Region: "us-central1", Name: "s", Network: "vpc", Range: pfx("10.0.0.0/16"),
		Secondary: []model.SecondaryRange{{Name: "sec", Range: pfx("172.16.0.0/12")}}}); err != nil {
		return nil, err
	}
	tag := func() string { return fmt.Sprintf("tag%d", rnd.IntN(200)) }
	tagSet := func() []string {
		tags := []string{tag()}
		for range rnd.IntN(3) {
			tags = append(tags, tag())
		}
		return tags
	}
	var roles [][]string
	for range nRoles {
		roles = append(roles, tagSet())
	}
	for i := range nInst {
		tags := tagSet()
		if nRoles > 0 {
			tags = roles[rnd.IntN(nRoles)]
		}
		if _, _, err := tx.CreateInstance(model.CreateInstanceReq{Instance: model.Instance{Project: proj, Zone: zone, Name: fmt.Sprintf("vm%d", i), Tags: tags},
			NICs: []model.NICSpec{{Subnet: "s", Aliases: []model.AliasSpec{{Bits: 24, RangeName: "sec"}}}}}); err != nil {
			return nil, err
		}
	}
	srcRange := func() netip.Prefix {
		switch rnd.IntN(3) {
		case 0:
			return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 0, byte(rnd.UintN(256)), 0}), 24)
		case 1:
			return netip.PrefixFrom(netip.AddrFrom4([4]byte{172, byte(16 + rnd.IntN(16)), 0, 0}), 16)
		}
		return netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 168, byte(rnd.UintN(256)), 0}), 24)
	}
	ports := func() []string {
		var ps []string
		for range 1 + rnd.IntN(3) {
			p := 1 + rnd.IntN(10000)
			if rnd.IntN(4) == 0 {
				ps = append(ps, fmt.Sprintf("%d-%d", p, p+rnd.IntN(100)))
			} else {
				ps = append(ps, fmt.Sprint(p))
			}
		}
		return ps
	}
	for i := range nRules {
		f := model.Firewall{Project: proj, Name: fmt.Sprintf("fw%d", i), Network: "vpc", Priority: 100 + rnd.IntN(5)*100,
			TargetTags: []string{tag()}}
		proto := []string{"tcp", "tcp", "tcp", "udp"}[rnd.IntN(4)]
		f.Allowed = []model.FirewallProtocol{{Protocol: proto, Ports: ports()}}
		switch k := rnd.IntN(100); {
		case k < 60:
			for range 1 + rnd.IntN(3) {
				f.SourceRanges = append(f.SourceRanges, srcRange())
			}
		case k < 75:
			f.SourceTags = []string{tag()}
		case k < 85:
			f.Denied, f.Allowed = f.Allowed, nil
			f.SourceRanges = []netip.Prefix{srcRange()}
		case k < 90:
			f.SourceRanges = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}
		default:
			f.Direction = model.Egress
			f.DestinationRanges = []netip.Prefix{srcRange()}
		}
		if rnd.IntN(20) == 0 {
			f.TargetTags = nil
		}
		if _, err := tx.CreateFirewall(f); err != nil {
			return nil, err
		}
	}
	e := Compile(FromState(s, proj))
	fb := &fwBench{e: e, rules: nRules}
	var ips []netip.Addr
	for i := range nInst {
		n, err := e.NIC(proj, zone, fmt.Sprintf("vm%d", i), "")
		if err != nil {
			return nil, err
		}
		fb.nics = append(fb.nics, n)
		ips = append(ips, n.f.ip)
	}
	for range 1 << 14 {
		p := fwPkt{nic: rnd.IntN(nInst), proto: []uint8{6, 6, 6, 17}[rnd.IntN(4)], port: uint16(1 + rnd.IntN(10000))}
		switch rnd.IntN(3) {
		case 0:
			p.src = ips[rnd.IntN(len(ips))]
		case 1:
			p.src = srcRange().Addr().Next()
		default:
			p.src = randAddr4(rnd)
		}
		p.dst = fb.nics[p.nic].f.ip
		fb.pkts = append(fb.pkts, p)
	}
	return fb, nil
}

// benchFirewall runs eval over the world's packets, reporting packets per
// CPU-second; world builds (once) the rules and packets.
func benchFirewall(b *testing.B, world func() (*fwBench, error), eval func(fb *fwBench, p *fwPkt)) {
	fb, err := world()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	clk := startCPU()
	for i := 0; b.Loop(); i++ {
		eval(fb, &fb.pkts[i&(1<<14-1)])
	}
	clk.report(b, "Mpkts/cpu-s")
}

func BenchmarkFirewallIngress10k(b *testing.B) {
	benchFirewall(b, fwWorld, func(fb *fwBench, p *fwPkt) { fb.nics[p.nic].Ingress(p.src, p.dst, p.proto, p.port) })
}

func BenchmarkFirewallIngress10kDistinctTagSets(b *testing.B) {
	benchFirewall(b, fwWorldDistinct, func(fb *fwBench, p *fwPkt) { fb.nics[p.nic].Ingress(p.src, p.dst, p.proto, p.port) })
}

func BenchmarkFirewallEgress10k(b *testing.B) {
	benchFirewall(b, fwWorld, func(fb *fwBench, p *fwPkt) { fb.nics[p.nic].Egress(p.dst, p.src, p.proto, p.port) })
}

// BenchmarkTrace is a whole trace (anti-spoof, two firewall evaluations,
// route, delivery, the explanation strings) in the 10k-rule world.
func BenchmarkTrace10kRules(b *testing.B) {
	fb, err := fwWorld()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		p := &fb.pkts[i&(1<<14-1)]
		from := fb.nics[(p.nic+1)%len(fb.nics)].f
		if _, err := fb.e.Trace(Query{Project: proj, Zone: zone, Instance: from.inst.name, Dst: p.dst, Protocol: p.proto, Port: p.port}); err != nil {
			b.Fatal(err)
		}
	}
}

// TestFirewallWorldSanity checks the benchmark world is not degenerate:
// packets are both allowed and denied, and indexed evaluation agrees with
// the linear reference on it.
func TestFirewallWorldSanity(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a 10k-rule world")
	}
	fb, err := fwWorld()
	if err != nil {
		t.Fatal(err)
	}
	verdicts := map[bool]int{}
	for _, p := range fb.pkts[:4000] {
		f := fb.nics[p.nic].f
		a := f.in.eval(p.src, p.dst, p.proto, p.port)
		b := f.in.evalLinear(p.src, p.dst, p.proto, p.port)
		if a != b {
			t.Fatalf("%+v: indexed %s, linear %s", p, a.name, b.name)
		}
		verdicts[!a.deny]++
	}
	if verdicts[true] < 100 || verdicts[false] < 100 {
		t.Fatalf("degenerate world: %v", verdicts)
	}
	sizes := 0
	for _, n := range fb.nics {
		sizes += len(n.f.in.rules)
	}
	t.Logf("allowed/denied %v; rules applying to an instance: %d on average", verdicts, sizes/len(fb.nics))
}

// threadCPU is the CPU time this OS thread has used. On a shared machine
// wall-clock ns/op includes time the benchmark waited for a core; the
// benchmarks also report cpu-ns/op, the CPU time actually spent per op.
func threadCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuClock measures a benchmark loop's CPU time on a locked thread.
type cpuClock struct{ start time.Duration }

func startCPU() *cpuClock {
	runtime.LockOSThread()
	return &cpuClock{start: threadCPU()}
}

func (c *cpuClock) report(b *testing.B, unit string) {
	used := threadCPU() - c.start
	runtime.UnlockOSThread()
	n := float64(b.N)
	b.ReportMetric(float64(used.Nanoseconds())/n, "cpu-ns/op")
	b.ReportMetric(n/used.Seconds()/1e6, unit)
}

// BenchmarkFirewallIngress10kOneTarget sends every packet to the same
// instance: its rule set stays in the caches, as it does on a host that
// enforces one VM's rules. The 10,000 rules of the network are all there;
// the cost is the indexed evaluation itself.
func BenchmarkFirewallIngress10kOneTarget(b *testing.B) {
	benchFirewall(b, fwWorld, func(fb *fwBench, p *fwPkt) { fb.nics[0].Ingress(p.src, fb.nics[0].f.ip, p.proto, p.port) })
}

// BenchmarkFirewallIngress10kAllApply: 10,000 ingress rules that all apply
// to the target (no target tags), each from its own /24: the per-target
// list is the whole rule set, the index keeps the cost flat.
func BenchmarkFirewallIngress10kAllApply(b *testing.B) {
	benchFirewall(b, allApplyWorld, func(fb *fwBench, p *fwPkt) { fb.nics[0].Ingress(p.src, p.dst, p.proto, p.port) })
}

var allApplyWorld = sync.OnceValues(func() (*fwBench, error) {
	rnd := rand.New(rand.NewPCG(42, 3))
	s := model.NewState()
	var id uint64
	tx := s.Begin("2026-01-01T00:00:00Z", func() uint64 { id++; return id })
	if _, err := tx.CreateNetwork(model.Network{Project: proj, Name: "vpc"}); err != nil {
		return nil, err
	}
	if _, err := tx.CreateSubnet(model.Subnet{Project: proj, Region: "us-central1", Name: "s", Network: "vpc", Range: pfx("10.0.0.0/16")}); err != nil {
		return nil, err
	}
	if _, _, err := tx.CreateInstance(model.CreateInstanceReq{Instance: model.Instance{Project: proj, Zone: zone, Name: "target"}, NICs: []model.NICSpec{{Subnet: "s"}}}); err != nil {
		return nil, err
	}
	for i := range 10_000 {
		src := netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(100 + i/65536), byte(i / 256), byte(i), 0}), 24)
		f := model.Firewall{Project: proj, Name: fmt.Sprintf("fw%d", i), Network: "vpc", Priority: 1 + rnd.IntN(65000),
			SourceRanges: []netip.Prefix{src}, Allowed: []model.FirewallProtocol{{Protocol: "tcp", Ports: []string{fmt.Sprint(1 + rnd.IntN(1000))}}}}
		if i%10 == 0 {
			f.Denied, f.Allowed = f.Allowed, nil
		}
		if _, err := tx.CreateFirewall(f); err != nil {
			return nil, err
		}
	}
	e := Compile(FromState(s, proj))
	n, err := e.NIC(proj, zone, "target", "")
	if err != nil {
		return nil, err
	}
	fb := &fwBench{e: e, nics: []*NIC{n}, rules: 10_000}
	for range 1 << 14 {
		i := rnd.IntN(12_000)
		fb.pkts = append(fb.pkts, fwPkt{src: netip.AddrFrom4([4]byte{byte(100 + i/65536), byte(i / 256), byte(i), 7}), dst: n.f.ip, proto: 6, port: uint16(1 + rnd.IntN(1000))})
	}
	return fb, nil
})

// BenchmarkRouteLookup100kBart is the same lookup through the bart table
// alone (the path Trace takes, which also needs the losing candidates):
// the reference for the flattened IPv4 index NIC.Route uses.
func BenchmarkRouteLookup100kBart(b *testing.B) {
	e, err := routeWorld()
	if err != nil {
		b.Fatal(err)
	}
	nic, err := e.NIC(proj, zone, "vm1", "")
	if err != nil {
		b.Fatal(err)
	}
	rnd := rand.New(rand.NewPCG(7, 7))
	dsts := make([]netip.Addr, 1<<16)
	for i := range dsts {
		dsts[i] = randAddr4(rnd)
	}
	b.ReportAllocs()
	b.ResetTimer()
	clk := startCPU()
	for i := 0; b.Loop(); i++ {
		nic.f.view.lookup(dsts[i&(1<<16-1)])
	}
	clk.report(b, "Mlookups/cpu-s")
}
