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
	"net/netip"
	"time"

	aliasnetapi "github.com/aliasnet/aliasnet/internal/api/aliasnet"
	"github.com/aliasnet/aliasnet/internal/api/ecs"
	"github.com/aliasnet/aliasnet/internal/api/gce"
	"github.com/aliasnet/aliasnet/internal/api/gke"
	"github.com/aliasnet/aliasnet/internal/control"
	"github.com/aliasnet/aliasnet/internal/metadata"
	"github.com/aliasnet/aliasnet/internal/model"
	"github.com/aliasnet/aliasnet/internal/store"
)

// Config is what `aliasnet serve` takes.
type Config struct {
	Listen  string // API listener, default 127.0.0.1:8080
	DataDir string // bbolt file lives here
	Logger  *slog.Logger
	// NoSync disables fsync (benchmarks of non-durable paths only).
	NoSync bool
	// MetadataListen, when set, serves the instance metadata server
	// (GCE /computeMetadata/v1/ and Alibaba /latest/meta-data/) on its own
	// listener. Instances are told apart by source address: see
	// internal/metadata and docs/guest.md.
	MetadataListen string
	// MetadataTrustedProxies are peers whose X-Forwarded-For names the
	// instance (a proxy in front of the metadata listener).
	MetadataTrustedProxies []netip.Prefix
	// AccessKeys are the AccessKeys the Alibaba RPC dialect (POST / with
	// Action) accepts; each acts for a project. None: every Alibaba
	// request is refused.
	AccessKeys []ecs.AccessKey
	// EIPPools are the public ranges EIPs are allocated from.
	EIPPools []netip.Prefix
	// InstanceTypes is the instance-type table (nil: the shipped one).
	InstanceTypes model.InstanceTypes
	// Cloud Router BGP speakers and internal DNS (routing_dns.go).
	RoutingDNSConfig
	// Store is "bbolt" (default: the embedded store in DataDir) or
	// "etcd" (several replicas share it; see docs/ha.md and store.go).
	Store string
	// Etcd configures the etcd store.
	Etcd store.EtcdOptions
	// RelayWrites (etcd store): relay mutations to the elected committer
	// replica instead of committing them here (forward.go).
	RelayWrites bool
	// AdvertiseURL is the API URL other replicas reach this one at
	// (default: http:// and the bound --listen address, when it names a
	// host).
	AdvertiseURL string
	// OperationRetention and MaxOperations bound the operations kept
	// (0: control's defaults, one hour and 500,000).
	OperationRetention time.Duration
	MaxOperations      int
}

// Server is a running aliasnet.
type Server struct {
	cfg   Config
	log   *slog.Logger
	Store store.Store
	Svc   *control.Service
	http  *http.Server
	ln    net.Listener
	mdLn  net.Listener
	rd    routingDNS // BGP and DNS runtimes (routing_dns.go)
	rt    *router    // relays mutations to the committer; nil: serves all here
	// stopElect leaves the committer election (before the store closes:
	// leaving revokes the lease, handing the role on at once).
	stopElect func()
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
	st, err := openStore(ctx, cfg)
	if err != nil {
		return nil, err
	}
	svc, err := control.New(ctx, st, control.Options{Logger: cfg.Logger,
		Model:              model.Config{InstanceTypes: cfg.InstanceTypes, EIPPools: cfg.EIPPools},
		OperationRetention: cfg.OperationRetention, MaxOperations: cfg.MaxOperations})
	if err != nil {
		st.Close()
		return nil, err
	}
	cfg.Logger.Info("state loaded", "dir", cfg.DataDir, "rev", st.Rev(), "took", time.Since(start).Round(time.Millisecond))
	s := &Server{cfg: cfg, log: cfg.Logger, Store: st, Svc: svc}
	if err := s.initRoutingDNS(); err != nil {
		st.Close()
		return nil, err
	}
	return s, nil
}

