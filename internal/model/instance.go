package model

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/aliasnet/aliasnet/internal/ipam"
)

// Limits that GCE documents.
const (
	MaxNICs              = 8
	MaxAliasesPerNIC     = 100
	InstanceRunning      = "RUNNING"
	InstanceStopped      = "TERMINATED"
	InstanceStopping     = "STOPPING"
	InstanceProvisioning = "PROVISIONING"
)

// CreateInstanceReq asks for a new instance.
type CreateInstanceReq struct {
	Instance Instance // Project, Zone, Name, MachineType, Tags, CanIPForward, Extra...
	NICs     []NICSpec
	// Random, when set, makes automatic picks random (Alibaba) instead of
	// lowest-first (GCE).
	Random func(uint64) uint64
}

// CreateInstance creates an instance and its interfaces with their
// primary IPs and alias ranges, all or nothing.
func (t *Txn) CreateInstance(req CreateInstanceReq) (*Instance, []*Interface, error) {
	in := req.Instance
	if err := ValidName("name", in.Name); err != nil {
		return nil, nil, err
	}
	region, ok := ZoneRegion(in.Zone)
	if !ok {
		return nil, nil, errf(Invalid, "zone", in.Zone, "Invalid zone '%s'.", in.Zone)
	}
	p := t.s.proj(in.Project)
	if p.instances[in.Zone+"/"+in.Name] != nil {
		return nil, nil, &Error{Code: AlreadyExists, Reason: fmt.Sprintf("The resource '%s' already exists", InstanceKey(in.Project, in.Zone, in.Name))}
	}
	if len(req.NICs) == 0 {
		return nil, nil, &Error{Code: Required, Field: "networkInterfaces", Reason: "Required field 'resource.networkInterfaces' not specified"}
	}
	if len(req.NICs) > MaxNICs {
		return nil, nil, errf(Invalid, "networkInterfaces", "", "An instance can have at most %d network interfaces, got %d.", MaxNICs, len(req.NICs))
	}
	nin := in
	nin.ID = t.NewID()
	nin.Created = t.Now
	nin.NICs = nil
	nin.Tags = slices.Clone(in.Tags)
	if nin.Status == "" {
		nin.Status = InstanceRunning
	}
	if nin.Hostname == "" {
		nin.Hostname = fmt.Sprintf("%s.%s.c.%s.internal", in.Name, in.Zone, in.Project)
	}
	var ifcs []*Interface
	usedNets := map[string]int{}
	for i, spec := range req.NICs {
		field := fmt.Sprintf("networkInterfaces[%d]", i)
		if err := checkAccessConfigs(spec.AccessConfigs, field); err != nil {
			return nil, nil, err
		}
		sn, err := t.s.resolveSubnet(in.Project, region, spec, field)
		if err != nil {
			return nil, nil, err
		}
		if j, dup := usedNets[sn.Network]; dup {
			return nil, nil, errf(Invalid, field+".network", sn.Network,
				"Network interfaces %d and %d are in the same network '%s'; each interface of an instance must be in a different network.", j, i, sn.Network)
		}
		usedNets[sn.Network] = i
		ifc := &Interface{
			Project:  in.Project,
			ID:       fmt.Sprintf("%s-nic%d-%x", in.Name, i, nin.ID),
			Name:     fmt.Sprintf("nic%d", i),
			Created:  t.Now,
			Zone:     in.Zone,
			Network:  sn.Network,
			Subnet:   sn.Region + "/" + sn.Name,
			Instance: in.Zone + "/" + in.Name,
			Device:   i,
			Primary:  i == 0,
		}
		if err := t.addressInterface(p, sn, ifc, spec, field, req.Random); err != nil {
			return nil, nil, err
		}
		ifc.MAC = macFor("42:01", ifc.IP)
		for _, ac := range spec.AccessConfigs {
			if ifc, err = t.attachAccessConfig(p, &nin, ifc, ac, field+".accessConfigs[0]."); err != nil {
				return nil, nil, err
			}
		}
		ifc.Fingerprint = ifc.ContentFingerprint()
		t.putInterface(p, ifc)
		nin.NICs = append(nin.NICs, ifc.ID)
		ifcs = append(ifcs, ifc)
	}
	t.putInstance(p, &nin)
	return &nin, ifcs, nil
}

