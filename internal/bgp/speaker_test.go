package bgp

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

const deadline = 10 * time.Second

var (
	lo4 = netip.MustParseAddr("127.0.0.1")
	lo6 = netip.MustParseAddr("::1")
)

func testLogger(t testing.TB) *slog.Logger {
	level := slog.LevelInfo
	if os.Getenv("BGP_TEST_DEBUG") != "" {
		level = levelTrace
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: level}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p[:len(p)-1]))
	return len(p), nil
}

func startSpeaker(t testing.TB, port int) *Speaker {
	t.Helper()
	s, err := Start(ctxT(t), Config{ASN: speakASN, RouterID: lo4, ListenAddr: lo4, ListenPort: int32(port)}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Error(err)
		}
	})
	return s
}

func peerStatus(t testing.TB, s *Speaker, addr netip.Addr) (PeerStatus, bool) {
	t.Helper()
	st, err := s.Status()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range st {
		if p.Address == addr {
			return p, true
		}
	}
	return PeerStatus{}, false
}

func waitEstablished(t testing.TB, s *Speaker, b *bird) {
	t.Helper()
	waitFor(t, deadline, "session Established on both sides", func() (bool, string) {
		ps, _ := peerStatus(t, s, birdAddr)
		bp, raw := b.proto()
		return ps.State == "ESTABLISHED" && bp.State == "Established", fmt.Sprintf("speaker: %+v\nbird: %s", ps, raw)
	})
}

// waitBirdRoutes waits until BIRD has exactly want from the speaker.
func waitBirdRoutes(t testing.TB, b *bird, want map[netip.Prefix]int64) {
	t.Helper()
	waitFor(t, deadline, fmt.Sprintf("BIRD to have exactly %v", want), func() (bool, string) {
		got, raw := b.routes()
		if len(got) != len(want) {
			return false, raw
		}
		for p, med := range want {
			r, ok := got[p]
			if !ok || r.MED != med {
				return false, raw
			}
		}
		return true, raw
	})
}

func route(p string, med uint32) Route { return Route{Prefix: netip.MustParsePrefix(p), MED: med} }

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func learnedHas(rs []Route, want ...Route) bool {
	for _, w := range want {
		if !slices.Contains(rs, w) {
			return false
		}
	}
	return true
}

