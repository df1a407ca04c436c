package model

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/aliasnet/aliasnet/internal/ipam"
)

// ENIs (Alibaba elastic network interfaces) are Interfaces with Elastic
// set: Available while detached, InUse while attached. An instance made by
// RunInstance has a primary ENI (Primary and Elastic) that cannot be
// detached. Secondary private IPs are /32 aliases of the ENI, IPv6
// addresses /128 aliases and IPv4 prefixes /28 aliases, all from the ENI's
// vSwitch, so they conflict with every other allocation of the VPC in
// either dialect.

// ENI statuses.
const (
	ENIAvailable = "Available"
	ENIInUse     = "InUse"
)

// IPv4PrefixBits is the length of an ENI's IPv4 prefixes.
const IPv4PrefixBits = 28

// Errors of the ENI rules, wrapped in *Error (Err) so that dialects can tell
// them apart with errors.Is and pick their own codes.
var (
	ErrENIState         = errors.New("ENI state forbids the operation")
	ErrDetachPrimary    = errors.New("primary ENI cannot be detached")
	ErrNotElastic       = errors.New("interface is not elastic")
	ErrZoneMismatch     = errors.New("zone mismatch")
	ErrVPCMismatch      = errors.New("VPC mismatch")
	ErrInstanceState    = errors.New("instance state forbids the operation")
	ErrENILimit         = errors.New("ENIs per instance exceeded")
	ErrIPLimit          = errors.New("private addresses per ENI exceeded")
	ErrIPNotInSubnet    = errors.New("address is not assignable in the vSwitch")
	ErrIPAssigned       = errors.New("address is already assigned to the ENI")
	ErrIPNotAssigned    = errors.New("address is not assigned to the ENI")
	ErrIPv6Disabled     = errors.New("vSwitch has no IPv6 block")
	ErrInstanceType     = errors.New("unknown instance type")
	ErrNotZonal         = errors.New("subnet has no zone")
	ErrSecurityGroups   = errors.New("bad security group list")
	ErrBothExplicitAuto = errors.New("explicit addresses and a count in one request")
)

// ENIStatus is Available or InUse.
func (ifc *Interface) ENIStatus() string {
	if ifc.Instance == "" {
		return ENIAvailable
	}
	return ENIInUse
}

// InstanceNamed finds an instance by name in any zone (Alibaba instance
// IDs are unique names).
func (s *State) InstanceNamed(project, name string) *Instance {
	p := s.projects[project]
	if p == nil {
		return nil
	}
	for _, in := range p.instances {
		if in.Name == name {
			return in
		}
	}
	return nil
}

// attachedName is the name of the instance an interface is attached to.
func attachedName(ifc *Interface) string {
	_, n, _ := strings.Cut(ifc.Instance, "/")
	return n
}

// InstanceOf returns the instance an interface is attached to, or nil.
func (s *State) InstanceOf(ifc *Interface) *Instance {
	if ifc.Instance == "" {
		return nil
	}
	z, n, _ := strings.Cut(ifc.Instance, "/")
	return s.Instance(ifc.Project, z, n)
}

// SubnetOf returns the subnet of an interface.
func (s *State) SubnetOf(ifc *Interface) *Subnet {
	r, n := splitKey(ifc.Subnet)
	return s.Subnet(ifc.Project, r, n)
}

// ENIQuotas reports the quotas that apply to an interface now: secondary
// IPv4 slots, IPv6 addresses, and whether its instance's type is known.
func (s *State) ENIQuotas(ifc *Interface) (v4, v6 int) {
	in := s.InstanceOf(ifc)
	var it InstanceType
	known := false
	if in != nil {
		it, known = s.InstanceType(in.MachineType)
	}
	return SecondaryIPv4Quota(in != nil, it, known), IPv6Quota(in != nil, it, known)
}

func checkSecurityGroups(sgs []string) error {
	if len(sgs) < MinENISecurityGroups || len(sgs) > MaxENISecurityGroups {
		return &Error{Code: Invalid, Field: "securityGroupIds", Value: strings.Join(sgs, ","), Err: ErrSecurityGroups,
			Reason: fmt.Sprintf("An ENI belongs to %d to %d security groups, got %d.", MinENISecurityGroups, MaxENISecurityGroups, len(sgs))}
	}
	for i, sg := range sgs {
		if sg == "" || slices.Contains(sgs[:i], sg) {
			return &Error{Code: Invalid, Field: "securityGroupIds", Value: strings.Join(sgs, ","), Err: ErrSecurityGroups,
				Reason: fmt.Sprintf("Security group %q is empty or listed twice.", sg)}
		}
	}
	return nil
}

