package agent

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Result says what one reconcile pass changed.
type Result struct {
	RoutesAdded, RoutesRemoved []string
	AddrsAdded, AddrsRemoved   []string
}

// Changed reports whether the pass touched anything.
func (r Result) Changed() bool {
	return len(r.RoutesAdded)+len(r.RoutesRemoved)+len(r.AddrsAdded)+len(r.AddrsRemoved) > 0
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	a = a.Unmap()
	return netip.PrefixFrom(a, ones).Masked(), true
}

// linkKinds that share their parent's MAC and are never the interface the
// metadata means.
var stackedKinds = []string{"vlan", "macvlan", "macvtap", "ipvlan", "ipvtap", "vxlan"}

// linksByMAC maps MACs to the interface that carries them: the lowest
// index among links that are not stacked on another (a VLAN shares its
// parent's MAC).
func linksByMAC(links []netlink.Link) map[string]netlink.Link {
	out := map[string]netlink.Link{}
	for _, l := range links {
		at := l.Attrs()
		if len(at.HardwareAddr) != 6 {
			continue
		}
		mac := at.HardwareAddr.String()
		prev, seen := out[mac]
		stacked := slices.Contains(stackedKinds, l.Type())
		switch {
		case !seen:
			out[mac] = l
		case slices.Contains(stackedKinds, prev.Type()) && !stacked:
			out[mac] = l
		case stacked == slices.Contains(stackedKinds, prev.Type()) && at.Index < prev.Attrs().Index:
			out[mac] = l
		}
	}
	return out
}

type routeKey struct {
	link int
	dst  netip.Prefix
}

