package model

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/aliasnet/aliasnet/internal/ipam"
)

// EIP statuses and association kinds (Alibaba names).
const (
	EIPAvailable = "Available"
	EIPInUse     = "InUse"

	EIPToInstance = "EcsInstance"
	EIPToENI      = "NetworkInterface"

	EIPModeNAT    = "NAT"
	EIPModeBinded = "BINDED"
)

// Errors of the EIP rules, wrapped in *Error (Err) so dialects can pick
// their own codes with errors.Is.
var (
	ErrEIPNotInPool   = errors.New("address is not in any EIP pool")
	ErrEIPTaken       = errors.New("address is already allocated")
	ErrEIPExhausted   = errors.New("EIP pools are exhausted")
	ErrEIPState       = errors.New("EIP state forbids the operation")
	ErrEIPDuplicate   = errors.New("the private address already has an EIP")
	ErrEIPAssociated  = errors.New("an EIP is associated with the address")
	ErrPrivateIPNotOn = errors.New("private address is not on the interface")
)

// Status is Available or InUse.
func (e *EIP) Status() string {
	if e.Interface != "" {
		return EIPInUse
	}
	return EIPAvailable
}

// DefaultEIPPools are the external pools of a server started without
// --eip-pool: the three documentation ranges of RFC 5737 (TEST-NET-1, -2
// and -3, 762 usable addresses). They are never routed on the Internet,
// so an address a test or lab installation hands out can never be
// mistaken for, or NATed onto, somebody's real public address; and they
// lie outside RFC 1918 and 100.64.0.0/10, which VPC subnets normally use,
// so an external IP does not shadow an internal one in a trace. Both
// dialects share them: Alibaba EIPs and GCE external IPs.
var DefaultEIPPools = []netip.Prefix{
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
}

// Configure applies the operator's configuration: the instance-type table
// (nil: the shipped one) and the EIP pools (none: DefaultEIPPools). EIPs
// already allocated inside a pool are claimed in it; EIPs outside every
// pool (a pool the operator removed) keep their address but new ones are
// never taken from there. Pools must be valid, masked, unicast and
// disjoint.
func (s *State) Configure(c Config) error {
	var pools []*ipam.Pool
	cfgPools := c.EIPPools
	if len(cfgPools) == 0 {
		cfgPools = DefaultEIPPools
	}
	for i, p := range cfgPools {
		if !p.IsValid() || p.Masked() != p {
			return fmt.Errorf("EIP pool %s: not a valid network prefix", p)
		}
		if err := checkUnicastRange("eipPool", p); err != nil {
			return fmt.Errorf("EIP pool %s: %v", p, err)
		}
		for _, q := range cfgPools[:i] {
			if p.Overlaps(q) {
				return fmt.Errorf("EIP pools %s and %s overlap", q, p)
			}
		}
		pool, err := ipam.NewPool(p)
		if err != nil {
			return err
		}
		// The network and broadcast addresses of an IPv4 pool of more than
		// two addresses are not handed out.
		if p.Addr().Is4() && p.Bits() < 31 {
			o := s.owner(OwnerRef{Kind: "reserved", Key: "eip-pool " + p.String()})
			for _, a := range []netip.Addr{p.Addr(), lastAddr(p)} {
				if err := pool.Claim(netip.PrefixFrom(a, 32), o); err != nil {
					return err
				}
			}
		}
		pools = append(pools, pool)
	}
	for a, key := range s.eipAddrs {
		proj, id := splitKey(key)
		for _, pool := range pools {
			if pool.Range().Contains(a) {
				_ = pool.Release(netip.PrefixFrom(a, a.BitLen())) // a reserved address taken before the pool existed
				if err := pool.Claim(netip.PrefixFrom(a, a.BitLen()), s.owner(OwnerRef{Kind: "eip", Key: EIPKey(proj, id)})); err != nil {
					return fmt.Errorf("EIP %s: %w", key, err)
				}
			}
		}
	}
	s.cfg = Config{InstanceTypes: c.InstanceTypes, EIPPools: slices.Clone(c.EIPPools)}
	s.eipPools = pools
	return nil
}