// allocErr turns an ipam failure on an ENI address into a model error:
// a reserved address is not assignable (ErrIPNotInSubnet), another
// holder is InUse, an empty range Exhausted.
func (s *State) eniAllocErr(err error, field string, value string, sn *Subnet) error {
	var ce *ipam.ConflictError
	if errors.As(err, &ce) && s.OwnerRef(ce.Owner).Kind == "reserved" {
		return &Error{Code: Invalid, Field: field, Value: value, Err: ErrIPNotInSubnet,
			Reason: fmt.Sprintf("The address %s is reserved in vSwitch %s (%s): the first and the last three addresses are.", value, sn.Name, sn.Range)}
	}
	if errors.Is(err, ipam.ErrExhausted) {
		return &Error{Code: Exhausted, Field: field, Value: value, Err: err,
			Reason: fmt.Sprintf("vSwitch %s (%s) has no free address left for %s.", sn.Name, sn.Range, valueOr(value, "an address"))}
	}
	return s.allocError(err, field, value)
}

// RunInstanceReq creates an instance with a primary ENI (Alibaba
// RunInstances / CreateInstance).
type RunInstanceReq struct {
	// Instance: Project, Zone, Name (the instance ID), MachineType (the
	// instance type), Status, Description, Hostname, Extra.
	Instance       Instance
	Subnet         string // "REGION/NAME" of the vSwitch
	ENI            string // ID of the primary ENI
	IP             netip.Addr
	SecurityGroups []string
	// Random makes the automatic pick of the primary address random.
	Random func(uint64) uint64
}

// RunInstance creates an instance and its primary ENI in a vSwitch of the
// instance's zone. The instance type must be in the configured table.
func (t *Txn) RunInstance(req RunInstanceReq) (*Instance, *Interface, error) {
	in := req.Instance
	if err := ValidName("instanceId", in.Name); err != nil {
		return nil, nil, err
	}
	if _, ok := ZoneRegion(in.Zone); !ok {
		return nil, nil, errf(Invalid, "zoneId", in.Zone, "Invalid zone '%s'.", in.Zone)
	}
	if _, ok := t.s.InstanceType(in.MachineType); !ok {
		return nil, nil, &Error{Code: Invalid, Field: "instanceType", Value: in.MachineType, Err: ErrInstanceType,
			Reason: fmt.Sprintf("Instance type %q is not in this server's table (%s).", in.MachineType, strings.Join(t.s.instanceTypes().Names(), ", "))}
	}
	p := t.s.proj(in.Project)
	if t.s.InstanceNamed(in.Project, in.Name) != nil {
		return nil, nil, &Error{Code: AlreadyExists, Reason: fmt.Sprintf("The resource '%s' already exists", InstanceKey(in.Project, in.Zone, in.Name))}
	}
	if p.interfaces[req.ENI] != nil {
		return nil, nil, &Error{Code: AlreadyExists, Reason: fmt.Sprintf("The resource '%s' already exists", InterfaceKey(in.Project, req.ENI))}
	}
	sn := p.subnets[req.Subnet]
	if sn == nil {
		return nil, nil, notFound("subnetwork", subnetKeyOf(in.Project, req.Subnet))
	}
	if sn.Zone == "" {
		return nil, nil, &Error{Code: Invalid, Field: "vSwitchId", Value: sn.Name, Err: ErrNotZonal,
			Reason: fmt.Sprintf("Subnet %s has no zone: it is not a vSwitch.", sn.Name)}
	}
	if sn.Zone != in.Zone {
		return nil, nil, &Error{Code: Invalid, Field: "vSwitchId", Value: sn.Name, Err: ErrZoneMismatch,
			Reason: fmt.Sprintf("vSwitch %s is in zone %s, the instance in zone %s.", sn.Name, sn.Zone, in.Zone)}
	}
	if len(req.SecurityGroups) > MaxENISecurityGroups {
		return nil, nil, checkSecurityGroups(req.SecurityGroups)
	}
	nin := in
	nin.ID = t.NewID()
	nin.Created = t.Now
	if nin.Status == "" {
		nin.Status = InstanceRunning
	}
	ifc := &Interface{
		Project: in.Project, ID: req.ENI, Created: t.Now, Zone: in.Zone, Network: sn.Network,
		Subnet: req.Subnet, Instance: in.Zone + "/" + in.Name, Primary: true, Elastic: true,
		SecurityGroups: slices.Clone(req.SecurityGroups),
	}
	if err := t.takePrimary(p, sn, ifc, req.IP, "privateIpAddress", req.Random); err != nil {
		return nil, nil, err
	}
	ifc.MAC = macFor("00:16", ifc.IP)
	ifc.Fingerprint = ifc.ContentFingerprint()
	t.putInterface(p, ifc)
	nin.NICs = []string{ifc.ID}
	t.putInstance(p, &nin)
	return &nin, ifc, nil
}

func subnetKeyOf(project, regionSlashName string) string {
	r, n := splitKey(regionSlashName)
	return SubnetKey(project, r, n)
}

