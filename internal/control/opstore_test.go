package control

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/aliasnet/aliasnet/internal/model"
)

func TestOpStore(t *testing.T) {
	m := newOpStore()
	at := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	named := &Operation{Project: "p", Scope: "global", Name: opName(at, 0xabc), Inserted: at.Format(opTimeLayout)}
	odd := &Operation{Project: "p", Scope: "zones/z", Name: "imported-7", Inserted: at.Add(time.Hour).Format(opTimeLayout)}
	b, _ := json.Marshal(odd)
	m.put(named.Key(), named)
	m.putRaw(odd.Key(), b)
	m.putRaw("projects/p/global/operations/corrupt", []byte("{"))
	if got := m.get(odd.Key()); got == nil || got.Name != "imported-7" || got.Scope != "zones/z" {
		t.Fatalf("raw operation decoded as %+v", got)
	}
	if m.get("projects/p/global/operations/corrupt") != nil || m.get("missing") != nil {
		t.Error("a corrupt or missing record must read as absent")
	}
	for _, tc := range []struct {
		key  string
		want int64
	}{
		{named.Key(), at.UnixMilli()},               // from the name
		{odd.Key(), at.Add(time.Hour).UnixMilli()},  // from the record
		{"projects/p/global/operations/corrupt", 0}, // unknown: oldest
	} {
		if got := m.insertedMs(tc.key); got != tc.want {
			t.Errorf("insertedMs(%s) = %d, want %d", tc.key, got, tc.want)
		}
	}
	m.del(named.Key())
	m.del(odd.Key())
	if m.has(named.Key()) || m.has(odd.Key()) || !m.has("projects/p/global/operations/corrupt") {
		t.Error("del")
	}
}

// TestOpStoredForm: an operation survives its stored form exactly, in
// every shape (standard or imported name, ended later, request id with
// hash, error, result), the form leaves out what the key says, and
// records in the full form written before it still read the same.
func TestOpStoredForm(t *testing.T) {
	at := time.Date(2026, 11, 25, 12, 0, 0, 123e6, time.UTC)
	stamp := at.Format(opTimeLayout)
	base := Operation{Project: "p1", Scope: "zones/us-central1-a", Type: "updateNetworkInterface",
		Target: "projects/p1/zones/us-central1-a/instances/vm1", TargetID: 42, ID: 0xce991cf510128974,
		Name: opName(at, 0xce991cf510128974), Inserted: stamp, Ended: stamp, RequestHash: "aa32adb415858560fc886542"}
	with := func(f func(o *Operation)) Operation { o := base; f(&o); return o }
	for _, tc := range []struct {
		name     string
		op       Operation
		want     Operation // after a round trip
		wantOmit []string  // JSON fields the stored form must not hold
	}{
		{"standard", base, with(func(o *Operation) { o.RequestHash = "" }),
			[]string{"project", "scope", "name", "id", "inserted", "ended", "requestHash"}},
		{"request id keeps its hash", with(func(o *Operation) { o.RequestID = "r-1" }), with(func(o *Operation) { o.RequestID = "r-1" }),
			[]string{"project", "name", "id"}},
		{"ended later", with(func(o *Operation) { o.Ended = at.Add(time.Second).Format(opTimeLayout) }),
			with(func(o *Operation) { o.Ended = at.Add(time.Second).Format(opTimeLayout); o.RequestHash = "" }), []string{"inserted"}},
		{"imported name", with(func(o *Operation) { o.Name = "imported-7" }),
			with(func(o *Operation) { o.Name = "imported-7"; o.RequestHash = "" }), []string{"project", "name"}},
		{"name not matching id", with(func(o *Operation) { o.ID = 7 }),
			with(func(o *Operation) { o.ID = 7; o.RequestHash = "" }), []string{"name"}},
		{"global, error and result", with(func(o *Operation) {
			o.Scope = "global"
			o.Error = &OpError{Code: model.InUse, Message: "in use", Field: "f"}
			o.Result = json.RawMessage(`{"x":1}`)
		}), with(func(o *Operation) {
			o.Scope = "global"
			o.Error = &OpError{Code: model.InUse, Message: "in use", Field: "f"}
			o.Result = json.RawMessage(`{"x":1}`)
			o.RequestHash = ""
		}), []string{"scope"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := encodeOp(&tc.op)
			if err != nil {
				t.Fatal(err)
			}
			var fields map[string]json.RawMessage
			if err := json.Unmarshal(b, &fields); err != nil {
				t.Fatal(err)
			}
			for _, f := range tc.wantOmit {
				if _, ok := fields[f]; ok {
					t.Errorf("stored form %s holds %q", b, f)
				}
			}
			got, err := decodeOp(tc.op.Key(), b)
			if err != nil {
				t.Fatal(err)
			}
			gb, _ := json.Marshal(got)
			wb, _ := json.Marshal(&tc.want)
			if string(gb) != string(wb) {
				t.Errorf("round trip\n got %s\nwant %s\n(stored %s)", gb, wb, b)
			}
			full, _ := json.Marshal(&tc.op)
			old, err := decodeOp(tc.op.Key(), full)
			if ob, _ := json.Marshal(old); err != nil || string(ob) != string(full) {
				t.Errorf("full form read back as %s, %v; want %s", ob, err, full)
			}
			if len(b) >= len(full) && tc.name == "standard" {
				t.Errorf("stored form %d bytes, full %d", len(b), len(full))
			}
		})
	}
}