// EIPPools returns the configured pools with how many addresses each has
// allocated.
func (s *State) EIPPools() []RangeUse {
	var out []RangeUse
	for _, p := range s.eipPools {
		out = append(out, RangeUse{Range: p.Range(), Allocated: p.Len()})
	}
	return out
}

// indexEIP adds a stored EIP on load.
func (s *State) indexEIP(e *EIP) error {
	if prev, ok := s.eipAddrs[e.Address]; ok {
		return fmt.Errorf("address %s is also held by EIP %s", e.Address, prev)
	}
	s.proj(e.Project).eips[e.ID] = e
	s.eipAddrs[e.Address] = e.Project + "/" + e.ID
	return nil
}

func (t *Txn) putEIP(p *project, e *EIP) {
	putMap(t, p.eips, e.ID, e)
	t.record(EIPKey(p.name, e.ID), e)
}

func (t *Txn) deleteEIP(p *project, id string) {
	putMap[string, EIP](t, p.eips, id, nil)
	t.record(EIPKey(p.name, id), nil)
}

func (t *Txn) setEIPAddr(a netip.Addr, key string) {
	m := t.s.eipAddrs
	old, had := m[a]
	if key == "" {
		delete(m, a)
	} else {
		m[a] = key
	}
	t.undo = append(t.undo, func() {
		if had {
			m[a] = old
		} else {
			delete(m, a)
		}
	})
}

// EIP returns an EIP or nil.
func (s *State) EIP(p, id string) *EIP {
	if pr := s.projects[p]; pr != nil {
		return pr.eips[id]
	}
	return nil
}

// EIPs lists a project's EIPs by AllocationId.
func (s *State) EIPs(p string) []*EIP {
	if pr := s.projects[p]; pr != nil {
		return sortedValues(pr.eips, nil)
	}
	return nil
}

// EIPsOfInterface lists the EIPs associated with an interface.
func (s *State) EIPsOfInterface(p, ifcID string) []*EIP {
	if pr := s.projects[p]; pr != nil {
		return sortedValues(pr.eips, func(e *EIP) bool { return e.Interface == ifcID })
	}
	return nil
}

// eipOn returns the EIP associated with private address a of an interface.
func (s *State) eipOn(p *project, ifcID string, a netip.Addr) *EIP {
	for _, e := range p.eips {
		if e.Interface == ifcID && e.PrivateIP == a {
			return e
		}
	}
	return nil
}

func (s *State) eipOwner(project, id string) ipam.Owner {
	return s.owner(OwnerRef{Kind: "eip", Key: EIPKey(project, id)})
}

// AllocateEIP takes an address from the EIP pools: e.Address when set
// (it must lie in a pool and be free), else a random free one.
func (t *Txn) AllocateEIP(e EIP) (*EIP, error) {
	if err := ValidName("allocationId", e.ID); err != nil {
		return nil, err
	}
	p := t.s.proj(e.Project)
	if p.eips[e.ID] != nil {
		return nil, &Error{Code: AlreadyExists, Reason: fmt.Sprintf("The resource '%s' already exists", EIPKey(e.Project, e.ID))}
	}
	a, err := t.takeExternal(e.Address, t.s.eipOwner(e.Project, e.ID), "ipAddress")
	if err != nil {
		return nil, err
	}
	ne := e
	ne.Address = a
	ne.Created = t.Now
	ne.InstanceType, ne.InstanceID, ne.Interface, ne.PrivateIP, ne.Mode = "", "", "", netip.Addr{}, ""
	ne.ForAccessConfig = false
	t.putEIP(p, &ne)
	t.setEIPAddr(ne.Address, e.Project+"/"+e.ID)
	return &ne, nil
}