// takePrimary gives ifc its primary address from sn: ip when valid, else
// an automatic pick.
func (t *Txn) takePrimary(p *project, sn *Subnet, ifc *Interface, ip netip.Addr, field string, rnd func(uint64) uint64) error {
	primary, ok := p.nets[sn.Network].ranges.Get(sn.Range)
	if !ok {
		return fmt.Errorf("subnet %s: primary range not indexed", sn.Name)
	}
	o := t.s.owner(OwnerRef{Kind: "interface", Key: InterfaceKey(p.name, ifc.ID)})
	if ip.IsValid() {
		a := ip.Unmap()
		if !a.Is4() || !sn.Range.Contains(a) {
			return &Error{Code: Invalid, Field: field, Value: ip.String(), Err: ErrIPNotInSubnet,
				Reason: fmt.Sprintf("The address %s is not in vSwitch %s (%s).", ip, sn.Name, sn.Range)}
		}
		if err := t.claim(primary.pool, netip.PrefixFrom(a, 32), o); err != nil {
			return t.s.eniAllocErr(err, field, a.String(), sn)
		}
		ifc.IP = a
		return nil
	}
	pfx, err := t.allocate(primary.pool, 32, o, rnd)
	if err != nil {
		return t.s.eniAllocErr(err, field, "", sn)
	}
	ifc.IP = pfx.Addr()
	return nil
}

// SetECSStatus starts (RUNNING) or stops (TERMINATED) an instance; starting
// a running instance or stopping a stopped one is refused.
func (t *Txn) SetECSStatus(project, name, status string) (*Instance, error) {
	in := t.s.InstanceNamed(project, name)
	if in == nil {
		return nil, notFound("instance", InstanceKey(project, "-", name))
	}
	from := InstanceStopped
	if status == InstanceStopped {
		from = InstanceRunning
	}
	if in.Status != from {
		return nil, &Error{Code: FailedPrecondition, Err: ErrInstanceState,
			Reason: fmt.Sprintf("Instance %s is %s; it must be %s for this operation.", name, in.Status, from)}
	}
	return t.SetInstanceStatus(project, in.Zone, in.Name, status)
}

// DeleteECSInstance deletes an instance: a running one only with force.
// Its primary ENI goes with it (EIPs on it become Available); secondary
// ENIs are detached and become Available.
func (t *Txn) DeleteECSInstance(project, name string, force bool) error {
	in := t.s.InstanceNamed(project, name)
	if in == nil {
		return notFound("instance", InstanceKey(project, "-", name))
	}
	if in.Status != InstanceStopped && !force {
		return &Error{Code: FailedPrecondition, Err: ErrInstanceState,
			Reason: fmt.Sprintf("Instance %s is %s; stop it first or delete with Force.", name, in.Status)}
	}
	p := t.s.projects[project]
	for _, id := range in.NICs {
		if ifc := p.interfaces[id]; ifc != nil && (ifc.Primary || !ifc.Elastic) {
			t.unassociateInterface(p, id)
		}
	}
	for _, e := range sortedValues(p.eips, func(e *EIP) bool {
		return e.InstanceType == EIPToInstance && e.InstanceID == name && slices.Contains(in.NICs, e.Interface)
	}) {
		t.unassociate(p, e)
	}
	return t.DeleteInstance(project, in.Zone, in.Name)
}

// CreateENIReq creates an Available ENI.
type CreateENIReq struct {
	Project, ID, Name, Description string
	Subnet                         string     // "REGION/NAME" of the vSwitch
	IP                             netip.Addr // primary address; zero: automatic
	SecurityGroups                 []string
	Secondary                      AssignReq // secondary addresses to assign at creation (Project and ENI ignored)
	IPv6                           AssignReq // IPv6 addresses (IPs and Count only)
	Random                         func(uint64) uint64
}

