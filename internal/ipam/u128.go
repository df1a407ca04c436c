package ipam

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// u128 is an address in left-aligned form: bit 0 is the most significant
// bit of the address for both families. An IPv4 address occupies the top
// 32 bits of hi; everything below is zero. With this layout the trie depth
// of a node equals the prefix length of the block it stands for, for IPv4
// and IPv6 alike.
type u128 struct{ hi, lo uint64 }

func fromAddr(a netip.Addr) u128 {
	if a.Is4() {
		b := a.As4()
		return u128{hi: uint64(binary.BigEndian.Uint32(b[:])) << 32}
	}
	b := a.As16()
	return u128{hi: binary.BigEndian.Uint64(b[:8]), lo: binary.BigEndian.Uint64(b[8:])}
}

func (u u128) addr(is4 bool) netip.Addr {
	if is4 {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(u.hi>>32))
		return netip.AddrFrom4(b)
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], u.hi)
	binary.BigEndian.PutUint64(b[8:], u.lo)
	return netip.AddrFrom16(b)
}

// bit returns bit d (0 = most significant), d < 128.
func (u u128) bit(d uint8) uint32 {
	if d < 64 {
		return uint32(u.hi>>(63-d)) & 1
	}
	return uint32(u.lo>>(127-d)) & 1
}

// withBit returns u with bit d set to v (0 or 1).
func (u u128) withBit(d uint8, v uint32) u128 {
	if v == 0 {
		return u
	}
	if d < 64 {
		u.hi |= 1 << (63 - d)
	} else {
		u.lo |= 1 << (127 - d)
	}
	return u
}

// mask keeps the first d bits (d <= 128).
func (u u128) mask(d uint8) u128 {
	switch {
	case d == 0:
		return u128{}
	case d < 64:
		return u128{hi: u.hi &^ (^uint64(0) >> d)}
	case d == 64:
		return u128{hi: u.hi}
	case d < 128:
		return u128{hi: u.hi, lo: u.lo &^ (^uint64(0) >> (d - 64))}
	}
	return u
}

func (u u128) or(v u128) u128 { return u128{u.hi | v.hi, u.lo | v.lo} }

func (u u128) less(v u128) bool { return u.hi < v.hi || (u.hi == v.hi && u.lo < v.lo) }

// shl shifts left by s (any s; s >= 128 gives 0).
func (u u128) shl(s uint) u128 {
	switch {
	case s == 0:
		return u
	case s >= 128:
		return u128{}
	case s >= 64:
		return u128{hi: u.lo << (s - 64)}
	}
	return u128{hi: u.hi<<s | u.lo>>(64-s), lo: u.lo << s}
}

// nextBlock returns the first address after the aligned block of prefix
// length d starting at u, and false if that overflows the 128-bit space.
func (u u128) nextBlock(d uint8) (u128, bool) {
	if d == 0 {
		return u128{}, false
	}
	step := u128{lo: 1}.shl(uint(128 - int(d)))
	lo, c := bits.Add64(u.lo, step.lo, 0)
	hi, c := bits.Add64(u.hi, step.hi, c)
	return u128{hi, lo}, c == 0
}
