package e2e

// Cloud Router end to end: the real binary with --bgp-listen, routers
// created with the official compute Go client, and real BIRD 2 peers on
// loopback (127.0.0.2 and 127.0.0.3, strict bind, no kernel protocol: BIRD
// never touches the host's routing table). What arrives is read with
// `birdc show route`.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"text/template"
	"time"

	compute "google.golang.org/api/compute/v1"
)

const birdDeadline = 10 * time.Second

func requireBIRD(t testing.TB) {
	t.Helper()
	for _, bin := range []string{"bird", "birdc"} {
		if _, err := exec.LookPath(bin); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s not found (CI=true): apt-get install -y bird2", bin)
			}
			t.Skipf("%s not found: install bird2 to run the BGP tests against a real peer", bin)
		}
	}
}

// bgpPort is a TCP port free on 127.0.0.1, .2 and .3: the speaker and the
// BIRDs all use it, each on its own address (as two routers both use 179).
func bgpPort(t testing.TB) int {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		ok := true
		for _, a := range []string{"127.0.0.2", "127.0.0.3"} {
			l2, err := net.Listen("tcp", fmt.Sprintf("%s:%d", a, port))
			if err != nil {
				ok = false
				break
			}
			l2.Close()
		}
		l.Close()
		if ok {
			return port
		}
	}
	t.Fatal("no port free on 127.0.0.1-3")
	return 0
}

// birdConf is the peer's whole configuration (also in docs/routing-dns.md).
var birdConf = template.Must(template.New("bird").Parse(`router id {{.Addr}};
log "{{.Dir}}/bird.log" all;
protocol device { }
{{- if .Static}}
protocol static static4 { ipv4; route {{.Static}} blackhole; }
{{- end}}
protocol bgp aliasnet {
  local {{.Addr}} port {{.Port}} as {{.ASN}};
  neighbor 127.0.0.1 port {{.Port}} as 65000;
  strict bind yes;
  multihop;
  connect delay time 1;
  connect retry time 1;
  error wait time 1, 2;
  ipv4 { import all; export where source = RTS_STATIC; };
}
`))

type birdPeer struct {
	t    testing.TB
	dir  string
	sock string
}

func startBIRD(t testing.TB, addr string, port int, asn uint32, static string) *birdPeer {
	t.Helper()
	requireBIRD(t)
	dir, err := os.MkdirTemp("", "bird") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	var conf strings.Builder
	if err := birdConf.Execute(&conf, map[string]any{"Addr": addr, "Port": port, "ASN": asn, "Static": static, "Dir": dir}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "bird.conf")
	if err := os.WriteFile(path, []byte(conf.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	b := &birdPeer{t: t, dir: dir, sock: filepath.Join(dir, "s")}
	cmd := exec.Command("bird", "-f", "-c", path, "-s", b.sock, "-P", filepath.Join(dir, "pid"))
	out, _ := os.Create(filepath.Join(dir, "stderr"))
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		out.Close()
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "bird.log"))
			if len(log) > 4000 {
				log = log[len(log)-4000:]
			}
			t.Logf("BIRD %s log:\n%s", addr, log)
		}
	})
	waitUntil(t, birdDeadline, "BIRD control socket", func() (bool, string) {
		s, err := b.birdc("show", "status")
		return err == nil && strings.Contains(s, "Daemon is up and running"), s
	})
	return b
}

func (b *birdPeer) birdc(args ...string) (string, error) {
	out, err := exec.Command("birdc", append([]string{"-s", b.sock}, args...)...).CombinedOutput()
	return string(out), err
}

var birdRouteHead = regexp.MustCompile(`^([0-9a-fA-F.:]+/\d+)\s`)

// routes is what `birdc show route protocol aliasnet` lists: the prefixes
// BIRD has from aliasnet.
func (b *birdPeer) routes() ([]netip.Prefix, string) {
	s, err := b.birdc("show", "route", "protocol", "aliasnet")
	if err != nil {
		return nil, s
	}
	var out []netip.Prefix
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if m := birdRouteHead.FindStringSubmatch(sc.Text()); m != nil {
			if p, err := netip.ParsePrefix(m[1]); err == nil {
				out = append(out, p)
			}
		}
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int { return strings.Compare(a.String(), b.String()) })
	return out, s
}

