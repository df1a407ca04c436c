package e2e

// End-to-end test of the metadata server and the guest agent with real
// packets, in network namespaces this test creates and removes:
//
//	 cli ns                 host ns ("fabric")                  vm ns
//	10.99.0.2/24 eth0 ── hc0 10.99.0.1/24   hv0 10.77.0.1/24 ── eth0 <primary IP from the API>
//	 default via .1         lo 169.254.169.254 (metadata)            MAC from the API
//	                        aliasnet serve --metadata-listen          default via 10.77.0.1
//	                        route 10.78.0.0/20 via <vm IP>            aliasnet agent
//
// The root namespace is never touched: veths are created inside the host
// namespace with their peers placed directly in the others, and the test
// process reaches the API and the namespaces' sockets from threads
// switched into them.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	compute "google.golang.org/api/compute/v1"
	"google.golang.org/api/option"
)

const (
	guestProj   = "guest-e2e"
	guestRegion = "us-central1"
	guestZone   = "us-central1-a"
	guestAPI    = "127.0.0.1:8080" // inside the host namespace
	mdAddr      = "169.254.169.254"
	// Generous deadlines: the target for an alias update to reach the VM
	// is well under a second.
	guestDeadline = 10 * time.Second
)

func guestNeedRoot(t testing.TB) {
	t.Helper()
	why := ""
	if os.Geteuid() != 0 {
		why = "needs root"
	} else if _, err := exec.LookPath("ip"); err != nil {
		why = "needs iproute2 (ip)"
	} else if err := exec.Command("ip", "netns", "list").Run(); err != nil {
		why = "ip netns unusable: " + err.Error()
	}
	if why != "" {
		if os.Getenv("CI") == "true" {
			t.Fatal(why)
		}
		t.Skip(why)
	}
}

func guestSh(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// inNS runs f on a thread switched into namespace ns. The thread is
// discarded afterwards (the goroutine exits locked), so no other goroutine
// ever runs in ns.
func inNS[T any](ns string, f func() (T, error)) (T, error) {
	type res struct {
		v   T
		err error
	}
	ch := make(chan res, 1)
	go func() {
		runtime.LockOSThread()
		h, err := netns.GetFromName(ns)
		if err != nil {
			ch <- res{err: err}
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			ch <- res{err: err}
			return
		}
		v, err := f()
		ch <- res{v, err}
	}()
	r := <-ch
	return r.v, r.err
}

func nsDialer(ns string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		return inNS(ns, func() (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		})
	}
}

func nsHTTP(ns string) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: nsDialer(ns), DisableKeepAlives: true}, Timeout: 30 * time.Second}
}

// syncBuf collects a process's output.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// nsProc is a process started with `ip netns exec` (which execs, so the
// pid is the program's own).
type nsProc struct {
	name string
	cmd  *exec.Cmd
	out  *syncBuf
	done chan struct{}
}

func startInNS(t testing.TB, name, ns string, args ...string) *nsProc {
	t.Helper()
	p := &nsProc{name: name, out: &syncBuf{}, done: make(chan struct{})}
	p.cmd = exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("--- %s output ---\n%s", p.name, p.out)
		}
	})
	return p
}

