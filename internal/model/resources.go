package model

import (
	"encoding/json"
	"net/netip"
)

// The resource types below are what the store persists (as JSON) and what
// the dialects render. They hold no indexes: State rebuilds those on load.
// Times are RFC 3339 strings set by the control layer, so this package
// needs no clock.

// Network is a VPC network. GCE networks have no CIDR of their own;
// Alibaba VPCs have a primary CIDR block plus secondary blocks (CIDRBlocks).
type Network struct {
	Project     string `json:"project"`
	Name        string `json:"name"`
	ID          uint64 `json:"id,string"`
	Description string `json:"description,omitempty"`
	Created     string `json:"created"`
	// AutoMode networks get one subnet per region from 10.128.0.0/9.
	AutoMode    bool   `json:"autoMode,omitempty"`
	RoutingMode string `json:"routingMode,omitempty"`
	MTU         int    `json:"mtu,omitempty"`
	// CIDRBlocks are VPC address blocks (Alibaba dialect): every subnet
	// must lie inside one of them. Empty means "no restriction" (GCE).
	CIDRBlocks []netip.Prefix `json:"cidrBlocks,omitempty"`
	Peerings   []Peering      `json:"peerings,omitempty"`
	// Extra carries dialect-owned fields this model does not interpret.
	Extra json.RawMessage `json:"extra,omitempty"`
}

// Peering connects two networks (possibly in different projects).
type Peering struct {
	Name string `json:"name"`
	// Peer is "PROJECT/NETWORK".
	Peer  string `json:"peer"`
	State string `json:"state"` // ACTIVE when both sides peer, else INACTIVE
	// ExchangeSubnetRoutes is always true in GCE; kept for the wire shape.
	ExchangeSubnetRoutes bool `json:"exchangeSubnetRoutes"`
}

// ReservePolicy says which addresses of a subnet's primary range are not
// assignable.
type ReservePolicy string

const (
	// ReserveGCE: network, first host (gateway), second-to-last, broadcast.
	ReserveGCE ReservePolicy = "gce"
	// ReserveAlibaba: the first and the last three addresses.
	ReserveAlibaba ReservePolicy = "alibaba"
)

// Subnet has one primary range and up to MaxSecondaryRanges named
// secondary ranges. No range of a network overlaps another range of the
// same network or of a peered network.
type Subnet struct {
	Project     string           `json:"project"`
	Region      string           `json:"region"`
	Name        string           `json:"name"`
	ID          uint64           `json:"id,string"`
	Network     string           `json:"network"`
	Description string           `json:"description,omitempty"`
	Created     string           `json:"created"`
	Range       netip.Prefix     `json:"range"`
	Secondary   []SecondaryRange `json:"secondary,omitempty"`
	// Range6 is an optional IPv6 range (Alibaba vSwitch IPv6 block).
	Range6 netip.Prefix `json:"range6,omitzero"`
	// Zone is set for zonal subnets (Alibaba vSwitches).
	Zone        string          `json:"zone,omitempty"`
	Reserve     ReservePolicy   `json:"reserve"`
	Fingerprint string          `json:"fingerprint"`
	Extra       json.RawMessage `json:"extra,omitempty"`
}

// SecondaryRange is a named range of a subnet.
type SecondaryRange struct {
	Name  string       `json:"name"`
	Range netip.Prefix `json:"range"`
}

// Gateway is the default gateway of every interface in the subnet: the
// first host of the range in GCE, the second-to-last address (one of the
// reserved last three) in an Alibaba vSwitch.
func (s *Subnet) Gateway() netip.Addr {
	if s.Reserve == ReserveAlibaba {
		// Seed 003: a /24 vSwitch's gateway is .253.
		return lastN(s.Range, 2)
	}
	return s.Range.Masked().Addr().Next()
}

// Instance is a VM. Its network interfaces are separate resources
// (Interfaces) so that an ENI can outlive or move between instances; NICs
// lists their IDs in device order (nic0 first).
type Instance struct {
	Project      string   `json:"project"`
	Zone         string   `json:"zone"`
	Name         string   `json:"name"`
	ID           uint64   `json:"id,string"`
	Description  string   `json:"description,omitempty"`
	Created      string   `json:"created"`
	Status       string   `json:"status"`
	MachineType  string   `json:"machineType,omitempty"`
	CanIPForward bool     `json:"canIpForward,omitempty"`
	Tags         []string `json:"tags,omitempty"`
	NICs         []string `json:"nics"`
	Hostname     string   `json:"hostname,omitempty"`
	// Extra carries fields the dialect accepted but the model does not use
	// (disks, metadata, scheduling ...) so they can be echoed back.
	Extra json.RawMessage `json:"extra,omitempty"`
}

// Interface is a network interface: a GCE NIC (fixed to its instance) or
// an Alibaba ENI (own lifecycle, Available when Instance is empty).
type Interface struct {
	Project string `json:"project"`
	ID      string `json:"id"`
	// Name is a user-facing name (ENI name); GCE NICs use "nicN".
	Name        string `json:"name,omitempty"`
	Description string `json:"description,omitempty"`
	Created     string `json:"created"`
	Zone        string `json:"zone"`
	Network     string `json:"network"`
	// Subnet is "REGION/NAME".
	Subnet   string     `json:"subnet"`
	IP       netip.Addr `json:"ip"`
	MAC      string     `json:"mac"`
	Aliases  []Alias    `json:"aliases,omitempty"`
	Instance string     `json:"instance,omitempty"` // "ZONE/NAME" when attached
	Device   int        `json:"device"`             // device index when attached
	// Primary marks an instance's primary interface (not detachable).
	Primary bool `json:"primary,omitempty"`
	// Elastic interfaces (ENIs) can be detached and attached.
	Elastic        bool     `json:"elastic,omitempty"`
	SecurityGroups []string `json:"securityGroups,omitempty"`
	Fingerprint    string   `json:"fingerprint"`
	// ExternalIP is a public address NATed to IP (EIP / accessConfig).
	ExternalIP netip.Addr `json:"externalIp,omitzero"`
	// AccessConfig is the GCE access config of the interface, if it has
	// one (GCE allows one per interface). ExternalIP is its natIP while it
	// holds an address; an Alibaba EIP NATed to IP shows as an access
	// config without this record.
	AccessConfig *AccessConfig   `json:"accessConfig,omitempty"`
	Extra        json.RawMessage `json:"extra,omitempty"`
}

