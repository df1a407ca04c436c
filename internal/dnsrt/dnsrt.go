// Package dnsrt runs aliasnet's internal DNS (package dnsserver) against
// the control plane: after every commit it rebuilds the served table from
// the model — instance names with the primary IP of nic0 only (seed 000)
// and the records of managed zones — and swaps it in atomically, so a new,
// changed or deleted instance or record is answered differently by the
// next query.
//
// Visibility follows GCE: "the DNS lookup on that host name only works in
// the network that contains the primary interface". A client is placed in
// the network of the interface whose primary IP (or alias IP range) its
// source address is; a private managed zone is visible to the networks it
// lists. Clients in Config.AllNetworks (loopback by default: the operator
// on the server host) see every network.
package dnsrt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gaissmai/bart"
	"github.com/miekg/dns"

	"github.com/aliasnet/aliasnet/internal/control"
	"github.com/aliasnet/aliasnet/internal/dnsserver"
	"github.com/aliasnet/aliasnet/internal/model"
	"github.com/aliasnet/aliasnet/internal/store"
)

// Config is the runtime's part of `aliasnet serve`.
type Config struct {
	// Listen is the UDP and TCP address (--dns-listen), e.g. 127.0.0.1:5353.
	Listen string
	// AllNetworks are client prefixes that see every network's names
	// (nil: 127.0.0.0/8 and ::1).
	AllNetworks []netip.Prefix
	// TTL of instance records (0: dnsserver's default, 60 s).
	TTL    uint32
	Logger *slog.Logger
}

// DefaultAllNetworks is Config.AllNetworks when none is given.
var DefaultAllNetworks = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// Runtime serves internal DNS for a control plane.
type Runtime struct {
	svc *control.Service
	cfg Config
	log *slog.Logger

	scoped *dnsserver.Server // answers per client network
	all    *dnsserver.Server // answers with every network visible

	clients atomic.Pointer[clientIndex]
	gen     atomic.Int64 // tables built so far
	// ifcKeys is, per interface key, what the served table depends on
	// (written by the serving loop only).
	ifcKeys map[string]ifcKey

	ready chan struct{}
	addr  atomic.Pointer[net.UDPAddr]
}

// clientIndex places a client address in a network ("PROJECT/NETWORK").
type clientIndex struct {
	primary map[netip.Addr]string
	aliases *bart.Table[string]
}

// NetworkKey is how dnsrt names a network to dnsserver.
func NetworkKey(project, network string) string { return project + "/" + network }

// New returns a runtime; Run builds the first table and serves.
func New(svc *control.Service, cfg Config) *Runtime {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.AllNetworks == nil {
		cfg.AllNetworks = DefaultAllNetworks
	}
	rt := &Runtime{svc: svc, cfg: cfg, log: cfg.Logger.With("component", "dns"), ready: make(chan struct{})}
	rt.clients.Store(&clientIndex{primary: map[netip.Addr]string{}, aliases: &bart.Table[string]{}})
	rt.scoped = dnsserver.New(dnsserver.Options{TTL: cfg.TTL, NetworkOf: rt.NetworkOf, Logger: rt.log})
	rt.all = dnsserver.New(dnsserver.Options{TTL: cfg.TTL, Logger: rt.log})
	return rt
}

// NetworkOf maps a client's source address to its network: the network of
// the interface whose primary IP it is, else of the interface holding an
// alias IP range that contains it, else "" (unknown: only zones visible to
// every network answer).
func (rt *Runtime) NetworkOf(a netip.Addr) string {
	ci := rt.clients.Load()
	a = a.Unmap()
	if n, ok := ci.primary[a]; ok {
		return n
	}
	if n, ok := ci.aliases.Lookup(a); ok {
		return n
	}
	return ""
}

