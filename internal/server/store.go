package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"

	"github.com/aliasnet/aliasnet/internal/store"
)

// openStore opens the store the configuration names.
func openStore(ctx context.Context, cfg Config) (store.Store, error) {
	switch cfg.Store {
	case "", "bbolt":
		return store.OpenBolt(filepath.Join(cfg.DataDir, "aliasnet.db"), store.BoltOptions{NoSync: cfg.NoSync})
	case "etcd":
		st, err := store.OpenEtcd(ctx, cfg.Etcd)
		if err != nil {
			return nil, err
		}
		cfg.Logger.Info("etcd store", "endpoints", cfg.Etcd.Endpoints, "prefix", st.Prefix())
		return st, nil
	}
	return nil, fmt.Errorf("unknown store %q (bbolt or etcd)", cfg.Store)
}

// replicaStatus reports this server's replication state:
// GET /aliasnet/v1/replica.
func (s *Server) replicaStatus(w http.ResponseWriter, r *http.Request) {
	type routing struct {
		Committer   string `json:"committer"`   // URL of the elected committer
		IsCommitter bool   `json:"isCommitter"` // this replica is it
		Relayed     int64  `json:"relayed"`     // mutations relayed to it
		Fallbacks   int64  `json:"fallbacks"`   // relays served here instead
		WaitMicros  int64  `json:"waitMicros"`  // relayed replies waiting for this replica to apply them
	}
	var rt *routing
	if s.rt != nil {
		rt = &routing{Relayed: s.rt.relayed.Load(), Fallbacks: s.rt.fallbacks.Load(), WaitMicros: s.rt.waitMicros.Load()}
		rt.Committer, rt.IsCommitter = s.rt.Committer()
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(struct {
		Store      string   `json:"store"`
		Replicated bool     `json:"replicated"`
		Rev        int64    `json:"rev"`
		Stats      any      `json:"stats"`
		Routing    *routing `json:"routing,omitempty"`
	}{Store: storeName(s.cfg.Store), Replicated: s.Svc.Replicated(), Rev: s.Store.Rev(), Stats: s.Svc.ReplicaStats(), Routing: rt})
}

func storeName(s string) string {
	if s == "" {
		return "bbolt"
	}
	return s
}

// storeSnapshot streams the whole store in the snapshot file format
// (aliasnet store snapshot --server): the backup of a running server,
// whichever its store.
func (s *Server) storeSnapshot(w http.ResponseWriter, r *http.Request) {
	snap, err := s.Store.Load(r.Context())
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	if err := store.WriteSnapshot(w, snap); err != nil {
		s.log.Warn("snapshot download failed", "err", err)
	}
}
