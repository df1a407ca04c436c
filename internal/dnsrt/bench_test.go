package dnsrt

import (
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/aliasnet/aliasnet/internal/model"
)

// BenchmarkRebuild10k: the work done after every commit with 10,000
// instances (each with an alias range) and one zone of 1,000 records:
// read the model, build the table, swap it in.
func BenchmarkRebuild10k(b *testing.B) {
	t := b
	svc := newService(t)
	do(t, svc, func(tx *model.Txn) error {
		if _, err := tx.CreateNetwork(model.Network{Project: "p", Name: "a"}); err != nil {
			return err
		}
		_, err := tx.CreateSubnet(model.Subnet{Project: "p", Region: "us-central1", Name: "sa", Network: "a", Range: pfx("10.0.0.0/16"),
			Secondary: []model.SecondaryRange{{Name: "pods", Range: pfx("172.16.0.0/12")}}})
		return err
	})
	for i := range 10000 {
		do(t, svc, func(tx *model.Txn) error {
			_, _, err := tx.CreateInstance(model.CreateInstanceReq{Instance: model.Instance{Project: "p", Zone: "us-central1-a", Name: fmt.Sprintf("vm%d", i)},
				NICs: []model.NICSpec{{Subnet: "sa", Aliases: []model.AliasSpec{{Bits: 28, RangeName: "pods"}}}}})
			return err
		})
	}
	do(t, svc, func(tx *model.Txn) error {
		if _, err := tx.CreateDNSZone(model.DNSZone{Project: "p", Name: "z", DNSName: "z.internal.", Visibility: model.VisibilityPrivate, Networks: []string{"p/a"}}); err != nil {
			return err
		}
		var adds []model.DNSRecordSet
		for i := range 1000 {
			adds = append(adds, model.DNSRecordSet{Name: fmt.Sprintf("n%d.z.internal.", i), Type: "A", TTL: 60, RRDatas: []string{"172.16.0.1"}})
		}
		_, _, err := tx.ChangeRRSets("p", "z", adds, nil)
		return err
	})
	rt := New(svc, Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	b.Run("rebuild", func(b *testing.B) {
		for b.Loop() {
			rt.Rebuild()
		}
	})
	b.Run("snapshot-only", func(b *testing.B) {
		for b.Loop() {
			svc.Read(func(st *model.State) { Snapshot(st) })
		}
	})
}