// CreateENI creates an Available ENI in a vSwitch with its primary address
// and, all or nothing, the secondary addresses asked for.
func (t *Txn) CreateENI(req CreateENIReq) (*Interface, error) {
	if err := ValidName("networkInterfaceId", req.ID); err != nil {
		return nil, err
	}
	p := t.s.proj(req.Project)
	if p.interfaces[req.ID] != nil {
		return nil, &Error{Code: AlreadyExists, Reason: fmt.Sprintf("The resource '%s' already exists", InterfaceKey(req.Project, req.ID))}
	}
	sn := p.subnets[req.Subnet]
	if sn == nil {
		return nil, notFound("subnetwork", subnetKeyOf(req.Project, req.Subnet))
	}
	if sn.Zone == "" {
		return nil, &Error{Code: Invalid, Field: "vSwitchId", Value: sn.Name, Err: ErrNotZonal,
			Reason: fmt.Sprintf("Subnet %s has no zone: it is not a vSwitch.", sn.Name)}
	}
	if err := checkSecurityGroups(req.SecurityGroups); err != nil {
		return nil, err
	}
	ifc := &Interface{
		Project: req.Project, ID: req.ID, Name: req.Name, Description: req.Description, Created: t.Now,
		Zone: sn.Zone, Network: sn.Network, Subnet: req.Subnet, Elastic: true,
		SecurityGroups: slices.Clone(req.SecurityGroups),
	}
	if err := t.takePrimary(p, sn, ifc, req.IP, "primaryIpAddress", req.Random); err != nil {
		return nil, err
	}
	ifc.MAC = macFor("00:16", ifc.IP)
	ifc.Fingerprint = ifc.ContentFingerprint()
	t.putInterface(p, ifc)
	out := ifc
	if req.Secondary.wants() {
		r := req.Secondary
		r.Project, r.ENI, r.Random = req.Project, req.ID, req.Random
		n, _, err := t.AssignPrivateIPs(r)
		if err != nil {
			return nil, err
		}
		out = n
	}
	if req.IPv6.wants() {
		r := req.IPv6
		r.Project, r.ENI, r.Random = req.Project, req.ID, req.Random
		n, _, err := t.AssignIPv6(r)
		if err != nil {
			return nil, err
		}
		out = n
	}
	return out, nil
}

// AssignReq asks for secondary addresses on an ENI: explicit ones or a
// count picked by the server, never both; likewise for IPv4 prefixes.
type AssignReq struct {
	Project, ENI string
	IPs          []netip.Addr
	Count        int
	Prefixes     []netip.Prefix
	PrefixCount  int
	// Random makes automatic picks random; nil picks lowest-first.
	Random func(uint64) uint64
}

func (r AssignReq) wants() bool {
	return len(r.IPs) > 0 || r.Count != 0 || len(r.Prefixes) > 0 || r.PrefixCount != 0
}

// Assigned is what an assignment took.
type Assigned struct {
	IPs      []netip.Addr
	Prefixes []netip.Prefix
}

// eniForChange looks an interface up for an address change and checks
// its state: an attached primary ENI needs a Running or Stopped instance.
func (t *Txn) eniForChange(project, id string) (*project, *Interface, *Subnet, error) {
	p := t.s.projects[project]
	if p == nil || p.interfaces[id] == nil {
		return nil, nil, nil, notFound("networkInterface", InterfaceKey(project, id))
	}
	ifc := p.interfaces[id]
	sn := t.s.SubnetOf(ifc)
	if sn == nil {
		return nil, nil, nil, fmt.Errorf("interface %s: subnet %s missing", ifc.ID, ifc.Subnet)
	}
	if in := t.s.InstanceOf(ifc); in != nil && ifc.Primary && !instanceSteady(in) {
		return nil, nil, nil, &Error{Code: FailedPrecondition, Err: ErrInstanceState,
			Reason: fmt.Sprintf("Instance %s is %s; it must be Running or Stopped to change the addresses of its primary ENI.", in.Name, in.Status)}
	}
	return p, ifc, sn, nil
}

func instanceSteady(in *Instance) bool {
	return in.Status == InstanceRunning || in.Status == InstanceStopped
}

// eniAssign adds addresses of one family to an ENI within one
// transaction: explicit ones are claimed, counted ones picked, both from
// one range of the ENI's vSwitch, and each lands in aliases and in got.
type eniAssign struct {
	t       *Txn
	p       *project
	ifc     *Interface
	sn      *Subnet
	pool    *ipam.Pool
	o       ipam.Owner
	rnd     func(uint64) uint64
	aliases []Alias
	got     Assigned
}

// startAssign checks that the ENI can take add more addresses of the
// family (IPv6 or IPv4, whose addresses and prefixes share the slots) and
// finds the vSwitch range they come from.
func (t *Txn) startAssign(project, id string, v6 bool, add int, rnd func(uint64) uint64) (*eniAssign, error) {
	p, ifc, sn, err := t.eniForChange(project, id)
	if err != nil {
		return nil, err
	}
	rng := sn.Range
	if v6 {
		if !sn.Range6.IsValid() {
			return nil, &Error{Code: Invalid, Field: "ipv6Address", Err: ErrIPv6Disabled,
				Reason: fmt.Sprintf("vSwitch %s has no IPv6 CIDR block.", sn.Name)}
		}
		rng = sn.Range6
	}
	v4Limit, v6Limit := t.s.ENIQuotas(ifc)
	have, limit := ifc.ipv4Slots(), v4Limit
	if v6 {
		have, limit = ifc.ipv6Slots(), v6Limit
	}
	if have+add > limit {
		return nil, t.quotaErr(ifc, v6, have, add, limit)
	}
	e, ok := p.nets[sn.Network].ranges.Get(rng)
	if !ok {
		which := "primary"
		if v6 {
			which = "IPv6"
		}
		return nil, fmt.Errorf("subnet %s: %s range not indexed", sn.Name, which)
	}
	return &eniAssign{t: t, p: p, ifc: ifc, sn: sn, pool: e.pool, rnd: rnd, aliases: slices.Clone(ifc.Aliases),
		o: t.s.owner(OwnerRef{Kind: "interface", Key: InterfaceKey(p.name, ifc.ID)})}, nil
}