// macFor derives a stable MAC from an IP the way GCE does (42:01 + the
// IPv4 bytes); other address kinds fall back to a hash.
func macFor(prefix string, ip netip.Addr) string {
	if ip.Is4() {
		b := ip.As4()
		return fmt.Sprintf("%s:%02x:%02x:%02x:%02x", prefix, b[0], b[1], b[2], b[3])
	}
	b := ip.As16()
	return fmt.Sprintf("%s:%02x:%02x:%02x:%02x", prefix, b[12], b[13], b[14], b[15])
}

// resolveSubnet finds the subnet a NIC spec names. Subnet may be "NAME" or
// "REGION/NAME"; with only a network, the network's subnet in the
// instance's region is used (auto-mode networks have exactly one).
func (s *State) resolveSubnet(project, region string, spec NICSpec, field string) (*Subnet, error) {
	p := s.projects[project]
	if spec.Subnet != "" {
		r, n, ok := strings.Cut(spec.Subnet, "/")
		if !ok {
			r, n = region, spec.Subnet
		}
		var sn *Subnet
		if p != nil {
			sn = p.subnets[r+"/"+n]
		}
		if sn == nil {
			return nil, &Error{Code: NotFound, Field: field + ".subnetwork", Value: spec.Subnet,
				Reason: fmt.Sprintf("The resource '%s' was not found", SubnetKey(project, r, n))}
		}
		if r != region {
			return nil, errf(Invalid, field+".subnetwork", spec.Subnet, "Subnetwork '%s' is in region '%s', not in the instance's region '%s'.", n, r, region)
		}
		if spec.Network != "" && spec.Network != sn.Network {
			return nil, errf(Invalid, field+".network", spec.Network, "Subnetwork '%s' does not belong to network '%s'.", n, spec.Network)
		}
		return sn, nil
	}
	netName := spec.Network
	if netName == "" {
		netName = "default"
	}
	if p == nil || p.networks[netName] == nil {
		return nil, &Error{Code: NotFound, Field: field + ".network", Value: netName,
			Reason: fmt.Sprintf("The resource '%s' was not found", NetworkKey(project, netName))}
	}
	var found []*Subnet
	for _, sn := range s.SubnetsOfNetwork(project, netName) {
		if sn.Region == region {
			found = append(found, sn)
		}
	}
	switch len(found) {
	case 0:
		return nil, errf(Invalid, field+".network", netName, "Network '%s' has no subnetwork in region '%s'.", netName, region)
	case 1:
		return found[0], nil
	}
	return nil, errf(Invalid, field+".subnetwork", "", "Network '%s' has several subnetworks in region '%s'; name one.", netName, region)
}

// addressInterface gives ifc its primary IP and aliases from sn.
func (t *Txn) addressInterface(p *project, sn *Subnet, ifc *Interface, spec NICSpec, field string, rnd func(uint64) uint64) error {
	ni := p.nets[sn.Network]
	o := t.s.owner(OwnerRef{Kind: "interface", Key: InterfaceKey(p.name, ifc.ID)})
	primary, _ := ni.ranges.Get(sn.Range)
	if spec.IP.IsValid() {
		a := spec.IP.Unmap()
		if !sn.Range.Contains(a) {
			return errf(Invalid, field+".networkIP", spec.IP.String(), "Requested internal IP address %s is outside the subnetwork's primary range %s.", a, sn.Range)
		}
		if err := t.claim(primary.pool, netip.PrefixFrom(a, a.BitLen()), o); err != nil {
			return t.s.allocError(err, field+".networkIP", a.String())
		}
		ifc.IP = a
	} else {
		pfx, err := t.allocate(primary.pool, 32, o, rnd)
		if err != nil {
			return t.s.allocError(err, field+".networkIP", "")
		}
		ifc.IP = pfx.Addr()
	}
	aliases, err := t.addAliases(p, sn, o, nil, spec.Aliases, field, rnd)
	if err != nil {
		return err
	}
	ifc.Aliases = aliases
	return nil
}