var birdProtoLine = regexp.MustCompile(`(?m)^aliasnet\s+BGP\s+\S+\s+\S+\s+(\S+)\s+(\S+)`)

// session returns BIRD's session state ("Established", ...) and the time
// of its last state change.
func (b *birdPeer) session() (state, since string) {
	s, _ := b.birdc("show", "protocols", "aliasnet")
	if m := birdProtoLine.FindStringSubmatch(s); m != nil {
		return m[2], m[1]
	}
	return "", ""
}

// waitRoutes waits until BIRD has exactly want from aliasnet and returns
// how long that took.
func (b *birdPeer) waitRoutes(want ...string) time.Duration {
	b.t.Helper()
	slices.Sort(want)
	start := time.Now()
	waitUntil(b.t, birdDeadline, fmt.Sprintf("BIRD to have exactly %v", want), func() (bool, string) {
		got, raw := b.routes()
		gs := make([]string, len(got))
		for i, p := range got {
			gs[i] = p.String()
		}
		slices.Sort(gs)
		return slices.Equal(gs, want), raw
	})
	return time.Since(start)
}

// waitUntil polls cond every 10 ms until it holds, or fails after d.
func waitUntil(t testing.TB, d time.Duration, what string, cond func() (bool, string)) time.Duration {
	t.Helper()
	start := time.Now()
	var last string
	for {
		ok, info := cond()
		if ok {
			return time.Since(start)
		}
		last = info
		if time.Since(start) > d {
			t.Fatalf("timed out after %v waiting for %s; last state:\n%s", d, what, last)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func routerStatus(t *testing.T, c *compute.Service, name string) *compute.RouterStatus {
	t.Helper()
	st, err := c.Routers.GetRouterStatus(proj, region, name).Do()
	if err != nil {
		t.Fatal(err)
	}
	return st.Result
}

func peerStatus(st *compute.RouterStatus, name string) *compute.RouterStatusBgpPeerStatus {
	for _, p := range st.BgpPeerStatus {
		if p.Name == name {
			return p
		}
	}
	return &compute.RouterStatusBgpPeerStatus{}
}

func hasRoute(rs []*compute.Route, dest, nextHop string) bool {
	return slices.ContainsFunc(rs, func(r *compute.Route) bool { return r.DestRange == dest && r.NextHopIp == nextHop })
}

// setSecondary replaces subnet-a's secondary ranges (PATCH with the
// fingerprint, as gcloud does).
func setSecondary(t *testing.T, c *compute.Service, ranges map[string]string) {
	t.Helper()
	sn, err := c.Subnetworks.Get(proj, region, "subnet-a").Do()
	if err != nil {
		t.Fatal(err)
	}
	var sec []*compute.SubnetworkSecondaryRange
	for _, name := range slices.Sorted(mapsKeys(ranges)) {
		sec = append(sec, &compute.SubnetworkSecondaryRange{RangeName: name, IpCidrRange: ranges[name]})
	}
	must(t)(c.Subnetworks.Patch(proj, region, "subnet-a", &compute.Subnetwork{SecondaryIpRanges: sec,
		Fingerprint: sn.Fingerprint, ForceSendFields: []string{"SecondaryIpRanges"}}).Do())
}

func mapsKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// effectiveDynamic lists the DYNAMIC routes in vm1's effective routes
// (aliasnet's route engine); ok is false when that API is not there.
func effectiveDynamic(t *testing.T, s *Server) ([]string, bool) {
	resp, err := http.Get(s.URL() + "/aliasnet/v1/projects/" + proj + "/zones/" + zone + "/instances/vm1/effectiveRoutes")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, false
	}
	var er struct {
		Routes []map[string]any `json:"routes"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&er); err != nil {
		return nil, false
	}
	var out []string
	for _, r := range er.Routes {
		if r["kind"] == "DYNAMIC" {
			b, _ := json.Marshal(r)
			out = append(out, string(b))
		}
	}
	return out, true
}

// TestRouterAdvertisesToBIRD: seed 000's subnet advertised by a Cloud
// Router to a real BIRD; secondary ranges announced and withdrawn within a
// second without a session reset; CUSTOM mode with only the secondary
// range (the VMs' primary range is no longer reachable from on-prem); a
// per-peer custom advertisement to a second BIRD; BIRD's own prefix learned
// as a dynamic route of the network.
func TestRouterAdvertisesToBIRD(t *testing.T) {
	requireBIRD(t)
	port := bgpPort(t)
	b := startBIRD(t, "127.0.0.2", port, 65001, "203.0.113.0/24")
	s := StartServer(t, "", "--bgp-listen", fmt.Sprintf("127.0.0.1:%d", port))
	c := s.Compute(t)
	seedNetwork(t, c)
	must(t)(c.Instances.Insert(proj, zone, &compute.Instance{Name: "vm1", NetworkInterfaces: nic(sec("172.16.0.0/24"))}).Do())

	t0 := time.Now()
	must(t)(c.Routers.Insert(proj, region, &compute.Router{
		Name: "cr", Network: "projects/" + proj + "/global/networks/vpc",
		Bgp:        &compute.RouterBgp{Asn: 65000},
		Interfaces: []*compute.RouterInterface{{Name: "if-onprem", IpRange: "127.0.0.1/8"}},
		BgpPeers: []*compute.RouterBgpPeer{{Name: "on-prem", InterfaceName: "if-onprem", PeerIpAddress: "127.0.0.2",
			PeerAsn: 65001, AdvertisedRoutePriority: 100}},
	}).Do())
	d := b.waitRoutes("10.128.0.0/16", "172.16.0.0/20")
	t.Logf("DEFAULT mode: primary and secondary range at BIRD %v after the router insert returned (%v from the call)", d, time.Since(t0))
	_, since := b.session()

	t.Run("secondary range added and removed", func(t *testing.T) {
		start := time.Now()
		setSecondary(t, c, map[string]string{"container-range": "172.16.0.0/20", "svc-range": "172.17.0.0/20"})
		b.waitRoutes("10.128.0.0/16", "172.16.0.0/20", "172.17.0.0/20")
		add := time.Since(start)
		start = time.Now()
		setSecondary(t, c, map[string]string{"container-range": "172.16.0.0/20"})
		b.waitRoutes("10.128.0.0/16", "172.16.0.0/20")
		del := time.Since(start)
		t.Logf("new secondary range at BIRD %v after the PATCH started; withdrawn %v after the removal started", add, del)
		if add > time.Second || del > time.Second {
			t.Errorf("announce %v / withdraw %v: want within 1 s", add, del)
		}
	})

	t.Run("CUSTOM: only the secondary range", func(t *testing.T) {
		must(t)(c.Routers.Patch(proj, region, "cr", &compute.Router{Bgp: &compute.RouterBgp{
			AdvertiseMode: "CUSTOM", AdvertisedIpRanges: []*compute.RouterAdvertisedIpRange{{Range: "172.16.0.0/20", Description: "containers"}},
		}}).Do())
		d := b.waitRoutes("172.16.0.0/20")
		t.Logf("primary range withdrawn %v after the PATCH returned", d)
		r, err := c.Routers.Get(proj, region, "cr").Do()
		if err != nil {
			t.Fatal(err)
		}
		if r.Bgp.Asn != 65000 || r.Bgp.AdvertiseMode != "CUSTOM" || len(r.Bgp.AdvertisedIpRanges) != 1 {
			t.Errorf("router after patch: %+v", r.Bgp)
		}
		// ALL_SUBNETS plus an extra range, then back to DEFAULT.
		must(t)(c.Routers.Patch(proj, region, "cr", &compute.Router{Bgp: &compute.RouterBgp{
			AdvertisedGroups: []string{"ALL_SUBNETS"}, AdvertisedIpRanges: []*compute.RouterAdvertisedIpRange{{Range: "192.0.2.0/24"}},
		}}).Do())
		b.waitRoutes("10.128.0.0/16", "172.16.0.0/20", "192.0.2.0/24")
		must(t)(c.Routers.Patch(proj, region, "cr", &compute.Router{Bgp: &compute.RouterBgp{AdvertiseMode: "DEFAULT"}}).Do())
		b.waitRoutes("10.128.0.0/16", "172.16.0.0/20")
	})

	t.Run("session never reset", func(t *testing.T) {
		state, now := b.session()
		if state != "Established" || now != since {
			t.Errorf("BIRD session: %s since %s, want Established since %s (no reset)", state, now, since)
		}
	})

	t.Run("learned route in getRouterStatus and in the network", func(t *testing.T) {
		waitUntil(t, birdDeadline, "BIRD's 203.0.113.0/24 learned", func() (bool, string) {
			st := routerStatus(t, c, "cr")
			p := peerStatus(st, "on-prem")
			ok := p.Status == "UP" && p.State == "Established" && p.NumLearnedRoutes == 1 &&
				hasRoute(st.BestRoutesForRouter, "203.0.113.0/24", "127.0.0.2") && hasRoute(st.BestRoutes, "203.0.113.0/24", "127.0.0.2")
			b, _ := json.MarshalIndent(st, "", " ")
			return ok, string(b)
		})
		st := routerStatus(t, c, "cr")
		p := peerStatus(st, "on-prem")
		var adv []string
		for _, r := range p.AdvertisedRoutes {
			adv = append(adv, fmt.Sprintf("%s/%d", r.DestRange, r.Priority))
		}
		if want := []string{"10.128.0.0/16/100", "172.16.0.0/20/100"}; !slices.Equal(adv, want) {
			t.Errorf("advertisedRoutes (range/priority) = %v, want %v", adv, want)
		}
		if p.IpAddress != "127.0.0.1" || p.PeerIpAddress != "127.0.0.2" || p.UptimeSeconds == "" {
			t.Errorf("peer status: %+v", p)
		}
		// The route engine (netpolicy) sees it as a dynamic route of vm1's network.
		if dyn, ok := effectiveDynamic(t, s); ok {
			if len(dyn) != 1 || !strings.Contains(dyn[0], "203.0.113.0/24") {
				t.Errorf("vm1's effective DYNAMIC routes = %v, want BIRD's 203.0.113.0/24", dyn)
			}
		} else {
			t.Log("effectiveRoutes API not available: skipped the route-engine check")
		}
	})

	t.Run("per-peer CUSTOM advertisement to a second BIRD", func(t *testing.T) {
		b2 := startBIRD(t, "127.0.0.3", port, 65003, "")
		r, err := c.Routers.Get(proj, region, "cr").Do()
		if err != nil {
			t.Fatal(err)
		}
		r.BgpPeers = append(r.BgpPeers, &compute.RouterBgpPeer{Name: "branch", InterfaceName: "if-onprem", IpAddress: "127.0.0.1",
			PeerIpAddress: "127.0.0.3", PeerAsn: 65003, AdvertisedRoutePriority: 200, AdvertiseMode: "CUSTOM",
			AdvertisedIpRanges: []*compute.RouterAdvertisedIpRange{{Range: "172.16.0.0/20"}}})
		must(t)(c.Routers.Patch(proj, region, "cr", &compute.Router{BgpPeers: r.BgpPeers}).Do())
		d := b2.waitRoutes("172.16.0.0/20")
		t.Logf("second peer established and has only its custom range after %v", d)
		b.waitRoutes("10.128.0.0/16", "172.16.0.0/20")
		if state, now := b.session(); state != "Established" || now != since {
			t.Errorf("adding a peer reset the first session: %s since %s (was %s)", state, now, since)
		}
		p := peerStatus(routerStatus(t, c, "cr"), "branch")
		if p.Status != "UP" || len(p.AdvertisedRoutes) != 1 || p.AdvertisedRoutes[0].Priority != 200 {
			t.Errorf("branch peer status: %+v", p)
		}
	})

	t.Run("router deleted: sessions closed, routes withdrawn, dynamic routes gone", func(t *testing.T) {
		must(t)(c.Routers.Delete(proj, region, "cr").Do())
		b.waitRoutes()
		waitUntil(t, birdDeadline, "BIRD session down", func() (bool, string) {
			state, _ := b.session()
			return state != "Established", state
		})
		if _, ok := effectiveDynamic(t, s); ok {
			waitUntil(t, birdDeadline, "no dynamic route left", func() (bool, string) {
				dyn, _ := effectiveDynamic(t, s)
				return len(dyn) == 0, fmt.Sprint(dyn)
			})
		}
		if out, _ := b.birdc("show", "protocols"); strings.Contains(out, "Kernel") {
			t.Errorf("BIRD runs a kernel protocol:\n%s", out)
		}
	})
}

// TestRouterValidation: refusals name the field, as GCE does.
func TestRouterValidation(t *testing.T) {
	s := StartServer(t, "")
	c := s.Compute(t)
	seedNetwork(t, c)
	netURL := "projects/" + proj + "/global/networks/vpc"
	ifs := []*compute.RouterInterface{{Name: "if0", IpRange: "169.254.0.1/30"}}
	peer := func(mod func(p *compute.RouterBgpPeer)) []*compute.RouterBgpPeer {
		p := &compute.RouterBgpPeer{Name: "p", InterfaceName: "if0", PeerIpAddress: "169.254.0.2", PeerAsn: 65001}
		mod(p)
		return []*compute.RouterBgpPeer{p}
	}
	for _, tc := range []struct {
		name  string
		r     *compute.Router
		field string
		text  string
	}{
		{"public ASN", &compute.Router{Name: "r", Network: netURL, Bgp: &compute.RouterBgp{Asn: 15169}}, "bgp.asn", "private ASN"},
		{"ranges in DEFAULT mode", &compute.Router{Name: "r", Network: netURL, Bgp: &compute.RouterBgp{Asn: 65000,
			AdvertisedIpRanges: []*compute.RouterAdvertisedIpRange{{Range: "172.16.0.0/20"}}}}, "bgp.advertisedIpRanges[0].range", "CUSTOM"},
		{"unknown group", &compute.Router{Name: "r", Network: netURL, Bgp: &compute.RouterBgp{Asn: 65000, AdvertiseMode: "CUSTOM",
			AdvertisedGroups: []string{"ALL_PEERS"}}}, "bgp.advertisedGroups[0]", "ALL_SUBNETS"},
		{"host bits", &compute.Router{Name: "r", Network: netURL, Bgp: &compute.RouterBgp{Asn: 65000, AdvertiseMode: "CUSTOM",
			AdvertisedIpRanges: []*compute.RouterAdvertisedIpRange{{Range: "172.16.0.1/20"}}}}, "bgp.advertisedIpRanges[0].range", "172.16.0.0/20"},
		{"missing interface", &compute.Router{Name: "r", Network: netURL, Bgp: &compute.RouterBgp{Asn: 65000},
			BgpPeers: peer(func(p *compute.RouterBgpPeer) { p.InterfaceName = "nope" })}, "bgpPeers[0].interfaceName", "nope"},
		{"iBGP peer", &compute.Router{Name: "r", Network: netURL, Bgp: &compute.RouterBgp{Asn: 65000}, Interfaces: ifs,
			BgpPeers: peer(func(p *compute.RouterBgpPeer) { p.PeerAsn = 65000 })}, "bgpPeers[0].peerAsn", "eBGP"},
		{"address outside the interface", &compute.Router{Name: "r", Network: netURL, Bgp: &compute.RouterBgp{Asn: 65000}, Interfaces: ifs,
			BgpPeers: peer(func(p *compute.RouterBgpPeer) { p.IpAddress = "169.254.9.1" })}, "bgpPeers[0].ipAddress", "169.254.0.1/30"},
		{"priority", &compute.Router{Name: "r", Network: netURL, Bgp: &compute.RouterBgp{Asn: 65000}, Interfaces: ifs,
			BgpPeers: peer(func(p *compute.RouterBgpPeer) { p.AdvertisedRoutePriority = 70000 })}, "bgpPeers[0].advertisedRoutePriority", "65535"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Routers.Insert(proj, region, tc.r).Do()
			wantErrField(t, err, tc.field, tc.text)
		})
	}
	if _, err := c.Routers.Insert(proj, region, &compute.Router{Name: "r", Network: "projects/" + proj + "/global/networks/nope"}).Do(); apiCode(err) != 404 {
		t.Errorf("router on a missing network: %v, want 404", err)
	}
	// A valid router: the interface's address becomes the peer's, the
	// priority defaults to 100, and the router survives a restart.
	must(t)(c.Routers.Insert(proj, region, &compute.Router{Name: "r", Network: netURL, Bgp: &compute.RouterBgp{Asn: 65000},
		Interfaces: ifs, BgpPeers: peer(func(*compute.RouterBgpPeer) {})}).Do())
	if _, err := c.Routers.Insert(proj, region, &compute.Router{Name: "r", Network: netURL}).Do(); apiCode(err) != 409 {
		t.Errorf("duplicate router: %v, want 409", err)
	}
	s.Stop()
	s2 := StartServer(t, s.DataDir)
	r, err := s2.Compute(t).Routers.Get(proj, region, "r").Do()
	if err != nil {
		t.Fatal(err)
	}
	if p := r.BgpPeers[0]; p.IpAddress != "169.254.0.1" || p.AdvertisedRoutePriority != 100 || p.Enable != "TRUE" || r.Bgp.AdvertiseMode != "DEFAULT" {
		t.Errorf("stored router: bgp %+v peer %+v", r.Bgp, p)
	}
	st, err := s2.Compute(t).Routers.GetRouterStatus(proj, region, "r").Do()
	if err != nil || len(st.Result.BgpPeerStatus) != 1 || st.Result.BgpPeerStatus[0].Status != "DOWN" {
		t.Errorf("status without --bgp-listen: %+v %v", st, err)
	}
}

// TestRoutersCLI drives the aliasnet CLI's gcloud-shaped router verbs.
func TestRoutersCLI(t *testing.T) {
	s := StartServer(t, "")
	seedNetwork(t, s.Compute(t))
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(binary, append([]string{"--server", s.URL(), "--project", proj}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("aliasnet %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	run("routers", "create", "cr", "--network", "vpc", "--region", region, "--asn", "65000",
		"--advertisement-mode", "custom", "--set-advertisement-groups", "all_subnets", "--set-advertisement-ranges", "192.0.2.0/24=lab")
	out := run("routers", "add-bgp-peer", "cr", "--region", region, "--peer-name", "on-prem", "--interface", "if0",
		"--ip-address", "169.254.0.1", "--peer-ip-address", "169.254.0.2", "--peer-asn", "65001", "--advertised-route-priority", "150")
	if !strings.Contains(out, "on-prem=169.254.0.2") || !strings.Contains(out, "CUSTOM:ALL_SUBNETS,192.0.2.0/24") {
		t.Errorf("add-bgp-peer output:\n%s", out)
	}
	run("routers", "update", "cr", "--region", region, "--remove-advertisement-groups", "all_subnets", "--add-advertisement-ranges", "172.16.0.0/20")
	out = run("routers", "describe", "cr", "--region", region, "--format", "json")
	var r compute.Router
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err, out)
	}
	var ranges []string
	for _, a := range r.Bgp.AdvertisedIpRanges {
		ranges = append(ranges, a.Range)
	}
	if len(r.Bgp.AdvertisedGroups) != 0 || !slices.Equal(ranges, []string{"192.0.2.0/24", "172.16.0.0/20"}) ||
		len(r.BgpPeers) != 1 || r.BgpPeers[0].AdvertisedRoutePriority != 150 || len(r.Interfaces) != 1 {
		t.Errorf("router after update: %s", out)
	}
	if out := run("routers", "get-status", "cr", "--region", region); !strings.Contains(out, "status: DOWN") {
		t.Errorf("get-status:\n%s", out)
	}
	if out := run("routers", "list"); !strings.Contains(out, "cr") || !strings.Contains(out, "us-central1") {
		t.Errorf("list:\n%s", out)
	}
	cmd := exec.Command(binary, "--server", s.URL(), "--project", proj, "routers", "update", "cr", "--region", region,
		"--advertisement-mode", "default", "--set-advertisement-ranges", "10.0.0.0/8")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "CUSTOM") {
		t.Errorf("custom ranges in default mode: %v\n%s", err, out)
	}
	run("routers", "update", "cr", "--region", region, "--advertisement-mode", "default")
	run("routers", "remove-bgp-peer", "cr", "--region", region, "--peer-name", "on-prem")
	run("routers", "delete", "cr", "--region", region)
	if out := run("routers", "list"); !strings.Contains(out, "Listed 0 items") {
		t.Errorf("list after delete:\n%s", out)
	}
}
