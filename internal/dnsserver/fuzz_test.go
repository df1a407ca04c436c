package dnsserver

import (
	"net"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

var (
	fuzzOnce  sync.Once
	fuzzTable *Table
)

// FuzzServeDNS feeds arbitrary bytes through dns.Msg.Unpack and ServeDNS and
// checks that every reply packs, fits the transport and echoes the ID.
func FuzzServeDNS(f *testing.F) {
	seeds := []*dns.Msg{
		query("vm1.us-central1-a.c.proj.internal.", dns.TypeA),
		query("web.c.proj.internal.", dns.TypeA),
		query("vm2.us-central1-b.c.proj.internal.", dns.TypeAAAA),
		query("2.0.128.10.in-addr.arpa.", dns.TypePTR),
		query("a.corp.example.", dns.TypeA),
		query("loop1.corp.example.", dns.TypeA),
		query("big.corp.example.", dns.TypeTXT),
		query("corp.example.", dns.TypeANY),
		query("x.view.example.", dns.TypeA),
		query("www.google.com.", dns.TypeA),
	}
	e := query("big.corp.example.", dns.TypeTXT)
	e.SetEdns0(4096, true)
	seeds = append(seeds, e)
	for _, m := range seeds {
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, false)
		f.Add(b, true)
	}
	for _, p := range malformedPayloads()[:17] {
		f.Add(p, false)
	}
	fuzzOnce.Do(func() { fuzzTable = mustBuild(f, fixture()) })
	srv := New(Options{NetworkOf: testNetworkOf, Logger: quietLogger()})
	srv.Update(fuzzTable)

	f.Fuzz(func(t *testing.T, data []byte, tcp bool) {
		var req dns.Msg
		if err := req.Unpack(data); err != nil {
			return
		}
		w := &fakeWriter{remote: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5353}}
		limit := ednsSize
		if tcp {
			w.remote = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 5353}
			limit = dns.MaxMsgSize
		}
		srv.ServeDNS(w, &req)
		if w.msg == nil {
			if !req.Response {
				t.Fatalf("no reply to %v", &req)
			}
			return
		}
		if req.Response {
			t.Fatalf("replied to a response")
		}
		b, err := w.msg.Pack()
		if err != nil {
			t.Fatalf("reply does not pack: %v\n%v", err, w.msg)
		}
		if len(b) > limit {
			t.Fatalf("reply %d bytes > %d", len(b), limit)
		}
		if w.msg.Id != req.Id || !w.msg.Response {
			t.Fatalf("bad reply header: %v", w.msg)
		}
		var back dns.Msg
		if err := back.Unpack(b); err != nil {
			t.Fatalf("reply does not unpack: %v", err)
		}
	})
}
