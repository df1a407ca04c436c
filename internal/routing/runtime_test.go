package routing

// In-process runtime test against a real BIRD 2 (skipped without bird):
// run it with -race, it exercises the reconcile loop, the learned-routes
// sync and status reads concurrently.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aliasnet/aliasnet/internal/control"
	"github.com/aliasnet/aliasnet/internal/control/controltest"
	"github.com/aliasnet/aliasnet/internal/model"
)

func startBird(t *testing.T, port int) string {
	t.Helper()
	for _, bin := range []string{"bird", "birdc"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not found: install bird2", bin)
		}
	}
	dir, err := os.MkdirTemp("", "bird")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	conf := fmt.Sprintf(`router id 127.0.0.2;
protocol device { }
protocol static s4 { ipv4; route 203.0.113.0/24 blackhole; }
protocol bgp aliasnet {
  local 127.0.0.2 port %d as 65001;
  neighbor 127.0.0.1 port %d as 65000;
  strict bind yes;
  multihop;
  connect delay time 1;
  connect retry time 1;
  ipv4 { import all; export where source = RTS_STATIC; };
}
`, port, port)
	path := filepath.Join(dir, "bird.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "s")
	cmd := exec.Command("bird", "-f", "-c", path, "-s", sock, "-P", filepath.Join(dir, "pid"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	wait(t, "bird up", func() bool {
		out, err := exec.Command("birdc", "-s", sock, "show", "status").CombinedOutput()
		return err == nil && strings.Contains(string(out), "up and running")
	})
	return sock
}

func wait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var routeHead = regexp.MustCompile(`(?m)^([0-9.]+/\d+)\s`)

func birdRoutes(sock string) []string {
	out, _ := exec.Command("birdc", "-s", sock, "show", "route", "protocol", "aliasnet").CombinedOutput()
	var ps []string
	for _, m := range routeHead.FindAllStringSubmatch(string(out), -1) {
		ps = append(ps, m[1])
	}
	slices.Sort(ps)
	return ps
}

func freeBGPPort(t *testing.T) int {
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l2, err := net.Listen("tcp", fmt.Sprintf("127.0.0.2:%d", port))
		l.Close()
		if err == nil {
			l2.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

func TestRuntimeWithBIRD(t *testing.T) {
	port := freeBGPPort(t)
	sock := startBird(t, port)
	svc := controltest.New(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	do := func(m func(tx *model.Txn) error) {
		t.Helper()
		if _, err := svc.Do(context.Background(), control.Op{Project: "p", Scope: "global", Type: "test"}, func(tx *model.Txn) (uint64, any, error) {
			return 0, nil, m(tx)
		}); err != nil {
			t.Fatal(err)
		}
	}
	do(func(tx *model.Txn) error {
		if _, err := tx.CreateNetwork(model.Network{Project: "p", Name: "vpc"}); err != nil {
			return err
		}
		_, err := tx.CreateSubnet(model.Subnet{Project: "p", Region: "us-central1", Name: "s", Network: "vpc", Range: pfx("10.128.0.0/16"),
			Secondary: []model.SecondaryRange{{Name: "c", Range: pfx("172.16.0.0/20")}}})
		return err
	})
	rt, err := New(svc, Config{Listen: netip.AddrPortFrom(ip("127.0.0.1"), uint16(port)), Logger: quiet, Resync: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { rt.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	// Status readers run all along.
	var readers sync.WaitGroup
	stop := make(chan struct{})
	for range 2 {
		readers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				rt.RouterStatus("p", "us-central1", "cr")
				time.Sleep(time.Millisecond)
			}
		})
	}
	defer func() { close(stop); readers.Wait() }()

	router := model.Router{Project: "p", Region: "us-central1", Name: "cr", Network: "vpc", BGP: &model.RouterBGP{ASN: 65000},
		Interfaces: []model.RouterInterface{{Name: "if0", IPRange: pfx("127.0.0.1/8")}},
		Peers:      []model.BGPPeer{{Name: "bird", InterfaceName: "if0", PeerIPAddress: ip("127.0.0.2"), PeerASN: 65001, Priority: 100}}}
	do(func(tx *model.Txn) error { _, err := tx.CreateRouter(router); return err })
	wait(t, "DEFAULT routes at BIRD", func() bool {
		return slices.Equal(birdRoutes(sock), []string{"10.128.0.0/16", "172.16.0.0/20"})
	})
	wait(t, "learned route stored as a dynamic route", func() bool {
		var d *model.DynamicRoutes
		svc.Read(func(st *model.State) { d = st.DynamicRoutesOf("p", "vpc") })
		return d != nil && len(d.Routes) == 1 && d.Routes[0].Dest == pfx("203.0.113.0/24") &&
			d.Routes[0].NextHop == ip("127.0.0.2") && d.Routes[0].Peer == "cr/bird"
	})
	status, ok := rt.RouterStatus("p", "us-central1", "cr")
	if !ok || len(status.Peers) != 1 || !status.Peers[0].Up || status.Peers[0].Name != "bird" || len(status.Peers[0].Advertised) != 2 ||
		status.Peers[0].Advertised[0].MED != 100 || len(status.Learned) != 1 {
		t.Errorf("status: %+v", status)
	}
	// Secondary range added, then CUSTOM with only it.
	do(func(tx *model.Txn) error {
		sn := tx.State().Subnet("p", "us-central1", "s")
		_, err := tx.SetSecondaryRanges("p", "us-central1", "s", sn.Fingerprint,
			append(slices.Clone(sn.Secondary), model.SecondaryRange{Name: "d", Range: pfx("172.17.0.0/20")}))
		return err
	})
	wait(t, "new secondary at BIRD", func() bool {
		return slices.Equal(birdRoutes(sock), []string{"10.128.0.0/16", "172.16.0.0/20", "172.17.0.0/20"})
	})
	router.BGP.Advertisement = model.Advertisement{Mode: model.AdvertiseCustom, Ranges: []model.AdvertisedRange{{Range: pfx("172.16.0.0/20")}}}
	do(func(tx *model.Txn) error { _, err := tx.UpdateRouter(router); return err })
	wait(t, "only the secondary range", func() bool { return slices.Equal(birdRoutes(sock), []string{"172.16.0.0/20"}) })
	// Peer disabled: session closed, learned route gone from the network.
	router.Peers[0].Disabled = true
	do(func(tx *model.Txn) error { _, err := tx.UpdateRouter(router); return err })
	wait(t, "routes withdrawn", func() bool { return len(birdRoutes(sock)) == 0 })
	wait(t, "dynamic routes cleared", func() bool {
		var d *model.DynamicRoutes
		svc.Read(func(st *model.State) { d = st.DynamicRoutesOf("p", "vpc") })
		return d == nil
	})
	do(func(tx *model.Txn) error { return tx.DeleteRouter("p", "us-central1", "cr") })
	wait(t, "router's speakers stopped", func() bool { _, ok := rt.RouterStatus("p", "us-central1", "cr"); return !ok })
}