func (p *nsProc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM and waits (SIGKILL after 10 s).
func (p *nsProc) stop() {
	if !p.running() {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.kill()
	}
}

func (p *nsProc) kill() {
	if p.running() {
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
	}
}

// guestLab is the three namespaces, the server and the API client.
type guestLab struct {
	t                testing.TB
	host, vm, client string
	dataDir          string
	server           *nsProc
	api              *compute.Service
	vmIP             netip.Addr
	vmMAC            string
	vmNL             *netlink.Handle
}

func newGuestLab(t testing.TB) *guestLab {
	guestNeedRoot(t)
	base := fmt.Sprintf("ang%d", os.Getpid()%100000)
	l := &guestLab{t: t, host: base + "h", vm: base + "v", client: base + "c", dataDir: t.TempDir()}
	for _, ns := range []string{l.host, l.vm, l.client} {
		exec.Command("ip", "netns", "del", ns).Run() // leftovers of a killed run
		guestSh(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		guestSh(t, "ip", "-n", ns, "link", "set", "lo", "up")
	}
	h, v, c := l.host, l.vm, l.client
	guestSh(t, "ip", "-n", h, "link", "add", "hv0", "type", "veth", "peer", "name", "eth0", "netns", v)
	guestSh(t, "ip", "-n", h, "link", "add", "hc0", "type", "veth", "peer", "name", "eth0", "netns", c)
	guestSh(t, "ip", "-n", h, "addr", "add", "10.77.0.1/24", "dev", "hv0")
	guestSh(t, "ip", "-n", h, "addr", "add", "10.99.0.1/24", "dev", "hc0")
	guestSh(t, "ip", "-n", h, "addr", "add", mdAddr+"/32", "dev", "lo")
	guestSh(t, "ip", "-n", h, "link", "set", "hv0", "up")
	guestSh(t, "ip", "-n", h, "link", "set", "hc0", "up")
	guestSh(t, "ip", "netns", "exec", h, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward")
	guestSh(t, "ip", "-n", c, "addr", "add", "10.99.0.2/24", "dev", "eth0")
	guestSh(t, "ip", "-n", c, "link", "set", "eth0", "up")
	guestSh(t, "ip", "-n", c, "route", "add", "default", "via", "10.99.0.1")

	l.startServer()
	api, err := compute.NewService(context.Background(), option.WithEndpoint("http://"+guestAPI+"/compute/v1/"),
		option.WithoutAuthentication(), option.WithHTTPClient(nsHTTP(h)))
	if err != nil {
		t.Fatal(err)
	}
	l.api = api
	l.do(api.Networks.Insert(guestProj, &compute.Network{Name: "net1", ForceSendFields: []string{"AutoCreateSubnetworks"}}).Do())
	l.do(api.Subnetworks.Insert(guestProj, guestRegion, &compute.Subnetwork{Name: "s1", Network: "global/networks/net1",
		IpCidrRange: "10.77.0.0/24", SecondaryIpRanges: []*compute.SubnetworkSecondaryRange{{RangeName: "pods", IpCidrRange: "10.78.0.0/20"}}}).Do())
	l.do(api.Instances.Insert(guestProj, guestZone, &compute.Instance{Name: "vm1",
		NetworkInterfaces: []*compute.NetworkInterface{{Subnetwork: "regions/" + guestRegion + "/subnetworks/s1"}}}).Do())
	in, err := api.Instances.Get(guestProj, guestZone, "vm1").Do()
	if err != nil {
		t.Fatal(err)
	}
	l.vmIP = netip.MustParseAddr(in.NetworkInterfaces[0].NetworkIP)
	// The MAC the hypervisor would give the NIC: read it where the guest
	// does, from the metadata server (asked from the VM's address once it
	// has it, below); first configure the address, then the MAC.
	guestSh(t, "ip", "-n", v, "addr", "add", l.vmIP.String()+"/24", "dev", "eth0")
	guestSh(t, "ip", "-n", v, "link", "set", "eth0", "up")
	guestSh(t, "ip", "-n", v, "route", "add", "default", "via", "10.77.0.1")
	l.vmMAC = l.metadata(v, "/computeMetadata/v1/instance/network-interfaces/0/mac", true, 200)
	guestSh(t, "ip", "-n", v, "link", "set", "eth0", "address", l.vmMAC)
	// The fabric routes the alias range to the VM (in the host namespace).
	guestSh(t, "ip", "-n", h, "route", "add", "10.78.0.0/20", "via", l.vmIP.String(), "dev", "hv0")

	vh, err := netns.GetFromName(v)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vh.Close() })
	if l.vmNL, err = netlink.NewHandleAt(vh); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.vmNL.Close)
	return l
}