// Handler is the HTTP handler of every dialect.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	g := gce.New(s.Svc, s.log)
	mux.Handle("/compute/v1/", g)
	s.mountRoutingDNS(mux, g)
	// aliasnet's own API: effective routes, trace, fabric (netpolicy).
	mux.Handle("/aliasnet/v1/projects/", aliasnetapi.New(s.Svc, s.log))
	// The data plane's input (fabric.Spec), long-polled by `aliasnet lab`.
	mux.Handle(aliasnetapi.FabricSpecPattern, aliasnetapi.FabricSpecHandler(s.Svc))
	// aliasnet-specific: an instance's NICs with their MACs (guest-config).
	mux.Handle(metadata.NICsPattern, metadata.NICsHandler(s.Svc))
	// Alibaba ECS/VPC RPC: POST (or GET) / with Action and Version.
	mux.Handle("/{$}", ecs.New(s.Svc, ecs.Options{Keys: s.cfg.AccessKeys, Logger: s.log}))
	mux.HandleFunc("GET /aliasnet/v1/replica", s.replicaStatus)
	mux.HandleFunc("GET /aliasnet/v1/store/snapshot", s.storeSnapshot)
	// Kubernetes Engine v1 (clusters, node pools, operations), the Service
	// Usage check gcloud makes first, and aliasnet's cluster calls: narrow
	// patterns only (see package gke).
	gk := gke.New(s.Svc, s.log)
	for _, p := range gke.Patterns {
		mux.Handle(p, gk)
	}
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
	if s.cfg.MetadataListen != "" {
		mln, err := net.Listen("tcp", s.cfg.MetadataListen)
		if err != nil {
			ln.Close()
			return fmt.Errorf("listen metadata %s: %w", s.cfg.MetadataListen, err)
		}
		s.mdLn = mln
	}
	if err := s.listenDNS(); err != nil {
		ln.Close()
		if s.mdLn != nil {
			s.mdLn.Close()
		}
		return err
	}
	return nil
}

// Addr is the bound API address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// MetadataAddr is the bound metadata address, "" when not serving it.
func (s *Server) MetadataAddr() string {
	if s.mdLn == nil {
		return ""
	}
	return s.mdLn.Addr().String()
}

// Serve answers requests until ctx ends, then shuts down gracefully.
func (s *Server) Serve(ctx context.Context) error {
	h, err := s.routed(ctx, s.Handler())
	if err != nil {
		return err
	}
	s.http = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 2)
	stopRD := s.startRoutingDNS()
	defer stopRD() // before the store closes: the BGP runtime writes learned routes
	go func() { errc <- s.http.Serve(s.ln) }()
	s.log.Info("aliasnet serving", "api", "http://"+s.Addr()+"/compute/v1/")
	// Long-polls of the metadata server end when serving ends.
	mdCtx, mdCancel := context.WithCancel(context.Background())
	defer mdCancel()
	var md *http.Server
	if s.mdLn != nil {
		md = metadata.NewHTTPServer(metadata.New(s.Svc, metadata.Options{TrustedProxies: s.cfg.MetadataTrustedProxies, Logger: s.log}))
		md.BaseContext = func(net.Listener) context.Context { return mdCtx }
		go func() { errc <- md.Serve(s.mdLn) }()
		s.log.Info("metadata server", "listen", s.MetadataAddr(), "trustedProxies", s.cfg.MetadataTrustedProxies)
	}
	select {
	case err := <-errc:
		mdCancel()
		if md != nil {
			md.Close()
		}
		s.http.Close()
		s.stopElect()
		stopRD()
		s.Svc.Close()
		s.Store.Close()
		return err
	case <-ctx.Done():
	}
	mdCancel()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if md != nil {
		md.Shutdown(sctx)
	}
	err = s.http.Shutdown(sctx)
	s.stopElect()
	stopRD()
	s.Svc.Close()
	if cerr := s.Store.Close(); cerr != nil && err == nil {
		err = cerr
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// routed puts the write router in front of h when this replica relays
// mutations to an elected committer (etcd store, RelayWrites), and starts
// its election, which ends with ctx.
func (s *Server) routed(ctx context.Context, h http.Handler) (http.Handler, error) {
	s.stopElect = func() {}
	et, ok := s.Store.(*store.Etcd)
	if !ok || !s.cfg.RelayWrites {
		return h, nil
	}
	self, err := advertiseURL(s.cfg.AdvertiseURL, s.Addr())
	if err != nil {
		return nil, fmt.Errorf("--advertise-url: %w", err)
	}
	if self == "" {
		s.log.Warn("not relaying writes: the API listens on every address, so other replicas cannot tell which one reaches this replica; set --advertise-url", "listen", s.Addr())
		return h, nil
	}
	s.rt = newRouter(self, et.Prefix(), h, s.Svc, s.Store, s.log)
	ectx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.rt.elect(ectx, et.Client(), electionKey(et.Prefix()))
	}()
	s.stopElect = func() { cancel(); <-done }
	return s.rt, nil
}

// Close releases the store (for servers that never served).
func (s *Server) Close() error {
	s.Svc.Close()
	return s.Store.Close()
}