// claim takes q, an address (full-length prefix) or a prefix the caller
// found inside the vSwitch, unless the ENI has it already.
func (a *eniAssign) claim(field string, q netip.Prefix) error {
	v := shortPrefix(q)
	if (q.IsSingleIP() && q.Addr() == a.ifc.IP) || slices.ContainsFunc(a.aliases, func(al Alias) bool { return al.Range == q }) {
		what := "prefix"
		if q.IsSingleIP() {
			what = "address"
		}
		return &Error{Code: Invalid, Field: field, Value: v, Err: ErrIPAssigned,
			Reason: fmt.Sprintf("The %s %s is already assigned to %s.", what, v, a.ifc.ID)}
	}
	if err := a.t.claim(a.pool, q, a.o); err != nil {
		return a.t.s.eniAllocErr(err, field, v, a.sn)
	}
	a.add(q)
	return nil
}

// pick takes n blocks of /bits chosen by the server; what names them in
// the exhaustion message ("addresses", "prefixes").
func (a *eniAssign) pick(n, bits int, field, what string) error {
	for range n {
		q, err := a.t.allocate(a.pool, bits, a.o, a.rnd)
		if err != nil {
			return a.t.s.eniAllocErr(err, field, itoa(n)+" "+what, a.sn)
		}
		a.add(q)
	}
	return nil
}

func (a *eniAssign) add(q netip.Prefix) {
	a.aliases = append(a.aliases, Alias{Range: q})
	if q.IsSingleIP() {
		a.got.IPs = append(a.got.IPs, q.Addr())
	} else {
		a.got.Prefixes = append(a.got.Prefixes, q)
	}
}

// done stores the ENI with its new aliases.
func (a *eniAssign) done() (*Interface, Assigned, error) {
	return a.t.putAliases(a.p, a.ifc, a.aliases), a.got, nil
}

func (t *Txn) quotaErr(ifc *Interface, v6 bool, have, add, limit int) error {
	what := "secondary private IPv4 addresses and prefixes"
	if v6 {
		what = "IPv6 addresses"
	}
	why := "while it is Available"
	if in := t.s.InstanceOf(ifc); in != nil {
		if it, ok := t.s.InstanceType(in.MachineType); ok {
			why = fmt.Sprintf("while it is attached to %s (instance type %s: %d private IPv4 addresses per ENI, the primary one included)", in.Name, it.Name, it.IPv4PerENI)
			if v6 {
				why = fmt.Sprintf("while it is attached to %s (instance type %s: %d IPv6 addresses per ENI)", in.Name, it.Name, it.IPv6PerENI)
			}
		} else {
			why = fmt.Sprintf("while it is attached to %s", in.Name)
		}
	}
	return &Error{Code: QuotaExceeded, Err: ErrIPLimit,
		Reason: fmt.Sprintf("ENI %s has %d %s and asks for %d more; it can hold at most %d %s.", ifc.ID, have, what, add, limit, why)}
}