func (l *guestLab) startServer() {
	l.t.Helper()
	l.server = startInNS(l.t, "server", l.host, binary, "serve", "--listen", guestAPI, "--data-dir", l.dataDir,
		"--metadata-listen", mdAddr+":80")
	hc := nsHTTP(l.host)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := hc.Get("http://" + guestAPI + "/healthz")
		if err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) || !l.server.running() {
			l.t.Fatalf("server did not come up: %v\n%s", err, l.server.out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (l *guestLab) do(op *compute.Operation, err error) {
	l.t.Helper()
	if err := opErr(op, err); err != nil {
		l.t.Fatal(err)
	}
}

// metadata GETs a metadata path from namespace ns and checks the status.
func (l *guestLab) metadata(ns, path string, flavor bool, code int) string {
	l.t.Helper()
	req, _ := http.NewRequest("GET", "http://"+mdAddr+path, nil)
	if flavor {
		req.Header.Set("Metadata-Flavor", "Google")
	}
	resp, err := nsHTTP(ns).Do(req)
	if err != nil {
		l.t.Fatalf("GET %s from %s: %v", path, ns, err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	if resp.StatusCode != code {
		l.t.Fatalf("GET %s from %s = %d %q, want %d", path, ns, resp.StatusCode, b.String(), code)
	}
	return b.String()
}

// setAliases replaces nic0's aliases through the Compute API (the official
// client, with the fingerprint it read).
func (l *guestLab) setAliases(ranges ...string) {
	l.t.Helper()
	l.do(l.updateAliases(l.fingerprint(), ranges...))
}

func (l *guestLab) fingerprint() string {
	l.t.Helper()
	in, err := l.api.Instances.Get(guestProj, guestZone, "vm1").Do()
	if err != nil {
		l.t.Fatal(err)
	}
	return in.NetworkInterfaces[0].Fingerprint
}

func (l *guestLab) updateAliases(fp string, ranges ...string) (*compute.Operation, error) {
	ni := &compute.NetworkInterface{Fingerprint: fp, AliasIpRanges: []*compute.AliasIpRange{}, ForceSendFields: []string{"AliasIpRanges"}}
	for _, r := range ranges {
		ar := &compute.AliasIpRange{IpCidrRange: r}
		if strings.HasPrefix(r, "10.78.") {
			ar.SubnetworkRangeName = "pods"
		}
		ni.AliasIpRanges = append(ni.AliasIpRanges, ar)
	}
	return l.api.Instances.UpdateNetworkInterface(guestProj, guestZone, "vm1", "nic0", ni).Do()
}

// vmRoutes lists the VM's local-table routes with protocol 66.
func (l *guestLab) vmRoutes() []string {
	l.t.Helper()
	rs, err := l.vmNL.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: 255, Protocol: 66},
		netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		l.t.Fatal(err)
	}
	var out []string
	for _, r := range rs {
		if r.Type == 2 /* RTN_LOCAL */ {
			out = append(out, r.Dst.String())
		}
	}
	sort.Strings(out)
	return out
}

func (l *guestLab) vmAddrs() []string {
	l.t.Helper()
	lk, err := l.vmNL.LinkByName("eth0")
	if err != nil {
		l.t.Fatal(err)
	}
	as, err := l.vmNL.AddrList(lk, netlink.FAMILY_V4)
	if err != nil {
		l.t.Fatal(err)
	}
	var out []string
	for _, a := range as {
		out = append(out, a.IPNet.String())
	}
	sort.Strings(out)
	return out
}

// answered reports whether a TCP connect from the client namespace to
// addr:7777 reaches the VM's listener.
func (l *guestLab) answered(addr string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	c, err := nsDialer(l.client)(ctx, "tcp", net.JoinHostPort(addr, "7777"))
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && line == "vm1\n"
}

// serveVM listens on 0.0.0.0:7777 inside the VM and greets with "vm1".
func (l *guestLab) serveVM() {
	ln, err := inNS(l.vm, func() (net.Listener, error) { return net.Listen("tcp4", "0.0.0.0:7777") })
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("vm1\n"))
			c.Close()
		}
	}()
}

