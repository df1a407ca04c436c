package aliasnet

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/aliasnet/aliasnet/internal/control"
	"github.com/aliasnet/aliasnet/internal/control/controltest"
	"github.com/aliasnet/aliasnet/internal/fabric"
	"github.com/aliasnet/aliasnet/internal/model"
)

const specZone = "us-central1-a"

type specFixture struct {
	t   *testing.T
	svc *control.Service
	srv *httptest.Server
}

func newSpecFixture(t *testing.T) *specFixture {
	svc := controltest.New(t)
	mux := http.NewServeMux()
	mux.Handle(FabricSpecPattern, FabricSpecHandler(svc))
	f := &specFixture{t: t, svc: svc, srv: httptest.NewServer(mux)}
	t.Cleanup(f.srv.Close)
	pfx := netip.MustParsePrefix
	f.do(func(tx *model.Txn) error {
		if _, err := tx.CreateNetwork(model.Network{Project: "p", Name: "vpc"}); err != nil {
			return err
		}
		_, err := tx.CreateSubnet(model.Subnet{Project: "p", Region: "us-central1", Name: "s", Network: "vpc",
			Range: pfx("10.0.0.0/16"), Secondary: []model.SecondaryRange{{Name: "pods", Range: pfx("10.1.0.0/16")}}})
		return err
	})
	for i := range 8 {
		f.do(func(tx *model.Txn) error {
			_, _, err := tx.CreateInstance(model.CreateInstanceReq{Instance: model.Instance{Project: "p", Zone: specZone, Name: fmt.Sprintf("vm%d", i)},
				NICs: []model.NICSpec{{Subnet: "s"}}})
			return err
		})
	}
	return f
}

func (f *specFixture) do(m func(tx *model.Txn) error) error {
	_, err := f.svc.Do(context.Background(), control.Op{Project: "p", Scope: "zones/" + specZone, Type: "test"},
		func(tx *model.Txn) (uint64, any, error) { return 0, nil, m(tx) })
	return err
}

// get asks the endpoint for an update (delta=1) after etag.
func (f *specFixture) get(etag string, gob bool, timeout int) (*fabric.Update, string) {
	f.t.Helper()
	u := f.srv.URL + "/aliasnet/v1/projects/p/fabricSpec?delta=1"
	if etag != "" {
		u += fmt.Sprintf("&lastEtag=%s&timeoutSec=%d", etag, timeout)
	}
	req, _ := http.NewRequest("GET", u, nil)
	if gob {
		req.Header.Set("Accept", fabric.UpdateGobContentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Error(err)
		return nil, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		f.t.Errorf("HTTP %d: %s", resp.StatusCode, b)
		return nil, ""
	}
	var up *fabric.Update
	if gob {
		if up, err = fabric.DecodeUpdate(b); err != nil {
			f.t.Error(err)
			return nil, ""
		}
	} else {
		up = &fabric.Update{}
		if err := json.Unmarshal(b, up); err != nil {
			f.t.Error(err)
			return nil, ""
		}
	}
	if resp.Header.Get("ETag") != up.ETag {
		f.t.Errorf("ETag header %s, update %s", resp.Header.Get("ETag"), up.ETag)
	}
	return up, resp.Header.Get("Content-Type")
}

func (f *specFixture) want() *fabric.Spec {
	var in fabric.Input
	f.svc.Read(func(st *model.State) { in = fabric.FromState(st, "p") })
	s, err := fabric.BuildSpec("p", in)
	if err != nil {
		f.t.Fatal(err)
	}
	return s
}

// TestFabricSpecDeltasNoLostUpdate: a follower long-polling for deltas
// while commits arrive back to back (alias changes mostly, firewall rules
// now and then) ends on exactly the spec a full build of the final state
// gives, having applied deltas (each checked against its ETag) rather than
// whole specs.
func TestFabricSpecDeltasNoLostUpdate(t *testing.T) {
	f := newSpecFixture(t)
	var mu sync.Mutex
	var have *fabric.Spec
	deltas, wholes := 0, 0
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			mu.Lock()
			etag := ""
			if have != nil {
				etag = have.ETag
			}
			mu.Unlock()
			up, _ := f.get(etag, true, 2)
			if up == nil {
				return
			}
			mu.Lock()
			switch {
			case up.Spec != nil:
				have = up.Spec
				wholes++
			case up.Delta.Empty() && up.Delta.To == etag:
			default:
				next, _, err := fabric.ApplyDelta(have, up.Delta)
				if err != nil {
					t.Errorf("apply: %v", err)
					mu.Unlock()
					return
				}
				have = next
				deltas++
			}
			mu.Unlock()
		}
	}()
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 300 {
		if i%4 == 0 {
			// Bursts of commits: some land while the follower waits,
			// some between its requests.
			time.Sleep(time.Duration(r.IntN(3)) * time.Millisecond)
		}
		vm := fmt.Sprintf("vm%d", r.IntN(8))
		if i%25 == 24 {
			f.do(func(tx *model.Txn) error {
				_, err := tx.CreateFirewall(model.Firewall{Project: "p", Name: fmt.Sprintf("fw%d", i), Network: "vpc", Direction: model.Ingress,
					Priority: 1000, Allowed: []model.FirewallProtocol{{Protocol: "tcp"}}, SourceRanges: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}})
				return err
			})
			continue
		}
		a := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 1, byte(r.IntN(4)), byte(r.IntN(256))}), 32)
		f.do(func(tx *model.Txn) error {
			st := tx.State()
			ifc := st.Interface("p", st.Instance("p", specZone, vm).NICs[0])
			_, err := tx.UpdateAliases("p", specZone, vm, "nic0", ifc.Fingerprint, []model.AliasSpec{{Prefix: a, RangeName: "pods"}})
			return err
		})
	}
	want := f.want()
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		got := have
		mu.Unlock()
		if got != nil && got.ETag == want.ETag {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the follower did not reach the final spec %s", want.ETag)
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(stop)
	<-done
	t.Logf("follower: %d deltas, %d whole specs", deltas, wholes)
	if wholes != 1 || deltas < 10 {
		t.Errorf("%d whole specs, %d deltas: want 1 whole spec then deltas", wholes, deltas)
	}
	in, _ := have.Instance("p", specZone, "vm3")
	wantIn, _ := want.Instance("p", specZone, "vm3")
	if fmt.Sprint(in.NICs[0].Aliases) != fmt.Sprint(wantIn.NICs[0].Aliases) {
		t.Errorf("vm3 aliases %v, want %v", in.NICs[0].Aliases, wantIn.NICs[0].Aliases)
	}
}

