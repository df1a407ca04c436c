package fabric

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netns"
	"go4.org/netipx"
)

// The nftables layout of a router (table ip aliasnet):
//
//	map spoof   { type ifname : verdict }  port -> jump sp_<port>
//	map egress  { type ifname : verdict }  port -> jump eg_<hash>
//	map dstck   { type ifname : verdict }  port -> jump dp_<port>
//	map ingress { type ifname : verdict }  port -> jump in_<hash>
//	set as_<port> { type ipv4_addr; flags interval }  primary /32 + alias ranges
//	set s_<hash>  { type ipv4_addr; flags interval }  a firewall rule's sources or destinations
//
//	chain forward { type filter hook forward priority filter; policy accept;
//	    iifname vmap @spoof                 # anti-spoofing (ports without canIpForward)
//	    ct state established,related accept # stateful firewall
//	    iifname vmap @egress                # sender's egress rules: drop, or return = allowed
//	    oifname vmap @dstck                 # destination check (ports without canIpForward)
//	    oifname vmap @ingress               # receiver's ingress rules: accept or drop
//	    oifname "igw0" counter accept       # to the internet gateway
//	}
//	chain sp_<port> { ip saddr != @as_<port> counter drop }   # one rule per interface
//	chain dp_<port> { ip daddr != @as_<port> counter drop }
//	chain eg_<hash> / in_<hash> { the compiled firewall rules, first match decides;
//	                              in_ ends with the implied deny }
//
// Per packet this is a fixed number of hash lookups (the vmaps) plus one
// interval-set lookup per address check: the cost grows neither with the
// number of aliases (they are set elements) nor with the number of
// interfaces (vmap keys). Firewall chains are named by a hash of their
// content, so a changed rule list is a new chain swapped in by a map
// update in the same transaction.

const (
	mapSpoof   = "spoof"
	mapEgress  = "egress"
	mapDstck   = "dstck"
	mapIngress = "ingress"
	// nftBatchBytes bounds one nftables transaction (the netlink socket's
	// send buffer is ~208 KiB); larger changes are split.
	nftBatchBytes = 120 << 10
	// elemsPerMsg bounds the elements of one NEWSETELEM message (its
	// attributes have 16-bit lengths).
	elemsPerMsg = 1000
)

func ifname(n string) []byte {
	b := make([]byte, 16)
	copy(b, n)
	return b
}

func (r *Router) set(name string) *nftables.Set {
	return &nftables.Set{Table: r.tbl, Name: name}
}

func (r *Router) mapSet(name string) *nftables.Set {
	return &nftables.Set{Table: r.tbl, Name: name, IsMap: true, KeyType: nftables.TypeIFName, DataType: nftables.TypeVerdict}
}

func (r *Router) chain(name string) *nftables.Chain { return &nftables.Chain{Name: name, Table: r.tbl} }

// nftBatch queues nftables messages and flushes them in transactions of
// bounded size.
type nftBatch struct {
	r     *Router
	bytes int
	n     int // flushes
}

func (b *nftBatch) add(bytes int) error {
	b.bytes += bytes
	if b.bytes >= nftBatchBytes {
		return b.flush()
	}
	return nil
}

func (b *nftBatch) flush() error {
	if b.bytes == 0 {
		return nil
	}
	b.bytes = 0
	b.n++
	if err := b.r.nft.Flush(); err != nil {
		return fmt.Errorf("fabric: nftables: %w", err)
	}
	return nil
}

func intervalElems(rs []netipx.IPRange) []nftables.SetElement {
	out := make([]nftables.SetElement, 0, 2*len(rs))
	for _, rg := range rs {
		from := rg.From().As4()
		out = append(out, nftables.SetElement{Key: from[:]})
		if to := rg.To(); to != netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
			end := to.Next().As4()
			out = append(out, nftables.SetElement{Key: end[:], IntervalEnd: true})
		}
	}
	return out
}

func (b *nftBatch) setElems(s *nftables.Set, elems []nftables.SetElement, del bool) error {
	for len(elems) > 0 {
		n := min(len(elems), elemsPerMsg)
		var err error
		if del {
			err = b.r.nft.SetDeleteElements(s, elems[:n])
		} else {
			err = b.r.nft.SetAddElements(s, elems[:n])
		}
		if err != nil {
			return fmt.Errorf("fabric: set %s elements: %w", s.Name, err)
		}
		if err := b.add(64 + 28*n); err != nil {
			return err
		}
		elems = elems[n:]
	}
	return nil
}

