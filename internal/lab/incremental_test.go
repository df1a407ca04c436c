package lab

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/aliasnet/aliasnet/internal/fabric"
	"github.com/aliasnet/aliasnet/internal/fabric/fabrictest"
	"github.com/aliasnet/aliasnet/internal/model"
)

// newTestLabPrefix is newTestLab with another namespace prefix (tag),
// for a second lab beside the first.
func newTestLabPrefix(t testing.TB, tag string) *testLab {
	needRoot(t)
	prefix := fmt.Sprintf("al%s%d-", tag, os.Getpid()%100000)
	l, err := New(Options{Project: proj, Prefix: prefix, StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	tl := &testLab{t: t, l: l, prefix: prefix}
	t.Cleanup(func() { tl.teardown() })
	return tl
}

func (tl *testLab) teardown() {
	if err := tl.l.Teardown(true); err != nil {
		tl.t.Errorf("teardown: %v", err)
	}
	names, _ := os.ReadDir("/run/netns")
	for _, n := range names {
		if strings.HasPrefix(n.Name(), tl.prefix) {
			tl.t.Errorf("namespace left behind: %s", n.Name())
			netns.DeleteNamed(n.Name())
		}
	}
}

// dumpLab describes, in one comparable text, everything the lab put in
// the kernel: per router (by network) its routes, rules, lo addresses,
// links and nftables sets, maps and chains; per instance (by key) its
// addresses, routes and ip_forward. Namespace names are left out, so two
// labs of the same spec dump alike.
// linkNames lists a namespace's links and names them by index.
func linkNames(t *testing.T, nl *netlink.Handle) ([]netlink.Link, map[int]string) {
	t.Helper()
	links, err := nl.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	names := map[int]string{}
	for _, lk := range links {
		names[lk.Attrs().Index] = lk.Attrs().Name
	}
	return links, names
}

func dumpLab(t *testing.T, l *Lab) string {
	t.Helper()
	var out []string
	add := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	for key, r := range l.routers {
		p := "router " + key + ": "
		links, names := linkNames(t, r.nl)
		for _, lk := range links {
			a := lk.Attrs()
			add("%slink %s up=%v", p, a.Name, a.Flags&unix.IFF_UP != 0)
		}
		rs, err := r.nl.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: fabric.RouteProtocol}, netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
		if err != nil {
			t.Fatal(err)
		}
		for _, kr := range rs {
			add("%sroute table %d %v type %d dev %s via %v", p, kr.Table, kr.Dst, kr.Type, names[kr.LinkIndex], kr.Gw)
		}
		rules, err := r.nl.RuleList(netlink.FAMILY_V4)
		if err != nil {
			t.Fatal(err)
		}
		for _, ru := range rules {
			if ru.Priority == fabric.RulePriority || ru.Priority == fabric.RulePriority+1 {
				add("%srule %d iif %s table %d", p, ru.Priority, ru.IifName, ru.Table)
			}
		}
		if lo, err := r.nl.LinkByName("lo"); err == nil {
			as, _ := r.nl.AddrList(lo, netlink.FAMILY_V4)
			for _, a := range as {
				add("%slo %s %s", p, a.IPNet, a.Label)
			}
		}
		c, err := nftables.New(nftables.WithNetNSFd(int(r.h)))
		if err != nil {
			t.Fatal(err)
		}
		tbl := &nftables.Table{Name: fabric.NFTTable, Family: nftables.TableFamilyIPv4}
		sets, err := c.GetSets(tbl)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range sets {
			if s.IsMap {
				els, err := c.GetSetElements(s)
				if err != nil {
					t.Fatal(err)
				}
				for _, e := range els {
					chain := ""
					if e.VerdictData != nil {
						chain = e.VerdictData.Chain
					}
					add("%smap %s %s -> %s", p, s.Name, strings.TrimRight(string(e.Key), "\x00"), chain)
				}
				continue
			}
			rgs, err := fabric.SetRanges(r.h, s.Name)
			if err != nil {
				t.Fatal(err)
			}
			add("%sset %s %v", p, s.Name, rgs)
		}
		chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
		if err != nil {
			t.Fatal(err)
		}
		for _, ch := range chains {
			if ch.Table.Name != fabric.NFTTable {
				continue
			}
			rules, err := c.GetRules(tbl, ch)
			if err != nil {
				t.Fatal(err)
			}
			var ud []string
			for _, ru := range rules {
				ud = append(ud, string(ru.UserData))
			}
			add("%schain %s %d rules %v", p, ch.Name, len(rules), ud)
		}
		c.CloseLasting()
	}
	for key, ins := range l.insts {
		p := "instance " + key + ": "
		links, names := linkNames(t, ins.nl)
		for _, lk := range links {
			a := lk.Attrs()
			if a.Name == "lo" {
				continue
			}
			add("%slink %s up=%v mac %s", p, a.Name, a.Flags&unix.IFF_UP != 0, a.HardwareAddr)
			as, _ := ins.nl.AddrList(lk, netlink.FAMILY_V4)
			for _, ad := range as {
				add("%saddr %s %s", p, a.Name, ad.IPNet)
			}
		}
		rs, err := ins.nl.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{}, netlink.RT_FILTER_TABLE)
		if err != nil {
			t.Fatal(err)
		}
		for _, kr := range rs {
			if kr.Protocol == AliasRouteProtocol || kr.Protocol == fabric.RouteProtocol {
				add("%sroute table %d %v type %d dev %s via %v proto %d", p, kr.Table, kr.Dst, kr.Type, names[kr.LinkIndex], kr.Gw, kr.Protocol)
			}
		}
		fwd, _ := fabric.ReadSysctl(ins.h, "net/ipv4/ip_forward")
		add("%sip_forward %s", p, strings.TrimSpace(fwd))
	}
	slices.Sort(out)
	return strings.Join(out, "\n")
}

