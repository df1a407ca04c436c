package cli

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/aliasnet/aliasnet/internal/agent"
)

func init() { clientCommands = append(clientCommands, newAgentCmd) }

func newAgentCmd(_ *Globals) *cobra.Command {
	var (
		cfg     agent.Config
		dialect string
		once    bool
		verbose bool
		timeout time.Duration
		pods    []string
	)
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Guest agent: apply the instance's alias ranges and secondary IPs from the metadata server",
		Long: `Runs inside the VM (or its network namespace) and follows the metadata server:
alias IP ranges become local routes (table local, proto 66) on the interface
whose MAC the metadata names, as Google's guest agent does; with --dialect
alibaba, secondary private IPs become /32 (/128) addresses on that interface.
Only routes with proto 66 and addresses recorded in the state file are ever
removed. The configuration stays in place while the metadata server is away
and when the agent exits.

On a Kubernetes node the pod range is left to the CNI plugin (no local route,
no address): the node must forward it to its pods, as GKE nodes do. The
metadata server names it in the instance attribute aliasnet-pod-range;
--pod-range adds ranges for metadata servers that do not.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			level := slog.LevelInfo
			if verbose {
				level = slog.LevelDebug
			}
			cfg.Logger = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
			for _, r := range pods {
				p, err := netip.ParsePrefix(strings.TrimSpace(r))
				if err != nil {
					return fmt.Errorf("--pod-range %q: %w", r, err)
				}
				cfg.PodRanges = append(cfg.PodRanges, p.Masked())
			}
			switch dialect {
			case "gce", "google":
				cfg.Dialect = agent.GCE
			case "alibaba", "aliyun", "ecs":
				cfg.Dialect = agent.Alibaba
			default:
				return fmt.Errorf("--dialect: %q is not gce or alibaba", dialect)
			}
			a, err := agent.New(cfg)
			if err != nil {
				return err
			}
			defer a.Close()
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if once {
				ctx, cancel := context.WithTimeout(ctx, timeout)
				defer cancel()
				return a.Once(ctx)
			}
			return a.Run(ctx)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.MetadataURL, "metadata", "", "metadata server URL (default "+agent.DefaultGCEURL+", alibaba "+agent.DefaultAlibabaURL+")")
	f.StringVar(&dialect, "dialect", "gce", "metadata form: gce (alias ranges as local routes) or alibaba (secondary IPs as addresses)")
	f.BoolVar(&once, "once", false, "reconcile once and exit")
	f.DurationVar(&timeout, "timeout", 30*time.Second, "with --once: how long to wait for the metadata server")
	f.StringVar(&cfg.StateFile, "state-file", "", "where to record the addresses the agent added (default /run/aliasnet/agent-<netns inode>.json)")
	f.DurationVar(&cfg.Resync, "resync", time.Second, "periodic reconcile interval, on top of netlink change events")
	f.StringSliceVar(&pods, "pod-range", nil, "a Kubernetes pod range to leave to the CNI plugin (repeatable; the metadata's aliasnet-pod-range attribute is always honoured)")
	f.BoolVar(&verbose, "verbose", false, "debug logging")
	return cmd
}
