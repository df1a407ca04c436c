package cni

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
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
	os.WriteFile(filepath.Join(dir, "pods", "lock"), []byte("garbage"), 0o600)
	if a := alloc(t, dir, rng, "n"); a.String() != "10.4.0.5" {
		t.Fatalf("got %s", a)
	}
	os.Truncate(filepath.Join(dir, "pods", "lock"), 0)
	if a := alloc(t, dir, rng, "m"); a.String() != "10.4.0.6" {
		t.Fatalf("got %s", a)
	}
	// A longer address before a shorter one: nothing of the old one stays.
	st, err := OpenStore(dir, "pods", rng)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	st.setCursor(netip.MustParseAddr("10.4.0.200"))
	st.setCursor(netip.MustParseAddr("10.4.0.9"))
	if c := st.cursor(); c.String() != "10.4.0.9" {
		t.Fatalf("cursor %s", c)
	}
}

// TestStoreLegacyState: state written before the attachment links and
// the in-place cursor (address files and a cursor file only) is indexed
// once when opened, and its attachments are found.
func TestStoreLegacyState(t *testing.T) {
	dir := t.TempDir()
	rng := netip.MustParsePrefix("10.4.0.0/24")
	nd := filepath.Join(dir, "pods")
	os.MkdirAll(nd, 0o700)
	for i, id := range []string{"old1", "old2"} {
		os.WriteFile(filepath.Join(nd, fmt.Sprintf("10.4.0.%d", i+1)), []byte(`{"containerID":"`+id+`","ifName":"eth0","created":"2026-01-01T00:00:00Z"}`), 0o600)
	}
	os.WriteFile(filepath.Join(nd, "10.4.0.9"), []byte(`{"contai`), 0o600) // torn
	os.WriteFile(filepath.Join(nd, "cursor"), []byte("10.4.0.9\n"), 0o600)
	os.WriteFile(filepath.Join(nd, "lock"), nil, 0o600)
	st, err := OpenStore(dir, "pods", rng)
	if err != nil {
		t.Fatal(err)
	}
	if al := st.Find("old2", "eth0"); len(al) != 1 || al[0].IP.String() != "10.4.0.2" {
		t.Fatalf("Find old2 = %+v", al)
	}
	if c := st.cursor(); c.String() != "10.4.0.9" {
		t.Fatalf("legacy cursor %s", c)
	}
	a, err := st.Allocate(Attachment{ContainerID: "new", IfName: "eth0"})
	if err != nil || a.String() != "10.4.0.10" {
		t.Fatalf("allocate after the legacy cursor: %s %v", a, err)
	}
	st.Close()
	for _, al := range allocations(t, dir, rng) {
		if al.IP.String() == "10.4.0.9" {
			if al.ContainerID != "?" {
				t.Fatalf("torn file %+v", al)
			}
		}
	}
}

func allocations(t *testing.T, dir string, rng netip.Prefix) []Allocation {
	st, err := OpenStore(dir, "pods", rng)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	return st.List()
}

