package control

import (
	"encoding/json"
	"testing"
	"time"
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
