package e2e

// VPC-native Kubernetes end to end (issue 7): seed 002's `gcloud container
// clusters create … --enable-ip-alias` against the real binary, and the
// aliasnet CNI plugin driven by the real CNI library (libcni) in network
// namespaces this test creates and removes: two "node" namespaces behind a
// "router" namespace that routes each node's primary IP and pod range (its
// alias range) to it, with nftables anti-spoofing per node port. The root
// namespace is never touched.

import (
	"context"
	"encoding/json"
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
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netns"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	compute "google.golang.org/api/compute/v1"
	container "google.golang.org/api/container/v1"
	"google.golang.org/api/option"
)

// TestGcloudContainerClustersCreate is seed 002's command, then describe,
// resize and delete, with every request gcloud made checked for a 404.
func TestGcloudContainerClustersCreate(t *testing.T) {
	s := StartServer(t, "")
	g := newGcloud(t, s, "k8s-project")
	t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "kubeconfig"))
	g.ok("compute", "networks", "create", "default", "--subnet-mode=custom")
	g.ok("compute", "networks", "subnets", "create", "default", "--network=default", "--region=us-central1",
		"--range=10.128.0.0/20", "--secondary-range=pods-range=172.16.0.0/16,services-range=172.20.0.0/20")
	out := g.ok("container", "clusters", "create", "my-cluster", "--zone", "us-central1-a", "--enable-ip-alias",
		"--cluster-secondary-range-name=pods-range", "--services-secondary-range-name=services-range", "--num-nodes", "2", "--log-http")
	k8sNo404(t, out)
	if !strings.Contains(out, "RUNNING") {
		t.Errorf("create output:\n%s", out)
	}
	out = g.ok("container", "clusters", "describe", "my-cluster", "--zone", "us-central1-a", "--format=json")
	var cl struct {
		Status             string `json:"status"`
		CurrentNodeCount   int    `json:"currentNodeCount"`
		IPAllocationPolicy struct {
			UseIPAliases               bool   `json:"useIpAliases"`
			ClusterSecondaryRangeName  string `json:"clusterSecondaryRangeName"`
			ServicesSecondaryRangeName string `json:"servicesSecondaryRangeName"`
			ClusterIpv4CidrBlock       string `json:"clusterIpv4CidrBlock"`
		} `json:"ipAllocationPolicy"`
		Usage struct {
			Pods struct {
				NodesUsed, NodesPossible int
			} `json:"pods"`
			Services struct {
				IPsUsed     int `json:"ipsUsed"`
				IPsPossible int `json:"ipsPossible"`
			} `json:"services"`
		} `json:"aliasnetUsage"`
	}
	if err := json.Unmarshal([]byte(out), &cl); err != nil {
		t.Fatalf("describe: %v\n%s", err, out)
	}
	ipa := cl.IPAllocationPolicy
	if cl.Status != "RUNNING" || cl.CurrentNodeCount != 2 || !ipa.UseIPAliases || ipa.ClusterSecondaryRangeName != "pods-range" ||
		ipa.ServicesSecondaryRangeName != "services-range" || ipa.ClusterIpv4CidrBlock != "172.16.0.0/16" ||
		cl.Usage.Pods.NodesUsed != 2 || cl.Usage.Pods.NodesPossible != 256 || cl.Usage.Services.IPsPossible != 4094 {
		t.Errorf("describe: %+v\n%s", cl, out)
	}
	// The nodes are instances with a /24 from pods-range on nic0.
	out = g.ok("compute", "instances", "list", "--format=value(name,networkInterfaces[0].aliasIpRanges[0].ipCidrRange,networkInterfaces[0].aliasIpRanges[0].subnetworkRangeName)")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("instances:\n%s", out)
	}
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) != 3 || !strings.HasPrefix(f[0], "gke-my-cluster-default-pool-") || !strings.HasSuffix(f[1], "/24") || f[2] != "pods-range" {
			t.Errorf("node instance %q", l)
		}
	}
	// Resize beyond the range: the error names the range and what it can hold.
	o2, err := g.run("container", "clusters", "resize", "my-cluster", "--zone", "us-central1-a", "--num-nodes", "300")
	if err == nil || !strings.Contains(o2, "Pod range 'pods-range' (172.16.0.0/16) of subnetwork 'default' is exhausted: it can hold 254 more node(s)") {
		t.Errorf("resize error:\n%s", o2)
	}
	g.ok("container", "clusters", "resize", "my-cluster", "--zone", "us-central1-a", "--num-nodes", "3")
	out = g.ok("container", "clusters", "list", "--format=value(name,currentNodeCount)")
	if strings.TrimSpace(out) != "my-cluster\t3" {
		t.Errorf("clusters list: %q", out)
	}
	out = g.ok("container", "clusters", "delete", "my-cluster", "--zone", "us-central1-a", "--log-http")
	k8sNo404(t, out)
	if out := g.ok("compute", "instances", "list", "--format=value(name)"); strings.TrimSpace(out) != "" {
		t.Errorf("nodes left after delete:\n%s", out)
	}
	if strings.Contains(s.Log.String(), "gke: no route") {
		t.Errorf("gcloud asked for something aliasnet does not serve:\n%s", s.Log)
	}
}

// checkNo404 fails on any HTTP 404 in gcloud --log-http output.
func k8sNo404(t *testing.T, out string) {
	t.Helper()
	var uri string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "uri: ") {
			uri = strings.TrimPrefix(l, "uri: ")
		}
		if strings.HasPrefix(l, "status: 404") {
			t.Errorf("gcloud got 404 for %s", uri)
		}
	}
}

// --- the CNI plugin in a two-node lab ---

