// Package server assembles one aliasnet server: store, control plane and
// the API dialects on one HTTP listener.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/aliasnet/aliasnet/internal/api/gce"
	"github.com/aliasnet/aliasnet/internal/control"
	"github.com/aliasnet/aliasnet/internal/store"
)

// Config is what `aliasnet serve` takes.
type Config struct {
	Listen  string // API listener, default 127.0.0.1:8080
	DataDir string // bbolt file lives here
	Logger  *slog.Logger
	// NoSync disables fsync (benchmarks of non-durable paths only).
	NoSync bool
}

// Server is a running aliasnet.
type Server struct {
	cfg   Config
	log   *slog.Logger
	Store store.Store
	Svc   *control.Service
	http  *http.Server
	ln    net.Listener
}

// New opens the store and loads the control plane, without listening.
func New(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.DataDir == "" {
		cfg.DataDir = "aliasnet-data"
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:8080"
	}
	start := time.Now()
	st, err := store.OpenBolt(filepath.Join(cfg.DataDir, "aliasnet.db"), store.BoltOptions{NoSync: cfg.NoSync})
	if err != nil {
		return nil, err
	}
	svc, err := control.New(ctx, st, control.Options{Logger: cfg.Logger})
	if err != nil {
		st.Close()
		return nil, err
	}
	cfg.Logger.Info("state loaded", "dir", cfg.DataDir, "rev", st.Rev(), "took", time.Since(start).Round(time.Millisecond))
	s := &Server{cfg: cfg, log: cfg.Logger, Store: st, Svc: svc}
	return s, nil
}

// Handler is the HTTP handler of every dialect.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/compute/v1/", gce.New(s.Svc, s.log))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	return mux
}

// Listen binds the API listener; Addr reports the bound address.
func (s *Server) Listen() error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", s.cfg.Listen, err)
	}
	s.ln = ln
	return nil
}

// Addr is the bound API address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Serve answers requests until ctx ends, then shuts down gracefully.
func (s *Server) Serve(ctx context.Context) error {
	s.http = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- s.http.Serve(s.ln) }()
	s.log.Info("aliasnet serving", "api", "http://"+s.Addr()+"/compute/v1/")
	select {
	case err := <-errc:
		s.Store.Close()
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.http.Shutdown(sctx)
	if cerr := s.Store.Close(); cerr != nil && err == nil {
		err = cerr
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// Close releases the store (for servers that never served).
func (s *Server) Close() error { return s.Store.Close() }
