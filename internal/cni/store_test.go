package cni

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func alloc(t *testing.T, dir string, rng netip.Prefix, id string) netip.Addr {
	t.Helper()
	st, err := OpenStore(dir, "pods", rng)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	a, err := st.Allocate(Attachment{ContainerID: id, IfName: "eth0"})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func release(t *testing.T, dir string, rng netip.Prefix, id string) {
	t.Helper()
	st, err := OpenStore(dir, "pods", rng)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, al := range st.Find(id, "eth0") {
		if err := st.Release(al.IP); err != nil {
			t.Fatal(err)
		}
	}
}

func TestStoreRoundRobinAndExhaustion(t *testing.T) {
	dir := t.TempDir()
	rng := netip.MustParsePrefix("10.4.0.0/29") // .1 to .6 usable
	var got []string
	for i := range 6 {
		got = append(got, alloc(t, dir, rng, fmt.Sprint("c", i)).String())
	}
	if fmt.Sprint(got) != "[10.4.0.1 10.4.0.2 10.4.0.3 10.4.0.4 10.4.0.5 10.4.0.6]" {
		t.Fatalf("allocations %v", got)
	}
	st, _ := OpenStore(dir, "pods", rng)
	if _, err := st.Allocate(Attachment{ContainerID: "x"}); err == nil {
		t.Fatal("allocated from a full range")
	}
	st.Close()
	// Release .2 and .4: the next allocations take them in release-cursor
	// order, .2 only after every other free address.
	release(t, dir, rng, "c1")
	release(t, dir, rng, "c3")
	if a := alloc(t, dir, rng, "n1"); a.String() != "10.4.0.2" {
		t.Fatalf("got %s", a) // the cursor was at .6: wraps to the first free
	}
	release(t, dir, rng, "n1")
	// .2 was just released: .4 comes first.
	if a := alloc(t, dir, rng, "n2"); a.String() != "10.4.0.4" {
		t.Fatalf("got %s, want 10.4.0.4 (not the address released a moment ago)", a)
	}
}

func TestStoreCursorLost(t *testing.T) {
	dir := t.TempDir()
	rng := netip.MustParsePrefix("10.4.0.0/24")
	for i := range 5 {
		alloc(t, dir, rng, fmt.Sprint("c", i))
	}
	release(t, dir, rng, "c4") // .5 freed
	// A torn cursor: continue after the newest allocation on disk (.4),
	// so the freshly released .5 is next only because it is the next
	// address, not because of reuse; .1 to .4 stay live.
	os.WriteFile(filepath.Join(dir, "pods", "cursor"), []byte("garbage"), 0o600)
	if a := alloc(t, dir, rng, "n"); a.String() != "10.4.0.5" {
		t.Fatalf("got %s", a)
	}
	os.Remove(filepath.Join(dir, "pods", "cursor"))
	if a := alloc(t, dir, rng, "m"); a.String() != "10.4.0.6" {
		t.Fatalf("got %s", a)
	}
}

func TestStoreConcurrent(t *testing.T) {
	dir := t.TempDir()
	rng := netip.MustParsePrefix("10.4.0.0/24")
	const N = 200
	out := make([]netip.Addr, N)
	var wg sync.WaitGroup
	for i := range N {
		wg.Go(func() {
			st, err := OpenStore(dir, "pods", rng)
			if err != nil {
				t.Error(err)
				return
			}
			defer st.Close()
			a, err := st.Allocate(Attachment{ContainerID: fmt.Sprint("c", i), IfName: "eth0"})
			if err != nil && i < 254 {
				t.Error(err)
			}
			out[i] = a
		})
	}
	wg.Wait()
	seen := map[netip.Addr]int{}
	for i, a := range out {
		if j, dup := seen[a]; dup {
			t.Fatalf("c%d and c%d both got %s", i, j, a)
		}
		seen[a] = i
	}
	st, _ := OpenStore(dir, "pods", rng)
	defer st.Close()
	if n := len(st.List()); n != N {
		t.Fatalf("%d files", n)
	}
	if al := st.Find("c7", "eth0"); len(al) != 1 || al[0].IP != out[7] {
		t.Fatalf("Find c7: %+v", al)
	}
}

func TestRangeFromMetadata(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Metadata-Flavor") != "Google" || r.URL.Path != "/computeMetadata/v1/instance/network-interfaces/0/ip-aliases/" {
			http.Error(w, "no", http.StatusForbidden)
			return
		}
		fmt.Fprint(w, "10.128.7.29/32\n172.16.3.0/24\n10.128.0.32/27\n")
	}))
	defer srv.Close()
	dir := t.TempDir()
	c, err := parseConf([]byte(`{"cniVersion":"1.0.0","name":"pods","type":"aliasnet","dataDir":"` + dir + `","metadata":"` + srv.URL + `"}`))
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.podRange()
	if err != nil || p.String() != "172.16.3.0/24" {
		t.Fatalf("range %v %v", p, err)
	}
	// Cached: answers with the server gone.
	srv.Close()
	if p, err := c.podRange(); err != nil || p.String() != "172.16.3.0/24" {
		t.Fatalf("cached range %v %v", p, err)
	}
	one := 2
	c2 := *c
	c2.RangeIndex, c2.DataDir = &one, t.TempDir()
	if _, err := c2.podRange(); err == nil {
		t.Fatal("metadata server gone, no cache: want an error")
	}
}

func TestHostVethName(t *testing.T) {
	a, b := hostVethName("c1", "eth0"), hostVethName("c1", "eth1")
	if len(a) > 15 || a == b || a != hostVethName("c1", "eth0") {
		t.Fatalf("%q %q", a, b)
	}
}