// addAliases allocates alias specs for owner o, on top of keep.
func (t *Txn) addAliases(p *project, sn *Subnet, o ipam.Owner, keep []Alias, specs []AliasSpec, field string, rnd func(uint64) uint64) ([]Alias, error) {
	if len(keep)+len(specs) > MaxAliasesPerNIC {
		return nil, errf(Invalid, field+".aliasIpRanges", "", "An interface can have at most %d alias IP ranges, got %d.", MaxAliasesPerNIC, len(keep)+len(specs))
	}
	ni := p.nets[sn.Network]
	out := slices.Clone(keep)
	for j, a := range specs {
		af := fmt.Sprintf("%s.aliasIpRanges[%d].ipCidrRange", field, j)
		rng, err := sn.rangeNamed(a.RangeName)
		if err != nil {
			var me *Error
			if errors.As(err, &me) {
				me.Field = fmt.Sprintf("%s.aliasIpRanges[%d].subnetworkRangeName", field, j)
			}
			return nil, err
		}
		e, _ := ni.ranges.Get(rng)
		var got netip.Prefix
		if a.Auto() {
			if a.Bits < rng.Bits() || a.Bits > rng.Addr().BitLen() {
				return nil, errf(Invalid, af, a.String(), "Invalid alias IP range netmask %s: it must be between /%d (the size of range %s) and /%d.", a, rng.Bits(), rng, rng.Addr().BitLen())
			}
			got, err = t.allocate(e.pool, a.Bits, o, rnd)
			if err != nil {
				return nil, t.s.allocError(err, af, a.String())
			}
		} else {
			if a.Prefix.Addr().Is4() != rng.Addr().Is4() || a.Prefix.Bits() < rng.Bits() || !rng.Contains(a.Prefix.Addr()) {
				where := "the primary range"
				if a.RangeName != "" {
					where = "secondary range '" + a.RangeName + "'"
				}
				return nil, errf(Invalid, af, a.Prefix.String(), "Alias IP range %s is not inside %s (%s) of subnetwork '%s'.", a.Prefix, where, rng, sn.Name)
			}
			if err := t.claim(e.pool, a.Prefix, o); err != nil {
				return nil, t.s.allocError(err, af, a.Prefix.String())
			}
			got = a.Prefix
		}
		out = append(out, Alias{Range: got, RangeName: a.RangeName})
	}
	sortAliases(out)
	return out, nil
}

// allocError turns an ipam failure into the model error GCE users expect.
func (s *State) allocError(err error, field, value string) error {
	var ce *ipam.ConflictError
	switch {
	case errors.As(err, &ce):
		return &Error{Code: InUse, Field: field, Value: value, Holder: s.holderName(ce.Owner), Err: err,
			Reason: fmt.Sprintf("IP '%s' is already being used by another resource.", valueOr(value, ce.Prefix.String()))}
	case errors.Is(err, ipam.ErrExhausted):
		return &Error{Code: Exhausted, Field: field, Value: value, Err: err,
			Reason: fmt.Sprintf("IP space of the range is exhausted: no free block for %s.", valueOr(value, "an address"))}
	}
	return &Error{Code: Invalid, Field: field, Value: value, Reason: err.Error(), Err: err}
}

func valueOr(v, d string) string {
	if v == "" {
		return d
	}
	return v
}

