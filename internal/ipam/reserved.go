package ipam

import (
	"net/netip"

	"go4.org/netipx"
)

// ReservedGCE returns the addresses Google Cloud reserves in a subnet's
// primary IPv4 range, in ascending order: the network address, the default
// gateway (first host), the second-to-last address and the broadcast
// address. For 10.0.0.0/29 that is 10.0.0.0, 10.0.0.1, 10.0.0.6, 10.0.0.7;
// for 10.0.0.0/24 it is 10.0.0.0, 10.0.0.1, 10.0.0.254, 10.0.0.255. Host
// bits of r are ignored. Ranges smaller than GCE's minimum /29 give the
// same rule without duplicates (a /31 gives both its addresses, a /32 its
// only one). It returns nil for an invalid r or an IPv6 range (GCE reserves
// no such addresses in IPv6 ranges handed out as /64s and /96s).
func ReservedGCE(r netip.Prefix) []netip.Addr {
	if !r.IsValid() || !r.Addr().Is4() {
		return nil
	}
	r = r.Masked()
	first, last := r.Addr(), netipx.PrefixLastIP(r)
	return collect(r, first, first.Next(), last.Prev(), last)
}

// ReservedAlibaba returns the addresses Alibaba Cloud reserves in a vSwitch
// CIDR block, in ascending order: for IPv4 the first address and the last
// three; for IPv6 the first address and the last nine. For 192.168.1.0/29
// that is 192.168.1.0, 192.168.1.5, 192.168.1.6, 192.168.1.7; for
// 192.168.1.0/24 it is 192.168.1.0, 192.168.1.253, 192.168.1.254,
// 192.168.1.255. Host bits of r are ignored; ranges too small to hold them
// all give each address once. It returns nil for an invalid r.
func ReservedAlibaba(r netip.Prefix) []netip.Addr {
	if !r.IsValid() {
		return nil
	}
	r = r.Masked()
	tail := 3
	if !r.Addr().Is4() {
		tail = 9
	}
	addrs := []netip.Addr{r.Addr()}
	last := netipx.PrefixLastIP(r)
	tailAddrs := make([]netip.Addr, tail)
	for i := tail - 1; i >= 0; i-- {
		tailAddrs[i] = last
		last = last.Prev()
	}
	return collect(r, append(addrs, tailAddrs...)...)
}

// collect keeps the addresses of as that are valid, inside r and greater
// than the previous one kept (as is in ascending order, up to overlaps).
func collect(r netip.Prefix, as ...netip.Addr) []netip.Addr {
	out := make([]netip.Addr, 0, len(as))
	for _, a := range as {
		if !a.IsValid() || !r.Contains(a) {
			continue
		}
		if n := len(out); n > 0 && !out[n-1].Less(a) {
			continue
		}
		out = append(out, a)
	}
	return out
}
