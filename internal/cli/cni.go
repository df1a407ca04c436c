package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/aliasnet/aliasnet/internal/cni"
	// Runs the plugin before the server's dependencies are initialised
	// (see the package); runCNI below is only the fallback.
	_ "github.com/aliasnet/aliasnet/internal/cni/early"
)

func init() { clientCommands = append(clientCommands, newCNICmd) }

// cniPlugin reports whether this process is a CNI plugin invocation
// (CNI_COMMAND set, or the binary named aliasnet-cni): Main then runs the
// plugin instead of the command line.
func cniPlugin() bool { return cni.Invoked(os.Args[0]) }

// runCNI runs one plugin invocation and returns the exit code.
func runCNI() int { return cni.Main() }

func newCNICmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cni",
		Short: "The aliasnet CNI plugin: pod IPs from the node's alias IP range (see docs/k8s.md)",
		Long: `The aliasnet binary is also a CNI 1.0/1.1 plugin: the container runtime runs it with
CNI_COMMAND set (ADD, DEL, CHECK, GC, STATUS, VERSION). Install it into the CNI bin dir
under the network config's "type" name ("aliasnet"), or run it as "aliasnet-cni".`,
	}
	var binDir, confDir, network, rng, dataDir, metadata string
	install := &cobra.Command{
		Use:   "install [--bin-dir /opt/cni/bin] [--conf-dir /etc/cni/net.d] [--range CIDR]",
		Short: "Copy this binary into the CNI bin dir as 'aliasnet' and write a network config list",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			self, err := os.Executable()
			if err != nil {
				return err
			}
			if err := copyExecutable(self, filepath.Join(binDir, "aliasnet")); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "Installed %s.\n", filepath.Join(binDir, "aliasnet"))
			if confDir == "" {
				return nil
			}
			plugin := map[string]any{"type": "aliasnet", "dataDir": dataDir}
			if rng != "" {
				plugin["range"] = rng
			}
			if metadata != "" {
				plugin["metadata"] = metadata
			}
			list := map[string]any{"cniVersion": "1.1.0", "name": network, "plugins": []any{plugin}}
			b, _ := json.MarshalIndent(list, "", "  ")
			if err := os.MkdirAll(confDir, 0o755); err != nil {
				return err
			}
			p := filepath.Join(confDir, "10-aliasnet.conflist")
			if err := os.WriteFile(p, append(b, '\n'), 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "Wrote %s.\n", p)
			return nil
		},
	}
	f := install.Flags()
	f.StringVar(&binDir, "bin-dir", "/opt/cni/bin", "CNI plugin directory")
	f.StringVar(&confDir, "conf-dir", "", "CNI config directory to write 10-aliasnet.conflist into (none: do not write)")
	f.StringVar(&network, "network", "aliasnet", "network name in the config list")
	f.StringVar(&rng, "range", "", "the node's pod range (default: read nic0's alias range from the metadata server)")
	f.StringVar(&dataDir, "data-dir", cni.DefaultDataDir, "where the plugin keeps its allocations")
	f.StringVar(&metadata, "metadata", "", "metadata server URL (default "+cni.DefaultMetadata+")")
	cmd.AddCommand(install)
	return cmd
}

func copyExecutable(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	tmp := dst + ".tmp"
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		os.Remove(tmp)
		return err
	}
	if err := out.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, dst)
}
