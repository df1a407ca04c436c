// Package cli is the aliasnet command line: `serve` runs the server, and
// the resource verbs (networks, subnets, instances, ...) talk to a server
// through its own public APIs, with gcloud-shaped syntax.
package cli

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
)

// Globals are the flags every client verb takes.
type Globals struct {
	Server  string
	Project string
	Format  string
	Out     io.Writer
	Err     io.Writer
}

// NewRoot builds the whole command tree.
func NewRoot() *cobra.Command {
	g := &Globals{Out: os.Stdout, Err: os.Stderr}
	root := &cobra.Command{
		Use:           "aliasnet",
		Short:         "A self-hostable VPC address plane: alias IP ranges, secondary IPs, ENIs",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.Server, "server", envOr("ALIASNET_SERVER", "http://127.0.0.1:8080"), "aliasnet server URL (env ALIASNET_SERVER)")
	pf.StringVar(&g.Project, "project", envOr("ALIASNET_PROJECT", "default"), "project (env ALIASNET_PROJECT)")
	pf.StringVar(&g.Format, "format", "table", "output format: table, json or yaml")
	root.AddCommand(newServeCmd())
	for _, add := range clientCommands {
		root.AddCommand(add(g))
	}
	return root
}

// clientCommands are registered by the files that define them.
var clientCommands []func(*Globals) *cobra.Command

func envOr(k, d string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return d
}

// Main runs the CLI and returns the process exit code.
func Main(args []string) int {
	if cniPlugin() { // CNI_COMMAND set: act as the CNI plugin (cni.go)
		return runCNI()
	}
	root := NewRoot()
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "ERROR:", err)
		return 1
	}
	return 0
}
