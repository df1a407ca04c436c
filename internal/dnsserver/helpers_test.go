package dnsserver

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Loopback source addresses stand for clients in different networks.
var (
	srcDefault = netip.MustParseAddr("127.0.0.1") // network "default"
	srcOther   = netip.MustParseAddr("127.0.0.2") // network "other"
	srcUnknown = netip.MustParseAddr("127.0.0.3") // unknown network
)

func testNetworkOf(a netip.Addr) string {
	switch a {
	case srcDefault:
		return "default"
	case srcOther:
		return "other"
	}
	return ""
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func fixture() Snapshot {
	ip := netip.MustParseAddr
	return Snapshot{
		Instances: []Instance{
			// vm1 also has an alias range 10.2.1.0/24 on nic0 and a nic1 at
			// 192.168.5.2; neither is part of Instance, so neither resolves.
			{Project: "proj", Zone: "us-central1-a", Name: "vm1", IP: ip("10.128.0.2"), Network: "default"},
			{Project: "proj", Zone: "us-central1-b", Name: "vm2", IP: ip("10.128.0.3"), IPv6: ip("fd20:0:0:1::3"), Network: "default"},
			{Project: "proj", Zone: "us-central1-a", Name: "web", IP: ip("10.128.0.10"), Network: "default"},
			{Project: "proj", Zone: "us-central1-b", Name: "web", IP: ip("10.128.0.11"), Network: "default"},
			{Project: "proj", Zone: "us-east1-b", Name: "vm3", IP: ip("10.200.0.5"), Network: "other"},
			{Project: "proj", Zone: "europe-west1-b", Name: "pub", IP: ip("34.1.2.3"), IPv6: ip("2001:db8:1:2::5")},
			{Project: "example.com:scoped", Zone: "us-central1-a", Name: "vm9", IP: ip("10.128.9.9"), Network: "default"},
		},
		Zones: []Zone{
			{Project: "proj", Name: "corp", DNSName: "corp.example.", RRSets: []RRSet{
				{Name: "svc1.corp.example.", Type: "A", TTL: 300, RRDatas: []string{"10.2.1.5"}},
				{Name: "www.corp.example.", Type: "CNAME", TTL: 300, RRDatas: []string{"svc1.corp.example."}},
				{Name: "a.corp.example.", Type: "CNAME", TTL: 300, RRDatas: []string{"b.corp.example."}},
				{Name: "b.corp.example.", Type: "CNAME", TTL: 300, RRDatas: []string{"www.corp.example."}},
				{Name: "dangling.corp.example.", Type: "CNAME", TTL: 300, RRDatas: []string{"nothere.corp.example."}},
				{Name: "ext.corp.example.", Type: "CNAME", TTL: 300, RRDatas: []string{"example.org."}},
				{Name: "vm.corp.example.", Type: "CNAME", TTL: 300, RRDatas: []string{"vm1.us-central1-a.c.proj.internal."}},
				{Name: "loop1.corp.example.", Type: "CNAME", TTL: 300, RRDatas: []string{"loop2.corp.example."}},
				{Name: "loop2.corp.example.", Type: "CNAME", TTL: 300, RRDatas: []string{"loop1.corp.example."}},
				{Name: "corp.example.", Type: "TXT", TTL: 300, RRDatas: []string{`"v=spf1 -all"`}},
				{Name: "corp.example.", Type: "MX", TTL: 300, RRDatas: []string{"10 mail.corp.example."}},
				{Name: "_sip._tcp.corp.example.", Type: "SRV", TTL: 300, RRDatas: []string{"0 5 5060 svc1.corp.example."}},
				{Name: "deep.x.corp.example.", Type: "AAAA", TTL: 300, RRDatas: []string{"fd00::5"}},
				{Name: "big.corp.example.", Type: "TXT", TTL: 300, RRDatas: bigTXT()},
			}},
			{Project: "proj", Name: "rev", DNSName: "1.2.10.in-addr.arpa.", RRSets: []RRSet{
				{Name: "5.1.2.10.in-addr.arpa.", Type: "PTR", TTL: 300, RRDatas: []string{"svc1.corp.example."}},
			}},
			{Project: "proj", Name: "secret", DNSName: "secret.example.", Networks: []string{"other"}, RRSets: []RRSet{
				{Name: "db.secret.example.", Type: "A", TTL: 30, RRDatas: []string{"10.200.9.9"}},
			}},
			{Project: "proj", Name: "view-default", DNSName: "view.example.", Networks: []string{"default"}, RRSets: []RRSet{
				{Name: "x.view.example.", Type: "A", TTL: 30, RRDatas: []string{"10.0.0.1"}},
			}},
			{Project: "proj", Name: "view-all", DNSName: "view.example.", RRSets: []RRSet{
				{Name: "x.view.example.", Type: "A", TTL: 30, RRDatas: []string{"10.0.0.2"}},
			}},
		},
	}
}

func bigTXT() []string {
	var out []string
	for i := range 20 {
		out = append(out, `"`+strings.Repeat(string(rune('a'+i)), 200)+`"`)
	}
	return out
}

func mustBuild(t testing.TB, s Snapshot) *Table {
	t.Helper()
	tb, err := Build(s)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return tb
}

// startServer runs srv on 127.0.0.1:0 until the test ends.
func startServer(t testing.TB, srv *Server) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe(ctx, "127.0.0.1:0") }()
	select {
	case <-srv.Ready():
	case err := <-errc:
		cancel()
		t.Fatalf("ListenAndServe: %v", err)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("server not ready after 10s")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("ListenAndServe returned %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("ListenAndServe did not return after cancel")
		}
	})
	return srv.Addr().String()
}