// takeExternal claims a in the external pools for o or, when a is zero,
// picks a random free address there: the one allocation rule of Alibaba
// EIPs and GCE external IPs. Errors are in Alibaba's words (field names
// the address); the GCE dialect rewords InUse and Exhausted.
func (t *Txn) takeExternal(a netip.Addr, o ipam.Owner, field string) (netip.Addr, error) {
	if !a.IsValid() {
		for _, pool := range t.s.eipPools {
			if pfx, err := t.allocate(pool, pool.Range().Addr().BitLen(), o, t.Random()); err == nil {
				return pfx.Addr(), nil
			}
		}
		return netip.Addr{}, &Error{Code: Exhausted, Err: ErrEIPExhausted,
			Reason: fmt.Sprintf("No EIP address is left in the pools of this server (%s).", t.s.poolList())}
	}
	a = a.Unmap()
	var pool *ipam.Pool
	for _, q := range t.s.eipPools {
		if q.Range().Contains(a) {
			pool = q
		}
	}
	if pool == nil {
		return netip.Addr{}, &Error{Code: Invalid, Field: field, Value: a.String(), Err: ErrEIPNotInPool,
			Reason: fmt.Sprintf("The address %s is not in any EIP pool of this server (%s).", a, t.s.poolList())}
	}
	if err := t.claim(pool, netip.PrefixFrom(a, a.BitLen()), o); err != nil {
		var ce *ipam.ConflictError
		if errors.As(err, &ce) && t.s.OwnerRef(ce.Owner).Kind == "reserved" {
			return netip.Addr{}, &Error{Code: Invalid, Field: field, Value: a.String(), Err: ErrEIPNotInPool,
				Reason: fmt.Sprintf("The address %s is the network or broadcast address of EIP pool %s.", a, pool.Range())}
		}
		return netip.Addr{}, &Error{Code: InUse, Field: field, Value: a.String(), Err: ErrEIPTaken,
			Reason: fmt.Sprintf("The EIP address %s is already allocated.", a)}
	}
	return a, nil
}

// externalHolder names what holds an external address: the instance
// whose access config has it, else the EIP.
func (s *State) externalHolder(a netip.Addr) string {
	key, ok := s.eipAddrs[a]
	if !ok {
		return ""
	}
	proj, id := splitKey(key)
	e := s.EIP(proj, id)
	if e != nil && e.Interface != "" {
		if ifc := s.Interface(proj, e.Interface); ifc != nil && ifc.Instance != "" {
			return instanceOfKey(proj, ifc.Instance)
		}
	}
	return EIPKey(proj, id)
}

func (s *State) poolList() string {
	if len(s.eipPools) == 0 {
		return "none configured; start the server with --eip-pool CIDR"
	}
	var out string
	for i, p := range s.eipPools {
		if i > 0 {
			out += ", "
		}
		out += p.Range().String()
	}
	return out
}

// eipOrErr finds an EIP for the EIP calls, which leave the addresses of
// GCE access configs alone: those come and go with the access config.
func (s *State) eipOrErr(project, id string) (*project, *EIP, error) {
	p := s.projects[project]
	if p == nil || p.eips[id] == nil {
		return nil, nil, notFound("eip", EIPKey(project, id))
	}
	e := p.eips[id]
	if e.ForAccessConfig {
		return nil, nil, &Error{Code: FailedPrecondition, Err: ErrEIPState,
			Reason: fmt.Sprintf("%s (%s) is the external IP of a GCE access config of %s, not an EIP; delete the access config (instances.deleteAccessConfig) instead.", e.ID, e.Address, s.externalHolder(e.Address))}
	}
	return p, e, nil
}

// AssociateEIPReq associates an EIP with an instance (its primary ENI) or
// an ENI.
type AssociateEIPReq struct {
	Project      string
	ID           string
	InstanceType string // EcsInstance (default) or NetworkInterface
	InstanceID   string // instance name or ENI ID
	// PrivateIP is the private address to NAT to; required for an ENI,
	// the primary address of the instance by default.
	PrivateIP netip.Addr
	Mode      string // NAT (default) or BINDED
}

