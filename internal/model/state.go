package model

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/gaissmai/bart"

	"github.com/aliasnet/aliasnet/internal/ipam"
)

// State is the whole address plane in memory: every resource plus the
// indexes that answer "who holds this address" and "which range contains
// it". It is not safe for concurrent use; the control layer serialises
// mutations and guards reads.
//
// Resources stored in State are never modified in place: a mutation puts
// a modified copy. Readers may therefore keep a pointer they got while
// holding the read lock.
type State struct {
	projects map[string]*project
	owners   []OwnerRef
	ownerIdx map[OwnerRef]ipam.Owner

	// EIP addresses are unique across projects: eipAddrs maps each to
	// "PROJECT/ID"; eipPools are the operator's pools (see Configure).
	eipAddrs map[netip.Addr]string
	eipPools []*ipam.Pool
	cfg      Config
}

// OwnerRef names what holds an allocation.
type OwnerRef struct {
	Kind string // "interface", "reserved", "service", "eip", ...
	Key  string // store key of the holder
}

type project struct {
	name       string
	networks   map[string]*Network
	subnets    map[string]*Subnet    // "REGION/NAME"
	instances  map[string]*Instance  // "ZONE/NAME"
	interfaces map[string]*Interface // ID
	templates  map[string]*InstanceTemplate
	nets       map[string]*netIndex // by network name
	byIP       map[netAddr]string   // (network, primary IP) -> interface ID
	eips       map[string]*EIP      // Alibaba EIPs by AllocationId (eip.go)
	// Network policy (route.go, firewall.go).
	routes    map[string]*Route         // static routes by name
	firewalls map[string]*Firewall      // firewall rules by name
	dynamic   map[string]*DynamicRoutes // learned routes by network name
	// Cloud Router and Cloud DNS (router.go, dnszone.go).
	routers  map[string]*Router  // "REGION/NAME"
	dnsZones map[string]*DNSZone // managed zones by name
	// Kubernetes clusters, nodes and service IPs (cluster.go); nil
	// until the project has a cluster.
	k8s *k8sIndex
}

// netIndex holds one network's ranges. Ranges of one network never
// overlap, so the longest-prefix match of an address is the one range that
// can contain it.
type netIndex struct {
	ranges *bart.Table[*rangeEntry]
}

type rangeEntry struct {
	subnet string // "REGION/NAME"
	name   string // secondary range name, "" for the primary range
	pool   *ipam.Pool
}

// NewState returns an empty State.
func NewState() *State {
	return &State{projects: map[string]*project{}, ownerIdx: map[OwnerRef]ipam.Owner{}, eipAddrs: map[netip.Addr]string{}}
}

func (s *State) proj(name string) *project {
	p := s.projects[name]
	if p == nil {
		p = &project{
			name:       name,
			networks:   map[string]*Network{},
			subnets:    map[string]*Subnet{},
			instances:  map[string]*Instance{},
			interfaces: map[string]*Interface{},
			templates:  map[string]*InstanceTemplate{},
			nets:       map[string]*netIndex{},
			byIP:       map[netAddr]string{},
			eips:       map[string]*EIP{},
			routes:     map[string]*Route{},
			firewalls:  map[string]*Firewall{},
			dynamic:    map[string]*DynamicRoutes{},
			routers:    map[string]*Router{},
			dnsZones:   map[string]*DNSZone{},
		}
		s.projects[name] = p
	}
	return p
}

func (s *State) owner(ref OwnerRef) ipam.Owner {
	if o, ok := s.ownerIdx[ref]; ok {
		return o
	}
	s.owners = append(s.owners, ref)
	o := ipam.Owner(len(s.owners)) // 0 is never used
	s.ownerIdx[ref] = o
	return o
}

// OwnerRef returns what an ipam owner id stands for.
func (s *State) OwnerRef(o ipam.Owner) OwnerRef {
	if o == 0 || int(o) > len(s.owners) {
		return OwnerRef{}
	}
	return s.owners[o-1]
}