func (rt *Runtime) seesAll(a netip.Addr) bool {
	for _, p := range rt.cfg.AllNetworks {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ServeDNS dispatches a query to the view its client may see.
func (rt *Runtime) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	if rt.seesAll(addrOf(w.RemoteAddr())) {
		rt.all.ServeDNS(w, r)
		return
	}
	rt.scoped.ServeDNS(w, r)
}

func addrOf(a net.Addr) netip.Addr {
	switch v := a.(type) {
	case *net.UDPAddr:
		ip, _ := netip.AddrFromSlice(v.IP)
		return ip.Unmap()
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(v.IP)
		return ip.Unmap()
	}
	return netip.Addr{}
}

// Snapshot turns the model into what dnsserver serves. Instances: nic0's
// primary IPv4 only (never alias IPs, never other NICs), in nic0's network.
// Zones: private zones with networks are visible to those; private zones
// without networks are not served; public zones are visible to every
// client.
func Snapshot(st *model.State) dnsserver.Snapshot {
	var snap dnsserver.Snapshot
	for _, p := range st.Projects() {
		for _, in := range st.Instances(p, "") {
			nics := st.NICs(in)
			if len(nics) == 0 || !nics[0].IP.Is4() {
				continue
			}
			nic0 := nics[0]
			snap.Instances = append(snap.Instances, dnsserver.Instance{Project: in.Project, Zone: in.Zone, Name: in.Name,
				IP: nic0.IP, Network: NetworkKey(p, nic0.Network)})
		}
		for _, z := range st.DNSZones(p) {
			dz := dnsserver.Zone{Project: z.Project, Name: z.Name, DNSName: z.DNSName}
			if z.Visibility == model.VisibilityPrivate {
				if len(z.Networks) == 0 {
					continue
				}
				dz.Networks = append(dz.Networks, z.Networks...) // already "PROJECT/NETWORK"
			}
			for _, r := range z.RRSets {
				dz.RRSets = append(dz.RRSets, dnsserver.RRSet{Name: r.Name, Type: r.Type, TTL: uint32(r.TTL), RRDatas: r.RRDatas})
			}
			snap.Zones = append(snap.Zones, dz)
		}
	}
	return snap
}

// ifcKey is what of an interface the table depends on (not its aliases).
type ifcKey struct {
	ip       netip.Addr
	network  string
	instance string
	device   int
}

// clientIndexOf indexes every interface's primary IP and alias ranges by
// network, and records what the table depends on of each interface.
func clientIndexOf(st *model.State) (*clientIndex, map[string]ifcKey) {
	ci := &clientIndex{primary: map[netip.Addr]string{}, aliases: &bart.Table[string]{}}
	keys := map[string]ifcKey{}
	for _, p := range st.Projects() {
		for _, ifc := range st.Interfaces(p) {
			nk := NetworkKey(p, ifc.Network)
			if _, dup := ci.primary[ifc.IP]; !dup {
				ci.primary[ifc.IP] = nk
			}
			for _, al := range ifc.Aliases {
				ci.aliases.Insert(al.Range, nk)
			}
			keys[model.InterfaceKey(p, ifc.ID)] = ifcKey{ifc.IP, ifc.Network, ifc.Instance, ifc.Device}
		}
	}
	return ci, keys
}

// build builds a table; when the whole snapshot does not build (a record
// the model let through but dnsserver refuses, say), it drops what fails
// alone and serves the rest, logging each drop.
func (rt *Runtime) build(snap dnsserver.Snapshot) *dnsserver.Table {
	t, err := dnsserver.Build(snap)
	if err == nil {
		return t
	}
	rt.log.Error("dns table does not build; dropping the parts that fail", "err", err)
	var keep dnsserver.Snapshot
	if _, err := dnsserver.Build(dnsserver.Snapshot{Instances: snap.Instances}); err == nil {
		keep.Instances = snap.Instances
	} else {
		// Instances that fail alone (a name that is not a DNS label)...
		var valid []dnsserver.Instance
		for _, in := range snap.Instances {
			if _, err := dnsserver.Build(dnsserver.Snapshot{Instances: []dnsserver.Instance{in}}); err != nil {
				rt.log.Warn("dns: instance not served", "instance", in.Project+"/"+in.Zone+"/"+in.Name, "err", err)
				continue
			}
			valid = append(valid, in)
		}
		if _, err := dnsserver.Build(dnsserver.Snapshot{Instances: valid}); err == nil {
			keep.Instances = valid
		} else {
			// ...then those that collide (the model prevents it; quadratic, last resort).
			for _, in := range valid {
				try := dnsserver.Snapshot{Instances: append(slices.Clip(keep.Instances), in)}
				if _, err := dnsserver.Build(try); err != nil {
					rt.log.Warn("dns: instance not served", "instance", in.Project+"/"+in.Zone+"/"+in.Name, "err", err)
					continue
				}
				keep.Instances = try.Instances
			}
		}
	}
	for _, z := range snap.Zones {
		try := dnsserver.Snapshot{Instances: keep.Instances, Zones: append(slices.Clip(keep.Zones), z)}
		if _, err := dnsserver.Build(try); err != nil {
			rt.log.Warn("dns: managed zone not served", "zone", z.Project+"/"+z.Name, "err", err)
			continue
		}
		keep.Zones = try.Zones
	}
	t, err = dnsserver.Build(keep)
	if err != nil {
		rt.log.Error("dns: reduced table does not build either", "err", err)
		return nil
	}
	return t
}

// Rebuild builds the table from the current model and serves it.
func (rt *Runtime) Rebuild() {
	var snap dnsserver.Snapshot
	var ci *clientIndex
	var keys map[string]ifcKey
	rt.svc.Read(func(st *model.State) {
		snap = Snapshot(st)
		ci, keys = clientIndexOf(st)
	})
	t := rt.build(snap)
	if t == nil {
		return
	}
	rt.clients.Store(ci)
	rt.ifcKeys = keys
	rt.scoped.Update(t)
	rt.all.Update(t)
	rt.gen.Add(1)
}

// RebuildIndex refreshes only the client index (alias ranges changed,
// nothing the table shows).
func (rt *Runtime) RebuildIndex() {
	var ci *clientIndex
	var keys map[string]ifcKey
	rt.svc.Read(func(st *model.State) { ci, keys = clientIndexOf(st) })
	rt.clients.Store(ci)
	rt.ifcKeys = keys
}

// classify says what a committed change means for DNS: a full rebuild
// (instances, zones, networks, an interface's address or attachment), an
// index refresh (only an interface's alias ranges), or nothing.
func (rt *Runtime) classify(ev store.Event) (full, index bool) {
	for _, k := range ev.Deletes {
		switch {
		case strings.Contains(k, "/instances/"), strings.Contains(k, "/managedZones/"),
			strings.Contains(k, "/interfaces/"), strings.Contains(k, "/global/networks/"):
			return true, false
		}
	}
	for _, kv := range ev.Puts {
		k := kv.Key
		switch {
		case strings.Contains(k, "/operations/"), strings.Contains(k, "/requests/"):
		case strings.Contains(k, "/instances/"), strings.Contains(k, "/managedZones/"), strings.Contains(k, "/global/networks/"):
			return true, false
		case strings.Contains(k, "/interfaces/"):
			var ifc model.Interface
			old, ok := rt.ifcKeys[k]
			if !ok || json.Unmarshal(kv.Value, &ifc) != nil || old != (ifcKey{ifc.IP, ifc.Network, ifc.Instance, ifc.Device}) {
				return true, false
			}
			index = true
		}
	}
	return false, index
}

// Ready is closed once the listeners are bound and the first table is
// served.
func (rt *Runtime) Ready() <-chan struct{} { return rt.ready }

// Addr is the bound UDP (and TCP) address, nil before Ready.
func (rt *Runtime) Addr() net.Addr {
	if a := rt.addr.Load(); a != nil {
		return a
	}
	return nil
}

// Listen binds UDP and TCP on the configured address (the same port for
// both).
func (rt *Runtime) Listen() (net.PacketConn, net.Listener, error) {
	return dnsserver.ListenBoth(rt.cfg.Listen)
}

// Serve answers on pc and ln (from Listen) and rebuilds the table after
// every commit, until ctx ends.
func (rt *Runtime) Serve(ctx context.Context, pc net.PacketConn, ln net.Listener) error {
	_, rev := rt.svc.Changed()
	rt.Rebuild()
	var started sync.WaitGroup
	started.Add(2)
	udp := &dns.Server{PacketConn: pc, Handler: rt, UDPSize: 4096, NotifyStartedFunc: started.Done}
	tcp := &dns.Server{Listener: ln, Handler: rt, NotifyStartedFunc: started.Done,
		ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second, IdleTimeout: func() time.Duration { return 10 * time.Second }}
	errc := make(chan error, 2)
	var done sync.WaitGroup
	for _, srv := range []*dns.Server{udp, tcp} {
		done.Add(1)
		go func() {
			defer done.Done()
			if err := srv.ActivateAndServe(); err != nil {
				errc <- err
			}
		}()
	}
	up := make(chan struct{})
	go func() { started.Wait(); close(up) }()
	var err error
	select {
	case <-up:
		rt.addr.Store(pc.LocalAddr().(*net.UDPAddr))
		close(rt.ready)
		rt.log.Info("internal DNS serving", "udp", pc.LocalAddr().String(), "tcp", ln.Addr().String(), "all_networks_from", rt.cfg.AllNetworks)
		err = rt.loop(ctx, rev, errc)
	case err = <-errc:
	}
	shCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, srv := range []*dns.Server{udp, tcp} {
		_ = srv.ShutdownContext(shCtx)
	}
	pc.Close()
	ln.Close()
	done.Wait()
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("dns: %w", err)
	}
	return nil
}