// TestSpeakerWithBIRD is the end-to-end scenario against a real BIRD 2:
// establish, announce IPv4+IPv6 with MED, reconcile without reset, learn
// BIRD's routes (Learned and WatchLearned), change MED softly, tear down.
func TestSpeakerWithBIRD(t *testing.T) {
	requireBird(t)
	kernelBefore := kernelRoutes(t)
	goPort, birdPort := freePort(t), freePort(t)
	b := startBird(t, birdOpts{Port: birdPort, PeerPort: goPort, IPv6: true})
	s := startSpeaker(t, goPort)

	watchCtx, cancelWatch := context.WithCancel(context.Background())
	defer cancelWatch()
	watch := s.WatchLearned(watchCtx)
	select {
	case got := <-watch:
		if len(got) != 0 {
			t.Fatalf("initial learned set = %v, want empty", got)
		}
	case <-time.After(deadline):
		t.Fatal("WatchLearned sent no initial set")
	}

	// A subnet with a primary and a secondary range, and an IPv6 range; one
	// route carries its own MED (added to the peer's).
	adv := []Route{route("10.128.0.0/16", 0), route("172.16.0.0/20", 5), route("2001:db8:a::/64", 0)}
	if err := s.SetAdvertised(adv); err != nil {
		t.Fatal(err)
	}
	peer := Peer{Address: birdAddr, Port: uint16(birdPort), ASN: birdASN, LocalAddress: lo4, Multihop: 2, MED: 100, IPv6NextHop: lo6}
	if err := s.SetPeers([]Peer{peer}); err != nil {
		t.Fatal(err)
	}
	waitEstablished(t, s, b)

	t.Run("announced with MED", func(t *testing.T) {
		waitBirdRoutes(t, b, map[netip.Prefix]int64{pfx("10.128.0.0/16"): 100, pfx("172.16.0.0/20"): 105, pfx("2001:db8:a::/64"): 100})
		got, _ := b.routes()
		if nh := got[pfx("10.128.0.0/16")].NextHop; nh != "127.0.0.1" {
			t.Errorf("IPv4 next hop at BIRD = %q, want 127.0.0.1 (next-hop-self)", nh)
		}
		if nh := got[pfx("2001:db8:a::/64")].NextHop; nh != "::1" {
			t.Errorf("IPv6 next hop at BIRD = %q, want ::1 (Peer.IPv6NextHop)", nh)
		}
		ps, _ := peerStatus(t, s, birdAddr)
		if want := []netip.Prefix{pfx("10.128.0.0/16"), pfx("172.16.0.0/20"), pfx("2001:db8:a::/64")}; !slices.Equal(ps.Advertised, want) {
			t.Errorf("Status().Advertised = %v, want %v", ps.Advertised, want)
		}
	})

	t.Run("learned from BIRD", func(t *testing.T) {
		want := []Route{{Prefix: birdStatic4, NextHop: birdAddr}, {Prefix: birdStatic6, NextHop: lo6}}
		waitFor(t, deadline, "Learned() to have BIRD's static routes", func() (bool, string) {
			l := s.Learned()
			return slices.Equal(l, want), fmt.Sprint(l)
		})
		waitFor(t, deadline, "WatchLearned to deliver BIRD's static routes", func() (bool, string) {
			select {
			case l := <-watch:
				return slices.Equal(l, want), fmt.Sprint(l)
			case <-time.After(deadline):
				return false, "nothing"
			}
		})
		ps, _ := peerStatus(t, s, birdAddr)
		if !learnedHas(ps.Learned, want...) {
			t.Errorf("Status().Learned = %v, want %v", ps.Learned, want)
		}
	})

	t.Run("reconcile without session reset", func(t *testing.T) {
		before, _ := b.proto()
		psBefore, _ := peerStatus(t, s, birdAddr)
		// The secondary range is replaced by another one.
		adv := []Route{route("10.128.0.0/16", 0), route("172.16.16.0/20", 0), route("2001:db8:a::/64", 0)}
		if err := s.SetAdvertised(adv); err != nil {
			t.Fatal(err)
		}
		waitBirdRoutes(t, b, map[netip.Prefix]int64{pfx("10.128.0.0/16"): 100, pfx("172.16.16.0/20"): 100, pfx("2001:db8:a::/64"): 100})
		t.Log("reconciled")
		// MED change on the peer: a soft reset, not a session reset.
		peer.MED = 200
		if err := s.SetPeers([]Peer{peer}); err != nil {
			t.Fatal(err)
		}
		waitBirdRoutes(t, b, map[netip.Prefix]int64{pfx("10.128.0.0/16"): 200, pfx("172.16.16.0/20"): 200, pfx("2001:db8:a::/64"): 200})
		t.Log("med changed")
		// Same peers again: nothing happens.
		if err := s.SetPeers([]Peer{peer}); err != nil {
			t.Fatal(err)
		}
		after, raw := b.proto()
		if after.State != "Established" || sinceAfter(t, after.Since, before.Since) {
			t.Errorf("BIRD session was reset: before %+v, after %+v\n%s", before, after, raw)
		}
		psAfter, _ := peerStatus(t, s, birdAddr)
		if psAfter.State != "ESTABLISHED" || psAfter.Uptime < psBefore.Uptime {
			t.Errorf("speaker session was reset: before %v/%v, after %v/%v", psBefore.State, psBefore.Uptime, psAfter.State, psAfter.Uptime)
		}
	})

	t.Run("BIRD withdraws", func(t *testing.T) {
		b.mustBirdc("disable", "static4")
		want := []Route{{Prefix: birdStatic6, NextHop: lo6}}
		waitFor(t, deadline, "WatchLearned to see the withdraw", func() (bool, string) {
			select {
			case l := <-watch:
				return slices.Equal(l, want), fmt.Sprint(l)
			case <-time.After(deadline):
				return false, "nothing"
			}
		})
		if l := s.Learned(); !slices.Equal(l, want) {
			t.Errorf("Learned() = %v, want %v", l, want)
		}
		b.mustBirdc("enable", "static4")
		waitFor(t, deadline, "Learned() to get BIRD's IPv4 route back", func() (bool, string) {
			l := s.Learned()
			return len(l) == 2, fmt.Sprint(l)
		})
	})

	t.Run("no kernel routes", func(t *testing.T) {
		assertNoNewKernelRoutes(t, kernelBefore)
		s := b.mustBirdc("show", "protocols")
		if slices.Contains(strings.Fields(s), "Kernel") {
			t.Errorf("BIRD runs a kernel protocol:\n%s", s)
		}
	})

	t.Run("peer removed", func(t *testing.T) {
		if err := s.SetPeers(nil); err != nil {
			t.Fatal(err)
		}
		waitFor(t, deadline, "BIRD session down and routes gone", func() (bool, string) {
			p, raw := b.proto()
			return p.State != "Established" && p.Imported == 0, raw
		})
		if st, err := s.Status(); err != nil || len(st) != 0 {
			t.Errorf("Status() = %v, %v; want no peers", st, err)
		}
		waitFor(t, deadline, "Learned() empty", func() (bool, string) {
			l := s.Learned()
			return len(l) == 0, fmt.Sprint(l)
		})
	})

	t.Run("stop closes watchers", func(t *testing.T) {
		if err := s.Stop(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, deadline, "WatchLearned channel closed", func() (bool, string) {
			select {
			case _, ok := <-watch:
				return !ok, "open"
			case <-time.After(deadline):
				return false, "open"
			}
		})
		if err := s.SetAdvertised(nil); err == nil {
			t.Error("SetAdvertised after Stop: want error")
		}
	})
}

// sinceAfter reports whether BIRD's "Since" time a is later than b by more
// than BIRD's own jitter (its printed times vary by a millisecond).
func sinceAfter(t testing.TB, a, b string) bool {
	t.Helper()
	ta, err1 := time.Parse("15:04:05.000", a)
	tb, err2 := time.Parse("15:04:05.000", b)
	if err1 != nil || err2 != nil {
		t.Fatalf("unparsable BIRD times %q, %q", a, b)
	}
	return ta.Sub(tb) > 50*time.Millisecond
}

