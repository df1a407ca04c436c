package guestconfig

// Tests that feed the rendered files to the real tools that read them on a
// guest: netplan generate, ifupdown's ifquery/ifup, NetworkManager's nmcli
// --offline, bash for the sysconfig files, and iproute2 plus the kernel (in a
// private network namespace) for the route lines.
//
// Debian packages: netplan.io ifupdown network-manager (and iproute2,
// util-linux for unshare, which Debian installs by default).

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// needTool skips when name is missing, except in CI (CI=true) where the
// tools are part of the install step and a missing one is a failure.
func needTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not found (CI=true): install Debian package %s", name, pkg)
	}
	t.Skipf("%s not found; install it with: apt-get install -y %s", name, pkg)
	return ""
}

func run(t *testing.T, dir string, name string, args ...string) (stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), err, o.String(), e.String())
	}
	return o.String(), e.String()
}

func mustRender(t *testing.T, fam OS, tc testCase) Result {
	t.Helper()
	r, err := Render(fam, tc.ifaces, tc.form)
	if err != nil {
		t.Fatalf("Render(%s, %s): %v", fam, tc.name, err)
	}
	return r
}

func fileByPath(t *testing.T, r Result, path string) File {
	t.Helper()
	for _, f := range r.Files {
		if f.Path == path {
			return f
		}
	}
	t.Fatalf("no file %s in result", path)
	return File{}
}

func prefixStrings(ps []netip.Prefix) []string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	sort.Strings(s)
	return s
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	sort.Strings(s)
	return s
}

// ---------------------------------------------------------------- netplan

type iniSection struct {
	name string
	kv   map[string][]string
}

func parseINI(b []byte) []iniSection {
	var out []iniSection
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		switch {
		case l == "" || l[0] == '#' || l[0] == ';':
		case l[0] == '[':
			out = append(out, iniSection{name: strings.Trim(l, "[]"), kv: map[string][]string{}})
		case len(out) > 0:
			k, v, _ := strings.Cut(l, "=")
			out[len(out)-1].kv[k] = append(out[len(out)-1].kv[k], v)
		}
	}
	return out
}

func TestNetplanGenerate(t *testing.T) {
	needTool(t, "netplan", "netplan.io")
	for _, tc := range testCases {
		for _, withCloudInit := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/cloud-init=%v", tc.name, withCloudInit), func(t *testing.T) {
				r := mustRender(t, Netplan, tc)
				root := t.TempDir()
				if err := WriteTree(root, r); err != nil {
					t.Fatal(err)
				}
				if withCloudInit {
					// What cloud-init leaves behind: DHCP on the same device.
					// The rendered file must override it.
					var ci strings.Builder
					ci.WriteString("network:\n  version: 2\n  ethernets:\n")
					for _, in := range tc.ifaces {
						fmt.Fprintf(&ci, "    %s:\n      dhcp4: true\n      dhcp6: true\n", in.Name)
						if len(in.MAC) > 0 {
							fmt.Fprintf(&ci, "      match:\n        macaddress: %q\n      set-name: %s\n", in.MAC.String(), in.Name)
						}
					}
					if err := os.WriteFile(filepath.Join(root, "etc/netplan/50-cloud-init.yaml"), []byte(ci.String()), 0o600); err != nil {
						t.Fatal(err)
					}
				}
				_, stderr := run(t, "", "netplan", "generate", "--root-dir", root)
				if strings.Contains(strings.ToLower(stderr), "error") {
					t.Fatalf("netplan generate complained:\n%s", stderr)
				}
				for _, in := range tc.ifaces {
					path := filepath.Join(root, "run/systemd/network", "10-netplan-"+in.Name+".network")
					b, err := os.ReadFile(path)
					if err != nil {
						t.Fatalf("netplan generated no networkd file for %s: %v", in.Name, err)
					}
					checkNetworkd(t, in, tc.form, b)
				}
			})
		}
	}
}

