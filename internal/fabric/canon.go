package fabric

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"sync"
)

// canonHash hashes a value's canonical encoding: every exported field in
// order, with a nil and an empty slice (or map) encoded alike. JSON and
// gob cannot serve: JSON tells [] from null, which a gob round trip does
// not preserve, and gob's bytes carry type numbers that depend on what
// the process encoded before. A server and the data planes it feeds must
// hash the same units to the same value whatever path the units took.
func canonHash(v any) [32]byte {
	bp := canonBufs.Get().(*[]byte)
	b := canonAppend((*bp)[:0], reflect.ValueOf(v))
	sum := sha256.Sum256(b)
	*bp = b
	canonBufs.Put(bp)
	return sum
}

var canonBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

var (
	addrType   = reflect.TypeFor[netip.Addr]()
	prefixType = reflect.TypeFor[netip.Prefix]()
)

func appendAddr(b []byte, a netip.Addr) []byte {
	x := a.As16()
	return append(append(b, byte(a.BitLen())), x[:]...)
}

func canonAppend(b []byte, v reflect.Value) []byte {
	t := v.Type()
	switch t {
	case addrType:
		return appendAddr(b, v.Interface().(netip.Addr))
	case prefixType:
		p := v.Interface().(netip.Prefix)
		return binary.AppendVarint(appendAddr(b, p.Addr()), int64(p.Bits()))
	}
	switch v.Kind() {
	case reflect.Bool:
		if v.Bool() {
			return append(b, 1)
		}
		return append(b, 0)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return binary.AppendVarint(b, v.Int())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return binary.AppendUvarint(b, v.Uint())
	case reflect.String:
		s := v.String()
		return append(binary.AppendUvarint(b, uint64(len(s))), s...)
	case reflect.Slice, reflect.Array:
		n := v.Len()
		b = binary.AppendUvarint(b, uint64(n))
		for i := range n {
			b = canonAppend(b, v.Index(i))
		}
		return b
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return append(b, 0)
		}
		return canonAppend(append(b, 1), v.Elem())
	case reflect.Map:
		keys := v.MapKeys()
		slices.SortFunc(keys, func(x, y reflect.Value) int {
			return slices.Compare(canonAppend(nil, x), canonAppend(nil, y))
		})
		b = binary.AppendUvarint(b, uint64(len(keys)))
		for _, k := range keys {
			b = canonAppend(canonAppend(b, k), v.MapIndex(k))
		}
		return b
	case reflect.Struct:
		for i := range t.NumField() {
			if t.Field(i).IsExported() {
				b = canonAppend(b, v.Field(i))
			}
		}
		return b
	}
	panic(fmt.Sprintf("fabric: canonHash: cannot encode %s", t))
}
