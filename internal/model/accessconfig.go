package model

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// GCE access configs give a NIC an external IPv4 address, NATed one to
// one to its primary IP. The address comes from the same external pools
// as Alibaba EIPs (--eip-pool, DefaultEIPPools) and is recorded as an EIP
// with ForAccessConfig set, so the two dialects can never hand out one
// address twice. A natIP that is an Available EIP of the project is used
// as GCE uses a reserved static address: associated while the access
// config exists, Available again after.

// Access config values GCE defines.
const (
	AccessConfigType        = "ONE_TO_ONE_NAT"
	DefaultAccessConfigName = "External NAT"
	TierPremium             = "PREMIUM"
	TierStandard            = "STANDARD"
)

// accessConfigEIPID is the ID of the EIP record holding an interface's
// access config address: one per interface, as GCE allows one access
// config per interface.
func accessConfigEIPID(ifcID string) string { return "ac-" + ifcID }

// checkAccessConfigs: at most one access config per interface (GCE's
// rule), each valid. field is the interface's path.
func checkAccessConfigs(specs []AccessConfigSpec, field string) error {
	if len(specs) > 1 {
		return errf(Invalid, field+".accessConfigs", "", "At most one access config currently supported; got %d.", len(specs))
	}
	for j, ac := range specs {
		if err := checkAccessConfig(ac, fmt.Sprintf("%s.accessConfigs[%d].", field, j)); err != nil {
			return err
		}
	}
	return nil
}

// checkAccessConfig: type ONE_TO_ONE_NAT, tier PREMIUM or STANDARD, natIP
// IPv4. prefix is prepended to field names ("" for an addAccessConfig
// body, "networkInterfaces[0].accessConfigs[0]." inside an instance).
func checkAccessConfig(ac AccessConfigSpec, prefix string) error {
	switch ac.Type {
	case "", AccessConfigType:
	case "DIRECT_IPV6":
		return errf(Invalid, prefix+"type", ac.Type, "DIRECT_IPV6 is the type of ipv6AccessConfigs; accessConfigs are ONE_TO_ONE_NAT.")
	default:
		return errf(Invalid, prefix+"type", ac.Type, "The access config type must be ONE_TO_ONE_NAT.")
	}
	switch ac.NetworkTier {
	case "", TierPremium, TierStandard:
	default:
		return errf(Invalid, prefix+"networkTier", ac.NetworkTier, "The network tier must be PREMIUM or STANDARD.")
	}
	if ac.NatIP.IsValid() && !ac.NatIP.Unmap().Is4() {
		return errf(Invalid, prefix+"natIP", ac.NatIP.String(), "An access config's natIP is an IPv4 address.")
	}
	return nil
}

// ShownAccessConfig is the access config a dialect renders for an
// interface, nil when it has none: its own, or the default one an EIP
// NATed to its primary IP stands for.
func (ifc *Interface) ShownAccessConfig() *AccessConfig {
	if ifc.AccessConfig != nil {
		return ifc.AccessConfig
	}
	if ifc.ExternalIP.IsValid() {
		return &AccessConfig{Name: DefaultAccessConfigName, NetworkTier: TierPremium}
	}
	return nil
}

// attachAccessConfig gives ifc, an interface of instance in, the access
// config ac and returns the changed copy (not yet stored). prefix names
// the access config's fields in errors.
func (t *Txn) attachAccessConfig(p *project, in *Instance, ifc *Interface, ac AccessConfigSpec, prefix string) (*Interface, error) {
	if err := checkAccessConfig(ac, prefix); err != nil {
		return nil, err
	}
	if ifc.Elastic {
		return nil, &Error{Code: FailedPrecondition, Field: "networkInterface",
			Reason: fmt.Sprintf("%s of instance '%s' is an Alibaba ENI: give it an external address with an EIP (AssociateEipAddress), not an access config.", ifc.Name, in.Name)}
	}
	if cur := ifc.ShownAccessConfig(); cur != nil {
		return nil, errf(Invalid, "networkInterface", fmt.Sprintf("nic%d", ifc.Device),
			"At most one access config currently supported: network interface 'nic%d' of instance '%s' already has '%s'.", ifc.Device, in.Name, cur.Name)
	}
	n := *ifc
	n.AccessConfig = &AccessConfig{Name: ac.Name, NetworkTier: ac.NetworkTier, Ephemeral: !ac.NatIP.IsValid(), Extra: ac.Extra}
	if n.AccessConfig.Name == "" {
		n.AccessConfig.Name = DefaultAccessConfigName
	}
	if n.AccessConfig.NetworkTier == "" {
		n.AccessConfig.NetworkTier = TierPremium
	}
	switch {
	case ac.NatIP.IsValid():
		a, err := t.takeNatIP(p, in, &n, ac.NatIP.Unmap(), prefix+"natIP")
		if err != nil {
			return nil, err
		}
		n.ExternalIP = a
	case in.Status != InstanceStopped:
		a, err := t.takeNatIP(p, in, &n, netip.Addr{}, prefix+"natIP")
		if err != nil {
			return nil, err
		}
		n.ExternalIP = a
	}
	n.Fingerprint = n.ContentFingerprint()
	return &n, nil
}

