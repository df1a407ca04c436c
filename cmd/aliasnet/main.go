// Command aliasnet is the one binary: server, CLI, guest agent and data
// plane. See README.md.
package main

import (
	"os"

	"github.com/aliasnet/aliasnet/internal/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:])) }