// AssignPrivateIPs adds secondary private IPv4 addresses (/32) and IPv4
// prefixes (/28) to an ENI, all or nothing. Explicit addresses must lie in
// the ENI's vSwitch and be free in the whole VPC; counts are picked from
// the vSwitch. The ENI's quota applies (SecondaryIPv4Quota).
func (t *Txn) AssignPrivateIPs(req AssignReq) (*Interface, Assigned, error) {
	var got Assigned
	if (len(req.IPs) > 0 && req.Count != 0) || (len(req.Prefixes) > 0 && req.PrefixCount != 0) {
		return nil, got, &Error{Code: Invalid, Field: "secondaryPrivateIpAddressCount", Err: ErrBothExplicitAuto,
			Reason: "Give either explicit addresses (PrivateIpAddress.N, Ipv4Prefix.N) or a count (SecondaryPrivateIpAddressCount, Ipv4PrefixCount), not both."}
	}
	if req.Count < 0 || req.PrefixCount < 0 {
		return nil, got, errf(Invalid, "secondaryPrivateIpAddressCount", itoa(min(req.Count, req.PrefixCount)), "A count must be positive.")
	}
	if !req.wants() {
		return nil, got, &Error{Code: Required, Field: "privateIpAddress",
			Reason: "Required: PrivateIpAddress.N, SecondaryPrivateIpAddressCount, Ipv4Prefix.N or Ipv4PrefixCount."}
	}
	a, err := t.startAssign(req.Project, req.ENI, false, len(req.IPs)+req.Count+len(req.Prefixes)+req.PrefixCount, req.Random)
	if err != nil {
		return nil, got, err
	}
	sn := a.sn
	for i, ip := range req.IPs {
		field := fmt.Sprintf("privateIpAddress.%d", i+1)
		ip = ip.Unmap()
		if !ip.Is4() || !sn.Range.Contains(ip) {
			return nil, a.got, &Error{Code: Invalid, Field: field, Value: ip.String(), Err: ErrIPNotInSubnet,
				Reason: fmt.Sprintf("The address %s is not in vSwitch %s (%s).", ip, sn.Name, sn.Range)}
		}
		if err := a.claim(field, netip.PrefixFrom(ip, 32)); err != nil {
			return nil, a.got, err
		}
	}
	if err := a.pick(req.Count, 32, "secondaryPrivateIpAddressCount", "addresses"); err != nil {
		return nil, a.got, err
	}
	for i, q := range req.Prefixes {
		field := fmt.Sprintf("ipv4Prefix.%d", i+1)
		if !q.Addr().Is4() || q.Bits() != IPv4PrefixBits || q.Masked() != q || !sn.Range.Contains(q.Addr()) || sn.Range.Bits() > q.Bits() {
			return nil, a.got, &Error{Code: Invalid, Field: field, Value: q.String(), Err: ErrIPNotInSubnet,
				Reason: fmt.Sprintf("The IPv4 prefix %s must be an aligned /%d inside vSwitch %s (%s).", q, IPv4PrefixBits, sn.Name, sn.Range)}
		}
		if err := a.claim(field, q); err != nil {
			return nil, a.got, err
		}
	}
	if req.PrefixCount > 0 && sn.Range.Bits() > IPv4PrefixBits {
		return nil, a.got, errf(Invalid, "ipv4PrefixCount", itoa(req.PrefixCount), "vSwitch %s (%s) is smaller than a /%d prefix.", sn.Name, sn.Range, IPv4PrefixBits)
	}
	if err := a.pick(req.PrefixCount, IPv4PrefixBits, "ipv4PrefixCount", "prefixes"); err != nil {
		return nil, a.got, err
	}
	return a.done()
}

func (t *Txn) putAliases(p *project, ifc *Interface, aliases []Alias) *Interface {
	sortAliases(aliases)
	n := *ifc
	n.Aliases = aliases
	n.Fingerprint = n.ContentFingerprint()
	t.putInterface(p, &n)
	return &n
}

