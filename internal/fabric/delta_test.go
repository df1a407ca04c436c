package fabric

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"testing"

	"github.com/aliasnet/aliasnet/internal/fabric/fabrictest"
	"github.com/aliasnet/aliasnet/internal/model"
)

// sameContent compares values as the ETag does (an empty list and none
// are the same).
func sameContent(a, b any) bool { return canonHash(a) == canonHash(b) }

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// churn is a random control-plane history (fabrictest.Churn) over
// testWorld plus a Kubernetes cluster.
type churn struct {
	*fabrictest.Churn
	w *world
}

func newChurn(t *testing.T, seed uint64) *churn {
	w := testWorld(t)
	fabrictest.AddCluster(w.S, w.Do, proj, zone)
	c := &churn{w: w, Churn: &fabrictest.Churn{S: w.S, R: rand.New(rand.NewPCG(seed, 7)), Project: proj, Zone: zone,
		VMs: []string{"vm1", "vm2", "gw"}, Keep: []string{"vm1", "vm2", "gw"},
		AliasBase: netip.MustParseAddr("172.16.2.0"), PrimaryBase: netip.MustParseAddr("10.128.9.0"), Try: w.Try}}
	for i := range 4 {
		c.Create(fmt.Sprintf("x%d", i))
	}
	return c
}

// TestBuilderMatchesFullBuild runs random control-plane histories through
// the server's Builder (patching when it can) and a data plane following
// it with deltas (ApplyDelta, the Planner), and checks after every step
// that both hold exactly what a full rebuild gives: the same spec, ETag
// and router plans, and that the Changes handed to the data plane cover
// every difference.
func TestBuilderMatchesFullBuild(t *testing.T) {
	seeds, steps := 6, 150
	if testing.Short() {
		seeds, steps = 2, 60
	}
	patched, deltas, fulls := 0, 0, 0
	for seed := range uint64(seeds) {
		c := newChurn(t, seed)
		b := &Builder{Project: proj}
		var have *Spec // the data plane's
		planners := map[string]*Planner{}
		plans := map[string]*RouterPlan{}
		var history []string
		for i := range steps {
			// One to three commits between two looks of the server (the
			// server builds when asked, not at every commit).
			for range 1 + c.R.IntN(3) {
				history = append(history, c.Step())
			}
			in := FromState(c.w.S, proj)
			got, err := b.Update(in)
			if err != nil {
				t.Fatal(err)
			}
			if b.Last().Patched {
				patched++
			}
			want, err := BuildSpec(proj, FromState(c.w.S, proj))
			if err != nil {
				t.Fatal(err)
			}
			fail := func(format string, args ...any) {
				t.Helper()
				t.Fatalf("seed %d step %d (%v): %s", seed, i, history[max(0, len(history)-4):], fmt.Sprintf(format, args...))
			}
			if got.ETag != want.ETag {
				fail("builder etag %s, full build %s", got.ETag, want.ETag)
			}
			if !sameContent(got.Expanded(), want) {
				fail("builder spec differs from a full build:\n got %s\nwant %s", jsonOf(t, got.Expanded()), jsonOf(t, want))
			}
			// The data plane looks now and then (deltas then span several
			// specs), and sometimes starts over.
			if c.R.IntN(3) == 0 {
				continue
			}
			var next *Spec
			var ch *Changes
			d := (*Delta)(nil)
			if have != nil && c.R.IntN(20) != 0 {
				d = b.Delta(have.ETag)
			}
			if d == nil {
				fulls++
				u := &Update{ETag: got.ETag, Spec: got}
				enc, err := EncodeUpdate(u)
				if err != nil {
					t.Fatal(err)
				}
				dec, err := DecodeUpdate(enc)
				if err != nil {
					t.Fatal(err)
				}
				next = dec.Spec
			} else {
				deltas++
				enc, err := EncodeUpdate(&Update{ETag: got.ETag, Delta: d})
				if err != nil {
					t.Fatal(err)
				}
				dec, err := DecodeUpdate(enc)
				if err != nil {
					t.Fatal(err)
				}
				next, ch, err = ApplyDelta(have, dec.Delta)
				if err != nil {
					fail("apply delta: %v", err)
				}
				checkChanges(t, fail, have, next, ch)
			}
			if next.ETag != want.ETag || !sameContent(next, want) {
				fail("data plane spec differs from a full build:\n got %s\nwant %s", jsonOf(t, next), jsonOf(t, want))
			}
			for _, nw := range next.Networks {
				pl := planners[nw.Key]
				if pl == nil {
					pl = &Planner{Network: nw.Key, Options: PlanOptions{Metadata: true}}
					planners[nw.Key] = pl
				}
				if nc := ch.Network(nw.Key); nc != nil || plans[nw.Key] == nil {
					plans[nw.Key] = pl.Plan(next, nc)
				}
				if want := Plan(next, nw.Key, PlanOptions{Metadata: true}); !sameContent(plans[nw.Key], want) {
					fail("plan of %s differs from Plan:\n got %s\nwant %s", nw.Key, jsonOf(t, plans[nw.Key]), jsonOf(t, want))
				}
			}
			have = next
		}
	}
	t.Logf("%d builds patched; data plane: %d deltas, %d whole specs", patched, deltas, fulls)
	if patched == 0 || deltas == 0 {
		t.Fatal("the incremental paths were not exercised")
	}
}