func (s *State) lookupNIC(project, zone, name, nic string) (*project, *Instance, *Interface, error) {
	p := s.projects[project]
	var in *Instance
	if p != nil {
		in = p.instances[zone+"/"+name]
	}
	if in == nil {
		return nil, nil, nil, notFound("instance", InstanceKey(project, zone, name))
	}
	for _, id := range in.NICs {
		if ifc := p.interfaces[id]; ifc != nil && ifc.Name == nic {
			return p, in, ifc, nil
		}
	}
	// ENIs are addressed by their device name too.
	for _, id := range in.NICs {
		if ifc := p.interfaces[id]; ifc != nil && fmt.Sprintf("nic%d", ifc.Device) == nic {
			return p, in, ifc, nil
		}
	}
	return nil, nil, nil, errf(Invalid, "networkInterface", nic, "Instance '%s' has no network interface '%s'.", name, nic)
}

// UpdateAliases replaces the alias list of an instance's NIC (GCE
// updateNetworkInterface). Aliases present before and after are kept
// untouched; removed ones are released before new ones are taken, so a
// range can be re-cut in one call. The NIC fingerprint must match.
func (t *Txn) UpdateAliases(project, zone, name, nic, fingerprint string, specs []AliasSpec) (*Interface, error) {
	p, _, ifc, err := t.s.lookupNIC(project, zone, name, nic)
	if err != nil {
		return nil, err
	}
	if fingerprint == "" {
		return nil, &Error{Code: Required, Field: "fingerprint", Reason: "Required field 'resource.fingerprint' not specified"}
	}
	if fingerprint != ifc.Fingerprint {
		return nil, &Error{Code: ConditionNotMet, Field: "fingerprint", Reason: fmt.Sprintf("Supplied fingerprint does not match current fingerprint of network interface '%s' of instance '%s'.", nic, name)}
	}
	return t.setAliases(p, ifc, specs, "networkInterface", nil)
}

// setAliases makes specs the alias list of ifc.
func (t *Txn) setAliases(p *project, ifc *Interface, specs []AliasSpec, field string, rnd func(uint64) uint64) (*Interface, error) {
	region, sname := splitKey(ifc.Subnet)
	sn := p.subnets[region+"/"+sname]
	if sn == nil {
		return nil, fmt.Errorf("interface %s: subnet %s missing", ifc.ID, ifc.Subnet)
	}
	want := map[Alias]bool{}
	var fresh []AliasSpec
	for _, a := range specs {
		if !a.Auto() {
			al := Alias{Range: a.Prefix, RangeName: a.RangeName}
			if want[al] {
				return nil, errf(Invalid, field+".aliasIpRanges", a.Prefix.String(), "Alias IP range %s is listed twice.", a.Prefix)
			}
			want[al] = true
			if slices.Contains(ifc.Aliases, al) {
				continue
			}
		}
		fresh = append(fresh, a)
	}
	// A netmask request that an existing alias of that size from that
	// range already satisfies keeps it: re-sending the list a user got
	// from "describe", or "/27;10.1.2.3" after the /27 was allocated,
	// must not churn addresses.
	var stillAuto []AliasSpec
	for _, a := range fresh {
		if !a.Auto() {
			stillAuto = append(stillAuto, a)
			continue
		}
		matched := false
		for _, al := range ifc.Aliases {
			if !want[al] && al.RangeName == a.RangeName && al.Range.Bits() == a.Bits {
				want[al] = true
				matched = true
				break
			}
		}
		if !matched {
			stillAuto = append(stillAuto, a)
		}
	}
	fresh = stillAuto
	var keep []Alias
	ni := p.nets[sn.Network]
	for _, al := range ifc.Aliases {
		if want[al] {
			keep = append(keep, al)
			continue
		}
		if e, ok := ni.rangeFor(al.Range); ok {
			t.release(e.pool, al.Range)
		}
		// An EIP NATed to an address that leaves the interface is
		// unassociated with it.
		for _, e := range sortedValues(p.eips, func(e *EIP) bool { return e.Interface == ifc.ID && al.Range.Contains(e.PrivateIP) }) {
			t.unassociate(p, e)
		}
	}
	if cur := p.interfaces[ifc.ID]; cur != nil {
		// unassociate may have cleared ExternalIP on a newer copy.
		ifc = cur
	}
	o := t.s.owner(OwnerRef{Kind: "interface", Key: InterfaceKey(p.name, ifc.ID)})
	aliases, err := t.addAliases(p, sn, o, keep, fresh, field, rnd)
	if err != nil {
		return nil, err
	}
	nifc := *ifc
	nifc.Aliases = aliases
	nifc.Fingerprint = nifc.ContentFingerprint()
	t.putInterface(p, &nifc)
	return &nifc, nil
}

