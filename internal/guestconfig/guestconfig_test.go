package guestconfig

import (
	"bytes"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseOS(t *testing.T) {
	for in, want := range map[string]OS{
		"nmcli": NMCLI, "RHEL": RHEL, "centos": RHEL, "alinux": RHEL, "redhat": RHEL,
		"netplan": Netplan, "Ubuntu": Netplan, "debian": Debian, "suse": SUSE,
		"sles": SUSE, "opensuse": SUSE, "windows": Windows, " win ": Windows,
	} {
		got, err := ParseOS(in)
		if err != nil || got != want {
			t.Errorf("ParseOS(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	_, err := ParseOS("plan9")
	if err == nil {
		t.Fatal("ParseOS(plan9) succeeded")
	}
	for _, o := range osNames {
		if !strings.Contains(err.Error(), string(o)) {
			t.Errorf("error %q does not list %s", err, o)
		}
	}
	if _, err := Render(OS("ubuntu"), testCases[0].ifaces, FormAuto); err == nil {
		t.Error("Render accepted an alias instead of a family")
	}
}

func TestValidName(t *testing.T) {
	for _, ok := range []string{"eth0", "ens4", "enp0s3", "eth0.100", "br-lan", "a_b", "x23456789012345"} {
		if err := ValidName(ok); err != nil {
			t.Errorf("ValidName(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".", "..", "-eth0", "eth 0", "eth0:1", "eth/0", "x234567890123456", "eth0'", "eth0\n", "é", "$(id)"} {
		if err := ValidName(bad); err == nil {
			t.Errorf("ValidName(%q) accepted", bad)
		}
	}
}

func TestRenderRejects(t *testing.T) {
	base := func() Interface {
		return Interface{
			Name: "eth0", MAC: mustMAC("00:16:3e:16:43:01"),
			Primary: p("192.168.1.201/24"), Gateway: ip("192.168.1.253"), DefaultRoute: true,
		}
	}
	cases := map[string]func(*Interface){
		"bad name":             func(i *Interface) { i.Name = "eth 0" },
		"loopback":             func(i *Interface) { i.Name = "lo" },
		"short MAC":            func(i *Interface) { i.MAC = i.MAC[:5] },
		"multicast MAC":        func(i *Interface) { i.MAC = mustMAC("01:00:5e:00:00:01") },
		"no primary":           func(i *Interface) { i.Primary = netip.Prefix{} },
		"IPv6 primary":         func(i *Interface) { i.Primary = p("2001:db8::1/64") },
		"gateway outside":      func(i *Interface) { i.Gateway = ip("10.0.0.1") },
		"gateway is primary":   func(i *Interface) { i.Gateway = ip("192.168.1.201") },
		"default without gw":   func(i *Interface) { i.Gateway = netip.Addr{} },
		"zoned gateway6":       func(i *Interface) { i.Primary6 = p("2001:db8::5/64"); i.Gateway6 = ip("fe80::1%eth0") },
		"gateway6 no primary6": func(i *Interface) { i.Gateway6 = ip("fe80::1") },
		"link-local primary6":  func(i *Interface) { i.Primary6 = p("fe80::5/64") },
		"host bits":            func(i *Interface) { i.Aliases = pfx("172.16.0.5/24") },
		"alias is primary":     func(i *Interface) { i.Aliases = pfx("192.168.1.201/32") },
		"range covers primary": func(i *Interface) { i.Aliases = pfx("192.168.1.0/24") },
		"overlapping aliases":  func(i *Interface) { i.Aliases = pfx("172.16.0.0/24", "172.16.0.5/32") },
		"duplicate alias":      func(i *Interface) { i.Aliases = pfx("172.16.0.5/32", "172.16.0.5/32") },
		"multicast alias":      func(i *Interface) { i.Aliases = pfx("224.0.0.1/32") },
		"mapped alias":         func(i *Interface) { i.Aliases = pfx("::ffff:10.0.0.1/128") },
		"zero-length alias":    func(i *Interface) { i.Aliases = pfx("0.0.0.0/0") },
		"too many aliases":     func(i *Interface) { i.Aliases = make([]netip.Prefix, maxAliases+1) },
		"invalid alias":        func(i *Interface) { i.Aliases = []netip.Prefix{{}} },
		"IPv4 gateway6":        func(i *Interface) { i.Primary6 = p("2001:db8::5/64"); i.Gateway6 = ip("192.168.1.1") },
		"unspecified primary":  func(i *Interface) { i.Primary = p("0.0.0.0/8") },
		"zero MAC":             func(i *Interface) { i.MAC = mustMAC("00:00:00:00:00:00") },
		"loopback alias":       func(i *Interface) { i.Aliases = pfx("127.0.0.2/32") },
		"broadcast primary all": func(i *Interface) {
			i.Primary = p("255.255.255.255/32")
			i.DefaultRoute = false
			i.Gateway = netip.Addr{}
		},
	}
	for name, mutate := range cases {
		in := base()
		mutate(&in)
		for _, fam := range osNames {
			if _, err := Render(fam, []Interface{in}, FormAuto); err == nil {
				t.Errorf("%s: Render(%s) accepted %+v", name, fam, in)
			}
		}
	}

	two := []Interface{base(), base()}
	two[1].Name = "eth1"
	if _, err := Render(Netplan, two, FormAuto); err == nil || !strings.Contains(err.Error(), "MAC") {
		t.Errorf("duplicate MAC: %v", err)
	}
	two[1].MAC = mustMAC("00:16:3e:16:43:02")
	two[1].Primary, two[1].Gateway = p("192.168.2.201/24"), ip("192.168.2.253")
	if _, err := Render(Netplan, two, FormAuto); err == nil || !strings.Contains(err.Error(), "at most one") {
		t.Errorf("two default routes: %v", err)
	}
	two[1].DefaultRoute = false
	if _, err := Render(Netplan, two, FormAuto); err != nil {
		t.Errorf("two NICs: %v", err)
	}
	two[1].Primary, two[1].Gateway = p("192.168.1.201/24"), netip.Addr{}
	if _, err := Render(Netplan, two, FormAuto); err == nil || !strings.Contains(err.Error(), "overlaps") {
		t.Errorf("same primary on two NICs: %v", err)
	}
	two[1].Name = "eth0"
	if _, err := Render(Netplan, two, FormAuto); err == nil || !strings.Contains(err.Error(), "duplicate") {
		t.Errorf("duplicate names: %v", err)
	}
	if _, err := Render(Netplan, nil, FormAuto); err == nil {
		t.Error("no interfaces accepted")
	}
	if _, err := Render(Netplan, []Interface{base()}, Form(7)); err == nil {
		t.Error("unknown form accepted")
	}
}

func TestAliasLabelLength(t *testing.T) {
	in := Interface{Name: "enp0s31f6abcdef", Primary: p("10.0.0.2/24"), Aliases: pfx("10.0.0.3/32")}
	for _, fam := range []OS{RHEL, Debian} {
		if _, err := Render(fam, []Interface{in}, FormAuto); err == nil || !strings.Contains(err.Error(), "label") {
			t.Errorf("%s: label %s:0 exceeds 15 characters but got %v", fam, in.Name, err)
		}
	}
	// SUSE's LABEL_N is optional and is left out instead.
	r, err := Render(SUSE, []Interface{in}, FormAuto)
	if err != nil {
		t.Fatal(err)
	}
	if c := string(fileByPath(t, r, suseDir+"ifcfg-"+in.Name).Content); strings.Contains(c, "LABEL_0") || !strings.Contains(c, "IPADDR_0='10.0.0.3'") {
		t.Errorf("suse:\n%s", c)
	}
	for _, fam := range []OS{NMCLI, Netplan} {
		if _, err := Render(fam, []Interface{in}, FormAuto); err != nil {
			t.Errorf("%s: %v", fam, err)
		}
	}
}

func TestFormAutoSubnetMask(t *testing.T) {
	// Seed 003: secondaries inside the subnet take its mask; an address
	// outside it stays a host address.
	in := Interface{Name: "eth0", Primary: p("192.168.1.201/24"), Aliases: pfx("192.168.1.202/32", "10.9.9.9/32")}
	r, err := Render(NMCLI, []Interface{in}, FormAuto)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(r.Files[1].Content, []byte("ipv4.addresses 192.168.1.201/24,192.168.1.202/24,10.9.9.9/32\n")) {
		t.Errorf("nmcli:\n%s", r.Files[1].Content)
	}
	r, err = Render(NMCLI, []Interface{in}, FormLocalRoutes)
	if err != nil {
		t.Fatal(err)
	}
	c := string(r.Files[1].Content)
	if !strings.Contains(c, "ipv4.addresses 192.168.1.201/24\n") ||
		!strings.Contains(c, "+ipv4.routes '192.168.1.202/32 table=255 type=local scope=254'") ||
		!strings.Contains(c, "+ipv4.routes '10.9.9.9/32 table=255 type=local scope=254'") {
		t.Errorf("nmcli local routes:\n%s", c)
	}
}

func TestWindows(t *testing.T) {
	in := Interface{
		Name: "Ethernet", Primary: p("192.168.1.201/24"), Gateway: ip("192.168.1.253"), DefaultRoute: true,
		Aliases: pfx("192.168.1.202/32", "172.16.0.16/28", "10.1.2.3/32"),
	}
	r, err := Render(Windows, []Interface{in}, FormAuto)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Files) != 1 || r.Files[0].Path != windowsScript {
		t.Fatalf("files %v", r.Files)
	}
	c := string(r.Files[0].Content)
	for _, want := range []string{
		"$nic = @(Get-NetAdapter -Name 'Ethernet')",
		"Add-AliasnetAddress $idx '192.168.1.201' 24 $false",
		"Add-AliasnetDefaultRoute $idx '0.0.0.0/0' '192.168.1.253'",
		"Add-AliasnetAddress $idx '192.168.1.202' 24 $true",
		"Add-AliasnetAddress $idx '172.16.0.16' 32 $true",
		"Add-AliasnetAddress $idx '172.16.0.31' 32 $true",
		"Add-AliasnetAddress $idx '10.1.2.3' 32 $true",
	} {
		if !strings.Contains(c, want+"\n") {
			t.Errorf("script lacks %q", want)
		}
	}
	if n := strings.Count(c, "$true\n"); n != 1+16+1 {
		t.Errorf("%d secondary addresses, want 18", n)
	}
	if strings.Contains(c, cloudInitPath) {
		t.Error("windows output mentions cloud-init")
	}
	in.Aliases = pfx("172.16.0.0/27")
	if _, err := Render(Windows, []Interface{in}, FormLocalRoutes); err == nil || !strings.Contains(err.Error(), "172.16.0.0/27") {
		t.Errorf("a /27 on Windows: %v", err)
	}
	if psQuote("it's") != "'it''s'" || psQuote("a\u2019b") != "'a\u2019\u2019b'" {
		t.Errorf("psQuote: %s %s", psQuote("it's"), psQuote("a\u2019b"))
	}
}

func TestShellQuote(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	for _, s := range []string{"", "System eth0", "a'b", `"$(id)"`, "x;y", "plain", "tab\there", "new\nline", `back\slash`, "*"} {
		out, err := exec.Command(sh, "-c", `printf '%s' `+shellQuote(s)).Output()
		if err != nil || string(out) != s {
			t.Errorf("shellQuote(%q) = %s: sh printed %q (%v)", s, shellQuote(s), out, err)
		}
	}
}

func TestWriteTreeAndFormat(t *testing.T) {
	r, err := Render(Netplan, testCases[0].ifaces, FormAuto)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := WriteTree(dir, r); err != nil {
		t.Fatal(err)
	}
	// Twice: rewriting must also restore the mode.
	if err := os.Chmod(filepath.Join(dir, netplanPath), 0o666); err != nil {
		t.Fatal(err)
	}
	if err := WriteTree(dir, r); err != nil {
		t.Fatal(err)
	}
	for _, f := range r.Files {
		st, err := os.Stat(filepath.Join(dir, f.Path))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != f.Mode.Perm() {
			t.Errorf("%s: mode %v, want %v", f.Path, st.Mode().Perm(), f.Mode.Perm())
		}
		b, _ := os.ReadFile(filepath.Join(dir, f.Path))
		if !bytes.Equal(b, f.Content) {
			t.Errorf("%s: content differs", f.Path)
		}
	}
	if st, _ := os.Stat(filepath.Join(dir, netplanPath)); st.Mode().Perm() != 0o600 {
		t.Errorf("netplan file mode %v: netplan warns unless 0600", st.Mode().Perm())
	}
	for _, bad := range []string{"../x", "/etc/../../x", "", "a/\x00"} {
		if err := WriteTree(dir, Result{Files: []File{{Path: bad, Content: []byte("x")}}}); err == nil {
			t.Errorf("WriteTree accepted path %q", bad)
		}
	}
	if err := WriteTree(dir, Result{Files: []File{{Path: "rel/x.sh", Mode: fs.FileMode(0o755), Content: []byte("x")}}}); err != nil {
		t.Error(err)
	}

	var b bytes.Buffer
	if err := Format(&b, r); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"# ==> " + cloudInitPath + " <==\nnetwork: {config: disabled}\n",
		"# ==> " + netplanPath + " <==\n",
		"\n# ==> apply <==\nnetplan apply\n",
		"\n# ==> notes <==\n# - ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("Format output lacks %q:\n%s", want, out)
		}
	}
}

func TestEveryLinuxFamilyDisablesCloudInit(t *testing.T) {
	for _, fam := range osNames {
		r := mustRender(t, fam, testCases[0])
		has := false
		for _, f := range r.Files {
			if f.Path == cloudInitPath && string(f.Content) == "network: {config: disabled}\n" {
				has = true
			}
		}
		if has != (fam != Windows) {
			t.Errorf("%s: cloud-init disable file present=%v", fam, has)
		}
		if len(r.Apply) == 0 {
			t.Errorf("%s: no apply command", fam)
		}
	}
}
