package bgp

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

// benchSubnets: 1,000 subnets, each a primary /24 and two secondary /24s.
func benchSubnets() []netip.Prefix {
	var out []netip.Prefix
	for i := range 1000 {
		for _, base := range []int{0, 64, 128} { // primary, secondary 1, secondary 2
			out = append(out, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(base + i/256), byte(i % 256), 0}), 24))
		}
	}
	return out
}

func benchRoutes(b *testing.B) []Route {
	ps, err := Advertise(ModeDefault, nil, nil, benchSubnets())
	if err != nil {
		b.Fatal(err)
	}
	if len(ps) != 3000 {
		b.Fatalf("%d prefixes, want 3000", len(ps))
	}
	rs := make([]Route, len(ps))
	for i, p := range ps {
		rs[i] = Route{Prefix: p}
	}
	return rs
}

// pollImported polls BIRD until it has imported n routes from the speaker.
func pollImported(b *testing.B, br *bird, n int, established *time.Time) {
	b.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		p, raw := br.proto()
		if established != nil && established.IsZero() && p.State == "Established" {
			*established = time.Now()
		}
		if p.Imported == n {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("BIRD never reached %d imported routes:\n%s", n, raw)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitBirdReady waits until BIRD's session is down, its routes from the
// speaker are gone, and it is trying to connect again.
func waitBirdReady(b *testing.B, br *bird) {
	b.Helper()
	waitFor(b, 30*time.Second, "BIRD idle and retrying", func() (bool, string) {
		p, raw := br.proto()
		return p.Imported == 0 && (p.State == "Active" || p.State == "Connect"), raw
	})
}

// BenchmarkAdvertise3000 measures the ranges of 1,000 subnets (primary + two
// secondaries = 3,000 prefixes) arriving at a BIRD peer:
//   - ms-from-start: Start + SetAdvertised + SetPeers → BIRD has all 3,000
//     (includes TCP connect and OPEN; target ≤ 2 s);
//   - ms-established: of which, until BIRD's session is Established;
//   - ms-push-3000: on an established session with nothing announced,
//     SetAdvertised(3,000) → BIRD has all 3,000;
//   - ms-SetAdvertised-call: of which, the SetAdvertised call itself.
func BenchmarkAdvertise3000(b *testing.B) {
	requireBird(b)
	routes := benchRoutes(b)
	goPort, birdPort := freePort(b), freePort(b)
	br := startBird(b, birdOpts{Port: birdPort, PeerPort: goPort, NoStatic: true})
	peer := Peer{Address: birdAddr, Port: uint16(birdPort), ASN: birdASN}
	var total, est, push, call time.Duration
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		waitBirdReady(b, br)
		b.StartTimer()

		t0 := time.Now()
		var tEst time.Time
		s, err := Start(ctxT(b), Config{ASN: speakASN, RouterID: lo4, ListenAddr: lo4, ListenPort: int32(goPort)}, nil)
		if err != nil {
			b.Fatal(err)
		}
		if err := s.SetAdvertised(routes); err != nil {
			b.Fatal(err)
		}
		if err := s.SetPeers([]Peer{peer}); err != nil {
			b.Fatal(err)
		}
		pollImported(b, br, 3000, &tEst)
		total += time.Since(t0)
		est += tEst.Sub(t0)

		// Same, announcing into the established session.
		if err := s.SetAdvertised(nil); err != nil {
			b.Fatal(err)
		}
		pollImported(b, br, 0, nil)
		t1 := time.Now()
		if err := s.SetAdvertised(routes); err != nil {
			b.Fatal(err)
		}
		call += time.Since(t1)
		pollImported(b, br, 3000, nil)
		push += time.Since(t1)

		b.StopTimer()
		if err := s.Stop(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(float64(total.Milliseconds())/n, "ms-from-start")
	b.ReportMetric(float64(est.Milliseconds())/n, "ms-established")
	b.ReportMetric(float64(push.Milliseconds())/n, "ms-push-3000")
	b.ReportMetric(float64(call.Milliseconds())/n, "ms-SetAdvertised-call")
}

// BenchmarkAddOnePrefix: with 3,000 prefixes announced and the session up,
// SetAdvertised with one more prefix → present at BIRD (target ≤ 1 s).
func BenchmarkAddOnePrefix(b *testing.B) {
	requireBird(b)
	routes := benchRoutes(b)
	goPort, birdPort := freePort(b), freePort(b)
	br := startBird(b, birdOpts{Port: birdPort, PeerPort: goPort, NoStatic: true})
	s, err := Start(ctxT(b), Config{ASN: speakASN, RouterID: lo4, ListenAddr: lo4, ListenPort: int32(goPort)}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Stop() })
	if err := s.SetAdvertised(routes); err != nil {
		b.Fatal(err)
	}
	if err := s.SetPeers([]Peer{{Address: birdAddr, Port: uint16(birdPort), ASN: birdASN}}); err != nil {
		b.Fatal(err)
	}
	pollImported(b, br, 3000, nil)
	var lat time.Duration
	b.ResetTimer()
	for i := range b.N {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{100, 64 + byte(i>>16&63), byte(i >> 8), byte(i)}), 32)
		routes = append(routes, Route{Prefix: p})
		t0 := time.Now()
		if err := s.SetAdvertised(routes); err != nil {
			b.Fatal(err)
		}
		for {
			out, err := br.birdc("show", "route", "for", p.Addr().String(), "protocol", birdProto)
			if err != nil && !strings.Contains(out, "Network not found") {
				b.Fatal(err, out)
			}
			if containsPrefix(out, p) {
				break
			}
			if time.Since(t0) > 30*time.Second {
				b.Fatalf("%v never arrived at BIRD", p)
			}
			time.Sleep(time.Millisecond)
		}
		lat += time.Since(t0)
	}
	b.StopTimer()
	b.ReportMetric(float64(lat.Microseconds())/1000/float64(b.N), "ms/new-prefix")
	if got, _ := br.proto(); got.Imported != 3000+b.N {
		b.Errorf("BIRD has %d routes, want %d", got.Imported, 3000+b.N)
	}
}

func containsPrefix(birdOut string, p netip.Prefix) bool {
	_, ok := parseBirdRoutes(birdOut)[p]
	return ok
}
