package dnsserver

import "github.com/miekg/dns"

const maxCNAMEHops = 8

// findZone returns the longest zone containing name that a client in network
// can see (any zone if !filter), or nil.
func (t *Table) findZone(name, network string, filter bool) *zone {
	for cur := name; ; {
		for _, z := range t.zones[cur] {
			if !filter || z.vis.visible(network) {
				return z
			}
		}
		if cur == "." {
			return nil
		}
		cur = parent(cur)
	}
}

func (t *Table) soa(z *zone, ttl uint32) dns.RR {
	return &dns.SOA{
		Hdr:     dns.RR_Header{Name: z.apex, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: ttl},
		Ns:      nsName,
		Mbox:    hostmaster,
		Serial:  t.serial,
		Refresh: 3600,
		Retry:   600,
		Expire:  604800,
		Minttl:  ttl,
	}
}

// appendSet appends set's records; synthesised records are copied with ttl.
func appendSet(dst []dns.RR, set *rrset, ttl uint32) []dns.RR {
	if !set.synth {
		return append(dst, set.rrs...)
	}
	for _, rr := range set.rrs {
		switch v := rr.(type) {
		case *dns.A:
			c := *v
			c.Hdr.Ttl = ttl
			dst = append(dst, &c)
		case *dns.AAAA:
			c := *v
			c.Hdr.Ttl = ttl
			dst = append(dst, &c)
		case *dns.PTR:
			c := *v
			c.Hdr.Ttl = ttl
			dst = append(dst, &c)
		default:
			c := dns.Copy(rr)
			c.Header().Ttl = ttl
			dst = append(dst, c)
		}
	}
	return dst
}

// resolve fills m's rcode, AA bit, answer and authority for one question.
// name must be lower-case.
func (t *Table) resolve(m *dns.Msg, name string, qtype uint16, network string, filter bool, ttl uint32) {
	for hop := 0; ; hop++ {
		z := t.findZone(name, network, filter)
		if z == nil {
			if hop == 0 {
				m.Rcode = dns.RcodeRefused
			}
			return // a CNAME pointing outside our zones: the chain is the answer
		}
		if hop == 0 {
			m.Authoritative = true
		}
		n := z.nodes[name]
		if n == nil || (filter && !n.vis.visible(network)) {
			m.Rcode = dns.RcodeNameError
			m.Ns = append(m.Ns, t.soa(z, ttl))
			return
		}
		if name == z.apex {
			switch qtype {
			case dns.TypeSOA, dns.TypeANY:
				m.Answer = append(m.Answer, t.soa(z, ttl))
				return
			case dns.TypeNS:
				m.Answer = append(m.Answer, &dns.NS{
					Hdr: dns.RR_Header{Name: z.apex, Rrtype: dns.TypeNS, Class: dns.ClassINET, Ttl: ttl},
					Ns:  nsName,
				})
				return
			}
		}
		if qtype != dns.TypeCNAME && z.managed {
			if set := n.cname(); set != nil {
				m.Answer = append(m.Answer, set.rrs...)
				if hop+1 >= maxCNAMEHops {
					return
				}
				name = lowerASCII(set.rrs[0].(*dns.CNAME).Target)
				continue
			}
		}
		found := false
		for i := range n.sets {
			set := &n.sets[i]
			if set.typ != qtype && qtype != dns.TypeANY {
				continue
			}
			if filter && !set.vis.visible(network) {
				continue
			}
			m.Answer = appendSet(m.Answer, set, ttl)
			found = true
			if qtype == dns.TypeANY {
				break // RFC 8482: one RRset is enough
			}
		}
		if !found {
			m.Ns = append(m.Ns, t.soa(z, ttl)) // NODATA
		}
		return
	}
}

func (n *node) cname() *rrset {
	for i := range n.sets {
		if n.sets[i].typ == dns.TypeCNAME {
			return &n.sets[i]
		}
	}
	return nil
}
