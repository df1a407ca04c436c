package ipam

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

var (
	mp = netip.MustParsePrefix
	ma = netip.MustParseAddr
)

func mustPool(t testing.TB, r string) *Pool {
	t.Helper()
	p, err := NewPool(mp(r))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func mustCheck(t testing.TB, p *Pool) {
	t.Helper()
	if err := checkInvariants(p); err != nil {
		t.Fatal(err)
	}
}

func mustAlloc(t testing.TB, p *Pool, bits int, o Owner) netip.Prefix {
	t.Helper()
	pfx, err := p.Allocate(bits, o)
	if err != nil {
		t.Fatal(err)
	}
	mustCheck(t, p)
	return pfx
}

func allocs(p *Pool) []string {
	var out []string
	for pfx, o := range p.All {
		out = append(out, fmt.Sprintf("%v=%d", pfx, o))
	}
	return out
}

func TestNewPool(t *testing.T) {
	for _, tc := range []struct {
		r    netip.Prefix
		want error
	}{
		{mp("10.0.0.0/8"), nil},
		{mp("0.0.0.0/0"), nil},
		{mp("10.1.2.3/32"), nil},
		{mp("::/0"), nil},
		{mp("2001:db8::/64"), nil},
		{mp("2001:db8::1/128"), nil},
		{mp("::ffff:10.0.0.0/104"), nil}, // 4in6 is IPv6
		{netip.PrefixFrom(ma("10.0.0.1"), 24), ErrInvalid},
		{netip.Prefix{}, ErrInvalid},
		{netip.PrefixFrom(ma("10.0.0.0"), 33), ErrInvalid},
	} {
		p, err := NewPool(tc.r)
		if !errors.Is(err, tc.want) {
			t.Errorf("NewPool(%v) = %v want %v", tc.r, err, tc.want)
			continue
		}
		if err == nil {
			if p.Range() != tc.r || p.Len() != 0 || p.Quarantined() != 0 {
				t.Errorf("NewPool(%v): range %v len %d", tc.r, p.Range(), p.Len())
			}
			mustCheck(t, p)
		}
	}
}

func TestClaim(t *testing.T) {
	base := func(t *testing.T) *Pool {
		p := mustPool(t, "10.0.0.0/16")
		for _, c := range []struct {
			pfx string
			o   Owner
		}{{"10.0.1.0/24", 1}, {"10.0.2.5/32", 2}, {"10.0.4.0/22", 3}} {
			if err := p.Claim(mp(c.pfx), c.o); err != nil {
				t.Fatal(err)
			}
		}
		return p
	}
	for _, tc := range []struct {
		name     string
		pfx      netip.Prefix
		owner    Owner
		err      error
		conflict string // "prefix=owner"
	}{
		{"free /24", mp("10.0.3.0/24"), 9, nil, ""},
		{"free /32", mp("10.0.2.6/32"), 9, nil, ""},
		{"/32 inside existing /24", mp("10.0.1.7/32"), 9, nil, "10.0.1.0/24=1"},
		{"/24 over existing /32", mp("10.0.2.0/24"), 9, nil, "10.0.2.5/32=2"},
		{"/23 over existing /24", mp("10.0.0.0/23"), 9, nil, "10.0.1.0/24=1"},
		{"whole range: lowest conflict", mp("10.0.0.0/16"), 9, nil, "10.0.1.0/24=1"},
		{"exact duplicate", mp("10.0.1.0/24"), 1, nil, "10.0.1.0/24=1"},
		{"/24 inside existing /22", mp("10.0.6.0/24"), 9, nil, "10.0.4.0/22=3"},
		{"unmasked", netip.PrefixFrom(ma("10.0.3.1"), 24), 9, ErrInvalid, ""},
		{"invalid", netip.Prefix{}, 9, ErrInvalid, ""},
		{"owner 0", mp("10.0.3.0/24"), 0, ErrInvalid, ""},
		{"outside", mp("10.1.0.0/24"), 9, ErrOutOfRange, ""},
		{"supernet of range", mp("10.0.0.0/8"), 9, ErrOutOfRange, ""},
		{"other family", mp("2001:db8::/64"), 9, ErrOutOfRange, ""},
		{"4in6", mp("::ffff:10.0.0.0/120"), 9, ErrOutOfRange, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := base(t)
			before := allocs(p)
			err := p.Claim(tc.pfx, tc.owner)
			mustCheck(t, p)
			if tc.conflict != "" {
				var ce *ConflictError
				if !errors.As(err, &ce) {
					t.Fatalf("Claim(%v) = %v, want conflict", tc.pfx, err)
				}
				if got := fmt.Sprintf("%v=%d", ce.Prefix, ce.Owner); got != tc.conflict {
					t.Fatalf("conflict %s want %s", got, tc.conflict)
				}
				if !strings.Contains(err.Error(), ce.Prefix.String()) {
					t.Errorf("error %q does not mention %v", err, ce.Prefix)
				}
			} else if !errors.Is(err, tc.err) {
				t.Fatalf("Claim(%v) = %v want %v", tc.pfx, err, tc.err)
			}
			if err != nil {
				if !slices.Equal(before, allocs(p)) {
					t.Fatal("failed Claim changed the pool")
				}
				return
			}
			if o, ok := p.OwnerOf(tc.pfx); !ok || o != tc.owner {
				t.Fatalf("OwnerOf after claim: %d %v", o, ok)
			}
			if p.Len() != len(before)+1 {
				t.Fatalf("Len %d", p.Len())
			}
		})
	}
}

