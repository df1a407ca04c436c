// Command aliasnet-cni is the aliasnet CNI plugin alone: the same code the
// aliasnet binary runs when CNI_COMMAND is set, in a small binary that
// starts in a fraction of the time (the plugin runs once per pod). Install
// it into the CNI bin dir under the config's "type" name, "aliasnet":
//
//	go build -o /opt/cni/bin/aliasnet ./cmd/aliasnet-cni
//
// See docs/k8s.md.
package main

import (
	"os"

	"github.com/aliasnet/aliasnet/internal/cni"
)

func main() { os.Exit(cni.Main()) }
