package cli

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/aliasnet/aliasnet/internal/server"
)

func newServeCmd() *cobra.Command {
	var cfg server.Config
	var verbose bool
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
	return cmd
}
