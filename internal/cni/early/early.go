// Package early runs the aliasnet CNI plugin during package
// initialisation, before the rest of the program is initialised, when the
// process was started as a plugin (cni.Invoked: CNI_COMMAND set, or the
// name aliasnet-cni). The aliasnet binary imports it for that side effect.
//
// The container runtime starts the plugin once per pod, and the aliasnet
// binary also links the server, the cloud SDKs, etcd, gRPC and BGP, whose
// package initialisation (protobuf registries, gRPC, codecs) costs
// several milliseconds the plugin never uses. Since Go 1.21 packages are
// initialised in a fixed order: repeatedly, the first package by import
// path whose imports are all initialised. This package imports only
// internal/cni and the standard library (which is why internal/cni avoids
// net/http), so it is initialised right after the plugin's own
// dependencies, and the process exits before the rest are.
package early

import (
	"os"

	"github.com/aliasnet/aliasnet/internal/cni"
)

func init() {
	if cni.Invoked(os.Args[0]) {
		os.Exit(cni.Main())
	}
}
