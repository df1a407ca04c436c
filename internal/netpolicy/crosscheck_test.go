package netpolicy

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/gaissmai/bart"

	"github.com/aliasnet/aliasnet/internal/model"
)

// simulate is a data plane written only against Desired, the way the lab
// will program it: linear scans, no netpolicy internals. Trace must agree
// with it on every packet.
func simulate(ds map[string]*Desired, network string, fromID string, src, dst netip.Addr, proto uint8, port uint16) (verdict, to string) {
	d := ds[network]
	var from *FabricInterface
	for i := range d.Interfaces {
		if d.Interfaces[i].ID == fromID {
			from = &d.Interfaces[i]
		}
	}
	if !from.Running {
		return Dropped, ""
	}
	if as := d.AntiSpoof[from.ID]; as != nil && !inAny(as, src) {
		return Dropped, ""
	}
	if chainDenies(d.Chains[from.EgressChain], src, dst, proto, port) {
		return Dropped, ""
	}
	var best *Route
	for i, r := range d.RouteTables[from.RouteTable].Routes {
		if r.Dst.Contains(dst) && (best == nil || r.Dst.Bits() > best.Dst.Bits()) {
			best = &d.RouteTables[from.RouteTable].Routes[i]
		}
	}
	if best == nil {
		return Dropped, ""
	}
	lookup := func(d *Desired, a netip.Addr) *FabricInterface {
		bits, id := -1, ""
		for _, f := range d.Forwarding {
			if f.Dst.Contains(a) && f.Dst.Bits() > bits {
				bits, id = f.Dst.Bits(), f.Interface
			}
		}
		for i := range d.Interfaces {
			if d.Interfaces[i].ID == id {
				return &d.Interfaces[i]
			}
		}
		return nil
	}
	var target *FabricInterface
	switch best.NextHop.Kind {
	case HopNetwork:
		target = lookup(d, dst)
		if target != nil && target.ID == from.ID {
			return Delivered, target.Instance
		}
	case HopPeering:
		d = ds[best.NextHop.Network]
		target = lookup(d, dst)
	case HopInstance:
		for i := range d.Interfaces {
			if d.Interfaces[i].ID == best.NextHop.Interface {
				target = &d.Interfaces[i]
			}
		}
	case HopInternet:
		if from.ExternalIP.IsValid() {
			return Delivered, "internet"
		}
		return Dropped, ""
	case HopExternal:
		return Delivered, "external"
	}
	if target == nil || target.Instance == "" || !target.Running {
		return Dropped, ""
	}
	if chainDenies(d.Chains[target.IngressChain], src, dst, proto, port) {
		return Dropped, ""
	}
	if dst != target.IP && !inAny(target.Aliases, dst) && !target.CanIPForward {
		return Dropped, ""
	}
	return Delivered, target.Instance
}

func chainDenies(c Chain, src, dst netip.Addr, proto uint8, port uint16) bool {
	for _, r := range c.Rules {
		ok := false
		for _, p := range r.Protocols {
			ok = ok || p.Matches(proto, port)
		}
		if !ok || !(r.AnySource || inAny(r.Sources, src)) || !(r.AnyDestination || inAny(r.Destinations, dst)) {
			continue
		}
		return r.Action == "DENY"
	}
	panic("chain without an implied rule")
}

