package netpolicy

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/gaissmai/bart"

	"github.com/aliasnet/aliasnet/internal/model"
)

// Names of GCE's implied rules (GCE shows them without a name).
const (
	ImpliedDenyIngress = "implied-deny-all-ingress"
	ImpliedAllowEgress = "implied-allow-all-egress"
	ImpliedPriority    = 65535
)

// rule is a compiled, enabled firewall rule.
type rule struct {
	name       string
	priority   int
	deny       bool
	implied    bool
	dir        string
	protos     []model.ProtoMatch
	srcRanges  []netip.Prefix
	srcTags    []string
	dstRanges  []netip.Prefix
	targetTags []string
	// src and dst are the address sets a packet must be in. For INGRESS,
	// src is sourceRanges ∪ the primary IPs of instances with a source
	// tag; an empty set with any=true matches everything.
	src, dst pset
	// tagIPs are the /32s (/128s) that sourceTags contributed.
	tagIPs map[netip.Addr]string // -> "instance tagged T"
}

// pset is a set of prefixes: a short list scanned linearly, or a bart
// table when larger.
type pset struct {
	any    bool
	small  []netip.Prefix
	big    *bart.Lite
	prefix []netip.Prefix // every prefix, for rendering and indexing
}

func newPset(ps []netip.Prefix, emptyIsAny bool) pset {
	s := pset{prefix: ps}
	if len(ps) == 0 {
		s.any = emptyIsAny
		return s
	}
	if len(ps) <= 8 {
		s.small = ps
		return s
	}
	s.big = &bart.Lite{}
	for _, p := range ps {
		s.big.Insert(p)
	}
	return s
}