func newTestServer(t testing.TB, s Snapshot) (*Server, string) {
	t.Helper()
	srv := New(Options{NetworkOf: testNetworkOf, Logger: quietLogger()})
	srv.Update(mustBuild(t, s))
	return srv, startServer(t, srv)
}

// exchange sends m from src over "udp" or "tcp" to the server at addr.
func exchange(t testing.TB, addr, network string, src netip.Addr, m *dns.Msg) *dns.Msg {
	t.Helper()
	d := &net.Dialer{Timeout: 2 * time.Second}
	if network == "tcp" {
		d.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
	} else {
		d.LocalAddr = &net.UDPAddr{IP: src.AsSlice()}
	}
	c := &dns.Client{Net: network, Dialer: d, Timeout: 2 * time.Second, UDPSize: 65535}
	var lastErr error
	for range 3 {
		r, _, err := c.Exchange(m, addr)
		if err == nil {
			return r
		}
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("exchange %v: %v", m.Question, err)
		}
		lastErr = err
	}
	t.Fatalf("exchange %v: %v", m.Question, lastErr)
	return nil
}

func query(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = false
	return m
}

// rrText renders an RR without TTL and class: "name TYPE rdata".
func rrText(rr dns.RR) string {
	h := rr.Header()
	return h.Name + " " + dns.TypeToString[h.Rrtype] + " " + strings.TrimPrefix(rr.String(), h.String())
}

func rrTexts(rrs []dns.RR) []string {
	out := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		if rr.Header().Rrtype == dns.TypeOPT {
			continue
		}
		out = append(out, rrText(rr))
	}
	return out
}

// fakeWriter is an in-memory dns.ResponseWriter.
type fakeWriter struct {
	remote net.Addr
	msg    *dns.Msg
	buf    []byte
	pack   bool
}

func (f *fakeWriter) LocalAddr() net.Addr {
	return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53}
}
func (f *fakeWriter) RemoteAddr() net.Addr { return f.remote }
func (f *fakeWriter) WriteMsg(m *dns.Msg) error {
	f.msg = m
	if f.pack {
		b, err := m.PackBuffer(f.buf)
		if err != nil {
			return err
		}
		f.buf = b[:cap(b)]
	}
	return nil
}
func (f *fakeWriter) Write(b []byte) (int, error) { return len(b), nil }
func (f *fakeWriter) Close() error                { return nil }
func (f *fakeWriter) TsigStatus() error           { return nil }
func (f *fakeWriter) TsigTimersOnly(bool)         {}
func (f *fakeWriter) Hijack()                     {}

func deadline() time.Time { return time.Now().Add(3 * time.Second) }
