package lab

import (
	"testing"

	"github.com/aliasnet/aliasnet/internal/fabric"
	"github.com/aliasnet/aliasnet/internal/netpolicy"
)

// The CPU side of an update at 10,000 aliases (100 instances x 100 /32s):
// the server compiling the project's spec (netpolicy + fabric.BuildSpec,
// gob encoding for the ETag), the supervisor decoding it and planning the
// router. See bench/fabric.md. go test ./internal/lab -run X -bench . -cpu 1

func BenchmarkSpecBuild(b *testing.B) {
	w := scaleWorld(b, 100, 100)
	for b.Loop() {
		if _, err := fabric.BuildSpec(proj, netpolicy.FromState(w.s, proj)); err != nil {
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
