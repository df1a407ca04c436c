package fabric

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"go4.org/netipx"
	"golang.org/x/sys/unix"
)

// RouterOptions tune a Router.
type RouterOptions struct {
	// OwnNamespace: the namespace belongs to the fabric (the lab's router
	// namespaces): namespace-wide settings are made (reverse-path
	// filtering and redirects off everywhere). On a host, leave it false:
	// only ip_forward and the per-port settings are touched.
	OwnNamespace bool
}

// Router programs one network namespace (a lab router namespace, or a
// host's own namespace) from RouterPlans. It remembers what it programmed
// and applies only the difference on the next Apply; on its first Apply
// it reads the routes, rules and addresses it owns back from the kernel
// (so a restarted supervisor converges without churn) and rebuilds its
// nftables table in one transaction.
//
// What it owns: routes with protocol RouteProtocol, `ip rule`s of priority
// RulePriority with a table in [TableDeliver, TableBase+1000), addresses
// on lo labelled "lo:an", the dummy link IGW, the nftables table NFTTable
// (family ip), and per-port sysctls (proxy_arp, proxy_delay, rp_filter,
// send_redirects). Ports and peer links themselves are created by the
// caller (the lab's veths; a host's tap devices): Apply sets them up or
// down.
//
// A Router is not safe for concurrent use.
type Router struct {
	ns  netns.NsHandle
	opt RouterOptions
	nl  *netlink.Handle
	nft *nftables.Conn
	rt  *rtBatch
	tbl *nftables.Table

	inited  bool
	ifindex map[string]int
	routes  []KRoute // sorted by routeOrder
	rules   map[KRule]bool
	addrs   map[netip.Prefix]bool
	tuned   map[string]int // link -> ifindex it was tuned at
	ports   map[string]Port
	sets    map[string]bool // firewall sets
	asRange map[string][]netipx.IPRange
	chains  map[string]bool // firewall chains
	last    Stats
	// linkSig is the links the last Apply checked; linksDirty says the
	// caller created or deleted links since.
	linkSig    string
	linksDirty bool
}

// Stats describe the last Apply.
type Stats struct {
	Took          time.Duration `json:"took"`
	NftTook       time.Duration `json:"nftTook"`
	RoutesTook    time.Duration `json:"routesTook"`
	RoutesChanged int           `json:"routesChanged"`
	RoutesDeleted int           `json:"routesDeleted"`
	RulesChanged  int           `json:"rulesChanged"`
	SetElements   int           `json:"setElements"` // interval elements added or removed
	NftBatches    int           `json:"nftBatches"`
	Routes        int           `json:"routes"` // programmed after the Apply
	Ports         int           `json:"ports"`
}

// NewRouter opens netlink and nftables sockets in ns. The caller keeps
// ownership of ns (it must stay open while the Router is used).
func NewRouter(ns netns.NsHandle, opt RouterOptions) (*Router, error) {
	nl, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("fabric: netlink: %w", err)
	}
	nft, err := nftables.New(nftables.AsLasting(), nftables.WithNetNSFd(int(ns)))
	if err != nil {
		nl.Close()
		return nil, fmt.Errorf("fabric: nftables: %w", err)
	}
	rt, err := openRtBatch(ns)
	if err != nil {
		nl.Close()
		nft.CloseLasting()
		return nil, err
	}
	return &Router{ns: ns, opt: opt, nl: nl, nft: nft, rt: rt,
		tbl: &nftables.Table{Name: NFTTable, Family: nftables.TableFamilyIPv4}}, nil
}

// Close releases the sockets (the programmed state stays).
func (r *Router) Close() {
	r.nl.Close()
	r.nft.CloseLasting()
	r.rt.close()
}

// Last returns the statistics of the last Apply.
func (r *Router) Last() Stats { return r.last }

// LinksChanged tells the Router that links of its namespace were created
// or deleted (it then re-reads them on the next Apply; otherwise it does
// only when the plan's links change).
func (r *Router) LinksChanged() { r.linksDirty = true }

// Resync makes the next Apply re-read the kernel's state first (routes,
// rules, addresses) and rebuild the nftables table: it repairs changes
// made behind the Router's back.
func (r *Router) Resync() { r.inited = false }

