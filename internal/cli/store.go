package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/aliasnet/aliasnet/internal/store"
)

func init() { clientCommands = append(clientCommands, newStoreCmd) }

func newStoreCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "store",
		Short: "Back up, restore and migrate the state store (bbolt or etcd)",
		Long: `Store locations are written as
  bbolt:PATH          the embedded store: a serve --data-dir, or its aliasnet.db file
  etcd:URL[,URL...]   an etcd cluster; --etcd-prefix, --etcd-cert, --etcd-key and
                      --etcd-ca apply as for serve`,
	}
	cmd.AddCommand(newStoreSnapshotCmd(g), newStoreRestoreCmd(g), newStoreMigrateCmd(g))
	return cmd
}

// openStoreSpec opens "bbolt:PATH" or "etcd:URLS".
func openStoreSpec(ctx context.Context, spec string, ef *etcdFlags) (store.Store, string, error) {
	kind, arg, ok := strings.Cut(spec, ":")
	if !ok || arg == "" {
		return nil, "", fmt.Errorf("store %q: want bbolt:PATH or etcd:URL[,URL]", spec)
	}
	switch kind {
	case "bbolt":
		path := arg
		if st, err := os.Stat(arg); err == nil && st.IsDir() {
			path = filepath.Join(arg, "aliasnet.db")
		}
		s, err := store.OpenBolt(path, store.BoltOptions{})
		if err != nil {
			return nil, "", err
		}
		return s, "bbolt " + path, nil
	case "etcd":
		o, err := ef.options([]string{arg})
		if err != nil {
			return nil, "", err
		}
		s, err := store.OpenEtcd(ctx, o)
		if err != nil {
			return nil, "", err
		}
		return s, fmt.Sprintf("etcd %s prefix %s", strings.Join(o.Endpoints, ","), o.Prefix), nil
	}
	return nil, "", fmt.Errorf("store %q: want bbolt:PATH or etcd:URL[,URL]", spec)
}

// restoreBatch keeps each transaction under etcd's default --max-txn-ops.
const restoreBatch = 100

func newStoreSnapshotCmd(g *Globals) *cobra.Command {
	var out, from string
	var ef etcdFlags
	cmd := &cobra.Command{
		Use:   "snapshot --out FILE [--from bbolt:PATH|etcd:URLS]",
		Short: "Write a consistent copy of the whole state to FILE (same format for both stores)",
		Long: `Without --from, the snapshot is taken through the running server (--server),
whichever store it uses. With --from it is read from the store directly (a
bbolt store must not be open by a running server; etcd can be read any time).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return errors.New("--out is required")
			}
			ctx := cmd.Context()
			var snap store.Snapshot
			var where string
			if from == "" {
				resp, err := http.Get(strings.TrimRight(g.Server, "/") + "/aliasnet/v1/store/snapshot")
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b, _ := io.ReadAll(resp.Body)
					return fmt.Errorf("snapshot from %s: %s: %s", g.Server, resp.Status, strings.TrimSpace(string(b)))
				}
				if snap, err = store.ReadSnapshot(resp.Body); err != nil {
					return err
				}
				where = g.Server
			} else {
				s, desc, err := openStoreSpec(ctx, from, &ef)
				if err != nil {
					return err
				}
				defer s.Close()
				if snap, err = s.Load(ctx); err != nil {
					return err
				}
				where = desc
			}
			if err := writeFileAtomic(out, snap); err != nil {
				return err
			}
			fmt.Fprintf(g.Out, "snapshot of %s at revision %d: %d keys written to %s\n", where, snap.Rev, len(snap.KVs), out)
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "snapshot file to write")
	cmd.Flags().StringVar(&from, "from", "", "read this store directly instead of asking the server")
	ef.register(cmd)
	return cmd
}

func writeFileAtomic(path string, snap store.Snapshot) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if err := store.WriteSnapshot(f, snap); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func newStoreRestoreCmd(g *Globals) *cobra.Command {
	var in, to string
	var ef etcdFlags
	cmd := &cobra.Command{
		Use:   "restore --in FILE --to bbolt:PATH|etcd:URLS",
		Short: "Load a snapshot into an empty store (stop every server using it first)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if in == "" || to == "" {
				return errors.New("--in and --to are required")
			}
			f, err := os.Open(in)
			if err != nil {
				return err
			}
			snap, err := store.ReadSnapshot(f)
			f.Close()
			if err != nil {
				return err
			}
			return copyInto(cmd.Context(), g, snap, "snapshot "+in, to, &ef)
		},
	}
	cmd.Flags().StringVar(&in, "in", "", "snapshot file to read")
	cmd.Flags().StringVar(&to, "to", "", "store to restore into (must be empty)")
	ef.register(cmd)
	return cmd
}

func newStoreMigrateCmd(g *Globals) *cobra.Command {
	var from, to string
	var ef etcdFlags
	cmd := &cobra.Command{
		Use:   "migrate --from bbolt:PATH --to etcd:URLS",
		Short: "Copy an installation's whole state into another (empty) store",
		Long: `Stop the server, migrate, then start it (and any further replicas) on the
new store with the same flags plus --store etcd --etcd-endpoints ... The copy
is checked key by key before the command reports success; the source is left
untouched, so going back is starting the old server again.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if from == "" || to == "" {
				return errors.New("--from and --to are required")
			}
			ctx := cmd.Context()
			src, desc, err := openStoreSpec(ctx, from, &ef)
			if err != nil {
				return err
			}
			snap, err := src.Load(ctx)
			src.Close()
			if err != nil {
				return err
			}
			return copyInto(ctx, g, snap, desc, to, &ef)
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "source store")
	cmd.Flags().StringVar(&to, "to", "", "target store (must be empty)")
	ef.register(cmd)
	return cmd
}

// copyInto restores snap into the store at spec and verifies the copy.
func copyInto(ctx context.Context, g *Globals, snap store.Snapshot, from, spec string, ef *etcdFlags) error {
	dst, desc, err := openStoreSpec(ctx, spec, ef)
	if err != nil {
		return err
	}
	defer dst.Close()
	start := time.Now()
	if err := store.Restore(ctx, dst, snap, restoreBatch); err != nil {
		if errors.Is(err, store.ErrNotEmpty) {
			return fmt.Errorf("%s: %w; restore into a new --data-dir or an unused --etcd-prefix", desc, err)
		}
		return fmt.Errorf("%s: %w (the target holds part of the copy and servers refuse to start on it: run the same command again to finish it)", desc, err)
	}
	// Restore read the copy back and compared it before removing its
	// marker: it is verified.
	fmt.Fprintf(g.Out, "copied %d keys from %s (revision %d) to %s in %s; verified\n",
		len(snap.KVs), from, snap.Rev, desc, time.Since(start).Round(time.Millisecond))
	return nil
}