// takeNatIP gives ifc the external address a, or an ephemeral one when a
// is zero. An Available EIP of the project in the instance's region is
// associated; any other address is taken from the pools for the access
// config alone.
func (t *Txn) takeNatIP(p *project, in *Instance, ifc *Interface, a netip.Addr, field string) (netip.Addr, error) {
	region, _ := ZoneRegion(in.Zone)
	if a.IsValid() {
		if key, held := t.s.eipAddrs[a]; held {
			proj, id := splitKey(key)
			e := p.eips[id]
			if proj != p.name || e == nil || e.ForAccessConfig || e.Interface != "" {
				return netip.Addr{}, &Error{Code: InUse, Field: field, Value: a.String(), Holder: t.s.externalHolder(a), Err: ErrEIPTaken,
					Reason: fmt.Sprintf("IP '%s' is already being used by another resource.", a)}
			}
			if e.Region != "" && e.Region != region {
				return netip.Addr{}, errf(Invalid, field, a.String(), "The specified external IP address '%s' was not found in region '%s' (EIP %s is in region %s).", a, region, e.ID, e.Region)
			}
			ne := *e
			ne.InstanceType, ne.InstanceID, ne.Interface, ne.PrivateIP, ne.Mode = EIPToInstance, in.Name, ifc.ID, ifc.IP, EIPModeNAT
			t.putEIP(p, &ne)
			return a, nil
		}
	}
	id := accessConfigEIPID(ifc.ID)
	got, err := t.takeExternal(a, t.s.eipOwner(p.name, id), field)
	if err != nil {
		var me *Error
		if errors.As(err, &me) {
			switch me.Code {
			case InUse:
				me.Holder = t.s.externalHolder(a)
				me.Reason = fmt.Sprintf("IP '%s' is already being used by another resource.", a)
			case Exhausted:
				me.Field = field
				me.Reason = fmt.Sprintf("No external IP address is left in the pools of this server (%s): start it with more --eip-pool ranges, or create the instance without an access config (gcloud/aliasnet --no-address).", t.s.poolList())
			}
		}
		return netip.Addr{}, err
	}
	t.putEIP(p, &EIP{Project: p.name, ID: id, Name: ifc.AccessConfig.Name, Region: region, Created: t.Now, Address: got,
		InstanceType: EIPToInstance, InstanceID: in.Name, Interface: ifc.ID, PrivateIP: ifc.IP, Mode: EIPModeNAT, ForAccessConfig: true})
	t.setEIPAddr(got, p.name+"/"+id)
	return got, nil
}

// dropExternalIP ends what backs an interface's external address: an
// access config's own address goes back to the pools, an EIP becomes
// Available. It returns the interface as it is afterwards.
func (t *Txn) dropExternalIP(p *project, ifc *Interface) *Interface {
	if ifc.ExternalIP.IsValid() {
		if e := t.s.eipOn(p, ifc.ID, ifc.IP); e != nil {
			t.unassociate(p, e)
		}
	}
	return p.interfaces[ifc.ID]
}

// AddAccessConfig adds an access config to an instance's NIC (GCE
// instances.addAccessConfig).
func (t *Txn) AddAccessConfig(project, zone, name, nic string, ac AccessConfigSpec) (*Interface, error) {
	p, in, ifc, err := t.s.lookupNIC(project, zone, name, nic)
	if err != nil {
		return nil, err
	}
	n, err := t.attachAccessConfig(p, in, ifc, ac, "")
	if err != nil {
		return nil, err
	}
	t.putInterface(p, n)
	return n, nil
}

// DeleteAccessConfig removes the access config named accessConfig from an
// instance's NIC (GCE instances.deleteAccessConfig): an ephemeral address
// is released, an EIP becomes Available.
func (t *Txn) DeleteAccessConfig(project, zone, name, nic, accessConfig string) (*Interface, error) {
	p, _, ifc, err := t.s.lookupNIC(project, zone, name, nic)
	if err != nil {
		return nil, err
	}
	cur := ifc.ShownAccessConfig()
	if cur == nil {
		return nil, errf(Invalid, "accessConfig", accessConfig, "Network interface '%s' of instance '%s' has no access config.", nic, name)
	}
	if cur.Name != accessConfig {
		return nil, errf(Invalid, "accessConfig", accessConfig, "Network interface '%s' of instance '%s' has no access config named '%s' (its access config is '%s').", nic, name, accessConfig, cur.Name)
	}
	n := *t.dropExternalIP(p, ifc)
	if n.AccessConfig != nil {
		n.AccessConfig = nil
		n.Fingerprint = n.ContentFingerprint()
		t.putInterface(p, &n)
	}
	return &n, nil
}

// accessConfigsOnPower follows GCE when an instance stops or starts:
// ephemeral external addresses are released at stop, and every ephemeral
// access config without an address gets a new one at start.
func (t *Txn) accessConfigsOnPower(p *project, in *Instance, running bool) error {
	for _, ifc := range t.s.NICs(in) {
		ac := ifc.AccessConfig
		if ac == nil || !ac.Ephemeral || ifc.ExternalIP.IsValid() == running {
			continue
		}
		if !running {
			t.dropExternalIP(p, ifc)
			continue
		}
		n := *ifc
		a, err := t.takeNatIP(p, in, &n, netip.Addr{}, fmt.Sprintf("networkInterfaces[%d].accessConfigs[0].natIP", ifc.Device))
		if err != nil {
			return err
		}
		n.ExternalIP = a
		n.Fingerprint = n.ContentFingerprint()
		t.putInterface(p, &n)
	}
	return nil
}

// instanceOfKey is the instance key an interface's Instance field
// ("ZONE/NAME") stands for.
func instanceOfKey(project, zoneName string) string {
	z, n, _ := strings.Cut(zoneName, "/")
	return InstanceKey(project, z, n)
}
