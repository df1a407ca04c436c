// Command aliasnet-cni is the aliasnet CNI plugin alone: the same code the
// aliasnet binary runs when CNI_COMMAND is set, in a small binary (6 MB)
// that starts in a fraction of the time, since the plugin runs once per
// pod. The aliasnet binary runs it before initialising the server's
// dependencies (internal/cni/early), but still pays the Go runtime's
// set-up for its ~100 MB of code and the initialisation of the packages
// that come before the plugin's in Go's order. Install it into the CNI bin
// dir under the config's "type" name, "aliasnet":
//
//	go build -o /opt/cni/bin/aliasnet ./cmd/aliasnet-cni
//
// See the README's "VPC-native Kubernetes" section.
package main

import (
	"os"

	"github.com/aliasnet/aliasnet/internal/cni"
)

func main() { os.Exit(cni.Main()) }