// AccessConfig is what the model keeps of a GCE access config (always
// ONE_TO_ONE_NAT) besides its address.
type AccessConfig struct {
	Name        string `json:"name"`
	NetworkTier string `json:"networkTier"`
	// Ephemeral: the server picked the address (no natIP was asked for).
	// As in GCE it is released when the instance stops and a new one is
	// picked when it starts; an address the user named stays.
	Ephemeral bool `json:"ephemeral,omitempty"`
	// Extra holds the access config's fields the model does not use
	// (setPublicPtr, publicPtrDomainName ...), echoed back as sent.
	Extra json.RawMessage `json:"extra,omitempty"`
}

// Alias is an alias IP range on an interface: a secondary private IP is an
// alias of length /32 or /128. RangeName is empty for the primary range.
type Alias struct {
	Range     netip.Prefix `json:"range"`
	RangeName string       `json:"rangeName,omitempty"`
}

// InstanceTemplate stores a whole instance body as the dialect sent it; the
// model only needs the interface specs to create instances from it.
type InstanceTemplate struct {
	Project     string          `json:"project"`
	Name        string          `json:"name"`
	ID          uint64          `json:"id,string"`
	Description string          `json:"description,omitempty"`
	Created     string          `json:"created"`
	NICs        []NICSpec       `json:"nics"`
	Extra       json.RawMessage `json:"extra,omitempty"`
}

// NICSpec asks for an interface when an instance is created or updated.
type NICSpec struct {
	// Network and Subnet may be partial ("default", "regions/r/subnetworks/s").
	Network string      `json:"network,omitempty"`
	Subnet  string      `json:"subnet,omitempty"`
	IP      netip.Addr  `json:"ip,omitzero"` // zero: ephemeral
	Aliases []AliasSpec `json:"aliases,omitempty"`
	// AccessConfigs ask for an external address (GCE allows at most one).
	AccessConfigs []AccessConfigSpec `json:"accessConfigs,omitempty"`
}

// AccessConfigSpec asks for a GCE access config.
type AccessConfigSpec struct {
	Name        string `json:"name,omitempty"`        // "" is "External NAT"
	Type        string `json:"type,omitempty"`        // "" is ONE_TO_ONE_NAT, the only type
	NetworkTier string `json:"networkTier,omitempty"` // "" is PREMIUM
	// NatIP is the address to take; zero picks an ephemeral one.
	NatIP netip.Addr      `json:"natIP,omitzero"`
	Extra json.RawMessage `json:"extra,omitempty"`
}

// AliasSpec is an alias request in one of GCE's three forms: an explicit
// CIDR, a single IP (stored as a full-length prefix) or a bare netmask
// (Prefix invalid, Bits set) to be allocated.
type AliasSpec struct {
	Prefix    netip.Prefix `json:"prefix,omitzero"`
	Bits      int          `json:"bits,omitempty"`
	RangeName string       `json:"rangeName,omitempty"`
}

// Auto reports whether the spec asks for automatic allocation.
func (a AliasSpec) Auto() bool { return !a.Prefix.IsValid() }

func (a AliasSpec) String() string {
	if a.Auto() {
		return "/" + itoa(a.Bits)
	}
	return a.Prefix.String()
}

// EIP is an elastic (public) IP address taken from the operator's EIP
// pools (Alibaba EIP). It is associated in NAT mode with one private
// address of an interface (or bound to an ENI in BINDED mode); Interface
// is empty while it is Available.
type EIP struct {
	Project     string     `json:"project"`
	ID          string     `json:"id"` // AllocationId
	Name        string     `json:"name,omitempty"`
	Description string     `json:"description,omitempty"`
	Region      string     `json:"region,omitempty"`
	Created     string     `json:"created"`
	Address     netip.Addr `json:"address"`
	// InstanceType is EcsInstance or NetworkInterface; InstanceID names
	// the instance or the ENI as the user did.
	InstanceType string `json:"instanceType,omitempty"`
	InstanceID   string `json:"instanceId,omitempty"`
	// Interface is the ID of the interface whose PrivateIP the address
	// is NATed to.
	Interface string     `json:"interface,omitempty"`
	PrivateIP netip.Addr `json:"privateIp,omitzero"`
	Mode      string     `json:"mode,omitempty"` // NAT or BINDED
	// ForAccessConfig marks an address a GCE access config took from the
	// pools (an ephemeral external IP, or a natIP that was no EIP): it is
	// not an Alibaba EIP, lives exactly as long as the access config
	// holds it, and the EIP calls refuse it. It is stored as an EIP so
	// that both kinds share one index and one set of pools and can never
	// collide (and every replica and store already knows the kind).
	ForAccessConfig bool            `json:"forAccessConfig,omitempty"`
	Extra           json.RawMessage `json:"extra,omitempty"`
}
