package lab

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/aliasnet/aliasnet/internal/fabric"
)

// AliasRouteProtocol is the protocol of the alias routes the lab (like the
// guest agent) adds inside instances.
const AliasRouteProtocol = 66

// Options configure a Lab.
type Options struct {
	Project string
	// Prefix of every namespace name (default "an-<project>-").
	Prefix string
	// StateDir keeps the list of namespaces the lab made (so that `lab
	// down` removes them even after a crash) and the status file.
	StateDir string
	// Agent: instead of configuring alias routes itself, the lab runs
	// `Binary agent --metadata http://169.254.169.254` in every instance.
	Agent  bool
	Binary string
	// MetadataUpstream is the server's metadata listener (URL); when set,
	// every router namespace gets a proxy at 169.254.169.254:80 that
	// forwards to it with X-Forwarded-For and X-Aliasnet-Network.
	MetadataUpstream string
	Logger           *slog.Logger
}

// Lab is the realisation of one project's networks. Reconcile is not safe
// for concurrent use; Status is.
type Lab struct {
	o     Options
	names Namer
	log   *slog.Logger

	routers map[string]*routerNS // by network key
	insts   map[string]*instNS   // by instance key
	ports   map[string]*portState
	links   map[string]*peerLink // by the A side's link name + router

	mu     sync.Mutex
	status Status

	saveMu            sync.Mutex
	saving, saveAgain bool
	saveKick          chan struct{}
	saveWG            sync.WaitGroup
	fileMu            sync.Mutex
}

type routerNS struct {
	key, ns string
	h       netns.NsHandle
	nl      *netlink.Handle
	fab     *fabric.Router
	planner *fabric.Planner
	// linksChanged: links of the namespace were made or removed since
	// the last Apply (the plan alone does not show it).
	linksDirty bool
	proxy      *mdProxy
	ports      int
	routes     int
}

type instNS struct {
	key, ns  string
	name     string
	zone     string
	project  string
	h        netns.NsHandle
	nl       *netlink.Handle
	rw       *fabric.RouteWriter
	forward  int // applied ip_forward, -1 unknown
	nics     map[int]*nicApplied
	agent    *agentProc
	running  bool
	nicsSpec []fabric.NIC
}

type nicApplied struct {
	spec    fabric.NIC // last applied, when done
	done    bool
	ifindex int
	addr    netip.Prefix
	gw      netip.Addr
	aliases map[netip.Prefix]bool
}

type portState struct {
	name   string
	router string // network key
	inst   string // instance key
	device int
	mac    string
}

type peerLink struct {
	a, b         string // network keys
	nameA, nameB string
}

// New returns a Lab; nothing is created before Reconcile.
func New(o Options) (*Lab, error) {
	if o.Project == "" {
		return nil, errors.New("lab: project required")
	}
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix(o.Project)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.StateDir != "" {
		if err := os.MkdirAll(o.StateDir, 0o755); err != nil {
			return nil, err
		}
	}
	l := &Lab{o: o, names: Namer{Prefix: o.Prefix, Project: o.Project}, log: o.Logger,
		routers: map[string]*routerNS{}, insts: map[string]*instNS{}, ports: map[string]*portState{}, links: map[string]*peerLink{},
		saveKick: make(chan struct{})}
	l.status.Project = o.Project
	l.status.Prefix = o.Prefix
	l.status.Namespaces = []string{}
	if st, err := ReadStatus(o.StateDir); err == nil {
		// Namespaces a previous supervisor made are ours to adopt or remove.
		l.status.Namespaces = st.Namespaces
	}
	return l, nil
}

// newNamed creates a named network namespace from a locked thread that
// is switched back afterwards, so the calling thread never changes
// namespace.
func newNamed(name string) (netns.NsHandle, error) {
	type res struct {
		h   netns.NsHandle
		err error
	}
	ch := make(chan res, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			ch <- res{netns.None(), err}
			return
		}
		defer orig.Close()
		h, err := netns.NewNamed(name)
		// Back to where the thread was (see fabric.Do); if that fails the
		// thread ends with the goroutine.
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		ch <- res{h, err}
	}()
	r := <-ch
	return r.h, r.err
}

func (l *Lab) remember(ns string) {
	l.mu.Lock()
	if !slices.Contains(l.status.Namespaces, ns) {
		l.status.Namespaces = append(l.status.Namespaces, ns)
		sort.Strings(l.status.Namespaces)
	}
	l.mu.Unlock()
	l.saveStatus()
}