// releaseInterface frees every address an interface holds.
func (t *Txn) releaseInterface(p *project, ifc *Interface) {
	region, sname := splitKey(ifc.Subnet)
	sn := p.subnets[region+"/"+sname]
	if sn == nil {
		return
	}
	ni := p.nets[sn.Network]
	if e, ok := ni.rangeFor(netip.PrefixFrom(ifc.IP, ifc.IP.BitLen())); ok {
		t.release(e.pool, netip.PrefixFrom(ifc.IP, ifc.IP.BitLen()))
	}
	for _, al := range ifc.Aliases {
		if e, ok := ni.rangeFor(al.Range); ok {
			t.release(e.pool, al.Range)
		}
	}
}

// DeleteInstance deletes an instance and releases its NICs. Elastic
// interfaces other than the primary one are detached and become Available.
func (t *Txn) DeleteInstance(project, zone, name string) error {
	p := t.s.projects[project]
	if p == nil || p.instances[zone+"/"+name] == nil {
		return notFound("instance", InstanceKey(project, zone, name))
	}
	in := p.instances[zone+"/"+name]
	for _, id := range in.NICs {
		ifc := p.interfaces[id]
		if ifc == nil {
			continue
		}
		if ifc.Elastic && !ifc.Primary {
			n := *ifc
			n.Instance, n.Device = "", 0
			n.Fingerprint = n.ContentFingerprint()
			t.putInterface(p, &n)
			continue
		}
		// An EIP must not keep pointing at an interface that is gone,
		// whichever dialect deletes the instance.
		t.unassociateInterface(p, id)
		t.releaseInterface(p, ifc)
		t.deleteInterface(p, id)
	}
	// Only EIPs on this instance's NICs: instances of other zones may
	// carry the same name.
	for _, e := range sortedValues(p.eips, func(e *EIP) bool {
		return e.InstanceType == EIPToInstance && e.InstanceID == name && slices.Contains(in.NICs, e.Interface)
	}) {
		t.unassociate(p, e)
	}
	t.deleteInstance(p, zone, name)
	return nil
}

// SetInstanceStatus changes the power state (RUNNING, TERMINATED ...).
// Ephemeral external IPs go at stop and come back (new ones) at start.
func (t *Txn) SetInstanceStatus(project, zone, name, status string) (*Instance, error) {
	in := t.s.Instance(project, zone, name)
	if in == nil {
		return nil, notFound("instance", InstanceKey(project, zone, name))
	}
	n := *in
	n.Status = status
	p := t.s.projects[project]
	if status == InstanceRunning || status == InstanceStopped {
		if err := t.accessConfigsOnPower(p, &n, status == InstanceRunning); err != nil {
			return nil, err
		}
	}
	t.putInstance(p, &n)
	return &n, nil
}

// SetTags replaces an instance's network tags.
func (t *Txn) SetTags(project, zone, name string, tags []string) (*Instance, error) {
	in := t.s.Instance(project, zone, name)
	if in == nil {
		return nil, notFound("instance", InstanceKey(project, zone, name))
	}
	for i, tag := range tags {
		if err := ValidName(fmt.Sprintf("tags.items[%d]", i), tag); err != nil {
			return nil, err
		}
	}
	n := *in
	n.Tags = slices.Clone(tags)
	t.putInstance(t.s.projects[project], &n)
	return &n, nil
}