func (r *Router) init() error {
	kvs := []Sysctl{{"net/ipv4/ip_forward", "1"}}
	if r.opt.OwnNamespace {
		kvs = append(kvs, Sysctl{"net/ipv4/conf/all/rp_filter", "0"}, Sysctl{"net/ipv4/conf/default/rp_filter", "0"},
			Sysctl{"net/ipv4/conf/all/send_redirects", "0"}, Sysctl{"net/ipv4/conf/default/send_redirects", "0"})
	}
	if err := WriteSysctls(r.ns, kvs); err != nil {
		return err
	}
	lo, err := r.nl.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("fabric: lo: %w", err)
	}
	if lo.Attrs().Flags&net.FlagUp == 0 {
		if err := r.nl.LinkSetUp(lo); err != nil {
			return fmt.Errorf("fabric: lo up: %w", err)
		}
	}
	igw, err := r.nl.LinkByName(IGW)
	if err != nil {
		// A dummy device, or where the kernel has none a bridge without
		// ports: either drops what is sent to it.
		err := r.nl.LinkAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: IGW}})
		if errors.Is(err, unix.EOPNOTSUPP) {
			err = r.nl.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: IGW}})
		}
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("fabric: add %s: %w", IGW, err)
		}
		if igw, err = r.nl.LinkByName(IGW); err != nil {
			return fmt.Errorf("fabric: %s: %w", IGW, err)
		}
	}
	if err := r.nl.LinkSetUp(igw); err != nil {
		return fmt.Errorf("fabric: %s up: %w", IGW, err)
	}

	// What the kernel holds of ours.
	r.routes = nil
	r.ifindex = map[string]int{}
	names := map[int]string{}
	links, err := r.nl.LinkList()
	if err != nil {
		return fmt.Errorf("fabric: list links: %w", err)
	}
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
		r.ifindex[l.Attrs().Name] = l.Attrs().Index
	}
	krs, err := r.nl.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: RouteProtocol},
		netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return fmt.Errorf("fabric: list routes: %w", err)
	}
	for _, kr := range krs {
		if kr.Dst == nil {
			continue
		}
		dst, ok := netipx.FromStdIPNet(kr.Dst)
		if !ok {
			continue
		}
		k := KRoute{Table: kr.Table, Dst: dst}
		switch {
		case kr.Type == unix.RTN_BLACKHOLE:
			k.Type = RouteBlackhole
		case kr.Gw != nil:
			k.Type, k.Dev = RouteVia, names[kr.LinkIndex]
			k.Via, _ = netip.AddrFromSlice(kr.Gw.To4())
		default:
			k.Type, k.Dev = RouteDev, names[kr.LinkIndex]
		}
		r.routes = append(r.routes, k)
	}
	slices.SortFunc(r.routes, routeOrder)
	r.routes = slices.CompactFunc(r.routes, func(a, b KRoute) bool { return routeOrder(a, b) == 0 })
	r.rules = map[KRule]bool{}
	krules, err := r.nl.RuleList(netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("fabric: list rules: %w", err)
	}
	for _, kr := range krules {
		if ownRule(kr) {
			r.rules[KRule{Priority: kr.Priority, Iif: kr.IifName, Table: kr.Table}] = true
		}
	}
	r.addrs = map[netip.Prefix]bool{}
	as, err := r.nl.AddrList(lo, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("fabric: list lo addresses: %w", err)
	}
	for _, a := range as {
		if a.Label == "lo:an" {
			if p, ok := netipx.FromStdIPNet(a.IPNet); ok {
				r.addrs[p] = true
			}
		}
	}
	r.tuned = map[string]int{}
	r.linkSig, r.linksDirty = "", true
	if err := r.resetNft(); err != nil {
		return err
	}
	r.inited = true
	return nil
}

