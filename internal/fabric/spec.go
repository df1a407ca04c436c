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
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/gob"
	"encoding/hex"
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
	Key     string   `json:"key"` // PROJECT/NETWORK
	Subnets []Subnet `json:"subnets"`
	// Desired is netpolicy's description, except that its AntiSpoof map
	// is moved to AntiSpoof below (sorted), so that a Spec encodes the
	// same way every time (its ETag is a hash of its gob encoding).
	Desired   *netpolicy.Desired `json:"desired"`
	AntiSpoof []AntiSpoof        `json:"antiSpoof"`
}

// AntiSpoof is Desired.AntiSpoof[Interface]: the source prefixes allowed
// out of an interface; Off when the instance has canIpForward.
type AntiSpoof struct {
	Interface string         `json:"interface"`
	Off       bool           `json:"off,omitempty"`
	Allowed   []netip.Prefix `json:"allowed,omitempty"`
}

// AntiSpoofOf returns the allowed sources of an interface (nil: no
// check), and whether the interface has an entry.
func (n *Network) AntiSpoofOf(iface string) ([]netip.Prefix, bool) {
	i, ok := slices.BinarySearchFunc(n.AntiSpoof, iface, func(a AntiSpoof, id string) int { return cmp.Compare(a.Interface, id) })
	if !ok {
		return nil, false
	}
	if n.AntiSpoof[i].Off {
		return nil, true
	}
	return n.AntiSpoof[i].Allowed, true
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
	Device    int        `json:"device"`    // N of nicN / ethN
	Interface string     `json:"interface"` // interface ID (unique in the project)
	Network   string     `json:"network"`   // PROJECT/NETWORK
	MAC       string     `json:"mac"`
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
		as := make([]AntiSpoof, 0, len(d.AntiSpoof))
		for id, ps := range d.AntiSpoof {
			as = append(as, AntiSpoof{Interface: id, Off: ps == nil, Allowed: ps})
		}
		slices.SortFunc(as, func(a, b AntiSpoof) int { return cmp.Compare(a.Interface, b.Interface) })
		d.AntiSpoof = nil
		s.Networks = append(s.Networks, Network{Key: key, Subnets: sns, Desired: d, AntiSpoof: as})
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
	b, err := s.encode()
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(b)
	s.ETag = hex.EncodeToString(sum[:12])
	return s, nil
}

// encode is the gob form of the spec without its derived parts: each
// network's Forwarding and AntiSpoof, and the NICs' Aliases, are functions
// of Desired.Interfaces (TestWireRoundTrip holds it to netpolicy's
// derivation); leaving them out makes the encoding 3-4 times smaller and
// faster, which is most of an incremental update's cost at 10,000 aliases.
func (s *Spec) encode() ([]byte, error) {
	w := *s
	w.Networks = make([]Network, len(s.Networks))
	for i, nw := range s.Networks {
		if nw.Desired != nil {
			d := *nw.Desired
			d.Forwarding, d.AntiSpoof = nil, nil
			nw.Desired = &d
		}
		nw.AntiSpoof = nil
		w.Networks[i] = nw
	}
	w.Instances = make([]Instance, len(s.Instances))
	for i, in := range s.Instances {
		nics := make([]NIC, len(in.NICs))
		for j, n := range in.NICs {
			n.Aliases = nil
			nics[j] = n
		}
		in.NICs = nics
		w.Instances[i] = in
	}
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(&w); err != nil {
		return nil, fmt.Errorf("fabric: encode spec: %w", err)
	}
	return buf.Bytes(), nil
}

// expand derives what encode left out.
func (s *Spec) expand() {
	aliases := map[string][]netip.Prefix{} // PROJECT/ID
	for i := range s.Networks {
		nw := &s.Networks[i]
		d := nw.Desired
		if d == nil {
			continue
		}
		d.Forwarding = make([]netpolicy.Forward, 0, len(d.Interfaces)*2)
		nw.AntiSpoof = make([]AntiSpoof, 0, len(d.Interfaces))
		for _, fi := range d.Interfaces {
			aliases[d.Project+"/"+fi.ID] = fi.Aliases
			if fi.IP.IsValid() {
				d.Forwarding = append(d.Forwarding, netpolicy.Forward{Dst: netip.PrefixFrom(fi.IP, fi.IP.BitLen()), Interface: fi.ID})
			}
			for _, a := range fi.Aliases {
				d.Forwarding = append(d.Forwarding, netpolicy.Forward{Dst: a, Interface: fi.ID, Alias: true})
			}
			if fi.Instance == "" {
				continue
			}
			as := AntiSpoof{Interface: fi.ID, Off: fi.CanIPForward}
			if !fi.CanIPForward {
				as.Allowed = append([]netip.Prefix{netip.PrefixFrom(fi.IP, fi.IP.BitLen())}, fi.Aliases...)
			}
			nw.AntiSpoof = append(nw.AntiSpoof, as)
		}
		slices.SortFunc(d.Forwarding, func(a, b netpolicy.Forward) int {
			return cmp.Or(a.Dst.Addr().Compare(b.Dst.Addr()), cmp.Compare(a.Dst.Bits(), b.Dst.Bits()))
		})
		slices.SortFunc(nw.AntiSpoof, func(a, b AntiSpoof) int { return cmp.Compare(a.Interface, b.Interface) })
	}
	for i := range s.Instances {
		for j := range s.Instances[i].NICs {
			n := &s.Instances[i].NICs[j]
			p, _, _ := strings.Cut(n.Network, "/")
			n.Aliases = aliases[p+"/"+n.Interface]
		}
	}
}

// GobContentType is the media type of EncodeGob's output: the compact
// form of a Spec (a 10,000-alias spec decodes ~7x faster than its JSON).
const GobContentType = "application/x-aliasnet-spec+gob"

// EncodeGob encodes a Spec (ETag included) for DecodeGob.
func (s *Spec) EncodeGob() ([]byte, error) { return s.encode() }

// DecodeGob decodes EncodeGob's output.
func DecodeGob(b []byte) (*Spec, error) {
	var s Spec
	if err := gob.NewDecoder(bytes.NewReader(b)).Decode(&s); err != nil {
		return nil, fmt.Errorf("fabric: decode spec: %w", err)
	}
	s.expand()
	return &s, nil
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
