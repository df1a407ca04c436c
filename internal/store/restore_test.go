package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

// failingStore is a real store whose Submit fails after a number of
// commits: fault injection for a restore that dies half-way (a crash or a
// lost connection would leave the same keys behind).
type failingStore struct {
	Store
	left int
}

func (f *failingStore) Submit(t Txn) *Commit {
	if f.left--; f.left < 0 {
		c := newCommit()
		c.finish(0, errors.New("injected failure"))
		return c
	}
	return f.Store.Submit(t)
}

// TestRestoreUnfinished: a restore that fails half-way leaves its marker
// with part of the keys; the marker names the snapshot, so running the
// same restore again finishes it (and the store then equals the
// snapshot), while restoring another snapshot over it is refused.
func TestRestoreUnfinished(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			ctx := context.Background()
			var snap, other Snapshot
			for i := range 250 {
				snap.KVs = append(snap.KVs, KV{Key: fmt.Sprintf("projects/p/k%03d", i), Value: []byte(fmt.Sprint(i))})
			}
			other.KVs = snap.KVs[:10]
			s := be.open(t, t.TempDir())
			defer s.Close()
			// Marker + 1 batch of 100 + failure.
			err := Restore(ctx, &failingStore{Store: s, left: 2}, snap, 100)
			if err == nil {
				t.Fatal("restore with an injected failure succeeded")
			}
			m := load(t, s)
			if m[RestoreMarker] != snap.Digest() || len(m) <= 1 || len(m) > len(snap.KVs) {
				t.Fatalf("after the failure: %d keys, marker %q", len(m), m[RestoreMarker])
			}
			if err := Restore(ctx, s, other, 100); !errors.Is(err, ErrNotEmpty) {
				t.Fatalf("restoring another snapshot over an unfinished one: %v", err)
			}
			if err := Restore(ctx, s, snap, 100); err != nil {
				t.Fatalf("finishing the restore: %v", err)
			}
			got, err := s.Load(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got.Digest() != snap.Digest() {
				t.Fatalf("after finishing: %d keys (marker left: %v)", len(got.KVs), load(t, s)[RestoreMarker] != "")
			}
			if err := Restore(ctx, s, snap, 100); !errors.Is(err, ErrNotEmpty) {
				t.Fatalf("restoring into a finished store: %v", err)
			}
		})
	}
}