func k8sNeedRoot(t testing.TB) {
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

func k8sSh(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// lab is the test's fabric: a router namespace and node namespaces.
type k8sLab struct {
	t      testing.TB
	prefix string
	router string
	mu     sync.Mutex
	nss    []string
}

func newK8sLab(t testing.TB) *k8sLab {
	l := &k8sLab{t: t, prefix: fmt.Sprintf("ank8s%d-", os.Getpid()%100000)}
	l.router = l.addNS("rt")
	t.Cleanup(l.cleanup)
	k8sSh(t, "ip", "-n", l.router, "link", "set", "lo", "up")
	for _, k := range []string{"net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0"} {
		k8sSh(t, "ip", "netns", "exec", l.router, "sysctl", "-qw", k)
	}
	return l
}

func (l *k8sLab) addNS(name string) string {
	ns := l.prefix + name
	exec.Command("ip", "netns", "del", ns).Run() // leftovers of a killed run
	k8sSh(l.t, "ip", "netns", "add", ns)
	l.mu.Lock()
	l.nss = append(l.nss, ns)
	l.mu.Unlock()
	return ns
}

func (l *k8sLab) delNS(ns string) {
	exec.Command("ip", "netns", "del", ns).Run()
	l.mu.Lock()
	l.nss = slices.DeleteFunc(l.nss, func(s string) bool { return s == ns })
	l.mu.Unlock()
}

func (l *k8sLab) cleanup() {
	l.mu.Lock()
	nss := slices.Clone(l.nss)
	l.mu.Unlock()
	for _, ns := range nss {
		exec.Command("ip", "netns", "del", ns).Run()
	}
	out, _ := exec.Command("ip", "netns", "list").Output()
	if strings.Contains(string(out), l.prefix) {
		l.t.Errorf("namespaces left behind:\n%s", out)
	}
}

const k8sGW = "10.128.0.1"

// addNode makes a node namespace with nic0 (eth0) = ip/32 behind the
// router, and routes ip and podRange to it; the router drops whatever the
// node sends from any other source (anti-spoofing).
func (l *k8sLab) addNode(i int, ip netip.Addr, podRange netip.Prefix) string {
	t := l.t
	ns := l.addNS(fmt.Sprintf("n%d", i))
	port := fmt.Sprintf("rt-n%d", i)
	k8sSh(t, "ip", "-n", l.router, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
	k8sSh(t, "ip", "-n", l.router, "addr", "add", k8sGW+"/32", "dev", port)
	k8sSh(t, "ip", "-n", l.router, "link", "set", port, "up")
	k8sSh(t, "ip", "-n", l.router, "route", "add", ip.String()+"/32", "dev", port)
	k8sSh(t, "ip", "-n", l.router, "route", "add", podRange.String(), "via", ip.String(), "dev", port)
	k8sSh(t, "ip", "-n", ns, "link", "set", "lo", "up")
	k8sSh(t, "ip", "-n", ns, "addr", "add", ip.String()+"/32", "dev", "eth0")
	k8sSh(t, "ip", "-n", ns, "link", "set", "eth0", "up")
	k8sSh(t, "ip", "-n", ns, "route", "add", k8sGW, "dev", "eth0", "scope", "link")
	k8sSh(t, "ip", "-n", ns, "route", "add", "default", "via", k8sGW, "dev", "eth0")
	// The node must not drop a pod's spoofed packet itself: the router's
	// anti-spoofing is what is under test.
	for _, k := range []string{"net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0", "net.ipv4.conf.eth0.rp_filter=0"} {
		k8sSh(t, "ip", "netns", "exec", ns, "sysctl", "-qw", k)
	}
	l.antiSpoof(port, []netip.Prefix{netip.PrefixFrom(ip, 32), podRange})
	return ns
}

func k8sIfname(n string) []byte {
	b := make([]byte, 16)
	copy(b, n+"\x00")
	return b
}

const k8sNFT = "k8slab"

// antiSpoof adds, in the router, "iifname PORT ip saddr != @as_PORT counter drop".
func (l *k8sLab) antiSpoof(port string, allowed []netip.Prefix) {
	t := l.t
	h, err := netns.GetFromName(l.router)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(h)))
	if err != nil {
		t.Fatal(err)
	}
	tbl := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: k8sNFT})
	ch := c.AddChain(&nftables.Chain{Name: "forward", Table: tbl, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter})
	set := &nftables.Set{Table: tbl, Name: "as_" + port, KeyType: nftables.TypeIPAddr, Interval: true}
	var els []nftables.SetElement
	sort.Slice(allowed, func(i, j int) bool { return allowed[i].Addr().Less(allowed[j].Addr()) })
	for _, p := range allowed {
		from := p.Masked().Addr().As4()
		end := k8sLast(p).Next().As4()
		els = append(els, nftables.SetElement{Key: from[:]}, nftables.SetElement{Key: end[:], IntervalEnd: true})
	}
	if err := c.AddSet(set, els); err != nil {
		t.Fatal(err)
	}
	c.AddRule(&nftables.Rule{Table: tbl, Chain: ch, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: k8sIfname(port)},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID, Invert: true},
		&expr.Counter{},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}})
	if err := c.Flush(); err != nil {
		t.Fatalf("nftables in %s: %v", l.router, err)
	}
}

func k8sLast(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v |= 1<<(32-p.Bits()) - 1
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// spoofDrops reads the anti-spoofing counter of a router port.
func (l *k8sLab) spoofDrops(port string) uint64 {
	t := l.t
	h, err := netns.GetFromName(l.router)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(h)))
	if err != nil {
		t.Fatal(err)
	}
	tbl := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: k8sNFT}
	rules, err := c.GetRules(tbl, &nftables.Chain{Name: "forward", Table: tbl})
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, r := range rules {
		mine := false
		for _, e := range r.Exprs {
			if cm, ok := e.(*expr.Cmp); ok && string(cm.Data) == string(k8sIfname(port)) {
				mine = true
			}
			if cn, ok := e.(*expr.Counter); ok && mine {
				n += cn.Packets
			}
		}
	}
	return n
}

