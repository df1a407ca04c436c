package dnsserver

import (
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

func TestQueries(t *testing.T) {
	_, addr := newTestServer(t, fixture())

	const (
		soaInternal = "internal. SOA"
		soaCorp     = "corp.example. SOA"
	)
	tests := []struct {
		name   string
		src    netip.Addr
		qname  string
		qtype  uint16
		rcode  int
		answer []string // rrText of each answer, in order
		soa    string   // prefix of the authority SOA, if any expected
		noAA   bool
	}{
		{name: "zonal A", qname: "vm1.us-central1-a.c.proj.internal.", qtype: dns.TypeA,
			answer: []string{"vm1.us-central1-a.c.proj.internal. A 10.128.0.2"}},
		{name: "global A", qname: "vm1.c.proj.internal.", qtype: dns.TypeA,
			answer: []string{"vm1.c.proj.internal. A 10.128.0.2"}},
		{name: "0x20 mixed case", qname: "VM1.uS-cEntral1-A.C.pRoJ.InTeRnAl.", qtype: dns.TypeA,
			answer: []string{"vm1.us-central1-a.c.proj.internal. A 10.128.0.2"}},
		{name: "global name shared by two zones returns both", qname: "web.c.proj.internal.", qtype: dns.TypeA,
			answer: []string{"web.c.proj.internal. A 10.128.0.10", "web.c.proj.internal. A 10.128.0.11"}},
		{name: "zonal name disambiguates", qname: "web.us-central1-b.c.proj.internal.", qtype: dns.TypeA,
			answer: []string{"web.us-central1-b.c.proj.internal. A 10.128.0.11"}},
		{name: "AAAA with IPv6", qname: "vm2.us-central1-b.c.proj.internal.", qtype: dns.TypeAAAA,
			answer: []string{"vm2.us-central1-b.c.proj.internal. AAAA fd20:0:0:1::3"}},
		{name: "AAAA of IPv4-only instance is NODATA", qname: "vm1.us-central1-a.c.proj.internal.", qtype: dns.TypeAAAA,
			soa: soaInternal},
		{name: "MX of instance is NODATA", qname: "vm1.c.proj.internal.", qtype: dns.TypeMX, soa: soaInternal},
		{name: "PTR of nic0 primary", qname: "2.0.128.10.in-addr.arpa.", qtype: dns.TypePTR,
			answer: []string{"2.0.128.10.in-addr.arpa. PTR vm1.us-central1-a.c.proj.internal."}},
		{name: "PTR IPv6", qname: mustRev("fd20:0:0:1::3"), qtype: dns.TypePTR,
			answer: []string{mustRev("fd20:0:0:1::3") + " PTR vm2.us-central1-b.c.proj.internal."}},
		{name: "PTR of global-ambiguous instance names the zonal name", qname: "11.0.128.10.in-addr.arpa.", qtype: dns.TypePTR,
			answer: []string{"11.0.128.10.in-addr.arpa. PTR web.us-central1-b.c.proj.internal."}},
		{name: "PTR of alias IP named by hand", qname: "5.1.2.10.in-addr.arpa.", qtype: dns.TypePTR,
			answer: []string{"5.1.2.10.in-addr.arpa. PTR svc1.corp.example."}},
		{name: "PTR of alias IP not named is NXDOMAIN", qname: "6.1.2.10.in-addr.arpa.", qtype: dns.TypePTR,
			rcode: dns.RcodeNameError, soa: "1.2.10.in-addr.arpa. SOA"},
		{name: "PTR of nic1 address is NXDOMAIN", qname: "2.5.168.192.in-addr.arpa.", qtype: dns.TypePTR,
			rcode: dns.RcodeNameError, soa: "168.192.in-addr.arpa. SOA"},
		{name: "PTR of public nic0 (own /24 zone)", qname: "3.2.1.34.in-addr.arpa.", qtype: dns.TypePTR,
			answer: []string{"3.2.1.34.in-addr.arpa. PTR pub.europe-west1-b.c.proj.internal."}},
		{name: "PTR of public IPv6 (own /64 zone)", qname: mustRev("2001:db8:1:2::5"), qtype: dns.TypePTR,
			answer: []string{mustRev("2001:db8:1:2::5") + " PTR pub.europe-west1-b.c.proj.internal."}},
		{name: "other address in that /64 is NXDOMAIN", qname: mustRev("2001:db8:1:2::6"), qtype: dns.TypePTR,
			rcode: dns.RcodeNameError, soa: "2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa. SOA"},
		{name: "PTR outside our reverse zones is REFUSED", qname: "8.8.8.8.in-addr.arpa.", qtype: dns.TypePTR,
			rcode: dns.RcodeRefused, noAA: true},
		{name: "domain-scoped project", qname: "vm9.us-central1-a.c.scoped.example.com.internal.", qtype: dns.TypeA,
			answer: []string{"vm9.us-central1-a.c.scoped.example.com.internal. A 10.128.9.9"}},
		{name: "unknown instance NXDOMAIN", qname: "nope.us-central1-a.c.proj.internal.", qtype: dns.TypeA,
			rcode: dns.RcodeNameError, soa: soaInternal},
		{name: "unknown project NXDOMAIN", qname: "vm1.c.nope.internal.", qtype: dns.TypeA,
			rcode: dns.RcodeNameError, soa: soaInternal},
		{name: "empty non-terminal is NODATA", qname: "us-central1-a.c.proj.internal.", qtype: dns.TypeA, soa: soaInternal},
		{name: "outside our zones REFUSED", qname: "www.google.com.", qtype: dns.TypeA, rcode: dns.RcodeRefused, noAA: true},
		{name: "root REFUSED", qname: ".", qtype: dns.TypeNS, rcode: dns.RcodeRefused, noAA: true},
		{name: "apex SOA", qname: "internal.", qtype: dns.TypeSOA,
			answer: []string{"internal. SOA " + nsName + " " + hostmaster + " *"}},
		{name: "apex NS", qname: "corp.example.", qtype: dns.TypeNS, answer: []string{"corp.example. NS " + nsName}},
		{name: "ANY is minimal", qname: "vm1.c.proj.internal.", qtype: dns.TypeANY,
			answer: []string{"vm1.c.proj.internal. A 10.128.0.2"}},

		// Managed zones.
		{name: "alias IP named by hand", qname: "svc1.corp.example.", qtype: dns.TypeA,
			answer: []string{"svc1.corp.example. A 10.2.1.5"}},
		{name: "CNAME chain within zone", qname: "A.corp.example.", qtype: dns.TypeA, answer: []string{
			"a.corp.example. CNAME b.corp.example.",
			"b.corp.example. CNAME www.corp.example.",
			"www.corp.example. CNAME svc1.corp.example.",
			"svc1.corp.example. A 10.2.1.5"}},
		{name: "CNAME query returns only CNAME", qname: "www.corp.example.", qtype: dns.TypeCNAME,
			answer: []string{"www.corp.example. CNAME svc1.corp.example."}},
		{name: "CNAME to instance name", qname: "vm.corp.example.", qtype: dns.TypeA, answer: []string{
			"vm.corp.example. CNAME vm1.us-central1-a.c.proj.internal.",
			"vm1.us-central1-a.c.proj.internal. A 10.128.0.2"}},
		{name: "dangling CNAME is NXDOMAIN", qname: "dangling.corp.example.", qtype: dns.TypeA, rcode: dns.RcodeNameError,
			answer: []string{"dangling.corp.example. CNAME nothere.corp.example."}, soa: soaCorp},
		{name: "CNAME out of our zones", qname: "ext.corp.example.", qtype: dns.TypeA,
			answer: []string{"ext.corp.example. CNAME example.org."}},
		{name: "CNAME then NODATA", qname: "www.corp.example.", qtype: dns.TypeAAAA,
			answer: []string{"www.corp.example. CNAME svc1.corp.example."}, soa: soaCorp},
		{name: "TXT", qname: "corp.example.", qtype: dns.TypeTXT, answer: []string{`corp.example. TXT "v=spf1 -all"`}},
		{name: "MX", qname: "corp.example.", qtype: dns.TypeMX, answer: []string{"corp.example. MX 10 mail.corp.example."}},
		{name: "SRV", qname: "_sip._tcp.corp.example.", qtype: dns.TypeSRV,
			answer: []string{"_sip._tcp.corp.example. SRV 0 5 5060 svc1.corp.example."}},
		{name: "managed ENT NODATA", qname: "x.corp.example.", qtype: dns.TypeA, soa: soaCorp},
		{name: "managed AAAA", qname: "deep.x.corp.example.", qtype: dns.TypeAAAA,
			answer: []string{"deep.x.corp.example. AAAA fd00::5"}},
		{name: "managed NXDOMAIN", qname: "nothing.corp.example.", qtype: dns.TypeA, rcode: dns.RcodeNameError, soa: soaCorp},

		// Visibility.
		{name: "other network's instance is invisible", qname: "vm3.us-east1-b.c.proj.internal.", qtype: dns.TypeA,
			rcode: dns.RcodeNameError, soa: soaInternal},
		{name: "own network's instance", src: srcOther, qname: "vm3.us-east1-b.c.proj.internal.", qtype: dns.TypeA,
			answer: []string{"vm3.us-east1-b.c.proj.internal. A 10.200.0.5"}},
		{name: "default instance invisible from other", src: srcOther, qname: "vm1.c.proj.internal.", qtype: dns.TypeA,
			rcode: dns.RcodeNameError, soa: soaInternal},
		{name: "instance invisible to unknown network", src: srcUnknown, qname: "vm1.c.proj.internal.", qtype: dns.TypeA,
			rcode: dns.RcodeNameError, soa: soaInternal},
		{name: "ENT with only invisible children is NXDOMAIN", src: srcOther, qname: "us-central1-a.c.proj.internal.", qtype: dns.TypeA,
			rcode: dns.RcodeNameError, soa: soaInternal},
		{name: "instance without network visible to unknown", src: srcUnknown, qname: "pub.c.proj.internal.", qtype: dns.TypeA,
			answer: []string{"pub.c.proj.internal. A 34.1.2.3"}},
		{name: "PTR invisible from other network", src: srcOther, qname: "2.0.128.10.in-addr.arpa.", qtype: dns.TypePTR,
			rcode: dns.RcodeNameError, soa: "10.in-addr.arpa. SOA"},
		{name: "restricted zone REFUSED to others", qname: "db.secret.example.", qtype: dns.TypeA,
			rcode: dns.RcodeRefused, noAA: true},
		{name: "restricted zone visible to its network", src: srcOther, qname: "db.secret.example.", qtype: dns.TypeA,
			answer: []string{"db.secret.example. A 10.200.9.9"}},
		{name: "per-network view", qname: "x.view.example.", qtype: dns.TypeA, answer: []string{"x.view.example. A 10.0.0.1"}},
		{name: "view for all from other", src: srcOther, qname: "x.view.example.", qtype: dns.TypeA,
			answer: []string{"x.view.example. A 10.0.0.2"}},
		{name: "view for all from unknown", src: srcUnknown, qname: "x.view.example.", qtype: dns.TypeA,
			answer: []string{"x.view.example. A 10.0.0.2"}},
		{name: "unrestricted zone visible to unknown", src: srcUnknown, qname: "svc1.corp.example.", qtype: dns.TypeA,
			answer: []string{"svc1.corp.example. A 10.2.1.5"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := tc.src
			if !src.IsValid() {
				src = srcDefault
			}
			for _, transport := range []string{"udp", "tcp"} {
				q := query(tc.qname, tc.qtype)
				r := exchange(t, addr, transport, src, q)
				if r.Rcode != tc.rcode {
					t.Fatalf("%s: rcode %s, want %s\n%v", transport, dns.RcodeToString[r.Rcode], dns.RcodeToString[tc.rcode], r)
				}
				if got := rrTexts(r.Answer); !slices.EqualFunc(got, tc.answer, func(g, w string) bool {
					p, wild := strings.CutSuffix(w, "*")
					return g == w || wild && strings.HasPrefix(g, p)
				}) {
					t.Fatalf("%s: answer\n got %q\nwant %q", transport, got, tc.answer)
				}
				if r.Authoritative == tc.noAA {
					t.Errorf("%s: AA=%v", transport, r.Authoritative)
				}
				if r.RecursionAvailable {
					t.Errorf("%s: RA set", transport)
				}
				if len(r.Question) != 1 || r.Question[0].Name != tc.qname {
					t.Errorf("%s: question not echoed: %v", transport, r.Question)
				}
				ns := rrTexts(r.Ns)
				switch {
				case tc.soa == "" && len(ns) != 0:
					t.Errorf("%s: unexpected authority %q", transport, ns)
				case tc.soa != "" && (len(ns) != 1 || !strings.HasPrefix(ns[0], tc.soa)):
					t.Errorf("%s: authority %q, want %q...", transport, ns, tc.soa)
				}
			}
		})
	}
}

func mustRev(ip string) string {
	r, err := dns.ReverseAddr(ip)
	if err != nil {
		panic(err)
	}
	return r
}

func TestTTLs(t *testing.T) {
	srv := New(Options{TTL: 42, Logger: quietLogger()})
	srv.Update(mustBuild(t, fixture()))
	addr := startServer(t, srv)
	r := exchange(t, addr, "udp", srcDefault, query("vm1.c.proj.internal.", dns.TypeA))
	if len(r.Answer) != 1 || r.Answer[0].Header().Ttl != 42 {
		t.Fatalf("instance TTL: %v", r.Answer)
	}
	r = exchange(t, addr, "udp", srcDefault, query("svc1.corp.example.", dns.TypeA))
	if len(r.Answer) != 1 || r.Answer[0].Header().Ttl != 300 {
		t.Fatalf("managed TTL: %v", r.Answer)
	}
	r = exchange(t, addr, "udp", srcDefault, query("nx.c.proj.internal.", dns.TypeA))
	if soa, ok := r.Ns[0].(*dns.SOA); !ok || soa.Minttl != 42 || soa.Hdr.Ttl != 42 {
		t.Fatalf("SOA: %v", r.Ns)
	}
	// NetworkOf nil: every client sees every instance.
	r = exchange(t, addr, "udp", srcDefault, query("vm3.c.proj.internal.", dns.TypeA))
	if len(r.Answer) != 1 {
		t.Fatalf("NetworkOf nil should show all: %v", r)
	}
}

func TestEDNSAndTruncation(t *testing.T) {
	_, addr := newTestServer(t, fixture())

	// EDNS is echoed with our size and the DO bit.
	q := query("vm1.c.proj.internal.", dns.TypeA)
	q.SetEdns0(4096, true)
	r := exchange(t, addr, "udp", srcDefault, q)
	opt := r.IsEdns0()
	if opt == nil || opt.UDPSize() != ednsSize || !opt.Do() || len(r.Answer) != 1 {
		t.Fatalf("EDNS reply: %v", r)
	}
	// No EDNS → no OPT.
	r = exchange(t, addr, "udp", srcDefault, query("vm1.c.proj.internal.", dns.TypeA))
	if r.IsEdns0() != nil {
		t.Fatalf("OPT without EDNS query: %v", r)
	}

	// EDNS version 1 → BADVERS.
	q = query("vm1.c.proj.internal.", dns.TypeA)
	q.SetEdns0(1232, false)
	q.IsEdns0().SetVersion(1)
	r = exchange(t, addr, "udp", srcDefault, q)
	if r.Rcode != dns.RcodeBadVers || r.IsEdns0() == nil {
		t.Fatalf("BADVERS: rcode %d %v", r.Rcode, r)
	}

	// A 4 KB TXT rrset: truncated on UDP (512 without EDNS, 1232 with), whole over TCP.
	for _, size := range []uint16{0, 512, 1232, 4096} {
		q = query("big.corp.example.", dns.TypeTXT)
		if size != 0 {
			q.SetEdns0(size, false)
		}
		raw, err := q.Pack()
		if err != nil {
			t.Fatal(err)
		}
		conn, err := net.Dial("udp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Write(raw); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 65535)
		_ = conn.SetReadDeadline(deadline())
		n, err := conn.Read(buf)
		conn.Close()
		if err != nil {
			t.Fatal(err)
		}
		limit := 512
		if size > 512 {
			limit = min(int(size), ednsSize)
		}
		if n > limit {
			t.Errorf("EDNS %d: %d bytes > %d", size, n, limit)
		}
		r = new(dns.Msg)
		if err := r.Unpack(buf[:n]); err != nil {
			t.Fatal(err)
		}
		if !r.Truncated || len(r.Answer) >= 20 {
			t.Errorf("EDNS %d: TC=%v answers=%d", size, r.Truncated, len(r.Answer))
		}
		if (size != 0) != (r.IsEdns0() != nil) {
			t.Errorf("EDNS %d: OPT echo mismatch", size)
		}
	}
	r = exchange(t, addr, "tcp", srcDefault, query("big.corp.example.", dns.TypeTXT))
	if r.Truncated || len(r.Answer) != 20 {
		t.Fatalf("TCP: TC=%v answers=%d", r.Truncated, len(r.Answer))
	}
}

func TestRejections(t *testing.T) {
	_, addr := newTestServer(t, fixture())

	// Multiple questions → FORMERR (the real server path).
	q := query("vm1.c.proj.internal.", dns.TypeA)
	q.Question = append(q.Question, dns.Question{Name: "vm2.c.proj.internal.", Qtype: dns.TypeA, Qclass: dns.ClassINET})
	for _, transport := range []string{"udp", "tcp"} {
		r := exchange(t, addr, transport, srcDefault, q)
		if r.Rcode != dns.RcodeFormatError {
			t.Errorf("%s: two questions: rcode %s", transport, dns.RcodeToString[r.Rcode])
		}
	}
	// No question → FORMERR.
	q = new(dns.Msg)
	q.Id = dns.Id()
	if r := exchange(t, addr, "tcp", srcDefault, q); r.Rcode != dns.RcodeFormatError {
		t.Errorf("no question: rcode %s", dns.RcodeToString[r.Rcode])
	}
	// AXFR and CHAOS → REFUSED; NOTIFY → NOTIMP.
	if r := exchange(t, addr, "tcp", srcDefault, query("internal.", dns.TypeAXFR)); r.Rcode != dns.RcodeRefused {
		t.Errorf("AXFR: rcode %s", dns.RcodeToString[r.Rcode])
	}
	q = query("version.bind.", dns.TypeTXT)
	q.Question[0].Qclass = dns.ClassCHAOS
	if r := exchange(t, addr, "udp", srcDefault, q); r.Rcode != dns.RcodeRefused {
		t.Errorf("CHAOS: rcode %s", dns.RcodeToString[r.Rcode])
	}
	q = query("internal.", dns.TypeSOA)
	q.Opcode = dns.OpcodeNotify
	if r := exchange(t, addr, "udp", srcDefault, q); r.Rcode != dns.RcodeNotImplemented {
		t.Errorf("NOTIFY: rcode %s", dns.RcodeToString[r.Rcode])
	}
}

// ServeDNS called directly (not via miekg's server, which rejects these
// itself) must still handle odd messages.
func TestServeDNSDirect(t *testing.T) {
	srv := New(Options{Logger: quietLogger()})
	w := &fakeWriter{remote: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5353}, pack: true}

	q := query("vm1.c.proj.internal.", dns.TypeA)
	srv.ServeDNS(w, q)
	if w.msg == nil || w.msg.Rcode != dns.RcodeServerFailure {
		t.Fatalf("before Update: %v", w.msg)
	}
	srv.Update(mustBuild(t, fixture()))

	cases := []struct {
		name  string
		mod   func(m *dns.Msg)
		rcode int
	}{
		{"two questions", func(m *dns.Msg) {
			m.Question = append(m.Question, m.Question[0])
		}, dns.RcodeFormatError},
		{"no question", func(m *dns.Msg) { m.Question = nil }, dns.RcodeFormatError},
		{"two OPT", func(m *dns.Msg) { m.SetEdns0(1232, false); m.Extra = append(m.Extra, m.Extra[0]) }, dns.RcodeFormatError},
		{"update opcode", func(m *dns.Msg) { m.Opcode = dns.OpcodeUpdate }, dns.RcodeNotImplemented},
		{"empty name", func(m *dns.Msg) { m.Question[0].Name = "" }, dns.RcodeRefused},
		{"ok", func(m *dns.Msg) {}, dns.RcodeSuccess},
	}
	for _, tc := range cases {
		q := query("vm1.c.proj.internal.", dns.TypeA)
		tc.mod(q)
		w.msg = nil
		srv.ServeDNS(w, q)
		if w.msg == nil || w.msg.Rcode != tc.rcode {
			t.Errorf("%s: got %v, want rcode %s", tc.name, w.msg, dns.RcodeToString[tc.rcode])
		}
	}
	// Responses are never answered; nil is ignored.
	q = query("vm1.c.proj.internal.", dns.TypeA)
	q.Response = true
	w.msg = nil
	srv.ServeDNS(w, q)
	srv.ServeDNS(w, nil)
	if w.msg != nil {
		t.Errorf("answered a response: %v", w.msg)
	}
}

func TestPanicIsServfail(t *testing.T) {
	srv := New(Options{Logger: quietLogger(), NetworkOf: func(netip.Addr) string { panic("boom") }})
	srv.Update(mustBuild(t, fixture()))
	w := &fakeWriter{remote: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, pack: true}
	srv.ServeDNS(w, query("vm1.c.proj.internal.", dns.TypeA))
	if w.msg == nil || w.msg.Rcode != dns.RcodeServerFailure {
		t.Fatalf("got %v", w.msg)
	}
}

func TestUpdateSwapsAtOnce(t *testing.T) {
	srv, addr := newTestServer(t, fixture())
	get := func() []string {
		return rrTexts(exchange(t, addr, "udp", srcDefault, query("vm1.c.proj.internal.", dns.TypeA)).Answer)
	}
	if got := get(); len(got) != 1 || !strings.HasSuffix(got[0], "10.128.0.2") {
		t.Fatalf("before: %q", got)
	}
	s2 := fixture()
	s2.Instances[0].IP = netip.MustParseAddr("10.128.0.99")
	srv.Update(mustBuild(t, s2))
	if got := get(); len(got) != 1 || !strings.HasSuffix(got[0], "10.128.0.99") {
		t.Fatalf("after update: %q", got)
	}
	r := exchange(t, addr, "udp", srcDefault, query("99.0.128.10.in-addr.arpa.", dns.TypePTR))
	if len(r.Answer) != 1 {
		t.Fatalf("new PTR: %v", r)
	}
	r = exchange(t, addr, "udp", srcDefault, query("2.0.128.10.in-addr.arpa.", dns.TypePTR))
	if r.Rcode != dns.RcodeNameError {
		t.Fatalf("old PTR still there: %v", r)
	}
	s2.Instances = s2.Instances[1:]
	srv.Update(mustBuild(t, s2))
	if r := exchange(t, addr, "udp", srcDefault, query("vm1.c.proj.internal.", dns.TypeA)); r.Rcode != dns.RcodeNameError {
		t.Fatalf("deleted instance: %v", r)
	}
}

func TestListenAndServeTwice(t *testing.T) {
	srv := New(Options{Logger: quietLogger()})
	startServer(t, srv)
	if err := srv.ListenAndServe(t.Context(), "127.0.0.1:0"); err == nil {
		t.Fatal("second ListenAndServe succeeded")
	}
	if srv.TCPAddr().(*net.TCPAddr).Port != srv.Addr().(*net.UDPAddr).Port {
		t.Fatal("UDP and TCP ports differ")
	}
}

func TestListenAndServeBadAddr(t *testing.T) {
	srv := New(Options{Logger: quietLogger()})
	if err := srv.ListenAndServe(t.Context(), "not an address"); err == nil {
		t.Fatal("want error")
	}
}

func TestBuildErrors(t *testing.T) {
	ip := netip.MustParseAddr
	tests := []struct {
		name string
		snap Snapshot
		want []string // substrings of the error
	}{
		{"duplicate instance name", Snapshot{Instances: []Instance{
			{Project: "p", Zone: "z", Name: "vm", IP: ip("10.0.0.1")},
			{Project: "p", Zone: "z", Name: "VM", IP: ip("10.0.0.2")},
		}}, []string{"instance p/z/", "duplicate instance name"}},
		{"duplicate IP in one network", Snapshot{Instances: []Instance{
			{Project: "p", Zone: "z", Name: "a", IP: ip("10.0.0.1"), Network: "n"},
			{Project: "p", Zone: "z", Name: "b", IP: ip("10.0.0.1"), Network: "n"},
		}}, []string{"address 10.0.0.1 already used"}},
		{"bad label", Snapshot{Instances: []Instance{{Project: "p", Zone: "z", Name: "bad_name", IP: ip("10.0.0.1")}}},
			[]string{"p/z/bad_name", "DNS labels"}},
		{"no address", Snapshot{Instances: []Instance{{Project: "p", Zone: "z", Name: "a"}}}, []string{"no nic0 address"}},
		{"v6 in IP", Snapshot{Instances: []Instance{{Project: "p", Zone: "z", Name: "a", IP: ip("fd00::1")}}}, []string{"must be IPv4"}},
		{"bad rrdata", Snapshot{Zones: []Zone{{Project: "p", Name: "corp", DNSName: "corp.example.", RRSets: []RRSet{
			{Name: "x.corp.example.", Type: "A", TTL: 60, RRDatas: []string{"10.0.0.1", "10.0.0.999"}},
		}}}}, []string{"zone p/corp (corp.example.)", "x.corp.example.", `rrdatas[1] "10.0.0.999"`}},
		{"name outside zone", Snapshot{Zones: []Zone{{Project: "p", Name: "corp", DNSName: "corp.example.", RRSets: []RRSet{
			{Name: "x.other.example.", Type: "A", RRDatas: []string{"10.0.0.1"}},
		}}}}, []string{"zone p/corp", `name "x.other.example."`, "not inside zone"}},
		{"CNAME and other data", Snapshot{Zones: []Zone{{Project: "p", Name: "corp", DNSName: "corp.example.", RRSets: []RRSet{
			{Name: "x.corp.example.", Type: "CNAME", RRDatas: []string{"y.corp.example."}},
			{Name: "x.corp.example.", Type: "TXT", RRDatas: []string{"hi"}},
		}}}}, []string{"x.corp.example. CNAME", "cannot coexist"}},
		{"duplicate rrset", Snapshot{Zones: []Zone{{Project: "p", Name: "corp", DNSName: "corp.example.", RRSets: []RRSet{
			{Name: "x.corp.example.", Type: "A", RRDatas: []string{"10.0.0.1"}},
			{Name: "X.corp.example.", Type: "a", RRDatas: []string{"10.0.0.2"}},
		}}}}, []string{"duplicate rrset"}},
		{"overlapping visibility", Snapshot{Zones: []Zone{
			{Project: "p", Name: "a", DNSName: "corp.example.", Networks: []string{"n1", "n2"}},
			{Project: "p", Name: "b", DNSName: "corp.example.", Networks: []string{"n2"}},
		}}, []string{"zone p/b", "overlaps zone p/a"}},
		{"two public views", Snapshot{Zones: []Zone{
			{Project: "p", Name: "a", DNSName: "corp.example."},
			{Project: "q", Name: "b", DNSName: "CORP.example."},
		}}, []string{"overlaps"}},
		{"bad dnsName", Snapshot{Zones: []Zone{{Project: "p", Name: "a", DNSName: "corp.example"}}},
			[]string{"zone p/a", "dnsName", "fully qualified"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Build(tc.snap)
			if err == nil {
				t.Fatal("Build succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}

	// Legal: same IP in two networks, same name in two zones or projects.
	_, err := Build(Snapshot{Instances: []Instance{
		{Project: "p", Zone: "z1", Name: "vm", IP: ip("10.0.0.1"), Network: "a"},
		{Project: "p", Zone: "z2", Name: "vm", IP: ip("10.0.0.1"), Network: "b"},
		{Project: "q", Zone: "z1", Name: "vm", IP: ip("10.0.0.2"), Network: "a"},
	}})
	if err != nil {
		t.Fatal(err)
	}
}

func TestValidateRRSet(t *testing.T) {
	tests := []struct {
		rr    RRSet
		field string // "" = valid
	}{
		{RRSet{Name: "a.corp.example.", Type: "A", TTL: 60, RRDatas: []string{"10.1.2.3"}}, ""},
		{RRSet{Name: "corp.example.", Type: "MX", TTL: 60, RRDatas: []string{"10 mx.corp.example.", "20 mx2.corp.example."}}, ""},
		{RRSet{Name: "t.corp.example.", Type: "TXT", RRDatas: []string{`"a b" "c;d"`, "plain"}}, ""},
		{RRSet{Name: "s.corp.example.", Type: "SRV", RRDatas: []string{"0 0 80 x.corp.example."}}, ""},
		{RRSet{Name: "6.corp.example.", Type: "AAAA", RRDatas: []string{"fd00::1"}}, ""},
		{RRSet{Name: "p.corp.example.", Type: "PTR", RRDatas: []string{"x.corp.example."}}, ""},
		{RRSet{Name: "", Type: "A", RRDatas: []string{"10.1.2.3"}}, "name"},
		{RRSet{Name: "a.corp.example", Type: "A", RRDatas: []string{"10.1.2.3"}}, "name"},
		{RRSet{Name: "a.other.", Type: "A", RRDatas: []string{"10.1.2.3"}}, "name"},
		{RRSet{Name: "a.corp.example.", Type: "NAPTR", RRDatas: []string{"x"}}, "type"},
		{RRSet{Name: "corp.example.", Type: "SOA", RRDatas: []string{"x"}}, "type"},
		{RRSet{Name: "a.corp.example.", Type: "A", TTL: 1 << 31, RRDatas: []string{"10.1.2.3"}}, "ttl"},
		{RRSet{Name: "a.corp.example.", Type: "A"}, "rrdatas"},
		{RRSet{Name: "a.corp.example.", Type: "A", RRDatas: []string{"fd00::1"}}, "rrdatas[0]"},
		{RRSet{Name: "a.corp.example.", Type: "A", RRDatas: []string{"10.1.2.3", "10.1.2.3"}}, "rrdatas[1]"},
		{RRSet{Name: "a.corp.example.", Type: "A", RRDatas: []string{"10.1.2.3\nb.corp.example. 60 IN A 1.2.3.4"}}, "rrdatas[0]"},
		{RRSet{Name: "a.corp.example.", Type: "A", RRDatas: []string{"10.1.2.3 IN TXT x"}}, "rrdatas[0]"},
		{RRSet{Name: "a.corp.example.", Type: "MX", RRDatas: []string{"mx.corp.example."}}, "rrdatas[0]"},
		{RRSet{Name: "a.corp.example.", Type: "CNAME", RRDatas: []string{"x.", "y."}}, "rrdatas"},
		{RRSet{Name: "corp.example.", Type: "CNAME", RRDatas: []string{"x."}}, "name"},
		{RRSet{Name: "a.corp.example.", Type: "TXT", RRDatas: []string{"  "}}, "rrdatas[0]"},
	}
	for _, tc := range tests {
		err := ValidateRRSet(tc.rr, "Corp.Example.")
		if tc.field == "" {
			if err != nil {
				t.Errorf("%+v: %v", tc.rr, err)
			}
			continue
		}
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("%+v: error %v, want field %q", tc.rr, err, tc.field)
		} else if !strings.HasPrefix(err.Error(), tc.field) {
			t.Errorf("%+v: error %q does not start with the field", tc.rr, err)
		}
	}
	if err := ValidateRRSet(RRSet{Name: "a.b.", Type: "A", RRDatas: []string{"1.2.3.4"}}, "b"); err == nil {
		t.Error("relative zone dnsName accepted")
	}
}

// Concurrent queries (sharing the table's records) while tables are swapped;
// run with -race.
func TestConcurrentServeAndUpdate(t *testing.T) {
	srv := New(Options{NetworkOf: testNetworkOf, Logger: quietLogger()})
	t1 := mustBuild(t, fixture())
	s2 := fixture()
	s2.Instances[0].IP = netip.MustParseAddr("10.128.0.99")
	t2 := mustBuild(t, s2)
	srv.Update(t1)

	names := []string{"vm1.c.proj.internal.", "a.corp.example.", "big.corp.example.", "3.0.128.10.in-addr.arpa.", "corp.example."}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			if i%2 == 0 {
				srv.Update(t2)
			} else {
				srv.Update(t1)
			}
		}
	}()
	var qwg sync.WaitGroup
	for g := range 4 {
		qwg.Add(1)
		go func() {
			defer qwg.Done()
			w := &fakeWriter{remote: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, pack: true}
			for i := range 500 {
				q := query(names[(g+i)%len(names)], dns.TypeANY)
				if i%3 == 0 {
					q.Question[0].Qtype = dns.TypeA
				}
				srv.ServeDNS(w, q)
				if w.msg == nil || w.msg.Rcode != dns.RcodeSuccess {
					t.Errorf("%v: %v", q.Question, w.msg)
					return
				}
			}
		}()
	}
	qwg.Wait()
	close(done)
	wg.Wait()
}
