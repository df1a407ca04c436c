package model

// VPC-native Kubernetes clusters (GKE "alias IP" clusters).
//
// A cluster lives in one subnet and names two of its secondary ranges: the
// pods range, from which every node gets one aligned block as an alias IP
// range on nic0 (its pod CIDR), and the services range, from which service
// (cluster) IPs are handed out one address at a time. Pod IPs are therefore
// ordinary alias addresses of the network: routed to their node by the
// fabric, checked by anti-spoofing, never overlapping anything else.
//
// Three resource kinds are stored, so that a node joining a 5,000-node
// cluster writes one small record rather than the whole cluster:
//
//	projects/P/locations/L/clusters/C                      Cluster
//	projects/P/locations/L/clusters/C/nodes/ZONE/INSTANCE  ClusterNode
//	projects/P/locations/L/clusters/C/serviceIPs/NAME      ServiceIP
//
// The pod block of a node is held by the node's interface (an alias like
// any other, so the GCE dialect and the metadata server show it); the
// ClusterNode record only says the instance belongs to the cluster and
// which of its aliases is the pod range. Service IPs are held by their
// ServiceIP record (ipam owner kind "service").

import (
	"encoding/json"
	"fmt"
	"math/bits"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Cluster defaults and limits, as GKE has them.
const (
	DefaultMaxPodsPerNode = 110
	MinMaxPodsPerNode     = 8
	MaxMaxPodsPerNode     = 256
	// Ranges aliasnet creates when the request names none.
	DefaultPodsRangeBits     = 14
	DefaultServicesRangeBits = 20
	DefaultNodeSubnetBits    = 20
	DefaultMachineType       = "e2-medium"
	ClusterRunning           = "RUNNING"
	maxClusterName           = 40
)

// Cluster is a Kubernetes cluster's address plan.
type Cluster struct {
	Project     string `json:"project"`
	Location    string `json:"location"` // zone, or region for regional clusters
	Name        string `json:"name"`
	ID          uint64 `json:"id,string"`
	Description string `json:"description,omitempty"`
	Created     string `json:"created"`
	Status      string `json:"status"`
	Network     string `json:"network"`
	Subnet      string `json:"subnet"` // "REGION/NAME"
	// PodsRange and ServicesRange name secondary ranges of Subnet.
	PodsRange     string `json:"podsRange"`
	ServicesRange string `json:"servicesRange"`
	// What aliasnet created for the cluster and removes with it.
	CreatedSubnet        bool `json:"createdSubnet,omitempty"`
	CreatedPodsRange     bool `json:"createdPodsRange,omitempty"`
	CreatedServicesRange bool `json:"createdServicesRange,omitempty"`
	// MaxPodsPerNode is the cluster default; it sizes each node's block.
	MaxPodsPerNode int        `json:"maxPodsPerNode"`
	NodePools      []NodePool `json:"nodePools,omitempty"`
	// Extra carries dialect-owned fields (echoed back, not interpreted).
	Extra json.RawMessage `json:"extra,omitempty"`
}

// NodePool is a set of like nodes. Its size is the number of its
// ClusterNode records (per zone for regional clusters), not stored here.
type NodePool struct {
	Name           string          `json:"name"`
	MachineType    string          `json:"machineType,omitempty"`
	MaxPodsPerNode int             `json:"maxPodsPerNode,omitempty"` // 0: the cluster's
	Zones          []string        `json:"zones,omitempty"`
	Created        string          `json:"created"`
	Extra          json.RawMessage `json:"extra,omitempty"`
}

// ClusterNode records that an instance is a node of a cluster and which of
// its nic0 aliases is its pod range.
type ClusterNode struct {
	Project  string       `json:"project"`
	Location string       `json:"location"`
	Cluster  string       `json:"cluster"`
	Pool     string       `json:"pool"`
	Zone     string       `json:"zone"`
	Instance string       `json:"instance"`
	PodRange netip.Prefix `json:"podRange"`
	// Managed nodes were created by their pool and are deleted when they
	// leave; joined ones only lose their pod range.
	Managed bool   `json:"managed,omitempty"`
	Created string `json:"created"`
}

// ServiceIP is one address taken from a cluster's services range.
type ServiceIP struct {
	Project  string     `json:"project"`
	Location string     `json:"location"`
	Cluster  string     `json:"cluster"`
	Name     string     `json:"name"`
	IP       netip.Addr `json:"ip"`
	Created  string     `json:"created"`
}

// Store keys.
func ClusterKey(p, loc, n string) string {
	return "projects/" + p + "/locations/" + loc + "/clusters/" + n
}
func ClusterNodeKey(p, loc, c, zone, inst string) string {
	return ClusterKey(p, loc, c) + "/nodes/" + zone + "/" + inst
}
func ServiceIPKey(p, loc, c, name string) string {
	return ClusterKey(p, loc, c) + "/serviceIPs/" + name
}

// PodBlockBits is the prefix length of the block a node needs for maxPods
// pods: the smallest block holding twice as many addresses (GKE: 110 ->
// /24, 32 -> /26, 8 -> /28).
func PodBlockBits(maxPods int) int {
	if maxPods < 1 {
		maxPods = DefaultMaxPodsPerNode
	}
	return 32 - bits.Len(uint(2*maxPods-1))
}

// k8sIndex holds a project's clusters, nodes and service IPs.
type k8sIndex struct {
	clusters map[string]*Cluster                // "LOC/NAME"
	nodes    map[string]map[string]*ClusterNode // cluster "LOC/NAME" -> "ZONE/INSTANCE"
	services map[string]map[string]*ServiceIP   // cluster "LOC/NAME" -> name
	nodeOf   map[string]*string                 // instance "ZONE/NAME" -> cluster "LOC/NAME"
}

func (p *project) kube() *k8sIndex {
	if p.k8s == nil {
		p.k8s = &k8sIndex{clusters: map[string]*Cluster{}, nodes: map[string]map[string]*ClusterNode{},
			services: map[string]map[string]*ServiceIP{}, nodeOf: map[string]*string{}}
	}
	return p.k8s
}

func (k *k8sIndex) nodeMap(ck string) map[string]*ClusterNode {
	m := k.nodes[ck]
	if m == nil {
		m = map[string]*ClusterNode{}
		k.nodes[ck] = m
	}
	return m
}

func (k *k8sIndex) serviceMap(ck string) map[string]*ServiceIP {
	m := k.services[ck]
	if m == nil {
		m = map[string]*ServiceIP{}
		k.services[ck] = m
	}
	return m
}

func (t *Txn) putCluster(p *project, c *Cluster) {
	putMap(t, p.kube().clusters, c.Location+"/"+c.Name, c)
	t.record(ClusterKey(p.name, c.Location, c.Name), c)
}

func (t *Txn) deleteCluster(p *project, loc, name string) {
	putMap[string, Cluster](t, p.kube().clusters, loc+"/"+name, nil)
	t.record(ClusterKey(p.name, loc, name), nil)
}

func (t *Txn) putNode(p *project, n *ClusterNode) {
	k := p.kube()
	ck := n.Location + "/" + n.Cluster
	putMap(t, k.nodeMap(ck), n.Zone+"/"+n.Instance, n)
	putMap(t, k.nodeOf, n.Zone+"/"+n.Instance, &ck)
	t.record(ClusterNodeKey(p.name, n.Location, n.Cluster, n.Zone, n.Instance), n)
}

func (t *Txn) deleteNode(p *project, n *ClusterNode) {
	k := p.kube()
	putMap[string, ClusterNode](t, k.nodeMap(n.Location+"/"+n.Cluster), n.Zone+"/"+n.Instance, nil)
	putMap[string, string](t, k.nodeOf, n.Zone+"/"+n.Instance, nil)
	t.record(ClusterNodeKey(p.name, n.Location, n.Cluster, n.Zone, n.Instance), nil)
}

func (t *Txn) putServiceIP(p *project, sv *ServiceIP) {
	putMap(t, p.kube().serviceMap(sv.Location+"/"+sv.Cluster), sv.Name, sv)
	t.record(ServiceIPKey(p.name, sv.Location, sv.Cluster, sv.Name), sv)
}

func (t *Txn) deleteServiceIP(p *project, sv *ServiceIP) {
	putMap[string, ServiceIP](t, p.kube().serviceMap(sv.Location+"/"+sv.Cluster), sv.Name, nil)
	t.record(ServiceIPKey(p.name, sv.Location, sv.Cluster, sv.Name), nil)
}

// locationRegion returns the region of a cluster location and whether the
// location is a region (regional cluster) rather than a zone.
func locationRegion(loc string) (region string, regional bool, ok bool) {
	if _, found := RegionByName(loc); found {
		return loc, true, true
	}
	r, ok := ZoneRegion(loc)
	if ok && strings.Count(loc, "-") < 2 {
		// "us-central1" style names outside the table are regions, not
		// zones: a zone is REGION-LETTER and regions already have a dash.
		return loc, true, true
	}
	return r, false, ok
}

// CreateClusterReq asks for a new cluster.
type CreateClusterReq struct {
	// Cluster: Project, Location, Name, Network (default "default"),
	// Subnet (name or "REGION/NAME"), PodsRange, ServicesRange (names of
	// existing ranges, or names for ranges to create), MaxPodsPerNode
	// (0: 110), NodePools (Name, MachineType, MaxPodsPerNode, Zones),
	// Description, Extra.
	Cluster Cluster
	// PodsCIDR and ServicesCIDR ("10.4.0.0/14" or "/14") make aliasnet
	// create the range on the subnet.
	PodsCIDR, ServicesCIDR string
	// CreateSubnet makes aliasnet create the cluster's subnet (named
	// Cluster.Subnet or gke-CLUSTER-subnet-HASH) with NodeCIDR ("/20" by
	// default).
	CreateSubnet bool
	NodeCIDR     string
	// PoolSizes[i] is the initial node count (per zone) of NodePools[i].
	PoolSizes []int
}

func validClusterName(field, name string) error {
	if err := ValidName(field, name); err != nil {
		return err
	}
	if len(name) > maxClusterName {
		return errf(Invalid, field, name, "Cluster names must be at most %d characters long.", maxClusterName)
	}
	return nil
}

func checkMaxPods(field string, n int) error {
	if n < MinMaxPodsPerNode || n > MaxMaxPodsPerNode {
		return errf(Invalid, field, strconv.Itoa(n), "Max pods per node must be between %d and %d.", MinMaxPodsPerNode, MaxMaxPodsPerNode)
	}
	return nil
}

// hash8 is a short, stable suffix for names aliasnet derives.
func hash8(id uint64) string { return fmt.Sprintf("%08x", uint32(id^id>>32)) }

func trimName(s string, n int) string {
	if len(s) > n {
		s = s[:n]
	}
	return strings.TrimRight(s, "-")
}

// CreateCluster creates a cluster, the ranges and subnet it asks aliasnet
// to create, and the nodes of its pools, all or nothing.
func (t *Txn) CreateCluster(req CreateClusterReq) (*Cluster, []*ClusterNode, error) {
	c := req.Cluster
	if err := validClusterName("name", c.Name); err != nil {
		return nil, nil, err
	}
	region, _, ok := locationRegion(c.Location)
	if !ok {
		return nil, nil, errf(Invalid, "location", c.Location, "Invalid location '%s'.", c.Location)
	}
	p := t.s.proj(c.Project)
	if p.kube().clusters[c.Location+"/"+c.Name] != nil {
		return nil, nil, &Error{Code: AlreadyExists, Reason: fmt.Sprintf("Already exists: %s.", ClusterKey(c.Project, c.Location, c.Name))}
	}
	if c.MaxPodsPerNode == 0 {
		c.MaxPodsPerNode = DefaultMaxPodsPerNode
	}
	if err := checkMaxPods("defaultMaxPodsConstraint.maxPodsPerNode", c.MaxPodsPerNode); err != nil {
		return nil, nil, err
	}
	c.ID = t.NewID()
	c.Created = t.Now
	c.Status = ClusterRunning
	c.NodePools = slices.Clone(c.NodePools)
	h := hash8(c.ID)

	// The subnet.
	var sn *Subnet
	if req.CreateSubnet {
		netName := c.Network
		if netName == "" {
			netName = "default"
		}
		n := p.networks[netName]
		if n == nil {
			return nil, nil, &Error{Code: NotFound, Field: "network", Value: netName,
				Reason: fmt.Sprintf("The resource '%s' was not found", NetworkKey(c.Project, netName))}
		}
		name := c.Subnet
		if name == "" {
			name = "gke-" + trimName(c.Name, maxClusterName) + "-subnet-" + h
		}
		rng, err := t.s.rangeFor(c.Project, netName, req.NodeCIDR, DefaultNodeSubnetBits, "ipAllocationPolicy.nodeIpv4CidrBlock")
		if err != nil {
			return nil, nil, err
		}
		sn, err = t.CreateSubnet(Subnet{Project: c.Project, Region: region, Name: name, Network: netName, Range: rng,
			Description: "Subnetwork of Kubernetes cluster " + c.Name + " (created by aliasnet)."})
		if err != nil {
			return nil, nil, err
		}
		c.CreatedSubnet = true
	} else {
		var err error
		sn, err = t.s.resolveSubnet(c.Project, region, NICSpec{Network: c.Network, Subnet: c.Subnet}, "cluster")
		if err != nil {
			return nil, nil, err
		}
	}
	c.Network, c.Subnet = sn.Network, sn.Region+"/"+sn.Name

	// The pods and services ranges.
	var err error
	if c.PodsRange, c.CreatedPodsRange, sn, err = t.clusterRange(p, &c, sn, c.PodsRange, req.PodsCIDR, "pods", DefaultPodsRangeBits,
		"ipAllocationPolicy.clusterSecondaryRangeName", "ipAllocationPolicy.clusterIpv4CidrBlock"); err != nil {
		return nil, nil, err
	}
	if c.ServicesRange, c.CreatedServicesRange, sn, err = t.clusterRange(p, &c, sn, c.ServicesRange, req.ServicesCIDR, "services", DefaultServicesRangeBits,
		"ipAllocationPolicy.servicesSecondaryRangeName", "ipAllocationPolicy.servicesIpv4CidrBlock"); err != nil {
		return nil, nil, err
	}
	if c.PodsRange == c.ServicesRange {
		return nil, nil, errf(Invalid, "ipAllocationPolicy.servicesSecondaryRangeName", c.ServicesRange,
			"The pods and services ranges must be different secondary ranges.")
	}
	podsPfx, _ := sn.rangeNamed(c.PodsRange)
	if b := PodBlockBits(c.MaxPodsPerNode); b < podsPfx.Bits() {
		return nil, nil, errf(Invalid, "ipAllocationPolicy.clusterSecondaryRangeName", c.PodsRange,
			"Pod range '%s' (%s) is smaller than one node's block (/%d for %d pods per node).", c.PodsRange, podsPfx, b, c.MaxPodsPerNode)
	}

	// Node pools.
	seen := map[string]bool{}
	for i := range c.NodePools {
		np := &c.NodePools[i]
		if err := t.s.checkPool(&c, np, fmt.Sprintf("nodePools[%d]", i)); err != nil {
			return nil, nil, err
		}
		if seen[np.Name] {
			return nil, nil, errf(Invalid, fmt.Sprintf("nodePools[%d].name", i), np.Name, "Node pool '%s' is listed twice.", np.Name)
		}
		seen[np.Name] = true
		np.Created = t.Now
	}
	nc := c
	t.putCluster(p, &nc)
	t.reserveServices(p, &nc)
	var nodes []*ClusterNode
	for i := range nc.NodePools {
		n := 0
		if i < len(req.PoolSizes) {
			n = req.PoolSizes[i]
		}
		got, err := t.resizeNodePool(p, &nc, &nc.NodePools[i], n)
		if err != nil {
			return nil, nil, err
		}
		nodes = append(nodes, got...)
	}
	return &nc, nodes, nil
}

// checkPool validates and defaults a node pool of c.
func (s *State) checkPool(c *Cluster, np *NodePool, field string) error {
	if err := ValidName(field+".name", np.Name); err != nil {
		return err
	}
	if np.MachineType == "" {
		np.MachineType = DefaultMachineType
	}
	if np.MaxPodsPerNode != 0 {
		if err := checkMaxPods(field+".maxPodsConstraint.maxPodsPerNode", np.MaxPodsPerNode); err != nil {
			return err
		}
	}
	region, regional, _ := locationRegion(c.Location)
	if len(np.Zones) == 0 {
		if regional {
			rg, ok := RegionByName(region)
			if !ok || len(rg.Zones) == 0 {
				return errf(Invalid, field+".locations", "", "Region '%s' has no known zones; name the node zones.", region)
			}
			np.Zones = slices.Clone(rg.Zones[:min(3, len(rg.Zones))])
		} else {
			np.Zones = []string{c.Location}
		}
	}
	for _, z := range np.Zones {
		if r, ok := ZoneRegion(z); !ok || r != region {
			return errf(Invalid, field+".locations", z, "Zone '%s' is not in the cluster's region '%s'.", z, region)
		}
	}
	sn := s.projects[c.Project].subnets[c.Subnet]
	podsPfx, _ := sn.rangeNamed(c.PodsRange)
	if b := PodBlockBits(poolMaxPods(c, np)); b < podsPfx.Bits() {
		return errf(Invalid, field+".maxPodsConstraint.maxPodsPerNode", strconv.Itoa(poolMaxPods(c, np)),
			"Pod range '%s' (%s) is smaller than one node's block (/%d).", c.PodsRange, podsPfx, b)
	}
	return nil
}

func poolMaxPods(c *Cluster, np *NodePool) int {
	if np.MaxPodsPerNode != 0 {
		return np.MaxPodsPerNode
	}
	return c.MaxPodsPerNode
}

// clusterRange resolves or creates one of a cluster's secondary ranges.
// It returns the range name, whether it was created, and the (possibly
// updated) subnet.
func (t *Txn) clusterRange(p *project, c *Cluster, sn *Subnet, name, cidr, what string, defBits int, nameField, cidrField string) (string, bool, *Subnet, error) {
	if name != "" && cidr == "" {
		if _, err := sn.rangeNamed(name); err != nil {
			return "", false, nil, errf(Invalid, nameField, name, "Secondary range '%s' not found in subnetwork '%s'.", name, sn.Name)
		}
		if other := t.s.rangeUser(p, c, sn, name); other != "" {
			return "", false, nil, errf(Invalid, nameField, name, "Secondary range '%s' of subnetwork '%s' is already used by cluster '%s'.", name, sn.Name, other)
		}
		return name, false, sn, nil
	}
	if name == "" {
		name = "gke-" + trimName(c.Name, maxClusterName) + "-" + what + "-" + hash8(c.ID)
	}
	if err := ValidName(nameField, name); err != nil {
		return "", false, nil, err
	}
	if _, err := sn.rangeNamed(name); err == nil {
		return "", false, nil, errf(Invalid, nameField, name, "Subnetwork '%s' already has a secondary range '%s'.", sn.Name, name)
	}
	rng, err := t.s.rangeFor(c.Project, sn.Network, cidr, defBits, cidrField)
	if err != nil {
		return "", false, nil, err
	}
	nsn, err := t.addSecondaryRange(p, sn, name, rng, cidrField)
	if err != nil {
		return "", false, nil, err
	}
	return name, true, nsn, nil
}

// rangeUser names the cluster (other than c) that uses a secondary range
// of sn, or "".
func (s *State) rangeUser(p *project, c *Cluster, sn *Subnet, name string) string {
	subnet := sn.Region + "/" + sn.Name
	for _, o := range sortedValues(p.kube().clusters, nil) {
		if o.Subnet == subnet && !(o.Location == c.Location && o.Name == c.Name) && (o.PodsRange == name || o.ServicesRange == name) {
			return o.Name
		}
	}
	return ""
}

// rangeFor turns a CIDR or "/N" into a range of network; "" means /defBits.
func (s *State) rangeFor(project, network, cidr string, defBits int, field string) (netip.Prefix, error) {
	cidr = strings.TrimSpace(cidr)
	bitsN := defBits
	if cidr != "" {
		if strings.HasPrefix(cidr, "/") {
			n, err := strconv.Atoi(cidr[1:])
			if err != nil || n < 4 || n > 29 {
				return netip.Prefix{}, errf(Invalid, field, cidr, "Invalid netmask %s: it must be between /4 and /29.", cidr)
			}
			bitsN = n
		} else {
			return ParseRange(field, cidr)
		}
	}
	pfx, ok := s.findFreeRange(project, network, bitsN)
	if !ok {
		return netip.Prefix{}, errf(Exhausted, field, "/"+strconv.Itoa(bitsN), "No free /%d range is left in network '%s'.", bitsN, network)
	}
	return pfx, nil
}

var privateBlocks = []netip.Prefix{
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
}

// findFreeRange finds the lowest aligned IPv4 /bits block of the private
// space (or of the network's CIDR blocks) that overlaps no range of the
// network or of its peers.
func (s *State) findFreeRange(project, network string, bitsN int) (netip.Prefix, bool) {
	p := s.projects[project]
	if p == nil || p.networks[network] == nil || bitsN < 1 || bitsN > 32 {
		return netip.Prefix{}, false
	}
	n := p.networks[network]
	idxs := []*netIndex{p.nets[network]}
	for _, pi := range s.peerIndexes(project, network) {
		idxs = append(idxs, pi.idx)
	}
	blocks := privateBlocks
	if len(n.CIDRBlocks) > 0 {
		blocks = n.CIDRBlocks
	}
	step := uint64(1) << (32 - bitsN)
	for _, b := range blocks {
		if !b.Addr().Is4() || b.Bits() > bitsN {
			continue
		}
		lo, hi := u32(b.Masked().Addr()), u32(lastAddr(b))
		for a := lo; a+step-1 <= hi; {
			c := netip.PrefixFrom(a4(a), bitsN)
			var skip uint64
			if n.AutoMode && c.Overlaps(AutoModeRange) {
				skip = u32(lastAddr(AutoModeRange))
			}
			for _, idx := range idxs {
				if q, _, ok := idx.overlapping(c); ok {
					skip = max(skip, u32(lastAddr(q)))
				}
			}
			if skip == 0 {
				return c, true
			}
			a = (skip + step) &^ (step - 1)
		}
	}
	return netip.Prefix{}, false
}

func u32(a netip.Addr) uint64 {
	b := a.As4()
	return uint64(b[0])<<24 | uint64(b[1])<<16 | uint64(b[2])<<8 | uint64(b[3])
}

func a4(v uint64) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// addSecondaryRange adds a named range to a subnet (no fingerprint: the
// caller is the control plane itself).
func (t *Txn) addSecondaryRange(p *project, sn *Subnet, name string, rng netip.Prefix, field string) (*Subnet, error) {
	if len(sn.Secondary) >= MaxSecondaryRanges {
		return nil, errf(Invalid, "secondaryIpRanges", "", "A subnetwork can have at most %d secondary IP ranges; '%s' has %d.", MaxSecondaryRanges, sn.Name, len(sn.Secondary))
	}
	if err := checkSubnetRange(field, rng); err != nil {
		return nil, err
	}
	nn := *sn
	nn.Secondary = append(slices.Clone(sn.Secondary), SecondaryRange{Name: name, Range: rng})
	nn.Fingerprint = t.fingerprint()
	if err := t.addRange(p, p.networks[sn.Network], &nn, name, rng, field, false); err != nil {
		return nil, err
	}
	t.putSubnet(p, &nn)
	return &nn, nil
}

// removeSecondaryRange removes a range aliasnet created; it must be free.
func (t *Txn) removeSecondaryRange(p *project, subnet, name string) error {
	sn := p.subnets[subnet]
	if sn == nil {
		return nil
	}
	i := slices.IndexFunc(sn.Secondary, func(r SecondaryRange) bool { return r.Name == name })
	if i < 0 {
		return nil
	}
	r := sn.Secondary[i]
	ni := p.nets[sn.Network]
	if err := t.checkRangesFree(p, sn, ni, []SecondaryRange{r}, false); err != nil {
		return err
	}
	t.deleteRange(ni, r.Range)
	nn := *sn
	nn.Secondary = slices.Delete(slices.Clone(sn.Secondary), i, i+1)
	nn.Fingerprint = t.fingerprint()
	t.putSubnet(p, &nn)
	return nil
}

func (s *State) lookupCluster(project, loc, name string) (*project, *Cluster, error) {
	p := s.projects[project]
	if p == nil || p.k8s == nil || p.k8s.clusters[loc+"/"+name] == nil {
		return nil, nil, &Error{Code: NotFound, Resource: "cluster",
			Reason: fmt.Sprintf("Not found: %s.", ClusterKey(project, loc, name))}
	}
	return p, p.k8s.clusters[loc+"/"+name], nil
}

func poolIndex(c *Cluster, pool string) int {
	return slices.IndexFunc(c.NodePools, func(np NodePool) bool { return np.Name == pool })
}

func (s *State) lookupPool(project, loc, cluster, pool string) (*project, *Cluster, *NodePool, error) {
	p, c, err := s.lookupCluster(project, loc, cluster)
	if err != nil {
		return nil, nil, nil, err
	}
	i := poolIndex(c, pool)
	if i < 0 {
		return nil, nil, nil, &Error{Code: NotFound, Resource: "nodePool",
			Reason: fmt.Sprintf("Not found: %s/nodePools/%s.", ClusterKey(project, loc, cluster), pool)}
	}
	return p, c, &c.NodePools[i], nil
}

// podPool returns the ipam range entry of c's pods range.
func (s *State) podRange(p *project, c *Cluster) (netip.Prefix, *rangeEntry, error) {
	sn := p.subnets[c.Subnet]
	if sn == nil {
		return netip.Prefix{}, nil, fmt.Errorf("cluster %s: subnet %s missing", c.Name, c.Subnet)
	}
	pfx, err := sn.rangeNamed(c.PodsRange)
	if err != nil {
		return netip.Prefix{}, nil, errf(FailedPrecondition, "", "", "The pods range '%s' of cluster '%s' no longer exists in subnetwork '%s'.", c.PodsRange, c.Name, sn.Name)
	}
	e, ok := p.nets[sn.Network].ranges.Get(pfx)
	if !ok {
		return netip.Prefix{}, nil, fmt.Errorf("range %s not indexed", pfx)
	}
	return pfx, e, nil
}

// exhausted is the error for a pods range that cannot hold want more nodes.
func (t *Txn) exhausted(p *project, c *Cluster, np *NodePool, want int) error {
	pfx, e, err := t.s.podRange(p, c)
	if err != nil {
		return err
	}
	b := PodBlockBits(poolMaxPods(c, np))
	free := e.pool.FreeBlocks(b)
	_, sname := splitKey(c.Subnet)
	return &Error{Code: Exhausted, Field: "nodePools", Value: "",
		Reason: fmt.Sprintf("Pod range '%s' (%s) of subnetwork '%s' is exhausted: it can hold %d more node(s) with a /%d pod range each (%d pods per node); %d more were asked for.",
			c.PodsRange, pfx, sname, free, b, poolMaxPods(c, np), want)}
}

// poolNodes lists the nodes of one pool, by zone then name.
func (s *State) poolNodes(p *project, c *Cluster, pool string) []*ClusterNode {
	return sortedValues(p.kube().nodes[c.Location+"/"+c.Name], func(n *ClusterNode) bool { return n.Pool == pool })
}

// resizeNodePool makes every zone of np hold perZone nodes: new instances are
// created with a pod block from the pods range, surplus nodes (the last by
// name) leave and free theirs.
func (t *Txn) resizeNodePool(p *project, c *Cluster, np *NodePool, perZone int) ([]*ClusterNode, error) {
	if perZone < 0 {
		return nil, errf(Invalid, "nodeCount", strconv.Itoa(perZone), "The node count must not be negative.")
	}
	byZone := map[string][]*ClusterNode{}
	for _, n := range t.s.poolNodes(p, c, np.Name) {
		if p.instances[n.Zone+"/"+n.Instance] == nil {
			// The instance was deleted behind the cluster's back (its
			// block went with its interface): forget the node.
			t.deleteNode(p, n)
			continue
		}
		byZone[n.Zone] = append(byZone[n.Zone], n)
	}
	need := 0
	for _, z := range np.Zones {
		need += max(0, perZone-len(byZone[z]))
	}
	if need > 0 {
		_, e, err := t.s.podRange(p, c)
		if err != nil {
			return nil, err
		}
		if e.pool.FreeBlocks(PodBlockBits(poolMaxPods(c, np))) < uint64(need) {
			return nil, t.exhausted(p, c, np, need)
		}
	}
	var out []*ClusterNode
	for _, z := range np.Zones {
		have := byZone[z]
		for i := len(have) - 1; i >= perZone; i-- {
			if err := t.removeNode(p, c, have[i]); err != nil {
				return nil, err
			}
		}
		for i := len(have); i < perZone; i++ {
			n, err := t.addManagedNode(p, c, np, z)
			if err != nil {
				return nil, err
			}
			out = append(out, n)
		}
	}
	return out, nil
}

const nameChars = "abcdefghijklmnopqrstuvwxyz0123456789"

// addManagedNode creates one node instance of pool np in zone.
func (t *Txn) addManagedNode(p *project, c *Cluster, np *NodePool, zone string) (*ClusterNode, error) {
	base := "gke-" + trimName(c.Name, 24) + "-" + trimName(np.Name, 20) + "-"
	var name string
	for try := 0; ; try++ {
		v := t.NewID()
		var sb strings.Builder
		for range 4 {
			sb.WriteByte(nameChars[v%uint64(len(nameChars))])
			v /= uint64(len(nameChars))
		}
		name = base + sb.String()
		if p.instances[zone+"/"+name] == nil {
			break
		}
		if try > 100 {
			return nil, fmt.Errorf("cannot find a free node name %s*", base)
		}
	}
	labels, _ := json.Marshal(map[string]any{"labels": map[string]string{
		"goog-k8s-cluster-name": c.Name, "goog-k8s-node-pool-name": np.Name}})
	bitsN := PodBlockBits(poolMaxPods(c, np))
	_, ifcs, err := t.CreateInstance(CreateInstanceReq{
		Instance: Instance{Project: c.Project, Zone: zone, Name: name, MachineType: np.MachineType,
			Tags:        []string{"gke-" + trimName(c.Name, maxClusterName) + "-" + hash8(c.ID) + "-node"},
			Description: fmt.Sprintf("Node of pool '%s' of Kubernetes cluster '%s'.", np.Name, c.Name),
			Extra:       labels},
		NICs: []NICSpec{{Subnet: c.Subnet, Aliases: []AliasSpec{{Bits: bitsN, RangeName: c.PodsRange}}}},
	})
	if err != nil {
		if CodeOf(err) == Exhausted && strings.Contains(err.Error(), "aliasIpRanges") {
			return nil, t.exhausted(p, c, np, 1)
		}
		return nil, err
	}
	n := &ClusterNode{Project: c.Project, Location: c.Location, Cluster: c.Name, Pool: np.Name, Zone: zone,
		Instance: name, PodRange: ifcs[0].Aliases[0].Range, Managed: true, Created: t.Now}
	t.putNode(p, n)
	return n, nil
}

// removeNode makes a node leave: a managed node's instance is deleted, a
// joined one loses its pod range; either way the block returns to the
// pods range.
func (t *Txn) removeNode(p *project, c *Cluster, n *ClusterNode) error {
	if in := p.instances[n.Zone+"/"+n.Instance]; in != nil {
		if n.Managed {
			if err := t.DeleteInstance(c.Project, n.Zone, n.Instance); err != nil {
				return err
			}
		} else if len(in.NICs) > 0 {
			if ifc := p.interfaces[in.NICs[0]]; ifc != nil && slices.Contains(ifc.Aliases, Alias{Range: n.PodRange, RangeName: c.PodsRange}) {
				var specs []AliasSpec
				for _, al := range ifc.Aliases {
					if al.Range != n.PodRange {
						specs = append(specs, AliasSpec{Prefix: al.Range, RangeName: al.RangeName})
					}
				}
				if _, err := t.setAliases(p, ifc, specs, "networkInterfaces[0]", nil); err != nil {
					return err
				}
			}
		}
	}
	t.deleteNode(p, n)
	return nil
}

// SetNodePoolSize resizes a pool to nodeCount nodes per zone.
func (t *Txn) SetNodePoolSize(project, loc, cluster, pool string, nodeCount int) ([]*ClusterNode, error) {
	p, c, np, err := t.s.lookupPool(project, loc, cluster, pool)
	if err != nil {
		return nil, err
	}
	return t.resizeNodePool(p, c, np, nodeCount)
}

// CreateNodePool adds a pool with nodeCount nodes per zone.
func (t *Txn) CreateNodePool(project, loc, cluster string, np NodePool, nodeCount int) (*Cluster, []*ClusterNode, error) {
	p, c, err := t.s.lookupCluster(project, loc, cluster)
	if err != nil {
		return nil, nil, err
	}
	if poolIndex(c, np.Name) >= 0 {
		return nil, nil, &Error{Code: AlreadyExists, Reason: fmt.Sprintf("Already exists: %s/nodePools/%s.", ClusterKey(project, loc, cluster), np.Name)}
	}
	np.Zones = slices.Clone(np.Zones)
	if err := t.s.checkPool(c, &np, "nodePool"); err != nil {
		return nil, nil, err
	}
	np.Created = t.Now
	nc := *c
	nc.NodePools = append(slices.Clone(c.NodePools), np)
	t.putCluster(p, &nc)
	nodes, err := t.resizeNodePool(p, &nc, &nc.NodePools[len(nc.NodePools)-1], nodeCount)
	if err != nil {
		return nil, nil, err
	}
	return &nc, nodes, nil
}

// DeleteNodePool removes a pool and its nodes.
func (t *Txn) DeleteNodePool(project, loc, cluster, pool string) error {
	p, c, np, err := t.s.lookupPool(project, loc, cluster, pool)
	if err != nil {
		return err
	}
	for _, n := range t.s.poolNodes(p, c, np.Name) {
		if err := t.removeNode(p, c, n); err != nil {
			return err
		}
	}
	nc := *c
	nc.NodePools = slices.DeleteFunc(slices.Clone(c.NodePools), func(x NodePool) bool { return x.Name == pool })
	t.putCluster(p, &nc)
	return nil
}

// JoinNode makes an existing instance a node of a cluster's pool: its nic0
// (which must be in the cluster's subnet) gets a pod block from the pods
// range as an extra alias IP range. pool "" means the first pool.
func (t *Txn) JoinNode(project, loc, cluster, pool, zone, instance string) (*ClusterNode, error) {
	p, c, err := t.s.lookupCluster(project, loc, cluster)
	if err != nil {
		return nil, err
	}
	if pool == "" {
		if len(c.NodePools) == 0 {
			return nil, errf(FailedPrecondition, "pool", "", "Cluster '%s' has no node pool; create one first.", cluster)
		}
		pool = c.NodePools[0].Name
	}
	i := poolIndex(c, pool)
	if i < 0 {
		return nil, &Error{Code: NotFound, Resource: "nodePool", Reason: fmt.Sprintf("Not found: %s/nodePools/%s.", ClusterKey(project, loc, cluster), pool)}
	}
	np := &c.NodePools[i]
	if !slices.Contains(np.Zones, zone) {
		if r, ok := ZoneRegion(zone); !ok || r != strings.SplitN(c.Subnet, "/", 2)[0] {
			return nil, errf(Invalid, "zone", zone, "Zone '%s' is not in the region of cluster '%s'.", zone, cluster)
		}
	}
	in := p.instances[zone+"/"+instance]
	if in == nil {
		return nil, notFound("instance", InstanceKey(project, zone, instance))
	}
	if ck := p.kube().nodeOf[zone+"/"+instance]; ck != nil {
		return nil, &Error{Code: AlreadyExists, Reason: fmt.Sprintf("Instance '%s' is already a node of cluster '%s'.", instance, *ck)}
	}
	if len(in.NICs) == 0 || p.interfaces[in.NICs[0]] == nil {
		return nil, errf(Invalid, "instance", instance, "Instance '%s' has no nic0.", instance)
	}
	ifc := p.interfaces[in.NICs[0]]
	if ifc.Subnet != c.Subnet {
		return nil, errf(Invalid, "instance", instance, "nic0 of instance '%s' is in subnetwork '%s', not in the cluster's subnetwork '%s'.", instance, ifc.Subnet, c.Subnet)
	}
	bitsN := PodBlockBits(poolMaxPods(c, np))
	_, e, err := t.s.podRange(p, c)
	if err != nil {
		return nil, err
	}
	if e.pool.FreeBlocks(bitsN) == 0 {
		return nil, t.exhausted(p, c, np, 1)
	}
	specs := make([]AliasSpec, 0, len(ifc.Aliases)+1)
	for _, al := range ifc.Aliases {
		specs = append(specs, AliasSpec{Prefix: al.Range, RangeName: al.RangeName})
	}
	specs = append(specs, AliasSpec{Bits: bitsN, RangeName: c.PodsRange})
	nifc, err := t.setAliases(p, ifc, specs, "networkInterfaces[0]", nil)
	if err != nil {
		if CodeOf(err) == Exhausted {
			return nil, t.exhausted(p, c, np, 1)
		}
		return nil, err
	}
	var got netip.Prefix
	for _, al := range nifc.Aliases {
		if !slices.Contains(ifc.Aliases, al) {
			got = al.Range
		}
	}
	n := &ClusterNode{Project: project, Location: loc, Cluster: cluster, Pool: pool, Zone: zone, Instance: instance,
		PodRange: got, Created: t.Now}
	t.putNode(p, n)
	return n, nil
}

// RemoveNode makes a node leave its cluster (see removeNode).
func (t *Txn) RemoveNode(project, loc, cluster, zone, instance string) error {
	p, c, err := t.s.lookupCluster(project, loc, cluster)
	if err != nil {
		return err
	}
	n := p.kube().nodes[loc+"/"+cluster][zone+"/"+instance]
	if n == nil {
		return &Error{Code: NotFound, Resource: "node", Reason: fmt.Sprintf("Instance '%s' in zone '%s' is not a node of cluster '%s'.", instance, zone, cluster)}
	}
	return t.removeNode(p, c, n)
}

// DeleteCluster removes a cluster: its nodes leave (managed instances are
// deleted), its service IPs are released, and the ranges and subnet
// aliasnet created for it are removed.
func (t *Txn) DeleteCluster(project, loc, name string) error {
	p, c, err := t.s.lookupCluster(project, loc, name)
	if err != nil {
		return err
	}
	ck := loc + "/" + name
	for _, n := range sortedValues(p.kube().nodes[ck], nil) {
		if err := t.removeNode(p, c, n); err != nil {
			return err
		}
	}
	for _, sv := range sortedValues(p.kube().services[ck], nil) {
		t.releaseServiceIP(p, c, sv)
	}
	t.unreserveServices(p, c)
	if c.CreatedPodsRange {
		if err := t.removeSecondaryRange(p, c.Subnet, c.PodsRange); err != nil {
			return err
		}
	}
	if c.CreatedServicesRange {
		if err := t.removeSecondaryRange(p, c.Subnet, c.ServicesRange); err != nil {
			return err
		}
	}
	if c.CreatedSubnet {
		r, n := splitKey(c.Subnet)
		if err := t.DeleteSubnet(project, r, n); err != nil {
			return err
		}
	}
	t.deleteCluster(p, loc, name)
	return nil
}

// servicesRange returns the pool of c's services range.
func (s *State) servicesRange(p *project, c *Cluster) (netip.Prefix, *rangeEntry, error) {
	sn := p.subnets[c.Subnet]
	if sn == nil {
		return netip.Prefix{}, nil, fmt.Errorf("cluster %s: subnet %s missing", c.Name, c.Subnet)
	}
	pfx, err := sn.rangeNamed(c.ServicesRange)
	if err != nil {
		return netip.Prefix{}, nil, errf(FailedPrecondition, "", "", "The services range '%s' of cluster '%s' no longer exists in subnetwork '%s'.", c.ServicesRange, c.Name, sn.Name)
	}
	e, ok := p.nets[sn.Network].ranges.Get(pfx)
	if !ok {
		return netip.Prefix{}, nil, fmt.Errorf("range %s not indexed", pfx)
	}
	return pfx, e, nil
}

// servicesReserved are the addresses of a services range no service
// gets: the network and broadcast addresses, as Kubernetes' allocator
// has it (so the kubernetes service gets the first host, .1).
func servicesReserved(pfx netip.Prefix) []netip.Addr {
	if !pfx.Addr().Is4() || pfx.Bits() > 30 {
		return nil
	}
	return []netip.Addr{pfx.Masked().Addr(), lastAddr(pfx)}
}

// reserveServices claims the reserved addresses of c's services range
// (those another resource already holds stay with it: they are not
// handed out either way).
func (t *Txn) reserveServices(p *project, c *Cluster) {
	pfx, e, err := t.s.servicesRange(p, c)
	if err != nil {
		return
	}
	o := t.s.owner(OwnerRef{Kind: "reserved", Key: ClusterKey(c.Project, c.Location, c.Name)})
	for _, a := range servicesReserved(pfx) {
		_ = t.claim(e.pool, netip.PrefixFrom(a, 32), o)
	}
}

func (t *Txn) unreserveServices(p *project, c *Cluster) {
	pfx, e, err := t.s.servicesRange(p, c)
	if err != nil {
		return
	}
	o := t.s.owner(OwnerRef{Kind: "reserved", Key: ClusterKey(c.Project, c.Location, c.Name)})
	for _, a := range servicesReserved(pfx) {
		if got, ok := e.pool.OwnerOf(netip.PrefixFrom(a, 32)); ok && got == o {
			t.release(e.pool, netip.PrefixFrom(a, 32))
		}
	}
}

// ValidServiceName checks a service IP allocation name: a Kubernetes
// service is named NAMESPACE.NAME here (DNS labels joined by dots).
func ValidServiceName(field, name string) error {
	if name == "" {
		return &Error{Code: Required, Field: field, Reason: "Required field '" + field + "' not specified"}
	}
	ok := len(name) <= 253
	for _, l := range strings.Split(name, ".") {
		ok = ok && l != "" && len(l) <= 63 && l[0] != '-' && l[len(l)-1] != '-'
		for i := 0; ok && i < len(l); i++ {
			c := l[i]
			ok = c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-'
		}
	}
	if !ok {
		return errf(Invalid, field, name, "Service names are DNS labels joined by dots (e.g. 'default.kubernetes').")
	}
	return nil
}

// AllocateServiceIP takes an address for a service from the cluster's
// services range: ip when valid (it must be free), else the lowest free
// address that was not released recently. The network and broadcast
// addresses of the range are never handed out.
func (t *Txn) AllocateServiceIP(project, loc, cluster, name string, ip netip.Addr) (*ServiceIP, error) {
	p, c, err := t.s.lookupCluster(project, loc, cluster)
	if err != nil {
		return nil, err
	}
	if err := ValidServiceName("name", name); err != nil {
		return nil, err
	}
	if p.kube().services[loc+"/"+cluster][name] != nil {
		return nil, &Error{Code: AlreadyExists, Reason: fmt.Sprintf("Already exists: %s.", ServiceIPKey(project, loc, cluster, name))}
	}
	pfx, e, err := t.s.servicesRange(p, c)
	if err != nil {
		return nil, err
	}
	key := ServiceIPKey(project, loc, cluster, name)
	o := t.s.owner(OwnerRef{Kind: "service", Key: key})
	var got netip.Addr
	if ip.IsValid() {
		ip = ip.Unmap()
		if !pfx.Contains(ip) {
			return nil, errf(Invalid, "ip", ip.String(), "Address %s is outside the services range '%s' (%s) of cluster '%s'.", ip, c.ServicesRange, pfx, cluster)
		}
		if err := t.claim(e.pool, netip.PrefixFrom(ip, 32), o); err != nil {
			return nil, t.s.allocError(err, "ip", ip.String())
		}
		got = ip
	} else {
		a, err := t.allocate(e.pool, 32, o, nil)
		if err != nil {
			if CodeOf(t.s.allocError(err, "", "")) == Exhausted {
				return nil, &Error{Code: Exhausted, Field: "ip",
					Reason: fmt.Sprintf("Services range '%s' (%s) of cluster '%s' is exhausted: all %d service addresses are in use.", c.ServicesRange, pfx, cluster, uint64(1)<<(32-pfx.Bits())-uint64(len(servicesReserved(pfx))))}
			}
			return nil, t.s.allocError(err, "ip", "")
		}
		got = a.Addr()
	}
	sv := &ServiceIP{Project: project, Location: loc, Cluster: cluster, Name: name, IP: got, Created: t.Now}
	t.putServiceIP(p, sv)
	return sv, nil
}

// ReleaseServiceIP frees a service's address (it goes to the back of the
// reuse queue).
func (t *Txn) ReleaseServiceIP(project, loc, cluster, name string) (*ServiceIP, error) {
	p, c, err := t.s.lookupCluster(project, loc, cluster)
	if err != nil {
		return nil, err
	}
	sv := p.kube().services[loc+"/"+cluster][name]
	if sv == nil {
		return nil, &Error{Code: NotFound, Resource: "serviceIP", Reason: fmt.Sprintf("Not found: %s.", ServiceIPKey(project, loc, cluster, name))}
	}
	t.releaseServiceIP(p, c, sv)
	return sv, nil
}

func (t *Txn) releaseServiceIP(p *project, c *Cluster, sv *ServiceIP) {
	if _, e, err := t.s.servicesRange(p, c); err == nil {
		t.release(e.pool, netip.PrefixFrom(sv.IP, 32))
	}
	t.deleteServiceIP(p, sv)
}

// --- reads ---

// Cluster returns a cluster or nil.
func (s *State) Cluster(project, loc, name string) *Cluster {
	if p := s.projects[project]; p != nil && p.k8s != nil {
		return p.k8s.clusters[loc+"/"+name]
	}
	return nil
}

// Clusters lists a project's clusters; loc "" or "-" lists every location.
func (s *State) Clusters(project, loc string) []*Cluster {
	p := s.projects[project]
	if p == nil || p.k8s == nil {
		return nil
	}
	return sortedValues(p.k8s.clusters, func(c *Cluster) bool { return loc == "" || loc == "-" || c.Location == loc })
}

// ClusterNodes lists a cluster's nodes by zone and instance name (nodes
// whose instance was deleted through another API are left out; the next
// resize of their pool forgets them).
func (s *State) ClusterNodes(project, loc, name string) []*ClusterNode {
	if p := s.projects[project]; p != nil && p.k8s != nil {
		return sortedValues(p.k8s.nodes[loc+"/"+name], func(n *ClusterNode) bool { return p.instances[n.Zone+"/"+n.Instance] != nil })
	}
	return nil
}

// ServiceIPs lists a cluster's service IPs by name.
func (s *State) ServiceIPs(project, loc, name string) []*ServiceIP {
	if p := s.projects[project]; p != nil && p.k8s != nil {
		return sortedValues(p.k8s.services[loc+"/"+name], nil)
	}
	return nil
}

// NodeOf returns the node record of an instance, or nil.
func (s *State) NodeOf(project, zone, instance string) *ClusterNode {
	p := s.projects[project]
	if p == nil || p.k8s == nil || p.k8s.nodeOf[zone+"/"+instance] == nil {
		return nil
	}
	return p.k8s.nodes[*p.k8s.nodeOf[zone+"/"+instance]][zone+"/"+instance]
}

// PoolSize is the number of nodes of a pool (all zones).
func (s *State) PoolSize(c *Cluster, pool string) int {
	p := s.projects[c.Project]
	if p == nil || p.k8s == nil {
		return 0
	}
	return len(s.poolNodes(p, c, pool))
}

// ClusterUsage is how full a cluster's ranges are.
type ClusterUsage struct {
	PodsRangeName string       `json:"podsRangeName"`
	PodsRange     netip.Prefix `json:"podsRange"`
	// PodRangeBits is the per-node block (cluster default pods per node).
	PodRangeBits int `json:"podRangeBits"`
	NodesUsed    int `json:"nodesUsed"`
	// NodesPossible = NodesUsed + how many more default-size blocks fit.
	NodesPossible      uint64       `json:"nodesPossible"`
	ServicesRangeName  string       `json:"servicesRangeName"`
	ServicesRange      netip.Prefix `json:"servicesRange"`
	ServiceIPsUsed     int          `json:"serviceIpsUsed"`
	ServiceIPsPossible uint64       `json:"serviceIpsPossible"`
}

// Usage reports a cluster's range utilisation.
func (s *State) Usage(c *Cluster) (ClusterUsage, error) {
	p := s.projects[c.Project]
	if p == nil {
		return ClusterUsage{}, fmt.Errorf("project %s missing", c.Project)
	}
	u := ClusterUsage{PodsRangeName: c.PodsRange, ServicesRangeName: c.ServicesRange, PodRangeBits: PodBlockBits(c.MaxPodsPerNode)}
	ck := c.Location + "/" + c.Name
	if k := p.k8s; k != nil {
		u.NodesUsed, u.ServiceIPsUsed = len(s.ClusterNodes(c.Project, c.Location, c.Name)), len(k.services[ck])
	}
	pfx, e, err := s.podRange(p, c)
	if err != nil {
		return u, err
	}
	u.PodsRange, u.NodesPossible = pfx, uint64(u.NodesUsed)+e.pool.FreeBlocks(u.PodRangeBits)
	spfx, se, err := s.servicesRange(p, c)
	if err != nil {
		return u, err
	}
	u.ServicesRange, u.ServiceIPsPossible = spfx, uint64(u.ServiceIPsUsed)+se.pool.FreeBlocks(32)
	return u, nil
}

// loadK8s indexes stored clusters, nodes and service IPs (Load) and
// re-claims the service IPs in their ranges.
func (s *State) loadK8s(clusters []*Cluster, nodes []*ClusterNode, svcs []*ServiceIP) error {
	for _, c := range clusters {
		s.proj(c.Project).kube().clusters[c.Location+"/"+c.Name] = c
	}
	for _, n := range nodes {
		k := s.proj(n.Project).kube()
		ck := n.Location + "/" + n.Cluster
		k.nodeMap(ck)[n.Zone+"/"+n.Instance] = n
		k.nodeOf[n.Zone+"/"+n.Instance] = &ck
	}
	for _, sv := range svcs {
		p := s.proj(sv.Project)
		key := ServiceIPKey(sv.Project, sv.Location, sv.Cluster, sv.Name)
		c := p.kube().clusters[sv.Location+"/"+sv.Cluster]
		if c == nil {
			return fmt.Errorf("load %s: cluster missing", key)
		}
		_, e, err := s.servicesRange(p, c)
		if err != nil {
			return fmt.Errorf("load %s: %w", key, err)
		}
		if err := e.pool.Claim(netip.PrefixFrom(sv.IP, 32), s.owner(OwnerRef{Kind: "service", Key: key})); err != nil {
			return fmt.Errorf("load %s: %w", key, err)
		}
		p.kube().serviceMap(sv.Location + "/" + sv.Cluster)[sv.Name] = sv
	}
	for _, c := range clusters {
		p := s.projects[c.Project]
		if pfx, e, err := s.servicesRange(p, c); err == nil {
			o := s.owner(OwnerRef{Kind: "reserved", Key: ClusterKey(c.Project, c.Location, c.Name)})
			for _, a := range servicesReserved(pfx) {
				_ = e.pool.Claim(netip.PrefixFrom(a, 32), o)
			}
		}
	}
	return nil
}

// K8sChange reports whether a change committed by another writer touches
// clusters, nodes or service IPs (ApplyRemote then applies those parts
// with k8sRelease and k8sClaim).
func K8sChange(puts Snapshot, deleted []string) bool {
	if len(puts.Clusters)+len(puts.ClusterNodes)+len(puts.ServiceIPs) > 0 {
		return true
	}
	for _, k := range deleted {
		parts := strings.Split(k, "/")
		if len(parts) >= 6 && parts[0] == "projects" && parts[2] == "locations" && parts[4] == "clusters" {
			return true
		}
	}
	return false
}

// k8sDelta is the Kubernetes part of a change another writer committed.
// ApplyRemote records the deleted keys while it classifies them, then
// calls k8sRelease before interfaces claim their new addresses and
// k8sClaim after, so that an address moving between a service and an
// interface in one change never collides with itself.
type k8sDelta struct {
	puts                               Snapshot
	delClusters, delNodes, delServices []k8sRef
	newClusters                        []*Cluster
}

// k8sRef names a deleted record: cluster is "LOC/NAME", item the node's
// "ZONE/INSTANCE" or the service IP's name.
type k8sRef struct{ project, cluster, item string }

// deleted records a deleted key given as its parts after
// "projects/PROJECT/"; false means it is not a Kubernetes key.
func (d *k8sDelta) deleted(project string, rest []string) bool {
	if len(rest) < 4 || rest[0] != "locations" || rest[2] != "clusters" {
		return false
	}
	ck := rest[1] + "/" + rest[3]
	switch {
	case len(rest) == 4:
		d.delClusters = append(d.delClusters, k8sRef{project, ck, ""})
	case len(rest) == 7 && rest[4] == "nodes":
		d.delNodes = append(d.delNodes, k8sRef{project, ck, rest[5] + "/" + rest[6]})
	case len(rest) == 6 && rest[4] == "serviceIPs":
		d.delServices = append(d.delServices, k8sRef{project, ck, rest[5]})
	default:
		return false
	}
	return true
}

// k8sRelease frees the addresses of deleted and replaced service IPs and
// the reserved addresses of deleted clusters, then updates the cluster,
// node and service IP indexes. Networks about to be re-indexed are left
// alone: re-indexing rebuilds their pools and ReclaimServiceIPs claims
// what the indexes then hold.
func (s *State) k8sRelease(d *k8sDelta, reindex map[netRef]bool) error {
	release := func(p *project, c *Cluster, kind, key string, addrs ...netip.Addr) {
		if c == nil || reindex[netRef{p.name, c.Network}] {
			return
		}
		_, e, err := s.servicesRange(p, c)
		if err != nil {
			return
		}
		o := s.owner(OwnerRef{Kind: kind, Key: key})
		for _, a := range addrs {
			if got, ok := e.pool.OwnerOf(netip.PrefixFrom(a, 32)); ok && got == o {
				_ = e.pool.Release(netip.PrefixFrom(a, 32))
			}
		}
	}
	for _, r := range d.delServices {
		k := s.proj(r.project).kube()
		if sv := k.services[r.cluster][r.item]; sv != nil {
			release(s.projects[r.project], k.clusters[r.cluster], "service", ServiceIPKey(sv.Project, sv.Location, sv.Cluster, sv.Name), sv.IP)
			delete(k.services[r.cluster], r.item)
		}
	}
	for _, sv := range d.puts.ServiceIPs {
		p := s.proj(sv.Project)
		ck := sv.Location + "/" + sv.Cluster
		if old := p.kube().services[ck][sv.Name]; old != nil {
			release(p, p.kube().clusters[ck], "service", ServiceIPKey(sv.Project, sv.Location, sv.Cluster, sv.Name), old.IP)
		}
	}
	for _, r := range d.delClusters {
		p := s.proj(r.project)
		if c := p.kube().clusters[r.cluster]; c != nil {
			if pfx, _, err := s.servicesRange(p, c); err == nil {
				release(p, c, "reserved", ClusterKey(c.Project, c.Location, c.Name), servicesReserved(pfx)...)
			}
			delete(p.kube().clusters, r.cluster)
		}
	}
	for _, r := range d.delNodes {
		k := s.proj(r.project).kube()
		delete(k.nodes[r.cluster], r.item)
		if ck := k.nodeOf[r.item]; ck != nil && *ck == r.cluster {
			delete(k.nodeOf, r.item)
		}
	}
	for _, c := range d.puts.Clusters {
		k := s.proj(c.Project).kube()
		if k.clusters[c.Location+"/"+c.Name] == nil {
			d.newClusters = append(d.newClusters, c)
		}
		k.clusters[c.Location+"/"+c.Name] = c
	}
	for _, n := range d.puts.ClusterNodes {
		k := s.proj(n.Project).kube()
		ck := n.Location + "/" + n.Cluster
		k.nodeMap(ck)[n.Zone+"/"+n.Instance] = n
		k.nodeOf[n.Zone+"/"+n.Instance] = &ck
	}
	for _, sv := range d.puts.ServiceIPs {
		s.proj(sv.Project).kube().serviceMap(sv.Location + "/" + sv.Cluster)[sv.Name] = sv
	}
	return nil
}

// k8sClaim claims the addresses of new and replaced service IPs and, as
// CreateCluster does, the reserved addresses of new clusters' services
// ranges (those another resource holds stay with it).
func (s *State) k8sClaim(d *k8sDelta, reindex map[netRef]bool) error {
	for _, c := range d.newClusters {
		p := s.projects[c.Project]
		if reindex[netRef{p.name, c.Network}] {
			continue
		}
		if pfx, e, err := s.servicesRange(p, c); err == nil {
			o := s.owner(OwnerRef{Kind: "reserved", Key: ClusterKey(c.Project, c.Location, c.Name)})
			for _, a := range servicesReserved(pfx) {
				if _, ok := e.pool.OwnerOf(netip.PrefixFrom(a, 32)); !ok {
					_ = e.pool.Claim(netip.PrefixFrom(a, 32), o)
				}
			}
		}
	}
	for _, sv := range d.puts.ServiceIPs {
		key := ServiceIPKey(sv.Project, sv.Location, sv.Cluster, sv.Name)
		p := s.projects[sv.Project]
		c := p.kube().clusters[sv.Location+"/"+sv.Cluster]
		if c == nil {
			return fmt.Errorf("apply service IP %s: cluster %s missing", key, ClusterKey(sv.Project, sv.Location, sv.Cluster))
		}
		if reindex[netRef{p.name, c.Network}] {
			continue
		}
		_, e, err := s.servicesRange(p, c)
		if err != nil {
			return fmt.Errorf("apply service IP %s: %w", key, err)
		}
		o := s.owner(OwnerRef{Kind: "service", Key: key})
		pfx := netip.PrefixFrom(sv.IP, 32)
		if got, ok := e.pool.OwnerOf(pfx); ok && got == o {
			continue
		}
		if err := e.pool.Claim(pfx, o); err != nil {
			return fmt.Errorf("apply service IP %s: address %s: %w", key, sv.IP, err)
		}
	}
	return nil
}

// ReclaimServiceIPs claims again the service IPs (and the reserved
// network and broadcast addresses) of every cluster of a network: a
// network whose range index was rebuilt from subnets and interfaces alone
// (reindexNetwork) has lost them.
func (s *State) ReclaimServiceIPs(project, network string) error {
	p := s.projects[project]
	if p == nil || p.k8s == nil {
		return nil
	}
	for _, c := range sortedValues(p.k8s.clusters, func(c *Cluster) bool { return c.Network == network }) {
		pfx, e, err := s.servicesRange(p, c)
		if err != nil {
			continue
		}
		for _, sv := range sortedValues(p.k8s.services[c.Location+"/"+c.Name], nil) {
			o := s.owner(OwnerRef{Kind: "service", Key: ServiceIPKey(sv.Project, sv.Location, sv.Cluster, sv.Name)})
			if got, ok := e.pool.OwnerOf(netip.PrefixFrom(sv.IP, 32)); ok && got == o {
				continue
			}
			if err := e.pool.Claim(netip.PrefixFrom(sv.IP, 32), o); err != nil {
				return fmt.Errorf("service IP %s of %s: %w", sv.IP, ClusterKey(c.Project, c.Location, c.Name), err)
			}
		}
		o := s.owner(OwnerRef{Kind: "reserved", Key: ClusterKey(c.Project, c.Location, c.Name)})
		for _, a := range servicesReserved(pfx) {
			if _, ok := e.pool.OwnerOf(netip.PrefixFrom(a, 32)); !ok {
				_ = e.pool.Claim(netip.PrefixFrom(a, 32), o)
			}
		}
	}
	return nil
}
