//go:build unix

package dnsserver

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Run: go test -run '^$' -bench . -cpu 1 -benchtime 3s ./internal/dnsserver/

const benchInstances = 10000

func benchSnapshot() (Snapshot, []string) {
	zones := []string{"us-central1-a", "us-central1-b", "europe-west1-c"}
	var s Snapshot
	names := make([]string, 0, 2*benchInstances)
	for i := range benchInstances {
		in := Instance{
			Project: fmt.Sprintf("proj-%d", i%10),
			Zone:    zones[i%3],
			Name:    fmt.Sprintf("vm-%d", i),
			IP:      netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}),
			Network: "default",
		}
		s.Instances = append(s.Instances, in)
		names = append(names, ZonalName(in), GlobalName(in))
	}
	return s, names
}

func benchServer(b *testing.B) (*Server, []string) {
	s, names := benchSnapshot()
	srv := New(Options{NetworkOf: func(netip.Addr) string { return "default" }, Logger: quietLogger()})
	srv.Update(mustBuild(b, s))
	return srv, names
}

// cpuTime is the user+system CPU time of this process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

type meter struct {
	wall time.Time
	cpu  time.Duration
}

func startMeter() meter { return meter{time.Now(), cpuTime()} }

// report sets qps (queries per wall-clock second) and qps_cpu (queries per
// CPU-second used by this process: robust when the machine is shared; for
// the UDP benchmark it includes the client's and the kernel's work too).
func (m meter) report(b *testing.B, n int) {
	wall, cpu := time.Since(m.wall), cpuTime()-m.cpu
	b.ReportMetric(float64(n)/wall.Seconds(), "qps")
	if cpu > 0 {
		b.ReportMetric(float64(n)/cpu.Seconds(), "qps_cpu")
	}
}

// BenchmarkServeDNSInProcess: ServeDNS on a parsed query; the fake writer
// packs the reply into a reused buffer, as miekg's writer would.
func BenchmarkServeDNSInProcess(b *testing.B) {
	srv, names := benchServer(b)
	qs := make([]*dns.Msg, len(names))
	for i, n := range names {
		qs[i] = query(n, dns.TypeA)
	}
	w := &fakeWriter{remote: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5353}, pack: true, buf: make([]byte, 512)}
	b.ReportAllocs()
	start := startMeter()
	i := 0
	for b.Loop() {
		srv.ServeDNS(w, qs[i%len(qs)])
		i++
	}
	if w.msg == nil || len(w.msg.Answer) != 1 {
		b.Fatalf("bad answer %v", w.msg)
	}
	start.report(b, i)
}

// BenchmarkServeDNSInProcessWire adds unpacking the query from wire format.
func BenchmarkServeDNSInProcessWire(b *testing.B) {
	srv, names := benchServer(b)
	raw := make([][]byte, len(names))
	for i, n := range names {
		raw[i], _ = query(n, dns.TypeA).Pack()
	}
	w := &fakeWriter{remote: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5353}, pack: true, buf: make([]byte, 512)}
	b.ReportAllocs()
	start := startMeter()
	i := 0
	for b.Loop() {
		var m dns.Msg
		if err := m.Unpack(raw[i%len(raw)]); err != nil {
			b.Fatal(err)
		}
		srv.ServeDNS(w, &m)
		i++
	}
	start.report(b, i)
}

// BenchmarkServeDNSUDP: real server on 127.0.0.1:0, one client socket keeping
// a window of queries in flight. Client and server share the CPU(s).
func BenchmarkServeDNSUDP(b *testing.B) {
	srv, names := benchServer(b)
	addr := startServer(b, srv)
	raw := make([][]byte, len(names))
	for i, n := range names {
		raw[i], _ = query(n, dns.TypeA).Pack()
	}
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetReadBuffer(4 << 20)
	_ = conn.SetWriteBuffer(4 << 20)

	const window = 64
	buf := make([]byte, 1500)
	sent, recvd, lost := 0, 0, 0
	send := func() {
		q := raw[sent%len(raw)]
		binary.BigEndian.PutUint16(q, uint16(sent))
		if _, err := conn.Write(q); err != nil {
			b.Fatal(err)
		}
		sent++
	}
	start := startMeter()
	for b.Loop() {
		for sent-recvd-lost < window {
			send()
		}
		_ = conn.SetReadDeadline(time.Now().Add(time.Second))
		n, err := conn.Read(buf)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			lost += sent - recvd - lost // count the window as lost and refill
			continue
		}
		if err != nil {
			b.Fatal(err)
		}
		if n < 12 || buf[3]&0x0f != 0 {
			b.Fatalf("bad reply (%d bytes, rcode %d)", n, buf[3]&0x0f)
		}
		recvd++
	}
	start.report(b, recvd)
	// Drain what is still in flight so the next run starts clean.
	_ = conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	for sent-recvd-lost > 0 {
		if _, err := conn.Read(buf); err != nil {
			break
		}
		recvd++
	}
	if lost > recvd/100 {
		b.Fatalf("lost %d of %d queries", lost, sent)
	}
	if lost > 0 {
		fmt.Fprintf(os.Stderr, "udp bench: %d lost of %d\n", lost, sent)
	}
}
