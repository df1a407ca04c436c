package dnsserver

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func header(id uint16, flags uint16, qd, an, ns, ar uint16) []byte {
	b := make([]byte, 12)
	binary.BigEndian.PutUint16(b[0:], id)
	binary.BigEndian.PutUint16(b[2:], flags)
	binary.BigEndian.PutUint16(b[4:], qd)
	binary.BigEndian.PutUint16(b[6:], an)
	binary.BigEndian.PutUint16(b[8:], ns)
	binary.BigEndian.PutUint16(b[10:], ar)
	return b
}

func malformedPayloads() [][]byte {
	cat := func(parts ...[]byte) []byte {
		var out []byte
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	valid, _ := query("vm1.c.proj.internal.", dns.TypeA).Pack()
	longLabels := []byte{}
	for range 10 { // 10 × 63-byte labels: a name longer than 255
		longLabels = append(longLabels, 63)
		for range 63 {
			longLabels = append(longLabels, 'a')
		}
	}
	p := [][]byte{
		{},
		{0x00},
		header(1, 0, 1, 0, 0, 0)[:11],
		header(2, 0, 1, 0, 0, 0), // QDCOUNT 1, no question
		cat(header(3, 0, 1, 0, 0, 0), []byte{0xc0, 0x0c, 0, 1, 0, 1}),                              // pointer to itself
		cat(header(4, 0, 1, 0, 0, 0), []byte{0xc0, 0x0e, 0xc0, 0x0c, 0, 1, 0, 1}),                  // two-pointer loop
		cat(header(5, 0, 1, 0, 0, 0), []byte{0xc0, 0xff, 0, 1, 0, 1}),                              // pointer past the end
		cat(header(6, 0, 1, 0, 0, 0), []byte{3, 'a', 'b'}),                                         // truncated label
		cat(header(7, 0, 1, 0, 0, 0), longLabels, []byte{0, 0, 1, 0, 1}),                           // name > 255
		cat(header(8, 0, 1, 0, 0, 0), []byte{0x80, 0, 1, 0, 1}),                                    // reserved label type
		cat(header(9, 0, 0xffff, 0xffff, 0xffff, 0xffff), valid[12:]),                              // huge counts
		cat(header(10, 0, 1, 0, 0, 1), valid[12:], []byte{0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0xff}), // OPT rdlen past end
		cat(header(11, 0x8000, 1, 0, 0, 0), valid[12:]),                                            // a response: ignored
		cat(header(12, 0x2800, 1, 0, 0, 0), valid[12:]),                                            // UPDATE opcode
		cat(header(13, 0, 2, 0, 0, 0), valid[12:], valid[12:]),                                     // two questions
		cat(valid[:len(valid)-1]),                                                                  // truncated qclass
		make([]byte, 65000),                                                                        // oversized, zeros
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		b := make([]byte, r.IntN(600))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		p = append(p, b)
	}
	// Bit flips of a valid query.
	for range 200 {
		b := append([]byte(nil), valid...)
		b[r.IntN(len(b))] ^= byte(1 << r.IntN(8))
		p = append(p, b)
	}
	big := make([]byte, 65000)
	for i := range big {
		big[i] = byte(r.Uint32())
	}
	return append(p, big)
}

func TestMalformedPackets(t *testing.T) {
	_, addr := newTestServer(t, fixture())
	alive := func(when string) {
		t.Helper()
		r := exchange(t, addr, "udp", srcDefault, query("vm1.c.proj.internal.", dns.TypeA))
		if len(r.Answer) != 1 {
			t.Fatalf("after %s: %v", when, r)
		}
		r = exchange(t, addr, "tcp", srcDefault, query("vm1.c.proj.internal.", dns.TypeA))
		if len(r.Answer) != 1 {
			t.Fatalf("after %s (tcp): %v", when, r)
		}
	}
	alive("start")

	conn, err := net.DialUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	payloads := malformedPayloads()
	buf := make([]byte, 65535)
	for i, p := range payloads {
		if _, err := conn.Write(p); err != nil {
			t.Fatalf("payload %d: %v", i, err)
		}
		// Any reply must be a well-formed DNS message within UDP limits.
		_ = conn.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		if n, err := conn.Read(buf); err == nil {
			var m dns.Msg
			if err := m.Unpack(buf[:n]); err != nil && n >= 12 {
				t.Errorf("payload %d: reply does not unpack: %v", i, err)
			}
			if n > ednsSize {
				t.Errorf("payload %d: %d-byte UDP reply", i, n)
			}
		}
		if i%50 == 0 {
			alive(fmt.Sprintf("payload %d", i))
		}
	}
	alive("all UDP payloads")

	// TCP: garbage, a short length prefix, a huge length, a half message.
	for _, p := range [][]byte{
		{0xff, 0xff, 1, 2, 3},
		{0x00},
		{0x00, 0x05, 1, 2, 3, 4, 5},
		append([]byte{0x00, 0x0c}, header(1, 0, 1, 0, 0, 0)...),
		append(append([]byte{0x00, 0x0e}, header(3, 0, 1, 0, 0, 0)...), 0xc0, 0x0c),
	} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = c.Write(p)
		_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		_, _ = c.Read(buf)
		c.Close()
	}
	alive("TCP garbage")
}
