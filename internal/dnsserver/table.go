package dnsserver

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Instance is one VM as internal DNS sees it: only the nic0 primary address
// (and optionally nic0's IPv6 address) is published, never alias IPs or the
// addresses of other NICs.
type Instance struct {
	Project, Zone, Name string
	IP                  netip.Addr // nic0 primary IPv4
	IPv6                netip.Addr // optional nic0 IPv6
	Network             string     // network of nic0; "" = visible to every client
}

// RRSet is a Cloud DNS v1 resource record set.
type RRSet struct {
	Name    string   // fqdn with trailing dot
	Type    string   // "A", "AAAA", "CNAME", "TXT", "PTR", "SRV", "MX"
	TTL     uint32   // seconds
	RRDatas []string // Cloud DNS presentation format
}

// Zone is a Cloud DNS v1 managed private zone.
type Zone struct {
	Project, Name, DNSName string
	Networks               []string // visibility; empty = all networks
	RRSets                 []RRSet
}

// Snapshot is everything the server should serve.
type Snapshot struct {
	Instances []Instance
	Zones     []Zone
}

// Table is an immutable, pre-indexed view built from a Snapshot. It is safe
// for concurrent use and may be shared by several servers.
type Table struct {
	zones  map[string][]*zone // by lower-case apex; sorted by priority
	serial uint32
}

const (
	nsName         = "ns.aliasnet.internal."
	hostmaster     = "hostmaster.aliasnet.internal."
	maxTTL         = 1<<31 - 1
	instanceSuffix = "internal."
)

// vis says which client networks can see something.
type vis struct {
	all  bool
	nets []string // sorted, unique; meaningful only if !all
}

func (v *vis) visible(network string) bool {
	if v.all {
		return true
	}
	for _, n := range v.nets {
		if n == network {
			return true
		}
	}
	return false
}

func (v *vis) add(o vis) {
	if v.all {
		return
	}
	if o.all {
		v.all, v.nets = true, nil
		return
	}
	for _, n := range o.nets {
		if i, found := slices.BinarySearch(v.nets, n); !found {
			v.nets = slices.Insert(v.nets, i, n)
		}
	}
}

func visOf(network string) vis {
	if network == "" {
		return vis{all: true}
	}
	return vis{nets: []string{network}}
}

type rrset struct {
	typ   uint16
	vis   vis
	synth bool // TTL comes from Options.TTL; records are copied on answer
	rrs   []dns.RR
}

type node struct {
	sets []rrset // sorted by type
	vis  vis     // union over this node's sets and all its descendants
}

type zone struct {
	apex     string
	project  string // managed zones only
	name     string // managed zones only
	managed  bool
	explicit bool // managed with a Networks list
	vis      vis
	nodes    map[string]*node
}

// rank orders zones sharing an apex: explicit network lists first, then
// managed zones visible to all, then synthesised zones.
func (z *zone) rank() int {
	switch {
	case z.explicit:
		return 0
	case z.managed:
		return 1
	}
	return 2
}

func (z *zone) label() string {
	if z.managed {
		return fmt.Sprintf("zone %s/%s (%s)", z.project, z.name, z.apex)
	}
	return "zone " + z.apex
}

func (z *zone) node(name string) *node {
	n := z.nodes[name]
	if n == nil {
		n = &node{}
		z.nodes[name] = n
	}
	return n
}

// addSet adds rrs to the node at name, merging with an existing set of the
// same type and visibility, and makes name and every name between it and the
// apex exist (empty non-terminals) for v.
func (z *zone) addSet(name string, typ uint16, v vis, synth bool, rrs ...dns.RR) {
	n := z.node(name)
	merged := false
	for i := range n.sets {
		s := &n.sets[i]
		if s.typ == typ && s.vis.all == v.all && slices.Equal(s.vis.nets, v.nets) {
			s.rrs = append(s.rrs, rrs...)
			merged = true
			break
		}
	}
	if !merged {
		n.sets = append(n.sets, rrset{typ: typ, vis: v, synth: synth, rrs: rrs})
		slices.SortStableFunc(n.sets, func(a, b rrset) int { return cmp.Compare(a.typ, b.typ) })
	}
	for cur := name; ; {
		z.node(cur).vis.add(v)
		if cur == z.apex {
			break
		}
		cur = parent(cur)
	}
}

