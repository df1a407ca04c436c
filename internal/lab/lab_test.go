package lab

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/aliasnet/aliasnet/internal/fabric"
	"github.com/aliasnet/aliasnet/internal/fabric/fabrictest"
	"github.com/aliasnet/aliasnet/internal/model"
	"github.com/aliasnet/aliasnet/internal/netpolicy"
)

// In-process tests of the lab: a model world built with real
// transactions, realised by Lab.Reconcile in namespaces named
// alt<pid>-..., probed with real packets. The e2e suite does the same
// through the binary and the API.

const (
	proj = "p"
	zone = "us-central1-a"
)

var (
	pfx  = netip.MustParsePrefix
	addr = netip.MustParseAddr
)

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
}

type world struct{ *fabrictest.World }

func newWorld(t testing.TB) *world { return &world{fabrictest.NewWorld(t)} }

// follow starts a server-side Builder on w and brings tl to its first
// spec, as a supervisor following deltas starts.
func follow(t testing.TB, tl *testLab, w *world) (*fabric.Builder, *fabric.Spec) {
	t.Helper()
	bl := &fabric.Builder{Project: proj}
	s0, err := bl.Update(fabric.FromState(w.S, proj))
	if err != nil {
		t.Fatal(err)
	}
	have := s0.Expanded()
	tl.reconcile(have)
	return bl, have
}

