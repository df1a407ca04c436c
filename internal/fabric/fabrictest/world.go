package fabrictest

import (
	"testing"

	"github.com/aliasnet/aliasnet/internal/model"
)

// World is a model state that tests change directly, without a control
// plane: fixed times, sequential ids.
type World struct {
	T  testing.TB
	S  *model.State
	id uint64
}

// NewWorld returns an empty world.
func NewWorld(t testing.TB) *World { return &World{T: t, S: model.NewState()} }

// Do runs a mutation that must succeed.
func (w *World) Do(m func(tx *model.Txn) error) {
	w.T.Helper()
	if err := w.apply(m); err != nil {
		w.T.Fatal(err)
	}
}

// Try runs a mutation and keeps it only when the model accepts it.
func (w *World) Try(m func(tx *model.Txn) error) bool { return w.apply(m) == nil }

func (w *World) apply(m func(tx *model.Txn) error) error {
	tx := w.S.Begin("2026-01-01T00:00:00Z", func() uint64 { w.id++; return w.id })
	if err := m(tx); err != nil {
		tx.Rollback()
		return err
	}
	return nil
}