// TestPassiveSpeaker: the speaker only accepts (Peer.Passive), BIRD connects.
func TestPassiveSpeaker(t *testing.T) {
	requireBird(t)
	goPort, birdPort := freePort(t), freePort(t)
	b := startBird(t, birdOpts{Port: birdPort, PeerPort: goPort})
	s := startSpeaker(t, goPort)
	if err := s.SetAdvertised([]Route{route("10.0.0.0/24", 0)}); err != nil {
		t.Fatal(err)
	}
	peer := Peer{Address: birdAddr, Port: uint16(birdPort), ASN: birdASN, Passive: true}
	if err := s.SetPeers([]Peer{peer}); err != nil {
		t.Fatal(err)
	}
	waitEstablished(t, s, b)
	waitBirdRoutes(t, b, map[netip.Prefix]int64{pfx("10.0.0.0/24"): 0})

	// A transport change re-creates the peer: the session comes back.
	before, _ := b.proto()
	peer.Multihop = 3
	if err := s.SetPeers([]Peer{peer}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, deadline, "session re-established after a transport change", func() (bool, string) {
		ps, _ := peerStatus(t, s, birdAddr)
		p, raw := b.proto()
		return ps.State == "ESTABLISHED" && p.State == "Established" && sinceAfter(t, p.Since, before.Since) && p.Imported == 1, raw
	})
}

// TestActiveOnlySpeaker: ListenPort -1, the speaker connects to a passive BIRD.
func TestActiveOnlySpeaker(t *testing.T) {
	requireBird(t)
	birdPort := freePort(t)
	b := startBird(t, birdOpts{Port: birdPort, PeerPort: freePort(t), Passive: true})
	s := startSpeaker(t, -1)
	if err := s.SetPeers([]Peer{{Address: birdAddr, Port: uint16(birdPort), ASN: birdASN}}); err != nil {
		t.Fatal(err)
	}
	waitEstablished(t, s, b)
	if err := s.SetAdvertised([]Route{route("10.0.0.0/24", 7)}); err != nil {
		t.Fatal(err)
	}
	waitBirdRoutes(t, b, map[netip.Prefix]int64{pfx("10.0.0.0/24"): 7})
	waitFor(t, deadline, "Learned() = BIRD's static4", func() (bool, string) {
		l := s.Learned()
		return slices.Equal(l, []Route{{Prefix: birdStatic4, NextHop: birdAddr}}), fmt.Sprint(l)
	})
}

// TestNoTransit: routes learned from one peer are not re-advertised to
// another (Cloud Router is not a transit router). Two BIRDs: A announces
// 203.0.113.0/24, B must receive only the speaker's own route.
func TestNoTransit(t *testing.T) {
	requireBird(t)
	goPort, portA, portB := freePort(t), freePort(t), freePort(t)
	addrB := netip.MustParseAddr("127.0.0.3")
	a := startBird(t, birdOpts{Port: portA, PeerPort: goPort})
	b := startBird(t, birdOpts{Addr: addrB, ASN: 65003, Port: portB, PeerPort: goPort, NoStatic: true})
	s := startSpeaker(t, goPort)
	if err := s.SetAdvertised([]Route{route("10.0.0.0/24", 0)}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPeers([]Peer{
		{Address: birdAddr, Port: uint16(portA), ASN: birdASN},
		{Address: addrB, Port: uint16(portB), ASN: 65003, MED: 50},
	}); err != nil {
		t.Fatal(err)
	}
	waitEstablished(t, s, a)
	waitFor(t, deadline, "B established", func() (bool, string) {
		ps, _ := peerStatus(t, s, addrB)
		return ps.State == "ESTABLISHED", fmt.Sprint(ps)
	})
	waitFor(t, deadline, "A's route learned", func() (bool, string) {
		l := s.Learned()
		return slices.Equal(l, []Route{{Prefix: birdStatic4, NextHop: birdAddr}}), fmt.Sprint(l)
	})
	waitBirdRoutes(t, a, map[netip.Prefix]int64{pfx("10.0.0.0/24"): 0})
	waitBirdRoutes(t, b, map[netip.Prefix]int64{pfx("10.0.0.0/24"): 50})
	// Barrier instead of a sleep: a route announced after A's route was
	// learned reaches B after anything gobgp would have re-advertised.
	if err := s.SetAdvertised([]Route{route("10.0.0.0/24", 0), route("10.0.1.0/24", 0)}); err != nil {
		t.Fatal(err)
	}
	waitBirdRoutes(t, b, map[netip.Prefix]int64{pfx("10.0.0.0/24"): 50, pfx("10.0.1.0/24"): 50})
	ps, _ := peerStatus(t, s, addrB)
	if !slices.Equal(ps.Advertised, []netip.Prefix{pfx("10.0.0.0/24"), pfx("10.0.1.0/24")}) {
		t.Errorf("Status().Advertised to B = %v", ps.Advertised)
	}
}
