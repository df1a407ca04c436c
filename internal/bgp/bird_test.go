package bgp

// Test harness: a real BIRD 2 peer, started per test as a child process on
// loopback only (strict bind), with no kernel protocol, so it never touches
// the host's routing table.

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"text/template"
	"time"
)

const (
	birdASN   = 65001
	speakASN  = 65000
	birdProto = "aliasnet"
)

// BIRD runs on 127.0.0.2, the speaker on 127.0.0.1: BIRD refuses to export
// a route whose next hop equals the neighbor's address ("Invalid NEXT_HOP
// attribute - neighbor address"), so both ends on 127.0.0.1 cannot work.
var birdAddr = netip.MustParseAddr("127.0.0.2")

// Prefixes BIRD announces (its static protocols).
var (
	birdStatic4 = netip.MustParsePrefix("203.0.113.0/24")
	birdStatic6 = netip.MustParsePrefix("2001:db8:beef::/48")
)

func requireBird(t testing.TB) {
	t.Helper()
	for _, bin := range []string{"bird", "birdc"} {
		if _, err := exec.LookPath(bin); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s not found (CI=true): install the bird2 package (apt-get install -y bird2)", bin)
			}
			t.Skipf("%s not found: install the bird2 package (apt-get install -y bird2) to run the BGP tests against a real peer", bin)
		}
	}
}

// freePort picks a TCP port free on 127.0.0.1, .2 and .3.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	for _, a := range []string{"127.0.0.2", "127.0.0.3"} {
		l2, err := net.Listen("tcp", fmt.Sprintf("%s:%d", a, port))
		if err != nil {
			return freePort(t)
		}
		l2.Close()
	}
	return port
}

type birdOpts struct {
	Addr      netip.Addr // BIRD's address and router id; zero = birdAddr
	Port      int        // BIRD listens on Addr:Port
	PeerPort  int        // the speaker's port
	ASN       uint32     // zero = birdASN
	Passive   bool       // BIRD never connects
	IPv6      bool       // ipv6 channel over the IPv4 session, static6 announced
	NoStatic  bool       // announce nothing
	ExtraConf string
}

// birdConfTmpl is the BIRD config used by the tests (and the README
// walkthrough). No "protocol kernel": BIRD never writes the host's routes.
var birdConfTmpl = template.Must(template.New("bird").Parse(`router id {{.Addr}};
log "{{.Dir}}/bird.log" all;
protocol device { }
{{- if not .NoStatic}}
protocol static static4 { ipv4; route 203.0.113.0/24 blackhole; }
{{- if .IPv6}}
protocol static static6 { ipv6; route 2001:db8:beef::/48 blackhole; }
{{- end}}
{{- end}}
protocol bgp aliasnet {
  local {{.Addr}} port {{.Port}} as {{.ASN}};
  neighbor 127.0.0.1 port {{.PeerPort}} as 65000;
  strict bind yes;
  multihop;
{{- if .Passive}}
  passive on;
{{- end}}
  connect delay time 1;
  connect retry time 1;
  error wait time 1, 2;
  ipv4 { import all; export where source = RTS_STATIC; };
{{- if .IPv6}}
  ipv6 { import all; export where source = RTS_STATIC; next hop address ::1; };
{{- end}}
}
{{.ExtraConf}}
`))

type bird struct {
	t    testing.TB
	dir  string
	sock string
	cmd  *exec.Cmd
	opts birdOpts
}

