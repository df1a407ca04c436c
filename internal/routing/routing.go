// Package routing runs aliasnet's Cloud Routers: one BGP speaker
// (internal/bgp, gobgp in-process) per router, kept in step with the
// control plane.
//
// The runtime is an adapter around control (DESIGN §2): it never reads the
// store. After every commit (control.Service.Changed) it re-reads the
// routers and the subnet ranges they cover from the model and reconciles
// each speaker — SetAdvertised and SetPeers diff against what is running,
// so a new or removed range is announced or withdrawn at once without
// resetting any session. Routes the peers announce are published back into
// the model as the network's dynamic routes (model.Txn.SetDynamicRoutes),
// where the route/trace engine (package netpolicy) reads them.
//
// Mapping of the GCE resource to BGP:
//
//   - DEFAULT mode advertises every primary and secondary range of the
//     subnets the router covers (model.State.RouterSubnetRanges: the
//     router's region, or all regions when the network's routing mode is
//     GLOBAL); CUSTOM mode the chosen groups plus advertisedIpRanges
//     (bgp.Advertise).
//   - Each enabled bgpPeer is a session to peerIpAddress:PeerPort with
//     peerAsn; advertisedRoutePriority is the MED; ipAddress, when it is an
//     address of this host, is the session's source address.
//   - Peers whose effective advertisement differs (a peer in CUSTOM mode)
//     get their own speaker, so every session carries exactly its set; a
//     router whose peers all follow the router's advertisement has one.
//   - A router's first speaker listens on Listen (or on the peers' common
//     ipAddress, when that is an address of this host) at Listen's port;
//     when that address and port are taken by another router's speaker it
//     runs active-only (it connects, it does not accept).
package routing

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aliasnet/aliasnet/internal/bgp"
	"github.com/aliasnet/aliasnet/internal/control"
	"github.com/aliasnet/aliasnet/internal/model"
)

// Config is the runtime's part of `aliasnet serve`.
type Config struct {
	// Listen is the address and port BGP speakers listen on
	// (--bgp-listen). The port is also every peer's remote port unless
	// PeerPort is set.
	Listen netip.AddrPort
	// PeerPort is the TCP port of the peers; 0 = Listen's port.
	PeerPort uint16
	// Multihop is the eBGP multihop TTL of every session; 0 = off.
	Multihop uint8
	// Resync is how often the runtime retries failed reconciliations and
	// re-reads learned routes without an event; 0 = 2 s.
	Resync time.Duration
	Logger *slog.Logger
}

// Runtime runs the speakers of every router in a control plane.
type Runtime struct {
	svc *control.Service
	cfg Config
	log *slog.Logger

	mu      sync.Mutex // guards routers and owners
	routers map[string]*routerRT
	// owners maps a listen endpoint to the speaker holding it.
	owners map[netip.AddrPort]*speakerRT

	learnKick chan struct{}
	bindable  map[netip.Addr]bool
}

type routerRT struct {
	key      string
	r        *model.Router  // as last applied
	ranges   []netip.Prefix // subnet ranges as last applied
	failed   bool           // last reconcile had an error: retry on tick
	speakers []*speakerRT   // [0] is the listening one
}

type speakerRT struct {
	group  string     // advertisement key
	want   bgp.Config // identity asked for
	cfg    bgp.Config // identity running (active-only when listening failed)
	sp     *bgp.Speaker
	adv    []netip.Prefix
	peers  []bgp.Peer
	names  map[netip.Addr]string // peer address -> bgpPeer name
	cancel context.CancelFunc    // stops the learned-routes watcher
}