func (l *Lab) forget(ns string) {
	l.mu.Lock()
	l.status.Namespaces = slices.DeleteFunc(l.status.Namespaces, func(s string) bool { return s == ns })
	l.mu.Unlock()
}

// ensureNS opens namespace name, creating it when missing.
func (l *Lab) ensureNS(name string) (netns.NsHandle, bool, error) {
	if h, err := netns.GetFromName(name); err == nil {
		l.remember(name)
		return h, false, nil
	}
	l.remember(name) // before creating: a crash in between still cleans up
	h, err := newNamed(name)
	if err != nil {
		return netns.None(), false, fmt.Errorf("lab: create namespace %s: %w", name, err)
	}
	return h, true, nil
}

func deleteNS(name string) error {
	if err := netns.DeleteNamed(name); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) && !os.IsNotExist(err) {
		return fmt.Errorf("lab: delete namespace %s: %w", name, err)
	}
	return nil
}

func (l *Lab) ensureRouter(key string) (*routerNS, error) {
	if r := l.routers[key]; r != nil {
		return r, nil
	}
	name := l.names.Router(key)
	h, _, err := l.ensureNS(name)
	if err != nil {
		return nil, err
	}
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		h.Close()
		return nil, err
	}
	fab, err := fabric.NewRouter(h, fabric.RouterOptions{OwnNamespace: true})
	if err != nil {
		nl.Close()
		h.Close()
		return nil, err
	}
	r := &routerNS{key: key, ns: name, h: h, nl: nl, fab: fab, linksDirty: true,
		planner: &fabric.Planner{Network: key, Options: fabric.PlanOptions{Metadata: l.o.MetadataUpstream != ""}}}
	l.routers[key] = r
	l.log.Info("router namespace", "network", key, "netns", name)
	return r, nil
}

// openInstance opens (creating when missing) an instance's namespace and
// prepares it: lo up, the guest's sysctls, the sockets the lab uses. It
// touches no Lab state, so that many run in parallel.
func (l *Lab) openInstance(name string, in *fabric.Instance) (*instNS, error) {
	h, err := netns.GetFromName(name)
	if err != nil {
		if h, err = newNamed(name); err != nil {
			return nil, fmt.Errorf("lab: create namespace %s: %w", name, err)
		}
	}
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		h.Close()
		return nil, err
	}
	var rw *fabric.RouteWriter
	err = fabric.Do(h, func() error {
		var err error
		if rw, err = fabric.NewRouteWriterHere(); err != nil {
			return err
		}
		// The guest's own reverse-path filter would second-guess the
		// fabric.
		return fabric.WriteSysctlsHere([]fabric.Sysctl{{Key: "net/ipv4/conf/all/rp_filter", Value: "0"}, {Key: "net/ipv4/conf/default/rp_filter", Value: "0"}})
	})
	if err != nil {
		if rw != nil {
			rw.Close()
		}
		nl.Close()
		h.Close()
		return nil, fmt.Errorf("lab: prepare %s: %w", name, err)
	}
	if lo, err := nl.LinkByName("lo"); err == nil {
		nl.LinkSetUp(lo)
	}
	return &instNS{key: in.Key, ns: name, name: in.Name, zone: in.Zone, project: in.Project, h: h, nl: nl, rw: rw, forward: -1, nics: map[int]*nicApplied{}}, nil
}

// ensureInstances opens the namespaces of the instances the lab does not
// have yet, several at a time.
func (l *Lab) ensureInstances(s *fabric.Spec) error {
	type job struct {
		name string
		in   *fabric.Instance
	}
	var jobs []job
	for i := range s.Instances {
		in := &s.Instances[i]
		if l.insts[in.Key] == nil {
			jobs = append(jobs, job{l.names.Instance(s, in), in})
		}
	}
	if len(jobs) == 0 {
		return nil
	}
	// Recorded before they exist: a crash in between still cleans up.
	l.mu.Lock()
	for _, j := range jobs {
		if !slices.Contains(l.status.Namespaces, j.name) {
			l.status.Namespaces = append(l.status.Namespaces, j.name)
		}
	}
	sort.Strings(l.status.Namespaces)
	l.mu.Unlock()
	l.saveStatus()
	res := make([]*instNS, len(jobs))
	errs := make([]error, len(jobs))
	parallel(len(jobs), func(k int) { res[k], errs[k] = l.openInstance(jobs[k].name, jobs[k].in) })
	for _, ins := range res {
		if ins != nil {
			l.insts[ins.key] = ins
			l.log.Info("instance namespace", "instance", ins.key, "netns", ins.ns)
		}
	}
	return errors.Join(errs...)
}