func (s *pset) has(a netip.Addr) bool {
	if s.any {
		return true
	}
	if s.big != nil {
		return s.big.Lookup(a)
	}
	for _, p := range s.small {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// matchProto reports whether proto/port matches one of the rule's entries.
func (r *rule) matchProto(proto uint8, port uint16) bool {
	for i := range r.protos {
		if r.protos[i].Matches(proto, port) {
			return true
		}
	}
	return false
}

// precedence orders rules: lowest priority number first; at equal
// priority deny before allow; implied rules after user rules; then name.
func precedence(a, b *rule) int {
	if c := cmp.Compare(a.priority, b.priority); c != 0 {
		return c
	}
	if a.deny != b.deny {
		if a.deny {
			return -1
		}
		return 1
	}
	if a.implied != b.implied {
		if a.implied {
			return 1
		}
		return -1
	}
	return cmp.Compare(a.name, b.name)
}

// netFirewall is one network's compiled rules and the rule sets of its
// target groups.
type netFirewall struct {
	nw         *netw
	rules      [2][]*rule // [ingress, egress], precedence order
	targetTags map[string]bool
	// byTag lists, per direction, the positions in rules of the rules
	// targeting a tag; untagged the positions of rules targeting all.
	byTag    [2]map[string][]int
	untagged [2][]int
	sets     map[string]*[2]*ruleSet
	implied  [2]*rule
	nextID   int
}

const (
	dirIn  = 0
	dirOut = 1
)

var any4, any6 = netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")

func compileFirewall(nw *netw, all []*model.Firewall) *netFirewall {
	fw := &netFirewall{nw: nw, targetTags: map[string]bool{}, sets: map[string]*[2]*ruleSet{}}
	// Primary IPs by tag, in this network only: source tags never match
	// alias IPs, nor instances of peered networks.
	tagIPs := map[string][]netip.Addr{}
	for _, f := range nw.ifaces {
		if f.inst == nil || !f.ip.IsValid() {
			continue
		}
		for _, t := range f.inst.tags {
			tagIPs[t] = append(tagIPs[t], f.ip)
		}
	}
	for _, m := range all {
		if m.Project != nw.project || m.Network != nw.name || m.Disabled {
			continue
		}
		r := &rule{name: m.Name, priority: m.Priority, deny: m.Deny(), dir: m.Direction,
			srcRanges: m.SourceRanges, srcTags: m.SourceTags, dstRanges: m.DestinationRanges, targetTags: m.TargetTags}
		ok := true
		for i, p := range m.Protocols() {
			pm, err := model.CompileProtocol(p, fmt.Sprintf("[%d]", i))
			if err != nil {
				ok = false // stored rules were validated; skip a corrupt one
				break
			}
			r.protos = append(r.protos, pm)
		}
		if !ok {
			continue
		}
		d := dirIn
		if m.Direction == model.Egress {
			d = dirOut
		}
		if d == dirIn {
			srcs := slices.Clone(m.SourceRanges)
			if len(m.SourceTags) > 0 {
				r.tagIPs = map[netip.Addr]string{}
				for _, t := range m.SourceTags {
					for _, a := range tagIPs[t] {
						if _, dup := r.tagIPs[a]; !dup {
							r.tagIPs[a] = t
							srcs = append(srcs, netip.PrefixFrom(a, a.BitLen()))
						}
					}
				}
			}
			r.src = newPset(srcs, false)
			r.dst = newPset(m.DestinationRanges, true)
		} else {
			r.src = newPset(m.SourceRanges, true)
			r.dst = newPset(m.DestinationRanges, false)
		}
		for _, t := range m.TargetTags {
			fw.targetTags[t] = true
		}
		fw.rules[d] = append(fw.rules[d], r)
	}
	for d := range fw.rules {
		slices.SortFunc(fw.rules[d], precedence)
	}
	anyProto := []model.ProtoMatch{{All: true}}
	both := []netip.Prefix{any4, any6}
	fw.implied[dirIn] = &rule{name: ImpliedDenyIngress, priority: ImpliedPriority, deny: true, implied: true, dir: model.Ingress,
		protos: anyProto, srcRanges: both, src: pset{any: true, prefix: both}, dst: pset{any: true}}
	fw.implied[dirOut] = &rule{name: ImpliedAllowEgress, priority: ImpliedPriority, implied: true, dir: model.Egress,
		protos: anyProto, dstRanges: both, src: pset{any: true}, dst: pset{any: true, prefix: both}}
	return fw
}

// setsFor returns the ingress and egress rule sets of an instance with
// tags. Instances whose tags select the same rules share sets.
func (fw *netFirewall) setsFor(tags []string) (*ruleSet, *ruleSet) {
	var rel []string
	for _, t := range tags {
		if fw.targetTags[t] {
			rel = append(rel, t)
		}
	}
	slices.Sort(rel)
	rel = slices.Compact(rel)
	key := strings.Join(rel, ",")
	if s := fw.sets[key]; s != nil {
		return s[0], s[1]
	}
	var out [2]*ruleSet
	for d := range fw.rules {
		if fw.byTag[d] == nil {
			fw.byTag[d] = map[string][]int{}
			for i, r := range fw.rules[d] {
				if len(r.targetTags) == 0 {
					fw.untagged[d] = append(fw.untagged[d], i)
				}
				for _, t := range r.targetTags {
					fw.byTag[d][t] = append(fw.byTag[d][t], i)
				}
			}
		}
		pos := slices.Clone(fw.untagged[d])
		for _, t := range rel {
			pos = append(pos, fw.byTag[d][t]...)
		}
		slices.Sort(pos)
		pos = slices.Compact(pos)
		rs := make([]*rule, len(pos))
		for k, i := range pos {
			rs[k] = fw.rules[d][i]
		}
		out[d] = newRuleSet(d, rs, fw.implied[d])
		out[d].id = fw.nextID
		out[d].tags = rel
		fw.nextID++
	}
	fw.sets[key] = &out
	return out[0], out[1]
}

// ruleSet is the ordered rules of one direction that apply to a group of
// instances, indexed so that evaluating a packet costs one bart lookup
// plus a scan of a short contiguous array, whatever the number of rules.
//
// The indexed side is the source set for INGRESS and the destination set
// for EGRESS. For every prefix P of that side, index[P] lists (by
// precedence) the match entries of every rule having P or a prefix
// containing P; a lookup of an address therefore returns every rule whose
// indexed side contains it. Rules whose indexed side is everything
// (0.0.0.0/0, ::/0) are kept apart in wild, by protocol, so that they are
// not copied into every entry. A match entry is one (protocol, port range)
// of a rule, stored inline so that the scan touches no rule until its
// protocol and port match.
type ruleSet struct {
	id      int
	dir     int
	tags    []string
	rules   []*rule
	implied *rule
	index   *bart.Table[[]ment]
	// wild[wildOf[proto]] holds the entries of wild rules matching proto;
	// wild[0] those of rules for every protocol ("all").
	wildOf [256]uint16
	wild   []portIndex
}

// portIndex splits a protocol's wild entries by destination port: full
// holds the entries covering every port; segment k of bounds (ports
// bounds[k] to bounds[k+1]-1) holds the other entries covering it. Each
// list is ordered by rule precedence.
type portIndex struct {
	full   []ment
	bounds []uint16
	segs   [][]ment
}

func newPortIndex(ms []ment) portIndex {
	var pi portIndex
	var part []ment
	cut := map[uint32]bool{0: true}
	for _, m := range ms {
		if m.lo == 0 && m.hi == 65535 {
			pi.full = append(pi.full, m)
			continue
		}
		part = append(part, m)
		cut[uint32(m.lo)] = true
		cut[uint32(m.hi)+1] = true
	}
	if len(part) == 0 {
		return pi
	}
	for c := range cut {
		if c <= 65535 {
			pi.bounds = append(pi.bounds, uint16(c))
		}
	}
	slices.Sort(pi.bounds)
	pi.segs = make([][]ment, len(pi.bounds))
	for k, lo := range pi.bounds {
		for _, m := range part {
			if m.lo <= lo && m.hi >= lo {
				pi.segs[k] = append(pi.segs[k], m)
			}
		}
	}
	return pi
}

// seg returns the entries (not covering every port) that cover port.
func (pi *portIndex) seg(port uint16) []ment {
	lo, hi := 0, len(pi.bounds)-1
	if hi < 0 {
		return nil
	}
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if pi.bounds[mid] <= port {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return pi.segs[lo]
}

// ment is one (protocol, port range) of rule rules[idx].
type ment struct {
	idx    int32
	proto  uint8
	all    bool
	lo, hi uint16
}

func (m *ment) matches(proto uint8, port uint16) bool {
	return (m.all || m.proto == proto) && port >= m.lo && port <= m.hi
}

// entries expands rule i into its match entries. A protocol without a
// port list (or without ports at all) covers ports 0-65535, so a packet's
// port never excludes it.
func entries(i int, r *rule) []ment {
	var out []ment
	for _, pm := range r.protos {
		if len(pm.Ports) == 0 {
			out = append(out, ment{idx: int32(i), proto: pm.Number, all: pm.All, lo: 0, hi: 65535})
			continue
		}
		for _, pr := range pm.Ports {
			out = append(out, ment{idx: int32(i), proto: pm.Number, lo: pr.Lo, hi: pr.Hi})
		}
	}
	return out
}

func newRuleSet(dir int, rs []*rule, implied *rule) *ruleSet {
	s := &ruleSet{dir: dir, rules: rs, implied: implied, index: &bart.Table[[]ment]{}}
	byPfx := map[netip.Prefix][]int{}
	var wild []int
	for i, r := range rs {
		side := r.src
		if dir == dirOut {
			side = r.dst
		}
		isWild := side.any
		for _, p := range side.prefix {
			if p.Bits() == 0 {
				isWild = true
				continue
			}
			if l := byPfx[p]; len(l) == 0 || l[len(l)-1] != i {
				byPfx[p] = append(l, i)
			}
		}
		if isWild {
			wild = append(wild, i)
		}
	}
	pfxs := make([]netip.Prefix, 0, len(byPfx))
	for p := range byPfx {
		pfxs = append(pfxs, p)
	}
	slices.SortFunc(pfxs, func(a, b netip.Prefix) int {
		return cmp.Or(cmp.Compare(a.Bits(), b.Bits()), a.Addr().Compare(b.Addr()))
	})
	for _, p := range pfxs {
		var own []ment
		for _, i := range byPfx[p] {
			own = append(own, entries(i, rs[i])...)
		}
		if _, parent, ok := s.index.LookupPrefixLPM(p); ok {
			own = mergeEntries(parent, own)
		}
		s.index.Insert(p, slices.Clip(own))
	}
	// Wild rules by protocol.
	var protos []uint8
	seen := map[uint8]bool{}
	for _, i := range wild {
		for _, pm := range rs[i].protos {
			if !pm.All && !seen[pm.Number] {
				seen[pm.Number] = true
				protos = append(protos, pm.Number)
			}
		}
	}
	slices.Sort(protos)
	lists := make([][]ment, 1+len(protos))
	for k, p := range protos {
		s.wildOf[p] = uint16(k + 1)
	}
	for _, i := range wild {
		for _, m := range entries(i, rs[i]) {
			if m.all {
				for k := range lists {
					lists[k] = append(lists[k], m)
				}
				continue
			}
			if k := s.wildOf[m.proto]; k != 0 {
				lists[k] = append(lists[k], m)
			}
		}
	}
	s.wild = make([]portIndex, len(lists))
	for k, l := range lists {
		s.wild[k] = newPortIndex(l)
	}
	return s
}

// mergeEntries merges two entry lists ordered by rule index; a rule in
// both keeps the entries of a only.
func mergeEntries(a, b []ment) []ment {
	out := make([]ment, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j >= len(b) || (i < len(a) && a[i].idx < b[j].idx):
			out = append(out, a[i])
			i++
		case i >= len(a) || b[j].idx < a[i].idx:
			out = append(out, b[j])
			j++
		default:
			idx := a[i].idx
			for i < len(a) && a[i].idx == idx {
				out = append(out, a[i])
				i++
			}
			for j < len(b) && b[j].idx == idx {
				j++
			}
		}
	}
	return out
}

// eval returns the rule that decides a packet: the first rule, in
// precedence order, whose addresses, protocol and port match; the implied
// rule when none does (or when it takes precedence). Each candidate list
// is ordered by precedence, so the first full match of each list is that
// list's best, and a later list is only scanned below the best so far.
func (s *ruleSet) eval(src, dst netip.Addr, proto uint8, port uint16) *rule {
	key, other := src, dst
	if s.dir == dirOut {
		key, other = dst, src
	}
	const none = int32(1<<31 - 1)
	best := none
	if cands, ok := s.index.Lookup(key); ok {
		best = s.first(cands, best, false, key, other, proto, port)
	}
	w := &s.wild[s.wildOf[proto]]
	best = s.first(w.seg(port), best, true, key, other, proto, port)
	best = s.first(w.full, best, true, key, other, proto, port)
	if best == none {
		return s.implied
	}
	return s.orImplied(s.rules[best])
}

// first returns the rule index of the first entry of ms below limit that
// matches the packet, or limit. checkKey: the entry comes from a wild list
// and the indexed side must still be checked (0.0.0.0/0 holds no IPv6).
func (s *ruleSet) first(ms []ment, limit int32, checkKey bool, key, other netip.Addr, proto uint8, port uint16) int32 {
	for k := range ms {
		m := &ms[k]
		if m.idx >= limit {
			break
		}
		if !m.matches(proto, port) {
			continue
		}
		r := s.rules[m.idx]
		ks, os := &r.src, &r.dst
		if s.dir == dirOut {
			ks, os = &r.dst, &r.src
		}
		if (checkKey && !ks.has(key)) || !os.has(other) {
			continue
		}
		return m.idx
	}
	return limit
}

// orImplied returns the implied rule instead of r when it takes
// precedence: an allow at priority 65535 loses to the implied deny.
func (s *ruleSet) orImplied(r *rule) *rule {
	if precedence(s.implied, r) < 0 {
		return s.implied
	}
	return r
}

// evalLinear is the reference evaluation (every rule in order); tests check
// eval against it.
func (s *ruleSet) evalLinear(src, dst netip.Addr, proto uint8, port uint16) *rule {
	for _, r := range s.rules {
		if r.matchProto(proto, port) && r.src.has(src) && r.dst.has(dst) {
			return s.orImplied(r)
		}
	}
	return s.implied
}

// explain says why r matched a packet, for Trace.
func (r *rule) explain(src, dst netip.Addr, proto uint8, port uint16) string {
	var parts []string
	action := "allows"
	if r.deny {
		action = "denies"
	}
	if r.implied {
		if r.deny {
			return "no rule of the network allows or denies this packet for the instance: the implied rule (priority 65535) denies all ingress"
		}
		return "no rule of the network allows or denies this packet for the instance: the implied rule (priority 65535) allows all egress"
	}
	parts = append(parts, fmt.Sprintf("%s rule '%s' (priority %d) %s it", strings.ToLower(r.dir), r.name, r.priority, action))
	if r.dir == model.Ingress {
		if t, ok := r.tagIPs[src]; ok && !inAny(r.srcRanges, src) {
			parts = append(parts, fmt.Sprintf("source %s is the primary IP of an instance tagged '%s' (sourceTags)", src, t))
		} else if p, ok := firstContaining(r.srcRanges, src); ok {
			parts = append(parts, fmt.Sprintf("source %s is in sourceRanges %s", src, p))
		}
	} else if len(r.srcRanges) > 0 {
		p, _ := firstContaining(r.srcRanges, src)
		parts = append(parts, fmt.Sprintf("source %s is in sourceRanges %s", src, p))
	}
	if len(r.dstRanges) > 0 {
		p, _ := firstContaining(r.dstRanges, dst)
		parts = append(parts, fmt.Sprintf("destination %s is in destinationRanges %s", dst, p))
	}
	for _, pm := range r.protos {
		if pm.Matches(proto, port) {
			parts = append(parts, "protocol matches "+protoString(pm))
			break
		}
	}
	if len(r.targetTags) > 0 {
		parts = append(parts, "targetTags "+strings.Join(r.targetTags, ","))
	} else {
		parts = append(parts, "applies to all instances of the network")
	}
	return strings.Join(parts, "; ")
}

func protoString(pm model.ProtoMatch) string {
	if pm.All {
		return "all"
	}
	s := model.ProtocolName(pm.Number)
	if len(pm.Ports) > 0 {
		ps := make([]string, len(pm.Ports))
		for i, p := range pm.Ports {
			ps[i] = p.String()
		}
		s += ":" + strings.Join(ps, ",")
	}
	return s
}

func inAny(ps []netip.Prefix, a netip.Addr) bool {
	_, ok := firstContaining(ps, a)
	return ok
}

func firstContaining(ps []netip.Prefix, a netip.Addr) (netip.Prefix, bool) {
	for _, p := range ps {
		if p.Contains(a) {
			return p, true
		}
	}
	return netip.Prefix{}, false
}