// AssociateEIP associates an Available EIP. The private address must be
// the primary or a secondary address of the interface and carry no other
// EIP; BINDED mode is for an ENI's primary address only.
func (t *Txn) AssociateEIP(req AssociateEIPReq) (*EIP, error) {
	p, e, err := t.s.eipOrErr(req.Project, req.ID)
	if err != nil {
		return nil, err
	}
	if e.Interface != "" {
		return nil, &Error{Code: FailedPrecondition, Err: ErrEIPState,
			Reason: fmt.Sprintf("The EIP %s (%s) is already associated with %s; unassociate it first.", e.ID, e.Address, e.InstanceID)}
	}
	kind := req.InstanceType
	if kind == "" {
		kind = EIPToInstance
	}
	mode := req.Mode
	if mode == "" {
		mode = EIPModeNAT
	}
	if mode != EIPModeNAT && mode != EIPModeBinded {
		return nil, errf(Invalid, "mode", req.Mode, "Mode must be NAT or BINDED.")
	}
	if req.InstanceID == "" {
		return nil, &Error{Code: Required, Field: "instanceId", Reason: "Required field 'instanceId' not specified"}
	}
	var ifc *Interface
	switch kind {
	case EIPToInstance:
		in := t.s.InstanceNamed(req.Project, req.InstanceID)
		if in == nil {
			return nil, notFound("instance", InstanceKey(req.Project, "-", req.InstanceID))
		}
		for _, n := range t.s.NICs(in) {
			if n.Primary {
				ifc = n
			}
		}
		if ifc == nil {
			return nil, errf(Invalid, "instanceId", req.InstanceID, "Instance %s has no primary network interface.", req.InstanceID)
		}
		if mode == EIPModeBinded {
			return nil, errf(Invalid, "mode", mode, "BINDED mode is only for an ENI (InstanceType NetworkInterface).")
		}
	case EIPToENI:
		ifc = p.interfaces[req.InstanceID]
		if ifc == nil {
			return nil, notFound("networkInterface", InterfaceKey(req.Project, req.InstanceID))
		}
		if !req.PrivateIP.IsValid() {
			return nil, &Error{Code: Required, Field: "privateIpAddress", Reason: "Required field 'privateIpAddress' not specified: associating an EIP with an ENI names the private address to NAT to"}
		}
	default:
		return nil, errf(Invalid, "instanceType", req.InstanceType, "InstanceType must be EcsInstance or NetworkInterface.")
	}
	if e.Region != "" {
		if r, _ := ZoneRegion(ifc.Zone); r != e.Region {
			return nil, errf(Invalid, "instanceId", req.InstanceID, "The EIP %s is in region %s, %s is in region %s.", e.ID, e.Region, req.InstanceID, r)
		}
	}
	priv := req.PrivateIP.Unmap()
	if !priv.IsValid() {
		priv = ifc.IP
	}
	if priv != ifc.IP && !slices.ContainsFunc(ifc.Aliases, func(a Alias) bool { return a.Range == netip.PrefixFrom(priv, priv.BitLen()) }) {
		return nil, &Error{Code: Invalid, Field: "privateIpAddress", Value: priv.String(), Err: ErrPrivateIPNotOn,
			Reason: fmt.Sprintf("The private address %s is not assigned to %s.", priv, ifc.ID)}
	}
	if mode == EIPModeBinded && priv != ifc.IP {
		return nil, errf(Invalid, "mode", mode, "BINDED mode associates the EIP with the ENI's primary private address %s.", ifc.IP)
	}
	if other := t.s.eipOn(p, ifc.ID, priv); other != nil {
		return nil, &Error{Code: FailedPrecondition, Err: ErrEIPDuplicate,
			Reason: fmt.Sprintf("The private address %s of %s already has the EIP %s (%s).", priv, ifc.ID, other.ID, other.Address)}
	}
	if priv == ifc.IP && ifc.AccessConfig != nil {
		// A stopped instance's ephemeral access config holds no address
		// but takes one again when the instance starts.
		return nil, &Error{Code: FailedPrecondition, Err: ErrEIPDuplicate,
			Reason: fmt.Sprintf("The private address %s of %s has the GCE access config '%s'; delete it first.", priv, ifc.ID, ifc.AccessConfig.Name)}
	}
	ne := *e
	ne.InstanceType, ne.InstanceID, ne.Interface, ne.PrivateIP, ne.Mode = kind, req.InstanceID, ifc.ID, priv, mode
	t.putEIP(p, &ne)
	if priv == ifc.IP {
		n := *ifc
		n.ExternalIP = ne.Address
		n.Fingerprint = n.ContentFingerprint()
		t.putInterface(p, &n)
	}
	return &ne, nil
}