// k8sInNS runs f on a thread switched into namespace ns.
func k8sInNS(t testing.TB, ns string, f func()) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	h, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := netns.Set(h); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			panic(err) // never leave a thread in a lab namespace
		}
	}()
	f()
}

// k8sExec runs CNI plugins inside a node namespace: the forked plugin
// inherits the namespace of the (locked) thread that starts it.
type k8sExec struct {
	invoke.DefaultExec
	ns string
}

func (e *k8sExec) ExecPlugin(ctx context.Context, path string, stdin []byte, env []string) ([]byte, error) {
	type result struct {
		out []byte
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		h, err := netns.GetFromName(e.ns)
		if err != nil {
			ch <- result{nil, err}
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			ch <- result{nil, err}
			return
		}
		out, err := e.RawExec.ExecPlugin(ctx, path, stdin, env)
		ch <- result{out, err}
	}()
	r := <-ch
	return r.out, r.err
}

// node is a lab node running the plugin.
type k8sNode struct {
	ns       string
	ip       netip.Addr
	podRange netip.Prefix
	dataDir  string
	cacheDir string
	cni      *libcni.CNIConfig
	list     *libcni.NetworkConfigList
}

// pod is a pod the test made.
type k8sPod struct {
	name, ns string
	ip       netip.Addr
	result   types.Result
	rt       *libcni.RuntimeConf
}

func newK8sNode(t testing.TB, l *k8sLab, i int, ip netip.Addr, podRange netip.Prefix, binDir string) *k8sNode {
	n := &k8sNode{ns: l.addNode(i, ip, podRange), ip: ip, podRange: podRange, dataDir: t.TempDir(), cacheDir: t.TempDir()}
	conf := fmt.Sprintf(`{"cniVersion":"1.1.0","name":"pods","plugins":[{"type":"aliasnet","range":%q,"dataDir":%q}]}`, podRange, n.dataDir)
	list, err := libcni.ConfListFromBytes([]byte(conf))
	if err != nil {
		t.Fatal(err)
	}
	n.list = list
	n.cni = libcni.NewCNIConfigWithCacheDir([]string{binDir}, n.cacheDir, &k8sExec{ns: n.ns, DefaultExec: invoke.DefaultExec{RawExec: &invoke.RawExec{Stderr: os.Stderr}}})
	return n
}

func (n *k8sNode) add(t testing.TB, l *k8sLab, name string) *k8sPod {
	t.Helper()
	p, err := n.tryAdd(l, name)
	if err != nil {
		t.Fatalf("ADD %s: %v", name, err)
	}
	return p
}

func (n *k8sNode) tryAdd(l *k8sLab, name string) (*k8sPod, error) {
	ns := l.addNS(name)
	rt := &libcni.RuntimeConf{ContainerID: "ctr-" + name, NetNS: "/run/netns/" + ns, IfName: "eth0"}
	res, err := n.cni.AddNetworkList(context.Background(), n.list, rt)
	if err != nil {
		return nil, err
	}
	r, err := current.NewResultFromResult(res)
	if err != nil {
		return nil, err
	}
	if len(r.IPs) != 1 {
		return nil, fmt.Errorf("result has %d IPs", len(r.IPs))
	}
	a, _ := netip.AddrFromSlice(r.IPs[0].Address.IP.To4())
	return &k8sPod{name: name, ns: ns, ip: a, result: res, rt: rt}, nil
}

func (n *k8sNode) del(t testing.TB, l *k8sLab, p *k8sPod) {
	t.Helper()
	if err := n.cni.DelNetworkList(context.Background(), n.list, p.rt); err != nil {
		t.Fatalf("DEL %s: %v", p.name, err)
	}
	l.delNS(p.ns)
}

func (n *k8sNode) check(t testing.TB, p *k8sPod) {
	t.Helper()
	if err := n.cni.CheckNetworkList(context.Background(), n.list, p.rt); err != nil {
		t.Errorf("CHECK %s: %v", p.name, err)
	}
}

// stateFiles lists the addresses with an allocation file on the node.
func (n *k8sNode) stateFiles(t testing.TB) []netip.Addr {
	ents, err := os.ReadDir(filepath.Join(n.dataDir, "pods"))
	if err != nil {
		t.Fatal(err)
	}
	var out []netip.Addr
	for _, e := range ents {
		if a, err := netip.ParseAddr(e.Name()); err == nil {
			out = append(out, a)
		}
	}
	return out
}

// tcpOK reports whether a TCP connection from pod `from` (optionally from
// source src) reaches a listener on pod `to`.
func k8sTCP(t testing.TB, from, to *k8sPod, src netip.Addr) bool {
	t.Helper()
	var ln net.Listener
	k8sInNS(t, to.ns, func() {
		var err error
		if ln, err = net.Listen("tcp4", to.ip.String()+":0"); err != nil {
			t.Fatal(err)
		}
	})
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("hello from " + to.name))
			c.Close()
		}
	}()
	ok := false
	k8sInNS(t, from.ns, func() {
		d := net.Dialer{Timeout: 1500 * time.Millisecond}
		if src.IsValid() {
			d.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
		}
		c, err := d.Dial("tcp4", ln.Addr().String())
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		b := make([]byte, 64)
		k, _ := c.Read(b)
		ok = string(b[:k]) == "hello from "+to.name
	})
	return ok
}