// PutInstanceExtra replaces the dialect-owned fields of an instance.
func (t *Txn) PutInstanceExtra(project, zone, name string, extra []byte) (*Instance, error) {
	in := t.s.Instance(project, zone, name)
	if in == nil {
		return nil, notFound("instance", InstanceKey(project, zone, name))
	}
	n := *in
	n.Extra = extra
	t.putInstance(t.s.projects[project], &n)
	return &n, nil
}

// CreateTemplate stores an instance template after checking its alias
// specs parse; network references are checked when instances are made.
func (t *Txn) CreateTemplate(it InstanceTemplate) (*InstanceTemplate, error) {
	if err := ValidName("name", it.Name); err != nil {
		return nil, err
	}
	p := t.s.proj(it.Project)
	if p.templates[it.Name] != nil {
		return nil, &Error{Code: AlreadyExists, Reason: fmt.Sprintf("The resource '%s' already exists", TemplateKey(it.Project, it.Name))}
	}
	if len(it.NICs) > MaxNICs {
		return nil, errf(Invalid, "properties.networkInterfaces", "", "An instance can have at most %d network interfaces.", MaxNICs)
	}
	for i, nic := range it.NICs {
		if err := checkAccessConfigs(nic.AccessConfigs, fmt.Sprintf("properties.networkInterfaces[%d]", i)); err != nil {
			return nil, err
		}
	}
	n := it
	n.ID = t.NewID()
	n.Created = t.Now
	t.putTemplate(p, &n)
	return &n, nil
}

// DeleteTemplate removes an instance template.
func (t *Txn) DeleteTemplate(project, name string) error {
	p := t.s.projects[project]
	if p == nil || p.templates[name] == nil {
		return notFound("instanceTemplate", TemplateKey(project, name))
	}
	t.deleteTemplate(p, name)
	return nil
}

// ContentFingerprint is a hash of what an interface carries (addresses,
// aliases, attachment). Like GCE's, it changes whenever the content does;
// being derived from content, a client that set a list knows its
// fingerprint, and two replicas compute the same one.
//
// It runs inside the control plane's critical section on every interface
// change, so it appends into a stack buffer instead of formatting; for an
// interface without an access config the bytes hashed are exactly those
// of the original "%s|%s|%s|%d|%s|%s|" + "%s/%s," per alias formatting.
// The access config counts (as in GCE, adding or removing one changes the
// fingerprint, also on a stopped instance whose ephemeral address is
// released).
func (ifc *Interface) ContentFingerprint() string {
	var buf [512]byte
	b := append(buf[:0], ifc.ID...)
	b = append(b, '|')
	b = appendAddr(b, ifc.IP)
	b = append(b, '|')
	b = append(b, ifc.Instance...)
	b = append(b, '|')
	b = strconv.AppendInt(b, int64(ifc.Device), 10)
	b = append(b, '|')
	b = appendAddr(b, ifc.ExternalIP)
	b = append(b, '|')
	b = append(b, ifc.Subnet...)
	b = append(b, '|')
	for _, a := range ifc.Aliases {
		if a.Range.IsValid() {
			b = a.Range.AppendTo(b)
		} else {
			b = append(b, a.Range.String()...)
		}
		b = append(b, '/')
		b = append(b, a.RangeName...)
		b = append(b, ',')
	}
	if ac := ifc.AccessConfig; ac != nil {
		// Appended only when present, so interfaces without one keep
		// the fingerprints they were stored with.
		b = append(b, "ac:"...)
		b = append(b, ac.Name...)
		b = append(b, '/')
		b = append(b, ac.NetworkTier...)
		if ac.Ephemeral {
			b = append(b, "/ephemeral"...)
		}
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// appendAddr appends a's String form ("invalid IP" for the zero Addr,
// which AppendTo would leave empty).
func appendAddr(b []byte, a netip.Addr) []byte {
	if !a.IsValid() {
		return append(b, a.String()...)
	}
	return a.AppendTo(b)
}
