package control_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aliasnet/aliasnet/internal/control"
	"github.com/aliasnet/aliasnet/internal/store"
)

// TestRefusesUnfinishedRestore: a server does not start on a store that
// holds part of a restore, and says how to finish it.
func TestRefusesUnfinishedRestore(t *testing.T) {
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "s.db"), store.BoltOptions{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	tx := store.Txn{Puts: []store.KV{{Key: store.RestoreMarker, Value: []byte("0123456789abcdef")}}}
	if _, err := st.Submit(tx).Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, err = control.New(context.Background(), st, control.Options{})
	if !errors.Is(err, store.ErrRestoreUnfinished) || !strings.Contains(err.Error(), "run the same aliasnet store restore or migrate command again") {
		t.Fatalf("control.New on an unfinished restore: %v", err)
	}
}
