package e2e

// The Linux data plane with real packets: `aliasnet lab up` realises a
// project built through the official Go client, processes started with
// `aliasnet lab exec` serve on alias addresses, and packets sent from
// inside the instances' namespaces (threads of this test switched into
// them) must do what `aliasnet trace` says. Every namespace is created by
// the lab or by the test and removed at the end (checked with `ip netns
// list`); the machine's own namespace gets no route, address or nftables
// rule — the server and the lab's supervisor only have sockets there.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	compute "google.golang.org/api/compute/v1"

	"github.com/aliasnet/aliasnet/internal/fabric"
	"github.com/aliasnet/aliasnet/internal/lab"
)

const (
	labRegion = "us-central1"
	labZone   = "us-central1-a"
)

// labEnv is a server, its project and the lab realising it.
type labEnv struct {
	t       *testing.T
	srv     *Server
	api     *compute.Service
	project string
	dir     string
	prefix  string
	mdAddr  string
}

func newLabEnv(t *testing.T, project string, metadata bool) *labEnv {
	guestNeedRoot(t)
	e := &labEnv{t: t, project: project, dir: t.TempDir(), prefix: fmt.Sprintf("ane%d%s-", os.Getpid()%10000, project[len(project)-2:])}
	var extra []string
	if metadata {
		e.mdAddr = freePort(t)
		extra = append(extra, "--metadata-listen", e.mdAddr, "--metadata-trusted-proxy", "127.0.0.1")
	}
	e.srv = StartServer(t, "", extra...)
	e.api = e.srv.Compute(t)
	// Leftovers of a killed run.
	for _, ns := range e.namespaces() {
		exec.Command("ip", "netns", "del", ns).Run()
	}
	return e
}

func (e *labEnv) do(op *compute.Operation, err error) {
	e.t.Helper()
	if err := opErr(op, err); err != nil {
		e.t.Fatal(err)
	}
}

// cli runs the binary with the server and project.
func (e *labEnv) cli(args ...string) (string, error) {
	all := append([]string{"--server", e.srv.URL(), "--project", e.project}, args...)
	out, err := exec.Command(binary, all...).CombinedOutput()
	return string(out), err
}

func (e *labEnv) labArgs(args ...string) []string {
	return append([]string{"lab", "--state-dir", e.dir, "--prefix", e.prefix}, args...)
}

// namespaces lists the namespaces with the lab's prefix.
func (e *labEnv) namespaces() []string {
	out, _ := exec.Command("ip", "netns", "list").Output()
	var ns []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], e.prefix) {
			ns = append(ns, f[0])
		}
	}
	return ns
}

// up runs `lab up`; cleanup runs `lab down` and checks that nothing is
// left.
func (e *labEnv) up(extra ...string) time.Duration {
	e.t.Helper()
	start := time.Now()
	out, err := e.cli(e.labArgs(append([]string{"up"}, extra...)...)...)
	took := time.Since(start)
	if err != nil {
		e.t.Fatalf("lab up: %v\n%s", err, out)
	}
	e.t.Cleanup(func() {
		out, err := e.cli(e.labArgs("down")...)
		if err != nil {
			e.t.Errorf("lab down: %v\n%s", err, out)
		}
		if left := e.namespaces(); len(left) > 0 {
			e.t.Errorf("namespaces left behind: %v", left)
			for _, ns := range left {
				exec.Command("ip", "netns", "del", ns).Run()
			}
		}
		if e.t.Failed() {
			b, _ := os.ReadFile(filepath.Join(e.dir, "supervisor.log"))
			e.t.Logf("--- supervisor log ---\n%s", lastN(string(b), 40))
		}
	})
	return took
}

func lastN(s string, n int) string {
	ls := strings.Split(s, "\n")
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return strings.Join(ls, "\n")
}

type labStatus struct {
	lab.Status
	Running bool `json:"running"`
}

func (e *labEnv) status() labStatus {
	e.t.Helper()
	out, err := e.cli(append(e.labArgs("status"), "--format", "json")...)
	if err != nil {
		e.t.Fatalf("lab status: %v\n%s", err, out)
	}
	var st labStatus
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		e.t.Fatalf("lab status: %v\n%s", err, out)
	}
	return st
}

func (e *labEnv) nsName(inst string) string {
	e.t.Helper()
	st := e.status()
	ns, err := st.NamespaceOf(inst, "")
	if err != nil {
		e.t.Fatal(err)
	}
	return ns
}

func (e *labEnv) handle(ns string) netns.NsHandle {
	e.t.Helper()
	h, err := netns.GetFromName(ns)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { h.Close() })
	return h
}

// exec starts `aliasnet lab exec INSTANCE -- args` in the background.
func (e *labEnv) exec(name, inst string, args ...string) *labProc {
	e.t.Helper()
	all := append([]string{"--server", e.srv.URL(), "--project", e.project}, e.labArgs("exec", inst, "--")...)
	all = append(all, args...)
	p := &labProc{cmd: exec.Command(binary, all...), out: &syncBuf{}, done: make(chan struct{})}
	stdout, _ := p.cmd.StdoutPipe()
	p.cmd.Stderr = p.out
	if err := p.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	p.lines = bufio.NewReader(stdout)
	go func() { p.cmd.Wait(); close(p.done) }()
	e.t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			p.cmd.Process.Kill()
		}
		if e.t.Failed() {
			e.t.Logf("--- %s ---\n%s", name, p.out)
		}
	})
	return p
}

type labProc struct {
	cmd   *exec.Cmd
	out   *syncBuf
	lines *bufio.Reader
	done  chan struct{}
}

// listen runs a probe listener inside an instance (through `lab exec`)
// and waits until it listens.
func (e *labEnv) listen(inst, name string, addrs ...string) {
	e.t.Helper()
	args := []string{binary, "lab", "probe", "listen", "--name", name}
	for _, a := range addrs {
		proto, hp, _ := strings.Cut(a, "/")
		args = append(args, "--"+proto, hp)
	}
	p := e.exec("listener "+name, inst, args...)
	line, err := p.lines.ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		e.t.Fatalf("listener %s in %s: %q %v\n%s", name, inst, line, err, p.out)
	}
	go io.Copy(io.Discard, p.lines)
}

// probe sends a real packet from namespace ns (a thread of this test
// switched into it).
func probe(h netns.NsHandle, proto string, src, dst netip.Addr, port int, timeout time.Duration) lab.ProbeResult {
	r, err := fabric.DoValue(h, func() (lab.ProbeResult, error) {
		return lab.Probe(context.Background(), proto, src, dst, port, timeout), nil
	})
	if err != nil {
		return lab.ProbeResult{Err: err.Error()}
	}
	return r
}

// labHTTP is an HTTP client whose connections are made inside namespace
// h (fabric.Do switches the dialing thread back afterwards).
func labHTTP(h netns.NsHandle) *http.Client {
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		return fabric.DoValue(h, func() (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		})
	}
	return &http.Client{Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true}, Timeout: 10 * time.Second}
}