// checkChanges: every unit that differs between a and b is in ch.
func checkChanges(t *testing.T, fail func(string, ...any), a, b *Spec, ch *Changes) {
	t.Helper()
	insts := func(s *Spec) map[string][32]byte {
		m := map[string][32]byte{}
		for _, in := range s.Instances {
			m[in.Key] = canonHash(in)
		}
		return m
	}
	ia, ib := insts(a), insts(b)
	for k, v := range ib {
		if ia[k] != v && !ch.Instance(k) {
			fail("instance %s changed but not listed", k)
		}
	}
	for k := range ia {
		if _, ok := ib[k]; !ok && !ch.Instance(k) {
			fail("instance %s removed but not listed", k)
		}
	}
	for _, nw := range b.Networks {
		old := a.Network(nw.Key)
		if old != nil && sameContent(old, &nw) {
			continue
		}
		nc := ch.Network(nw.Key)
		if nc == nil {
			fail("network %s changed but not listed", nw.Key)
		}
		if nc.Whole {
			continue
		}
		if headHash(*old) != headHash(nw) || !sameMembers(old, &nw) {
			fail("network %s: more than interfaces changed, listed as interfaces only", nw.Key)
		}
		for i, fi := range nw.Desired.Interfaces {
			if !sameContent(fi, old.Desired.Interfaces[i]) && !nc.Interfaces[fi.ID] {
				fail("network %s: interface %s changed but not listed", nw.Key, fi.ID)
			}
		}
	}
}

// TestBuilderPatchesAliasChanges: an alias change, a status change and a
// node joining are patched, not compiled; the delta of an alias change
// is the one interface.
func TestBuilderPatchesAliasChanges(t *testing.T) {
	c := newChurn(t, 1)
	b := &Builder{Project: proj}
	s0, err := b.Update(FromState(c.w.S, proj))
	if err != nil {
		t.Fatal(err)
	}
	if !c.SetAliases("vm2", []model.AliasSpec{{Prefix: pfx("172.16.3.3/32"), RangeName: "pods"}}) {
		t.Fatal("alias refused")
	}
	s1, _ := b.Update(FromState(c.w.S, proj))
	if !b.Last().Patched || s1.ETag == s0.ETag {
		t.Fatalf("alias change: patched %v, etag %s -> %s", b.Last().Patched, s0.ETag, s1.ETag)
	}
	d := b.Delta(s0.ETag)
	if d == nil || len(d.Instances) != 0 || len(d.Networks) != 1 || d.Networks[0].Network != nil || len(d.Networks[0].Interfaces) != 1 {
		t.Fatalf("delta of one alias change: %s", jsonOf(t, d))
	}
	if got := d.Networks[0].Interfaces[0].Aliases; !slices.Equal(got, []netip.Prefix{pfx("172.16.3.3/32")}) {
		t.Fatalf("delta aliases %v", got)
	}
	c.w.Do(func(tx *model.Txn) error {
		_, err := tx.SetInstanceStatus(proj, zone, "vm1", model.InstanceStopped)
		return err
	})
	b.Update(FromState(c.w.S, proj))
	if !b.Last().Patched {
		t.Fatal("status change compiled, not patched")
	}
	c.w.Do(func(tx *model.Txn) error { _, err := tx.JoinNode(proj, zone, "k", "pool", zone, "x1"); return err })
	s3, _ := b.Update(FromState(c.w.S, proj))
	if !b.Last().Patched {
		t.Fatal("node join compiled, not patched")
	}
	in, _ := s3.Instance(proj, zone, "x1")
	node := c.w.S.NodeOf(proj, zone, "x1")
	if node == nil || in.NICs[0].PodRange != node.PodRange {
		t.Fatalf("pod range of x1: %v, node %+v", in.NICs[0].PodRange, node)
	}
	// Unknown or too old: no delta.
	if b.Delta("nope") != nil {
		t.Fatal("delta from an unknown etag")
	}
	if d := b.Delta(s3.ETag); d == nil || !d.Empty() {
		t.Fatalf("delta from the current etag: %+v", d)
	}
}