// parallel runs f(0..n-1) on a few goroutines (namespace creation and
// netlink round trips wait on the kernel more than on the CPU).
func parallel(n int, f func(int)) {
	workers := min(n, 4)
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range next {
				f(k)
			}
		}()
	}
	for k := range n {
		next <- k
	}
	close(next)
	wg.Wait()
}

func (l *Lab) closeRouter(r *routerNS) {
	if r.proxy != nil {
		r.proxy.close()
		r.proxy = nil
	}
	r.fab.Close()
	r.nl.Close()
	r.h.Close()
}

func (l *Lab) removeRouter(r *routerNS) error {
	l.closeRouter(r)
	delete(l.routers, r.key)
	for k, pl := range l.links {
		if pl.a == r.key || pl.b == r.key {
			delete(l.links, k)
		}
	}
	err := deleteNS(r.ns)
	l.forget(r.ns)
	return err
}

func (l *Lab) closeInstance(i *instNS) {
	if i.agent != nil {
		i.agent.stop()
		i.agent = nil
	}
	i.rw.Close()
	i.nl.Close()
	i.h.Close()
}

func (l *Lab) removeInstance(i *instNS) error {
	// Its ports go first: processes may keep the namespace (and so the
	// veths) alive after the name is gone.
	for k, p := range l.ports {
		if p.inst == i.key {
			l.removePort(p)
			delete(l.ports, k)
		}
	}
	l.closeInstance(i)
	delete(l.insts, i.key)
	err := deleteNS(i.ns)
	l.forget(i.ns)
	return err
}

func (l *Lab) removePort(p *portState) {
	if r := l.routers[p.router]; r != nil {
		if lk, err := r.nl.LinkByName(p.name); err == nil {
			r.nl.LinkDel(lk)
		}
		r.linksChanged()
	}
	if i := l.insts[p.inst]; i != nil {
		delete(i.nics, p.device)
	}
}

// linksChanged records that links of the router's namespace were made or
// removed.
func (r *routerNS) linksChanged() {
	r.fab.LinksChanged()
	r.linksDirty = true
}

// proxyOK: the metadata proxy runs if it should.
func (r *routerNS) proxyOK(o Options) bool { return o.MetadataUpstream == "" || r.proxy != nil }

// guestPending: a NIC of the instance on a realised network is not
// configured (a failure, or a port made anew).
func (l *Lab) guestPending(ins *instNS) bool {
	for _, nic := range ins.nicsSpec {
		if l.routers[nic.Network] == nil {
			continue
		}
		if a := ins.nics[nic.Device]; a == nil || !a.done {
			return true
		}
	}
	return false
}

// Reconcile makes the machine match the spec: namespaces, veths, the
// inside of instances, the router fabric. It changes only what differs
// from the previous Reconcile, and re-examines everything to find out.
func (l *Lab) Reconcile(ctx context.Context, s *fabric.Spec) error {
	return l.ReconcileChanges(ctx, s, nil)
}