// Store keys. They mirror GCE resource paths so that a key is also a
// readable name in error messages.
func NetworkKey(p, n string) string   { return "projects/" + p + "/global/networks/" + n }
func SubnetKey(p, r, n string) string { return "projects/" + p + "/regions/" + r + "/subnetworks/" + n }
func InstanceKey(p, z, n string) string {
	return "projects/" + p + "/zones/" + z + "/instances/" + n
}
func InterfaceKey(p, id string) string { return "projects/" + p + "/interfaces/" + id }
func TemplateKey(p, n string) string   { return "projects/" + p + "/global/instanceTemplates/" + n }
func EIPKey(p, id string) string       { return "projects/" + p + "/eips/" + id }

// holderName turns an owner into the name a user understands: the instance
// that has the interface, or the interface itself when detached.
func (s *State) holderName(o ipam.Owner) string {
	ref := s.OwnerRef(o)
	if ref.Kind == "interface" {
		// key: projects/P/interfaces/ID
		parts := strings.Split(ref.Key, "/")
		if len(parts) == 4 {
			if p := s.projects[parts[1]]; p != nil {
				if ifc := p.interfaces[parts[3]]; ifc != nil && ifc.Instance != "" {
					z, n, _ := strings.Cut(ifc.Instance, "/")
					return InstanceKey(parts[1], z, n)
				}
			}
		}
	}
	if ref.Kind == "reserved" {
		return "reserved addresses of " + ref.Key
	}
	return ref.Key
}

// Txn records a mutation's undo steps and the store changes it produced.
// A failed mutation calls Rollback and leaves State exactly as before.
type Txn struct {
	s       *State
	undo    []func()
	changes []Change
	seen    map[string]int
	// Now is the creation timestamp for new resources (RFC 3339).
	Now string
	// NewID returns a fresh random uint64 (resource ids, fingerprints).
	NewID func() uint64
}

// Change is one store write: Value is the new resource, or nil to delete.
type Change struct {
	Key   string
	Value any
}

// Begin starts a mutation.
func (s *State) Begin(now string, newID func() uint64) *Txn {
	return &Txn{s: s, seen: map[string]int{}, Now: now, NewID: newID}
}

// Rollback undoes every step of the transaction, newest first.
func (t *Txn) Rollback() {
	for i := len(t.undo) - 1; i >= 0; i-- {
		t.undo[i]()
	}
	t.undo, t.changes = nil, nil
}

// Changes returns the writes of the transaction, one per key (last value
// wins) in first-touch order.
func (t *Txn) Changes() []Change { return t.changes }

func (t *Txn) record(key string, v any) {
	if i, ok := t.seen[key]; ok {
		t.changes[i].Value = v
		return
	}
	t.seen[key] = len(t.changes)
	t.changes = append(t.changes, Change{Key: key, Value: v})
}

func (t *Txn) fingerprint() string {
	return fmt.Sprintf("%016x", t.NewID())
}

// putMap sets m[k]=v (or deletes when v is nil) and records the undo.
func putMap[K comparable, V any](t *Txn, m map[K]*V, k K, v *V) {
	old, had := m[k]
	if v == nil {
		delete(m, k)
	} else {
		m[k] = v
	}
	t.undo = append(t.undo, func() {
		if had {
			m[k] = old
		} else {
			delete(m, k)
		}
	})
}

func (t *Txn) putNetwork(p *project, n *Network) {
	putMap(t, p.networks, n.Name, n)
	t.record(NetworkKey(p.name, n.Name), n)
}

func (t *Txn) deleteNetwork(p *project, name string) {
	putMap[string, Network](t, p.networks, name, nil)
	t.record(NetworkKey(p.name, name), nil)
}

func (t *Txn) putSubnet(p *project, sn *Subnet) {
	putMap(t, p.subnets, sn.Region+"/"+sn.Name, sn)
	t.record(SubnetKey(p.name, sn.Region, sn.Name), sn)
}

func (t *Txn) deleteSubnet(p *project, region, name string) {
	putMap[string, Subnet](t, p.subnets, region+"/"+name, nil)
	t.record(SubnetKey(p.name, region, name), nil)
}

func (t *Txn) putInstance(p *project, in *Instance) {
	putMap(t, p.instances, in.Zone+"/"+in.Name, in)
	t.record(InstanceKey(p.name, in.Zone, in.Name), in)
}

func (t *Txn) deleteInstance(p *project, zone, name string) {
	putMap[string, Instance](t, p.instances, zone+"/"+name, nil)
	t.record(InstanceKey(p.name, zone, name), nil)
}

