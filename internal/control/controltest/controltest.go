// Package controltest gives tests of the packages around the control
// plane a real control.Service on a throwaway embedded store. Only tests
// import it.
package controltest

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/aliasnet/aliasnet/internal/control"
	"github.com/aliasnet/aliasnet/internal/store"
)

// New opens a bbolt store in a temporary directory (fsync off: tests
// here do not crash the machine) and a quiet service on it; both close
// when the test ends.
func New(t testing.TB) *control.Service {
	t.Helper()
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "aliasnet.db"), store.BoltOptions{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	svc, err := control.New(context.Background(), st, control.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	return svc
}