// k8sUDP reports whether a datagram from pod `from` (optionally from
// source src) reaches a socket on pod `to`.
func k8sUDP(t testing.TB, from, to *k8sPod, src netip.Addr) bool {
	t.Helper()
	var rc net.PacketConn
	k8sInNS(t, to.ns, func() {
		var err error
		if rc, err = net.ListenPacket("udp4", to.ip.String()+":0"); err != nil {
			t.Fatal(err)
		}
	})
	defer rc.Close()
	k8sInNS(t, from.ns, func() {
		laddr := &net.UDPAddr{}
		if src.IsValid() {
			laddr.IP = src.AsSlice()
		}
		c, err := net.DialUDP("udp4", laddr, rc.LocalAddr().(*net.UDPAddr))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for range 3 {
			c.Write([]byte("dgram"))
		}
	})
	rc.SetReadDeadline(time.Now().Add(2 * time.Second))
	b := make([]byte, 64)
	k, peer, err := rc.ReadFrom(b)
	if err != nil {
		return false
	}
	if src.IsValid() && peer.(*net.UDPAddr).IP.String() != src.String() {
		t.Errorf("datagram came from %v, sent from %s", peer, src)
	}
	return string(b[:k]) == "dgram"
}

// k8sPing sends one ICMP echo from pod `from` to dst and waits for the reply.
func k8sPing(t testing.TB, from *k8sPod, dst netip.Addr) bool {
	t.Helper()
	ok := false
	k8sInNS(t, from.ns, func() {
		c, err := icmp.ListenPacket("ip4:icmp", from.ip.String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		id := os.Getpid() & 0xffff
		msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: id, Seq: 1, Data: []byte("aliasnet")}}
		b, _ := msg.Marshal(nil)
		if _, err := c.WriteTo(b, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
			return
		}
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 1500)
		for {
			k, peer, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			m, err := icmp.ParseMessage(1, buf[:k])
			if err == nil && m.Type == ipv4.ICMPTypeEchoReply && peer.String() == dst.String() {
				ok = true
				return
			}
		}
	})
	return ok
}

// k8sCluster creates seed 002's network and a 2-node cluster through the
// GKE dialect (official Go client) and returns the nodes' primary IPs and
// pod ranges.
func k8sCluster(t testing.TB, s *Server) (ips []netip.Addr, ranges []netip.Prefix, csvc *container.Service) {
	ctx := context.Background()
	gce := s.Compute(t)
	mustOp := func(op *compute.Operation, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if op.Error != nil {
			t.Fatal(op.Error.Errors[0].Message)
		}
	}
	mustOp(gce.Networks.Insert("p", &compute.Network{Name: "default", AutoCreateSubnetworks: false, ForceSendFields: []string{"AutoCreateSubnetworks"}}).Do())
	mustOp(gce.Subnetworks.Insert("p", "us-central1", &compute.Subnetwork{Name: "default", Network: "global/networks/default", IpCidrRange: "10.128.0.0/20",
		SecondaryIpRanges: []*compute.SubnetworkSecondaryRange{{RangeName: "pods-range", IpCidrRange: "172.16.0.0/16"}, {RangeName: "services-range", IpCidrRange: "172.20.0.0/20"}}}).Do())
	csvc, err := container.NewService(ctx, option.WithEndpoint(s.URL()+"/"), option.WithoutAuthentication())
	if err != nil {
		t.Fatal(err)
	}
	op, err := csvc.Projects.Locations.Clusters.Create("projects/p/locations/us-central1-a", &container.CreateClusterRequest{Cluster: &container.Cluster{
		Name: "lab", IpAllocationPolicy: &container.IPAllocationPolicy{UseIpAliases: true, ClusterSecondaryRangeName: "pods-range", ServicesSecondaryRangeName: "services-range"},
		NodePools: []*container.NodePool{{Name: "default-pool", InitialNodeCount: 2}},
	}}).Do()
	if err != nil || op.Status != "DONE" || op.StatusMessage != "" || op.OperationType != "CREATE_CLUSTER" {
		t.Fatalf("create cluster: %v %+v", err, op)
	}
	if op, err := csvc.Projects.Locations.Operations.Get("projects/p/locations/us-central1-a/operations/" + op.Name).Do(); err != nil || op.Status != "DONE" {
		t.Fatalf("get operation: %v %+v", err, op)
	}
	insts, err := gce.Instances.List("p", "us-central1-a").Do()
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range insts.Items {
		nic := in.NetworkInterfaces[0]
		ips = append(ips, netip.MustParseAddr(nic.NetworkIP))
		if len(nic.AliasIpRanges) != 1 || nic.AliasIpRanges[0].SubnetworkRangeName != "pods-range" {
			t.Fatalf("node %s aliases %+v", in.Name, nic.AliasIpRanges)
		}
		ranges = append(ranges, netip.MustParsePrefix(nic.AliasIpRanges[0].IpCidrRange))
	}
	if len(ips) != 2 {
		t.Fatalf("%d node instances", len(ips))
	}
	return ips, ranges, csvc
}

