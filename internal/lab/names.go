// Package lab realises a project's VPC networks on one Linux machine with
// network namespaces: every instance is a namespace with one veth per NIC
// (ethN, the instance's MAC, primary IP/prefix, default route via the
// subnet gateway), and every network is a router namespace that
// package fabric programs (routes, policy rules, nftables anti-spoofing
// and firewall). A supervisor (`aliasnet lab supervise`, started by `lab
// up`) follows the control plane's fabric spec (long-poll) and keeps the
// namespaces in sync. Nothing is done in the machine's own namespace.
package lab

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"github.com/aliasnet/aliasnet/internal/fabric"
)

// Namer names a lab's namespaces: every name starts with Prefix, so a
// lab's namespaces are recognisable in `ip netns list`.
type Namer struct {
	// Prefix is "an-<project>-" by default.
	Prefix  string
	Project string
}

// DefaultPrefix is the namespace prefix of a project's lab.
func DefaultPrefix(project string) string { return "an-" + project + "-" }

func h4(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:2])
}

// Router names the router namespace of network "PROJECT/NETWORK":
// <prefix>net-<network> (the project is added for a peered network of
// another project).
func (n Namer) Router(key string) string {
	p, nw, _ := strings.Cut(key, "/")
	if p != n.Project {
		return n.Prefix + "net-" + p + "." + nw
	}
	return n.Prefix + "net-" + nw
}

// Instance names an instance's namespace: <prefix><name>, with the zone
// when another instance of the spec has the same name, and the project for
// an instance of another project (on a peered network).
func (n Namer) Instance(s *fabric.Spec, in *fabric.Instance) string {
	name := in.Name
	for i := range s.Instances {
		o := &s.Instances[i]
		if o.Key != in.Key && o.Name == in.Name && o.Project == in.Project {
			name += "." + in.Zone
			break
		}
	}
	if in.Project != n.Project {
		name = in.Project + "." + name
	}
	return n.Prefix + name
}

// Port is the router-side link of an interface (fabric.PortName).
func Port(project, iface string) string { return fabric.PortName(project, iface) }
