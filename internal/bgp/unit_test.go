package bgp

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"

	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
)

func TestStartValidation(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"no ASN", Config{RouterID: lo4, ListenPort: -1}},
		{"no router id", Config{ASN: 1, ListenPort: -1}},
		{"IPv6 router id", Config{ASN: 1, RouterID: lo6, ListenPort: -1}},
		{"listening without address", Config{ASN: 1, RouterID: lo4, ListenPort: 1179}},
		{"port 179 without address", Config{ASN: 1, RouterID: lo4}},
		{"bad port", Config{ASN: 1, RouterID: lo4, ListenPort: -2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if s, err := Start(ctx, tc.cfg, nil); err == nil {
				s.Stop()
				t.Fatal("want error")
			}
		})
	}
}

func TestStartPortInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	s, err := Start(context.Background(), Config{ASN: 1, RouterID: lo4, ListenAddr: lo4, ListenPort: int32(port)}, nil)
	if err == nil {
		s.Stop()
		t.Fatal("want error for a port in use")
	}
}

func TestReconfigValidation(t *testing.T) {
	s, err := Start(context.Background(), Config{ASN: 65000, RouterID: lo4, ListenPort: -1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	for _, tc := range []struct {
		name  string
		peers []Peer
	}{
		{"no address", []Peer{{ASN: 1}}},
		{"no ASN", []Peer{{Address: birdAddr}}},
		{"duplicate", []Peer{{Address: birdAddr, ASN: 1}, {Address: birdAddr, ASN: 2}}},
		{"local address family", []Peer{{Address: birdAddr, ASN: 1, LocalAddress: lo6}}},
		{"IPv6NextHop not IPv6", []Peer{{Address: birdAddr, ASN: 1, IPv6NextHop: lo4}}},
		{"IPv4NextHop not IPv4", []Peer{{Address: lo6, ASN: 1, IPv4NextHop: lo6}}},
	} {
		t.Run("peers "+tc.name, func(t *testing.T) {
			if err := s.SetPeers(tc.peers); err == nil {
				t.Fatal("want error")
			}
		})
	}
	for _, tc := range []struct {
		name   string
		routes []Route
	}{
		{"invalid prefix", []Route{{}}},
		{"next hop family", []Route{{Prefix: pfx("10.0.0.0/8"), NextHop: lo6}}},
		{"conflicting duplicate", []Route{{Prefix: pfx("10.0.0.0/8"), MED: 1}, {Prefix: pfx("10.0.0.0/8"), MED: 2}}},
	} {
		t.Run("routes "+tc.name, func(t *testing.T) {
			if err := s.SetAdvertised(tc.routes); err == nil {
				t.Fatal("want error")
			}
		})
	}
	// Identical duplicates and host bits are fine (canonicalized).
	if err := s.SetAdvertised([]Route{route("10.0.0.0/8", 1), route("10.0.0.0/8", 1), {Prefix: netip.MustParsePrefix("10.1.2.3/16")}}); err != nil {
		t.Fatal(err)
	}
	st, err := s.Status()
	if err != nil || len(st) != 0 {
		t.Fatalf("Status() = %v, %v", st, err)
	}
	if l := s.Learned(); len(l) != 0 {
		t.Fatalf("Learned() = %v", l)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if err := s.SetPeers(nil); err == nil {
		t.Fatal("SetPeers after Stop: want error")
	}
	if _, err := s.Status(); err == nil {
		t.Fatal("Status after Stop: want error")
	}
}

func TestSlogAdapterQuiet(t *testing.T) {
	var buf bytes.Buffer
	a := slogAdapter{slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	a.Info("Peer Up", gobgplog.Fields{"Key": "127.0.0.2"})
	a.Debug("sent update", nil)
	if buf.Len() != 0 {
		t.Errorf("gobgp Info/Debug leaked at slog Info: %s", buf.String())
	}
	a.Warn("bad thing", gobgplog.Fields{"Key": "127.0.0.2", "Err": "x"})
	a.Fatal("fatal thing", nil) // must not exit
	out := buf.String()
	if !strings.Contains(out, `level=WARN msg="gobgp: bad thing" Err=x Key=127.0.0.2`) || !strings.Contains(out, "level=ERROR") {
		t.Errorf("unexpected output: %s", out)
	}
	if a.GetLevel() != gobgplog.WarnLevel {
		t.Errorf("GetLevel = %v, want Warn", a.GetLevel())
	}
	d := slogAdapter{slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: levelTrace}))}
	if d.GetLevel() != gobgplog.DebugLevel {
		t.Errorf("GetLevel = %v, want Debug", d.GetLevel())
	}
	defer func() {
		if recover() == nil {
			t.Error("Panic did not panic")
		}
	}()
	a.Panic("bug", nil)
}
