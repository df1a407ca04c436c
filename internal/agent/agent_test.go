package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

func TestParseList(t *testing.T) {
	for in, want := range map[string][]string{
		`["10.0.0.2","10.0.0.3"]`:  {"10.0.0.2", "10.0.0.3"},
		`[2408:4321::1,2408::2]`:   {"2408:4321::1", "2408::2"},
		`[]`:                       nil,
		"":                         nil,
		"10.0.0.1\n10.0.0.2\n":     {"10.0.0.1", "10.0.0.2"},
		`[ "10.0.0.1" , 10.0.0.2]`: {"10.0.0.1", "10.0.0.2"},
	} {
		if got := parseList(in); !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
			t.Errorf("parseList(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParsePrefix(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.5": "10.0.0.5/32", "10.1.0.7/24": "10.1.0.0/24", "2001:db8::1": "2001:db8::1/128",
		"::ffff:10.0.0.1": "10.0.0.1/32", "::ffff:10.0.0.0/120": "10.0.0.0/24",
	} {
		p, err := parsePrefix(in)
		if err != nil || p.String() != want {
			t.Errorf("parsePrefix(%q) = %v, %v; want %s", in, p, err, want)
		}
	}
	for _, bad := range []string{"", "x", "10.0.0.1/33", "::ffff:0:0/90"} {
		if _, err := parsePrefix(bad); err == nil {
			t.Errorf("parsePrefix(%q) accepted", bad)
		}
	}
}

func TestLinksByMAC(t *testing.T) {
	mac, _ := net.ParseMAC("42:01:0a:00:00:02")
	mk := func(idx int, kind string) netlink.Link {
		la := netlink.LinkAttrs{Index: idx, Name: fmt.Sprint(kind, idx), HardwareAddr: mac}
		switch kind {
		case "vlan":
			return &netlink.Vlan{LinkAttrs: la}
		default:
			return &netlink.Device{LinkAttrs: la}
		}
	}
	got := linksByMAC([]netlink.Link{mk(7, "vlan"), mk(9, "dev"), mk(3, "vlan"), mk(4, "dev")})
	if l := got["42:01:0a:00:00:02"]; l == nil || l.Attrs().Index != 4 {
		t.Fatalf("picked %v", l)
	}
}

// --- tests in a network namespace of their own ---

var nsSeq atomic.Int32

func needRoot(t *testing.T) {
	t.Helper()
	why := ""
	if os.Geteuid() != 0 {
		why = "not root"
	} else if _, err := exec.LookPath("ip"); err != nil {
		why = "no ip command"
	}
	if why != "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("namespace tests need root and iproute2: %s", why)
		}
		t.Skip(why)
	}
}