func startBird(t testing.TB, o birdOpts) *bird {
	t.Helper()
	requireBird(t)
	if !o.Addr.IsValid() {
		o.Addr = birdAddr
	}
	if o.ASN == 0 {
		o.ASN = birdASN
	}
	// Unix socket paths are limited to 108 bytes: keep it short.
	dir, err := os.MkdirTemp("", "bird")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	var conf strings.Builder
	if err := birdConfTmpl.Execute(&conf, struct {
		birdOpts
		Dir string
	}{o, dir}); err != nil {
		t.Fatal(err)
	}
	confPath := filepath.Join(dir, "bird.conf")
	if err := os.WriteFile(confPath, []byte(conf.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	b := &bird{t: t, dir: dir, sock: filepath.Join(dir, "s"), opts: o}
	b.cmd = exec.Command("bird", "-f", "-c", confPath, "-s", b.sock, "-P", filepath.Join(dir, "pid"))
	out, err := os.Create(filepath.Join(dir, "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	b.cmd.Stdout, b.cmd.Stderr = out, out
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = b.cmd.Process.Kill()
		_ = b.cmd.Wait()
		out.Close()
		if t.Failed() {
			logs, _ := os.ReadFile(filepath.Join(dir, "bird.log"))
			stderr, _ := os.ReadFile(filepath.Join(dir, "stderr"))
			t.Logf("bird.conf:\n%s\nbird.log:\n%s\nstderr:\n%s", conf.String(), tail(string(logs), 4000), stderr)
		}
	})
	waitFor(t, 10*time.Second, "bird control socket", func() (bool, string) {
		s, err := b.birdc("show status")
		return err == nil && strings.Contains(s, "Daemon is up and running"), s
	})
	return b
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

func (b *bird) birdc(args ...string) (string, error) {
	out, err := exec.Command("birdc", append([]string{"-s", b.sock}, args...)...).CombinedOutput()
	return string(out), err
}

func (b *bird) mustBirdc(args ...string) string {
	b.t.Helper()
	s, err := b.birdc(args...)
	if err != nil {
		b.t.Fatalf("birdc %v: %v\n%s", args, err, s)
	}
	return s
}

// protoInfo is what "show protocols all aliasnet" says.
type protoInfo struct {
	State    string // "Established", "Active", "Connect", "Idle", ...
	Since    string // time of the last state change
	Imported int    // routes imported from the speaker, summed over channels
}

var (
	reProtoLine = regexp.MustCompile(`(?m)^` + birdProto + `\s+BGP\s+\S+\s+\S+\s+(\S+)`)
	reBGPState  = regexp.MustCompile(`(?m)^\s+BGP state:\s+(\S+)`)
	reRoutes    = regexp.MustCompile(`(?m)^\s+Routes:\s+(\d+) imported`)
)

func (b *bird) proto() (protoInfo, string) {
	s, err := b.birdc("show", "protocols", "all", birdProto)
	if err != nil {
		return protoInfo{}, s
	}
	var p protoInfo
	if m := reProtoLine.FindStringSubmatch(s); m != nil {
		p.Since = m[1]
	}
	if m := reBGPState.FindStringSubmatch(s); m != nil {
		p.State = m[1]
	}
	for _, m := range reRoutes.FindAllStringSubmatch(s, -1) {
		n, _ := strconv.Atoi(m[1])
		p.Imported += n
	}
	return p, s
}

// routes parses "show route all protocol aliasnet" (both tables): prefix →
// MED (-1 if none).
func (b *bird) routes() (map[netip.Prefix]birdRoute, string) {
	s, err := b.birdc("show", "route", "all", "protocol", birdProto)
	if err != nil {
		return nil, s
	}
	return parseBirdRoutes(s), s
}

type birdRoute struct {
	MED     int64
	NextHop string
}

var (
	reRouteHead = regexp.MustCompile(`^([0-9a-fA-F.:]+/\d+)\s`)
	reMED       = regexp.MustCompile(`^\s+BGP\.med:\s+(\d+)`)
	reNextHop   = regexp.MustCompile(`^\s+BGP\.next_hop:\s+(\S+)`)
)

func parseBirdRoutes(s string) map[netip.Prefix]birdRoute {
	out := map[netip.Prefix]birdRoute{}
	var cur netip.Prefix
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		line := sc.Text()
		if m := reRouteHead.FindStringSubmatch(line); m != nil {
			if p, err := netip.ParsePrefix(m[1]); err == nil {
				cur = p
				out[cur] = birdRoute{MED: -1}
			}
			continue
		}
		if !cur.IsValid() {
			continue
		}
		r := out[cur]
		if m := reMED.FindStringSubmatch(line); m != nil {
			r.MED, _ = strconv.ParseInt(m[1], 10, 64)
		}
		if m := reNextHop.FindStringSubmatch(line); m != nil {
			r.NextHop = m[1]
		}
		out[cur] = r
	}
	return out
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	var last string
	for {
		ok, info := cond()
		if ok {
			return
		}
		last = info
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; last state:\n%s", d, what, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kernelRoutes returns the destinations in the host's IPv4 and IPv6 main
// routing tables (from /proc), to prove BIRD installs nothing.
func kernelRoutes(t testing.TB) map[netip.Prefix]bool {
	t.Helper()
	out := map[netip.Prefix]bool{}
	if b, err := os.ReadFile("/proc/net/route"); err == nil {
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 8 {
				continue
			}
			d, err1 := strconv.ParseUint(f[1], 16, 32)
			m, err2 := strconv.ParseUint(f[7], 16, 32)
			if err1 != nil || err2 != nil {
				continue
			}
			addr := netip.AddrFrom4([4]byte{byte(d), byte(d >> 8), byte(d >> 16), byte(d >> 24)})
			bits := 0
			for mm := m; mm != 0; mm >>= 1 {
				bits += int(mm & 1)
			}
			out[netip.PrefixFrom(addr, bits)] = true
		}
	}
	if b, err := os.ReadFile("/proc/net/ipv6_route"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			raw, err1 := hex.DecodeString(f[0])
			bits, err2 := strconv.ParseUint(f[1], 16, 8)
			if err1 != nil || err2 != nil || len(raw) != 16 {
				continue
			}
			out[netip.PrefixFrom(netip.AddrFrom16([16]byte(raw)), int(bits))] = true
		}
	}
	return out
}

// assertNoNewKernelRoutes fails if a route appeared in the host's main
// tables since before was taken.
func assertNoNewKernelRoutes(t testing.TB, before map[netip.Prefix]bool) {
	t.Helper()
	for p := range kernelRoutes(t) {
		if !before[p] {
			t.Errorf("route %v appeared in the host's kernel routing table: BIRD must not install routes", p)
		}
	}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func fmtRoutes(m map[netip.Prefix]birdRoute) string {
	var sb strings.Builder
	for p, r := range m {
		fmt.Fprintf(&sb, "%v med=%d nh=%s\n", p, r.MED, r.NextHop)
	}
	return sb.String()
}