func checkNetworkd(t *testing.T, in Interface, form Form, b []byte) {
	t.Helper()
	e := expect(in, form)
	var addrs []string
	type route struct{ dst, gw, typ, table, scope string }
	var routes []route
	for _, s := range parseINI(b) {
		switch s.name {
		case "Match":
			if len(in.MAC) > 0 && !strings.Contains(fmt.Sprint(s.kv), in.MAC.String()) {
				t.Errorf("%s: [Match] %v does not match MAC %s", in.Name, s.kv, in.MAC)
			}
		case "Network":
			addrs = append(addrs, s.kv["Address"]...)
			// DHCPv4 must be off; DHCPv6 (from cloud-init's file) may stay
			// on an interface whose IPv6 is not managed here.
			if d := s.kv["DHCP"]; len(d) > 0 && d[0] != "no" && (d[0] != "ipv6" || in.Primary6.IsValid()) {
				t.Errorf("%s: DHCP=%v, want DHCPv4 off (and DHCPv6 off with Primary6)", in.Name, d)
			}
		case "Route":
			get := func(k string) string {
				if v := s.kv[k]; len(v) > 0 {
					return v[len(v)-1]
				}
				return ""
			}
			r := route{get("Destination"), get("Gateway"), get("Type"), get("Table"), get("Scope")}
			if strings.Contains(r.dst, ":") {
				r.scope = "" // IPv6 routes have no scope; netplan writes host for local ones anyway
			}
			routes = append(routes, r)
		}
	}
	if got, want := sorted(addrs), prefixStrings(e.addrs); !slices.Equal(got, want) {
		t.Errorf("%s: networkd Address= %v, want %v\n%s", in.Name, got, want, b)
	}
	var want []route
	if in.DefaultRoute {
		want = append(want, route{dst: "0.0.0.0/0", gw: in.Gateway.String()})
		if in.Gateway6.IsValid() {
			want = append(want, route{dst: "::/0", gw: in.Gateway6.String()})
		}
	}
	for _, l := range e.locals {
		r := route{dst: l.String(), typ: "local", table: "255"}
		if l.Addr().Is4() {
			r.scope = "host"
		}
		want = append(want, r)
	}
	key := func(r route) string { return fmt.Sprintf("%+v", r) }
	var g, w []string
	for _, r := range routes {
		g = append(g, key(r))
	}
	for _, r := range want {
		w = append(w, key(r))
	}
	if !slices.Equal(sorted(g), sorted(w)) {
		t.Errorf("%s: networkd routes\n got %v\nwant %v\n%s", in.Name, sorted(g), sorted(w), b)
	}
}

// ---------------------------------------------------------------- ifupdown

func TestIfquery(t *testing.T) {
	needTool(t, "ifquery", "ifupdown")
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			r := mustRender(t, Debian, tc)
			dir := t.TempDir()
			file := filepath.Join(dir, "interfaces")
			if err := os.WriteFile(file, fileByPath(t, r, debianPath).Content, 0o644); err != nil {
				t.Fatal(err)
			}
			state := filepath.Join(dir, "state")
			q := func(args ...string) string {
				out, _ := run(t, dir, "ifquery", append([]string{"-i", file, "--state-dir", state}, args...)...)
				return out
			}
			wantList := []string{"lo"}
			for _, in := range tc.ifaces {
				wantList = append(wantList, in.Name)
			}
			for _, in := range tc.ifaces {
				e := expect(in, tc.form)
				var v4, v6 []netip.Prefix
				for _, a := range e.addrs {
					if a.Addr().Is4() {
						v4 = append(v4, a)
					} else {
						v6 = append(v6, a)
					}
				}
				// The primary stanza (inet and every inet6 stanza of the device).
				got := parseIfquery(q(in.Name))
				want := []string{fmt.Sprintf("%s/%s", v4[0].Addr(), netmask(v4[0].Bits()))}
				for _, a := range v6 {
					want = append(want, fmt.Sprintf("%s/%d", a.Addr(), a.Bits()))
				}
				if !slices.Equal(sorted(got.addrs), sorted(want)) {
					t.Errorf("ifquery %s: addresses %v, want %v", in.Name, got.addrs, want)
				}
				for _, l := range e.locals {
					if !slices.ContainsFunc(got.ups, func(u string) bool { return strings.Contains(u, " local "+l.String()+" dev "+in.Name+" table local") }) {
						t.Errorf("ifquery %s: no up command for local route %s in %q", in.Name, l, got.ups)
					}
				}
				if (in.DefaultRoute) != (len(got.gateways) > 0) {
					t.Errorf("ifquery %s: gateways %v, DefaultRoute %v", in.Name, got.gateways, in.DefaultRoute)
				}
				// One alias stanza per secondary IPv4 address.
				for i, a := range v4[1:] {
					label := fmt.Sprintf("%s:%d", in.Name, i)
					wantList = append(wantList, label)
					got := parseIfquery(q(label))
					want := []string{fmt.Sprintf("%s/%s", a.Addr(), netmask(a.Bits()))}
					if !slices.Equal(got.addrs, want) {
						t.Errorf("ifquery %s: %v, want %v", label, got.addrs, want)
					}
				}
			}
			list := strings.Fields(q("--list", "-a"))
			if !slices.Equal(sorted(list), sorted(wantList)) {
				t.Errorf("ifquery --list -a = %v, want %v", list, wantList)
			}
		})
	}
}