// randomWorld builds a random but valid project: two peered networks,
// instances with random tags, aliases, canIpForward and status, random
// static and dynamic routes and firewall rules. Invalid random choices are
// refused by the model and skipped.
func randomWorld(t *testing.T, rnd *rand.Rand) (*world, []netip.Addr) {
	w := newWorld(t)
	w.network("vpc", "subnet-a", "10.0.0.0/16", model.SecondaryRange{Name: "sec", Range: pfx("172.16.0.0/16")})
	w.network("other", "subnet-b", "10.1.0.0/16", model.SecondaryRange{Name: "sec-b", Range: pfx("172.17.0.0/16")})
	try := func(m func(tx *model.Txn) error) {
		tx := w.s.Begin("2026-01-01T00:00:00Z", func() uint64 { w.id++; return w.id })
		if err := m(tx); err != nil {
			tx.Rollback()
		}
	}
	try(func(tx *model.Txn) error {
		_, err := tx.AddPeering(proj, "vpc", model.Peering{Name: "p1", Peer: proj + "/other"})
		return err
	})
	if rnd.IntN(3) > 0 {
		try(func(tx *model.Txn) error {
			_, err := tx.AddPeering(proj, "other", model.Peering{Name: "p2", Peer: proj + "/vpc"})
			return err
		})
	}
	tags := []string{"a", "b", "c"}
	pick := func() []string {
		var out []string
		for _, t := range tags {
			if rnd.IntN(3) == 0 {
				out = append(out, t)
			}
		}
		return out
	}
	var addrs []netip.Addr
	for i := range 10 {
		net, sub, sec, base, secBase := "vpc", "subnet-a", "sec", 0, 16
		if i >= 7 {
			net, sub, sec, base, secBase = "other", "subnet-b", "sec-b", 1, 17
		}
		_ = net
		ip := fmt.Sprintf("10.%d.0.%d", base, 10+i)
		spec := nicSpec(sub, ip)
		if rnd.IntN(2) == 0 {
			spec.Aliases = append(spec.Aliases, model.AliasSpec{Prefix: pfx(fmt.Sprintf("172.%d.%d.0/28", secBase, i)), RangeName: sec})
		}
		if rnd.IntN(3) == 0 {
			spec.Aliases = append(spec.Aliases, model.AliasSpec{Prefix: pfx(fmt.Sprintf("10.%d.%d.0/30", base, 100+i))})
		}
		w.vm(fmt.Sprintf("vm%d", i), vmOpt{tags: pick(), forward: rnd.IntN(4) == 0, nics: []model.NICSpec{spec}})
		addrs = append(addrs, addr(ip), addr(fmt.Sprintf("172.%d.%d.5", secBase, i)), addr(fmt.Sprintf("10.%d.%d.2", base, 100+i)))
		if rnd.IntN(6) == 0 {
			try(func(tx *model.Txn) error {
				_, err := tx.SetInstanceStatus(proj, zone, fmt.Sprintf("vm%d", i), model.InstanceStopped)
				return err
			})
		}
	}
	addrs = append(addrs, addr("8.8.8.8"), addr("192.168.1.1"), addr("192.168.77.1"), addr("10.0.99.99"), addr("172.16.200.1"), addr("10.1.0.50"))
	dests := []string{"192.168.0.0/16", "192.168.1.0/24", "0.0.0.0/0", "8.0.0.0/8", "10.0.0.0/8", "10.0.99.0/24", "172.16.0.0/12"}
	for i := range 12 {
		r := model.Route{Project: proj, Name: fmt.Sprintf("r%d", i), Network: "vpc", DestRange: pfx(dests[rnd.IntN(len(dests))]),
			Priority: []int{0, 100, 1000}[rnd.IntN(3)]}
		if rnd.IntN(3) == 0 {
			r.Tags = pick()
		}
		switch rnd.IntN(3) {
		case 0:
			r.NextHopInstance = fmt.Sprintf("%s/vm%d", zone, rnd.IntN(7))
		case 1:
			r.NextHopIP = addr(fmt.Sprintf("10.0.0.%d", 10+rnd.IntN(9)))
		default:
			r.NextHopGateway = model.DefaultInternetGateway
		}
		try(func(tx *model.Txn) error { _, err := tx.CreateRoute(r); return err })
	}
	try(func(tx *model.Txn) error {
		_, err := tx.SetDynamicRoutes(proj, "vpc", []model.DynamicRoute{
			{Dest: pfx("192.168.0.0/17"), NextHop: addr("169.254.0.1"), Priority: rnd.IntN(2000)},
			{Dest: pfx("192.168.64.0/18"), NextHop: addr("10.0.0.11"), Priority: rnd.IntN(2000)},
		})
		return err
	})
	ranges := []string{"10.0.0.0/16", "10.0.0.10/32", "10.0.0.12/31", "172.16.0.0/16", "172.16.3.0/24", "192.168.0.0/16", "0.0.0.0/0", "10.1.0.0/16", "172.17.0.0/16", "10.0.100.0/22"}
	protoSets := [][]string{{"tcp"}, {"tcp:22"}, {"tcp:80-90,443"}, {"udp:53"}, {"icmp"}, {"all"}, {"tcp:22", "udp"}}
	for i := range 40 {
		f := model.Firewall{Project: proj, Name: fmt.Sprintf("f%d", i), Network: []string{"vpc", "other"}[rnd.IntN(2)],
			Priority: []int{100, 1000, 1000, 65535}[rnd.IntN(4)], Disabled: rnd.IntN(10) == 0}
		if rnd.IntN(3) == 0 {
			f.Direction = model.Egress
		}
		ps := protos(protoSets[rnd.IntN(len(protoSets))])
		if rnd.IntN(2) == 0 {
			f.Denied = ps
		} else {
			f.Allowed = ps
		}
		for range rnd.IntN(3) {
			f.SourceRanges = append(f.SourceRanges, pfx(ranges[rnd.IntN(len(ranges))]))
		}
		if f.Direction != model.Egress && rnd.IntN(3) == 0 {
			f.SourceTags = pick()
		}
		if rnd.IntN(3) == 0 {
			f.DestinationRanges = append(f.DestinationRanges, pfx(ranges[rnd.IntN(len(ranges))]))
		}
		if rnd.IntN(2) == 0 {
			f.TargetTags = pick()
		}
		try(func(tx *model.Txn) error { _, err := tx.CreateFirewall(f); return err })
	}
	return w, addrs
}