func TestAllocateAlignment(t *testing.T) {
	p := mustPool(t, "10.0.0.0/24")
	for _, tc := range []struct {
		bits int
		want string
	}{
		{32, "10.0.0.0/32"},
		{30, "10.0.0.4/30"},
		{29, "10.0.0.8/29"},
		{32, "10.0.0.1/32"},
		{28, "10.0.0.16/28"},
		{31, "10.0.0.2/31"},
		{25, "10.0.0.128/25"},
		{26, "10.0.0.64/26"},
		{32, "10.0.0.32/32"}, // .0-.31 are taken
		{26, ""},             // no /26 left
		{27, ""},             // nor /27
		{28, "10.0.0.48/28"},
	} {
		got, err := p.Allocate(tc.bits, 7)
		mustCheck(t, p)
		if tc.want == "" {
			if !errors.Is(err, ErrExhausted) {
				t.Fatalf("Allocate(/%d) = %v, %v want exhausted", tc.bits, got, err)
			}
			if !strings.Contains(err.Error(), fmt.Sprintf("/%d", tc.bits)) || !strings.Contains(err.Error(), "10.0.0.0/24") {
				t.Errorf("error lacks context: %v", err)
			}
			continue
		}
		if err != nil || got != mp(tc.want) {
			t.Fatalf("Allocate(/%d) = %v, %v want %s", tc.bits, got, err, tc.want)
		}
	}
}

func TestAllocateErrors(t *testing.T) {
	p := mustPool(t, "10.0.0.0/30")
	for _, tc := range []struct {
		bits  int
		owner Owner
		err   error
	}{
		{29, 1, ErrOutOfRange},
		{33, 1, ErrInvalid},
		{-1, 1, ErrInvalid},
		{32, 0, ErrInvalid},
	} {
		if _, err := p.Allocate(tc.bits, tc.owner); !errors.Is(err, tc.err) {
			t.Errorf("Allocate(%d, %d) = %v want %v", tc.bits, tc.owner, err, tc.err)
		}
		if _, err := p.AllocateRandom(tc.bits, tc.owner, rand.Uint64N); !errors.Is(err, tc.err) {
			t.Errorf("AllocateRandom(%d, %d) = %v want %v", tc.bits, tc.owner, err, tc.err)
		}
	}
	if _, err := p.AllocateRandom(32, 1, nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("nil rnd: %v", err)
	}
	for i := range 4 {
		mustAlloc(t, p, 32, Owner(i+1))
	}
	for _, bits := range []int{30, 31, 32} {
		if _, err := p.Allocate(bits, 1); !errors.Is(err, ErrExhausted) {
			t.Errorf("full /%d: %v", bits, err)
		}
		if _, err := p.AllocateRandom(bits, 1, rand.Uint64N); !errors.Is(err, ErrExhausted) {
			t.Errorf("full random /%d: %v", bits, err)
		}
	}
	if p.FreeBlocks(32) != 0 || p.Len() != 4 {
		t.Errorf("FreeBlocks %d Len %d", p.FreeBlocks(32), p.Len())
	}
}

func TestRelease(t *testing.T) {
	p := mustPool(t, "10.0.0.0/16")
	if err := p.Claim(mp("10.0.1.0/24"), 1); err != nil {
		t.Fatal(err)
	}
	if err := p.Claim(mp("10.0.2.7/32"), 2); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		pfx netip.Prefix
		err error
	}{
		{mp("10.0.3.0/24"), ErrNotAllocated},               // free
		{mp("10.0.1.5/32"), ErrNotAllocated},               // inside an allocation
		{mp("10.0.0.0/23"), ErrNotAllocated},               // contains an allocation
		{mp("10.0.2.6/31"), ErrNotAllocated},               // contains the /32
		{mp("10.0.0.0/16"), ErrNotAllocated},               // the range
		{mp("10.1.0.0/24"), ErrOutOfRange},                 // outside
		{mp("::/0"), ErrOutOfRange},                        // other family
		{netip.Prefix{}, ErrInvalid},                       // invalid
		{netip.PrefixFrom(ma("10.0.1.1"), 24), ErrInvalid}, // unmasked
		{mp("10.0.1.0/24"), nil},
		{mp("10.0.1.0/24"), ErrNotAllocated}, // twice
		{mp("10.0.2.7/32"), nil},
	} {
		err := p.Release(tc.pfx)
		mustCheck(t, p)
		if !errors.Is(err, tc.err) {
			t.Errorf("Release(%v) = %v want %v", tc.pfx, err, tc.err)
		}
		if err != nil && !strings.Contains(err.Error(), tc.pfx.String()) && tc.pfx.IsValid() {
			t.Errorf("error %q lacks the prefix", err)
		}
	}
	if p.Len() != 0 || p.Quarantined() != 2 {
		t.Fatalf("Len %d Quarantined %d", p.Len(), p.Quarantined())
	}
}