type ifq struct{ addrs, ups, gateways []string }

// parseIfquery pairs each "address:" with the following "netmask:" (ifquery
// prints one block per stanza).
func parseIfquery(out string) ifq {
	var r ifq
	var pending string
	flush := func(mask string) {
		if pending != "" {
			if mask != "" && !strings.Contains(pending, "/") {
				pending += "/" + mask
			}
			r.addrs = append(r.addrs, pending)
			pending = ""
		}
	}
	for _, l := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(l, ": ")
		if !ok {
			continue
		}
		switch k {
		case "address":
			flush("")
			pending = v
		case "netmask":
			flush(v)
		case "up":
			r.ups = append(r.ups, v)
		case "gateway":
			r.gateways = append(r.gateways, v)
		}
	}
	flush("")
	return r
}

// ---------------------------------------------------------------- kernel (netns)

var netnsOnce struct {
	sync.Once
	err error
}

// needNetns skips unless a private network namespace with veth devices can
// be made (root with CAP_SYS_ADMIN and the veth driver).
func needNetns(t *testing.T) {
	t.Helper()
	needTool(t, "ip", "iproute2")
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("unshare not found (util-linux)")
	}
	netnsOnce.Do(func() {
		out, err := exec.Command("unshare", "-n", "sh", "-ec", "ip link add t0 type veth peer name t1").CombinedOutput()
		if err != nil {
			netnsOnce.err = fmt.Errorf("%v: %s", err, out)
		}
	})
	if netnsOnce.err != nil {
		t.Skipf("cannot make a network namespace with veth devices here: %v", netnsOnce.err)
	}
}

type kernelState struct {
	addrs  map[string][]string // dev -> "addr/len" (global scope)
	routes []kernelRoute
}

type kernelRoute struct {
	Type     string `json:"type"`
	Dst      string `json:"dst"`
	Dev      string `json:"dev"`
	Table    string `json:"table"`
	Protocol string `json:"protocol"`
	Scope    string `json:"scope"`
	Gateway  string `json:"gateway"`
}

// inNetns runs setup in a fresh network namespace holding one veth device
// per interface (peer up, so there is carrier; nothing leaves the
// namespace), then returns the addresses and routes the kernel ended up with.
func inNetns(t *testing.T, dir string, ifaces []Interface, setup string) kernelState {
	t.Helper()
	needNetns(t)
	var sc strings.Builder
	for i, in := range ifaces {
		fmt.Fprintf(&sc, "ip link add %s type veth peer name vpeer%d\nip link set vpeer%d up\nip link set %s up\n", in.Name, i, i, in.Name)
	}
	sc.WriteString(setup)
	sc.WriteString("\necho '=====addr'\nip -j addr show\necho '=====route'\nip -j route show table all\n")
	out, _ := run(t, dir, "unshare", "-n", "sh", "-ec", sc.String())
	_, rest, _ := strings.Cut(out, "=====addr\n")
	addrJSON, routeJSON, _ := strings.Cut(rest, "=====route\n")
	var links []struct {
		IfName   string `json:"ifname"`
		AddrInfo []struct {
			Local     string `json:"local"`
			Prefixlen int    `json:"prefixlen"`
			Scope     string `json:"scope"`
		} `json:"addr_info"`
	}
	ks := kernelState{addrs: map[string][]string{}}
	if err := json.Unmarshal([]byte(addrJSON), &links); err != nil {
		t.Fatalf("ip -j addr: %v\n%s", err, addrJSON)
	}
	for _, l := range links {
		for _, a := range l.AddrInfo {
			if a.Scope == "global" {
				ks.addrs[l.IfName] = append(ks.addrs[l.IfName], fmt.Sprintf("%s/%d", a.Local, a.Prefixlen))
			}
		}
	}
	if err := json.Unmarshal([]byte(routeJSON), &ks.routes); err != nil {
		t.Fatalf("ip -j route: %v\n%s", err, routeJSON)
	}
	return ks
}