func TestTraceAgreesWithFabric(t *testing.T) {
	cases := 0
	verdicts := map[string]int{}
	for seed := range 40 {
		rnd := rand.New(rand.NewPCG(uint64(seed), 7))
		w, addrs := randomWorld(t, rnd)
		e := w.engine()
		ds := map[string]*Desired{}
		for _, k := range e.Networks() {
			p, n, _ := cut(k)
			d, err := e.Fabric(p, n)
			if err != nil {
				t.Fatal(err)
			}
			ds[k] = d
		}
		for range 300 {
			i := rnd.IntN(10)
			name := fmt.Sprintf("vm%d", i)
			f, _ := e.iface(proj, zone, name, "")
			src := f.ip
			if rnd.IntN(3) == 0 {
				src = addrs[rnd.IntN(len(addrs))]
			}
			dst := addrs[rnd.IntN(len(addrs))]
			proto := []uint8{6, 17, 1, 47}[rnd.IntN(4)]
			port := []uint16{22, 53, 80, 85, 443, 8080}[rnd.IntN(6)]
			res, err := e.Trace(Query{Project: proj, Zone: zone, Instance: name, Src: src, Dst: dst, Protocol: proto, Port: port})
			if err != nil {
				t.Fatal(err)
			}
			v, to := simulate(ds, f.net.key, f.id, src, dst, proto, port)
			// A packet to the sender's own address stays in the guest:
			// the fabric never sees it.
			for _, g := range f.inst.nics {
				if _, own := g.ownsAddr(dst); own && f.inst.status == model.InstanceRunning {
					v, to = Delivered, f.inst.key
				}
			}
			got := ""
			switch {
			case res.DeliveredTo != nil:
				got = res.DeliveredTo.Instance
			case res.Egress == HopInternet:
				got = "internet"
			case res.Egress == HopExternal:
				got = "external"
			}
			if res.Verdict != v || (v == Delivered && got != to) {
				t.Fatalf("seed %d: %s %s->%s proto %d port %d: trace %s (%s), fabric %s (%s)\n%+v", seed, name, src, dst, proto, port, res.Verdict, got, v, to, res.Steps)
			}
			cases++
			last := res.Steps[len(res.Steps)-1]
			verdicts[res.Verdict+" at "+last.Kind]++
		}
	}
	t.Logf("%d packets agree: %v", cases, verdicts)
	for _, k := range []string{"DELIVERED at deliver", "DROPPED at anti-spoof", "DROPPED at egress-firewall", "DROPPED at route", "DROPPED at ingress-firewall", "DROPPED at deliver"} {
		if verdicts[k] < 50 {
			t.Errorf("the random matrix exercises %q only %d times", k, verdicts[k])
		}
	}
}