// Apply makes the namespace match p, changing only what differs from
// what the Router programmed before. It keeps p.Routes: a plan must not
// be modified once applied (Plan and Planner make new ones).
func (r *Router) Apply(p *RouterPlan) error {
	start := time.Now()
	st := Stats{}
	if !r.inited {
		if err := r.init(); err != nil {
			return err
		}
	}

	// Links: they must exist; a link recreated since the last Apply lost
	// its routes (the kernel removed them) and its settings.
	if err := r.applyLinks(p); err != nil {
		return err
	}

	// Addresses on lo.
	if err := r.applyAddrs(p.LocalAddrs); err != nil {
		return err
	}

	// nftables first (a new alias is allowed out before it is routed in).
	t0 := time.Now()
	if err := r.applyNft(p, &st); err != nil {
		return err
	}
	st.NftTook = time.Since(t0)
	t0 = time.Now()

	// Routes: a merge of two sorted lists (no hashing of 10,000 prefixes
	// for a one-route change).
	want := p.Routes
	for k := 1; k < len(want); k++ {
		if routeOrder(want[k-1], want[k]) >= 0 { // unsorted or duplicated
			want = slices.Clone(want)
			slices.SortStableFunc(want, routeOrder)
			want = slices.CompactFunc(want, func(a, b KRoute) bool { return routeOrder(a, b) == 0 })
			break
		}
	}
	old := r.routes
	var qerrs []error
	queue := func(kr KRoute, del bool) {
		if err := r.rt.route(kr, r.ifindex[kr.Dev], RouteProtocol, del); err != nil {
			qerrs = append(qerrs, err)
		}
	}
	i, j := 0, 0
	for i < len(old) || j < len(want) {
		c := 0
		switch {
		case i >= len(old):
			c = 1
		case j >= len(want):
			c = -1
		default:
			c = routeOrder(old[i], want[j])
		}
		switch {
		case c < 0: // programmed, not wanted
			queue(old[i], true)
			st.RoutesDeleted++
			i++
		case c > 0: // wanted, not programmed
			queue(want[j], false)
			st.RoutesChanged++
			j++
		default:
			if old[i] != want[j] {
				queue(want[j], false)
				st.RoutesChanged++
			}
			i++
			j++
		}
	}
	ferr := r.rt.flush()
	rerr := errors.Join(append(qerrs, ferr, r.rt.err())...)
	// Kept, not copied (10,000 routes): plans are not modified once
	// made, and the Router never modifies the list in place either.
	r.routes = want
	st.RoutesTook = time.Since(t0)
	if rerr != nil {
		// Re-read the kernel next time rather than trust the table.
		r.inited = false
		return fmt.Errorf("fabric: routes: %w", rerr)
	}

	// Rules.
	wantRules := map[KRule]bool{}
	for _, kr := range p.Rules {
		wantRules[kr] = true
		if r.rules[kr] {
			continue
		}
		if err := r.nl.RuleAdd(nlRule(kr)); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("fabric: rule iif %s table %d: %w", kr.Iif, kr.Table, err)
		}
		r.rules[kr] = true
		st.RulesChanged++
	}
	for kr := range r.rules {
		if wantRules[kr] {
			continue
		}
		if err := r.nl.RuleDel(nlRule(kr)); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("fabric: delete rule iif %s table %d: %w", kr.Iif, kr.Table, err)
		}
		delete(r.rules, kr)
		st.RulesChanged++
	}
	st.Routes = len(r.routes)
	st.Ports = len(p.Ports)
	st.Took = time.Since(start)
	r.last = st
	return nil
}