// hasLocalRoute reports whether the kernel has p as a local route on dev in
// the local table, with protocol proto ("" = any).
func (ks kernelState) hasLocalRoute(p netip.Prefix, dev, proto string) bool {
	for _, r := range ks.routes {
		dst := r.Dst
		if !strings.Contains(dst, "/") {
			dst += "/" + strconv.Itoa(p.Addr().BitLen())
		}
		if r.Type == "local" && dst == p.String() && r.Dev == dev && r.Table == "local" && (proto == "" || r.Protocol == proto) {
			if p.Addr().Is4() && r.Scope != "host" {
				return false
			}
			return true
		}
	}
	return false
}

func (ks kernelState) defaultVia(dev string) []string {
	var gws []string
	for _, r := range ks.routes {
		if r.Dst == "default" && r.Dev == dev && r.Table == "" {
			gws = append(gws, r.Gateway)
		}
	}
	return sorted(gws)
}

func wantDefaults(in Interface) []string {
	var w []string
	if in.DefaultRoute {
		w = append(w, in.Gateway.String())
		if in.Gateway6.IsValid() {
			w = append(w, in.Gateway6.String())
		}
	}
	return sorted(w)
}

// TestIfupKernel brings the rendered /etc/network/interfaces up with the real
// ifup in a private network namespace and checks what the kernel got.
func TestIfupKernel(t *testing.T) {
	needTool(t, "ifup", "ifupdown")
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			r := mustRender(t, Debian, tc)
			dir := t.TempDir()
			if err := WriteTree(dir, r); err != nil {
				t.Fatal(err)
			}
			setup := fmt.Sprintf("ifup -i %s/etc/network/interfaces --state-dir %s --no-scripts -o dad-attempts=0 -a", dir, dir)
			ks := inNetns(t, dir, tc.ifaces, setup)
			for _, in := range tc.ifaces {
				e := expect(in, tc.form)
				if got, want := sorted(ks.addrs[in.Name]), prefixStrings(e.addrs); !slices.Equal(got, want) {
					t.Errorf("%s: kernel addresses %v, want %v", in.Name, got, want)
				}
				for _, l := range e.locals {
					if !ks.hasLocalRoute(l, in.Name, routeProto) {
						t.Errorf("%s: no local route %s (table local, proto 66) in %+v", in.Name, l, ks.routes)
					}
				}
				if got, want := ks.defaultVia(in.Name), wantDefaults(in); !slices.Equal(got, want) {
					t.Errorf("%s: default routes via %v, want %v", in.Name, got, want)
				}
			}
		})
	}
}

// ---------------------------------------------------------------- nmcli

const nmcliShim = `#!/bin/sh
# Stand-in for nmcli: answers the connection lookup and records the rest.
if [ "$1" = "-g" ]; then
	if [ "$5" = "$SHIM_DEVICE" ]; then printf '%s\n' "$SHIM_CON"; fi
	exit 0
fi
{
	printf 'CALL'
	for a in "$@"; do printf '\037%s' "$a"; done
	printf '\036'
} >>"$SHIM_LOG"
`