func cut(k string) (string, string, bool) {
	for i := 0; i < len(k); i++ {
		if k[i] == '/' {
			return k[:i], k[i+1:], true
		}
	}
	return k, "", false
}

// TestIndexedEvalMatchesLinear checks the indexed firewall evaluation
// against evaluating every rule in order, on random rule sets.
func TestIndexedEvalMatchesLinear(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	for seed := range 30 {
		w, addrs := randomWorld(t, rand.New(rand.NewPCG(uint64(seed), 99)))
		e := w.engine()
		for _, nw := range e.nets {
			for _, sets := range nw.fw.sets {
				for _, s := range sets {
					for range 500 {
						src, dst := addrs[rnd.IntN(len(addrs))], addrs[rnd.IntN(len(addrs))]
						proto := []uint8{6, 17, 1, 47}[rnd.IntN(4)]
						port := []uint16{22, 53, 80, 85, 443, 8080}[rnd.IntN(6)]
						if a, b := s.eval(src, dst, proto, port), s.evalLinear(src, dst, proto, port); a != b {
							t.Fatalf("seed %d: %s->%s %d/%d: indexed %s, linear %s", seed, src, dst, proto, port, a.name, b.name)
						}
					}
				}
			}
		}
	}
}

// TestFlat4MatchesBart: the flattened IPv4 index answers exactly as the
// bart table it is built from, on random tables (nested, adjacent and
// edge-of-space prefixes) and addresses.
func TestFlat4MatchesBart(t *testing.T) {
	for seed := range 50 {
		rnd := rand.New(rand.NewPCG(uint64(seed), 3))
		tbl := &bart.Table[*slot]{}
		n := 1 + rnd.IntN(2000)
		for i := range n {
			bits := rnd.IntN(33)
			if i%7 == 0 {
				bits = []int{0, 1, 31, 32}[rnd.IntN(4)]
			}
			a := netip.AddrFrom4([4]byte{byte(rnd.UintN(256)), byte(rnd.UintN(256)), byte(rnd.UintN(256)), byte(rnd.UintN(256))})
			if i%5 == 0 {
				a = netip.AddrFrom4([4]byte{255, 255, 255, byte(rnd.UintN(256))})
			}
			tbl.Insert(netip.PrefixFrom(a, bits).Masked(), &slot{win: &Route{Name: fmt.Sprint(i)}})
		}
		f := buildFlat4(tbl)
		probe := func(a netip.Addr) {
			want, ok := tbl.Lookup(a)
			b := a.As4()
			got := f.lookup(uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]))
			if ok != (got != nil) || (ok && got != want.win) {
				t.Fatalf("seed %d: %s: flat %v, bart %v %v", seed, a, got, ok, want)
			}
		}
		for range 3000 {
			probe(netip.AddrFrom4([4]byte{byte(rnd.UintN(256)), byte(rnd.UintN(256)), byte(rnd.UintN(256)), byte(rnd.UintN(256))}))
		}
		for p := range tbl.All4() {
			probe(p.Addr())
			probe(lastOf(p))
			if n := lastOf(p).Next(); n.IsValid() {
				probe(n)
			}
			if pv := p.Addr().Prev(); pv.IsValid() {
				probe(pv)
			}
		}
		probe(netip.MustParseAddr("0.0.0.0"))
		probe(netip.MustParseAddr("255.255.255.255"))
	}
}

func lastOf(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	for i := p.Bits(); i < 32; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	return netip.AddrFrom4(b)
}