func sh(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// testNS creates a namespace with an interface d0 (MAC
// 42:01:0a:00:00:02, 10.0.0.2/24) and removes it at cleanup.
func testNS(t *testing.T) (string, netns.NsHandle) {
	needRoot(t)
	name := fmt.Sprintf("an-agt-%d-%d", os.Getpid(), nsSeq.Add(1))
	sh(t, "ip", "netns", "add", name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	sh(t, "ip", "-n", name, "link", "set", "lo", "up")
	// A veth pair (the dummy module may be missing): d0 is the "NIC".
	sh(t, "ip", "-n", name, "link", "add", "d0", "address", "42:01:0a:00:00:02", "type", "veth", "peer", "name", "d0p")
	sh(t, "ip", "-n", name, "link", "set", "d0", "up")
	sh(t, "ip", "-n", name, "link", "set", "d0p", "up")
	sh(t, "ip", "-n", name, "addr", "add", "10.0.0.2/24", "dev", "d0")
	return name, h
}

func newTestAgent(t *testing.T, h netns.NsHandle, dialect Dialect, url, state string) *Agent {
	t.Helper()
	a, err := New(Config{MetadataURL: url, Dialect: dialect, StateFile: state, NetNS: &h, Resync: 200 * time.Millisecond,
		PollTimeout: 5 * time.Second, PollInterval: 100 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return a
}

// routes lists the namespace's local-table routes with protocol 66.
func routes(t *testing.T, ns string) string {
	var b strings.Builder
	for _, fam := range []string{"-4", "-6"} {
		for _, l := range strings.Split(sh(t, "ip", "-n", ns, fam, "route", "show", "table", "local"), "\n") {
			if strings.Contains(l, " proto 66") {
				b.WriteString(l + "\n")
			}
		}
	}
	return b.String()
}

func addrs(t *testing.T, ns string) string { return sh(t, "ip", "-n", ns, "addr", "show", "dev", "d0") }

func pfxs(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func TestReconcileOwnsOnlyItsOwn(t *testing.T) {
	ns, h := testNS(t)
	state := filepath.Join(t.TempDir(), "state.json")
	a := newTestAgent(t, h, GCE, "http://127.0.0.1:1", state)

	// Someone else's local route and address, which the agent must keep.
	sh(t, "ip", "-n", ns, "route", "add", "local", "10.5.0.0/24", "dev", "d0", "table", "local", "proto", "static")
	sh(t, "ip", "-n", ns, "addr", "add", "10.0.0.77/32", "dev", "d0")

	want := &Desired{NICs: []NIC{
		{MAC: "42:01:0a:00:00:02", Routes: pfxs("10.1.0.0/24", "10.0.0.9/32", "2001:db8:1::/64"),
			Addrs: pfxs("10.0.0.20/32", "2001:db8::20/128", "10.0.0.77/32")},
		{MAC: "42:01:0a:00:00:99", Routes: pfxs("10.9.0.0/24")}, // no such interface
	}}
	res, err := a.Reconcile(want)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.RoutesAdded) != 3 || len(res.AddrsAdded) != 2 {
		t.Fatalf("first pass: %+v", res)
	}
	r := routes(t, ns)
	for _, w := range []string{"local 10.1.0.0/24 dev d0 proto 66 scope host", "local 10.0.0.9 dev d0 proto 66 scope host", "local 2001:db8:1::/64 dev d0 proto 66"} {
		if !strings.Contains(r, w) {
			t.Errorf("routes lack %q:\n%s", w, r)
		}
	}
	ad := addrs(t, ns)
	for _, w := range []string{"inet 10.0.0.20/32", "inet6 2001:db8::20/128", "inet 10.0.0.77/32"} {
		if !strings.Contains(ad, w) {
			t.Errorf("addresses lack %q:\n%s", w, ad)
		}
	}
	// Idempotent.
	if res, err := a.Reconcile(want); err != nil || res.Changed() {
		t.Fatalf("second pass changed %+v, %v", res, err)
	}
	// The kernel answers for the whole range.
	if out := sh(t, "ip", "-n", ns, "route", "get", "10.1.0.200"); !strings.HasPrefix(out, "local 10.1.0.200") {
		t.Fatalf("route get: %s", out)
	}

	// A second agent (restart) with the same state file removes what the
	// first added when the metadata drops it — and nothing else.
	a.Close()
	b := newTestAgent(t, h, GCE, "http://127.0.0.1:1", state)
	res, err = b.Reconcile(&Desired{NICs: []NIC{{MAC: "42:01:0a:00:00:02", Routes: pfxs("10.1.0.0/24")}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.RoutesRemoved) != 2 || len(res.AddrsRemoved) != 2 {
		t.Fatalf("shrink: %+v", res)
	}
	r, ad = routes(t, ns), addrs(t, ns)
	if strings.Contains(r, "10.0.0.9") || strings.Contains(r, "2001:db8:1::") || !strings.Contains(r, "10.1.0.0/24") {
		t.Fatalf("routes after shrink:\n%s", r)
	}
	if strings.Contains(ad, "10.0.0.20") || strings.Contains(ad, "2001:db8::20") || !strings.Contains(ad, "10.0.0.77/32") {
		t.Fatalf("addresses after shrink (10.0.0.77 is not the agent's):\n%s", ad)
	}
	if all := sh(t, "ip", "-n", ns, "route", "show", "table", "local"); !strings.Contains(all, "local 10.5.0.0/24 dev d0 proto static") {
		t.Fatalf("foreign local route removed:\n%s", all)
	}
	var sj stateJSON
	b2, _ := os.ReadFile(state)
	if err := json.Unmarshal(b2, &sj); err != nil || len(sj.Addresses) != 0 {
		t.Fatalf("state = %s, %v", b2, err)
	}

	// A route the agent wants but someone else holds is left alone.
	sh(t, "ip", "-n", ns, "route", "add", "local", "10.6.0.0/24", "dev", "d0", "table", "local", "proto", "static")
	if _, err := b.Reconcile(&Desired{NICs: []NIC{{MAC: "42:01:0a:00:00:02", Routes: pfxs("10.6.0.0/24")}}}); err != nil {
		t.Fatal(err)
	}
	if all := sh(t, "ip", "-n", ns, "route", "show", "table", "local"); !strings.Contains(all, "local 10.6.0.0/24 dev d0 proto static") {
		t.Fatalf("foreign route replaced:\n%s", all)
	}
}

// fakeGCE is a metadata server answering the recursive instance query
// with long-poll, on a fixed address so it can be restarted.
type fakeGCE struct {
	mu      sync.Mutex
	nics    []gceNIC
	attrs   map[string]string
	changed chan struct{}
	srv     *http.Server
	addr    string
	hits    atomic.Int32
}

func (f *fakeGCE) set(aliases ...string) {
	f.mu.Lock()
	f.nics = []gceNIC{{IP: "10.0.0.2", Mac: "42:01:0a:00:00:02", IPAliases: aliases}}
	close(f.changed)
	f.changed = make(chan struct{})
	f.mu.Unlock()
}

// setPodRange names the node's pod range in the instance attributes (""
// removes it), as aliasnet's metadata server does for cluster nodes.
func (f *fakeGCE) setPodRange(r string) {
	f.mu.Lock()
	f.attrs = map[string]string{"enable-oslogin": "TRUE"}
	if r != "" {
		f.attrs[PodRangeAttribute] = r
	}
	close(f.changed)
	f.changed = make(chan struct{})
	f.mu.Unlock()
}

func (f *fakeGCE) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.hits.Add(1)
	if r.Header.Get("Metadata-Flavor") != "Google" || r.URL.Path != "/computeMetadata/v1/instance/" || r.URL.Query().Get("recursive") != "true" {
		http.Error(w, "no", 403)
		return
	}
	for {
		f.mu.Lock()
		attrs := f.attrs
		if attrs == nil {
			attrs = map[string]string{}
		}
		b, _ := json.Marshal(map[string]any{"id": 12345, "attributes": attrs, "networkInterfaces": f.nics, "tags": []string{}})
		ch := f.changed
		f.mu.Unlock()
		etag := fmt.Sprintf("%x", len(b))
		for _, c := range b {
			etag += fmt.Sprintf("%02x", c)
		}
		etag = etag[:min(len(etag), 60)]
		if r.URL.Query().Get("wait_for_change") != "true" || r.URL.Query().Get("last_etag") != etag {
			w.Header().Set("ETag", etag)
			w.Write(b)
			return
		}
		select {
		case <-ch:
		case <-r.Context().Done():
			return
		case <-time.After(5 * time.Second):
			w.Header().Set("ETag", etag)
			w.Write(b)
			return
		}
	}
}

func (f *fakeGCE) start(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	f.addr = ln.Addr().String()
	f.srv = &http.Server{Handler: f}
	go f.srv.Serve(ln)
}

func (f *fakeGCE) stop() { f.srv.Close() }

func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

func TestRunFollowsMetadata(t *testing.T) {
	ns, h := testNS(t)
	f := &fakeGCE{changed: make(chan struct{}), addr: "127.0.0.1:0"}
	f.set("10.1.0.0/24")
	f.start(t)
	defer func() { f.stop() }()
	a := newTestAgent(t, h, GCE, "http://"+f.addr+"/computeMetadata/v1/", filepath.Join(t.TempDir(), "s.json"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	has := func(s string) func() bool { return func() bool { return strings.Contains(routes(t, ns), s) } }
	waitFor(t, "first route", 5*time.Second, has("10.1.0.0/24"))

	// An update reaches the namespace through the long-poll.
	f.set("10.1.0.0/24", "10.2.0.0/24")
	if d := waitFor(t, "added route", 5*time.Second, has("10.2.0.0/24")); d > time.Second {
		t.Errorf("update took %v", d)
	}
	// Deleted by hand: it comes back.
	sh(t, "ip", "-n", ns, "route", "del", "local", "10.2.0.0/24", "dev", "d0", "table", "local")
	if d := waitFor(t, "route restored", 5*time.Second, has("10.2.0.0/24")); d > time.Second {
		t.Errorf("restore took %v", d)
	}
	// The server goes away: the configuration stays.
	f.stop()
	time.Sleep(300 * time.Millisecond)
	if !has("10.2.0.0/24")() || !has("10.1.0.0/24")() {
		t.Fatalf("routes dropped while the server was away:\n%s", routes(t, ns))
	}
	// It comes back with another configuration: the agent follows.
	f.set("10.3.0.0/24")
	f.start(t)
	waitFor(t, "recovery", 10*time.Second, func() bool {
		r := routes(t, ns)
		return strings.Contains(r, "10.3.0.0/24") && !strings.Contains(r, "10.1.0.0/24")
	})
	// The instance becomes a Kubernetes node: its pod range arrives as an
	// alias with the attribute naming it; the agent installs nothing for
	// it (and removes its own route when the attribute comes late) and
	// keeps handling every other alias.
	f.set("10.3.0.0/24", "10.4.0.0/24")
	waitFor(t, "pod range alias", 5*time.Second, has("10.4.0.0/24"))
	f.setPodRange("10.4.0.0/24")
	waitFor(t, "pod range left alone", 5*time.Second, func() bool {
		r := routes(t, ns)
		return !strings.Contains(r, "10.4.0.0/24") && strings.Contains(r, "10.3.0.0/24")
	})
	f.set("10.3.0.0/24", "10.4.0.0/24", "10.5.0.7/32")
	waitFor(t, "other alias of the node", 5*time.Second, has("10.5.0.7"))
	time.Sleep(300 * time.Millisecond) // a few resyncs
	if r := routes(t, ns); strings.Contains(r, "10.4.0.0/24") {
		t.Fatalf("local route for the pod range:\n%s", r)
	}
	if out := routeGet(ns, "10.4.0.9"); strings.HasPrefix(out, "local") {
		t.Fatalf("the node answers for a pod address: %s", out)
	}
	// The node leaves the cluster but keeps the range as a plain alias:
	// it is local again.
	f.setPodRange("")
	waitFor(t, "plain alias again", 5*time.Second, has("10.4.0.0/24"))
}

// fakeAlibaba serves the Alibaba tree without ETags (plain polling).
type fakeAlibaba struct {
	mu   sync.Mutex
	ipv4 []string
}

func (f *fakeAlibaba) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	const m = "/latest/meta-data/network/interfaces/macs/"
	switch r.URL.Path {
	case m:
		io.WriteString(w, "42:01:0a:00:00:02/")
	case m + "42:01:0a:00:00:02/primary-ip-address":
		io.WriteString(w, "10.0.0.2")
	case m + "42:01:0a:00:00:02/private-ipv4s":
		b, _ := json.Marshal(append([]string{"10.0.0.2"}, f.ipv4...))
		w.Write(b)
	case m + "42:01:0a:00:00:02/ipv6s":
		io.WriteString(w, "[2001:db8::30]")
	default:
		http.NotFound(w, r)
	}
}

func TestRunAlibabaPolling(t *testing.T) {
	ns, h := testNS(t)
	f := &fakeAlibaba{ipv4: []string{"10.0.0.30"}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: f}
	go srv.Serve(ln)
	defer srv.Close()
	a := newTestAgent(t, h, Alibaba, ln.Addr().String(), filepath.Join(t.TempDir(), "s.json"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	waitFor(t, "addresses", 5*time.Second, func() bool {
		ad := addrs(t, ns)
		return strings.Contains(ad, "10.0.0.30/32") && strings.Contains(ad, "2001:db8::30/128")
	})
	f.mu.Lock()
	f.ipv4 = []string{"10.0.0.31"}
	f.mu.Unlock()
	waitFor(t, "address swap", 5*time.Second, func() bool {
		ad := addrs(t, ns)
		return strings.Contains(ad, "10.0.0.31/32") && !strings.Contains(ad, "10.0.0.30/32")
	})
	// Deleted by hand: it comes back.
	sh(t, "ip", "-n", ns, "addr", "del", "10.0.0.31/32", "dev", "d0")
	waitFor(t, "address restored", 5*time.Second, func() bool { return strings.Contains(addrs(t, ns), "10.0.0.31/32") })
	if strings.Contains(routes(t, ns), "proto 66") {
		t.Fatalf("alibaba secondary IPs became routes:\n%s", routes(t, ns))
	}
}

// TestReconcileLeavesPodRanges: on a Kubernetes node the pod range (named
// by the metadata or configured) gets no local route and no address, a
// route of ours for it is removed, and every other alias is handled as
// usual.
func TestReconcileLeavesPodRanges(t *testing.T) {
	ns, h := testNS(t)
	a := newTestAgent(t, h, GCE, "http://127.0.0.1:1", filepath.Join(t.TempDir(), "state.json"))
	nic := NIC{MAC: "42:01:0a:00:00:02", Routes: pfxs("10.1.0.0/24", "10.0.0.9/32", "10.7.0.0/28"), Addrs: pfxs("10.1.0.77/32", "10.0.0.20/32")}
	// Before the node joins: every range is local.
	if _, err := a.Reconcile(&Desired{NICs: []NIC{nic}}); err != nil {
		t.Fatal(err)
	}
	if r := routes(t, ns); !strings.Contains(r, "10.1.0.0/24") {
		t.Fatalf("routes:\n%s", r)
	}
	for _, c := range []struct {
		name string
		d    *Desired
		cfg  []netip.Prefix
	}{
		{"from the metadata", &Desired{NICs: []NIC{nic}, PodRanges: pfxs("10.1.0.0/24")}, nil},
		{"configured", &Desired{NICs: []NIC{nic}}, pfxs("10.1.0.0/24")},
	} {
		t.Run(c.name, func(t *testing.T) {
			a.cfg.PodRanges = c.cfg
			res, err := a.Reconcile(c.d)
			if err != nil {
				t.Fatal(err)
			}
			r, ad := routes(t, ns), addrs(t, ns)
			if strings.Contains(r, "10.1.0.0/24") || strings.Contains(ad, "10.1.0.77") {
				t.Fatalf("pod range configured (%+v):\n%s\n%s", res, r, ad)
			}
			if !strings.Contains(r, "local 10.0.0.9 dev d0") || !strings.Contains(r, "local 10.7.0.0/28 dev d0") || !strings.Contains(ad, "10.0.0.20/32") {
				t.Fatalf("other aliases missing:\n%s\n%s", r, ad)
			}
			if out := routeGet(ns, "10.1.0.5"); strings.HasPrefix(out, "local") {
				t.Fatalf("the node answers for a pod address: %s", out)
			}
			if res, err := a.Reconcile(c.d); err != nil || res.Changed() {
				t.Fatalf("second pass changed %+v, %v", res, err)
			}
		})
		// Back to a plain alias for the next case.
		a.cfg.PodRanges = nil
		if _, err := a.Reconcile(&Desired{NICs: []NIC{nic}}); err != nil {
			t.Fatal(err)
		}
		if r := routes(t, ns); !strings.Contains(r, "10.1.0.0/24") {
			t.Fatalf("plain alias not local again:\n%s", r)
		}
	}
}

// routeGet is `ip route get` (which fails when nothing routes the address:
// the test namespaces have no default route).
func routeGet(ns, addr string) string {
	out, _ := exec.Command("ip", "-n", ns, "route", "get", addr).CombinedOutput()
	return string(out)
}
