package lab

import (
	"fmt"
	"testing"

	"github.com/aliasnet/aliasnet/internal/fabric"
)

// The CPU side of an update at 10,000 aliases (100 instances x 100 /32s).
// Compiling everything, as every change did before deltas: the server
// compiling the project's spec (netpolicy + fabric.BuildSpec), the
// supervisor decoding it and planning the router. One alias changed, as
// it is done now: the server patching its spec and making the delta
// (fabric.Builder), the supervisor applying it (fabric.ApplyDelta) and
// re-planning the changed interface (fabric.Planner). See
// bench/fabric.md. go test ./internal/lab -run X -bench . -cpu 1

func BenchmarkSpecBuild(b *testing.B) {
	w := scaleWorld(b, 100, 100)
	for b.Loop() {
		if _, err := fabric.BuildSpec(proj, fabric.FromState(w.S, proj)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSpecDecode(b *testing.B) {
	w := scaleWorld(b, 100, 100)
	s, _ := w.spec()
	g, err := s.EncodeGob()
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(g)))
	for b.Loop() {
		if _, err := fabric.DecodeGob(g); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPlan(b *testing.B) {
	w := scaleWorld(b, 100, 100)
	s, _ := w.spec()
	for b.Loop() {
		fabric.Plan(s, proj+"/vpc", fabric.PlanOptions{})
	}
}

// aliasFlip changes one of vm0's 100 aliases, alternately.
type aliasFlip struct {
	w  *world
	as [2][]string
	i  int
}

func newAliasFlip(w *world) *aliasFlip {
	f := &aliasFlip{w: w}
	for j := range 100 {
		a := fmt.Sprintf("pods:172.16.%d.%d", j/100, (j%100)*2+1)
		f.as[0] = append(f.as[0], a)
		f.as[1] = append(f.as[1], a)
	}
	f.as[1][0] = "pods:172.31.255.1"
	return f
}

func (f *aliasFlip) flip() {
	f.i++
	f.w.setAliases("vm0", f.as[f.i%2]...)
}

// BenchmarkBuilderAliasChange: the server's work for one alias change
// (read the project, patch the spec, make and encode the delta).
func BenchmarkBuilderAliasChange(b *testing.B) {
	w := scaleWorld(b, 100, 100)
	bl := &fabric.Builder{Project: proj}
	prev, err := bl.Update(fabric.FromState(w.S, proj))
	if err != nil {
		b.Fatal(err)
	}
	f := newAliasFlip(w)
	patched, size := 0, 0
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		f.flip()
		b.StartTimer()
		s, err := bl.Update(fabric.FromState(w.S, proj))
		if err != nil {
			b.Fatal(err)
		}
		d := bl.Delta(prev.ETag)
		enc, err := fabric.EncodeUpdate(&fabric.Update{ETag: s.ETag, Delta: d})
		if err != nil || d == nil {
			b.Fatal(err, d)
		}
		if bl.Last().Patched {
			patched++
		}
		size = len(enc)
		prev = s
	}
	b.ReportMetric(float64(patched)/float64(b.N), "patched/op")
	b.ReportMetric(float64(size), "delta-bytes")
}

// BenchmarkDeltaApply: the supervisor's work for one alias change before
// programming (decode the delta, apply it, re-plan the router).
func BenchmarkDeltaApply(b *testing.B) {
	w := scaleWorld(b, 100, 100)
	bl := &fabric.Builder{Project: proj}
	s0, _ := bl.Update(fabric.FromState(w.S, proj))
	have := s0.Expanded()
	f := newAliasFlip(w)
	// Two deltas, back and forth, so that every iteration applies one to
	// the spec it starts from.
	f.flip()
	s1, _ := bl.Update(fabric.FromState(w.S, proj))
	d01, _ := fabric.EncodeUpdate(&fabric.Update{ETag: s1.ETag, Delta: bl.Delta(s0.ETag)})
	f.flip()
	bl.Update(fabric.FromState(w.S, proj))
	d10, _ := fabric.EncodeUpdate(&fabric.Update{ETag: s0.ETag, Delta: bl.Delta(s1.ETag)})
	pl := &fabric.Planner{Network: proj + "/vpc"}
	pl.Plan(have, nil)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		enc := d01
		if i%2 == 1 {
			enc = d10
		}
		u, err := fabric.DecodeUpdate(enc)
		if err != nil {
			b.Fatal(err)
		}
		next, ch, err := fabric.ApplyDelta(have, u.Delta)
		if err != nil {
			b.Fatal(err)
		}
		if p := pl.Plan(next, ch.Network(proj+"/vpc")); len(p.Routes) != 100*101+4 {
			b.Fatalf("%d routes", len(p.Routes))
		}
		have = next
	}
}