// ReconcileChanges is Reconcile told what changed since the spec of the
// previous successful reconcile (fabric.ApplyDelta's answer; nil:
// anything): the inside of instances and the router plans are
// re-examined only where the spec changed. Namespaces, veths and peer
// links are always checked (a map lookup per instance and NIC).
func (l *Lab) ReconcileChanges(ctx context.Context, s *fabric.Spec, ch *fabric.Changes) error {
	start := time.Now()
	var phases strings.Builder
	last := start
	phase := func(name string) {
		fmt.Fprintf(&phases, "%s=%v ", name, time.Since(last).Round(time.Microsecond))
		last = time.Now()
	}
	var errs []error
	wantNets := map[string]*fabric.Network{}
	for i := range s.Networks {
		wantNets[s.Networks[i].Key] = &s.Networks[i]
	}
	wantInst := map[string]*fabric.Instance{}
	for i := range s.Instances {
		wantInst[s.Instances[i].Key] = &s.Instances[i]
	}
	// Ports wanted: every NIC on a realised network.
	type wantPort struct {
		p   portState
		nic fabric.NIC
	}
	wantPorts := map[string]wantPort{}
	for _, in := range s.Instances {
		for _, nic := range in.NICs {
			if wantNets[nic.Network] == nil {
				continue
			}
			proj, _, _ := strings.Cut(nic.Network, "/")
			name := Port(proj, nic.Interface)
			wantPorts[nic.Network+"|"+name] = wantPort{p: portState{name: name, router: nic.Network, inst: in.Key, device: nic.Device, mac: strings.ToLower(nic.MAC)}, nic: nic}
		}
	}

	// 1. Remove what is gone.
	for k, p := range l.ports {
		if w, ok := wantPorts[k]; !ok || w.p != *p {
			l.removePort(p)
			delete(l.ports, k)
		}
	}
	for key, i := range l.insts {
		if wantInst[key] == nil || l.names.Instance(s, wantInst[key]) != i.ns {
			errs = append(errs, l.removeInstance(i))
		}
	}
	for key, r := range l.routers {
		if wantNets[key] == nil {
			errs = append(errs, l.removeRouter(r))
		}
	}
	// Namespaces recorded by an earlier supervisor that nothing wants now.
	wantNS := map[string]bool{}
	for _, nw := range s.Networks {
		wantNS[l.names.Router(nw.Key)] = true
	}
	for i := range s.Instances {
		wantNS[l.names.Instance(s, &s.Instances[i])] = true
	}
	l.mu.Lock()
	var stale []string
	for _, ns := range l.status.Namespaces {
		if !wantNS[ns] {
			stale = append(stale, ns)
		}
	}
	l.mu.Unlock()
	if len(stale) > 0 {
		errs = append(errs, RemoveNamespaces(stale, false))
		for _, ns := range stale {
			l.forget(ns)
		}
	}

	phase("removed")
	// 2. Namespaces.
	for _, nw := range s.Networks {
		if _, err := l.ensureRouter(nw.Key); err != nil {
			return err
		}
	}
	if err := l.ensureInstances(s); err != nil {
		return err
	}
	for i := range s.Instances {
		in := &s.Instances[i]
		ins := l.insts[in.Key]
		ins.running, ins.nicsSpec = in.Running, in.NICs
		fwd := 0
		if in.CanIPForward {
			fwd = 1
		}
		if ins.forward != fwd {
			// The guest OS forwards what it is given only if the VPC lets
			// it (canIpForward); the lab's "image" follows that setting.
			if err := fabric.WriteSysctls(ins.h, []fabric.Sysctl{{Key: "net/ipv4/ip_forward", Value: fmt.Sprint(fwd)}}); err != nil {
				errs = append(errs, err)
			} else {
				ins.forward = fwd
			}
		}
	}

	phase("namespaces")
	// 3. Ports (veth pairs), peer links.
	for k, w := range wantPorts {
		if _, ok := l.ports[k]; ok {
			continue
		}
		r, ins := l.routers[w.p.router], l.insts[w.p.inst]
		if err := l.createPort(r, ins, w.p, w.nic); err != nil {
			errs = append(errs, err)
			continue
		}
		p := w.p
		l.ports[k] = &p
	}
	errs = append(errs, l.reconcileLinks(s))

	phase("veths")
	// 4. Inside the instances.
	var emu sync.Mutex
	guest := func(k int) {
		in := &s.Instances[k]
		ins := l.insts[in.Key]
		var ierrs []error
		for _, nic := range in.NICs {
			if wantNets[nic.Network] == nil {
				continue
			}
			if err := l.configureNIC(ins, nic); err != nil {
				ierrs = append(ierrs, fmt.Errorf("lab: %s eth%d: %w", in.Key, nic.Device, err))
			}
		}
		if err := ins.rw.Flush(); err != nil {
			ierrs = append(ierrs, fmt.Errorf("lab: %s alias routes: %w", in.Key, err))
			for _, a := range ins.nics {
				a.ifindex, a.done = 0, false // re-read next time
			}
		}
		if len(ierrs) > 0 {
			emu.Lock()
			errs = append(errs, ierrs...)
			emu.Unlock()
		}
	}
	switch {
	case ch != nil:
		var todo []int
		for k := range s.Instances {
			if ch.Instance(s.Instances[k].Key) || l.guestPending(l.insts[s.Instances[k].Key]) {
				todo = append(todo, k)
			}
		}
		if len(todo) > 8 {
			parallel(len(todo), func(j int) { guest(todo[j]) })
		} else {
			for _, k := range todo {
				guest(k)
			}
		}
	case len(l.insts) > 8 && len(wantPorts) > 0 && changedGuests(l, s) > 8:
		parallel(len(s.Instances), guest)
	default:
		for k := range s.Instances {
			guest(k)
		}
	}

	phase("guests")
	// 5. The fabric.
	for _, nw := range s.Networks {
		r := l.routers[nw.Key]
		nc := ch.Network(nw.Key)
		if nc == nil && !r.linksDirty && r.proxyOK(l.o) {
			continue // nothing of this network changed
		}
		if nc == nil {
			nc = &fabric.NetChange{Interfaces: map[string]bool{}}
		}
		p := r.planner.Plan(s, nc)
		if err := r.fab.Apply(p); err != nil {
			errs = append(errs, fmt.Errorf("lab: fabric of %s: %w", nw.Key, err))
			// The next reconcile plans from scratch.
			r.planner.Reset()
			continue
		}
		r.linksDirty = false
		r.ports, r.routes = len(p.Ports), len(p.Routes)
		if l.o.MetadataUpstream != "" && r.proxy == nil {
			px, err := startProxy(r.h, l.o.MetadataUpstream, nw.Key, l.log)
			if err != nil {
				errs = append(errs, err)
			} else {
				r.proxy = px
			}
		}
	}

	phase("fabric")
	// 6. Agents.
	if l.o.Agent {
		for _, ins := range l.insts {
			if ins.agent == nil || !ins.agent.alive() {
				a, err := startAgent(ins, l.o)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				ins.agent = a
			}
		}
	}

	phase("agents")
	if d := time.Since(start); d > 200*time.Millisecond {
		l.log.Info("slow reconcile", "took", d, "phases", phases.String())
	}
	err := errors.Join(errs...)
	l.mu.Lock()
	l.status.ETag = s.ETag
	l.status.Took = time.Since(start).Round(time.Microsecond).String()
	l.status.Error = ""
	if err != nil {
		l.status.Error = err.Error()
	} else {
		l.status.Synced = time.Now().UTC()
	}
	l.fillStatus(s)
	l.mu.Unlock()
	// Written in the background: the status of 10,000 aliases takes a
	// few milliseconds to encode, which the next change need not wait for.
	l.saveStatusLater()
	return err
}