// loop follows the control plane's change stream (DESIGN §2): after each
// batch of committed changes it rebuilds what they touch. When the stream
// is lost (compaction, a slow reader) it rebuilds everything and resumes.
func (rt *Runtime) loop(ctx context.Context, rev int64, errc <-chan error) error {
	for {
		evs, err := rt.svc.Watch(ctx, rev)
		if err != nil {
			rt.log.Warn("dns: change stream lost; rebuilding", "rev", rev, "err", err)
			_, rev = rt.svc.Changed()
			rt.Rebuild()
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		for open := true; open; {
			var ev store.Event
			select {
			case <-ctx.Done():
				return nil
			case err := <-errc:
				return err
			case ev, open = <-evs:
			}
			if !open {
				if ctx.Err() != nil {
					return nil
				}
				_, rev = rt.svc.Changed()
				rt.Rebuild()
				break
			}
			full, index := rt.classify(ev)
			rev = ev.Rev
			// Coalesce what is already queued.
		drain:
			for {
				select {
				case ev2, ok := <-evs:
					if !ok {
						break drain
					}
					f, i := rt.classify(ev2)
					full, index, rev = full || f, index || i, ev2.Rev
				default:
					break drain
				}
			}
			switch {
			case full:
				rt.Rebuild()
			case index:
				rt.RebuildIndex()
			}
		}
	}
}
