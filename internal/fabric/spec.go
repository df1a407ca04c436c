// Package fabric turns the control plane's desired state into a Linux data
// plane: a "router" network namespace per VPC network (or, on a real host,
// the host's own routing table and nftables) whose routes, policy-routing
// rules, nftables anti-spoofing sets and firewall chains implement the
// semantics of package netpolicy, so that real packets agree with Trace.
//
// The package has three layers:
//
//   - Spec (this file, pure): what the data plane must realise for one
//     project — netpolicy's Desired per network plus the facts a Linux data
//     plane needs that netpolicy does not carry (MACs, subnet prefix
//     lengths, gateways). The server serves it (GET
//     /aliasnet/v1/projects/{p}/fabricSpec, long-poll) so data planes never
//     read the store.
//   - Plan (plan.go, pure): the Spec compiled into one RouterPlan per
//     network: kernel routes per table, `ip rule`s, the addresses of the
//     router, the nftables sets and chains.
//   - Router (router_linux.go): applies RouterPlans to a network namespace
//     incrementally (diff against what it programmed), with netlink and
//     nftables only — no shelling out.
//
// The lab (package lab) wires namespaces and veths around it; on a real
// host the same Router is pointed at the host's namespace and the VMs'
// tap devices are the ports (see docs/lab.md).
package fabric

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/aliasnet/aliasnet/internal/model"
	"github.com/aliasnet/aliasnet/internal/netpolicy"
)

// Spec is the desired data plane of one project (and of the networks of
// other projects its networks are peered with).
type Spec struct {
	Project string `json:"project"`
	// ETag is a hash of everything else: equal ETags, equal specs.
	ETag      string     `json:"etag,omitempty"`
	Networks  []Network  `json:"networks"`
	Instances []Instance `json:"instances"`
}

// Network is one VPC network.
type Network struct {
	Key     string             `json:"key"` // PROJECT/NETWORK
	Subnets []Subnet           `json:"subnets"`
	Desired *netpolicy.Desired `json:"desired"`
}

// Subnet is what the data plane needs of a subnet: the gateway address
// answers on every port of the network.
type Subnet struct {
	Name      string         `json:"name"` // REGION/NAME
	Range     netip.Prefix   `json:"range"`
	Gateway   netip.Addr     `json:"gateway"`
	Secondary []netip.Prefix `json:"secondary,omitempty"`
}

// Instance is a VM: a network namespace in the lab, a host in production.
type Instance struct {
	Key          string `json:"key"` // PROJECT/ZONE/NAME
	Project      string `json:"project"`
	Zone         string `json:"zone"`
	Name         string `json:"name"`
	Running      bool   `json:"running"`
	CanIPForward bool   `json:"canIpForward,omitempty"`
	NICs         []NIC  `json:"nics"`
}

// NIC is one attached interface of an instance, in device order.
type NIC struct {
	Device    int    `json:"device"`    // N of nicN / ethN
	Interface string `json:"interface"` // interface ID (unique in the project)
	Network   string `json:"network"`   // PROJECT/NETWORK
	MAC       string `json:"mac"`
	IP        netip.Addr `json:"ip"`
	// Prefix is the subnet's primary range: the guest configures IP/len.
	Prefix  netip.Prefix   `json:"prefix"`
	Gateway netip.Addr     `json:"gateway"`
	Aliases []netip.Prefix `json:"aliases,omitempty"`
}

// BuildSpec compiles a project's netpolicy input (netpolicy.FromState,
// read under control.Service.Read) into a Spec.
func BuildSpec(project string, in netpolicy.Input) (*Spec, error) {
	e := netpolicy.Compile(in)
	return BuildSpecFrom(project, in, e)
}