// onprem creates a namespace behind an instance (the VPN gateway):
// 192.168.50.0/24 on a veth between them, default route via the gateway.
func (e *labEnv) onprem(gwInst string) (string, netns.NsHandle) {
	e.t.Helper()
	name := e.prefix + "onprem"
	exec.Command("ip", "netns", "del", name).Run()
	guestSh(e.t, "ip", "netns", "add", name)
	e.t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	gw := e.nsName(gwInst)
	guestSh(e.t, "ip", "-n", gw, "link", "add", "onp0", "type", "veth", "peer", "name", "eth0", "netns", name)
	guestSh(e.t, "ip", "-n", gw, "addr", "add", "192.168.50.1/24", "dev", "onp0")
	guestSh(e.t, "ip", "-n", gw, "link", "set", "onp0", "up")
	guestSh(e.t, "ip", "-n", name, "link", "set", "lo", "up")
	guestSh(e.t, "ip", "-n", name, "addr", "add", "192.168.50.2/24", "dev", "eth0")
	guestSh(e.t, "ip", "-n", name, "link", "set", "eth0", "up")
	guestSh(e.t, "ip", "-n", name, "route", "add", "default", "via", "192.168.50.1")
	return name, e.handle(name)
}

// --- the project, through the official client ---

func (e *labEnv) network(name, subnet, rng, secondary string) {
	e.t.Helper()
	e.do(e.api.Networks.Insert(e.project, &compute.Network{Name: name, ForceSendFields: []string{"AutoCreateSubnetworks"}}).Do())
	sn := &compute.Subnetwork{Name: subnet, Network: "global/networks/" + name, IpCidrRange: rng}
	if secondary != "" {
		sn.SecondaryIpRanges = []*compute.SubnetworkSecondaryRange{{RangeName: "pods", IpCidrRange: secondary}}
	}
	e.do(e.api.Subnetworks.Insert(e.project, labRegion, sn).Do())
}

type vmSpec struct {
	name, subnet, ip string
	aliases          []string // "pods:CIDR" or "CIDR"
	tags             []string
	forward          bool
}

func aliasRanges(as []string) []*compute.AliasIpRange {
	out := []*compute.AliasIpRange{}
	for _, a := range as {
		rn, r, ok := strings.Cut(a, ":")
		if !ok {
			rn, r = "", a
		}
		out = append(out, &compute.AliasIpRange{IpCidrRange: r, SubnetworkRangeName: rn})
	}
	return out
}

func (e *labEnv) vm(v vmSpec) {
	e.t.Helper()
	in := &compute.Instance{Name: v.name, CanIpForward: v.forward,
		NetworkInterfaces: []*compute.NetworkInterface{{Subnetwork: "regions/" + labRegion + "/subnetworks/" + v.subnet, NetworkIP: v.ip, AliasIpRanges: aliasRanges(v.aliases)}}}
	if len(v.tags) > 0 {
		in.Tags = &compute.Tags{Items: v.tags}
	}
	e.do(e.api.Instances.Insert(e.project, labZone, in).Do())
}

func (e *labEnv) setAliases(inst string, as ...string) {
	e.t.Helper()
	got, err := e.api.Instances.Get(e.project, labZone, inst).Do()
	if err != nil {
		e.t.Fatal(err)
	}
	ni := &compute.NetworkInterface{Fingerprint: got.NetworkInterfaces[0].Fingerprint, AliasIpRanges: aliasRanges(as), ForceSendFields: []string{"AliasIpRanges"}}
	e.do(e.api.Instances.UpdateNetworkInterface(e.project, labZone, inst, "nic0", ni).Do())
}

type fwSpec struct {
	name, network, dir   string
	priority             int64
	allow, deny          []string // "tcp:80", "icmp", "all"
	srcRanges, dstRanges []string
	srcTags, targetTags  []string
}

func fwProtos(specs []string) (out []*compute.FirewallAllowed) {
	for _, s := range specs {
		p, ports, ok := strings.Cut(s, ":")
		fa := &compute.FirewallAllowed{IPProtocol: p}
		if ok {
			fa.Ports = strings.Split(ports, ",")
		}
		out = append(out, fa)
	}
	return out
}

func (e *labEnv) firewall(f fwSpec) {
	e.t.Helper()
	fw := &compute.Firewall{Name: f.name, Network: "global/networks/" + f.network, Direction: f.dir, Priority: f.priority,
		SourceRanges: f.srcRanges, DestinationRanges: f.dstRanges, SourceTags: f.srcTags, TargetTags: f.targetTags, ForceSendFields: []string{"Priority"}}
	if fw.Priority == 0 {
		fw.Priority = 1000
	}
	fw.Allowed = fwProtos(f.allow)
	for _, d := range fwProtos(f.deny) {
		fw.Denied = append(fw.Denied, &compute.FirewallDenied{IPProtocol: d.IPProtocol, Ports: d.Ports})
	}
	e.do(e.api.Firewalls.Insert(e.project, fw).Do())
}

// seed000 is seed 000's VPN scenario: subnet 10.128.0.0/16 with the
// secondary range 172.16.0.0/20, VMs with a /24 alias each, a gateway
// instance (canIpForward) with a static route to on-prem through it, a
// rule denying on-prem the primary range and one allowing it the
// secondary range.
func (e *labEnv) seed000() {
	e.network("vpc", "s1", "10.128.0.0/16", "172.16.0.0/20")
	e.vm(vmSpec{name: "vm1", subnet: "s1", ip: "10.128.0.2", aliases: []string{"pods:172.16.0.0/24"}})
	e.vm(vmSpec{name: "vm2", subnet: "s1", ip: "10.128.0.3", aliases: []string{"pods:172.16.1.0/24"}, tags: []string{"web"}})
	e.vm(vmSpec{name: "vpn-gw", subnet: "s1", ip: "10.128.0.10", forward: true, tags: []string{"vpn"}})
	e.do(e.api.Routes.Insert(e.project, &compute.Route{Name: "to-onprem", Network: "global/networks/vpc", DestRange: "192.168.50.0/24",
		Priority: 1000, NextHopInstance: "zones/" + labZone + "/instances/vpn-gw"}).Do())
	e.firewall(fwSpec{name: "deny-onprem-to-primary", network: "vpc", dir: "INGRESS", priority: 900, deny: []string{"all"},
		srcRanges: []string{"192.168.50.0/24"}, dstRanges: []string{"10.128.0.0/16"}})
	e.firewall(fwSpec{name: "allow-onprem-to-pods", network: "vpc", dir: "INGRESS", priority: 900, allow: []string{"tcp", "udp", "icmp"},
		srcRanges: []string{"192.168.50.0/24"}, dstRanges: []string{"172.16.0.0/20"}})
}