// eventually polls cond until it holds, failing after guestDeadline; it
// returns how long it took.
func eventually(t testing.TB, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > guestDeadline {
			t.Fatalf("not within %v: %s", guestDeadline, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

func TestGuestAgentEndToEnd(t *testing.T) {
	l := newGuestLab(t)
	v := l.vm
	l.serveVM()

	// The metadata server tells instances apart by source address.
	if got := l.metadata(v, "/computeMetadata/v1/instance/network-interfaces/0/ip", true, 200); got != l.vmIP.String() {
		t.Fatalf("ip = %q", got)
	}
	l.metadata(v, "/computeMetadata/v1/instance/hostname", false, 403)
	l.metadata(l.client, "/computeMetadata/v1/instance/hostname", true, 404)
	if got := l.metadata(v, "/latest/meta-data/private-ipv4", false, 200); got != l.vmIP.String() {
		t.Fatalf("alibaba private-ipv4 = %q", got)
	}

	// Someone else's local route in the VM, which the agent must keep.
	guestSh(t, "ip", "-n", v, "route", "add", "local", "10.78.9.0/24", "dev", "eth0", "table", "local", "proto", "static")

	state := filepath.Join(t.TempDir(), "agent.json")
	agent := startInNS(t, "agent", v, binary, "agent", "--metadata", "http://"+mdAddr, "--state-file", state, "--verbose")
	if l.answered("10.78.1.7") {
		t.Fatal("alias address answered before any alias exists")
	}

	// 1. An alias update through the API reaches the VM: the kernel answers
	// for the whole range.
	start := time.Now()
	l.setAliases("10.78.1.0/24")
	eventually(t, "route 10.78.1.0/24 in the VM", func() bool { return slices.Contains(l.vmRoutes(), "10.78.1.0/24") })
	t.Logf("alias update -> route in the VM: %v", time.Since(start))
	eventually(t, "10.78.1.7 answered", func() bool { return l.answered("10.78.1.7") })
	if !l.answered("10.78.1.250") {
		t.Fatal("another address of the range is not answered")
	}
	if got := l.metadata(v, "/computeMetadata/v1/instance/network-interfaces/0/ip-aliases/", true, 200); got != "10.78.1.0/24\n" {
		t.Fatalf("ip-aliases/ = %q", got)
	}

	// 2. Deleted by hand, the route comes back.
	guestSh(t, "ip", "-n", v, "route", "del", "local", "10.78.1.0/24", "dev", "eth0", "table", "local")
	d := eventually(t, "route restored", func() bool { return slices.Contains(l.vmRoutes(), "10.78.1.0/24") })
	t.Logf("hand-deleted route restored after %v", d)

	// 3. The server goes away: the VM keeps answering; it comes back and
	// the agent follows the next update.
	l.server.stop()
	time.Sleep(500 * time.Millisecond)
	if !slices.Contains(l.vmRoutes(), "10.78.1.0/24") || !l.answered("10.78.1.7") {
		t.Fatal("configuration lost while the metadata server was down")
	}
	if !agent.running() {
		t.Fatalf("agent exited when the server went away:\n%s", agent.out)
	}
	l.startServer()
	start = time.Now()
	l.setAliases("10.78.2.0/24")
	eventually(t, "agent recovered", func() bool {
		r := l.vmRoutes()
		return slices.Contains(r, "10.78.2.0/24") && !slices.Contains(r, "10.78.1.0/24")
	})
	t.Logf("after server restart: update -> route %v", time.Since(start))
	eventually(t, "10.78.2.7 answered", func() bool { return l.answered("10.78.2.7") })
	// 4. The removed alias is not answered any more.
	eventually(t, "10.78.1.7 no longer answered", func() bool { return !l.answered("10.78.1.7") })

	// 5. All aliases removed: nothing answered, nothing of the agent's left,
	// and the foreign route untouched.
	l.setAliases()
	eventually(t, "routes gone", func() bool { return len(l.vmRoutes()) == 0 })
	eventually(t, "10.78.2.7 no longer answered", func() bool { return !l.answered("10.78.2.7") })
	if all := guestSh(t, "ip", "-n", v, "route", "show", "table", "local"); !strings.Contains(all, "local 10.78.9.0/24 dev eth0 proto static") {
		t.Fatalf("foreign local route removed:\n%s", all)
	}
	agent.stop()

	// 6. Alibaba dialect, --once: secondary private IPs become addresses
	// (a /32 from the primary range), ranges local routes; removed again
	// when the metadata drops them. The address the admin put there stays.
	guestSh(t, "ip", "-n", v, "addr", "add", "10.77.0.200/32", "dev", "eth0")
	l.setAliases("10.77.0.50", "10.78.3.0/24")
	alistate := filepath.Join(t.TempDir(), "ali.json")
	once := func() {
		t.Helper()
		out, err := exec.Command("ip", "netns", "exec", v, binary, "agent", "--dialect", "alibaba", "--metadata", "http://"+mdAddr,
			"--once", "--state-file", alistate).CombinedOutput()
		if err != nil {
			t.Fatalf("agent --once: %v\n%s", err, out)
		}
	}
	once()
	if a := l.vmAddrs(); !slices.Contains(a, "10.77.0.50/32") {
		t.Fatalf("addresses after alibaba --once: %v", a)
	}
	if r := l.vmRoutes(); !slices.Equal(r, []string{"10.78.3.0/24"}) {
		t.Fatalf("routes after alibaba --once: %v", r)
	}
	eventually(t, "secondary IP answered", func() bool { return l.answered("10.77.0.50") })
	l.setAliases()
	once()
	if a := l.vmAddrs(); slices.Contains(a, "10.77.0.50/32") || !slices.Contains(a, "10.77.0.200/32") || !slices.Contains(a, l.vmIP.String()+"/24") {
		t.Fatalf("addresses after removal: %v", a)
	}
	if r := l.vmRoutes(); len(r) != 0 {
		t.Fatalf("routes after removal: %v", r)
	}
}

// TestGuestAliasLatency measures the time from an alias update through the
// API to the local route present in the VM namespace, over 200 updates.
// It is a benchmark: run it with ALIASNET_GUEST_BENCH=1.
func TestGuestAliasLatency(t *testing.T) {
	if os.Getenv("ALIASNET_GUEST_BENCH") == "" {
		t.Skip("set ALIASNET_GUEST_BENCH=1")
	}
	l := newGuestLab(t)
	startInNS(t, "agent", l.vm, binary, "agent", "--metadata", "http://"+mdAddr, "--state-file", filepath.Join(t.TempDir(), "a.json"))

	// Route events in the VM namespace, so arrival is seen the moment the
	// kernel has the route (no polling error).
	vh, err := netns.GetFromName(l.vm)
	if err != nil {
		t.Fatal(err)
	}
	defer vh.Close()
	events := make(chan netlink.RouteUpdate, 1024)
	done := make(chan struct{})
	defer close(done)
	if err := netlink.RouteSubscribeWithOptions(events, done, netlink.RouteSubscribeOptions{Namespace: &vh}); err != nil {
		t.Fatal(err)
	}
	waitRoute := func(dst string, deadline time.Time) (time.Time, bool) {
		for {
			select {
			case u := <-events:
				if u.Type == syscall.RTM_NEWROUTE && u.Protocol == 66 && u.Dst != nil && u.Dst.String() == dst {
					return time.Now(), true
				}
			case <-time.After(time.Until(deadline)):
				return time.Time{}, false
			}
		}
	}
	const n = 200
	var total, apiOnly, after []time.Duration
	for i := range n + 5 { // 5 warm-up rounds
		dst := fmt.Sprintf("10.78.%d.0/24", i%14+1)
		fp := l.fingerprint()
		start := time.Now()
		op, err := l.updateAliases(fp, dst)
		apiDone := time.Now()
		if err := opErr(op, err); err != nil {
			t.Fatal(err)
		}
		at, ok := waitRoute(dst, start.Add(guestDeadline))
		if !ok {
			t.Fatalf("update %d: route %s not in the VM within %v", i, dst, guestDeadline)
		}
		if i >= 5 {
			total = append(total, at.Sub(start))
			apiOnly = append(apiOnly, apiDone.Sub(start))
			after = append(after, at.Sub(apiDone))
		}
	}
	pct := func(ds []time.Duration, p float64) time.Duration {
		s := slices.Clone(ds)
		slices.Sort(s)
		return s[min(len(s)-1, int(float64(len(s))*p))]
	}
	t.Logf("alias update -> local route in the VM, %d updates: median %v, p90 %v, p99 %v, max %v",
		n, pct(total, 0.5), pct(total, 0.9), pct(total, 0.99), pct(total, 1))
	t.Logf("  the API call (commit, fsync): median %v, p90 %v, p99 %v", pct(apiOnly, 0.5), pct(apiOnly, 0.9), pct(apiOnly, 0.99))
	t.Logf("  API answered -> route (long-poll, agent, netlink): median %v, p90 %v, p99 %v, max %v",
		pct(after, 0.5), pct(after, 0.9), pct(after, 0.99), pct(after, 1))
}