// TestNMCLIOffline runs the rendered script with sh against a stand-in nmcli
// that records its arguments (this checks the shell quoting, including a
// hostile connection name), then replays every connection's properties
// through the real `nmcli --offline connection add` (NetworkManager 1.42+),
// which validates them the way `nmcli con modify` does and prints the keyfile.
func TestNMCLIOffline(t *testing.T) {
	nmcli := needTool(t, "nmcli", "network-manager")
	if out, err := exec.Command(nmcli, "--offline", "connection", "add", "type", "ethernet", "con-name", "probe", "ifname", "eth9").CombinedOutput(); err != nil {
		t.Skipf("this nmcli has no --offline mode (needs NetworkManager 1.42+): %v %s", err, out)
	}
	const hostile = `Wired connection 1 "$(touch PWNED)" ';touch PWNED'`
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			r := mustRender(t, NMCLI, tc)
			dir := t.TempDir()
			if err := WriteTree(dir, r); err != nil {
				t.Fatal(err)
			}
			shimDir := filepath.Join(dir, "shim")
			if err := os.MkdirAll(shimDir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(shimDir, "nmcli"), []byte(nmcliShim), 0o755); err != nil {
				t.Fatal(err)
			}
			log := filepath.Join(dir, "calls")
			run(t, dir, "sh", "-n", nmcliScript)
			cmd := exec.Command("sh", nmcliScript)
			cmd.Dir = dir
			cmd.Env = append(os.Environ(),
				"PATH="+shimDir+":"+os.Getenv("PATH"),
				"SHIM_LOG="+log, "SHIM_DEVICE="+tc.ifaces[0].Name, "SHIM_CON="+hostile)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("sh %s: %v\n%s", nmcliScript, err, out)
			}
			if _, err := os.Stat(filepath.Join(dir, "PWNED")); err == nil {
				t.Fatal("connection name was evaluated by the shell")
			}
			raw, err := os.ReadFile(log)
			if err != nil {
				t.Fatal(err)
			}
			// Group the modify calls by connection.
			props := map[string][]string{}
			var order, ups []string
			for _, rec := range strings.Split(strings.TrimSuffix(string(raw), "\x1e"), "\x1e") {
				f := strings.Split(rec, "\x1f")[1:]
				switch {
				case len(f) == 5 && f[0] == "con" && f[1] == "modify":
					if _, ok := props[f[2]]; !ok {
						order = append(order, f[2])
					}
					props[f[2]] = append(props[f[2]], f[3], f[4])
				case len(f) == 3 && f[0] == "con" && f[1] == "up":
					ups = append(ups, f[2])
				default:
					t.Fatalf("unexpected nmcli call %q", f)
				}
			}
			wantCons := []string{hostile}
			for _, in := range tc.ifaces[1:] {
				wantCons = append(wantCons, "System "+in.Name)
			}
			if !slices.Equal(order, wantCons) || !slices.Equal(ups, wantCons) {
				t.Fatalf("connections modified %q and brought up %q, want %q", order, ups, wantCons)
			}
			for i, in := range tc.ifaces {
				args := append([]string{"--offline", "connection", "add", "type", "ethernet",
					"con-name", wantCons[i], "ifname", in.Name}, props[wantCons[i]]...)
				out, stderr := run(t, dir, nmcli, args...)
				if stderr != "" {
					t.Errorf("nmcli warned: %s", stderr)
				}
				checkKeyfile(t, in, tc.form, out)
			}
		})
	}
}

var keyfileAddr = regexp.MustCompile(`^address\d+$`)
var keyfileRoute = regexp.MustCompile(`^route\d+$`)

func checkKeyfile(t *testing.T, in Interface, form Form, keyfile string) {
	t.Helper()
	e := expect(in, form)
	var addrs, routes, gws []string
	methods := map[string]string{}
	for _, s := range parseINI([]byte(keyfile)) {
		if s.name != "ipv4" && s.name != "ipv6" {
			continue
		}
		if m := s.kv["method"]; len(m) > 0 {
			methods[s.name] = m[0]
		}
		for k, vs := range s.kv {
			v := vs[0]
			switch {
			case keyfileAddr.MatchString(k):
				a, gw, _ := strings.Cut(v, ",")
				addrs = append(addrs, a)
				if gw != "" {
					gws = append(gws, gw)
				}
			case k == "gateway":
				gws = append(gws, v)
			case keyfileRoute.MatchString(k):
				opts := s.kv[k+"_options"]
				routes = append(routes, v+" "+strings.Join(opts, ""))
			}
		}
	}
	if methods["ipv4"] != "manual" {
		t.Errorf("%s: ipv4.method %q, want manual", in.Name, methods["ipv4"])
	}
	if in.Primary6.IsValid() && methods["ipv6"] != "manual" {
		t.Errorf("%s: ipv6.method %q, want manual", in.Name, methods["ipv6"])
	}
	if got, want := sorted(addrs), prefixStrings(e.addrs); !slices.Equal(got, want) {
		t.Errorf("%s: keyfile addresses %v, want %v\n%s", in.Name, got, want, keyfile)
	}
	if got, want := sorted(gws), wantDefaults(in); !slices.Equal(got, want) {
		t.Errorf("%s: keyfile gateways %v, want %v", in.Name, got, want)
	}
	var want []string
	for _, l := range e.locals {
		if l.Addr().Is4() {
			want = append(want, l.String()+" scope=254,table=255,type=local")
		} else {
			want = append(want, l.String()+" table=255,type=local")
		}
	}
	if got := sorted(routes); !slices.Equal(got, sorted(want)) {
		t.Errorf("%s: keyfile routes %v, want %v\n%s", in.Name, got, sorted(want), keyfile)
	}
}