// k8sWorld is vpnWorld plus a cluster on s1 (pods and services ranges)
// whose node pool takes joined instances.
func k8sWorld(t testing.TB) *world {
	w := vpnWorld(t)
	fabrictest.AddCluster(w.S, w.Do, proj, zone)
	return w
}

// TestLabIncrementalMatchesFull: a lab following a random history with
// deltas (fabric.Builder on the server side, ApplyDelta and
// ReconcileChanges on the supervisor's) holds in the kernel exactly what
// a second lab built from scratch from the final spec holds — checked at
// several points of the history.
func TestLabIncrementalMatchesFull(t *testing.T) {
	inc := newTestLabPrefix(t, "i")
	w := k8sWorld(t)
	seed := rand.New(rand.NewPCG(uint64(os.Getpid()), 5)).Uint64()
	c := &fabrictest.Churn{S: w.S, R: rand.New(rand.NewPCG(seed, 5)), Project: proj, Zone: zone,
		VMs: []string{"vm1", "vm2", "gw"}, Keep: []string{"vm1", "vm2", "gw"},
		AliasBase: netip.MustParseAddr("172.16.2.0"), PrimaryBase: netip.MustParseAddr("10.128.9.0"),
		Try: w.Try}
	t.Logf("seed %d", seed)
	bl, have := follow(t, inc, w)
	var history []string
	incremental, checks := 0, 0
	for i := range 60 {
		for range 1 + c.R.IntN(3) {
			history = append(history, c.Step())
		}
		s, err := bl.Update(fabric.FromState(w.S, proj))
		if err != nil {
			t.Fatal(err)
		}
		d := bl.Delta(have.ETag)
		if d == nil {
			t.Fatalf("step %d: no delta from the previous spec", i)
		}
		enc, err := fabric.EncodeUpdate(&fabric.Update{ETag: s.ETag, Delta: d})
		if err != nil {
			t.Fatal(err)
		}
		u, err := fabric.DecodeUpdate(enc)
		if err != nil {
			t.Fatal(err)
		}
		next, ch, err := fabric.ApplyDelta(have, u.Delta)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if err := inc.l.ReconcileChanges(context.Background(), next, ch); err != nil {
			t.Fatalf("step %d (%v): %v", i, history[max(0, len(history)-3):], err)
		}
		incremental++
		have = next
		if i == 30 {
			// The supervisor restarts: it starts over from the whole spec.
			inc.restart()
			inc.reconcile(have)
		}
		if i%20 != 19 {
			continue
		}
		checks++
		full := newTestLabPrefix(t, "f")
		want, err := fabric.BuildSpec(proj, fabric.FromState(w.S, proj))
		if err != nil {
			t.Fatal(err)
		}
		full.reconcile(want)
		got, exp := dumpLab(t, inc.l), dumpLab(t, full.l)
		if got != exp {
			t.Errorf("step %d (after %v): the incremental lab differs from a full build:\n%s", i, history[max(0, len(history)-6):], lineDiff(got, exp))
		}
		if !strings.Contains(exp, "route table 999") || !strings.Contains(exp, "proto 66") {
			t.Fatalf("the dump misses things:\n%s", exp)
		}
		full.teardown()
	}
	t.Logf("%d incremental reconciles, %d comparisons with a full build; history: %v", incremental, checks, history)
}

// restart is a supervisor restart: the lab's handles are closed (its
// namespaces stay), and a new Lab with the same prefix and state takes
// over; the caller then reconciles it with a whole spec, as Supervise
// does.
func (tl *testLab) restart() {
	tl.t.Helper()
	old := tl.l
	old.FlushStatus()
	for _, i := range old.insts {
		old.closeInstance(i)
	}
	for _, r := range old.routers {
		old.closeRouter(r)
	}
	l, err := New(old.o)
	if err != nil {
		tl.t.Fatal(err)
	}
	tl.l = l
}

func lineDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	var out []string
	for _, l := range g {
		if !slices.Contains(w, l) {
			out = append(out, "+ "+l)
		}
	}
	for _, l := range w {
		if !slices.Contains(g, l) {
			out = append(out, "- "+l)
		}
	}
	return strings.Join(out, "\n")
}

// TestLabPodRangeNotLocal: inside a Kubernetes node, the lab installs no
// local route for the node's pod range (the node forwards it to its
// pods), while its other aliases stay local; the fabric routes the pod
// range to the node like any alias. Joining and leaving follow through
// deltas, and a local route left by an older lab is removed.
func TestLabPodRangeNotLocal(t *testing.T) {
	tl := newTestLab(t)
	w := k8sWorld(t)
	bl, have := follow(t, tl, w)
	next := func() {
		t.Helper()
		s, err := bl.Update(fabric.FromState(w.S, proj))
		if err != nil {
			t.Fatal(err)
		}
		next, ch, err := fabric.ApplyDelta(have, bl.Delta(have.ETag))
		if err != nil || next.ETag != s.ETag {
			t.Fatal(err)
		}
		if err := tl.l.ReconcileChanges(context.Background(), next, ch); err != nil {
			t.Fatal(err)
		}
		have = next
	}
	vm1 := tl.ns("vm1")
	nl, err := netlink.NewHandleAt(vm1)
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	local := func() []netip.Prefix {
		t.Helper()
		rs, err := nl.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_LOCAL, Protocol: AliasRouteProtocol},
			netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
		if err != nil {
			t.Fatal(err)
		}
		var out []netip.Prefix
		for _, r := range rs {
			p, _ := prefixOf(r.Dst)
			out = append(out, p)
		}
		slices.SortFunc(out, netip.Prefix.Compare)
		return out
	}
	router := tl.ns("net-vpc")
	rnl, err := netlink.NewHandleAt(router)
	if err != nil {
		t.Fatal(err)
	}
	defer rnl.Close()
	delivered := func(p netip.Prefix) bool {
		rs, _ := rnl.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: fabric.TableDeliver}, netlink.RT_FILTER_TABLE)
		for _, r := range rs {
			if q, _ := prefixOf(r.Dst); q == p {
				return true
			}
		}
		return false
	}
	if got := local(); !slices.Equal(got, []netip.Prefix{pfx("172.16.0.0/24")}) {
		t.Fatalf("vm1 before joining: local routes %v", got)
	}

	// vm1 joins the cluster: its new alias is its pod range.
	w.Do(func(tx *model.Txn) error { _, err := tx.JoinNode(proj, zone, "k", "pool", zone, "vm1"); return err })
	next()
	node := w.S.NodeOf(proj, zone, "vm1")
	in, _ := have.Instance(proj, zone, "vm1")
	if in.NICs[0].PodRange != node.PodRange || !slices.Contains(in.NICs[0].Aliases, node.PodRange) {
		t.Fatalf("spec: nic0 %+v, node pod range %v", in.NICs[0], node.PodRange)
	}
	if got := local(); !slices.Equal(got, []netip.Prefix{pfx("172.16.0.0/24")}) {
		t.Errorf("vm1 as a node: local routes %v (pod range %v must not be local)", got, node.PodRange)
	}
	if !delivered(node.PodRange) {
		t.Errorf("the fabric does not route the pod range %v to the node", node.PodRange)
	}

	// A local route for the pod range (an older lab's) is removed when
	// the supervisor restarts.
	lk, err := nl.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if err := nl.RouteReplace(&netlink.Route{Table: unix.RT_TABLE_LOCAL, Type: unix.RTN_LOCAL, Scope: netlink.SCOPE_HOST, Dst: ipNet(node.PodRange),
		LinkIndex: lk.Attrs().Index, Protocol: AliasRouteProtocol}); err != nil {
		t.Fatal(err)
	}
	if got := local(); len(got) != 2 {
		t.Fatalf("planted local route: %v", got)
	}
	tl.restart()
	tl.reconcile(have)
	if got := local(); !slices.Equal(got, []netip.Prefix{pfx("172.16.0.0/24")}) {
		t.Errorf("after a restart: local routes %v", got)
	}

	// vm1 leaves: the pod range goes away.
	w.Do(func(tx *model.Txn) error { return tx.RemoveNode(proj, zone, "k", zone, "vm1") })
	next()
	if got := local(); !slices.Equal(got, []netip.Prefix{pfx("172.16.0.0/24")}) {
		t.Errorf("vm1 after leaving: local routes %v", got)
	}
	if delivered(node.PodRange) {
		t.Errorf("the pod range %v is still routed after the node left", node.PodRange)
	}
}
