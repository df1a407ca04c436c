package dnsserver

import (
	"context"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestDig checks answers with the real dig (Debian: apt-get install -y
// dnsutils). Without dig it skips, unless CI=true, where it fails.
func TestDig(t *testing.T) {
	dig, err := exec.LookPath("dig")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("dig not found and CI=true: install it with `apt-get install -y dnsutils`")
		}
		t.Skip("dig not found; install with `apt-get update && apt-get install -y dnsutils` to run this test")
	}
	_, addr := newTestServer(t, fixture())
	_, port, _ := net.SplitHostPort(addr)

	run := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		all := append([]string{"@127.0.0.1", "-p", port, "+time=2", "+tries=2"}, args...)
		out, err := exec.CommandContext(ctx, dig, all...).Output()
		if err != nil {
			t.Fatalf("dig %s: %v\n%s", strings.Join(all, " "), err, out)
		}
		return string(out)
	}
	short := func(want string, args ...string) {
		t.Helper()
		got := strings.TrimSpace(run(append(args, "+short")...))
		if got != want {
			t.Errorf("dig %s +short:\n got %q\nwant %q", strings.Join(args, " "), got, want)
		}
	}
	contains := func(out string, wants ...string) {
		t.Helper()
		for _, w := range wants {
			if !strings.Contains(out, w) {
				t.Errorf("dig output lacks %q:\n%s", w, out)
			}
		}
	}

	short("10.128.0.2", "vm1.us-central1-a.c.proj.internal")
	short("10.128.0.2", "vm1.c.proj.internal", "A")
	short("10.128.0.2", "VM1.US-CENTRAL1-A.C.PROJ.INTERNAL")
	short("10.128.0.2", "+tcp", "vm1.us-central1-a.c.proj.internal")
	short("10.128.0.10\n10.128.0.11", "web.c.proj.internal")
	short("fd20:0:0:1::3", "vm2.us-central1-b.c.proj.internal", "AAAA")
	short("vm1.us-central1-a.c.proj.internal.", "-x", "10.128.0.2")
	short("vm2.us-central1-b.c.proj.internal.", "-x", "fd20:0:0:1::3")
	short("svc1.corp.example.", "-x", "10.2.1.5")
	short("", "-x", "10.2.1.6")
	short("10.2.1.5", "svc1.corp.example")
	short("b.corp.example.\nwww.corp.example.\nsvc1.corp.example.\n10.2.1.5", "a.corp.example")
	short("10 mail.corp.example.", "corp.example", "MX")
	short("", "vm3.us-east1-b.c.proj.internal")
	short("10.200.0.5", "-b", "127.0.0.2", "vm3.us-east1-b.c.proj.internal")
	short("10.200.9.9", "-b", "127.0.0.2", "db.secret.example")

	contains(run("nope.us-central1-a.c.proj.internal"), "status: NXDOMAIN", "flags: qr aa", "AUTHORITY: 1", "internal.\t\t60\tIN\tSOA")
	contains(run("vm1.us-central1-a.c.proj.internal", "AAAA"), "status: NOERROR", "ANSWER: 0, AUTHORITY: 1", "flags: qr aa")
	contains(run("www.google.com", "+norecurse"), "status: REFUSED")
	contains(run("db.secret.example"), "status: REFUSED")
	contains(run("-x", "8.8.8.8"), "status: REFUSED")
	contains(run("-x", "192.168.5.2"), "status: NXDOMAIN")
	contains(run("vm1.us-central1-a.c.proj.internal", "+norecurse"), "flags: qr aa;", "ANSWER: 1", "EDNS: version: 0", "udp: 1232")
	// 4 KB TXT: UDP answer is truncated, dig retries over TCP by itself.
	contains(run("big.corp.example", "TXT"), "ANSWER: 20", "Truncated, retrying in TCP mode")
	contains(run("big.corp.example", "TXT", "+ignore", "+noedns"), "flags: qr aa tc", "status: NOERROR")
}