func (l *Lab) createPort(r *routerNS, ins *instNS, p portState, nic fabric.NIC) error {
	dev := fmt.Sprintf("eth%d", p.device)
	// Leftovers of an earlier realisation (a restarted supervisor).
	if lk, err := r.nl.LinkByName(p.name); err == nil {
		r.nl.LinkDel(lk)
	}
	if lk, err := ins.nl.LinkByName(dev); err == nil {
		ins.nl.LinkDel(lk)
	}
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: p.name}, PeerName: dev, PeerNamespace: netlink.NsFd(int(ins.h))}
	if mac, err := net.ParseMAC(p.mac); err == nil && p.mac != "" {
		v.PeerHardwareAddr = mac
	}
	r.linksChanged()
	if err := r.nl.LinkAdd(v); err != nil {
		return fmt.Errorf("lab: veth %s/%s -> %s/%s: %w", r.ns, p.name, ins.ns, dev, err)
	}
	delete(ins.nics, p.device)
	return nil
}

// reconcileLinks makes one veth pair per ACTIVE peering between the two
// router namespaces.
func (l *Lab) reconcileLinks(s *fabric.Spec) error {
	want := map[string]peerLink{}
	for _, nw := range s.Networks {
		for _, pe := range nw.Desired.Peers {
			if s.Network(pe.Network) == nil || nw.Key > pe.Network {
				continue
			}
			pl := peerLink{a: nw.Key, b: pe.Network, nameA: fabric.PeerLinkName(nw.Key, pe.Network), nameB: fabric.PeerLinkName(pe.Network, nw.Key)}
			want[pl.a+"|"+pl.nameA] = pl
		}
	}
	var errs []error
	for k, pl := range l.links {
		if _, ok := want[k]; ok {
			continue
		}
		if r := l.routers[pl.a]; r != nil {
			if lk, err := r.nl.LinkByName(pl.nameA); err == nil {
				r.nl.LinkDel(lk)
			}
			r.linksChanged()
		}
		if r := l.routers[pl.b]; r != nil {
			r.linksChanged()
		}
		delete(l.links, k)
	}
	for k, pl := range want {
		if _, ok := l.links[k]; ok {
			continue
		}
		ra, rb := l.routers[pl.a], l.routers[pl.b]
		ra.linksChanged()
		rb.linksChanged()
		if lk, err := ra.nl.LinkByName(pl.nameA); err == nil {
			ra.nl.LinkDel(lk)
		}
		if lk, err := rb.nl.LinkByName(pl.nameB); err == nil {
			rb.nl.LinkDel(lk)
		}
		v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: pl.nameA}, PeerName: pl.nameB, PeerNamespace: netlink.NsFd(int(rb.h))}
		if err := ra.nl.LinkAdd(v); err != nil {
			errs = append(errs, fmt.Errorf("lab: peer link %s <-> %s: %w", pl.a, pl.b, err))
			continue
		}
		p := pl
		l.links[k] = &p
	}
	return errors.Join(errs...)
}