// ---------------------------------------------------------------- sysconfig (rhel, suse)

var assignRE = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*)=(.*)$`)

// parseAssignments reads a sysconfig file the strict way: KEY=VALUE lines
// where VALUE is a bare word without shell metacharacters, or a single- or
// double-quoted string without expansions.
func parseAssignments(t *testing.T, name string, b []byte) map[string]string {
	t.Helper()
	out := map[string]string{}
	for i, l := range strings.Split(string(b), "\n") {
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		m := assignRE.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("%s:%d: not an assignment: %q", name, i+1, l)
		}
		v := m[2]
		switch {
		case len(v) >= 2 && v[0] == '\'' && v[len(v)-1] == '\'' && !strings.Contains(v[1:len(v)-1], "'"):
			v = v[1 : len(v)-1]
		case len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' && !strings.ContainsAny(v[1:len(v)-1], "\"\\$`"):
			v = v[1 : len(v)-1]
		case !strings.ContainsAny(v, " \t'\"\\$`;&|<>(){}*?[]#~"):
		default:
			t.Fatalf("%s:%d: value needs shell evaluation: %q", name, i+1, l)
		}
		if _, dup := out[m[1]]; dup {
			t.Fatalf("%s:%d: %s assigned twice", name, i+1, m[1])
		}
		out[m[1]] = v
	}
	return out
}

// bashAssignments sources the file in a clean bash and returns what it set.
func bashAssignments(t *testing.T, path string) map[string]string {
	t.Helper()
	run(t, "", "bash", "-n", path)
	out, _ := run(t, "", "env", "-i", "bash", "--noprofile", "--norc", "-c", `set -a; . "$1"; set +a; env -0`, "bash", path)
	m := map[string]string{}
	for _, kv := range strings.Split(out, "\x00") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

// sysconfig parses every file both ways and insists they agree.
func sysconfig(t *testing.T, dir string, f File) map[string]string {
	t.Helper()
	mine := parseAssignments(t, f.Path, f.Content)
	theirs := bashAssignments(t, filepath.Join(dir, f.Path))
	for k, v := range mine {
		if theirs[k] != v {
			t.Errorf("%s: %s: parser says %q, bash says %q", f.Path, k, v, theirs[k])
		}
	}
	return mine
}

func TestRHELFiles(t *testing.T) {
	needTool(t, "bash", "bash")
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			r := mustRender(t, RHEL, tc)
			dir := t.TempDir()
			if err := WriteTree(dir, r); err != nil {
				t.Fatal(err)
			}
			var setup strings.Builder
			for _, in := range tc.ifaces {
				e := expect(in, tc.form)
				main := sysconfig(t, dir, fileByPath(t, r, rhelDir+"ifcfg-"+in.Name))
				want := map[string]string{
					"DEVICE": in.Name, "TYPE": "Ethernet", "BOOTPROTO": "static", "ONBOOT": "yes",
					"IPADDR": in.Primary.Addr().String(), "NETMASK": netmask(in.Primary.Bits()),
				}
				if in.DefaultRoute {
					want["GATEWAY"], want["DEFROUTE"] = in.Gateway.String(), "yes"
				} else {
					want["DEFROUTE"] = "no"
				}
				if len(in.MAC) > 0 {
					want["HWADDR"] = in.MAC.String()
				}
				var got6 []string
				if in.Primary6.IsValid() {
					want["IPV6INIT"], want["IPV6ADDR"] = "yes", in.Primary6.String()
					got6 = append(got6, main["IPV6ADDR"])
					if in.DefaultRoute && in.Gateway6.IsValid() {
						want["IPV6_DEFAULTGW"] = in.Gateway6.String()
					}
				}
				got6 = append(got6, strings.Fields(main["IPV6ADDR_SECONDARIES"])...)
				for k, v := range want {
					if main[k] != v {
						t.Errorf("ifcfg-%s: %s=%q, want %q", in.Name, k, main[k], v)
					}
				}
				// Every IPv4 address: the main file plus one ifcfg-NAME:N each.
				got := []string{fmt.Sprintf("%s/%s", main["IPADDR"], main["NETMASK"])}
				for i := 0; ; i++ {
					label := fmt.Sprintf("%s:%d", in.Name, i)
					f, ok := findFile(r, rhelDir+"ifcfg-"+label)
					if !ok {
						break
					}
					a := sysconfig(t, dir, f)
					if a["DEVICE"] != label || a["BOOTPROTO"] != "static" {
						t.Errorf("ifcfg-%s: %v", label, a)
					}
					got = append(got, a["IPADDR"]+"/"+a["NETMASK"])
				}
				var want4, want6 []string
				for _, a := range e.addrs {
					if a.Addr().Is4() {
						want4 = append(want4, fmt.Sprintf("%s/%s", a.Addr(), netmask(a.Bits())))
					} else {
						want6 = append(want6, a.String())
					}
				}
				if !slices.Equal(sorted(got), sorted(want4)) {
					t.Errorf("%s: IPv4 addresses %v, want %v", in.Name, got, want4)
				}
				if !slices.Equal(sorted(got6), sorted(want6)) {
					t.Errorf("%s: IPv6 addresses %v, want %v", in.Name, got6, want6)
				}
				// Route files: the words NetworkManager's ifcfg-rh reader
				// accepts, then the kernel via `ip route add LINE` as
				// initscripts does.
				for _, fam := range []string{"route", "route6"} {
					f, ok := findFile(r, rhelDir+fam+"-"+in.Name)
					if !ok {
						continue
					}
					for _, line := range routeLines(f.Content) {
						checkIfcfgRouteWords(t, line)
						ipcmd := "ip"
						if fam == "route6" {
							ipcmd = "ip -6"
						}
						fmt.Fprintf(&setup, "%s route add %s\n", ipcmd, line)
					}
				}
			}
			ks := inNetns(t, dir, tc.ifaces, setup.String())
			for _, in := range tc.ifaces {
				for _, l := range expect(in, tc.form).locals {
					if !ks.hasLocalRoute(l, in.Name, "") {
						t.Errorf("%s: route file did not produce local route %s", in.Name, l)
					}
				}
			}
		})
	}
}