func (b *nftBatch) addIntervalSet(name string, rs []netipx.IPRange) error {
	s := &nftables.Set{Table: b.r.tbl, Name: name, KeyType: nftables.TypeIPAddr, Interval: true}
	if err := b.r.nft.AddSet(s, nil); err != nil {
		return fmt.Errorf("fabric: set %s: %w", name, err)
	}
	if err := b.add(200); err != nil {
		return err
	}
	return b.setElems(s, intervalElems(rs), false)
}

func (b *nftBatch) mapElem(m, port, chain string, del bool) error {
	e := nftables.SetElement{Key: ifname(port), VerdictData: &expr.Verdict{Kind: expr.VerdictJump, Chain: chain}}
	var err error
	if del {
		err = b.r.nft.SetDeleteElements(b.r.mapSet(m), []nftables.SetElement{{Key: ifname(port)}})
	} else {
		err = b.r.nft.SetAddElements(b.r.mapSet(m), []nftables.SetElement{e})
	}
	if err != nil {
		return fmt.Errorf("fabric: map %s element %s: %w", m, port, err)
	}
	return b.add(128)
}

func loadAddr(dst bool) expr.Any {
	off := uint32(12)
	if dst {
		off = 16
	}
	return &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: 4}
}

func vmapRule(key expr.MetaKey, m string) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Lookup{SourceRegister: 1, SetName: m, DestRegister: 0, IsDestRegSet: true},
	}
}

// resetNft replaces the fabric's table with an empty skeleton in one
// transaction.
func (r *Router) resetNft() error {
	if t, err := r.nft.ListTableOfFamily(NFTTable, nftables.TableFamilyIPv4); err == nil && t != nil {
		r.nft.DelTable(t)
	}
	r.nft.AddTable(r.tbl)
	for _, m := range []string{mapSpoof, mapEgress, mapDstck, mapIngress} {
		if err := r.nft.AddSet(r.mapSet(m), nil); err != nil {
			return fmt.Errorf("fabric: map %s: %w", m, err)
		}
	}
	accept := nftables.ChainPolicyAccept
	fwd := r.nft.AddChain(&nftables.Chain{Name: "forward", Table: r.tbl, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	add := func(ex ...expr.Any) { r.nft.AddRule(&nftables.Rule{Table: r.tbl, Chain: fwd, Exprs: ex}) }
	add(vmapRule(expr.MetaKeyIIFNAME, mapSpoof)...)
	add(&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED),
			Xor:  binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0, 0, 0, 0}},
		&expr.Verdict{Kind: expr.VerdictAccept})
	add(vmapRule(expr.MetaKeyIIFNAME, mapEgress)...)
	add(vmapRule(expr.MetaKeyOIFNAME, mapDstck)...)
	add(vmapRule(expr.MetaKeyOIFNAME, mapIngress)...)
	add(&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(IGW)},
		&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictAccept})
	if err := r.nft.Flush(); err != nil {
		return fmt.Errorf("fabric: nftables table: %w", err)
	}
	r.ports = map[string]Port{}
	r.sets = map[string]bool{}
	r.asRange = map[string][]netipx.IPRange{}
	r.chains = map[string]bool{}
	return nil
}

func (r *Router) addPortChecks(b *nftBatch, pt Port) error {
	as := "as_" + pt.Name
	if err := b.addIntervalSet(as, pt.AntiSpoof); err != nil {
		return err
	}
	r.asRange[pt.Name] = pt.AntiSpoof
	for _, c := range []struct {
		chain, m string
		dst      bool
	}{{"sp_" + pt.Name, mapSpoof, false}, {"dp_" + pt.Name, mapDstck, true}} {
		ch := r.nft.AddChain(r.chain(c.chain))
		r.nft.AddRule(&nftables.Rule{Table: r.tbl, Chain: ch, UserData: []byte(pt.Name), Exprs: []expr.Any{
			loadAddr(c.dst),
			&expr.Lookup{SourceRegister: 1, SetName: as, Invert: true},
			&expr.Counter{},
			&expr.Verdict{Kind: expr.VerdictDrop},
		}})
		if err := b.add(400); err != nil {
			return err
		}
		if err := b.mapElem(c.m, pt.Name, c.chain, false); err != nil {
			return err
		}
	}
	return nil
}

func (r *Router) delPortChecks(b *nftBatch, name string) error {
	for _, c := range []struct{ chain, m string }{{"sp_" + name, mapSpoof}, {"dp_" + name, mapDstck}} {
		if err := b.mapElem(c.m, name, "", true); err != nil {
			return err
		}
		r.nft.FlushChain(r.chain(c.chain))
		r.nft.DelChain(r.chain(c.chain))
		if err := b.add(200); err != nil {
			return err
		}
	}
	r.nft.DelSet(r.set("as_" + name))
	delete(r.asRange, name)
	return b.add(100)
}