// BuildSpecFrom is BuildSpec with an already compiled engine of in.
func BuildSpecFrom(project string, in netpolicy.Input, e *netpolicy.Engine) (*Spec, error) {
	s := &Spec{Project: project, Networks: []Network{}, Instances: []Instance{}}
	subnets := map[string]*model.Subnet{}
	byNet := map[string][]Subnet{}
	for _, sn := range in.Subnets {
		subnets[sn.Project+"/"+sn.Region+"/"+sn.Name] = sn
		fs := Subnet{Name: sn.Region + "/" + sn.Name, Range: sn.Range, Gateway: sn.Gateway()}
		for _, r := range sn.Secondary {
			fs.Secondary = append(fs.Secondary, r.Range)
		}
		k := sn.Project + "/" + sn.Network
		byNet[k] = append(byNet[k], fs)
	}
	for _, key := range e.Networks() {
		p, n, _ := strings.Cut(key, "/")
		d, err := e.Fabric(p, n)
		if err != nil {
			return nil, err
		}
		sns := byNet[key]
		slices.SortFunc(sns, func(a, b Subnet) int { return cmp.Compare(a.Name, b.Name) })
		if sns == nil {
			sns = []Subnet{}
		}
		s.Networks = append(s.Networks, Network{Key: key, Subnets: sns, Desired: d})
	}
	nics := map[string][]*model.Interface{} // PROJECT/ZONE/NAME
	for _, ifc := range in.Interfaces {
		if ifc.Instance == "" {
			continue
		}
		k := ifc.Project + "/" + ifc.Instance
		nics[k] = append(nics[k], ifc)
	}
	for _, mi := range in.Instances {
		k := mi.Project + "/" + mi.Zone + "/" + mi.Name
		inst := Instance{Key: k, Project: mi.Project, Zone: mi.Zone, Name: mi.Name,
			Running: mi.Status == model.InstanceRunning, CanIPForward: mi.CanIPForward, NICs: []NIC{}}
		ifcs := nics[k]
		slices.SortFunc(ifcs, func(a, b *model.Interface) int { return cmp.Compare(a.Device, b.Device) })
		for _, ifc := range ifcs {
			region, name, _ := strings.Cut(ifc.Subnet, "/")
			sn := subnets[ifc.Project+"/"+region+"/"+name]
			nic := NIC{Device: ifc.Device, Interface: ifc.ID, Network: ifc.Project + "/" + ifc.Network, MAC: ifc.MAC, IP: ifc.IP}
			if sn != nil {
				nic.Prefix, nic.Gateway = sn.Range, sn.Gateway()
			}
			for _, a := range ifc.Aliases {
				nic.Aliases = append(nic.Aliases, a.Range)
			}
			inst.NICs = append(inst.NICs, nic)
		}
		s.Instances = append(s.Instances, inst)
	}
	slices.SortFunc(s.Instances, func(a, b Instance) int { return cmp.Compare(a.Key, b.Key) })
	b, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("fabric: encode spec: %w", err)
	}
	sum := sha256.Sum256(b)
	s.ETag = hex.EncodeToString(sum[:12])
	return s, nil
}

// Network returns the network with key PROJECT/NETWORK, or nil.
func (s *Spec) Network(key string) *Network {
	for i := range s.Networks {
		if s.Networks[i].Key == key {
			return &s.Networks[i]
		}
	}
	return nil
}

// Instance finds an instance by name, optionally zone ("" any) and
// project ("" the spec's). It fails when the name is ambiguous.
func (s *Spec) Instance(project, zone, name string) (*Instance, error) {
	if project == "" {
		project = s.Project
	}
	var found []*Instance
	for i := range s.Instances {
		in := &s.Instances[i]
		if in.Project == project && in.Name == name && (zone == "" || in.Zone == zone) {
			found = append(found, in)
		}
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("no instance %q in project %q", name, project)
	case 1:
		return found[0], nil
	}
	var zs []string
	for _, f := range found {
		zs = append(zs, f.Zone)
	}
	return nil, fmt.Errorf("instance %q exists in several zones (%s): give --zone", name, strings.Join(zs, ", "))
}