func nicSpec(subnet, ip string, aliases ...string) model.NICSpec {
	n := model.NICSpec{Subnet: subnet}
	if ip != "" {
		n.IP = addr(ip)
	}
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

func (w *world) vm(name string, tags []string, forward bool, nics ...model.NICSpec) {
	w.T.Helper()
	w.Do(func(tx *model.Txn) error {
		_, _, err := tx.CreateInstance(model.CreateInstanceReq{
			Instance: model.Instance{Project: proj, Zone: zone, Name: name, Tags: tags, CanIPForward: forward}, NICs: nics})
		return err
	})
}

func (w *world) fw(f model.Firewall) {
	w.T.Helper()
	f.Project = proj
	if f.Priority == 0 {
		f.Priority = 1000
	}
	w.Do(func(tx *model.Txn) error { _, err := tx.CreateFirewall(f); return err })
}

func protos(specs ...string) []model.FirewallProtocol {
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

func (w *world) spec() (*fabric.Spec, *netpolicy.Engine) {
	w.T.Helper()
	in := fabric.FromState(w.S, proj)
	e := netpolicy.Compile(in.Policy)
	s, err := fabric.BuildSpecFrom(proj, in, e)
	if err != nil {
		w.T.Fatal(err)
	}
	return s, e
}

// vpnWorld is seed 000's VPN scenario plus a tagged instance.
func vpnWorld(t testing.TB) *world {
	w := newWorld(t)
	w.Do(func(tx *model.Txn) error {
		if _, err := tx.CreateNetwork(model.Network{Project: proj, Name: "vpc"}); err != nil {
			return err
		}
		_, err := tx.CreateSubnet(model.Subnet{Project: proj, Region: "us-central1", Name: "s1", Network: "vpc", Range: pfx("10.128.0.0/16"),
			Secondary: []model.SecondaryRange{{Name: "pods", Range: pfx("172.16.0.0/20")}}})
		return err
	})
	w.vm("vm1", nil, false, nicSpec("s1", "10.128.0.2", "pods:172.16.0.0/24"))
	w.vm("vm2", []string{"web"}, false, nicSpec("s1", "10.128.0.3", "pods:172.16.1.0/24", "10.128.9.9"))
	w.vm("gw", []string{"vpn"}, true, nicSpec("s1", "10.128.0.10"))
	w.Do(func(tx *model.Txn) error {
		_, err := tx.CreateRoute(model.Route{Project: proj, Name: "to-onprem", Network: "vpc", DestRange: pfx("192.168.50.0/24"),
			Priority: 1000, NextHopInstance: zone + "/gw"})
		return err
	})
	w.fw(model.Firewall{Name: "deny-onprem-primary", Network: "vpc", Direction: model.Ingress, Priority: 900,
		Denied: protos("all"), SourceRanges: []netip.Prefix{pfx("192.168.50.0/24")}, DestinationRanges: []netip.Prefix{pfx("10.128.0.0/16")}})
	w.fw(model.Firewall{Name: "allow-onprem-pods", Network: "vpc", Direction: model.Ingress, Priority: 900,
		Allowed: protos("tcp", "udp", "icmp"), SourceRanges: []netip.Prefix{pfx("192.168.50.0/24")}, DestinationRanges: []netip.Prefix{pfx("172.16.0.0/20")}})
	w.fw(model.Firewall{Name: "allow-internal-80", Network: "vpc", Direction: model.Ingress,
		Allowed: protos("tcp:80", "icmp"), SourceRanges: []netip.Prefix{pfx("10.128.0.0/16"), pfx("172.16.0.0/20")}})
	w.fw(model.Firewall{Name: "allow-web-from-vpn-tag", Network: "vpc", Direction: model.Ingress,
		Allowed: protos("tcp:8080"), SourceTags: []string{"vpn"}, TargetTags: []string{"web"}})
	w.fw(model.Firewall{Name: "deny-egress-5432", Network: "vpc", Direction: model.Egress,
		Denied: protos("tcp:5432"), DestinationRanges: []netip.Prefix{pfx("0.0.0.0/0")}})
	w.fw(model.Firewall{Name: "allow-5432", Network: "vpc", Direction: model.Ingress,
		Allowed: protos("tcp:5432", "udp:53"), SourceRanges: []netip.Prefix{pfx("0.0.0.0/0")}})
	return w
}

type testLab struct {
	t      testing.TB
	l      *Lab
	prefix string
}

func newTestLab(t testing.TB) *testLab {
	needRoot(t)
	prefix := fmt.Sprintf("alt%d-", os.Getpid()%100000)
	l, err := New(Options{Project: proj, Prefix: prefix, StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	tl := &testLab{t: t, l: l, prefix: prefix}
	t.Cleanup(func() {
		if err := l.Teardown(true); err != nil {
			t.Errorf("teardown: %v", err)
		}
		out, _ := exec.Command("ip", "netns", "list").Output()
		for _, line := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(line, prefix) {
				t.Errorf("namespace left behind: %s", line)
				exec.Command("ip", "netns", "del", strings.Fields(line)[0]).Run()
			}
		}
	})
	return tl
}

func (tl *testLab) reconcile(s *fabric.Spec) time.Duration {
	tl.t.Helper()
	start := time.Now()
	if err := tl.l.Reconcile(context.Background(), s); err != nil {
		tl.t.Fatal(err)
	}
	return time.Since(start)
}

func (tl *testLab) ns(name string) netns.NsHandle {
	tl.t.Helper()
	h, err := netns.GetFromName(tl.prefix + name)
	if err != nil {
		tl.t.Fatal(err)
	}
	tl.t.Cleanup(func() { h.Close() })
	return h
}

// listen runs a probe listener inside an instance namespace.
func (tl *testLab) listen(h netns.NsHandle, name string, tcp, udp []string) {
	tl.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan error, 1)
	pr, pw, _ := os.Pipe()
	go func() {
		ready <- fabric.Do(h, func() error { return ProbeListen(ctx, name, tcp, udp, pw) })
	}()
	buf := make([]byte, 6)
	if _, err := pr.Read(buf); err != nil {
		tl.t.Fatal(err)
	}
	select {
	case err := <-ready:
		tl.t.Fatalf("listener %s: %v", name, err)
	default:
	}
	// Wait for the listener's thread to leave the namespace before the
	// lab is torn down.
	tl.t.Cleanup(func() { cancel(); <-ready })
}

func probeFrom(h netns.NsHandle, proto string, src, dst netip.Addr, port int, timeout time.Duration) ProbeResult {
	r, err := fabric.DoValue(h, func() (ProbeResult, error) {
		return Probe(context.Background(), proto, src, dst, port, timeout), nil
	})
	if err != nil {
		return ProbeResult{Err: err.Error()}
	}
	return r
}

// onprem attaches an "on-prem" namespace behind the gateway instance:
// 192.168.50.0/24 on a veth between them, default route via the gateway.
func (tl *testLab) onprem() netns.NsHandle {
	tl.t.Helper()
	name := tl.prefix + "onprem"
	exec.Command("ip", "netns", "del", name).Run()
	sh(tl.t, "ip", "netns", "add", name)
	tl.t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	gw := tl.prefix + "gw"
	sh(tl.t, "ip", "-n", gw, "link", "add", "onp0", "type", "veth", "peer", "name", "eth0", "netns", name)
	sh(tl.t, "ip", "-n", gw, "addr", "add", "192.168.50.1/24", "dev", "onp0")
	sh(tl.t, "ip", "-n", gw, "link", "set", "onp0", "up")
	sh(tl.t, "ip", "-n", name, "link", "set", "lo", "up")
	sh(tl.t, "ip", "-n", name, "addr", "add", "192.168.50.2/24", "dev", "eth0")
	sh(tl.t, "ip", "-n", name, "link", "set", "eth0", "up")
	sh(tl.t, "ip", "-n", name, "route", "add", "default", "via", "192.168.50.1")
	h, err := netns.GetFromName(name)
	if err != nil {
		tl.t.Fatal(err)
	}
	tl.t.Cleanup(func() { h.Close() })
	return h
}

func sh(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

var protoNum = map[string]uint8{"tcp": 6, "udp": 17, "icmp": 1}

// matrixCase is one (source, destination, protocol, port).
type matrixCase struct {
	from  string // instance (trace) and namespace (probe)
	nsOf  string // namespace to send from when not the instance's (on-prem)
	src   netip.Addr
	dst   netip.Addr
	proto string
	port  int
}

func (c matrixCase) String() string {
	from := c.from
	if c.nsOf != "" {
		from += "(via " + c.nsOf + ")"
	}
	return fmt.Sprintf("%s src=%s -> %s %s/%d", from, c.src, c.dst, c.proto, c.port)
}

func TestLabVPNScenario(t *testing.T) {
	tl := newTestLab(t)
	w := vpnWorld(t)
	s, e := w.spec()
	d := tl.reconcile(s)
	t.Logf("realised in %v", d)
	d = tl.reconcile(s)
	t.Logf("no-op reconcile %v", d)

	vm1, vm2, gw := tl.ns("vm1"), tl.ns("vm2"), tl.ns("gw")
	op := tl.onprem()
	ports := []string{"80", "8080", "5432", "22"}
	var tcp, udp []string
	for _, p := range ports {
		tcp = append(tcp, "0.0.0.0:"+p)
	}
	udp = append(udp, "0.0.0.0:53", "0.0.0.0:9999")
	tl.listen(vm1, "vm1", tcp, udp)
	tl.listen(vm2, "vm2", tcp, udp)
	tl.listen(gw, "gw", tcp, udp)
	tl.listen(op, "onprem", tcp, udp)

	nsOf := map[string]netns.NsHandle{"vm1": vm1, "vm2": vm2, "gw": gw, "onprem": op}
	srcs := map[string][]netip.Addr{
		"vm1": {addr("10.128.0.2"), addr("172.16.0.7")},
		"vm2": {addr("10.128.0.3"), addr("172.16.1.9"), addr("10.128.9.9")},
		"gw":  {addr("10.128.0.10")},
	}
	dsts := []netip.Addr{addr("10.128.0.2"), addr("172.16.0.5"), addr("10.128.0.3"), addr("172.16.1.200"), addr("10.128.9.9"),
		addr("10.128.0.10"), addr("10.128.0.77"), addr("172.16.5.5"), addr("192.168.50.2"), addr("8.8.8.8")}
	type pp struct {
		proto string
		port  int
	}
	pps := []pp{{"tcp", 80}, {"tcp", 8080}, {"tcp", 5432}, {"tcp", 22}, {"udp", 53}, {"icmp", 0}}
	var cases []matrixCase
	for from, ss := range srcs {
		for _, src := range ss {
			for _, dst := range dsts {
				if selfOrLocal(s, from, dst) || (from == "gw" && pfx("192.168.50.0/24").Contains(dst)) {
					continue // never reaches the fabric (see selfOrLocal)
				}
				for _, p := range pps {
					cases = append(cases, matrixCase{from: from, src: src, dst: dst, proto: p.proto, port: p.port})
				}
			}
		}
	}
	// On-prem, through the gateway: traced as the gateway's packets with
	// the on-prem source.
	for _, dst := range dsts[:8] {
		if selfOrLocal(s, "gw", dst) {
			continue
		}
		for _, p := range pps {
			cases = append(cases, matrixCase{from: "gw", nsOf: "onprem", src: addr("192.168.50.2"), dst: dst, proto: p.proto, port: p.port})
		}
	}
	runMatrix(t, e, cases, nsOf)
}

// selfOrLocal reports whether dst is an address of the sending instance:
// the guest delivers such packets itself, they never reach the fabric
// (netpolicy's trace evaluates the egress firewall first and may say
// DROPPED; the matrix leaves these out).
func selfOrLocal(s *fabric.Spec, from string, dst netip.Addr) bool {
	for _, in := range s.Instances {
		if in.Name != from {
			continue
		}
		for _, n := range in.NICs {
			if n.IP == dst {
				return true
			}
			for _, a := range n.Aliases {
				if a.Contains(dst) {
					return true
				}
			}
		}
	}
	return false
}

func runMatrix(t *testing.T, e *netpolicy.Engine, cases []matrixCase, nsOf map[string]netns.NsHandle) {
	t.Helper()
	var mu sync.Mutex
	var bad []string
	delivered := 0
	sem := make(chan struct{}, 48)
	var wg sync.WaitGroup
	start := time.Now()
	for _, c := range cases {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			tr, err := e.Trace(netpolicy.Query{Project: proj, Zone: zone, Instance: c.from, Src: c.src, Dst: c.dst, Protocol: protoNum[c.proto], Port: uint16(c.port)})
			if err != nil {
				mu.Lock()
				bad = append(bad, fmt.Sprintf("%s: trace: %v", c, err))
				mu.Unlock()
				return
			}
			nsName := c.from
			src := c.src
			if c.nsOf != "" {
				nsName = c.nsOf
			}
			timeout := 700 * time.Millisecond
			r := probeFrom(nsOf[nsName], c.proto, src, c.dst, c.port, timeout)
			want := tr.Verdict == netpolicy.Delivered
			got := r.Delivered()
			mu.Lock()
			defer mu.Unlock()
			if got {
				delivered++
			}
			if want != got {
				last := tr.Steps[len(tr.Steps)-1]
				bad = append(bad, fmt.Sprintf("%s: trace %s (%s: %s), real packet delivered=%v (%+v)", c, tr.Verdict, last.Kind, last.Detail, got, r))
				return
			}
			if got && r.Reply != "" && tr.DeliveredTo != nil && tr.Egress == "" {
				// The greeting names the receiving instance.
				wantName := tr.DeliveredTo.Instance[strings.LastIndex(tr.DeliveredTo.Instance, "/")+1:]
				if tr.DeliveredTo.Forwarded {
					wantName = "onprem"
				}
				if r.Reply != wantName {
					bad = append(bad, fmt.Sprintf("%s: trace delivers to %s, real packet answered by %s", c, wantName, r.Reply))
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("%d cases (%d delivered) in %v", len(cases), delivered, time.Since(start))
	for _, b := range bad {
		t.Error(b)
	}
}

// scaleWorld: one network, n instances with k /32 aliases each (from a
// secondary range) plus a firewall rule with a source range list.
func scaleWorld(t testing.TB, n, k int) *world {
	w := newWorld(t)
	w.Do(func(tx *model.Txn) error {
		if _, err := tx.CreateNetwork(model.Network{Project: proj, Name: "vpc"}); err != nil {
			return err
		}
		_, err := tx.CreateSubnet(model.Subnet{Project: proj, Region: "us-central1", Name: "s1", Network: "vpc", Range: pfx("10.128.0.0/16"),
			Secondary: []model.SecondaryRange{{Name: "pods", Range: pfx("172.16.0.0/12")}}})
		return err
	})
	for i := range n {
		var as []string
		for j := range k {
			// Every other /32: no two aliases of an instance are adjacent,
			// so the anti-spoof set holds k+1 intervals.
			as = append(as, fmt.Sprintf("pods:172.%d.%d.%d", 16+i/64, (i%64)*4+j/100, (j%100)*2+1))
		}
		w.vm(fmt.Sprintf("vm%d", i), nil, false, nicSpec("s1", fmt.Sprintf("10.128.%d.%d", i/200, i%200+2), as...))
	}
	w.fw(model.Firewall{Name: "allow-all", Network: "vpc", Direction: model.Ingress, Allowed: protos("all"), SourceRanges: []netip.Prefix{pfx("0.0.0.0/0")}})
	return w
}

func (w *world) setAliases(vm string, aliases ...string) {
	w.T.Helper()
	var specs []model.AliasSpec
	for _, a := range aliases {
		rn, r, _ := strings.Cut(a, ":")
		s, err := model.ParseAliasSpec(r)
		if err != nil {
			w.T.Fatal(err)
		}
		s.RangeName = rn
		specs = append(specs, s)
	}
	w.Do(func(tx *model.Txn) error {
		in := w.S.Instance(proj, zone, vm)
		ifc := w.S.Interface(proj, in.NICs[0])
		_, err := tx.UpdateAliases(proj, zone, vm, "nic0", ifc.Fingerprint, specs)
		return err
	})
}

// TestLabScale realises 10,000 alias ranges (100 instances x 100 /32s)
// and changes one. Benchmark: ALIASNET_LAB_BENCH=1.
func TestLabScale(t *testing.T) {
	if os.Getenv("ALIASNET_LAB_BENCH") == "" {
		t.Skip("set ALIASNET_LAB_BENCH=1")
	}
	tl := newTestLab(t)
	const n, k = 100, 100
	w := scaleWorld(t, n, k)
	start := time.Now()
	s, _ := w.spec()
	specT := time.Since(start)
	d := tl.reconcile(s)
	t.Logf("%d aliases: spec %v, realised (namespaces, veths, guest routes, fabric) in %v", n*k, specT, d)
	r := tl.l.routers[proj+"/vpc"]
	st := r.fab.Last()
	t.Logf("fabric apply: %+v", st)
	// Everything present in the kernel.
	rh := tl.ns("net-vpc")
	port := Port(proj, s.Instances[0].NICs[0].Interface)
	rs, err := fabric.SetRanges(rh, "as_"+port)
	if err != nil || len(rs) != k+1 {
		t.Fatalf("anti-spoof set of vm0: %d ranges, %v", len(rs), err)
	}
	// One alias changed, 20 times: the whole path before deltas (compile
	// the whole spec, reconcile everything), then the incremental one
	// (the server's Builder patches its spec and makes the delta; the
	// supervisor decodes it, applies it and reconciles what changed).
	as := []string{}
	for j := range k {
		as = append(as, fmt.Sprintf("pods:172.16.%d.%d", j/100, (j%100)*2+1))
	}
	var total []time.Duration
	for i := range 20 {
		as[0] = fmt.Sprintf("pods:172.31.255.%d", 2*i+1)
		w.setAliases("vm0", as...)
		start := time.Now()
		s, _ = w.spec()
		sp := time.Since(start)
		tl.reconcile(s)
		total = append(total, time.Since(start))
		if i == 0 {
			t.Logf("whole: spec %v, reconcile %v (fabric %+v)", sp, time.Since(start)-sp, r.fab.Last())
		}
	}
	slicesSort(total)
	t.Logf("one alias changed, whole spec + reconcile: median %v, max %v", total[len(total)/2], total[len(total)-1])

	bl, have := follow(t, tl, w)
	var server, client, inc []time.Duration
	for i := range 20 {
		as[0] = fmt.Sprintf("pods:172.31.254.%d", 2*i+1)
		w.setAliases("vm0", as...)
		start := time.Now()
		s, err := bl.Update(fabric.FromState(w.S, proj))
		if err != nil {
			t.Fatal(err)
		}
		enc, err := fabric.EncodeUpdate(&fabric.Update{ETag: s.ETag, Delta: bl.Delta(have.ETag)})
		if err != nil {
			t.Fatal(err)
		}
		srv := time.Since(start)
		t1 := time.Now()
		u, err := fabric.DecodeUpdate(enc)
		if err != nil {
			t.Fatal(err)
		}
		next, ch, err := fabric.ApplyDelta(have, u.Delta)
		if err != nil {
			t.Fatal(err)
		}
		apply := time.Since(t1)
		if err := tl.l.ReconcileChanges(context.Background(), next, ch); err != nil {
			t.Fatal(err)
		}
		have = next
		server, client, inc = append(server, srv), append(client, apply), append(inc, time.Since(start))
		if i == 0 {
			t.Logf("incremental: server %v (patched %v, %d-byte delta), decode+apply %v, reconcile %v (fabric %+v)",
				srv, bl.Last().Patched, len(enc), apply, time.Since(t1)-apply, r.fab.Last())
		}
	}
	for _, ds := range [][]time.Duration{server, client, inc} {
		slicesSort(ds)
	}
	t.Logf("one alias changed, incremental: median %v (server %v, decode+apply %v), max %v",
		inc[len(inc)/2], server[len(server)/2], client[len(client)/2], inc[len(inc)-1])
	if got := deliveryRouteCount(t, r); got != n*(k+1) {
		t.Fatalf("%d delivery routes after the changes", got)
	}
}

func deliveryRouteCount(t *testing.T, r *routerNS) int {
	rs, err := r.nl.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: fabric.TableDeliver}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	return len(rs)
}

func slicesSort(ds []time.Duration) {
	for i := range ds {
		for j := i + 1; j < len(ds); j++ {
			if ds[j] < ds[i] {
				ds[i], ds[j] = ds[j], ds[i]
			}
		}
	}
}