func TestIPv6(t *testing.T) {
	p := mustPool(t, "2001:db8::/48")
	if got := mustAlloc(t, p, 64, 1); got != mp("2001:db8::/64") {
		t.Fatal(got)
	}
	if got := mustAlloc(t, p, 64, 1); got != mp("2001:db8:0:1::/64") {
		t.Fatal(got)
	}
	if got := mustAlloc(t, p, 96, 2); got != mp("2001:db8:0:2::/96") {
		t.Fatal(got)
	}
	if got := mustAlloc(t, p, 128, 3); got != mp("2001:db8:0:2:0:1::/128") {
		t.Fatal(got)
	}
	if got := mustAlloc(t, p, 63, 3); got != mp("2001:db8:0:4::/63") {
		t.Fatal(got)
	}
	if err := p.Claim(mp("2001:db8:0:2::5/128"), 4); err == nil {
		t.Fatal("claim inside /96 succeeded")
	}
	if err := p.Claim(mp("2001:db8:0:3:8000::/65"), 4); err != nil {
		t.Fatal(err)
	}
	mustCheck(t, p)
	want := []string{
		"2001:db8::/64=1", "2001:db8:0:1::/64=1", "2001:db8:0:2::/96=2",
		"2001:db8:0:2:0:1::/128=3", "2001:db8:0:3:8000::/65=4", "2001:db8:0:4::/63=3",
	}
	if got := allocs(p); !slices.Equal(got, want) {
		t.Fatalf("All = %v", got)
	}
	// 2^16 /64s minus what is used: 2 whole /64s, the /63 (2), and the two
	// partly used /64s (…:2::/64 and …:3::/64).
	if got := p.FreeBlocks(64); got != 1<<16-6 {
		t.Fatalf("FreeBlocks(64) = %d", got)
	}
	if got := p.FreeBlocks(128); got != math.MaxUint64 {
		t.Fatalf("FreeBlocks(128) = %d", got)
	}
}

func TestEdgeRanges(t *testing.T) {
	t.Run("v4 /0", func(t *testing.T) {
		p := mustPool(t, "0.0.0.0/0")
		if got := p.FreeBlocks(32); got != 1<<32 {
			t.Fatal(got)
		}
		if got := mustAlloc(t, p, 32, 1); got != mp("0.0.0.0/32") {
			t.Fatal(got)
		}
		if err := p.Claim(mp("255.255.255.255/32"), 2); err != nil {
			t.Fatal(err)
		}
		// Both /1s hold an allocation.
		if _, err := p.Allocate(1, 3); !errors.Is(err, ErrExhausted) {
			t.Fatal(err)
		}
		if got := mustAlloc(t, p, 2, 3); got != mp("64.0.0.0/2") {
			t.Fatal(got)
		}
		want := []string{"0.0.0.0/32=1", "64.0.0.0/2=3", "255.255.255.255/32=2"}
		if got := allocs(p); !slices.Equal(got, want) {
			t.Fatalf("All = %v", got)
		}
	})
	t.Run("v4 /0 whole", func(t *testing.T) {
		p := mustPool(t, "0.0.0.0/0")
		if got := mustAlloc(t, p, 0, 1); got != mp("0.0.0.0/0") {
			t.Fatal(got)
		}
		if _, err := p.Allocate(32, 1); !errors.Is(err, ErrExhausted) {
			t.Fatal(err)
		}
		if pfx, o, ok := p.Conflict(mp("1.2.3.4/32")); !ok || pfx != mp("0.0.0.0/0") || o != 1 {
			t.Fatal(pfx, o, ok)
		}
		if got := allocs(p); !slices.Equal(got, []string{"0.0.0.0/0=1"}) {
			t.Fatal(got)
		}
	})
	t.Run("v4 top address", func(t *testing.T) {
		p := mustPool(t, "255.255.255.0/24")
		if err := p.Claim(mp("255.255.255.255/32"), 1); err != nil {
			t.Fatal(err)
		}
		if err := p.Claim(mp("255.255.255.254/32"), 2); err != nil {
			t.Fatal(err)
		}
		if got := allocs(p); !slices.Equal(got, []string{"255.255.255.254/32=2", "255.255.255.255/32=1"}) {
			t.Fatal(got)
		}
	})
	t.Run("v6 /0 and top", func(t *testing.T) {
		p := mustPool(t, "::/0")
		if got := p.FreeBlocks(64); got != math.MaxUint64 {
			t.Fatal(got)
		}
		if got := p.FreeBlocks(63); got != 1<<63 {
			t.Fatal(got)
		}
		top := mp("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128")
		if err := p.Claim(top, 1); err != nil {
			t.Fatal(err)
		}
		if got := mustAlloc(t, p, 128, 2); got != mp("::/128") {
			t.Fatal(got)
		}
		if got := allocs(p); !slices.Equal(got, []string{"::/128=2", top.String() + "=1"}) {
			t.Fatal(got)
		}
		if got := p.FreeBlocks(1); got != 0 {
			t.Fatal(got)
		}
		if got := p.FreeBlocks(2); got != 2 {
			t.Fatal(got)
		}
	})
	t.Run("/32 pool", func(t *testing.T) {
		p := mustPool(t, "10.9.8.7/32")
		if p.FreeBlocks(32) != 1 || p.FreeBlocks(31) != 0 {
			t.Fatal(p.FreeBlocks(32))
		}
		got := mustAlloc(t, p, 32, 1)
		if got != mp("10.9.8.7/32") {
			t.Fatal(got)
		}
		if _, err := p.Allocate(32, 2); !errors.Is(err, ErrExhausted) {
			t.Fatal(err)
		}
		if err := p.Release(got); err != nil {
			t.Fatal(err)
		}
		// Only quarantined space is left: it is drained and reused.
		if got2 := mustAlloc(t, p, 32, 2); got2 != got || p.Quarantined() != 0 {
			t.Fatal(got2)
		}
	})
	t.Run("/128 pool", func(t *testing.T) {
		p := mustPool(t, "2001:db8::1/128")
		if got, err := p.AllocateRandom(128, 1, rand.Uint64N); err != nil || got != mp("2001:db8::1/128") {
			t.Fatal(got, err)
		}
		mustCheck(t, p)
	})
}