// New returns a runtime; Run starts it.
func New(svc *control.Service, cfg Config) (*Runtime, error) {
	if !cfg.Listen.IsValid() {
		return nil, errors.New("routing: a listen address and port are required")
	}
	if cfg.Listen.Port() == 0 {
		return nil, errors.New("routing: the listen port must not be 0")
	}
	if cfg.PeerPort == 0 {
		cfg.PeerPort = cfg.Listen.Port()
	}
	if cfg.Resync <= 0 {
		cfg.Resync = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Runtime{
		svc: svc, cfg: cfg, log: cfg.Logger.With("component", "routing"),
		routers: map[string]*routerRT{}, owners: map[netip.AddrPort]*speakerRT{},
		learnKick: make(chan struct{}, 1), bindable: map[netip.Addr]bool{},
	}, nil
}

// Run reconciles until ctx ends, then stops every speaker (their sessions
// close with a Cease).
func (rt *Runtime) Run(ctx context.Context) error {
	defer rt.stopAll()
	tick := time.NewTicker(rt.cfg.Resync)
	defer tick.Stop()
	rt.log.Info("bgp runtime started", "listen", rt.cfg.Listen, "peer_port", rt.cfg.PeerPort)
	retry := false
	for {
		ch, _ := rt.svc.Changed()
		changed := rt.reconcile(retry)
		retry = false
		if changed {
			rt.syncLearned(ctx)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ch:
		case <-rt.learnKick:
			// Coalesce a burst of UPDATEs into one write.
			select {
			case <-time.After(50 * time.Millisecond):
			case <-ctx.Done():
				return nil
			}
			rt.syncLearned(ctx)
		case <-tick.C:
			retry = true
			rt.syncLearned(ctx)
		}
	}
}

func (rt *Runtime) stopAll() {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	for k, r := range rt.routers {
		rt.stopRouter(r)
		delete(rt.routers, k)
	}
}

// want is one router as the model has it now.
type want struct {
	key    string
	r      *model.Router
	ranges []netip.Prefix
}

// reconcile brings every speaker in line with the model. It reports
// whether any speaker or its configuration changed.
func (rt *Runtime) reconcile(retry bool) bool {
	var ws []want
	rt.svc.Read(func(st *model.State) {
		for _, p := range st.Projects() {
			for _, r := range st.Routers(p, "") {
				ws = append(ws, want{key: model.RouterKey(r.Project, r.Region, r.Name), r: r, ranges: st.RouterSubnetRanges(r)})
			}
		}
	})
	rt.mu.Lock()
	defer rt.mu.Unlock()
	changed := false
	seen := map[string]bool{}
	for _, w := range ws {
		seen[w.key] = true
		cur := rt.routers[w.key]
		if cur != nil && cur.r == w.r && slices.Equal(cur.ranges, w.ranges) && !(retry && cur.failed) {
			continue // nothing this router depends on changed
		}
		if cur == nil {
			cur = &routerRT{key: w.key}
			rt.routers[w.key] = cur
		}
		cur.r, cur.ranges = w.r, w.ranges
		cur.failed = false
		if err := rt.apply(cur); err != nil {
			cur.failed = true
			rt.log.Warn("router not fully applied; retrying", "router", w.key, "err", err)
		}
		changed = true
	}
	for k, cur := range rt.routers {
		if !seen[k] {
			rt.stopRouter(cur)
			delete(rt.routers, k)
			rt.log.Info("router removed: speakers stopped", "router", k)
			changed = true
		}
	}
	return changed
}

// group is the peers that share one advertised set.
type group struct {
	key   string
	adv   []netip.Prefix
	peers []model.BGPPeer
}

// groups splits a router's enabled peers by effective advertisement, in
// the order of their first peer.
func groups(r *model.Router, subnetRanges []netip.Prefix) ([]group, error) {
	var out []group
	var errs []error
	for _, p := range r.Peers {
		if p.Disabled {
			continue
		}
		eff := p.Effective(r)
		ranges := make([]netip.Prefix, len(eff.Ranges))
		for i, ar := range eff.Ranges {
			ranges[i] = ar.Range
		}
		adv, err := bgp.Advertise(eff.Mode, eff.Groups, ranges, subnetRanges)
		if err != nil {
			errs = append(errs, fmt.Errorf("peer %s: %w", p.Name, err))
			continue
		}
		key := fmt.Sprintf("%s|%s|%v", eff.Mode, strings.Join(eff.Groups, ","), ranges)
		i := slices.IndexFunc(out, func(g group) bool { return g.key == key })
		if i < 0 {
			out = append(out, group{key: key, adv: adv})
			i = len(out) - 1
		}
		out[i].peers = append(out[i].peers, p)
	}
	return out, errors.Join(errs...)
}

// apply reconciles one router's speakers. Caller holds rt.mu.
func (rt *Runtime) apply(cur *routerRT) error {
	r := cur.r
	if r.BGP == nil || r.BGP.ASN == 0 {
		rt.stopRouter(cur)
		return nil
	}
	gs, gerr := groups(r, cur.ranges)
	if len(gs) == 0 {
		rt.stopRouter(cur)
		return gerr
	}
	errs := []error{gerr}
	// Reuse running speakers: for each group the one already holding most
	// of its peers (a changed advertisement keeps its sessions), else the
	// one with the same advertisement.
	old := cur.speakers
	next := make([]*speakerRT, len(gs))
	for i, g := range gs {
		best, bestScore := -1, 0
		for j, s := range old {
			if s == nil {
				continue
			}
			score := 0
			for _, p := range g.peers {
				if _, ok := s.names[p.PeerIPAddress]; ok {
					score += 2
				}
			}
			if s.group == g.key {
				score++
			}
			if score > bestScore {
				best, bestScore = j, score
			}
		}
		if best >= 0 {
			next[i], old[best] = old[best], nil
			next[i].group = g.key
		}
	}
	for _, s := range old {
		if s != nil {
			rt.stopSpeaker(s)
		}
	}
	cur.speakers = next
	for i, g := range gs {
		want := rt.speakerConfig(cur, g, i == 0)
		s := cur.speakers[i]
		if s != nil && s.want != want {
			rt.log.Info("speaker identity changed: restarting", "router", cur.key, "from", cfgString(s.want), "to", cfgString(want))
			rt.stopSpeaker(s)
			s = nil
		}
		if s == nil {
			var err error
			if s, err = rt.startSpeaker(cur.key, g.key, want); err != nil {
				errs = append(errs, err)
				cur.speakers[i] = nil
				continue
			}
			cur.speakers[i] = s
		}
		if err := rt.configure(cur.key, s, g); err != nil {
			errs = append(errs, err)
		}
	}
	cur.speakers = slices.DeleteFunc(cur.speakers, func(s *speakerRT) bool { return s == nil })
	return errors.Join(errs...)
}

func cfgString(c bgp.Config) string {
	l := "active-only"
	if c.ListenPort >= 0 {
		l = netip.AddrPortFrom(c.ListenAddr, uint16(c.ListenPort)).String()
	}
	return fmt.Sprintf("asn=%d id=%v listen=%s", c.ASN, c.RouterID, l)
}

// speakerConfig is the identity a group's speaker should have.
func (rt *Runtime) speakerConfig(cur *routerRT, g group, listening bool) bgp.Config {
	r := cur.r
	c := bgp.Config{ASN: r.BGP.ASN, RouterID: routerID(r, rt.cfg.Listen.Addr()), ListenPort: -1}
	if !listening {
		return c
	}
	addr := rt.cfg.Listen.Addr()
	// The peers' common router-side address, when this host has it.
	var common netip.Addr
	for i, p := range g.peers {
		if i == 0 {
			common = p.IPAddress
		} else if p.IPAddress != common {
			common = netip.Addr{}
		}
	}
	if common.IsValid() && rt.isLocal(common) {
		addr = common
	}
	ep := netip.AddrPortFrom(addr, rt.cfg.Listen.Port())
	if owner := rt.owners[ep]; owner != nil && !slices.Contains(cur.speakers, owner) {
		rt.log.Debug("listen endpoint taken by another router: this router's speaker only connects", "router", cur.key, "endpoint", ep)
		return c
	}
	c.ListenAddr, c.ListenPort = addr, int32(ep.Port())
	return c
}

// routerID picks the BGP identifier: the router's first IPv4 session or
// interface address (GCE uses the interface's link-local address), else
// the listen address, else one derived from the router's id.
func routerID(r *model.Router, listen netip.Addr) netip.Addr {
	for _, p := range r.Peers {
		if p.IPAddress.Is4() {
			return p.IPAddress
		}
	}
	for _, i := range r.Interfaces {
		if i.IPRange.Addr().Is4() {
			return i.IPRange.Addr()
		}
	}
	if listen.Is4() && !listen.IsUnspecified() {
		return listen
	}
	v := uint32(r.ID) | 1<<31 // never 0.x.x.x
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// isLocal reports whether a is an address of this host (it can be bound).
func (rt *Runtime) isLocal(a netip.Addr) bool {
	if v, ok := rt.bindable[a]; ok {
		return v
	}
	ln, err := net.Listen("tcp", netip.AddrPortFrom(a, 0).String())
	ok := err == nil
	if ok {
		ln.Close()
	}
	rt.bindable[a] = ok
	return ok
}

func (rt *Runtime) startSpeaker(routerKey, groupKey string, want bgp.Config) (*speakerRT, error) {
	c := want
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	log := rt.log.With("router", routerKey)
	sp, err := bgp.Start(ctx, c, log)
	if err != nil && c.ListenPort >= 0 {
		// The address or port cannot be bound: connect only.
		log.Warn("bgp listen failed; the speaker only connects", "listen", netip.AddrPortFrom(c.ListenAddr, uint16(c.ListenPort)), "err", err)
		c.ListenAddr, c.ListenPort = netip.Addr{}, -1
		sp, err = bgp.Start(ctx, c, log)
	}
	if err != nil {
		return nil, fmt.Errorf("start speaker: %w", err)
	}
	s := &speakerRT{group: groupKey, want: want, cfg: c, sp: sp, names: map[netip.Addr]string{}}
	if c.ListenPort >= 0 {
		rt.owners[netip.AddrPortFrom(c.ListenAddr, uint16(c.ListenPort))] = s
	}
	wctx, wcancel := context.WithCancel(context.Background())
	s.cancel = wcancel
	go func() {
		for range sp.WatchLearned(wctx) {
			select {
			case rt.learnKick <- struct{}{}:
			default:
			}
		}
	}()
	return s, nil
}

// configure pushes a group's routes and peers: routes first, so that a
// new session's initial dump already has them.
func (rt *Runtime) configure(routerKey string, s *speakerRT, g group) error {
	var errs []error
	if !slices.Equal(s.adv, g.adv) {
		routes := make([]bgp.Route, len(g.adv))
		for i, p := range g.adv {
			routes[i] = bgp.Route{Prefix: p}
		}
		if err := s.sp.SetAdvertised(routes); err != nil {
			errs = append(errs, err)
		} else {
			s.adv = g.adv
		}
	}
	peers := make([]bgp.Peer, 0, len(g.peers))
	names := map[netip.Addr]string{}
	for _, p := range g.peers {
		bp := bgp.Peer{Address: p.PeerIPAddress, Port: rt.cfg.PeerPort, ASN: p.PeerASN, Multihop: rt.cfg.Multihop, MED: uint32(p.Priority)}
		if p.IPAddress.IsValid() && rt.isLocal(p.IPAddress) {
			bp.LocalAddress = p.IPAddress
		}
		peers = append(peers, bp)
		names[p.PeerIPAddress] = p.Name
	}
	if !slices.Equal(s.peers, peers) {
		if err := s.sp.SetPeers(peers); err != nil {
			errs = append(errs, err)
		} else {
			s.peers = peers
		}
	}
	s.names = names
	return errors.Join(errs...)
}

func (rt *Runtime) stopSpeaker(s *speakerRT) {
	s.cancel()
	if err := s.sp.Stop(); err != nil {
		rt.log.Warn("stopping speaker", "err", err)
	}
	for ep, o := range rt.owners {
		if o == s {
			delete(rt.owners, ep)
		}
	}
}

func (rt *Runtime) stopRouter(cur *routerRT) {
	for _, s := range cur.speakers {
		rt.stopSpeaker(s)
	}
	cur.speakers = nil
}

// ---- learned routes → dynamic routes of the network ----

// learnedByNetwork collects every speaker's learned routes (best path per
// prefix) by "PROJECT/NETWORK". Each route names the router and, when its
// next hop is a peer's address, the peer.
func (rt *Runtime) learnedByNetwork() map[[2]string][]model.DynamicRoute {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	out := map[[2]string][]model.DynamicRoute{}
	for _, cur := range rt.routers {
		k := [2]string{cur.r.Project, cur.r.Network}
		if _, ok := out[k]; !ok {
			out[k] = nil
		}
		for _, s := range cur.speakers {
			for _, l := range s.sp.Learned() {
				if !l.NextHop.IsValid() {
					continue
				}
				peer := cur.r.Name
				if n, ok := s.names[l.NextHop]; ok {
					peer += "/" + n
				}
				out[k] = append(out[k], model.DynamicRoute{Dest: l.Prefix, NextHop: l.NextHop, Priority: int(l.MED), Peer: peer})
			}
		}
	}
	for k, rs := range out {
		slices.SortFunc(rs, compareDynamic)
		out[k] = slices.CompactFunc(rs, func(a, b model.DynamicRoute) bool { return compareDynamic(a, b) == 0 })
	}
	return out
}

func compareDynamic(a, b model.DynamicRoute) int {
	return cmp.Or(a.Dest.Addr().Compare(b.Dest.Addr()), cmp.Compare(a.Dest.Bits(), b.Dest.Bits()),
		cmp.Compare(a.Priority, b.Priority), a.NextHop.Compare(b.NextHop), cmp.Compare(a.Peer, b.Peer))
}

// syncLearned stores each network's learned routes where they differ from
// the model. The runtime owns dynamic routes: a network without routers
// has none.
func (rt *Runtime) syncLearned(ctx context.Context) {
	want := rt.learnedByNetwork()
	type write struct {
		project, network string
		routes           []model.DynamicRoute
	}
	var writes []write
	rt.svc.Read(func(st *model.State) {
		for k, rs := range want {
			if st.Network(k[0], k[1]) == nil {
				continue
			}
			var have []model.DynamicRoute
			if d := st.DynamicRoutesOf(k[0], k[1]); d != nil {
				have = slices.Clone(d.Routes)
				slices.SortFunc(have, compareDynamic)
			}
			if !slices.Equal(have, rs) {
				writes = append(writes, write{k[0], k[1], rs})
			}
		}
		for _, p := range st.Projects() {
			for _, d := range st.AllDynamicRoutes(p) {
				if _, ok := want[[2]string{p, d.Network}]; !ok && len(d.Routes) > 0 {
					writes = append(writes, write{p, d.Network, nil})
				}
			}
		}
	})
	for _, w := range writes {
		_, err := rt.svc.Do(ctx, control.Op{
			Project: w.project, Scope: "dynamicRoutes", Type: "setDynamicRoutes",
			Target: model.DynamicRoutesKey(w.project, w.network),
		}, func(tx *model.Txn) (uint64, any, error) {
			_, err := tx.SetDynamicRoutes(w.project, w.network, w.routes)
			return 0, nil, err
		})
		if err != nil {
			rt.log.Warn("storing learned routes", "network", w.project+"/"+w.network, "err", err)
			continue
		}
		rt.log.Info("dynamic routes updated", "network", w.project+"/"+w.network, "routes", len(w.routes))
	}
}

// ---- status (getRouterStatus) ----

// PeerStatus is one bgpPeer's live session.
type PeerStatus struct {
	Name       string
	PeerIP     netip.Addr
	State      string // BGP FSM state as GCE spells it: "Established", "Idle", "Connect", "Active", "OpenSent", "OpenConfirm"
	Up         bool
	Uptime     time.Duration
	Advertised []bgp.Route // with the MED the peer receives
	Learned    []bgp.Route // what the peer announced
}

// RouterStatus is a router's live state.
type RouterStatus struct {
	Peers []PeerStatus
	// Learned is the best learned route per prefix over the router's
	// sessions.
	Learned []bgp.Route
}

var gceStates = map[string]string{
	"ESTABLISHED": "Established", "IDLE": "Idle", "CONNECT": "Connect", "ACTIVE": "Active",
	"OPENSENT": "OpenSent", "OPENCONFIRM": "OpenConfirm",
}

// RouterStatus reports the live sessions of a router; ok is false when the
// runtime runs no speaker for it (no BGP, no enabled peer, or not yet).
func (rt *Runtime) RouterStatus(project, region, name string) (RouterStatus, bool) {
	// Copy what the loop may replace; configure swaps in new maps and
	// slices, never mutating the ones handed out here.
	type view struct {
		sp    *bgp.Speaker
		names map[netip.Addr]string
		peers []bgp.Peer
	}
	var views []view
	rt.mu.Lock()
	if cur := rt.routers[model.RouterKey(project, region, name)]; cur != nil {
		for _, s := range cur.speakers {
			views = append(views, view{s.sp, s.names, s.peers})
		}
	}
	rt.mu.Unlock()
	if len(views) == 0 {
		return RouterStatus{}, false
	}
	var out RouterStatus
	for _, v := range views {
		sts, err := v.sp.Status()
		if err != nil {
			continue // stopped meanwhile
		}
		meds := map[netip.Addr]uint32{}
		for _, p := range v.peers {
			meds[p.Address] = p.MED
		}
		for _, st := range sts {
			ps := PeerStatus{Name: v.names[st.Address], PeerIP: st.Address, State: cmp.Or(gceStates[st.State], st.State),
				Up: st.State == "ESTABLISHED", Uptime: st.Uptime, Learned: st.Learned}
			for _, p := range st.Advertised {
				ps.Advertised = append(ps.Advertised, bgp.Route{Prefix: p, MED: meds[st.Address]})
			}
			out.Peers = append(out.Peers, ps)
		}
		out.Learned = append(out.Learned, v.sp.Learned()...)
	}
	slices.SortFunc(out.Learned, func(a, b bgp.Route) int {
		return cmp.Or(a.Prefix.Addr().Compare(b.Prefix.Addr()), cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits()), a.NextHop.Compare(b.NextHop))
	})
	return out, true
}