// TestFabricSpecDeltaForms: the whole spec first and for an unknown etag,
// a delta otherwise, in gob and JSON; a long-poll without change answers
// an empty delta.
func TestFabricSpecDeltaForms(t *testing.T) {
	f := newSpecFixture(t)
	up, ct := f.get("", true, 0)
	if up.Spec == nil || up.Delta != nil || ct != fabric.UpdateGobContentType || up.Spec.ETag != f.want().ETag {
		t.Fatalf("first fetch: %+v %s", up, ct)
	}
	have := up.Spec
	if up, _ := f.get("unknown", true, 1); up.Spec == nil || up.Spec.ETag != have.ETag {
		t.Fatalf("unknown etag: %+v", up)
	}
	start := time.Now()
	if up, _ := f.get(have.ETag, true, 1); up.Delta == nil || !up.Delta.Empty() || up.ETag != have.ETag || time.Since(start) < 900*time.Millisecond {
		t.Fatalf("no change: %+v after %v", up, time.Since(start))
	}
	go func() {
		time.Sleep(100 * time.Millisecond)
		f.do(func(tx *model.Txn) error {
			st := tx.State()
			ifc := st.Interface("p", st.Instance("p", specZone, "vm1").NICs[0])
			_, err := tx.UpdateAliases("p", specZone, "vm1", "nic0", ifc.Fingerprint, []model.AliasSpec{{Prefix: netip.MustParsePrefix("10.1.9.0/24"), RangeName: "pods"}})
			return err
		})
	}()
	up, _ = f.get(have.ETag, false, 10)
	if up.Delta == nil || len(up.Delta.Networks) != 1 || len(up.Delta.Networks[0].Interfaces) != 1 || up.Delta.From != have.ETag {
		t.Fatalf("JSON delta: %+v", up)
	}
	next, ch, err := fabric.ApplyDelta(have, up.Delta)
	if err != nil || next.ETag != f.want().ETag || !ch.Instance("p/"+specZone+"/vm1") || ch.Instance("p/"+specZone+"/vm2") {
		t.Fatalf("apply: %v, %+v", err, ch)
	}
	in, _ := next.Instance("p", specZone, "vm1")
	if fmt.Sprint(in.NICs[0].Aliases) != "[10.1.9.0/24]" {
		t.Fatalf("vm1 aliases %v", in.NICs[0].Aliases)
	}
}