func TestQuarantineOrder(t *testing.T) {
	p := mustPool(t, "10.0.0.0/29")
	var got []netip.Prefix
	for range 8 {
		got = append(got, mustAlloc(t, p, 32, 1))
	}
	a, b := got[5], got[2]
	if err := p.Release(a); err != nil {
		t.Fatal(err)
	}
	if err := p.Release(b); err != nil {
		t.Fatal(err)
	}
	mustCheck(t, p)
	if p.FreeBlocks(32) != 2 || p.Quarantined() != 2 {
		t.Fatalf("FreeBlocks %d Quarantined %d", p.FreeBlocks(32), p.Quarantined())
	}
	// Exhausted apart from the quarantine: A (released first) comes back first,
	// although B has the lower address.
	if x := mustAlloc(t, p, 32, 2); x != a {
		t.Fatalf("got %v want A=%v", x, a)
	}
	if x := mustAlloc(t, p, 32, 2); x != b {
		t.Fatalf("got %v want B=%v", x, b)
	}
	if _, err := p.Allocate(32, 2); !errors.Is(err, ErrExhausted) {
		t.Fatal(err)
	}
}

func TestQuarantineSkipsWhileSpaceRemains(t *testing.T) {
	p := mustPool(t, "10.0.0.0/24")
	x := mustAlloc(t, p, 32, 1) // 10.0.0.0
	if err := p.Release(x); err != nil {
		t.Fatal(err)
	}
	// 255 other addresses are handed out before x is reused.
	seen := map[netip.Prefix]bool{}
	for i := range 255 {
		y := mustAlloc(t, p, 32, 2)
		if y == x {
			t.Fatalf("reused %v after %d allocations", x, i)
		}
		seen[y] = true
	}
	if y := mustAlloc(t, p, 32, 2); y != x {
		t.Fatalf("last allocation %v want %v", y, x)
	}
	// AllocateRandom obeys the quarantine too.
	p = mustPool(t, "10.0.0.0/28")
	for range 16 {
		mustAlloc(t, p, 32, 1)
	}
	rel := []netip.Prefix{mp("10.0.0.3/32"), mp("10.0.0.9/32"), mp("10.0.0.4/32")}
	for _, r := range rel {
		if err := p.Release(r); err != nil {
			t.Fatal(err)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for _, want := range rel {
		got, err := p.AllocateRandom(32, 3, r.Uint64N)
		if err != nil || got != want {
			t.Fatalf("AllocateRandom = %v, %v want %v", got, err, want)
		}
		mustCheck(t, p)
	}
}

func TestQuarantineLimit(t *testing.T) {
	p := mustPool(t, "10.0.0.0/30")
	p.SetQuarantineLimit(2)
	var got []netip.Prefix
	for range 4 {
		got = append(got, mustAlloc(t, p, 32, 1))
	}
	for _, i := range []int{3, 1, 0} {
		if err := p.Release(got[i]); err != nil {
			t.Fatal(err)
		}
		mustCheck(t, p)
	}
	// The FIFO holds 2: got[3] (oldest) dropped out and is plain free space.
	if p.Quarantined() != 2 {
		t.Fatal(p.Quarantined())
	}
	if x := mustAlloc(t, p, 32, 2); x != got[3] {
		t.Fatalf("got %v want %v", x, got[3])
	}
	// Shrinking the limit frees the oldest now; 0 disables the quarantine.
	p.SetQuarantineLimit(1)
	mustCheck(t, p)
	if p.Quarantined() != 1 {
		t.Fatal(p.Quarantined())
	}
	p.SetQuarantineLimit(0)
	mustCheck(t, p)
	if err := p.Release(got[2]); err != nil {
		t.Fatal(err)
	}
	if p.Quarantined() != 0 {
		t.Fatal(p.Quarantined())
	}
	if x := mustAlloc(t, p, 31, 2); x != mp("10.0.0.0/31") {
		t.Fatal(x)
	}
}

func TestQuarantineDefaultBound(t *testing.T) {
	p := mustPool(t, "10.0.0.0/16")
	var got []netip.Prefix
	for range DefaultQuarantineLimit + 10 {
		got = append(got, mustAllocNoCheck(t, p))
	}
	for _, x := range got {
		if err := p.Release(x); err != nil {
			t.Fatal(err)
		}
	}
	mustCheck(t, p)
	if p.Quarantined() != DefaultQuarantineLimit {
		t.Fatal(p.Quarantined())
	}
	// The 10 oldest (10.0.0.0 .. 10.0.0.9) dropped out and, being lowest,
	// are what Allocate hands out next; then fresh space, not the quarantine.
	for i := range 11 {
		want := got[i]
		if i == 10 {
			want = mp("10.0.16.10/32")
		}
		if x := mustAllocNoCheck(t, p); x != want {
			t.Fatalf("allocation %d: %v want %v", i, x, want)
		}
	}
	// Steady churn (allocate, release, repeat) reuses an address only after
	// DefaultQuarantineLimit other releases.
	last := map[netip.Prefix]int{}
	for i := range 3 * DefaultQuarantineLimit {
		x := mustAllocNoCheck(t, p)
		if j, ok := last[x]; ok && i-j < DefaultQuarantineLimit {
			t.Fatalf("%v reused after %d releases", x, i-j)
		}
		last[x] = i
		if err := p.Release(x); err != nil {
			t.Fatal(err)
		}
	}
	mustCheck(t, p)
}

func mustAllocNoCheck(t testing.TB, p *Pool) netip.Prefix {
	t.Helper()
	x, err := p.Allocate(32, 1)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func TestClaimQuarantined(t *testing.T) {
	p := mustPool(t, "10.0.0.0/16")
	x := mp("10.0.0.9/32")
	if err := p.Claim(x, 1); err != nil {
		t.Fatal(err)
	}
	if err := p.Release(x); err != nil {
		t.Fatal(err)
	}
	// Moving a /32 to another VM: claim it right back.
	if err := p.Claim(x, 2); err != nil {
		t.Fatal(err)
	}
	mustCheck(t, p)
	if o, ok := p.OwnerOf(x); !ok || o != 2 || p.Quarantined() != 0 {
		t.Fatal(o, ok, p.Quarantined())
	}
	// A /32 inside a quarantined /24 frees the whole /24 from quarantine.
	if err := p.Claim(mp("10.0.5.0/24"), 3); err != nil {
		t.Fatal(err)
	}
	if err := p.Release(mp("10.0.5.0/24")); err != nil {
		t.Fatal(err)
	}
	if err := p.Claim(mp("10.0.5.77/32"), 4); err != nil {
		t.Fatal(err)
	}
	mustCheck(t, p)
	if p.Quarantined() != 0 {
		t.Fatal(p.Quarantined())
	}
	// A /24 covering quarantined /32s takes them all out of quarantine.
	for _, s := range []string{"10.0.7.1/32", "10.0.7.200/32"} {
		if err := p.Claim(mp(s), 5); err != nil {
			t.Fatal(err)
		}
		if err := p.Release(mp(s)); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Claim(mp("10.0.7.0/24"), 6); err != nil {
		t.Fatal(err)
	}
	mustCheck(t, p)
	if p.Quarantined() != 0 || p.Len() != 3 {
		t.Fatal(p.Quarantined(), p.Len())
	}
	// Quarantined blocks are not conflicts.
	_ = p.Release(mp("10.0.7.0/24"))
	if _, _, ok := p.Conflict(mp("10.0.7.0/24")); ok {
		t.Fatal("quarantined block reported as conflict")
	}
	if _, ok := p.OwnerOf(mp("10.0.7.0/24")); ok {
		t.Fatal("quarantined block has an owner")
	}
}

func TestConflictAndOwnerOf(t *testing.T) {
	p := mustPool(t, "10.0.0.0/16")
	for _, c := range []struct {
		s string
		o Owner
	}{{"10.0.1.0/24", 1}, {"10.0.2.5/32", 2}, {"10.0.128.0/17", 3}} {
		if err := p.Claim(mp(c.s), c.o); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		q    netip.Prefix
		want string // "" = no conflict
	}{
		{mp("10.0.1.0/24"), "10.0.1.0/24=1"},
		{mp("10.0.1.9/32"), "10.0.1.0/24=1"},
		{netip.PrefixFrom(ma("10.0.1.9"), 28), "10.0.1.0/24=1"}, // host bits ignored
		{mp("10.0.2.0/24"), "10.0.2.5/32=2"},
		{mp("10.0.0.0/22"), "10.0.1.0/24=1"},
		{mp("10.0.0.0/16"), "10.0.1.0/24=1"},
		{mp("10.0.0.0/8"), "10.0.1.0/24=1"}, // supernet of the range
		{mp("0.0.0.0/0"), "10.0.1.0/24=1"},
		{mp("10.0.200.0/24"), "10.0.128.0/17=3"},
		{mp("10.0.3.0/24"), ""},
		{mp("10.0.2.4/32"), ""},
		{mp("10.1.0.0/16"), ""}, // outside
		{mp("11.0.0.0/8"), ""},  // outside
		{mp("::/0"), ""},        // other family
		{netip.Prefix{}, ""},    // invalid
	} {
		pfx, o, ok := p.Conflict(tc.q)
		got := ""
		if ok {
			got = fmt.Sprintf("%v=%d", pfx, o)
		}
		if got != tc.want {
			t.Errorf("Conflict(%v) = %q want %q", tc.q, got, tc.want)
		}
	}
	for _, tc := range []struct {
		q  netip.Prefix
		o  Owner
		ok bool
	}{
		{mp("10.0.1.0/24"), 1, true},
		{mp("10.0.2.5/32"), 2, true},
		{mp("10.0.1.0/25"), 0, false},
		{mp("10.0.0.0/23"), 0, false},
		{mp("10.0.0.0/16"), 0, false},
		{mp("10.1.0.0/24"), 0, false},
		{netip.PrefixFrom(ma("10.0.1.1"), 24), 0, false},
	} {
		if o, ok := p.OwnerOf(tc.q); o != tc.o || ok != tc.ok {
			t.Errorf("OwnerOf(%v) = %d %v", tc.q, o, ok)
		}
	}
	empty := mustPool(t, "10.0.0.0/16")
	if _, _, ok := empty.Conflict(mp("10.0.0.0/16")); ok {
		t.Error("conflict in empty pool")
	}
}

func TestAllIteration(t *testing.T) {
	p := mustPool(t, "10.0.0.0/24")
	for range 10 {
		mustAlloc(t, p, 30, 1)
	}
	n := 0
	for range p.All {
		n++
		if n == 3 {
			break
		}
	}
	if n != 3 {
		t.Fatal(n)
	}
	// Releasing while iterating is allowed: each step resumes after the last.
	var seen []netip.Prefix
	for pfx := range p.All {
		seen = append(seen, pfx)
		if err := p.Release(pfx); err != nil {
			t.Fatal(err)
		}
	}
	if len(seen) != 10 || p.Len() != 0 {
		t.Fatal(len(seen), p.Len())
	}
	mustCheck(t, p)
}

func TestResize(t *testing.T) {
	p := mustPool(t, "10.0.4.0/24")
	if err := p.Claim(mp("10.0.4.128/25"), 1); err != nil {
		t.Fatal(err)
	}
	q := mustAlloc(t, p, 32, 2) // 10.0.4.0
	if err := p.Release(q); err != nil {
		t.Fatal(err)
	}
	// Grow (GCE expandIpCidrRange).
	if err := p.Resize(mp("10.0.0.0/21")); err != nil {
		t.Fatal(err)
	}
	mustCheck(t, p)
	if p.Range() != mp("10.0.0.0/21") || p.Len() != 1 || p.Quarantined() != 1 {
		t.Fatal(p.Range(), p.Len(), p.Quarantined())
	}
	if got := p.FreeBlocks(32); got != 2048-128 {
		t.Fatal(got)
	}
	if got := mustAlloc(t, p, 24, 3); got != mp("10.0.0.0/24") {
		t.Fatal(got)
	}
	for _, tc := range []struct {
		r   netip.Prefix
		err error
	}{
		{mp("10.0.8.0/21"), ErrOutOfRange},   // disjoint
		{mp("10.0.0.0/22"), ErrOutOfRange},   // would drop 10.0.4.128/25
		{mp("10.0.4.0/24"), ErrOutOfRange},   // would drop 10.0.0.0/24
		{mp("2001:db8::/32"), ErrOutOfRange}, // other family
		{netip.PrefixFrom(ma("10.0.0.1"), 20), ErrInvalid},
		{mp("10.0.0.0/21"), nil}, // same
	} {
		before := allocs(p)
		err := p.Resize(tc.r)
		if !errors.Is(err, tc.err) {
			t.Errorf("Resize(%v) = %v want %v", tc.r, err, tc.err)
		}
		if err != nil && !slices.Equal(before, allocs(p)) {
			t.Errorf("failed Resize changed the pool")
		}
		mustCheck(t, p)
	}
	if err := p.Release(mp("10.0.0.0/24")); err != nil {
		t.Fatal(err)
	}
	// Shrink: 10.0.4.128/25 fits in 10.0.4.0/24; the quarantined /24 outside
	// is dropped, 10.0.4.0/32 (inside) stays quarantined.
	if err := p.Resize(mp("10.0.4.0/24")); err != nil {
		t.Fatal(err)
	}
	mustCheck(t, p)
	if p.Range() != mp("10.0.4.0/24") || p.Len() != 1 || p.Quarantined() != 1 {
		t.Fatal(p.Range(), p.Len(), p.Quarantined())
	}
	if got := allocs(p); !slices.Equal(got, []string{"10.0.4.128/25=1"}) {
		t.Fatal(got)
	}
	if got := mustAlloc(t, p, 32, 4); got != mp("10.0.4.1/32") {
		t.Fatal(got)
	}
	// Empty pools resize freely.
	e := mustPool(t, "2001:db8::/64")
	if err := e.Resize(mp("2001:db8::/48")); err != nil {
		t.Fatal(err)
	}
	if err := e.Resize(mp("2001:db8:0:5::/64")); err != nil {
		t.Fatal(err)
	}
	mustCheck(t, e)
	if e.FreeBlocks(64) != 1 {
		t.Fatal(e.FreeBlocks(64))
	}
}

func TestFreeBlocksBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for trial := range 200 {
		p := mustPool(t, "192.168.4.0/26")
		var occupied [64]bool
		for range r.IntN(40) {
			bits := 26 + r.IntN(7)
			start := r.IntN(64) &^ (1<<(32-bits) - 1)
			pfx := netip.PrefixFrom(ma(fmt.Sprintf("192.168.4.%d", start)), bits)
			if p.Claim(pfx, 1) == nil {
				for i := start; i < start+1<<(32-bits); i++ {
					occupied[i] = true
				}
				if r.IntN(4) == 0 { // released (quarantined) space counts as free
					_ = p.Release(pfx)
					for i := start; i < start+1<<(32-bits); i++ {
						occupied[i] = false
					}
				}
			}
		}
		mustCheck(t, p)
		for bits := 24; bits <= 34; bits++ {
			var want uint64
			if bits >= 26 && bits <= 32 {
				size := 1 << (32 - bits)
				for s := 0; s < 64; s += size {
					if !slices.Contains(occupied[s:s+size], true) {
						want++
					}
				}
			}
			if got := p.FreeBlocks(bits); got != want {
				t.Fatalf("trial %d FreeBlocks(%d) = %d want %d", trial, bits, got, want)
			}
		}
	}
}

func TestClone(t *testing.T) {
	p := mustPool(t, "10.0.0.0/24")
	a := mustAlloc(t, p, 28, 1)
	b := mustAlloc(t, p, 28, 2)
	if err := p.Release(b); err != nil {
		t.Fatal(err)
	}
	c := p.Clone()
	mustCheck(t, c)
	// Mutate both; neither sees the other's changes.
	if err := c.Release(a); err != nil {
		t.Fatal(err)
	}
	x := mustAlloc(t, c, 25, 3)
	y := mustAlloc(t, p, 32, 4)
	if got := allocs(p); !slices.Equal(got, []string{a.String() + "=1", y.String() + "=4"}) {
		t.Fatal(got)
	}
	if got := allocs(c); !slices.Equal(got, []string{x.String() + "=3"}) {
		t.Fatal(got)
	}
	if p.Quarantined() != 1 || c.Quarantined() != 2 {
		t.Fatal(p.Quarantined(), c.Quarantined())
	}
	// The quarantine FIFO is copied too: draining one does not drain the other.
	c.SetQuarantineLimit(0)
	mustCheck(t, c)
	mustCheck(t, p)
	if p.Quarantined() != 1 {
		t.Fatal(p.Quarantined())
	}
	// Clone of an empty pool.
	e := mustPool(t, "::/0").Clone()
	mustAlloc(t, e, 64, 1)
}

func TestAllocateRandom(t *testing.T) {
	p := mustPool(t, "10.0.0.0/22")
	r := rand.New(rand.NewPCG(5, 6))
	seen := map[netip.Prefix]bool{}
	lowHalf := 0
	for range 200 {
		x, err := p.AllocateRandom(32, 1, r.Uint64N)
		if err != nil {
			t.Fatal(err)
		}
		if seen[x] || !p.Range().Contains(x.Addr()) || x.Bits() != 32 {
			t.Fatalf("bad pick %v", x)
		}
		seen[x] = true
		if x.Addr().Less(ma("10.0.2.0")) {
			lowHalf++
		}
	}
	mustCheck(t, p)
	if lowHalf < 60 || lowHalf > 140 { // first fit would give 200
		t.Fatalf("%d of 200 picks in the lower half", lowHalf)
	}
	// Same random stream, same choices.
	p1, p2 := mustPool(t, "2001:db8::/32"), mustPool(t, "2001:db8::/32")
	r1, r2 := rand.New(rand.NewPCG(9, 9)), rand.New(rand.NewPCG(9, 9))
	for range 50 {
		x1, _ := p1.AllocateRandom(64, 1, r1.Uint64N)
		x2, _ := p2.AllocateRandom(64, 1, r2.Uint64N)
		if x1 != x2 {
			t.Fatal(x1, x2)
		}
	}
	// Wide IPv6: more than 64 random bits are drawn in pieces.
	p3 := mustPool(t, "::/0")
	x, err := p3.AllocateRandom(128, 1, r.Uint64N)
	if err != nil || x.Bits() != 128 {
		t.Fatal(x, err)
	}
	// A misbehaving rnd (out of [0,n)) is reduced, not trusted.
	p4 := mustPool(t, "10.0.0.0/30")
	for range 4 {
		if _, err := p4.AllocateRandom(32, 1, func(uint64) uint64 { return math.MaxUint64 }); err != nil {
			t.Fatal(err)
		}
	}
	mustCheck(t, p4)
	// Nearly full: fallback scan finds the only hole.
	p5 := mustPool(t, "10.0.0.0/24")
	for range 256 {
		mustAlloc(t, p5, 32, 1)
	}
	_ = p5.Release(mp("10.0.0.77/32"))
	p5.SetQuarantineLimit(0)
	if x, err := p5.AllocateRandom(32, 2, r.Uint64N); err != nil || x != mp("10.0.0.77/32") {
		t.Fatal(x, err)
	}
}

func TestReserved(t *testing.T) {
	str := func(as []netip.Addr) string {
		var s []string
		for _, a := range as {
			s = append(s, a.String())
		}
		return strings.Join(s, " ")
	}
	for _, tc := range []struct {
		r        string
		gce, ali string
	}{
		{"10.0.0.0/29", "10.0.0.0 10.0.0.1 10.0.0.6 10.0.0.7", "10.0.0.0 10.0.0.5 10.0.0.6 10.0.0.7"},
		{"10.0.0.0/24", "10.0.0.0 10.0.0.1 10.0.0.254 10.0.0.255", "10.0.0.0 10.0.0.253 10.0.0.254 10.0.0.255"},
		{"192.168.1.0/24", "192.168.1.0 192.168.1.1 192.168.1.254 192.168.1.255", "192.168.1.0 192.168.1.253 192.168.1.254 192.168.1.255"},
		{"10.0.0.0/30", "10.0.0.0 10.0.0.1 10.0.0.2 10.0.0.3", "10.0.0.0 10.0.0.1 10.0.0.2 10.0.0.3"},
		{"10.0.0.0/31", "10.0.0.0 10.0.0.1", "10.0.0.0 10.0.0.1"},
		{"10.0.0.5/32", "10.0.0.5", "10.0.0.5"},
		{"10.0.0.77/24", "10.0.0.0 10.0.0.1 10.0.0.254 10.0.0.255", "10.0.0.0 10.0.0.253 10.0.0.254 10.0.0.255"},
		{"2001:db8::/64", "",
			"2001:db8:: 2001:db8::ffff:ffff:ffff:fff7 2001:db8::ffff:ffff:ffff:fff8 2001:db8::ffff:ffff:ffff:fff9 " +
				"2001:db8::ffff:ffff:ffff:fffa 2001:db8::ffff:ffff:ffff:fffb 2001:db8::ffff:ffff:ffff:fffc " +
				"2001:db8::ffff:ffff:ffff:fffd 2001:db8::ffff:ffff:ffff:fffe 2001:db8::ffff:ffff:ffff:ffff"},
	} {
		if got := str(ReservedGCE(mp(tc.r))); got != tc.gce {
			t.Errorf("ReservedGCE(%s) = %s want %s", tc.r, got, tc.gce)
		}
		if got := str(ReservedAlibaba(mp(tc.r))); got != tc.ali {
			t.Errorf("ReservedAlibaba(%s) = %s want %s", tc.r, got, tc.ali)
		}
	}
	if ReservedGCE(netip.Prefix{}) != nil || ReservedAlibaba(netip.Prefix{}) != nil {
		t.Error("invalid prefix")
	}
}

// TestMemoryIndependentOfRangeSize: an empty pool over a huge range costs
// the same as over a tiny one, and one allocation adds a few nodes.
func TestMemoryIndependentOfRangeSize(t *testing.T) {
	for _, r := range []string{"10.0.0.0/8", "2001:db8::/48", "::/0"} {
		p := mustPool(t, r)
		if int(p.nnodes) != 0 || p.fb != nil || p.q.buf != nil {
			t.Fatalf("%s: empty pool allocated", r)
		}
		mustAlloc(t, p, p.Range().Addr().BitLen(), 1)
		if n := int(p.nnodes); n > p.Range().Addr().BitLen()-p.Range().Bits()+2 {
			t.Fatalf("%s: %d nodes for one allocation", r, n)
		}
	}
}

// TestAllocateRandomUniform: every free address is picked about equally
// often, however the allocated space is laid out (a dense low half, which
// defeats "next free after a random point" schemes, plus scattered holes).
func TestAllocateRandomUniform(t *testing.T) {
	for _, tc := range []struct {
		r     string
		claim []string
		bits  int
	}{
		{"10.0.0.0/24", []string{"10.0.0.0/25", "10.0.0.128/27", "10.0.0.200/32", "10.0.0.201/32", "10.0.0.250/31"}, 32},
		{"2001:db8::/120", []string{"2001:db8::/121", "2001:db8::80/123", "2001:db8::c8/127"}, 128},
		{"10.0.0.0/16", []string{"10.0.0.0/17", "10.0.128.0/20", "10.0.200.0/24", "10.0.255.0/24"}, 24},
	} {
		p := mustPool(t, tc.r)
		p.SetQuarantineLimit(0) // so that Release restores the pool exactly
		for _, c := range tc.claim {
			if err := p.Claim(mp(c), 1); err != nil {
				t.Fatal(err)
			}
		}
		free := int(p.FreeBlocks(tc.bits))
		const perBlock = 2000
		trials := free * perBlock
		counts := map[netip.Prefix]int{}
		r := rand.New(rand.NewPCG(11, 12))
		for range trials {
			x, err := p.AllocateRandom(tc.bits, 2, r.Uint64N)
			if err != nil {
				t.Fatal(err)
			}
			counts[x]++
			if err := p.Release(x); err != nil {
				t.Fatal(err)
			}
		}
		mustCheck(t, p)
		if len(counts) != free {
			t.Fatalf("%s: %d distinct picks, %d free blocks", tc.r, len(counts), free)
		}
		// Binomial: sd = sqrt(perBlock) ~ 45; allow 5 sd.
		for x, c := range counts {
			if _, _, busy := p.Conflict(x); busy {
				t.Fatalf("picked allocated %v", x)
			}
			if c < perBlock-225 || c > perBlock+225 {
				t.Errorf("%s: %v picked %d times, want %d±225", tc.r, x, c, perBlock)
			}
		}
	}
}