func (r *Router) addFirewallChain(b *nftBatch, c NftChain) error {
	ch := r.nft.AddChain(r.chain(c.Name))
	for _, fr := range c.Rules {
		var ex []expr.Any
		if fr.Src != "" {
			ex = append(ex, loadAddr(false), &expr.Lookup{SourceRegister: 1, SetName: fr.Src})
		}
		if fr.Dst != "" {
			ex = append(ex, loadAddr(true), &expr.Lookup{SourceRegister: 1, SetName: fr.Dst})
		}
		if !fr.AnyProto {
			ex = append(ex, &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{fr.Proto}})
			if fr.PortLo != 0 || fr.PortHi != 0 {
				ex = append(ex, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2})
				lo := binary.BigEndian.AppendUint16(nil, fr.PortLo)
				hi := binary.BigEndian.AppendUint16(nil, fr.PortHi)
				if fr.PortLo == fr.PortHi {
					ex = append(ex, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: lo})
				} else {
					ex = append(ex, &expr.Range{Op: expr.CmpOpEq, Register: 1, FromData: lo, ToData: hi})
				}
			}
		}
		v := &expr.Verdict{Kind: expr.VerdictDrop}
		switch fr.Verdict {
		case VerdictAccept:
			v.Kind = expr.VerdictAccept
		case VerdictReturn:
			v.Kind = expr.VerdictReturn
		}
		ex = append(ex, v)
		r.nft.AddRule(&nftables.Rule{Table: r.tbl, Chain: ch, Exprs: ex, UserData: []byte(fr.Firewall)})
		if err := b.add(300); err != nil {
			return err
		}
	}
	r.chains[c.Name] = true
	return b.add(100)
}

func (r *Router) applyNft(p *RouterPlan, st *Stats) error {
	b := &nftBatch{r: r}
	// New firewall sets and chains.
	wantSets := map[string]bool{}
	for _, s := range p.Sets {
		wantSets[s.Name] = true
		if r.sets[s.Name] {
			continue
		}
		if err := b.addIntervalSet(s.Name, s.Ranges); err != nil {
			return err
		}
		r.sets[s.Name] = true
		st.SetElements += 2 * len(s.Ranges)
	}
	wantChains := map[string]bool{}
	for _, c := range p.Chains {
		wantChains[c.Name] = true
		if r.chains[c.Name] {
			continue
		}
		if err := r.addFirewallChain(b, c); err != nil {
			return err
		}
	}
	// Ports.
	want := map[string]Port{}
	for _, pt := range p.Ports {
		want[pt.Name] = pt
	}
	for name, old := range r.ports {
		if _, ok := want[name]; ok {
			continue
		}
		for _, m := range []string{mapEgress, mapIngress} {
			if err := b.mapElem(m, name, "", true); err != nil {
				return err
			}
		}
		if old.AntiSpoof != nil {
			if err := r.delPortChecks(b, name); err != nil {
				return err
			}
		}
		delete(r.ports, name)
	}
	for _, pt := range p.Ports {
		old, had := r.ports[pt.Name]
		switch {
		case !had:
			if pt.AntiSpoof != nil {
				if err := r.addPortChecks(b, pt); err != nil {
					return err
				}
				st.SetElements += 2 * len(pt.AntiSpoof)
			}
		case (old.AntiSpoof == nil) != (pt.AntiSpoof == nil):
			if old.AntiSpoof != nil {
				if err := r.delPortChecks(b, pt.Name); err != nil {
					return err
				}
			} else if err := r.addPortChecks(b, pt); err != nil {
				return err
			}
		case pt.AntiSpoof != nil && !slices.Equal(old.AntiSpoof, pt.AntiSpoof):
			del, add := diffRanges(r.asRange[pt.Name], pt.AntiSpoof)
			s := r.set("as_" + pt.Name)
			s.KeyType, s.Interval = nftables.TypeIPAddr, true
			if err := b.setElems(s, intervalElems(del), true); err != nil {
				return err
			}
			if err := b.setElems(s, intervalElems(add), false); err != nil {
				return err
			}
			r.asRange[pt.Name] = pt.AntiSpoof
			st.SetElements += 2 * (len(del) + len(add))
		}
		if !had || old.Egress != pt.Egress {
			if had {
				if err := b.mapElem(mapEgress, pt.Name, "", true); err != nil {
					return err
				}
			}
			if err := b.mapElem(mapEgress, pt.Name, pt.Egress, false); err != nil {
				return err
			}
		}
		if !had || old.Ingress != pt.Ingress {
			if had {
				if err := b.mapElem(mapIngress, pt.Name, "", true); err != nil {
					return err
				}
			}
			if err := b.mapElem(mapIngress, pt.Name, pt.Ingress, false); err != nil {
				return err
			}
		}
		r.ports[pt.Name] = pt
	}
	// Chains and sets nothing refers to any more.
	for name := range r.chains {
		if wantChains[name] {
			continue
		}
		r.nft.FlushChain(r.chain(name))
		r.nft.DelChain(r.chain(name))
		delete(r.chains, name)
		if err := b.add(200); err != nil {
			return err
		}
	}
	for name := range r.sets {
		if wantSets[name] {
			continue
		}
		r.nft.DelSet(r.set(name))
		delete(r.sets, name)
		if err := b.add(100); err != nil {
			return err
		}
	}
	if err := b.flush(); err != nil {
		// The table may be half-updated: rebuild it next time.
		r.inited = false
		return err
	}
	st.NftBatches = b.n
	return nil
}