func (r *Router) applyLinks(p *RouterPlan) error {
	type wantLink struct {
		name string
		up   bool
	}
	var wl []wantLink
	var sig strings.Builder
	for _, pt := range p.Ports {
		wl = append(wl, wantLink{pt.Name, pt.Up})
		fmt.Fprintf(&sig, "%s=%v,", pt.Name, pt.Up)
	}
	for _, pl := range p.PeerLinks {
		wl = append(wl, wantLink{pl.Name, true})
		fmt.Fprintf(&sig, "%s,", pl.Name)
	}
	if !r.linksDirty && sig.String() == r.linkSig {
		return nil
	}
	links, err := r.nl.LinkList()
	if err != nil {
		return fmt.Errorf("fabric: list links: %w", err)
	}
	idx := map[string]int{}
	up := map[string]bool{}
	byName := map[string]netlink.Link{}
	for _, l := range links {
		a := l.Attrs()
		idx[a.Name], up[a.Name], byName[a.Name] = a.Index, a.Flags&net.FlagUp != 0, l
	}
	for name, old := range r.ifindex {
		if idx[name] != old {
			r.forgetDev(name)
		}
	}
	r.ifindex = idx
	if _, ok := idx[IGW]; !ok {
		r.inited = false
		return fmt.Errorf("fabric: %s vanished; will rebuild", IGW)
	}
	var missing []string
	var tune []Sysctl
	for _, w := range wl {
		i, ok := idx[w.name]
		if !ok {
			missing = append(missing, w.name)
			continue
		}
		if r.tuned[w.name] != i {
			tune = append(tune, portSysctls(w.name)...)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("fabric: links missing in the namespace: %v", missing)
	}
	if err := WriteSysctls(r.ns, tune); err != nil {
		return err
	}
	for _, w := range wl {
		r.tuned[w.name] = idx[w.name]
		if up[w.name] == w.up {
			continue
		}
		if w.up {
			err = r.nl.LinkSetUp(byName[w.name])
		} else {
			err = r.nl.LinkSetDown(byName[w.name])
			// The kernel dropped the routes through it.
			r.forgetDev(w.name)
		}
		if err != nil {
			return fmt.Errorf("fabric: set %s up=%v: %w", w.name, w.up, err)
		}
	}
	r.linkSig, r.linksDirty = sig.String(), false
	return nil
}

// forgetDev forgets the routes through a link the kernel removed them
// from (link deleted, recreated or set down).
func (r *Router) forgetDev(name string) {
	if slices.ContainsFunc(r.routes, func(kr KRoute) bool { return kr.Dev == name }) {
		// A copy: the list may be a plan's.
		r.routes = slices.DeleteFunc(slices.Clone(r.routes), func(kr KRoute) bool { return kr.Dev == name })
	}
}

func portSysctls(dev string) []Sysctl {
	return []Sysctl{
		{"net/ipv4/conf/" + dev + "/proxy_arp", "1"},
		{"net/ipv4/neigh/" + dev + "/proxy_delay", "0"},
		{"net/ipv4/conf/" + dev + "/rp_filter", "0"},
		{"net/ipv4/conf/" + dev + "/send_redirects", "0"},
	}
}

func ownRule(kr netlink.Rule) bool {
	return (kr.Priority == RulePriority || kr.Priority == RulePriority+1) && kr.Table >= TableDrop && kr.Table < TableBase+1000
}

func nlRule(kr KRule) *netlink.Rule {
	nr := netlink.NewRule()
	nr.Family = netlink.FAMILY_V4
	nr.Priority = kr.Priority
	nr.Table = kr.Table
	nr.IifName = kr.Iif
	return nr
}

func (r *Router) applyAddrs(want []netip.Prefix) error {
	if len(want) == len(r.addrs) && !slices.ContainsFunc(want, func(p netip.Prefix) bool { return !r.addrs[p] }) {
		return nil
	}
	lo, err := r.nl.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("fabric: lo: %w", err)
	}
	w := map[netip.Prefix]bool{}
	for _, p := range want {
		w[p] = true
		if r.addrs[p] {
			continue
		}
		a := &netlink.Addr{IPNet: netipx.PrefixIPNet(p), Label: "lo:an"}
		if err := r.nl.AddrAdd(lo, a); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("fabric: address %s on lo: %w", p, err)
		}
		r.addrs[p] = true
	}
	for p := range r.addrs {
		if w[p] {
			continue
		}
		if err := r.nl.AddrDel(lo, &netlink.Addr{IPNet: netipx.PrefixIPNet(p), Label: "lo:an"}); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return fmt.Errorf("fabric: remove %s from lo: %w", p, err)
		}
		delete(r.addrs, p)
	}
	return nil
}

// Teardown removes everything the Router owns from the namespace: the
// nftables table, its routes, rules, lo addresses and the IGW link (for
// a host; a lab simply deletes the namespace).
func (r *Router) Teardown() error {
	var errs []error
	if t, err := r.nft.ListTableOfFamily(NFTTable, nftables.TableFamilyIPv4); err == nil && t != nil {
		r.nft.DelTable(t)
		errs = append(errs, r.nft.Flush())
	}
	krs, _ := r.nl.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: RouteProtocol},
		netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
	for i := range krs {
		if err := r.nl.RouteDel(&krs[i]); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, err)
		}
	}
	krules, _ := r.nl.RuleList(netlink.FAMILY_V4)
	for _, kr := range krules {
		if ownRule(kr) {
			errs = append(errs, r.nl.RuleDel(&kr))
		}
	}
	if lo, err := r.nl.LinkByName("lo"); err == nil {
		as, _ := r.nl.AddrList(lo, netlink.FAMILY_V4)
		for _, a := range as {
			if a.Label == "lo:an" {
				errs = append(errs, r.nl.AddrDel(lo, &a))
			}
		}
	}
	if l, err := r.nl.LinkByName(IGW); err == nil {
		errs = append(errs, r.nl.LinkDel(l))
	}
	r.inited = false
	return errors.Join(errs...)
}

// RoutesIn lists the fabric's routes programmed in a table (for tests and
// status).
func (r *Router) RoutesIn(table int) []KRoute {
	var out []KRoute
	for _, kr := range r.routes {
		if kr.Table == table {
			out = append(out, kr)
		}
	}
	return out
}