// TestLocalFieldsClassified: every field of model.Instance and
// model.Interface is either compared by sameInstance / sameInterface or
// listed as local or ignored, and changing it has that effect. A new
// model field fails here until it is classified.
func TestLocalFieldsClassified(t *testing.T) {
	check := func(typ reflect.Type, local, ignored []string, same func(a, b reflect.Value) bool) {
		for i := range typ.NumField() {
			f := typ.Field(i)
			a := reflect.New(typ)
			b := reflect.New(typ)
			fv := b.Elem().Field(i)
			switch fv.Kind() {
			case reflect.String:
				fv.SetString("x")
			case reflect.Bool:
				fv.SetBool(true)
			case reflect.Int, reflect.Int64:
				fv.SetInt(3)
			case reflect.Uint64:
				fv.SetUint(3)
			case reflect.Slice:
				fv.Set(reflect.MakeSlice(f.Type, 1, 1))
				if f.Type.Elem().Kind() == reflect.String {
					fv.Index(0).SetString("x")
				}
				if f.Type.Elem() == reflect.TypeFor[byte]() {
					fv.Index(0).Set(reflect.ValueOf(byte('x')))
				}
			case reflect.Pointer:
				fv.Set(reflect.New(f.Type.Elem()))
			case reflect.Struct:
				if f.Type == reflect.TypeFor[netip.Addr]() {
					fv.Set(reflect.ValueOf(netip.MustParseAddr("10.0.0.1")))
					break
				}
				t.Errorf("%s.%s: no test value for %s", typ.Name(), f.Name, f.Type)
				continue
			default:
				t.Errorf("%s.%s: no test value for %s", typ.Name(), f.Name, f.Type)
				continue
			}
			isLocal, isIgnored := slices.Contains(local, f.Name), slices.Contains(ignored, f.Name)
			got := same(a, b)
			switch {
			case (isLocal || isIgnored) && !got:
				t.Errorf("%s.%s is listed as local or ignored but the comparison sees it", typ.Name(), f.Name)
			case !isLocal && !isIgnored && got:
				t.Errorf("%s.%s is neither compared nor classified: add it to the comparison or to a list in builder.go", typ.Name(), f.Name)
			}
		}
	}
	check(reflect.TypeFor[model.Instance](), instanceLocalFields, instanceIgnoredFields, func(a, b reflect.Value) bool {
		return sameInstance(a.Interface().(*model.Instance), b.Interface().(*model.Instance))
	})
	check(reflect.TypeFor[model.Interface](), interfaceLocalFields, interfaceIgnoredFields, func(a, b reflect.Value) bool {
		return sameInterface(a.Interface().(*model.Interface), b.Interface().(*model.Interface))
	})
}

func TestPatchSorted(t *testing.T) {
	cmpInt := func(a, b int) int { return a - b }
	same := func(a, b int) bool { return true }
	for _, c := range []struct {
		rs, del, add, want []int
	}{
		{[]int{1, 3, 5}, nil, nil, []int{1, 3, 5}},
		{[]int{1, 3, 5}, []int{1, 5}, nil, []int{3}},
		{[]int{1, 3, 5}, []int{3}, []int{3}, []int{1, 3, 5}},
		{[]int{1, 3, 5}, []int{4}, []int{0, 6}, []int{0, 1, 3, 5, 6}},
		{[]int{1, 3, 5}, []int{1, 3, 5}, []int{2, 4}, []int{2, 4}},
		{nil, nil, []int{2, 4}, []int{2, 4}},
		{[]int{1, 3, 5}, []int{3, 3}, nil, []int{1, 5}},
	} {
		if got := patchSorted(c.rs, c.del, c.add, cmpInt, same); !slices.Equal(got, c.want) {
			t.Errorf("patchSorted(%v, -%v, +%v) = %v, want %v", c.rs, c.del, c.add, got, c.want)
		}
	}
	// Entries of equal order are told apart by same.
	type kv struct{ k, v int }
	rs := []kv{{1, 1}, {2, 1}, {2, 2}, {3, 1}}
	got := patchSorted(rs, []kv{{2, 2}}, nil, func(a, b kv) int { return a.k - b.k }, func(a, b kv) bool { return a == b })
	if !slices.Equal(got, []kv{{1, 1}, {2, 1}, {3, 1}}) {
		t.Errorf("got %v", got)
	}
}