// UnassignPrivateIPs removes secondary private IPv4 addresses and prefixes
// from an ENI, all or nothing. Each must be assigned to the ENI (the
// primary address cannot be) and carry no EIP.
func (t *Txn) UnassignPrivateIPs(project, id string, ips []netip.Addr, prefixes []netip.Prefix) (*Interface, error) {
	if len(ips) == 0 && len(prefixes) == 0 {
		return nil, &Error{Code: Required, Field: "privateIpAddress", Reason: "Required: PrivateIpAddress.N or Ipv4Prefix.N."}
	}
	var want []netip.Prefix
	for _, a := range ips {
		want = append(want, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	want = append(want, prefixes...)
	return t.unassign(project, id, want, "privateIpAddress", true)
}

func (t *Txn) unassign(project, id string, want []netip.Prefix, field string, v4 bool) (*Interface, error) {
	p, ifc, sn, err := t.eniForChange(project, id)
	if err != nil {
		return nil, err
	}
	ni := p.nets[sn.Network]
	aliases := slices.Clone(ifc.Aliases)
	for i, q := range want {
		f := fmt.Sprintf("%s.%d", field, i+1)
		if q.Addr().Is4() != v4 {
			return nil, errf(Invalid, f, q.String(), "%s is not an IPv%s address.", q, map[bool]string{true: "4", false: "6"}[v4])
		}
		if q.IsSingleIP() && q.Addr() == ifc.IP {
			return nil, &Error{Code: Invalid, Field: f, Value: q.Addr().String(), Err: ErrIPNotAssigned,
				Reason: fmt.Sprintf("%s is the primary private address of %s; it cannot be unassigned.", q.Addr(), ifc.ID)}
		}
		j := slices.IndexFunc(aliases, func(al Alias) bool { return al.Range == q })
		if j < 0 {
			return nil, &Error{Code: Invalid, Field: f, Value: shortPrefix(q), Err: ErrIPNotAssigned,
				Reason: fmt.Sprintf("%s is not assigned to %s.", shortPrefix(q), ifc.ID)}
		}
		if q.IsSingleIP() {
			if e := t.s.eipOn(p, ifc.ID, q.Addr()); e != nil {
				return nil, &Error{Code: FailedPrecondition, Field: f, Value: q.Addr().String(), Err: ErrEIPAssociated,
					Reason: fmt.Sprintf("%s of %s has the EIP %s (%s) associated; unassociate it first.", q.Addr(), ifc.ID, e.ID, e.Address)}
			}
		}
		if e, ok := ni.rangeFor(q); ok {
			t.release(e.pool, q)
		}
		aliases = slices.Delete(aliases, j, j+1)
	}
	return t.putAliases(p, ifc, aliases), nil
}

func shortPrefix(q netip.Prefix) string {
	if q.IsSingleIP() {
		return q.Addr().String()
	}
	return q.String()
}

// AssignIPv6 adds IPv6 addresses (/128) from the vSwitch's IPv6 block to an
// ENI: explicit ones (IPs) or a count (Count), all or nothing.
func (t *Txn) AssignIPv6(req AssignReq) (*Interface, Assigned, error) {
	var got Assigned
	if len(req.IPs) > 0 && req.Count != 0 {
		return nil, got, &Error{Code: Invalid, Field: "ipv6AddressCount", Err: ErrBothExplicitAuto,
			Reason: "Give either Ipv6Address.N or Ipv6AddressCount, not both."}
	}
	if req.Count < 0 {
		return nil, got, errf(Invalid, "ipv6AddressCount", itoa(req.Count), "A count must be positive.")
	}
	if len(req.IPs) == 0 && req.Count == 0 {
		return nil, got, &Error{Code: Required, Field: "ipv6Address", Reason: "Required: Ipv6Address.N or Ipv6AddressCount."}
	}
	a, err := t.startAssign(req.Project, req.ENI, true, len(req.IPs)+req.Count, req.Random)
	if err != nil {
		return nil, got, err
	}
	sn := a.sn
	for i, ip := range req.IPs {
		field := fmt.Sprintf("ipv6Address.%d", i+1)
		if !ip.Is6() || ip.Is4In6() || !sn.Range6.Contains(ip) {
			return nil, a.got, &Error{Code: Invalid, Field: field, Value: ip.String(), Err: ErrIPNotInSubnet,
				Reason: fmt.Sprintf("The address %s is not in the IPv6 block %s of vSwitch %s.", ip, sn.Range6, sn.Name)}
		}
		if err := a.claim(field, netip.PrefixFrom(ip, 128)); err != nil {
			return nil, a.got, err
		}
	}
	if err := a.pick(req.Count, 128, "ipv6AddressCount", "addresses"); err != nil {
		return nil, a.got, err
	}
	return a.done()
}

// UnassignIPv6 removes IPv6 addresses from an ENI, all or nothing.
func (t *Txn) UnassignIPv6(project, id string, ips []netip.Addr) (*Interface, error) {
	if len(ips) == 0 {
		return nil, &Error{Code: Required, Field: "ipv6Address", Reason: "Required: Ipv6Address.N."}
	}
	want := make([]netip.Prefix, len(ips))
	for i, a := range ips {
		want[i] = netip.PrefixFrom(a, a.BitLen())
	}
	return t.unassign(project, id, want, "ipv6Address", false)
}

// AttachENI attaches an Available ENI to an instance in the same zone and
// VPC that is Running or Stopped, within the instance type's ENI quota;
// the ENI's addresses must fit the type's per-ENI quota. All its
// addresses move with it.
func (t *Txn) AttachENI(project, id, instance string) (*Interface, error) {
	p := t.s.projects[project]
	if p == nil || p.interfaces[id] == nil {
		return nil, notFound("networkInterface", InterfaceKey(project, id))
	}
	ifc := p.interfaces[id]
	if !ifc.Elastic {
		return nil, &Error{Code: FailedPrecondition, Err: ErrNotElastic,
			Reason: fmt.Sprintf("%s is a network interface fixed to its instance, not an ENI.", id)}
	}
	if ifc.Instance != "" {
		return nil, &Error{Code: FailedPrecondition, Err: ErrENIState,
			Reason: fmt.Sprintf("ENI %s is InUse (attached to %s); it must be Available to be attached.", id, attachedName(ifc))}
	}
	in := t.s.InstanceNamed(project, instance)
	if in == nil {
		return nil, notFound("instance", InstanceKey(project, "-", instance))
	}
	if !instanceSteady(in) {
		return nil, &Error{Code: FailedPrecondition, Err: ErrInstanceState,
			Reason: fmt.Sprintf("Instance %s is %s; it must be Running or Stopped to attach an ENI.", instance, in.Status)}
	}
	if in.Zone != ifc.Zone {
		return nil, &Error{Code: FailedPrecondition, Err: ErrZoneMismatch,
			Reason: fmt.Sprintf("ENI %s is in zone %s and instance %s in zone %s; an ENI attaches only to an instance of its zone.", id, ifc.Zone, instance, in.Zone)}
	}
	nics := t.s.NICs(in)
	if len(nics) > 0 && nics[0].Network != ifc.Network {
		return nil, &Error{Code: FailedPrecondition, Err: ErrVPCMismatch,
			Reason: fmt.Sprintf("ENI %s is in VPC %s and instance %s in VPC %s.", id, ifc.Network, instance, nics[0].Network)}
	}
	it, known := t.s.InstanceType(in.MachineType)
	if q := ENIQuota(it, known); len(in.NICs)+1 > q {
		return nil, &Error{Code: QuotaExceeded, Err: ErrENILimit,
			Reason: fmt.Sprintf("Instance %s (type %s) takes at most %d ENIs, the primary one included; it has %d.", instance, in.MachineType, q, len(in.NICs))}
	}
	if q := SecondaryIPv4Quota(true, it, known); ifc.ipv4Slots() > q {
		return nil, &Error{Code: QuotaExceeded, Err: ErrIPLimit,
			Reason: fmt.Sprintf("ENI %s has %d secondary private IPv4 addresses and prefixes; instance type %s allows %d per ENI besides the primary address.", id, ifc.ipv4Slots(), in.MachineType, q)}
	}
	if q := IPv6Quota(true, it, known); ifc.ipv6Slots() > q {
		return nil, &Error{Code: QuotaExceeded, Err: ErrIPLimit,
			Reason: fmt.Sprintf("ENI %s has %d IPv6 addresses; instance type %s allows %d per ENI.", id, ifc.ipv6Slots(), in.MachineType, q)}
	}
	used := map[int]bool{}
	for _, n := range nics {
		used[n.Device] = true
	}
	dev := 0
	for used[dev] {
		dev++
	}
	n := *ifc
	n.Instance, n.Device = in.Zone+"/"+in.Name, dev
	n.Fingerprint = n.ContentFingerprint()
	t.putInterface(p, &n)
	nin := *in
	nin.NICs = append(slices.Clone(in.NICs), id)
	t.putInstance(p, &nin)
	return &n, nil
}

// DetachENI detaches a secondary ENI from its instance (which must be
// Running or Stopped); it becomes Available with all its addresses. When
// instance is set it must be the one the ENI is attached to.
func (t *Txn) DetachENI(project, id, instance string) (*Interface, error) {
	p := t.s.projects[project]
	if p == nil || p.interfaces[id] == nil {
		return nil, notFound("networkInterface", InterfaceKey(project, id))
	}
	ifc := p.interfaces[id]
	if ifc.Primary {
		return nil, &Error{Code: FailedPrecondition, Err: ErrDetachPrimary,
			Reason: fmt.Sprintf("%s is the primary ENI of its instance; it cannot be detached.", id)}
	}
	if !ifc.Elastic {
		return nil, &Error{Code: FailedPrecondition, Err: ErrNotElastic,
			Reason: fmt.Sprintf("%s is a network interface fixed to its instance, not an ENI.", id)}
	}
	in := t.s.InstanceOf(ifc)
	if in == nil {
		return nil, &Error{Code: FailedPrecondition, Err: ErrENIState,
			Reason: fmt.Sprintf("ENI %s is Available (not attached); there is nothing to detach.", id)}
	}
	if instance != "" && instance != in.Name {
		return nil, &Error{Code: FailedPrecondition, Err: ErrENIState,
			Reason: fmt.Sprintf("ENI %s is attached to %s, not to %s.", id, in.Name, instance)}
	}
	if !instanceSteady(in) {
		return nil, &Error{Code: FailedPrecondition, Err: ErrInstanceState,
			Reason: fmt.Sprintf("Instance %s is %s; it must be Running or Stopped to detach an ENI.", in.Name, in.Status)}
	}
	n := *ifc
	n.Instance, n.Device = "", 0
	n.Fingerprint = n.ContentFingerprint()
	t.putInterface(p, &n)
	nin := *in
	nin.NICs = slices.DeleteFunc(slices.Clone(in.NICs), func(x string) bool { return x == id })
	t.putInstance(p, &nin)
	return &n, nil
}

// DeleteENI deletes an Available ENI without EIPs and frees its addresses.
func (t *Txn) DeleteENI(project, id string) error {
	p := t.s.projects[project]
	if p == nil || p.interfaces[id] == nil {
		return notFound("networkInterface", InterfaceKey(project, id))
	}
	ifc := p.interfaces[id]
	if ifc.Instance != "" {
		return &Error{Code: FailedPrecondition, Err: ErrENIState,
			Reason: fmt.Sprintf("ENI %s is InUse (attached to %s); detach it first.", id, attachedName(ifc))}
	}
	if !ifc.Elastic {
		return &Error{Code: FailedPrecondition, Err: ErrNotElastic, Reason: fmt.Sprintf("%s is not an ENI.", id)}
	}
	if es := t.s.EIPsOfInterface(project, id); len(es) > 0 {
		return &Error{Code: FailedPrecondition, Err: ErrEIPAssociated,
			Reason: fmt.Sprintf("ENI %s has the EIP %s (%s) associated; unassociate it first.", id, es[0].ID, es[0].Address)}
	}
	t.releaseInterface(p, ifc)
	t.deleteInterface(p, id)
	return nil
}