func findFile(r Result, path string) (File, bool) {
	for _, f := range r.Files {
		if f.Path == path {
			return f, true
		}
	}
	return File{}, false
}

func routeLines(b []byte) []string {
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}

// checkIfcfgRouteWords mirrors parse_route_line() of NetworkManager's ifcfg-rh
// plugin: a route type word, the destination, and keyword arguments from its
// table, with numeric tables.
func checkIfcfgRouteWords(t *testing.T, line string) {
	t.Helper()
	w := strings.Fields(line)
	if len(w) < 2 || w[0] != "local" {
		t.Errorf("route line %q: want `local PREFIX ...`", line)
		return
	}
	if _, err := netip.ParsePrefix(w[1]); err != nil {
		t.Errorf("route line %q: %v", line, err)
	}
	for i := 2; i < len(w); i += 2 {
		if i+1 >= len(w) {
			t.Errorf("route line %q: %s lacks an argument", line, w[i])
			return
		}
		switch w[i] {
		case "dev":
		case "table":
			if _, err := strconv.ParseUint(w[i+1], 10, 32); err != nil {
				t.Errorf("route line %q: NetworkManager needs a numeric table", line)
			}
		case "scope":
			if !slices.Contains([]string{"host", "link", "global", "site", "nowhere"}, w[i+1]) {
				t.Errorf("route line %q: bad scope", line)
			}
		default:
			t.Errorf("route line %q: NetworkManager's ifcfg-rh reader rejects %q", line, w[i])
		}
	}
}