// UnassociateEIP ends an EIP's association. When instanceID is set it must
// name what the EIP is associated with.
func (t *Txn) UnassociateEIP(project, id, instanceID string) (*EIP, error) {
	p, e, err := t.s.eipOrErr(project, id)
	if err != nil {
		return nil, err
	}
	if e.Interface == "" {
		return nil, &Error{Code: FailedPrecondition, Err: ErrEIPState,
			Reason: fmt.Sprintf("The EIP %s (%s) is not associated with anything.", e.ID, e.Address)}
	}
	if instanceID != "" && instanceID != e.InstanceID {
		return nil, &Error{Code: Invalid, Field: "instanceId", Value: instanceID, Err: ErrEIPState,
			Reason: fmt.Sprintf("The EIP %s is associated with %s, not with %s.", e.ID, e.InstanceID, instanceID)}
	}
	t.unassociate(p, e)
	return p.eips[id], nil
}

// unassociate ends an association. An access config's own address goes
// back to the pools; an EIP a GCE access config used takes the access
// config with it, as a GCE static address leaves no access config behind.
func (t *Txn) unassociate(p *project, e *EIP) {
	if ifc := p.interfaces[e.Interface]; ifc != nil && ifc.ExternalIP == e.Address {
		n := *ifc
		n.ExternalIP = netip.Addr{}
		if n.AccessConfig != nil && !e.ForAccessConfig {
			n.AccessConfig = nil
		}
		n.Fingerprint = n.ContentFingerprint()
		t.putInterface(p, &n)
	}
	if e.ForAccessConfig {
		t.releaseExternal(p, e)
		return
	}
	ne := *e
	ne.InstanceType, ne.InstanceID, ne.Interface, ne.PrivateIP, ne.Mode = "", "", "", netip.Addr{}, ""
	t.putEIP(p, &ne)
}

// ReleaseEIP gives an Available EIP's address back to its pool.
func (t *Txn) ReleaseEIP(project, id string) error {
	p, e, err := t.s.eipOrErr(project, id)
	if err != nil {
		return err
	}
	if e.Interface != "" {
		return &Error{Code: FailedPrecondition, Err: ErrEIPState,
			Reason: fmt.Sprintf("The EIP %s (%s) is associated with %s; unassociate it before releasing it.", e.ID, e.Address, e.InstanceID)}
	}
	t.releaseExternal(p, e)
	return nil
}

// releaseExternal gives an EIP record's address back to its pool and
// deletes the record.
func (t *Txn) releaseExternal(p *project, e *EIP) {
	for _, pool := range t.s.eipPools {
		if pool.Range().Contains(e.Address) {
			t.release(pool, netip.PrefixFrom(e.Address, e.Address.BitLen()))
		}
	}
	t.setEIPAddr(e.Address, "")
	t.deleteEIP(p, e.ID)
}

// unassociateInterface ends every EIP association of an interface (it is
// going away).
func (t *Txn) unassociateInterface(p *project, ifcID string) {
	for _, e := range sortedValues(p.eips, func(e *EIP) bool { return e.Interface == ifcID }) {
		t.unassociate(p, e)
	}
}

// Random returns the transaction's random source for picks that should be
// random (Alibaba picks secondary addresses at random).
func (t *Txn) Random() func(uint64) uint64 {
	return func(n uint64) uint64 {
		if n == 0 {
			return 0
		}
		return t.NewID() % n
	}
}