func (t *Txn) putInterface(p *project, ifc *Interface) {
	if old := p.interfaces[ifc.ID]; old != nil && (old.IP != ifc.IP || old.Network != ifc.Network) {
		t.setByIP(p, netAddr{old.Network, old.IP}, "")
	}
	putMap(t, p.interfaces, ifc.ID, ifc)
	t.setByIP(p, netAddr{ifc.Network, ifc.IP}, ifc.ID)
	t.record(InterfaceKey(p.name, ifc.ID), ifc)
}

func (t *Txn) deleteInterface(p *project, id string) {
	if old := p.interfaces[id]; old != nil {
		t.setByIP(p, netAddr{old.Network, old.IP}, "")
	}
	putMap[string, Interface](t, p.interfaces, id, nil)
	t.record(InterfaceKey(p.name, id), nil)
}

// netAddr keys the primary-IP index: unpeered networks of one project
// may reuse addresses.
type netAddr struct {
	network string
	addr    netip.Addr
}

func (t *Txn) setByIP(p *project, a netAddr, id string) {
	old, had := p.byIP[a]
	if id == "" {
		delete(p.byIP, a)
	} else {
		p.byIP[a] = id
	}
	t.undo = append(t.undo, func() {
		if had {
			p.byIP[a] = old
		} else {
			delete(p.byIP, a)
		}
	})
}

func (t *Txn) putTemplate(p *project, it *InstanceTemplate) {
	putMap(t, p.templates, it.Name, it)
	t.record(TemplateKey(p.name, it.Name), it)
}

func (t *Txn) deleteTemplate(p *project, name string) {
	putMap[string, InstanceTemplate](t, p.templates, name, nil)
	t.record(TemplateKey(p.name, name), nil)
}

// --- allocation helpers with undo ---

func (t *Txn) claim(pool *ipam.Pool, pfx netip.Prefix, o ipam.Owner) error {
	if err := pool.Claim(pfx, o); err != nil {
		return err
	}
	t.undo = append(t.undo, func() { _ = pool.Release(pfx) })
	return nil
}

func (t *Txn) allocate(pool *ipam.Pool, bits int, o ipam.Owner, rnd func(uint64) uint64) (netip.Prefix, error) {
	var pfx netip.Prefix
	var err error
	if rnd != nil {
		pfx, err = pool.AllocateRandom(bits, o, rnd)
	} else {
		pfx, err = pool.Allocate(bits, o)
	}
	if err != nil {
		return pfx, err
	}
	t.undo = append(t.undo, func() { _ = pool.Release(pfx) })
	return pfx, nil
}

func (t *Txn) release(pool *ipam.Pool, pfx netip.Prefix) {
	o, ok := pool.OwnerOf(pfx)
	if !ok {
		return
	}
	_ = pool.Release(pfx)
	// Undo re-claims the exact prefix, which also takes it back out of
	// the quarantine: a rolled-back release leaves no trace.
	t.undo = append(t.undo, func() { _ = pool.Claim(pfx, o) })
}

func (t *Txn) insertRange(ni *netIndex, pfx netip.Prefix, e *rangeEntry) {
	ni.ranges.Insert(pfx, e)
	t.undo = append(t.undo, func() { ni.ranges.Delete(pfx) })
}

func (t *Txn) deleteRange(ni *netIndex, pfx netip.Prefix) {
	e, ok := ni.ranges.Get(pfx)
	if !ok {
		return
	}
	ni.ranges.Delete(pfx)
	t.undo = append(t.undo, func() { ni.ranges.Insert(pfx, e) })
}

func (t *Txn) resizePool(ni *netIndex, oldPfx, newPfx netip.Prefix) error {
	e, ok := ni.ranges.Get(oldPfx)
	if !ok {
		return fmt.Errorf("range %s not indexed", oldPfx)
	}
	if err := e.pool.Resize(newPfx); err != nil {
		return err
	}
	ni.ranges.Delete(oldPfx)
	ni.ranges.Insert(newPfx, e)
	t.undo = append(t.undo, func() {
		ni.ranges.Delete(newPfx)
		_ = e.pool.Resize(oldPfx)
		ni.ranges.Insert(oldPfx, e)
	})
	return nil
}