func TestSUSEFiles(t *testing.T) {
	needTool(t, "bash", "bash")
	for _, tc := range testCases {
		t.Run(tc.name, func(t *testing.T) {
			r := mustRender(t, SUSE, tc)
			dir := t.TempDir()
			if err := WriteTree(dir, r); err != nil {
				t.Fatal(err)
			}
			var setup strings.Builder
			for _, in := range tc.ifaces {
				e := expect(in, tc.form)
				v := sysconfig(t, dir, fileByPath(t, r, suseDir+"ifcfg-"+in.Name))
				if v["BOOTPROTO"] != "static" || v["STARTMODE"] != "auto" {
					t.Errorf("ifcfg-%s: BOOTPROTO=%q STARTMODE=%q", in.Name, v["BOOTPROTO"], v["STARTMODE"])
				}
				got := []string{v["IPADDR"] + "/" + v["NETMASK"]}
				fmt.Fprintf(&setup, "ip addr add %s/%s dev %s\n", v["IPADDR"], v["NETMASK"], in.Name)
				for i := 0; ; i++ {
					s := strconv.Itoa(i)
					a, ok := v["IPADDR_"+s]
					if !ok {
						break
					}
					if m := v["NETMASK_"+s]; m != "" {
						a += "/" + m
						if l, ok := v["LABEL_"+s]; ok && l != s {
							t.Errorf("ifcfg-%s: LABEL_%s=%q", in.Name, s, l)
						}
					} else if _, ok := v["LABEL_"+s]; ok {
						t.Errorf("ifcfg-%s: LABEL_%s on an IPv6 address", in.Name, s)
					}
					got = append(got, a)
				}
				var want []string
				for _, a := range e.addrs {
					if a.Addr().Is4() {
						want = append(want, fmt.Sprintf("%s/%s", a.Addr(), netmask(a.Bits())))
					} else {
						want = append(want, a.String())
					}
				}
				if !slices.Equal(sorted(got), sorted(want)) {
					t.Errorf("%s: addresses %v, want %v", in.Name, got, want)
				}
				if f, ok := findFile(r, suseDir+"ifroute-"+in.Name); ok {
					for _, line := range routeLines(f.Content) {
						fmt.Fprintf(&setup, "ip route add %s\n", wickedRoute(t, line, in.Name))
					}
				} else if len(e.locals) > 0 {
					t.Errorf("%s: no ifroute file for %v", in.Name, e.locals)
				}
			}
			if f, ok := findFile(r, suseDir+"routes"); ok {
				for _, line := range routeLines(f.Content) {
					fmt.Fprintf(&setup, "ip route add %s\n", wickedRoute(t, line, ""))
				}
			}
			ks := inNetns(t, dir, tc.ifaces, setup.String())
			for _, in := range tc.ifaces {
				for _, l := range expect(in, tc.form).locals {
					if !ks.hasLocalRoute(l, in.Name, routeProto) {
						t.Errorf("%s: ifroute did not produce local route %s with proto 66", in.Name, l)
					}
				}
				if got, want := ks.defaultVia(in.Name), wantDefaults(in); !slices.Equal(got, want) {
					t.Errorf("%s: default routes via %v, want %v", in.Name, got, want)
				}
			}
		})
	}
}

// wickedRoute checks a routes/ifroute line against the grammar of wicked's
// __ni_suse_route_parse (Destination Gateway Netmask Interface Options, with
// route types and the table/scope/proto keywords in Options) and returns the
// equivalent `ip route add` arguments.
func wickedRoute(t *testing.T, line, ifname string) string {
	t.Helper()
	f := strings.Fields(line)
	if len(f) < 4 {
		t.Fatalf("route line %q: want at least 4 columns", line)
	}
	dest, gw, mask, dev, opts := f[0], f[1], f[2], f[3], f[4:]
	if mask != "-" {
		t.Errorf("route line %q: netmask column is deprecated, want -", line)
	}
	if dev == "-" {
		dev = ifname
	} else if ifname != "" && dev != ifname {
		t.Errorf("route line %q: foreign interface in ifroute-%s", line, ifname)
	}
	var args []string
	typ := ""
	for i := 0; i < len(opts); i++ {
		switch o := opts[i]; o {
		case "local", "unicast", "blackhole", "unreachable", "prohibit", "throw":
			typ = o
		case "table", "scope", "proto":
			if i+1 >= len(opts) {
				t.Fatalf("route line %q: %s lacks an argument", line, o)
			}
			args = append(args, o, opts[i+1])
			i++
		default:
			t.Fatalf("route line %q: option %q unknown to wicked", line, o)
		}
	}
	out := []string{}
	if typ != "" {
		out = append(out, typ)
	}
	if dest == "default" {
		a, err := netip.ParseAddr(gw)
		if err != nil {
			t.Fatalf("route line %q: default route needs a gateway", line)
		}
		if a.Is4() {
			out = append(out, "0.0.0.0/0")
		} else {
			out = append(out, "::/0")
		}
	} else {
		if _, err := netip.ParsePrefix(dest); err != nil {
			t.Fatalf("route line %q: destination: %v", line, err)
		}
		out = append(out, dest)
	}
	if gw != "-" {
		out = append(out, "via", gw)
	}
	if dev != "" {
		out = append(out, "dev", dev)
	}
	return strings.Join(append(out, args...), " ")
}