// TestStoreLinks: an attachment is found through its link; a stale link
// (its address now another attachment's) finds nothing; an address file
// whose attachment's link points elsewhere is an orphan; Release removes
// only a link that points at the released address.
func TestStoreLinks(t *testing.T) {
	dir := t.TempDir()
	rng := netip.MustParsePrefix("10.4.0.0/24")
	a := alloc(t, dir, rng, "c1")
	st, err := OpenStore(dir, "pods", rng)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if al := st.Find("c1", "eth0"); len(al) != 1 || al[0].IP != a {
		t.Fatalf("Find = %+v", al)
	}
	if al := st.Find("c1", "eth1"); len(al) != 0 {
		t.Fatalf("Find other ifname = %+v", al)
	}
	// A crash between the address file and the link, then a retried ADD:
	// the first address is an orphan.
	b, err := st.Allocate(Attachment{ContainerID: "c1", IfName: "eth0"})
	if err != nil {
		t.Fatal(err)
	}
	var orphans []netip.Addr
	for _, al := range st.List() {
		if st.Orphan(al) {
			orphans = append(orphans, al.IP)
		}
	}
	if len(orphans) != 1 || orphans[0] != a {
		t.Fatalf("orphans %v, want [%s]", orphans, a)
	}
	if err := st.Release(a); err != nil {
		t.Fatal(err)
	}
	if al := st.Find("c1", "eth0"); len(al) != 1 || al[0].IP != b {
		t.Fatalf("releasing the orphan removed the live link: %+v", al)
	}
	// The link of c1 made stale by hand: its address belongs to c2.
	if err := st.Release(b); err != nil {
		t.Fatal(err)
	}
	os.Symlink(b.String(), st.linkName("c1", "eth0"))
	os.WriteFile(filepath.Join(dir, "pods", b.String()), []byte(`{"containerID":"c2","ifName":"eth0"}`), 0o600)
	if al := st.Find("c1", "eth0"); len(al) != 0 {
		t.Fatalf("stale link found %+v", al)
	}
	if c, err := st.Allocate(Attachment{ContainerID: "c1", IfName: "eth0"}); err != nil || st.Find("c1", "eth0")[0].IP != c {
		t.Fatalf("allocate over a stale link: %s %v", c, err)
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
	var mu sync.Mutex
	attr := "" // the pod range attribute; "" answers 404 (not a cluster node)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.Header.Get("Metadata-Flavor") != "Google" {
			http.Error(w, "no", http.StatusForbidden)
			return
		}
		switch r.URL.Path {
		case "/computeMetadata/v1/instance/network-interfaces/0/ip-aliases/":
			fmt.Fprint(w, "10.128.7.29/32\n172.16.3.0/24\n10.128.0.32/27\n")
		case "/computeMetadata/v1/instance/attributes/" + PodRangeAttribute:
			if attr == "" {
				http.NotFound(w, r)
				return
			}
			fmt.Fprint(w, attr)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	conf := func(dir string) *NetConf {
		c, err := parseConf([]byte(`{"cniVersion":"1.0.0","name":"pods","type":"aliasnet","dataDir":"` + dir + `","metadata":"` + srv.URL + `"}`))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	// No attribute: the largest alias range.
	c := conf(t.TempDir())
	p, err := c.podRange()
	if err != nil || p.String() != "172.16.3.0/24" {
		t.Fatalf("range %v %v", p, err)
	}
	// The attribute names the pod range, whatever the other aliases.
	mu.Lock()
	attr = "10.128.0.32/27"
	mu.Unlock()
	if p, err := conf(t.TempDir()).podRange(); err != nil || p.String() != "10.128.0.32/27" {
		t.Fatalf("range from the attribute %v %v", p, err)
	}
	mu.Lock()
	attr = "not-a-range"
	mu.Unlock()
	if _, err := conf(t.TempDir()).podRange(); err == nil || !strings.Contains(err.Error(), PodRangeAttribute) {
		t.Fatalf("bad attribute: %v", err)
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

func TestParseResponse(t *testing.T) {
	for _, c := range []struct {
		raw    string
		status int
		body   string
		bad    bool
	}{
		{raw: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", status: 200, body: "hello"},
		{raw: "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n\r\nnope\n", status: 404, body: "nope\n"},
		{raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n10.1\r\nb;x=1\r\n.0.0/24\n1.2\r\n0\r\n\r\n", status: 200, body: "10.1.0.0/24\n1.2"},
		{raw: "HTTP/1.0 200 OK\r\nContent-Length: 9\r\n\r\nshort", bad: true},
		{raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nff\r\nab", bad: true},
		{raw: "SSH-2.0-OpenSSH\r\n\r\n", bad: true},
		{raw: "HTTP/1.1 200 OK\r\n", bad: true},
	} {
		status, body, err := parseResponse([]byte(c.raw))
		if c.bad != (err != nil) || !c.bad && (status != c.status || string(body) != c.body) {
			t.Errorf("parseResponse(%q) = %d %q %v", c.raw, status, body, err)
		}
	}
}

func TestHostVethName(t *testing.T) {
	a, b := hostVethName("c1", "eth0"), hostVethName("c1", "eth1")
	if len(a) > 15 || a == b || a != hostVethName("c1", "eth0") {
		t.Fatalf("%q %q", a, b)
	}
}