// dumpRetry retries netlink dumps interrupted by concurrent changes.
func dumpRetry[T any](f func() (T, error)) (T, error) {
	var v T
	var err error
	for range 5 {
		v, err = f()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	return v, err
}

// ownRoutes lists the local-table routes with protocol 66.
func (a *Agent) ownRoutes() (map[routeKey]netlink.Route, error) {
	rs, err := dumpRetry(func() ([]netlink.Route, error) {
		return a.h.RouteListFiltered(netlink.FAMILY_ALL,
			&netlink.Route{Table: unix.RT_TABLE_LOCAL, Protocol: RouteProtocol},
			netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
	})
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	out := map[routeKey]netlink.Route{}
	for _, r := range rs {
		p, ok := prefixOf(r.Dst)
		if !ok {
			continue
		}
		out[routeKey{r.LinkIndex, p}] = r
	}
	return out, nil
}

// Reconcile makes the namespace match d once.
func (a *Agent) Reconcile(d *Desired) (Result, error) {
	var res Result
	links, err := dumpRetry(a.h.LinkList)
	if err != nil {
		return res, fmt.Errorf("list links: %w", err)
	}
	byMAC := linksByMAC(links)
	byIndex := map[int]netlink.Link{}
	for _, l := range links {
		byIndex[l.Attrs().Index] = l
	}
	name := func(idx int) string {
		if l, ok := byIndex[idx]; ok {
			return l.Attrs().Name
		}
		return fmt.Sprint("if", idx)
	}

	wantRoutes := map[routeKey]bool{}
	type addrWant struct {
		link netlink.Link
		pfx  netip.Prefix
	}
	wantAddrs := map[addrKey]addrWant{}
	pods := append(slices.Clone(a.cfg.PodRanges), d.PodRanges...)
	// forwarded reports (and logs once) a range inside a pod range: the
	// node routes it to pods, so it must not be local (nor an address)
	// here; a route of ours already there is removed below as unwanted.
	forwarded := func(p netip.Prefix, dev string) bool {
		for _, pr := range pods {
			if pr.Addr().Is4() == p.Addr().Is4() && pr.Bits() <= p.Bits() && pr.Contains(p.Addr()) {
				a.infoOnce("leaving the pod range to the CNI plugin: no local route for it", "range", p, "podRange", pr, "dev", dev)
				return true
			}
		}
		return false
	}
	for _, n := range d.NICs {
		l, ok := byMAC[n.MAC]
		if !ok {
			a.warnOnce("no interface has the MAC the metadata names; skipping it", "mac", n.MAC)
			continue
		}
		for _, p := range n.Routes {
			if !forwarded(p.Masked(), l.Attrs().Name) {
				wantRoutes[routeKey{l.Attrs().Index, p.Masked()}] = true
			}
		}
		for _, p := range n.Addrs {
			if !forwarded(p, l.Attrs().Name) {
				wantAddrs[addrKey{MAC: n.MAC, Prefix: p}] = addrWant{l, p}
			}
		}
	}

	var errs []error
	// Routes: remove ours that are not wanted, then add what is missing.
	have, err := a.ownRoutes()
	if err != nil {
		return res, err
	}
	for _, k := range sortedRouteKeys(have) {
		if wantRoutes[k] {
			continue
		}
		r := have[k]
		if err := a.h.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("remove local route %s dev %s: %w", k.dst, name(k.link), err))
			continue
		}
		res.RoutesRemoved = append(res.RoutesRemoved, k.dst.String()+" dev "+name(k.link))
	}
	for _, k := range sortedKeys(wantRoutes) {
		if _, ok := have[k]; ok {
			continue
		}
		r := &netlink.Route{LinkIndex: k.link, Dst: ipNet(k.dst), Table: unix.RT_TABLE_LOCAL,
			Type: unix.RTN_LOCAL, Scope: netlink.SCOPE_HOST, Protocol: RouteProtocol}
		if err := a.h.RouteAdd(r); err != nil {
			if errors.Is(err, unix.EEXIST) {
				// Someone else's route for the same destination: leave it.
				a.warnOnce("a local route not owned by the agent already covers the range; leaving it", "range", k.dst, "dev", name(k.link))
				continue
			}
			errs = append(errs, fmt.Errorf("add local route %s dev %s: %w", k.dst, name(k.link), err))
			continue
		}
		res.RoutesAdded = append(res.RoutesAdded, k.dst.String()+" dev "+name(k.link))
	}

	// Addresses: only those the state file says the agent added are
	// ever removed.
	present := map[int]map[netip.Prefix]bool{}
	addrsOf := func(l netlink.Link) map[netip.Prefix]bool {
		idx := l.Attrs().Index
		if m, ok := present[idx]; ok {
			return m
		}
		m := map[netip.Prefix]bool{}
		as, err := dumpRetry(func() ([]netlink.Addr, error) { return a.h.AddrList(l, netlink.FAMILY_ALL) })
		if err != nil {
			errs = append(errs, fmt.Errorf("list addresses of %s: %w", l.Attrs().Name, err))
		}
		for _, ad := range as {
			if a, ok := netip.AddrFromSlice(ad.IP); ok {
				ones, _ := ad.Mask.Size()
				m[netip.PrefixFrom(a.Unmap(), ones)] = true
			}
		}
		present[idx] = m
		return m
	}
	dirty := false
	for _, k := range a.state.keys() {
		if _, ok := wantAddrs[k]; ok {
			continue
		}
		if l, ok := byMAC[k.MAC]; ok && addrsOf(l)[k.Prefix] {
			if err := a.h.AddrDel(l, &netlink.Addr{IPNet: ipNet(k.Prefix)}); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
				errs = append(errs, fmt.Errorf("remove address %s from %s: %w", k.Prefix, l.Attrs().Name, err))
				continue
			}
			res.AddrsRemoved = append(res.AddrsRemoved, k.Prefix.String()+" dev "+l.Attrs().Name)
		}
		a.state.del(k)
		dirty = true
	}
	for _, k := range sortedAddrKeys(wantAddrs) {
		w := wantAddrs[k]
		owned := a.state.has(k)
		if addrsOf(w.link)[k.Prefix] {
			if !owned {
				a.warnOnce("address already configured by someone else; not managing it", "address", k.Prefix, "dev", w.link.Attrs().Name)
			}
			continue
		}
		ad := &netlink.Addr{IPNet: ipNet(k.Prefix)}
		if k.Prefix.Addr().Is6() {
			// The control plane guarantees uniqueness; skip DAD so the
			// address is usable at once.
			ad.Flags = unix.IFA_F_NODAD
		}
		if err := a.h.AddrAdd(w.link, ad); err != nil && !errors.Is(err, unix.EEXIST) {
			errs = append(errs, fmt.Errorf("add address %s to %s: %w", k.Prefix, w.link.Attrs().Name, err))
			continue
		}
		if !owned {
			a.state.add(k)
			dirty = true
		}
		res.AddrsAdded = append(res.AddrsAdded, k.Prefix.String()+" dev "+w.link.Attrs().Name)
	}
	if dirty {
		if err := a.state.save(); err != nil {
			errs = append(errs, err)
		}
	}
	if res.Changed() {
		a.log.Info("reconciled", "routesAdded", strings.Join(res.RoutesAdded, ", "), "routesRemoved", strings.Join(res.RoutesRemoved, ", "),
			"addrsAdded", strings.Join(res.AddrsAdded, ", "), "addrsRemoved", strings.Join(res.AddrsRemoved, ", "))
	}
	return res, errors.Join(errs...)
}

func cmpRouteKey(x, y routeKey) int {
	if x.link != y.link {
		return x.link - y.link
	}
	if c := x.dst.Addr().Compare(y.dst.Addr()); c != 0 {
		return c
	}
	return x.dst.Bits() - y.dst.Bits()
}

func sortedRouteKeys(m map[routeKey]netlink.Route) []routeKey {
	out := make([]routeKey, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.SortFunc(out, cmpRouteKey)
	return out
}

func sortedKeys(m map[routeKey]bool) []routeKey {
	out := make([]routeKey, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.SortFunc(out, cmpRouteKey)
	return out
}

func sortedAddrKeys[V any](m map[addrKey]V) []addrKey {
	out := make([]addrKey, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.SortFunc(out, cmpAddrKey)
	return out
}