// parent returns the parent of a fully qualified name ("." for a TLD).
func parent(name string) string {
	if name == "." || name == "" {
		return "."
	}
	i, end := dns.NextLabel(name, 0)
	if end {
		return "."
	}
	return name[i:]
}

// lowerASCII lower-cases ASCII letters, returning s itself when it has none.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; c >= 'A' && c <= 'Z' {
					b[j] = c + 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// validLabel reports whether s is a lower-case RFC 1123 label.
func validLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// projectDomain turns a project ID into its DNS form: "example.com:proj"
// becomes "proj.example.com".
func projectDomain(p string) (string, bool) {
	p = lowerASCII(p)
	parts := []string{p}
	if dom, id, ok := strings.Cut(p, ":"); ok {
		parts = append([]string{id}, strings.Split(dom, ".")...)
	}
	for _, l := range parts {
		if !validLabel(l) {
			return "", false
		}
	}
	return strings.Join(parts, "."), true
}

// ZonalName returns INSTANCE.ZONE.c.PROJECT.internal. for inst (lower-case;
// inst is assumed valid, see Build).
func ZonalName(inst Instance) string {
	p, _ := projectDomain(inst.Project)
	return lowerASCII(inst.Name) + "." + lowerASCII(inst.Zone) + ".c." + p + "." + instanceSuffix
}

// GlobalName returns INSTANCE.c.PROJECT.internal. for inst (lower-case).
func GlobalName(inst Instance) string {
	p, _ := projectDomain(inst.Project)
	return lowerASCII(inst.Name) + ".c." + p + "." + instanceSuffix
}

var privateV4 = []netip.Prefix{
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
}

// reverseZone returns the reverse zone we serve for a (non-private) address:
// the /24 for IPv4, the /64 for IPv6.
func reverseZone(a netip.Addr) string {
	if a.Is4() {
		b := a.As4()
		return fmt.Sprintf("%d.%d.%d.in-addr.arpa.", b[2], b[1], b[0])
	}
	b := a.As16()
	var sb strings.Builder
	for i := 7; i >= 0; i-- {
		sb.WriteByte("0123456789abcdef"[b[i]&0xf])
		sb.WriteByte('.')
		sb.WriteByte("0123456789abcdef"[b[i]>>4])
		sb.WriteByte('.')
	}
	sb.WriteString("ip6.arpa.")
	return sb.String()
}

func defaultReverseZones() []string {
	z := []string{"10.in-addr.arpa.", "168.192.in-addr.arpa.", "c.f.ip6.arpa.", "d.f.ip6.arpa."}
	for i := 16; i <= 31; i++ {
		z = append(z, strconv.Itoa(i)+".172.in-addr.arpa.")
	}
	return z
}

// containingZone finds the synthesised reverse zone containing name.
func containingZone(zs map[string]*zone, name string) *zone {
	for cur := name; ; cur = parent(cur) {
		if z := zs[cur]; z != nil {
			return z
		}
		if cur == "." {
			return nil
		}
	}
}

type instKey struct{ project, zone, name string }
type ipKey struct {
	ip      netip.Addr
	network string
}