// configureNIC sets the instance side of a NIC: address, link up, the
// default route (nic0) and, unless an agent does it, the alias routes.
func (l *Lab) configureNIC(ins *instNS, nic fabric.NIC) error {
	dev := fmt.Sprintf("eth%d", nic.Device)
	a := ins.nics[nic.Device]
	if a != nil && a.done && nicEqual(a.spec, nic) {
		return nil
	}
	lk, err := ins.nl.LinkByName(dev)
	if err != nil {
		return err
	}
	if a == nil || a.ifindex != lk.Attrs().Index {
		a = &nicApplied{ifindex: lk.Attrs().Index, aliases: map[netip.Prefix]bool{}}
		ins.nics[nic.Device] = a
		// Adopt the alias routes already there (a restarted supervisor).
		rs, _ := ins.nl.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_LOCAL, Protocol: AliasRouteProtocol, LinkIndex: a.ifindex},
			netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_OIF)
		for _, r := range rs {
			if p, ok := prefixOf(r.Dst); ok {
				a.aliases[p] = true
			}
		}
	}
	want := netip.PrefixFrom(nic.IP, nic.Prefix.Bits())
	if nic.IP.Is4() && nic.Prefix.IsValid() && a.addr != want {
		if a.addr.IsValid() {
			ins.nl.AddrDel(lk, &netlink.Addr{IPNet: ipNet(a.addr)})
		}
		if err := ins.nl.AddrReplace(lk, &netlink.Addr{IPNet: ipNet(want)}); err != nil {
			return fmt.Errorf("address %s: %w", want, err)
		}
		a.addr = want
		a.gw = netip.Addr{}
	}
	if lk.Attrs().Flags&net.FlagUp == 0 {
		if err := ins.nl.LinkSetUp(lk); err != nil {
			return err
		}
		a.gw = netip.Addr{}
	}
	if nic.Device == 0 && nic.Gateway.Is4() && a.gw != nic.Gateway {
		r := &netlink.Route{LinkIndex: a.ifindex, Gw: nic.Gateway.AsSlice(), Protocol: fabric.RouteProtocol}
		if err := ins.nl.RouteReplace(r); err != nil {
			return fmt.Errorf("default route via %s: %w", nic.Gateway, err)
		}
		a.gw = nic.Gateway
	}
	a.spec, a.done = nic, true
	if l.o.Agent {
		return nil
	}
	wantA := map[netip.Prefix]bool{}
	for _, p := range nic.Aliases {
		// A cluster node's pod range is forwarded to its pods, not owned:
		// a local route would make the node answer for them.
		if p.Addr().Is4() && p != nic.PodRange {
			wantA[p] = true
		}
	}
	for p := range wantA {
		if a.aliases[p] {
			continue
		}
		if err := ins.rw.Replace(fabric.KRoute{Table: unix.RT_TABLE_LOCAL, Dst: p, Type: fabric.RouteLocal, Dev: dev}, a.ifindex, AliasRouteProtocol); err != nil {
			return err
		}
		a.aliases[p] = true
	}
	for p := range a.aliases {
		if wantA[p] {
			continue
		}
		if err := ins.rw.Delete(fabric.KRoute{Table: unix.RT_TABLE_LOCAL, Dst: p}, AliasRouteProtocol); err != nil {
			return err
		}
		delete(a.aliases, p)
	}
	return nil
}