// trace asks the server's trace endpoint (what `aliasnet trace` shows).
func (e *labEnv) trace(from string, src, dst netip.Addr, proto string, port int) (string, string) {
	e.t.Helper()
	q := url.Values{"from": {from}, "to": {dst.String()}, "protocol": {proto}}
	if src.IsValid() {
		q.Set("src", src.String())
	}
	if proto != "icmp" {
		q.Set("port", fmt.Sprint(port))
	}
	resp, err := http.Get(e.srv.URL() + "/aliasnet/v1/projects/" + e.project + "/trace?" + q.Encode())
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var tr struct {
		Verdict     string `json:"verdict"`
		DeliveredTo *struct {
			Instance  string `json:"instance"`
			Forwarded bool   `json:"forwarded"`
		} `json:"deliveredTo"`
		Egress string `json:"egress"`
		Steps  []struct {
			Kind   string `json:"kind"`
			Detail string `json:"detail"`
		} `json:"steps"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil || tr.Verdict == "" {
		e.t.Fatalf("trace %s %s->%s: %v (HTTP %d)", from, src, dst, err, resp.StatusCode)
	}
	to := ""
	if tr.DeliveredTo != nil && tr.Egress == "" {
		to = tr.DeliveredTo.Instance[strings.LastIndex(tr.DeliveredTo.Instance, "/")+1:]
		if tr.DeliveredTo.Forwarded {
			to = "forwarded:" + to
		}
	}
	last := tr.Steps[len(tr.Steps)-1]
	return tr.Verdict, to + "|" + last.Kind + ": " + last.Detail
}

// traceCLI runs `aliasnet trace --format json` and returns the verdict.
func (e *labEnv) traceCLI(from string, src, dst netip.Addr, proto string, port int) string {
	e.t.Helper()
	args := []string{"trace", "--from", from, "--to", dst.String(), "--protocol", proto, "--format", "json"}
	if src.IsValid() {
		args = append(args, "--src", src.String())
	}
	if proto != "icmp" {
		args = append(args, "--port", fmt.Sprint(port))
	}
	out, err := e.cli(args...)
	if err != nil {
		e.t.Fatalf("aliasnet trace: %v\n%s", err, out)
	}
	var tr struct {
		Verdict string `json:"verdict"`
	}
	if err := json.Unmarshal([]byte(out), &tr); err != nil {
		e.t.Fatalf("aliasnet trace: %v\n%s", err, out)
	}
	return tr.Verdict
}

var (
	ip4  = netip.MustParseAddr
	none netip.Addr
)

// TestLabSeedVPN: seed 000's scenario realised by `lab up`; a server
// started with `lab exec` on an alias address is reached from on-prem, one
// on the primary IP is not; trace says the same.
func TestLabSeedVPN(t *testing.T) {
	e := newLabEnv(t, "labvpn01", false)
	e.seed000()
	took := e.up()
	t.Logf("lab up: %v", took)

	st := e.status()
	if !st.Running || len(st.Instances) != 3 || len(st.Routers) != 1 || st.Error != "" {
		t.Fatalf("status: %+v", st.Status)
	}
	// lab exec: the instance's own view.
	out, err := e.cli(e.labArgs("exec", "vm1", "--", "ip", "-4", "addr", "show", "dev", "eth0")...)
	if err != nil || !strings.Contains(out, "10.128.0.2/16") {
		t.Fatalf("lab exec ip addr: %v\n%s", err, out)
	}
	out, _ = e.cli(e.labArgs("exec", "vm1", "--", "ip", "route", "show", "table", "local", "proto", "66")...)
	if !strings.Contains(out, "local 172.16.0.0/24 dev eth0") {
		t.Fatalf("alias route in vm1:\n%s", out)
	}
	text, err := e.cli(e.labArgs("status")...)
	if err != nil || !strings.Contains(text, "172.16.0.0/24") || !strings.Contains(text, "running") {
		t.Fatalf("lab status: %v\n%s", err, text)
	}

	// Containers on alias IPs: one server bound to an alias address, one
	// to the primary IP.
	e.listen("vm1", "alias-server", "tcp/172.16.0.5:8080", "udp/172.16.0.5:8080")
	e.listen("vm1", "primary-server", "tcp/10.128.0.2:8080", "udp/10.128.0.2:8080")
	_, op := e.onprem("vpn-gw")
	for _, proto := range []string{"tcp", "udp"} {
		r := probe(op, proto, none, ip4("172.16.0.5"), 8080, 2*time.Second)
		if !r.Reached || r.Reply != "alias-server" {
			t.Errorf("on-prem -> alias 172.16.0.5:8080/%s: %+v", proto, r)
		}
		r = probe(op, proto, none, ip4("10.128.0.2"), 8080, time.Second)
		if r.Delivered() {
			t.Errorf("on-prem -> primary 10.128.0.2:8080/%s got through: %+v", proto, r)
		}
	}
	// The same two packets as `aliasnet trace` sees them: leaving the VPN
	// gateway with the on-prem source.
	if v := e.traceCLI("vpn-gw", ip4("192.168.50.2"), ip4("172.16.0.5"), "tcp", 8080); v != "DELIVERED" {
		t.Errorf("trace on-prem -> alias: %s", v)
	}
	if v := e.traceCLI("vpn-gw", ip4("192.168.50.2"), ip4("10.128.0.2"), "tcp", 8080); v != "DROPPED" {
		t.Errorf("trace on-prem -> primary: %s", v)
	}
	// Within the VPC nothing is allowed in (implied deny ingress)...
	vm2 := e.handle(e.nsName("vm2"))
	if r := probe(vm2, "tcp", none, ip4("172.16.0.5"), 8080, 500*time.Millisecond); r.Delivered() {
		t.Errorf("vm2 -> vm1 alias without a rule: %+v", r)
	}
	// ...until a rule says so: the fabric follows the API within a second.
	e.firewall(fwSpec{name: "allow-internal", network: "vpc", dir: "INGRESS", allow: []string{"tcp:8080"}, srcRanges: []string{"10.128.0.0/16"}})
	start := time.Now()
	eventually(t, "vm2 reaches vm1's alias after the rule", func() bool {
		return probe(vm2, "tcp", none, ip4("172.16.0.5"), 8080, 300*time.Millisecond).Reached
	})
	t.Logf("firewall rule -> traffic admitted: %v", time.Since(start))
}

// TestLabAntiSpoof: a packet leaving an instance with a source outside
// its primary IP and alias ranges is dropped at the fabric (the nftables
// counter of its port counts it); from an alias it passes; from an
// instance with canIpForward any source passes.
func TestLabAntiSpoof(t *testing.T) {
	e := newLabEnv(t, "labspoof", false)
	e.seed000()
	e.firewall(fwSpec{name: "allow-udp", network: "vpc", dir: "INGRESS", allow: []string{"udp:7000"}, srcRanges: []string{"0.0.0.0/0"}})
	e.up()
	st := e.status()
	var router, vm1Port, gwPort string
	for _, in := range st.Instances {
		switch in.Name {
		case "vm1":
			vm1Port, router = in.NICs[0].Port, in.NICs[0].Router
		case "vpn-gw":
			gwPort = in.NICs[0].Port
		}
	}
	rh := e.handle(router)
	vm1, gw, vm2 := e.handle(e.nsName("vm1")), e.handle(e.nsName("vpn-gw")), e.handle(e.nsName("vm2"))

	// A receiver in vm2 recording the sources it sees.
	type rec struct {
		mu   sync.Mutex
		from map[netip.Addr]int
	}
	got := &rec{from: map[netip.Addr]int{}}
	fd, err := fabric.DoValue(vm2, func() (int, error) {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return -1, err
		}
		return fd, unix.Bind(fd, &unix.SockaddrInet4{Port: 7000})
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	go func() {
		buf := make([]byte, 1500)
		for {
			_, from, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				return
			}
			if sa, ok := from.(*unix.SockaddrInet4); ok {
				got.mu.Lock()
				got.from[netip.AddrFrom4(sa.Addr)]++
				got.mu.Unlock()
			}
		}
	}()
	received := func(a string) int {
		got.mu.Lock()
		defer got.mu.Unlock()
		return got.from[ip4(a)]
	}
	counters := func() *fabric.Counters {
		c, err := fabric.ReadCounters(rh)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	send := func(h netns.NsHandle, src string, n int) {
		t.Helper()
		if err := fabric.Do(h, func() error { return lab.ProbeSend(ip4(src), ip4("10.128.0.3"), 7000, n) }); err != nil {
			t.Fatal(err)
		}
	}

	// 1. Spoofed source from vm1: dropped at the fabric, counted.
	before := counters().SpoofDrops[vm1Port]
	send(vm1, "10.128.99.99", 5)
	time.Sleep(300 * time.Millisecond)
	after := counters().SpoofDrops[vm1Port]
	if after-before != 5 || received("10.128.99.99") != 0 {
		t.Errorf("spoofed 10.128.99.99 from vm1: counter %d -> %d, vm2 received %d", before, after, received("10.128.99.99"))
	}
	send(vm1, "172.16.1.7", 3) // vm2's alias, not vm1's
	time.Sleep(300 * time.Millisecond)
	if c := counters().SpoofDrops[vm1Port]; c-after != 3 || received("172.16.1.7") != 0 {
		t.Errorf("vm1 sending as vm2's alias: counter %d -> %d, received %d", after, c, received("172.16.1.7"))
	}
	// 2. From vm1's own alias: passes, not counted.
	before = counters().SpoofDrops[vm1Port]
	send(vm1, "172.16.0.77", 4)
	eventually(t, "vm2 receives from vm1's alias", func() bool { return received("172.16.0.77") == 4 })
	if c := counters().SpoofDrops[vm1Port]; c != before {
		t.Errorf("alias source counted as spoofed: %d -> %d", before, c)
	}
	// 3. canIpForward: the gateway may send from anywhere.
	send(gw, "10.128.99.99", 2)
	eventually(t, "vm2 receives the gateway's foreign source", func() bool { return received("10.128.99.99") == 2 })
	if _, ok := counters().SpoofDrops[gwPort]; ok {
		t.Error("the canIpForward port has an anti-spoofing chain")
	}
	// Trace agrees on all three.
	for _, c := range []struct {
		from, src, want string
	}{{"vm1", "10.128.99.99", "DROPPED"}, {"vm1", "172.16.1.7", "DROPPED"}, {"vm1", "172.16.0.77", "DELIVERED"}, {"vpn-gw", "10.128.99.99", "DELIVERED"}} {
		if v, why := e.trace(c.from, ip4(c.src), ip4("10.128.0.3"), "udp", 7000); v != c.want {
			t.Errorf("trace %s src %s: %s (%s), want %s", c.from, c.src, v, why, c.want)
		}
	}
	// 4. canIpForward turned on for vm1 through the API is not possible in
	// GCE (it is set at creation); an instance created with it behaves
	// like the gateway — covered above.
}

// TestLabSourceTagsVsRanges: a sourceTags rule admits the tagged VM's
// primary IP but not its alias; a sourceRanges rule admits the alias.
func TestLabSourceTagsVsRanges(t *testing.T) {
	e := newLabEnv(t, "labtags1", false)
	e.network("vpc", "s1", "10.128.0.0/16", "172.16.0.0/20")
	e.vm(vmSpec{name: "fe", subnet: "s1", ip: "10.128.0.2", aliases: []string{"pods:172.16.2.0/24"}, tags: []string{"frontend"}})
	e.vm(vmSpec{name: "be", subnet: "s1", ip: "10.128.0.3", tags: []string{"backend"}})
	e.firewall(fwSpec{name: "tags-8080", network: "vpc", dir: "INGRESS", allow: []string{"tcp:8080"}, srcTags: []string{"frontend"}, targetTags: []string{"backend"}})
	e.firewall(fwSpec{name: "ranges-8081", network: "vpc", dir: "INGRESS", allow: []string{"tcp:8081"}, srcRanges: []string{"172.16.2.0/24"}, targetTags: []string{"backend"}})
	e.up()
	e.listen("be", "be", "tcp/0.0.0.0:8080", "tcp/0.0.0.0:8081")
	fe := e.handle(e.nsName("fe"))
	be := ip4("10.128.0.3")
	for _, c := range []struct {
		src  netip.Addr
		port int
		want bool
	}{
		{ip4("10.128.0.2"), 8080, true},  // primary IP, tag rule
		{ip4("172.16.2.9"), 8080, false}, // alias, tag rule: never
		{ip4("172.16.2.9"), 8081, true},  // alias, range rule
		{ip4("10.128.0.2"), 8081, false}, // primary, not in the range
	} {
		r := probe(fe, "tcp", c.src, be, c.port, 800*time.Millisecond)
		if r.Reached != c.want {
			t.Errorf("fe src %s -> be:%d reached=%v, want %v (%+v)", c.src, c.port, r.Reached, c.want, r)
		}
		v, why := e.trace("fe", c.src, be, "tcp", c.port)
		if (v == "DELIVERED") != c.want {
			t.Errorf("trace fe src %s -> be:%d: %s (%s)", c.src, c.port, v, why)
		}
	}
}

// TestLabAliasMove: a /32 alias moved from one VM to another through
// updateNetworkInterface; traffic to it follows within a second.
func TestLabAliasMove(t *testing.T) {
	e := newLabEnv(t, "labmove1", false)
	e.network("vpc", "s1", "10.128.0.0/16", "172.16.0.0/20")
	e.vm(vmSpec{name: "a", subnet: "s1", ip: "10.128.0.2", aliases: []string{"pods:172.16.3.3/32"}})
	e.vm(vmSpec{name: "b", subnet: "s1", ip: "10.128.0.3"})
	e.vm(vmSpec{name: "client", subnet: "s1", ip: "10.128.0.4"})
	e.firewall(fwSpec{name: "allow-80", network: "vpc", dir: "INGRESS", allow: []string{"tcp:80"}, srcRanges: []string{"10.128.0.0/16"}})
	e.up()
	e.listen("a", "a", "tcp/0.0.0.0:80")
	e.listen("b", "b", "tcp/0.0.0.0:80")
	client := e.handle(e.nsName("client"))
	vip := ip4("172.16.3.3")
	if r := probe(client, "tcp", none, vip, 80, time.Second); r.Reply != "a" {
		t.Fatalf("before the move: %+v", r)
	}
	var moves []time.Duration
	from, to := "a", "b"
	for i := range 4 {
		start := time.Now()
		e.setAliases(from)
		e.setAliases(to, "pods:172.16.3.3/32")
		apiDone := time.Since(start)
		deadline := start.Add(10 * time.Second)
		for {
			if r := probe(client, "tcp", none, vip, 80, 50*time.Millisecond); r.Reply == to {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("move %d: %s not answering for %s within 10 s", i, to, vip)
			}
			time.Sleep(5 * time.Millisecond)
		}
		d := time.Since(start)
		moves = append(moves, d)
		t.Logf("move %d %s -> %s: API calls %v, traffic follows after %v", i, from, to, apiDone, d)
		if d > time.Second {
			t.Errorf("move %d took %v (> 1 s)", i, d)
		}
		if v, why := e.trace("client", none, vip, "tcp", 80); !strings.HasPrefix(why, to+"|") || v != "DELIVERED" {
			t.Errorf("trace after move %d: %s %s", i, v, why)
		}
		from, to = to, from
	}
}

// TestLabAgent: with --agent the lab runs `aliasnet agent` in every
// instance against the metadata proxy at 169.254.169.254 in the router
// namespace; an alias added through the API becomes a proto-66 local
// route in the VM (put there by the agent) and answers.
func TestLabAgent(t *testing.T) {
	e := newLabEnv(t, "labagent", true)
	e.network("vpc", "s1", "10.128.0.0/16", "172.16.0.0/20")
	e.vm(vmSpec{name: "vm1", subnet: "s1", ip: "10.128.0.2"})
	e.vm(vmSpec{name: "vm2", subnet: "s1", ip: "10.128.0.3"})
	e.firewall(fwSpec{name: "allow-80", network: "vpc", dir: "INGRESS", allow: []string{"tcp:80"}, srcRanges: []string{"10.128.0.0/16"}})
	e.up("--agent", "--metadata", "http://"+e.mdAddr)
	vm1ns := e.nsName("vm1")
	vm1 := e.handle(vm1ns)
	nl, err := netlink.NewHandleAt(vm1)
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	routes := func() []string {
		rs, _ := nl.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: 255, Protocol: 66}, netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
		var out []string
		for _, r := range rs {
			out = append(out, r.Dst.String())
		}
		return out
	}
	// The metadata server, as the instance sees it: it knows who asks.
	req, _ := http.NewRequest("GET", "http://169.254.169.254/computeMetadata/v1/instance/network-interfaces/0/ip", nil)
	req.Header.Set("Metadata-Flavor", "Google")
	resp, err := labHTTP(vm1).Do(req)
	if err != nil {
		t.Fatalf("metadata from vm1: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "10.128.0.2" {
		t.Fatalf("metadata ip from vm1: %d %q", resp.StatusCode, b)
	}
	out, err := exec.Command("ip", "netns", "exec", vm1ns, binary, "agent", "--once", "--metadata", "http://169.254.169.254",
		"--state-file", filepath.Join(t.TempDir(), "once.json")).CombinedOutput()
	if err != nil {
		t.Fatalf("agent --once through the proxy: %v\n%s", err, out)
	}
	e.listen("vm1", "vm1", "tcp/0.0.0.0:80")
	vm2 := e.handle(e.nsName("vm2"))
	start := time.Now()
	e.setAliases("vm1", "pods:172.16.4.0/24")
	eventually(t, "agent route 172.16.4.0/24 in vm1", func() bool { return slices.Contains(routes(), "172.16.4.0/24") })
	t.Logf("alias -> agent route in the VM: %v", time.Since(start))
	eventually(t, "172.16.4.9 answers", func() bool {
		return probe(vm2, "tcp", none, ip4("172.16.4.9"), 80, 300*time.Millisecond).Reply == "vm1"
	})
	t.Logf("alias -> answering through the fabric: %v", time.Since(start))
	if st := e.status(); !st.Agent || !st.Instances[0].Agent {
		t.Errorf("status does not show the agents: %+v", st.Status)
	}
}

// matrixCase is one packet of the trace-vs-reality matrix.
type matrixCase struct {
	from  string // instance, for trace
	via   string // namespace sending it when not the instance's own (on-prem)
	src   netip.Addr
	dst   netip.Addr
	proto string
	port  int
}

func (c matrixCase) String() string {
	from := c.from
	if c.via != "" {
		from = c.via + " (via " + c.from + ")"
	}
	s := fmt.Sprintf("%s src %s -> %s %s", from, c.src, c.dst, c.proto)
	if c.proto != "icmp" {
		s += fmt.Sprintf(":%d", c.port)
	}
	return s
}

// TestLabTraceMatchesReality builds a project covering the scenarios
// (seed 000's VPN with a static route through a canIpForward gateway,
// alias ranges from primary and secondary ranges, source tags and source
// ranges, egress denies, a peered network, an unpeered one, a stopped
// instance, a default route to the internet gateway) and, for several
// hundred (source, destination, protocol, port) cases, compares the
// server's trace verdict with what a real packet does in the lab: a TCP
// connect, a UDP exchange or an ICMP echo from inside the sending
// namespace. Any disagreement fails the test and prints the case.
func TestLabTraceMatchesReality(t *testing.T) {
	e := newLabEnv(t, "labmatrx", false)
	e.seed000()
	e.vm(vmSpec{name: "fe", subnet: "s1", ip: "10.128.0.4", aliases: []string{"pods:172.16.2.0/28", "10.128.9.9"}, tags: []string{"frontend"}})
	e.vm(vmSpec{name: "off", subnet: "s1", ip: "10.128.0.20", aliases: []string{"pods:172.16.3.0/24"}})
	e.do(e.api.Instances.Stop(e.project, labZone, "off").Do())
	e.firewall(fwSpec{name: "allow-internal", network: "vpc", dir: "INGRESS", allow: []string{"tcp:80", "icmp"},
		srcRanges: []string{"10.128.0.0/16", "172.16.0.0/20", "10.200.0.0/16"}})
	e.firewall(fwSpec{name: "web-from-frontend-tag", network: "vpc", dir: "INGRESS", allow: []string{"tcp:8080"},
		srcTags: []string{"frontend"}, targetTags: []string{"web"}})
	e.firewall(fwSpec{name: "web-from-frontend-pods", network: "vpc", dir: "INGRESS", allow: []string{"tcp:8081"},
		srcRanges: []string{"172.16.2.0/28"}, targetTags: []string{"web"}})
	e.firewall(fwSpec{name: "db-5432", network: "vpc", dir: "INGRESS", allow: []string{"tcp:5432", "udp:53"},
		srcRanges: []string{"0.0.0.0/0"}})
	e.firewall(fwSpec{name: "frontend-no-db", network: "vpc", dir: "EGRESS", deny: []string{"tcp:5432"},
		dstRanges: []string{"10.128.0.0/16", "172.16.1.0/24"}, targetTags: []string{"frontend"}})
	e.firewall(fwSpec{name: "deny-ssh-from-pods", network: "vpc", dir: "INGRESS", priority: 500, deny: []string{"tcp:22"},
		srcRanges: []string{"172.16.0.0/20"}})
	e.firewall(fwSpec{name: "ssh", network: "vpc", dir: "INGRESS", allow: []string{"tcp:22"}, srcRanges: []string{"10.0.0.0/8"}})
	e.do(e.api.Routes.Insert(e.project, &compute.Route{Name: "default-inet", Network: "global/networks/vpc", DestRange: "0.0.0.0/0",
		Priority: 1000, NextHopGateway: "global/gateways/default-internet-gateway"}).Do())
	// A tagged static route: only "web" instances (vm2) reach
	// 192.168.60.0/24 through the gateway; the others follow the default
	// route to the internet gateway (a second kernel route table).
	e.do(e.api.Routes.Insert(e.project, &compute.Route{Name: "web-to-lab", Network: "global/networks/vpc", DestRange: "192.168.60.0/24",
		Priority: 1000, Tags: []string{"web"}, NextHopInstance: "zones/" + labZone + "/instances/vpn-gw"}).Do())
	// A peered network and an unpeered one.
	e.network("other", "s2", "10.200.0.0/16", "172.20.0.0/20")
	e.vm(vmSpec{name: "o1", subnet: "s2", ip: "10.200.0.2", aliases: []string{"pods:172.20.1.0/24"}})
	e.firewall(fwSpec{name: "other-allow", network: "other", dir: "INGRESS", allow: []string{"tcp:80", "tcp:5432", "udp", "icmp"},
		srcRanges: []string{"10.128.0.0/16", "172.16.0.0/20"}})
	e.do(e.api.Networks.AddPeering(e.project, "vpc", &compute.NetworksAddPeeringRequest{NetworkPeering: &compute.NetworkPeering{
		Name: "vpc-other", Network: "projects/" + e.project + "/global/networks/other", ExchangeSubnetRoutes: true}}).Do())
	e.do(e.api.Networks.AddPeering(e.project, "other", &compute.NetworksAddPeeringRequest{NetworkPeering: &compute.NetworkPeering{
		Name: "other-vpc", Network: "projects/" + e.project + "/global/networks/vpc", ExchangeSubnetRoutes: true}}).Do())
	e.network("island", "s3", "10.250.0.0/24", "")
	e.vm(vmSpec{name: "i1", subnet: "s3", ip: "10.250.0.2"})
	e.firewall(fwSpec{name: "island-allow", network: "island", dir: "INGRESS", allow: []string{"all"}, srcRanges: []string{"0.0.0.0/0"}})

	took := e.up()
	t.Logf("lab up (4 networks' worth of namespaces): %v", took)

	ports := []string{"tcp/0.0.0.0:80", "tcp/0.0.0.0:8080", "tcp/0.0.0.0:8081", "tcp/0.0.0.0:5432", "tcp/0.0.0.0:22", "udp/0.0.0.0:53"}
	for _, vm := range []string{"vm1", "vm2", "vpn-gw", "fe", "off", "o1", "i1"} {
		e.listen(vm, vm, ports...)
	}
	opName, op := e.onprem("vpn-gw")
	guestSh(t, "ip", "-n", opName, "addr", "add", "192.168.60.2/24", "dev", "eth0")
	guestSh(t, "ip", "-n", e.nsName("vpn-gw"), "route", "add", "192.168.60.0/24", "via", "192.168.50.2")
	{
		args := []string{"netns", "exec", opName, binary, "lab", "probe", "listen", "--name", "onprem"}
		for _, a := range ports {
			proto, hp, _ := strings.Cut(a, "/")
			args = append(args, "--"+proto, hp)
		}
		p := exec.Command("ip", args...)
		stdout, _ := p.StdoutPipe()
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Process.Kill(); p.Wait() })
		if line, _ := bufio.NewReader(stdout).ReadString('\n'); strings.TrimSpace(line) != "ready" {
			t.Fatalf("on-prem listener: %q", line)
		}
	}
	handles := map[string]netns.NsHandle{"onprem": op}
	for _, vm := range []string{"vm1", "vm2", "vpn-gw", "fe", "off", "o1", "i1"} {
		handles[vm] = e.handle(e.nsName(vm))
	}

	// Who owns what: packets to the sender's own addresses never reach
	// the fabric (the guest handles them); trace must say so too.
	owns := map[string][]netip.Prefix{
		"vm1":    {netip.MustParsePrefix("10.128.0.2/32"), netip.MustParsePrefix("172.16.0.0/24")},
		"vm2":    {netip.MustParsePrefix("10.128.0.3/32"), netip.MustParsePrefix("172.16.1.0/24")},
		"vpn-gw": {netip.MustParsePrefix("10.128.0.10/32")},
		"fe":     {netip.MustParsePrefix("10.128.0.4/32"), netip.MustParsePrefix("172.16.2.0/28"), netip.MustParsePrefix("10.128.9.9/32")},
		"off":    {netip.MustParsePrefix("10.128.0.20/32"), netip.MustParsePrefix("172.16.3.0/24")},
		"o1":     {netip.MustParsePrefix("10.200.0.2/32"), netip.MustParsePrefix("172.20.1.0/24")},
		"i1":     {netip.MustParsePrefix("10.250.0.2/32")},
	}
	own := func(vm string, a netip.Addr) bool {
		return slices.ContainsFunc(owns[vm], func(p netip.Prefix) bool { return p.Contains(a) })
	}
	// Left out: what only the guest's own routing decides, which the
	// control plane cannot know — the gateway's path to the on-prem
	// network behind it (192.168.48.0/20) — and a "stopped" instance's
	// packets to itself (a lab namespace keeps delivering locally where a
	// stopped VM runs nothing).
	onprem := netip.MustParsePrefix("192.168.48.0/20")
	guestOnly := func(vm string, a netip.Addr) bool {
		return (vm == "vpn-gw" && onprem.Contains(a)) || (vm == "off" && own(vm, a))
	}
	sources := []struct {
		vm, via string
		src     netip.Addr
	}{
		{"vm1", "", none}, {"vm1", "", ip4("172.16.0.9")},
		{"vm2", "", none}, {"vm2", "", ip4("172.16.1.33")},
		{"fe", "", none}, {"fe", "", ip4("172.16.2.5")}, {"fe", "", ip4("10.128.9.9")},
		{"vpn-gw", "", none}, {"vpn-gw", "onprem", ip4("192.168.50.2")},
		{"off", "", none},
		{"o1", "", none}, {"o1", "", ip4("172.20.1.4")},
		{"i1", "", none},
	}
	dsts := []netip.Addr{ip4("10.128.0.2"), ip4("172.16.0.5"), ip4("10.128.0.3"), ip4("172.16.1.200"), ip4("10.128.0.4"),
		ip4("172.16.2.14"), ip4("10.128.9.9"), ip4("10.128.0.10"), ip4("10.128.0.20"), ip4("172.16.3.3"), ip4("10.128.0.99"),
		ip4("172.16.9.9"), ip4("192.168.50.2"), ip4("192.168.60.2"), ip4("10.200.0.2"), ip4("172.20.1.77"), ip4("10.250.0.2"), ip4("8.8.8.8")}
	type pp struct {
		proto string
		port  int
	}
	pps := []pp{{"tcp", 80}, {"tcp", 8080}, {"tcp", 8081}, {"tcp", 5432}, {"tcp", 22}, {"udp", 53}, {"icmp", 0}}
	var cases []matrixCase
	for _, s := range sources {
		for _, d := range dsts {
			if guestOnly(s.vm, d) {
				continue
			}
			for _, p := range pps {
				cases = append(cases, matrixCase{from: s.vm, via: s.via, src: s.src, dst: d, proto: p.proto, port: p.port})
			}
		}
	}
	var mu sync.Mutex
	var bad []string
	delivered, ownCases := 0, 0
	sem := make(chan struct{}, 128)
	var wg sync.WaitGroup
	start := time.Now()
	for _, c := range cases {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			verdict, why := e.trace(c.from, c.src, c.dst, c.proto, c.port)
			h := handles[c.from]
			src := c.src
			if c.via != "" {
				h, src = handles[c.via], none
			}
			r := probe(h, c.proto, src, c.dst, c.port, 800*time.Millisecond)
			mu.Lock()
			defer mu.Unlock()
			if r.Delivered() {
				delivered++
			}
			if own(c.from, c.dst) {
				ownCases++
			}
			if (verdict == "DELIVERED") != r.Delivered() {
				bad = append(bad, fmt.Sprintf("%s: trace %s (%s) but the real packet was delivered=%v (%+v)", c, verdict, why, r.Delivered(), r))
				return
			}
			to, _, _ := strings.Cut(why, "|")
			to = strings.TrimPrefix(to, "forwarded:vpn-gw")
			if to == "" && netip.MustParsePrefix("192.168.48.0/20").Contains(c.dst) {
				to = "onprem"
			}
			if r.Reply != "" && to != "" && r.Reply != to {
				bad = append(bad, fmt.Sprintf("%s: trace delivers to %q, the real packet was answered by %q", c, to, r.Reply))
			}
		}()
	}
	wg.Wait()
	t.Logf("%d cases (%d delivered, %d dropped; %d to the sender's own addresses) in %v", len(cases), delivered, len(cases)-delivered, ownCases, time.Since(start))
	if len(cases) < 200 {
		t.Errorf("only %d cases", len(cases))
	}
	slices.Sort(bad)
	for _, b := range bad {
		t.Error(b)
	}
	// The CLI says what the endpoint says (a sample).
	for i := 0; i < len(cases); i += len(cases) / 10 {
		c := cases[i]
		v, _ := e.trace(c.from, c.src, c.dst, c.proto, c.port)
		if got := e.traceCLI(c.from, c.src, c.dst, c.proto, c.port); got != v {
			t.Errorf("%s: aliasnet trace says %s, the endpoint %s", c, got, v)
		}
	}
}

// TestLabBench measures the fabric at 10,000 alias ranges (100 instances
// x 100 /32s, created through the API): lab up until every route and
// anti-spoofing set is in the kernel; single alias changes from the API
// call to the route in the router namespace; and per-packet cost (UDP
// round trips, TCP throughput between two instances) at 10 and at 10,000
// aliases. A benchmark: ALIASNET_LAB_BENCH=1.
func TestLabBench(t *testing.T) {
	if os.Getenv("ALIASNET_LAB_BENCH") == "" {
		t.Skip("set ALIASNET_LAB_BENCH=1")
	}
	e := newLabEnv(t, "labbench", false)
	e.network("vpc", "s1", "10.128.0.0/16", "172.16.0.0/12")
	e.firewall(fwSpec{name: "allow-all", network: "vpc", dir: "INGRESS", allow: []string{"all"}, srcRanges: []string{"10.128.0.0/16", "172.16.0.0/12"}})
	const n, k = 100, 100
	aliasesOf := func(i, k int) []string {
		var as []string
		for j := range k {
			// Every other /32: the anti-spoofing set of an instance holds
			// k+1 separate intervals (the worst case for the set).
			as = append(as, fmt.Sprintf("pods:172.%d.%d.%d/32", 16+i/64, (i%64)*4+j/100, (j%100)*2+1))
		}
		return as
	}
	mkStart := time.Now()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			e.vm(vmSpec{name: fmt.Sprintf("vm%d", i), subnet: "s1", ip: fmt.Sprintf("10.128.%d.%d", i/200, i%200+2), aliases: aliasesOf(i, k)})
		}()
	}
	wg.Wait()
	t.Logf("control plane: %d instances x %d aliases created through the API in %v", n, k, time.Since(mkStart))

	// 1. lab up: from 10,000 aliases in the control plane to everything
	// programmed.
	took := e.up()
	st := e.status()
	router := e.handle(st.Routers[0].Namespace)
	nl, err := netlink.NewHandleAt(router)
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	rs, err := nl.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: fabric.TableDeliver}, netlink.RT_FILTER_TABLE)
	if err != nil || len(rs) != n*(k+1) {
		t.Fatalf("delivery routes: %d, %v", len(rs), err)
	}
	for _, in := range st.Instances {
		got, err := fabric.SetRanges(router, "as_"+in.NICs[0].Port)
		if err != nil || len(got) != k+1 {
			t.Fatalf("anti-spoof set of %s: %d ranges, %v", in.Name, len(got), err)
		}
	}
	t.Logf("BENCH lab-up-10k: `lab up` with %d aliases: %v (supervisor's first reconcile %s); verified %d routes in table %d and %d anti-spoof sets of %d intervals",
		n*k, took, st.Took, len(rs), fabric.TableDeliver, len(st.Instances), k+1)

	// 2. One alias changed through the API -> route in the fabric.
	pct := func(ds []time.Duration, p float64) time.Duration {
		s := slices.Clone(ds)
		slices.Sort(s)
		return s[min(len(s)-1, int(float64(len(s))*p))]
	}
	aliasChange := func(label, vm string, base []string) {
		// A fresh subscription: bulk changes before may have overflowed
		// an older one.
		events := make(chan netlink.RouteUpdate, 4096)
		done := make(chan struct{})
		defer close(done)
		if err := netlink.RouteSubscribeWithOptions(events, done, netlink.RouteSubscribeOptions{Namespace: &router}); err != nil {
			t.Fatal(err)
		}
		var total, apiT []time.Duration
		for i := range 30 {
			as := slices.Clone(base)
			dst := fmt.Sprintf("172.31.255.%d", 2*i+1)
			if len(as) == 0 {
				as = append(as, "")
			}
			as[0] = "pods:" + dst + "/32"
			start := time.Now()
			e.setAliases(vm, as...)
			api := time.Since(start)
			deadline := time.After(10 * time.Second)
		wait:
			for {
				select {
				case u := <-events:
					if u.Type == unix.RTM_NEWROUTE && u.Table == fabric.TableDeliver && u.Dst != nil && u.Dst.IP.String() == dst {
						break wait
					}
				case <-deadline:
					t.Fatalf("update %d: route %s not in the fabric within 10 s", i, dst)
				}
			}
			total = append(total, time.Since(start))
			apiT = append(apiT, api)
		}
		t.Logf("BENCH alias-change-%s: API call -> route in the fabric, %d updates: median %v, p90 %v, max %v (API call alone: median %v)",
			label, len(total), pct(total, .5), pct(total, .9), pct(total, 1), pct(apiT, .5))
		var each []string
		for i := range total {
			each = append(each, fmt.Sprintf("%.1f/%.1f", float64(total[i].Microseconds())/1000, float64(apiT[i].Microseconds())/1000))
		}
		t.Logf("alias-change-%s: each update, total/API ms: %s", label, strings.Join(each, " "))
	}
	aliasChange("10k", "vm0", aliasesOf(0, k))
	st = e.status()
	t.Logf("BENCH alias-change-10k: supervisor's last reconcile (plan, diff, program): %s", st.Took)

	// 3. Per-packet cost, vm1 -> vm2, at 10,000 aliases (and two firewall
	// rules of 5,000 source ranges each in front of the allow rule), then
	// at 10 aliases and no such rules; twice, to show the machine's noise.
	bigRules := func(add bool) {
		for r := range 2 {
			name := fmt.Sprintf("big-%d", r)
			if !add {
				e.do(e.api.Firewalls.Delete(e.project, name).Do())
				continue
			}
			var srcs []string
			for j := range 5000 {
				srcs = append(srcs, fmt.Sprintf("100.%d.%d.%d/32", 64+r, j/200, j%200+1))
			}
			e.firewall(fwSpec{name: name, network: "vpc", dir: "INGRESS", priority: 100, deny: []string{"tcp:9"}, srcRanges: srcs})
		}
	}
	setAll := func(perVM int) {
		for i := range n {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				as := aliasesOf(i, perVM)
				if perVM < k && i != 1 && i != 2 {
					as = nil
				}
				e.setAliases(fmt.Sprintf("vm%d", i), as...)
			}()
		}
		wg.Wait()
		want := n + n*perVM
		if perVM < k {
			want = n + 2*perVM
		}
		eventually(t, fmt.Sprintf("fabric at %d delivery routes", want), func() bool {
			rs, _ := nl.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: fabric.TableDeliver}, netlink.RT_FILTER_TABLE)
			return len(rs) == want
		})
		time.Sleep(300 * time.Millisecond) // the firewall rules' sets too
	}
	measure := func(label string) {
		a, b := e.handle(e.nsName("vm1")), e.handle(e.nsName("vm2"))
		rtt, tput := packetCost(t, a, b, ip4("10.128.0.4")) // vm2
		t.Logf("BENCH packet-cost %s: UDP round trip median %v p99 %v; TCP throughput %.0f Mbit/s", label, rtt[0], rtt[1], tput)
	}
	bigRules(true)
	time.Sleep(time.Second)
	measure("10000-aliases+10000-rule-ranges")
	for round := range 2 {
		bigRules(false)
		setAll(5)
		measure("10-aliases")
		if round == 0 {
			aliasChange("10", "vm1", aliasesOf(1, 5))
		}
		if round == 1 {
			break
		}
		setAll(k)
		bigRules(true)
		time.Sleep(time.Second)
		measure("10000-aliases+10000-rule-ranges")
	}
}

// packetCost measures, from namespace a to b (whose address is dst),
// UDP request/response round trips (median, p99 of 5,000) and TCP
// throughput (2 s).
func packetCost(t *testing.T, a, b netns.NsHandle, dst netip.Addr) ([2]time.Duration, float64) {
	t.Helper()
	// Echo and sink in b.
	uc, err := fabric.DoValue(b, func() (net.PacketConn, error) { return net.ListenPacket("udp4", "0.0.0.0:7001") })
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := uc.ReadFrom(buf)
			if err != nil {
				return
			}
			uc.WriteTo(buf[:n], from)
		}
	}()
	ln, err := fabric.DoValue(b, func() (net.Listener, error) { return net.Listen("tcp4", "0.0.0.0:7002") })
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	c, err := fabric.DoValue(a, func() (net.Conn, error) { return net.Dial("udp4", net.JoinHostPort(dst.String(), "7001")) })
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var rtts []time.Duration
	buf := make([]byte, 64)
	for i := range 5200 {
		c.SetDeadline(time.Now().Add(time.Second))
		start := time.Now()
		if _, err := c.Write(buf[:32]); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Read(buf); err != nil {
			t.Fatal(err)
		}
		if i >= 200 {
			rtts = append(rtts, time.Since(start))
		}
	}
	slices.Sort(rtts)
	tc, err := fabric.DoValue(a, func() (net.Conn, error) { return net.Dial("tcp4", net.JoinHostPort(dst.String(), "7002")) })
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	chunk := make([]byte, 256<<10)
	var sent int64
	start := time.Now()
	for time.Since(start) < 2*time.Second {
		n, err := tc.Write(chunk)
		if err != nil {
			t.Fatal(err)
		}
		sent += int64(n)
	}
	mbit := float64(sent*8) / time.Since(start).Seconds() / 1e6
	return [2]time.Duration{rtts[len(rtts)/2], rtts[len(rtts)*99/100]}, mbit
}

// TestFabricSpecEndpoint: the data plane's input, JSON and long-poll.
func TestFabricSpecEndpoint(t *testing.T) {
	srv := StartServer(t, "")
	e := &labEnv{t: t, srv: srv, api: srv.Compute(t), project: "specproj"}
	e.network("vpc", "s1", "10.128.0.0/16", "172.16.0.0/20")
	e.vm(vmSpec{name: "vm1", subnet: "s1", ip: "10.128.0.2", aliases: []string{"pods:172.16.0.0/24"}})
	get := func(q string) (*fabric.Spec, time.Duration) {
		start := time.Now()
		resp, err := http.Get(srv.URL() + "/aliasnet/v1/projects/specproj/fabricSpec" + q)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var s fabric.Spec
		if err := json.NewDecoder(resp.Body).Decode(&s); err != nil || resp.StatusCode != 200 {
			t.Fatalf("fabricSpec%s: %d %v", q, resp.StatusCode, err)
		}
		if resp.Header.Get("ETag") != s.ETag {
			t.Errorf("ETag header %q, body %q", resp.Header.Get("ETag"), s.ETag)
		}
		return &s, time.Since(start)
	}
	s, _ := get("")
	if len(s.Networks) != 1 || len(s.Instances) != 1 || s.Instances[0].NICs[0].MAC == "" ||
		s.Instances[0].NICs[0].Gateway != ip4("10.128.0.1") || len(s.Networks[0].Desired.Forwarding) != 2 {
		t.Fatalf("spec: %+v", s)
	}
	// Unchanged: held until the timeout, same etag.
	s2, d := get("?lastEtag=" + s.ETag + "&timeoutSec=1")
	if s2.ETag != s.ETag || d < 900*time.Millisecond {
		t.Errorf("long-poll without change: etag %s after %v", s2.ETag, d)
	}
	// A change wakes it.
	go func() {
		time.Sleep(200 * time.Millisecond)
		e.setAliases("vm1", "pods:172.16.1.0/24")
	}()
	s3, d := get("?lastEtag=" + s.ETag + "&timeoutSec=20")
	if s3.ETag == s.ETag || d > 5*time.Second || !slices.Equal(s3.Instances[0].NICs[0].Aliases, []netip.Prefix{netip.MustParsePrefix("172.16.1.0/24")}) {
		t.Errorf("long-poll with a change: etag %s after %v: %+v", s3.ETag, d, s3.Instances[0].NICs[0])
	}
	// The gob form decodes to the same.
	req, _ := http.NewRequest("GET", srv.URL()+"/aliasnet/v1/projects/specproj/fabricSpec", nil)
	req.Header.Set("Accept", fabric.GobContentType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	g, err := fabric.DecodeGob(b)
	if err != nil || g.ETag != s3.ETag || fmt.Sprint(g.Networks[0].Desired.Forwarding) != fmt.Sprint(s3.Networks[0].Desired.Forwarding) {
		t.Errorf("gob form: %v %+v", err, g)
	}

	// Deltas, as the supervisor follows them (lab.SpecClient.Next): the
	// whole spec first, then the change alone, checked against its etag.
	client := &lab.SpecClient{Server: srv.URL(), Project: "specproj"}
	have, ch, err := client.Next(context.Background(), nil, 0)
	if err != nil || have.ETag != s3.ETag || ch != nil {
		t.Fatalf("first update: %v, etag %s, changes %+v", err, have.ETag, ch)
	}
	go func() {
		time.Sleep(200 * time.Millisecond)
		e.setAliases("vm1", "pods:172.16.2.0/24")
	}()
	next, ch, err := client.Next(context.Background(), have, 20*time.Second)
	if err != nil || ch == nil || !ch.Instance("specproj/us-central1-a/vm1") ||
		!slices.Equal(next.Instances[0].NICs[0].Aliases, []netip.Prefix{netip.MustParsePrefix("172.16.2.0/24")}) {
		t.Fatalf("delta: %v, changes %+v, nic %+v", err, ch, next.Instances[0].NICs[0])
	}
	if s4, _ := get(""); s4.ETag != next.ETag {
		t.Errorf("after the delta: etag %s, the server's %s", next.ETag, s4.ETag)
	}
}