// Build validates s and indexes it. All problems are reported (joined);
// each names the instance or the zone, rrset name, type and rrdata.
func Build(s Snapshot) (*Table, error) {
	var errs []error
	t := &Table{zones: map[string][]*zone{}, serial: uint32(time.Now().Unix())}

	synth := map[string]*zone{}
	newSynth := func(apex string) *zone {
		z := synth[apex]
		if z == nil {
			z = &zone{apex: apex, vis: vis{all: true}, nodes: map[string]*node{}}
			z.node(apex).vis.add(vis{all: true})
			synth[apex] = z
		}
		return z
	}
	internal := newSynth(instanceSuffix)
	for _, apex := range defaultReverseZones() {
		newSynth(apex)
	}

	insts := slices.Clone(s.Instances)
	slices.SortStableFunc(insts, func(a, b Instance) int {
		return cmp.Or(cmp.Compare(a.Project, b.Project), cmp.Compare(a.Name, b.Name), cmp.Compare(a.Zone, b.Zone))
	})
	seen := map[instKey]bool{}
	seenIP := map[ipKey]string{}
	for _, in := range insts {
		id := fmt.Sprintf("instance %s/%s/%s", in.Project, in.Zone, in.Name)
		_, okP := projectDomain(in.Project)
		if !okP || !validLabel(lowerASCII(in.Zone)) || !validLabel(lowerASCII(in.Name)) {
			errs = append(errs, fmt.Errorf("%s: project, zone and name must be DNS labels (a-z, 0-9, '-', 1-63 chars)", id))
			continue
		}
		k := instKey{lowerASCII(in.Project), lowerASCII(in.Zone), lowerASCII(in.Name)}
		if seen[k] {
			errs = append(errs, fmt.Errorf("%s: duplicate instance name in project and zone", id))
			continue
		}
		seen[k] = true
		ip4, ip6 := in.IP.Unmap(), in.IPv6
		if ip4.IsValid() && !ip4.Is4() {
			errs = append(errs, fmt.Errorf("%s: IP %s: must be IPv4 (use IPv6 for nic0's IPv6 address)", id, in.IP))
			continue
		}
		if ip6.IsValid() && (!ip6.Is6() || ip6.Is4In6()) {
			errs = append(errs, fmt.Errorf("%s: IPv6 %s: must be an IPv6 address", id, in.IPv6))
			continue
		}
		if !ip4.IsValid() && !ip6.IsValid() {
			errs = append(errs, fmt.Errorf("%s: no nic0 address (IP and IPv6 both unset)", id))
			continue
		}
		if ip6.Zone() != "" {
			ip6 = ip6.WithZone("")
		}
		zonal, global := ZonalName(in), GlobalName(in)
		v := visOf(in.Network)
		for _, a := range []netip.Addr{ip4, ip6} {
			if !a.IsValid() {
				continue
			}
			ik := ipKey{a, in.Network}
			if other, dup := seenIP[ik]; dup {
				errs = append(errs, fmt.Errorf("%s: address %s already used by %s in network %q", id, a, other, in.Network))
				continue
			}
			seenIP[ik] = id
			var fwd dns.RR
			if a.Is4() {
				fwd = &dns.A{Hdr: dns.RR_Header{Rrtype: dns.TypeA, Class: dns.ClassINET}, A: net.IP(a.AsSlice())}
			} else {
				fwd = &dns.AAAA{Hdr: dns.RR_Header{Rrtype: dns.TypeAAAA, Class: dns.ClassINET}, AAAA: net.IP(a.AsSlice())}
			}
			for _, name := range []string{zonal, global} {
				rr := dns.Copy(fwd)
				rr.Header().Name = name
				internal.addSet(name, fwd.Header().Rrtype, v, true, rr)
			}
			rev, _ := dns.ReverseAddr(a.String())
			rz := containingZone(synth, rev)
			if rz == nil {
				rz = newSynth(reverseZone(a))
			}
			rz.addSet(rev, dns.TypePTR, v, true, &dns.PTR{
				Hdr: dns.RR_Header{Name: rev, Rrtype: dns.TypePTR, Class: dns.ClassINET}, Ptr: zonal})
		}
	}
	for _, z := range synth {
		t.zones[z.apex] = append(t.zones[z.apex], z)
	}

	seenZone := map[[2]string]bool{}
	for _, mz := range s.Zones {
		z, zerrs := buildZone(mz)
		errs = append(errs, zerrs...)
		if z == nil {
			continue
		}
		key := [2]string{mz.Project, mz.Name}
		if seenZone[key] {
			errs = append(errs, fmt.Errorf("%s: duplicate zone", z.label()))
			continue
		}
		seenZone[key] = true
		conflict := false
		for _, o := range t.zones[z.apex] {
			if o.managed && overlaps(o, z) {
				errs = append(errs, fmt.Errorf("%s: visibility overlaps %s with the same dnsName", z.label(), o.label()))
				conflict = true
				break
			}
		}
		if !conflict {
			t.zones[z.apex] = append(t.zones[z.apex], z)
		}
	}
	for _, zs := range t.zones {
		slices.SortStableFunc(zs, func(a, b *zone) int {
			return cmp.Or(cmp.Compare(a.rank(), b.rank()), cmp.Compare(a.project, b.project), cmp.Compare(a.name, b.name))
		})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return t, nil
}

// overlaps reports whether two managed zones would both be chosen for some
// client: both visible to all, or both listing a common network.
func overlaps(a, b *zone) bool {
	if a.explicit != b.explicit {
		return false
	}
	if !a.explicit {
		return true
	}
	for _, n := range a.vis.nets {
		if b.vis.visible(n) {
			return true
		}
	}
	return false
}

func buildZone(mz Zone) (*zone, []error) {
	id := fmt.Sprintf("zone %s/%s (%s)", mz.Project, mz.Name, mz.DNSName)
	if mz.Name == "" {
		return nil, []error{fmt.Errorf("%s: name: must not be empty", id)}
	}
	apex, err := checkDNSName(mz.DNSName)
	if err != nil {
		return nil, []error{fmt.Errorf("%s: dnsName %q: %w", id, mz.DNSName, err)}
	}
	z := &zone{apex: apex, project: mz.Project, name: mz.Name, managed: true, nodes: map[string]*node{}}
	if len(mz.Networks) == 0 {
		z.vis.all = true
	} else {
		z.explicit = true
		for _, n := range mz.Networks {
			if n == "" {
				return nil, []error{fmt.Errorf("%s: networks: empty network name", id)}
			}
			z.vis.add(vis{nets: []string{n}})
		}
	}
	z.node(apex).vis.add(vis{all: true})

	var errs []error
	type nt struct {
		name string
		typ  uint16
	}
	seen := map[nt]bool{}
	for _, set := range mz.RRSets {
		rrs, err := parseRRSet(set, apex)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: rrset %s %s: %w", id, set.Name, set.Type, err))
			continue
		}
		name, typ := rrs[0].Header().Name, rrs[0].Header().Rrtype
		if seen[nt{name, typ}] {
			errs = append(errs, fmt.Errorf("%s: rrset %s %s: duplicate rrset", id, set.Name, set.Type))
			continue
		}
		seen[nt{name, typ}] = true
		z.addSet(name, typ, vis{all: true}, false, rrs...)
	}
	for name, n := range z.nodes {
		hasCNAME := slices.ContainsFunc(n.sets, func(s rrset) bool { return s.typ == dns.TypeCNAME })
		if hasCNAME && len(n.sets) > 1 {
			errs = append(errs, fmt.Errorf("%s: rrset %s CNAME: a CNAME cannot coexist with other rrsets at the same name", id, name))
		}
	}
	return z, errs
}

// checkDNSName validates a zone dnsName and returns it lower-cased.
func checkDNSName(s string) (string, error) {
	if s == "" {
		return "", errors.New("must not be empty")
	}
	if !dns.IsFqdn(s) {
		return "", errors.New("must be fully qualified (end with '.')")
	}
	if _, ok := dns.IsDomainName(s); !ok {
		return "", errors.New("is not a valid domain name")
	}
	if strings.ContainsAny(s, " \t\r\n\\\"();$@") {
		return "", errors.New("contains characters not allowed in a name")
	}
	return lowerASCII(s), nil
}