// changedGuests counts the NICs whose inside needs work.
func changedGuests(l *Lab, s *fabric.Spec) int {
	n := 0
	for _, in := range s.Instances {
		ins := l.insts[in.Key]
		for _, nic := range in.NICs {
			if a := ins.nics[nic.Device]; a == nil || !a.done || !nicEqual(a.spec, nic) {
				n++
			}
		}
	}
	return n
}

func nicEqual(a, b fabric.NIC) bool {
	return a.Device == b.Device && a.Interface == b.Interface && a.Network == b.Network && a.MAC == b.MAC && a.IP == b.IP &&
		a.Prefix == b.Prefix && a.Gateway == b.Gateway && a.PodRange == b.PodRange && slices.Equal(a.Aliases, b.Aliases)
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
	return netip.PrefixFrom(a.Unmap(), ones), true
}

// Resync makes the next Reconcile re-read every router's kernel state and
// re-apply the inside of every instance.
func (l *Lab) Resync() {
	for _, r := range l.routers {
		r.fab.Resync()
	}
	for _, i := range l.insts {
		for _, a := range i.nics {
			a.ifindex, a.done = 0, false
		}
		i.forward = -1
	}
}

// Teardown removes every namespace the lab made (and, with kill, ends
// the processes still running inside them first).
func (l *Lab) Teardown(kill bool) error {
	l.FlushStatus()
	var errs []error
	for _, i := range l.insts {
		l.closeInstance(i)
	}
	for _, r := range l.routers {
		l.closeRouter(r)
	}
	l.insts, l.routers, l.ports, l.links = map[string]*instNS{}, map[string]*routerNS{}, map[string]*portState{}, map[string]*peerLink{}
	l.mu.Lock()
	names := slices.Clone(l.status.Namespaces)
	l.mu.Unlock()
	errs = append(errs, RemoveNamespaces(names, kill))
	l.mu.Lock()
	l.status.Namespaces = []string{}
	l.status.Instances, l.status.Routers = nil, nil
	l.mu.Unlock()
	l.saveStatus()
	return errors.Join(errs...)
}

// RemoveNamespaces deletes the named namespaces: router namespaces (their
// veths go with them) after, with kill, the processes inside any of them
// have been ended (SIGTERM, then SIGKILL after 2 s).
func RemoveNamespaces(names []string, kill bool) error {
	if kill {
		killInside(names)
	}
	var errs []error
	for _, n := range names {
		// Delete the veths from the namespace first: a process kept alive
		// in it would keep them (and their peers) too.
		if h, err := netns.GetFromName(n); err == nil {
			if nl, err := netlink.NewHandleAt(h); err == nil {
				if ls, err := nl.LinkList(); err == nil {
					for _, lk := range ls {
						if lk.Type() == "veth" {
							nl.LinkDel(lk)
						}
					}
				}
				nl.Close()
			}
			h.Close()
		}
		errs = append(errs, deleteNS(n))
	}
	return errors.Join(errs...)
}

// killInside ends the processes whose network namespace is one of names.
func killInside(names []string) {
	inodes := map[uint64]bool{}
	for _, n := range names {
		var st unix.Stat_t
		if unix.Stat(filepath.Join("/run/netns", n), &st) == nil {
			inodes[st.Ino] = true
		}
	}
	if len(inodes) == 0 {
		return
	}
	find := func() []int {
		var pids []int
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			var pid int
			if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil || pid == os.Getpid() {
				continue
			}
			var st unix.Stat_t
			if unix.Stat(filepath.Join("/proc", e.Name(), "ns/net"), &st) == nil && inodes[st.Ino] {
				pids = append(pids, pid)
			}
		}
		return pids
	}
	pids := find()
	for _, p := range pids {
		unix.Kill(p, unix.SIGTERM)
	}
	deadline := time.Now().Add(2 * time.Second)
	for len(pids) > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		pids = find()
	}
	for _, p := range pids {
		unix.Kill(p, unix.SIGKILL)
	}
}

// NamespaceOf returns the namespace of an instance of the current status
// (by name, optionally zone).
func (st *Status) NamespaceOf(name, zone string) (string, error) {
	var found []InstanceStatus
	for _, in := range st.Instances {
		if in.Name == name && (zone == "" || in.Zone == zone) {
			found = append(found, in)
		}
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("lab: no instance %q in the lab of project %q", name, st.Project)
	case 1:
		return found[0].Namespace, nil
	}
	return "", fmt.Errorf("lab: instance %q is in several zones: give --zone", name)
}
