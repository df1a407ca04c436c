package cli

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/aliasnet/aliasnet/internal/metadata"
	"github.com/aliasnet/aliasnet/internal/server"
)

func newServeCmd() *cobra.Command {
	var cfg server.Config
	var verbose bool
	var trusted []string
	var ali alibabaServeFlags
	var rd routingDNSServeFlags
	var sf storeServeFlags
	var pprofListen string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the aliasnet server (control plane + APIs) on the embedded store",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			level := slog.LevelInfo
			if verbose {
				level = slog.LevelDebug
			}
			cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			var err error
			if cfg.MetadataTrustedProxies, err = metadata.ParseTrusted(trusted); err != nil {
				return fmt.Errorf("--metadata-trusted-proxy: %w", err)
			}
			if err := ali.apply(&cfg); err != nil {
				return err
			}
			if err := rd.apply(&cfg); err != nil {
				return err
			}
			if err := sf.apply(&cfg); err != nil {
				return err
			}
			if cfg.OperationRetention <= 0 {
				return fmt.Errorf("--operation-retention %s: must be a positive duration (GCE keeps requestId deduplication for at least 1h)", cfg.OperationRetention)
			}
			if cfg.MaxOperations <= 0 {
				return fmt.Errorf("--max-operations %d: must be positive", cfg.MaxOperations)
			}
			if pprofListen != "" {
				if err := servePprof(pprofListen, cfg.Logger); err != nil {
					return err
				}
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			s, err := server.New(ctx, cfg)
			if err != nil {
				return err
			}
			if err := s.Listen(); err != nil {
				s.Close()
				return err
			}
			return s.Serve(ctx)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Listen, "listen", "127.0.0.1:8080", "API listen address")
	f.StringVar(&cfg.DataDir, "data-dir", "./aliasnet-data", "directory of the embedded store")
	f.BoolVar(&verbose, "verbose", false, "debug logging")
	f.StringVar(&cfg.MetadataListen, "metadata-listen", "", "serve the instance metadata server on this address, e.g. 169.254.169.254:80 (default off)")
	f.StringSliceVar(&trusted, "metadata-trusted-proxy", nil, "CIDR or address of a proxy whose X-Forwarded-For names the instance (repeatable)")
	f.DurationVar(&cfg.OperationRetention, "operation-retention", time.Hour, "how long operations and requestId/ClientToken deduplication are kept (GCE promises at least 60 minutes)")
	f.IntVar(&cfg.MaxOperations, "max-operations", 500000, "at most this many operations are kept; beyond it the oldest go first, even if younger than --operation-retention")
	f.StringVar(&pprofListen, "pprof-listen", "", "serve Go's net/http/pprof profiles on this address, e.g. 127.0.0.1:6060 (default off)")
	ali.register(cmd)
	rd.register(cmd)
	sf.register(cmd)
	return cmd
}

// servePprof serves the Go runtime's profiles on their own listener, never
// on the API's: profiles reveal memory contents.
func servePprof(addr string, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--pprof-listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	log.Info("pprof listening", "addr", ln.Addr().String())
	go http.Serve(ln, mux)
	return nil
}