// serviceIP allocates a service address through aliasnet's cluster API.
func k8sServiceIP(t testing.TB, s *Server, name string) netip.Addr {
	t.Helper()
	resp, err := http.Post(s.URL()+"/aliasnet/v1/projects/p/locations/us-central1-a/clusters/lab/services:allocate", "application/json",
		strings.NewReader(`{"name":"`+name+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ Name, IP string }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 {
		t.Fatalf("allocate service IP: %v HTTP %d", err, resp.StatusCode)
	}
	return netip.MustParseAddr(out.IP)
}

// k8sBinDir is a CNI bin dir with the plugin installed as "aliasnet" (a
// symlink to the aliasnet binary under test).
func k8sBinDir(t testing.TB) string { return k8sBinDirWith(t, binary) }

func k8sBinDirWith(t testing.TB, plugin string) string {
	dir := t.TempDir()
	if err := os.Symlink(plugin, filepath.Join(dir, "aliasnet")); err != nil {
		t.Fatal(err)
	}
	return dir
}

var (
	leanOnce sync.Once
	leanBin  string
	leanErr  error
)

// leanPlugin builds cmd/aliasnet-cni, the plugin-only binary.
func leanPlugin(t testing.TB) string {
	leanOnce.Do(func() {
		leanBin = filepath.Join(filepath.Dir(binary), "aliasnet-cni")
		out, err := exec.Command("go", "build", "-o", leanBin, "../cmd/aliasnet-cni").CombinedOutput()
		if err != nil {
			leanErr = fmt.Errorf("%v\n%s", err, out)
		}
	})
	if leanErr != nil {
		t.Fatal(leanErr)
	}
	return leanBin
}

func TestK8sCNIPlugin(t *testing.T) {
	k8sNeedRoot(t)
	s := StartServer(t, "")
	ips, ranges, _ := k8sCluster(t, s)
	// Service IPs come from the services range, never from a node's pod
	// range or a node's address.
	for _, name := range []string{"default.kubernetes", "default.web"} {
		a := k8sServiceIP(t, s, name)
		if !netip.MustParsePrefix("172.20.0.0/20").Contains(a) || ranges[0].Contains(a) || ranges[1].Contains(a) || slices.Contains(ips, a) {
			t.Errorf("service IP %s", a)
		}
	}

	l := newK8sLab(t)
	bin := k8sBinDir(t)
	nodes := []*k8sNode{newK8sNode(t, l, 1, ips[0], ranges[0], bin), newK8sNode(t, l, 2, ips[1], ranges[1], bin)}
	var pods [2][]*k8sPod
	for i, n := range nodes {
		for j := range 3 {
			p := n.add(t, l, fmt.Sprintf("p%d-%d", i+1, j))
			if !n.podRange.Contains(p.ip) {
				t.Errorf("pod %s got %s outside its node's range %s", p.name, p.ip, n.podRange)
			}
			n.check(t, p)
			pods[i] = append(pods[i], p)
		}
	}
	t.Logf("node 1 %s pods %v; node 2 %s pods %v", nodes[0].podRange, []netip.Addr{pods[0][0].ip, pods[0][1].ip, pods[0][2].ip},
		nodes[1].podRange, []netip.Addr{pods[1][0].ip, pods[1][1].ip, pods[1][2].ip})

	t.Run("pod-to-pod across nodes", func(t *testing.T) {
		for _, pr := range [][2]*k8sPod{{pods[0][0], pods[1][0]}, {pods[1][2], pods[0][1]}, {pods[0][2], pods[1][1]}} {
			if !k8sPing(t, pr[0], pr[1].ip) {
				t.Errorf("ping %s (%s) -> %s (%s) failed", pr[0].name, pr[0].ip, pr[1].name, pr[1].ip)
			}
			if !k8sTCP(t, pr[0], pr[1], netip.Addr{}) {
				t.Errorf("TCP %s -> %s failed", pr[0].name, pr[1].name)
			}
		}
		// Same node, and pod to its node's address.
		if !k8sTCP(t, pods[0][0], pods[0][1], netip.Addr{}) {
			t.Error("TCP between pods of one node failed")
		}
		if !k8sPing(t, pods[1][0], nodes[0].ip) {
			t.Error("ping from a pod to the other node's primary IP failed")
		}
		if d := l.spoofDrops("rt-n1") + l.spoofDrops("rt-n2"); d != 0 {
			t.Errorf("anti-spoofing dropped %d legitimate packets", d)
		}
	})

	t.Run("anti-spoofing still on", func(t *testing.T) {
		// A pod of node 1 sends from an address of node 2's range.
		spoof := ranges[1].Addr().Next().Next().Next().Next().Next().Next().Next()
		k8sSh(t, "ip", "-n", pods[0][0].ns, "addr", "add", spoof.String()+"/32", "dev", "eth0")
		// UDP needs no return path: what arrives is what the fabric let
		// through. The same datagram from the pod's own address arrives.
		if !k8sUDP(t, pods[0][0], pods[1][0], netip.Addr{}) {
			t.Fatal("UDP from the pod's own address did not arrive")
		}
		before := l.spoofDrops("rt-n1")
		if k8sUDP(t, pods[0][0], pods[1][0], spoof) {
			t.Error("a datagram from a spoofed source (another node's pod range) arrived")
		}
		if d := l.spoofDrops("rt-n1"); d <= before {
			t.Error("the router's anti-spoofing counter for node 1 did not move")
		}
		k8sSh(t, "ip", "-n", pods[0][0].ns, "addr", "del", spoof.String()+"/32", "dev", "eth0")
		if !k8sTCP(t, pods[0][0], pods[1][0], netip.Addr{}) {
			t.Error("legitimate traffic failed after the spoofing attempt")
		}
	})

	t.Run("DEL then ADD never reuses a live address", func(t *testing.T) {
		n := nodes[0]
		victim := pods[0][1]
		n.del(t, l, victim)
		pods[0] = slices.Delete(pods[0], 1, 2)
		p := n.add(t, l, "p1-new")
		for _, q := range pods[0] {
			if q.ip == p.ip {
				t.Errorf("ADD after DEL gave live address %s of %s", p.ip, q.name)
			}
		}
		if p.ip == victim.ip {
			t.Errorf("the address %s released a moment ago was handed out again at once", p.ip)
		}
		pods[0] = append(pods[0], p)
		if got := n.stateFiles(t); len(got) != 3 || slices.Contains(got, victim.ip) {
			t.Errorf("node 1 state after DEL/ADD: %v", got)
		}
		// DEL is idempotent.
		if err := n.cni.DelNetworkList(context.Background(), n.list, victim.rt); err != nil {
			t.Errorf("second DEL: %v", err)
		}
		// ADD again for a live pod fails and leaves its address allocated.
		if _, err := n.cni.AddNetworkList(context.Background(), n.list, p.rt); err == nil || !strings.Contains(err.Error(), "already exists") {
			t.Errorf("second ADD of a live pod: %v", err)
		}
		if got := n.stateFiles(t); !slices.Contains(got, p.ip) {
			t.Errorf("a failed second ADD released the live pod's address %s: %v", p.ip, got)
		}
		n.check(t, p)
	})

	t.Run("node restart keeps state", func(t *testing.T) {
		// A "restart" of node 2: a new CNI library instance and new plugin
		// processes over the same state (plugin data dir, library cache).
		n := nodes[1]
		restarted := &k8sNode{ns: n.ns, ip: n.ip, podRange: n.podRange, dataDir: n.dataDir, cacheDir: n.cacheDir, list: n.list}
		restarted.cni = libcni.NewCNIConfigWithCacheDir([]string{bin}, restarted.cacheDir, &k8sExec{ns: n.ns, DefaultExec: invoke.DefaultExec{RawExec: &invoke.RawExec{Stderr: os.Stderr}}})
		for _, p := range pods[1] {
			restarted.check(t, p)
		}
		live := map[netip.Addr]bool{}
		for _, p := range pods[1] {
			live[p.ip] = true
		}
		for j := range 5 {
			p := restarted.add(t, l, fmt.Sprintf("p2-r%d", j))
			if live[p.ip] {
				t.Errorf("restarted node handed out live address %s", p.ip)
			}
			live[p.ip] = true
			pods[1] = append(pods[1], p)
		}
		// The node reboots: every pod is gone. GC with no valid
		// attachment frees every address and veth.
		for _, p := range pods[1] {
			l.delNS(p.ns)
		}
		if err := restarted.cni.GCNetworkList(context.Background(), n.list, &libcni.GCArgs{}); err != nil {
			t.Fatalf("GC: %v", err)
		}
		if got := n.stateFiles(t); len(got) != 0 {
			t.Errorf("addresses left after GC: %v", got)
		}
		if out, _ := exec.Command("ip", "-n", n.ns, "-o", "link", "show", "type", "veth").Output(); strings.Count(string(out), ": an") != 0 {
			t.Errorf("host veths left after GC:\n%s", out)
		}
		pods[1] = nil
		pods[1] = append(pods[1], restarted.add(t, l, "p2-after"))
		if !k8sTCP(t, pods[0][0], pods[1][0], netip.Addr{}) {
			t.Error("TCP to a pod of the rebooted node failed")
		}
	})

	t.Run("a local route for the pod range is refused", func(t *testing.T) {
		// What a guest agent adds for an alias range: the node would
		// deliver pod traffic to itself instead of forwarding it.
		n := nodes[1]
		k8sSh(t, "ip", "-n", n.ns, "route", "add", "local", n.podRange.String(), "dev", "eth0", "table", "local", "proto", "66")
		_, err := n.tryAdd(l, "p2-local")
		k8sSh(t, "ip", "-n", n.ns, "route", "del", "local", n.podRange.String(), "dev", "eth0", "table", "local", "proto", "66")
		if err == nil || !strings.Contains(err.Error(), "local route for the pod range "+n.podRange.String()) || !strings.Contains(err.Error(), "aliasnet-pod-range") {
			t.Fatalf("ADD with a local route for the pod range: %v", err)
		}
		if got := n.stateFiles(t); len(got) != len(pods[1]) {
			t.Errorf("refused ADD left an allocation: %v", got)
		}
	})

	t.Run("100 concurrent ADDs on one node", func(t *testing.T) {
		n := nodes[0]
		before := slices.Clone(pods[0])
		const N = 100
		got := make([]*k8sPod, N)
		errs := make([]error, N)
		var wg sync.WaitGroup
		for i := range N {
			wg.Go(func() { got[i], errs[i] = n.tryAdd(l, fmt.Sprintf("c%03d", i)) })
		}
		wg.Wait()
		seen := map[netip.Addr]string{}
		for _, p := range before {
			seen[p.ip] = p.name
		}
		for i, p := range got {
			if errs[i] != nil {
				t.Fatalf("concurrent ADD %d: %v", i, errs[i])
			}
			if other, dup := seen[p.ip]; dup {
				t.Errorf("%s and %s both got %s", p.name, other, p.ip)
			}
			seen[p.ip] = p.name
			if !n.podRange.Contains(p.ip) {
				t.Errorf("%s got %s outside %s", p.name, p.ip, n.podRange)
			}
		}
		if files := n.stateFiles(t); len(files) != N+len(before) {
			t.Errorf("%d state files, want %d", len(files), N+len(before))
		}
		if !k8sPing(t, got[N-1], pods[1][0].ip) || !k8sTCP(t, got[N/2], before[0], netip.Addr{}) {
			t.Error("connectivity of concurrently added pods")
		}
		// GC by the plugin itself (the library lost its cache entries of
		// the new pods, so it cannot DEL them): only the pods from before
		// stay.
		cached, _ := filepath.Glob(filepath.Join(n.cacheDir, "results", "*-ctr-c*"))
		if len(cached) != N {
			t.Fatalf("%d cached results of the concurrent pods", len(cached))
		}
		for _, f := range cached {
			os.Remove(f)
		}
		var valid []types.GCAttachment
		for _, p := range before {
			valid = append(valid, types.GCAttachment{ContainerID: p.rt.ContainerID, IfName: p.rt.IfName})
		}
		if err := n.cni.GCNetworkList(context.Background(), n.list, &libcni.GCArgs{ValidAttachments: valid}); err != nil {
			t.Fatalf("GC: %v", err)
		}
		var want []netip.Addr
		for _, p := range before {
			want = append(want, p.ip)
		}
		files := n.stateFiles(t)
		slices.SortFunc(files, netip.Addr.Compare)
		slices.SortFunc(want, netip.Addr.Compare)
		if !slices.Equal(files, want) {
			t.Errorf("after GC: %v, want %v", files, want)
		}
		for _, p := range got {
			l.delNS(p.ns)
		}
		for _, p := range before {
			n.check(t, p)
		}
	})
}

// BenchmarkCNIAdd measures ADD through libcni on a lab node for 100
// sequential pods (namespaces made beforehand, DELs afterwards, neither
// timed) and reports the median and p99 per ADD.
func BenchmarkCNIAdd(b *testing.B) {
	k8sNeedRoot(b)
	b.Run("binary=aliasnet", func(b *testing.B) { benchCNIAdd(b, binary) })
	b.Run("binary=aliasnet-cni", func(b *testing.B) { benchCNIAdd(b, leanPlugin(b)) })
}

func benchCNIAdd(b *testing.B, plugin string) {
	l := newK8sLab(b)
	bin := k8sBinDirWith(b, plugin)
	n := newK8sNode(b, l, 1, netip.MustParseAddr("10.128.0.2"), netip.MustParsePrefix("172.16.0.0/24"), bin)
	const pods = 100
	var lat []time.Duration
	round := 0
	for b.Loop() {
		b.StopTimer()
		var rts []*libcni.RuntimeConf
		var nss []string
		for i := range pods {
			ns := l.addNS(fmt.Sprintf("b%d-%d", round, i))
			nss = append(nss, ns)
			rts = append(rts, &libcni.RuntimeConf{ContainerID: fmt.Sprintf("bench-%d-%d", round, i), NetNS: "/run/netns/" + ns, IfName: "eth0"})
		}
		round++
		b.StartTimer()
		for _, rt := range rts {
			t0 := time.Now()
			if _, err := n.cni.AddNetworkList(context.Background(), n.list, rt); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(t0))
		}
		b.StopTimer()
		for i, rt := range rts {
			if err := n.cni.DelNetworkList(context.Background(), n.list, rt); err != nil {
				b.Fatal(err)
			}
			l.delNS(nss[i])
		}
		b.StartTimer()
	}
	slices.Sort(lat)
	q := func(f float64) float64 { return float64(lat[int(f*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(q(0.5), "p50-ms/ADD")
	b.ReportMetric(q(0.99), "p99-ms/ADD")
	b.ReportMetric(float64(len(lat))/float64(b.N), "ADDs/op")
}

// TestK8sNodeAgentForwardsToPods: a cluster node runs the real guest agent
// (`aliasnet agent`) against the real metadata server, and the CNI plugin
// reads the node's pod range from that server too. The agent installs
// local routes for the node's other aliases but none for the pod range
// (the metadata names it in the instance attribute aliasnet-pod-range), so
// traffic from outside the node reaches its pods: the node forwards it.
// A local route for the pod range would make the node answer for its
// pods' addresses itself, which the test shows as well.
//
//	client ns ── host ns (fabric: pod range via the node; metadata server) ── vm ns (node: agent, plugin) ── pod ns
func TestK8sNodeAgentForwardsToPods(t *testing.T) {
	l := newGuestLab(t)
	v := l.vm
	l.serveVM()
	ctx := context.Background()
	// An alias that is not the pod range: the agent keeps handling it.
	l.setAliases("10.77.0.50/32")
	csvc, err := container.NewService(ctx, option.WithEndpoint("http://"+guestAPI+"/"), option.WithoutAuthentication(), option.WithHTTPClient(nsHTTP(l.host)))
	if err != nil {
		t.Fatal(err)
	}
	op, err := csvc.Projects.Locations.Clusters.Create("projects/"+guestProj+"/locations/"+guestZone, &container.CreateClusterRequest{Cluster: &container.Cluster{
		Name: "lab", Network: "net1", Subnetwork: "s1",
		IpAllocationPolicy: &container.IPAllocationPolicy{UseIpAliases: true, ClusterSecondaryRangeName: "pods", ServicesIpv4CidrBlock: "/24"},
		NodePools:          []*container.NodePool{{Name: "default-pool"}},
	}}).Do()
	if err != nil || op.Status != "DONE" || op.StatusMessage != "" {
		t.Fatalf("create cluster: %v %+v", err, op)
	}
	resp, err := nsHTTP(l.host).Post("http://"+guestAPI+"/aliasnet/v1/projects/"+guestProj+"/locations/"+guestZone+"/clusters/lab/nodes:join",
		"application/json", strings.NewReader(`{"instance":"vm1","zone":"`+guestZone+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("join: HTTP %d", resp.StatusCode)
	}
	podRange := netip.MustParsePrefix(l.metadata(v, "/computeMetadata/v1/instance/attributes/aliasnet-pod-range", true, 200))
	if !netip.MustParsePrefix("10.78.0.0/20").Contains(podRange.Addr()) || podRange.Bits() != 24 {
		t.Fatalf("pod range %s", podRange)
	}
	aliases := l.metadata(v, "/computeMetadata/v1/instance/network-interfaces/0/ip-aliases/", true, 200)
	if !strings.Contains(aliases, podRange.String()) || !strings.Contains(aliases, "10.77.0.50/32") {
		t.Fatalf("nic0 aliases %q", aliases)
	}

	// A route for the pod range left by an older agent (proto 66): the
	// agent removes it.
	guestSh(t, "ip", "-n", v, "route", "add", "local", podRange.String(), "dev", "eth0", "table", "local", "proto", "66")
	agent := startInNS(t, "agent", v, binary, "agent", "--metadata", "http://"+mdAddr, "--state-file", filepath.Join(t.TempDir(), "agent.json"))
	eventually(t, "the agent's route for the other alias", func() bool { return slices.Contains(l.vmRoutes(), "10.77.0.50/32") })
	eventually(t, "no route for the pod range", func() bool { return !slices.Contains(l.vmRoutes(), podRange.String()) })
	time.Sleep(2500 * time.Millisecond) // two resyncs
	if rs := l.vmRoutes(); slices.Contains(rs, podRange.String()) || !agent.running() {
		t.Fatalf("routes %v (agent running: %v)\n%s", rs, agent.running(), agent.out)
	}
	if !strings.Contains(agent.out.String(), "leaving the pod range to the CNI plugin") {
		t.Errorf("the agent did not say why it skips the pod range:\n%s", agent.out)
	}

	// The plugin in the node, its range from the metadata server.
	podNS := fmt.Sprintf("ank8sa%d-pod", os.Getpid()%100000)
	exec.Command("ip", "netns", "del", podNS).Run()
	guestSh(t, "ip", "netns", "add", podNS)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", podNS).Run() })
	list, err := libcni.ConfListFromBytes([]byte(fmt.Sprintf(`{"cniVersion":"1.1.0","name":"pods","plugins":[{"type":"aliasnet","dataDir":%q,"metadata":"http://%s"}]}`,
		t.TempDir(), mdAddr)))
	if err != nil {
		t.Fatal(err)
	}
	cni := libcni.NewCNIConfigWithCacheDir([]string{k8sBinDir(t)}, t.TempDir(), &k8sExec{ns: v, DefaultExec: invoke.DefaultExec{RawExec: &invoke.RawExec{Stderr: os.Stderr}}})
	res, err := cni.AddNetworkList(ctx, list, &libcni.RuntimeConf{ContainerID: "ctr-agent-pod", NetNS: "/run/netns/" + podNS, IfName: "eth0"})
	if err != nil {
		t.Fatalf("ADD: %v", err)
	}
	r, err := current.NewResultFromResult(res)
	if err != nil || len(r.IPs) != 1 {
		t.Fatalf("result %v %v", res, err)
	}
	podIP, _ := netip.AddrFromSlice(r.IPs[0].Address.IP.To4())
	if !podRange.Contains(podIP) {
		t.Fatalf("pod got %s outside the node's pod range %s", podIP, podRange)
	}
	pod := &k8sPod{name: "pod", ns: podNS, ip: podIP}
	client := &k8sPod{name: "client", ns: l.client, ip: netip.MustParseAddr("10.99.0.2")}
	if !k8sTCP(t, client, pod, netip.Addr{}) {
		t.Fatal("TCP from outside the node to its pod failed: the node does not forward the pod range")
	}
	if !k8sPing(t, pod, client.ip) {
		t.Error("ping from the pod to a host outside the node failed")
	}
	if !l.answered("10.77.0.50") {
		t.Error("the node does not answer on its other alias")
	}

	// The control. Without policy routing the kernel merges the local and
	// main tables, so the pod's /32 outranks a local /24; with any rule of
	// the node's own (CNI plugins, VPNs and multi-NIC setups add them) the
	// local table is looked up first, and a local route for the pod range
	// (not the agent's, so it stays) makes the node take the pod's traffic
	// for itself.
	guestSh(t, "ip", "-n", v, "rule", "add", "from", "192.0.2.0/24", "lookup", "main", "pref", "100")
	if !k8sTCP(t, client, pod, netip.Addr{}) {
		t.Fatal("TCP to the pod failed with an ip rule and no local route")
	}
	guestSh(t, "ip", "-n", v, "route", "add", "local", podRange.String(), "dev", "eth0", "table", "local", "proto", "static")
	if k8sTCP(t, client, pod, netip.Addr{}) {
		t.Error("TCP reached the pod although the node has a local route for its range: the test proves nothing")
	}
	guestSh(t, "ip", "-n", v, "route", "del", "local", podRange.String(), "dev", "eth0", "table", "local")
	if !k8sTCP(t, client, pod, netip.Addr{}) {
		t.Error("TCP to the pod failed after the local route went")
	}
}

// TestK8sCNIPluginStartsEarly: the aliasnet binary invoked as a CNI plugin
// runs it from package initialisation (internal/cni/early), before the
// server's dependencies are initialised: that is most of the one binary's
// start-up cost, paid at every pod's ADD. A dependency added to the
// plugin (net/http, say) that puts it behind them fails here.
func TestK8sCNIPluginStartsEarly(t *testing.T) {
	cmd := exec.Command(binary)
	cmd.Env = append(os.Environ(), "CNI_COMMAND=VERSION", "GODEBUG=inittrace=1")
	cmd.Stdin = strings.NewReader(`{"cniVersion":"1.1.0"}`)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("VERSION: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stdout.String(), `"supportedVersions"`) || !strings.Contains(stdout.String(), "1.1.0") {
		t.Fatalf("VERSION answered %q", stdout.String())
	}
	inited := map[string]bool{}
	for _, l := range strings.Split(stderr.String(), "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[0] == "init" {
			inited[f[1]] = true
		}
	}
	if !inited["github.com/aliasnet/aliasnet/internal/cni"] {
		t.Fatalf("no init trace of the plugin:\n%s", stderr.String())
	}
	for _, p := range []string{"github.com/aliasnet/aliasnet/internal/cli", "github.com/aliasnet/aliasnet/internal/store",
		"github.com/aliasnet/aliasnet/internal/server", "google.golang.org/grpc", "go.etcd.io/etcd/client/v3", "net/http"} {
		if inited[p] {
			t.Errorf("%s was initialised before the plugin ran (%d packages in all)", p, len(inited))
		}
	}
	t.Logf("%d packages initialised before the plugin ran", len(inited))
}