// diffRanges returns the ranges of old not in new and of new not in old.
func diffRanges(old, new []netipx.IPRange) (del, add []netipx.IPRange) {
	in := func(rs []netipx.IPRange, x netipx.IPRange) bool {
		_, ok := slices.BinarySearchFunc(rs, x, func(a, b netipx.IPRange) int {
			if c := a.From().Compare(b.From()); c != 0 {
				return c
			}
			return a.To().Compare(b.To())
		})
		return ok
	}
	for _, x := range old {
		if !in(new, x) {
			del = append(del, x)
		}
	}
	for _, x := range new {
		if !in(old, x) {
			add = append(add, x)
		}
	}
	return del, add
}

// Counters are the fabric's packet counters in a namespace.
type Counters struct {
	// SpoofDrops and DstDrops count, per port, packets dropped by the
	// anti-spoofing and destination checks.
	SpoofDrops map[string]uint64 `json:"spoofDrops"`
	DstDrops   map[string]uint64 `json:"dstDrops"`
	// Internet counts packets routed to the internet gateway.
	Internet uint64 `json:"internet"`
}

// ReadCounters reads the fabric's counters in ns with the nftables
// library.
func ReadCounters(ns netns.NsHandle) (*Counters, error) {
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		return nil, err
	}
	tbl := &nftables.Table{Name: NFTTable, Family: nftables.TableFamilyIPv4}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return nil, err
	}
	out := &Counters{SpoofDrops: map[string]uint64{}, DstDrops: map[string]uint64{}}
	found := false
	for _, ch := range chains {
		if ch.Table.Name != NFTTable {
			continue
		}
		found = true
		var dst map[string]uint64
		var port string
		switch {
		case len(ch.Name) > 3 && ch.Name[:3] == "sp_":
			dst, port = out.SpoofDrops, ch.Name[3:]
		case len(ch.Name) > 3 && ch.Name[:3] == "dp_":
			dst, port = out.DstDrops, ch.Name[3:]
		case ch.Name == "forward":
		default:
			continue
		}
		rules, err := c.GetRules(tbl, ch)
		if err != nil {
			return nil, err
		}
		for _, ru := range rules {
			for _, e := range ru.Exprs {
				if cnt, ok := e.(*expr.Counter); ok {
					if dst != nil {
						dst[port] += cnt.Packets
					} else {
						out.Internet += cnt.Packets
					}
				}
			}
		}
	}
	if !found {
		return nil, errors.New("fabric: no aliasnet nftables table in the namespace")
	}
	return out, nil
}

// SetRanges reads an interval set's ranges back from the kernel (tests,
// benchmarks: "all sets present").
func SetRanges(ns netns.NsHandle, set string) ([]netipx.IPRange, error) {
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		return nil, err
	}
	tbl := &nftables.Table{Name: NFTTable, Family: nftables.TableFamilyIPv4}
	s, err := c.GetSetByName(tbl, set)
	if err != nil {
		return nil, err
	}
	els, err := c.GetSetElements(s)
	if err != nil {
		return nil, err
	}
	type mark struct {
		a   netip.Addr
		end bool
	}
	var ms []mark
	for _, e := range els {
		a, ok := netip.AddrFromSlice(e.Key)
		if !ok {
			continue
		}
		ms = append(ms, mark{a, e.IntervalEnd})
	}
	slices.SortFunc(ms, func(x, y mark) int {
		if c := x.a.Compare(y.a); c != 0 {
			return c
		}
		// An end at the same address as a start comes first.
		if x.end == y.end {
			return 0
		}
		if x.end {
			return -1
		}
		return 1
	})
	var out []netipx.IPRange
	for i := 0; i < len(ms); i++ {
		if ms[i].end {
			continue
		}
		from, to := ms[i].a, netip.AddrFrom4([4]byte{255, 255, 255, 255})
		if i+1 < len(ms) && ms[i+1].end {
			to = ms[i+1].a.Prev()
			i++
		}
		out = append(out, netipx.IPRangeFrom(from, to))
	}
	return out, nil
}