// netIdx returns (creating) the index of a network.
func (p *project) netIdx(network string) *netIndex {
	ni := p.nets[network]
	if ni == nil {
		ni = &netIndex{ranges: &bart.Table[*rangeEntry]{}}
		p.nets[network] = ni
	}
	return ni
}

// overlapping returns the first indexed range of ni overlapping pfx.
func (ni *netIndex) overlapping(pfx netip.Prefix) (netip.Prefix, *rangeEntry, bool) {
	if ni == nil || !ni.ranges.OverlapsPrefix(pfx) {
		return netip.Prefix{}, nil, false
	}
	for q, e := range ni.ranges.Supernets(pfx) {
		return q, e, true
	}
	for q, e := range ni.ranges.Subnets(pfx) {
		return q, e, true
	}
	return netip.Prefix{}, nil, false
}

// rangeFor returns the range entry holding addr.
func (ni *netIndex) rangeFor(pfx netip.Prefix) (*rangeEntry, bool) {
	if ni == nil {
		return nil, false
	}
	q, e, ok := ni.ranges.LookupPrefixLPM(pfx)
	if !ok || !q.Contains(pfx.Addr()) || q.Bits() > pfx.Bits() {
		return nil, false
	}
	return e, true
}

// --- read API ---

// Projects lists project names that hold any resource.
func (s *State) Projects() []string {
	out := make([]string, 0, len(s.projects))
	for n := range s.projects {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

func sortedValues[V any](m map[string]*V, keep func(*V) bool) []*V {
	keys := make([]string, 0, len(m))
	for k, v := range m {
		if keep == nil || keep(v) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	out := make([]*V, len(keys))
	for i, k := range keys {
		out[i] = m[k]
	}
	return out
}

// Network returns a network or nil.
func (s *State) Network(p, name string) *Network {
	if pr := s.projects[p]; pr != nil {
		return pr.networks[name]
	}
	return nil
}

// Networks lists a project's networks by name.
func (s *State) Networks(p string) []*Network {
	if pr := s.projects[p]; pr != nil {
		return sortedValues(pr.networks, nil)
	}
	return nil
}

// Subnet returns a subnet or nil.
func (s *State) Subnet(p, region, name string) *Subnet {
	if pr := s.projects[p]; pr != nil {
		return pr.subnets[region+"/"+name]
	}
	return nil
}

// Subnets lists a project's subnets; region "" lists all regions.
func (s *State) Subnets(p, region string) []*Subnet {
	if pr := s.projects[p]; pr != nil {
		return sortedValues(pr.subnets, func(sn *Subnet) bool { return region == "" || sn.Region == region })
	}
	return nil
}

// SubnetsOfNetwork lists the subnets of one network.
func (s *State) SubnetsOfNetwork(p, network string) []*Subnet {
	if pr := s.projects[p]; pr != nil {
		return sortedValues(pr.subnets, func(sn *Subnet) bool { return sn.Network == network })
	}
	return nil
}

// Instance returns an instance or nil.
func (s *State) Instance(p, zone, name string) *Instance {
	if pr := s.projects[p]; pr != nil {
		return pr.instances[zone+"/"+name]
	}
	return nil
}

// Instances lists a project's instances; zone "" lists all zones.
func (s *State) Instances(p, zone string) []*Instance {
	if pr := s.projects[p]; pr != nil {
		return sortedValues(pr.instances, func(in *Instance) bool { return zone == "" || in.Zone == zone })
	}
	return nil
}

// Interface returns an interface or nil.
func (s *State) Interface(p, id string) *Interface {
	if pr := s.projects[p]; pr != nil {
		return pr.interfaces[id]
	}
	return nil
}

// Interfaces lists a project's interfaces sorted by ID.
func (s *State) Interfaces(p string) []*Interface {
	if pr := s.projects[p]; pr != nil {
		return sortedValues(pr.interfaces, nil)
	}
	return nil
}

// NICs returns an instance's interfaces in device order.
func (s *State) NICs(in *Instance) []*Interface {
	pr := s.projects[in.Project]
	if pr == nil {
		return nil
	}
	out := make([]*Interface, 0, len(in.NICs))
	for _, id := range in.NICs {
		if ifc := pr.interfaces[id]; ifc != nil {
			out = append(out, ifc)
		}
	}
	return out
}

// InterfaceByIP finds an interface of project p whose primary IP is a, in
// any network (the network with the smallest name wins when unpeered
// networks reuse the address; use InterfaceInNetwork to be exact).
func (s *State) InterfaceByIP(p string, a netip.Addr) *Interface {
	pr := s.projects[p]
	if pr == nil {
		return nil
	}
	for _, n := range sortedValues(pr.networks, nil) {
		if id, ok := pr.byIP[netAddr{n.Name, a}]; ok {
			return pr.interfaces[id]
		}
	}
	return nil
}

// InterfaceInNetwork finds the interface of a network whose primary IP is a.
func (s *State) InterfaceInNetwork(p, network string, a netip.Addr) *Interface {
	if pr := s.projects[p]; pr != nil {
		if id, ok := pr.byIP[netAddr{network, a}]; ok {
			return pr.interfaces[id]
		}
	}
	return nil
}

// Template returns an instance template or nil.
func (s *State) Template(p, name string) *InstanceTemplate {
	if pr := s.projects[p]; pr != nil {
		return pr.templates[name]
	}
	return nil
}

// Templates lists a project's instance templates.
func (s *State) Templates(p string) []*InstanceTemplate {
	if pr := s.projects[p]; pr != nil {
		return sortedValues(pr.templates, nil)
	}
	return nil
}

// RangeUse describes one range of a network and how full it is.
type RangeUse struct {
	Subnet    string // "REGION/NAME"
	RangeName string // "" for the primary range
	Range     netip.Prefix
	Allocated int
}

// Ranges lists every range of a network in address order.
func (s *State) Ranges(p, network string) []RangeUse {
	pr := s.projects[p]
	if pr == nil {
		return nil
	}
	ni := pr.nets[network]
	if ni == nil {
		return nil
	}
	var out []RangeUse
	for pfx, e := range ni.ranges.AllSorted() {
		out = append(out, RangeUse{Subnet: e.subnet, RangeName: e.name, Range: pfx, Allocated: e.pool.Len()})
	}
	return out
}

// Holder answers "who holds this address or range" in a network.
func (s *State) Holder(p, network string, pfx netip.Prefix) (netip.Prefix, OwnerRef, bool) {
	pr := s.projects[p]
	if pr == nil {
		return netip.Prefix{}, OwnerRef{}, false
	}
	e, ok := pr.nets[network].rangeFor(pfx)
	if !ok {
		return netip.Prefix{}, OwnerRef{}, false
	}
	q, o, ok := e.pool.Conflict(pfx)
	if !ok {
		return netip.Prefix{}, OwnerRef{}, false
	}
	return q, s.OwnerRef(o), true
}

// FreeBlocks reports how many more /bits blocks a subnet range can give.
func (s *State) FreeBlocks(p, region, subnet, rangeName string, bits int) (uint64, error) {
	pr := s.projects[p]
	if pr == nil {
		return 0, notFound("subnetwork", SubnetKey(p, region, subnet))
	}
	sn := pr.subnets[region+"/"+subnet]
	if sn == nil {
		return 0, notFound("subnetwork", SubnetKey(p, region, subnet))
	}
	pfx, err := sn.rangeNamed(rangeName)
	if err != nil {
		return 0, err
	}
	e, ok := pr.nets[sn.Network].ranges.Get(pfx)
	if !ok {
		return 0, fmt.Errorf("range %s of %s not indexed", pfx, sn.Name)
	}
	return e.pool.FreeBlocks(bits), nil
}

func (sn *Subnet) rangeNamed(name string) (netip.Prefix, error) {
	if name == "" {
		return sn.Range, nil
	}
	for _, r := range sn.Secondary {
		if r.Name == name {
			return r.Range, nil
		}
	}
	return netip.Prefix{}, &Error{Code: Invalid, Field: "subnetworkRangeName", Value: name,
		Reason: fmt.Sprintf("Secondary range '%s' not found in subnetwork '%s'.", name, sn.Name)}
}

func sortAliases(as []Alias) {
	slices.SortFunc(as, func(a, b Alias) int {
		if c := a.Range.Addr().Compare(b.Range.Addr()); c != 0 {
			return c
		}
		return cmp.Compare(a.Range.Bits(), b.Range.Bits())
	})
}

// State returns the state the transaction works on, for reads inside a
// mutation (the caller holds the write lock).
func (t *Txn) State() *State { return t.s }
