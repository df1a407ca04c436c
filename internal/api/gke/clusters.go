package gke

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"

	container "google.golang.org/api/container/v1"

	"github.com/aliasnet/aliasnet/internal/control"
	"github.com/aliasnet/aliasnet/internal/model"
)

// Version is the Kubernetes version clusters report. aliasnet runs no
// Kubernetes; the value only keeps clients that print or compare it happy.
const Version = "1.33.0-aliasnet"

// caCert is what masterAuth.clusterCaCertificate carries: there is no
// cluster CA, and the PEM says so to whoever decodes it.
var caCert = base64.StdEncoding.EncodeToString([]byte("-----BEGIN CERTIFICATE-----\n" +
	"YWxpYXNuZXQgcnVucyBubyBLdWJlcm5ldGVzIEFQSSBzZXJ2ZXI=\n-----END CERTIFICATE-----\n"))

// Usage is the range utilisation aliasnet adds to a cluster (field
// "aliasnetUsage" of the GKE cluster, and GET …/clusters/C/usage).
type Usage struct {
	Pods struct {
		RangeName     string `json:"rangeName"`
		Range         string `json:"range"`
		PerNodeRange  string `json:"perNodeRange"` // "/24"
		NodesUsed     int    `json:"nodesUsed"`
		NodesPossible uint64 `json:"nodesPossible"`
	} `json:"pods"`
	Services struct {
		RangeName   string `json:"rangeName"`
		Range       string `json:"range"`
		IPsUsed     int    `json:"ipsUsed"`
		IPsPossible uint64 `json:"ipsPossible"`
	} `json:"services"`
	Error string `json:"error,omitempty"`
}

func usageOf(u model.ClusterUsage, err error) Usage {
	var o Usage
	o.Pods.RangeName, o.Pods.PerNodeRange = u.PodsRangeName, "/"+strconv.Itoa(u.PodRangeBits)
	o.Pods.NodesUsed, o.Pods.NodesPossible = u.NodesUsed, u.NodesPossible
	o.Services.RangeName = u.ServicesRangeName
	o.Services.IPsUsed, o.Services.IPsPossible = u.ServiceIPsUsed, u.ServiceIPsPossible
	if u.PodsRange.IsValid() {
		o.Pods.Range = u.PodsRange.String()
	}
	if u.ServicesRange.IsValid() {
		o.Services.Range = u.ServicesRange.String()
	}
	if err != nil {
		o.Error = err.Error()
	}
	return o
}

// view is what rendering a cluster needs, read under the state lock.
type view struct {
	c        *model.Cluster
	nodes    []*model.ClusterNode
	usage    Usage
	subnet   *model.Subnet
	podsCIDR string
	svcCIDR  string
}

func (a *API) viewOf(st *model.State, c *model.Cluster) view {
	v := view{c: c, nodes: st.ClusterNodes(c.Project, c.Location, c.Name)}
	v.usage = usageOf(st.Usage(c))
	v.podsCIDR, v.svcCIDR = v.usage.Pods.Range, v.usage.Services.Range
	if r, n, ok := strings.Cut(c.Subnet, "/"); ok {
		v.subnet = st.Subnet(c.Project, r, n)
	}
	return v
}

func (q *req) clusterLink(loc, name string) string {
	return q.base() + "v1/projects/" + q.project + "/zones/" + loc + "/clusters/" + name
}

// endpoint is the address clients reach aliasnet at (the cluster has no
// API server of its own; see the package doc).
func (q *req) endpoint() string {
	host := q.r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return host
}

func (q *req) renderPool(v view, np *model.NodePool) *container.NodePool {
	c := v.c
	maxPods := np.MaxPodsPerNode
	if maxPods == 0 {
		maxPods = c.MaxPodsPerNode
	}
	total := 0
	for _, n := range v.nodes {
		if n.Pool == np.Name {
			total++
		}
	}
	perZone := total
	if len(np.Zones) > 0 {
		perZone = total / len(np.Zones)
	}
	return &container.NodePool{
		Name:              np.Name,
		Config:            &container.NodeConfig{MachineType: np.MachineType, DiskSizeGb: 100, ImageType: "COS_CONTAINERD"},
		InitialNodeCount:  int64(perZone),
		Locations:         slices.Clone(np.Zones),
		MaxPodsConstraint: &container.MaxPodsConstraint{MaxPodsPerNode: int64(maxPods)},
		PodIpv4CidrSize:   int64(model.PodBlockBits(maxPods)),
		NetworkConfig:     &container.NodeNetworkConfig{PodRange: c.PodsRange, PodIpv4CidrBlock: v.podsCIDR},
		SelfLink:          q.clusterLink(c.Location, c.Name) + "/nodePools/" + np.Name,
		Status:            "RUNNING",
		Version:           Version,
	}
}

func (q *req) renderPoolJSON(v view, np *model.NodePool) json.RawMessage {
	return mergeExtra(q.renderPool(v, np), np.Extra)
}

func (q *req) renderCluster(v view) json.RawMessage {
	c := v.c
	region, sname, _ := strings.Cut(c.Subnet, "/")
	var zones []string
	for _, np := range c.NodePools {
		for _, z := range np.Zones {
			if !slices.Contains(zones, z) {
				zones = append(zones, z)
			}
		}
	}
	if len(zones) == 0 && strings.Count(c.Location, "-") >= 2 {
		zones = []string{c.Location}
	}
	slices.Sort(zones)
	ipa := &container.IPAllocationPolicy{
		UseIpAliases:               true,
		ClusterSecondaryRangeName:  c.PodsRange,
		ServicesSecondaryRangeName: c.ServicesRange,
		ClusterIpv4Cidr:            v.podsCIDR,
		ClusterIpv4CidrBlock:       v.podsCIDR,
		ServicesIpv4Cidr:           v.svcCIDR,
		ServicesIpv4CidrBlock:      v.svcCIDR,
		StackType:                  "IPV4",
		CreateSubnetwork:           c.CreatedSubnet,
	}
	if v.subnet != nil {
		ipa.NodeIpv4Cidr, ipa.NodeIpv4CidrBlock = v.subnet.Range.String(), v.subnet.Range.String()
		if c.CreatedSubnet {
			ipa.SubnetworkName = v.subnet.Name
		}
	}
	cl := &container.Cluster{
		Name:                     c.Name,
		Description:              c.Description,
		Id:                       fmt.Sprintf("%016x", c.ID),
		Location:                 c.Location,
		Zone:                     c.Location,
		Locations:                zones,
		Network:                  c.Network,
		Subnetwork:               sname,
		NetworkConfig:            &container.NetworkConfig{Network: "projects/" + q.project + "/global/networks/" + c.Network, Subnetwork: "projects/" + q.project + "/regions/" + region + "/subnetworks/" + sname},
		IpAllocationPolicy:       ipa,
		ClusterIpv4Cidr:          v.podsCIDR,
		ServicesIpv4Cidr:         v.svcCIDR,
		NodeIpv4CidrSize:         int64(model.PodBlockBits(c.MaxPodsPerNode)),
		DefaultMaxPodsConstraint: &container.MaxPodsConstraint{MaxPodsPerNode: int64(c.MaxPodsPerNode)},
		Status:                   c.Status,
		CreateTime:               c.Created,
		SelfLink:                 q.clusterLink(c.Location, c.Name),
		Endpoint:                 q.endpoint(),
		MasterAuth:               &container.MasterAuth{ClusterCaCertificate: caCert},
		InitialClusterVersion:    Version,
		CurrentMasterVersion:     Version,
		CurrentNodeVersion:       Version,
		CurrentNodeCount:         int64(len(v.nodes)),
	}
	for i := range c.NodePools {
		cl.NodePools = append(cl.NodePools, q.renderPool(v, &c.NodePools[i]))
	}
	b, _ := json.Marshal(cl)
	var m map[string]json.RawMessage
	_ = json.Unmarshal(b, &m)
	// Node pools keep their own extra fields.
	var pools []json.RawMessage
	for i := range c.NodePools {
		pools = append(pools, q.renderPoolJSON(v, &c.NodePools[i]))
	}
	if len(pools) > 0 {
		m["nodePools"], _ = json.Marshal(pools)
	}
	m["aliasnetUsage"], _ = json.Marshal(v.usage)
	return mergeExtra(m, c.Extra)
}

// Known fields of a create request's cluster: everything else is kept in
// Extra and echoed back.
var clusterKnown = []string{"name", "description", "network", "subnetwork", "ipAllocationPolicy", "nodePools",
	"defaultMaxPodsConstraint", "initialNodeCount", "nodeConfig", "locations", "clusterIpv4Cidr", "servicesIpv4Cidr",
	"location", "zone", "status", "selfLink", "endpoint", "id", "createTime", "masterAuth", "currentNodeCount",
	"currentMasterVersion", "currentNodeVersion", "initialClusterVersion", "networkConfig", "nodeIpv4CidrSize",
	"aliasnetUsage", "instanceGroupUrls"}

var poolKnown = []string{"name", "config", "initialNodeCount", "locations", "maxPodsConstraint", "networkConfig",
	"podIpv4CidrSize", "selfLink", "status", "version", "instanceGroupUrls"}

// poolFrom turns a GKE node pool into the model's, checking what aliasnet
// cannot honour.
func poolFrom(np *container.NodePool, raw json.RawMessage, field string, c *model.Cluster, zones []string) (model.NodePool, int, error) {
	out := model.NodePool{Name: np.Name, Zones: slices.Clone(np.Locations)}
	if len(out.Zones) == 0 {
		out.Zones = slices.Clone(zones)
	}
	if np.Config != nil {
		out.MachineType = np.Config.MachineType
	}
	if np.MaxPodsConstraint != nil {
		out.MaxPodsPerNode = int(np.MaxPodsConstraint.MaxPodsPerNode)
	}
	if nc := np.NetworkConfig; nc != nil && (nc.PodRange != "" && nc.PodRange != c.PodsRange || nc.CreatePodRange || nc.PodIpv4CidrBlock != "") {
		return out, 0, &model.Error{Code: model.Invalid, Field: field + ".networkConfig", Value: nc.PodRange,
			Reason: "aliasnet gives every node pool the cluster's pods range; per-pool pod ranges are not supported."}
	}
	if np.Autoscaling != nil && np.Autoscaling.Enabled {
		return out, 0, &model.Error{Code: model.Invalid, Field: field + ".autoscaling", Value: "enabled",
			Reason: "aliasnet does not autoscale node pools; set the size with setSize."}
	}
	var m map[string]json.RawMessage
	if len(raw) > 0 && json.Unmarshal(raw, &m) == nil {
		out.Extra = extraOf(m, poolKnown...)
	}
	return out, int(np.InitialNodeCount), nil
}

func (a *API) createCluster(q *req) {
	var body container.CreateClusterRequest
	raw, ok := q.decode(&body)
	if !ok {
		return
	}
	if body.Cluster == nil {
		q.badRequest("Required field 'cluster' not specified.")
		return
	}
	var rawCluster map[string]json.RawMessage
	_ = json.Unmarshal(raw["cluster"], &rawCluster)
	cl := body.Cluster
	loc := q.location
	if loc == "-" || loc == "" {
		q.badRequest("A location (zone or region) is required.")
		return
	}
	c := model.Cluster{Project: q.project, Location: loc, Name: cl.Name, Description: cl.Description,
		Network: lastSegment(cl.Network), Extra: extraOf(rawCluster, clusterKnown...)}
	if cl.NetworkConfig != nil {
		if c.Network == "" {
			c.Network = lastSegment(cl.NetworkConfig.Network)
		}
		if cl.Subnetwork == "" {
			cl.Subnetwork = cl.NetworkConfig.Subnetwork
		}
	}
	if s := cl.Subnetwork; s != "" {
		if r := refPart(s, "regions"); r != "" {
			c.Subnet = r + "/" + lastSegment(s)
		} else {
			c.Subnet = lastSegment(s)
		}
	}
	creq := model.CreateClusterReq{}
	ipa := cl.IpAllocationPolicy
	if ipa == nil {
		ipa = &container.IPAllocationPolicy{UseIpAliases: true}
	}
	if ipa.UseRoutes || !ipa.UseIpAliases {
		q.badRequest("aliasnet supports VPC-native clusters only: set ipAllocationPolicy.useIpAliases (gcloud --enable-ip-alias).")
		return
	}
	c.PodsRange, c.ServicesRange = ipa.ClusterSecondaryRangeName, ipa.ServicesSecondaryRangeName
	creq.PodsCIDR = firstOf(ipa.ClusterIpv4CidrBlock, ipa.ClusterIpv4Cidr)
	creq.ServicesCIDR = firstOf(ipa.ServicesIpv4CidrBlock, ipa.ServicesIpv4Cidr, cl.ServicesIpv4Cidr)
	creq.CreateSubnet = ipa.CreateSubnetwork
	creq.NodeCIDR = firstOf(ipa.NodeIpv4CidrBlock, ipa.NodeIpv4Cidr)
	if creq.CreateSubnet && ipa.SubnetworkName != "" {
		c.Subnet = ipa.SubnetworkName
	}
	if cl.DefaultMaxPodsConstraint != nil {
		c.MaxPodsPerNode = int(cl.DefaultMaxPodsConstraint.MaxPodsPerNode)
	}
	pools := cl.NodePools
	var rawPools []json.RawMessage
	_ = json.Unmarshal(rawCluster["nodePools"], &rawPools)
	if len(pools) == 0 && cl.InitialNodeCount > 0 {
		pools = []*container.NodePool{{Name: "default-pool", InitialNodeCount: cl.InitialNodeCount, Config: cl.NodeConfig}}
		rawPools = nil
	}
	for i, np := range pools {
		var r json.RawMessage
		if i < len(rawPools) {
			r = rawPools[i]
		}
		p, n, err := poolFrom(np, r, fmt.Sprintf("cluster.nodePools[%d]", i), &c, cl.Locations)
		if err != nil {
			q.fail(err)
			return
		}
		c.NodePools = append(c.NodePools, p)
		creq.PoolSizes = append(creq.PoolSizes, n)
	}
	creq.Cluster = c
	q.do("CREATE_CLUSTER", model.ClusterKey(q.project, loc, c.Name), body, func(tx *model.Txn) (uint64, any, error) {
		nc, _, err := tx.CreateCluster(creq)
		if err != nil {
			return 0, nil, err
		}
		return nc.ID, nil, nil
	})
}

func firstOf(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

func (a *API) getCluster(q *req) {
	var out json.RawMessage
	var err error
	a.svc.Read(func(st *model.State) {
		c := st.Cluster(q.project, q.location, q.r.PathValue("cluster"))
		if c == nil {
			err = &model.Error{Code: model.NotFound, Reason: fmt.Sprintf("Not found: %s.", model.ClusterKey(q.project, q.location, q.r.PathValue("cluster")))}
			return
		}
		out = q.renderCluster(a.viewOf(st, c))
	})
	if err != nil {
		q.fail(err)
		return
	}
	q.reply(out)
}

func (a *API) listClusters(q *req) {
	out := struct {
		Clusters []json.RawMessage `json:"clusters"`
	}{Clusters: []json.RawMessage{}}
	a.svc.Read(func(st *model.State) {
		for _, c := range st.Clusters(q.project, q.location) {
			out.Clusters = append(out.Clusters, q.renderCluster(a.viewOf(st, c)))
		}
	})
	q.reply(out)
}

func (a *API) deleteCluster(q *req) {
	name := q.r.PathValue("cluster")
	q.do("DELETE_CLUSTER", model.ClusterKey(q.project, q.location, name), nil, func(tx *model.Txn) (uint64, any, error) {
		c := tx.State().Cluster(q.project, q.location, name)
		if err := tx.DeleteCluster(q.project, q.location, name); err != nil {
			return 0, nil, err
		}
		return c.ID, nil, nil
	})
}

func (a *API) createNodePool(q *req) {
	var body container.CreateNodePoolRequest
	raw, ok := q.decode(&body)
	if !ok {
		return
	}
	if body.NodePool == nil {
		q.badRequest("Required field 'nodePool' not specified.")
		return
	}
	name := q.r.PathValue("cluster")
	var c *model.Cluster
	a.svc.Read(func(st *model.State) { c = st.Cluster(q.project, q.location, name) })
	if c == nil {
		q.fail(&model.Error{Code: model.NotFound, Reason: fmt.Sprintf("Not found: %s.", model.ClusterKey(q.project, q.location, name))})
		return
	}
	np, n, err := poolFrom(body.NodePool, raw["nodePool"], "nodePool", c, nil)
	if err != nil {
		q.fail(err)
		return
	}
	q.do("CREATE_NODE_POOL", model.ClusterKey(q.project, q.location, name)+"/nodePools/"+np.Name, body, func(tx *model.Txn) (uint64, any, error) {
		_, _, err := tx.CreateNodePool(q.project, q.location, name, np, n)
		return 0, nil, err
	})
}

func (a *API) poolOf(q *req) (view, *model.NodePool, error) {
	var v view
	var np *model.NodePool
	var err error
	name, pool := q.r.PathValue("cluster"), q.r.PathValue("pool")
	a.svc.Read(func(st *model.State) {
		c := st.Cluster(q.project, q.location, name)
		if c == nil {
			err = &model.Error{Code: model.NotFound, Reason: fmt.Sprintf("Not found: %s.", model.ClusterKey(q.project, q.location, name))}
			return
		}
		v = a.viewOf(st, c)
		for i := range c.NodePools {
			if c.NodePools[i].Name == pool {
				np = &c.NodePools[i]
			}
		}
		if np == nil {
			err = &model.Error{Code: model.NotFound, Reason: fmt.Sprintf("Not found: %s/nodePools/%s.", model.ClusterKey(q.project, q.location, name), pool)}
		}
	})
	return v, np, err
}

func (a *API) getNodePool(q *req) {
	v, np, err := a.poolOf(q)
	if err != nil {
		q.fail(err)
		return
	}
	q.reply(q.renderPoolJSON(v, np))
}

func (a *API) listNodePools(q *req) {
	name := q.r.PathValue("cluster")
	out := struct {
		NodePools []json.RawMessage `json:"nodePools"`
	}{NodePools: []json.RawMessage{}}
	var err error
	a.svc.Read(func(st *model.State) {
		c := st.Cluster(q.project, q.location, name)
		if c == nil {
			err = &model.Error{Code: model.NotFound, Reason: fmt.Sprintf("Not found: %s.", model.ClusterKey(q.project, q.location, name))}
			return
		}
		v := a.viewOf(st, c)
		for i := range c.NodePools {
			out.NodePools = append(out.NodePools, q.renderPoolJSON(v, &c.NodePools[i]))
		}
	})
	if err != nil {
		q.fail(err)
		return
	}
	q.reply(out)
}

func (a *API) deleteNodePool(q *req) {
	name, pool := q.r.PathValue("cluster"), q.r.PathValue("pool")
	q.do("DELETE_NODE_POOL", model.ClusterKey(q.project, q.location, name)+"/nodePools/"+pool, nil, func(tx *model.Txn) (uint64, any, error) {
		return 0, nil, tx.DeleteNodePool(q.project, q.location, name, pool)
	})
}

// poolVerb serves "nodePools/POOL:setSize".
func (a *API) poolVerb(q *req) {
	pool, verb, _ := strings.Cut(q.r.PathValue("poolverb"), ":")
	if verb != "setSize" {
		writeError(q.w, http.StatusNotFound, fmt.Sprintf("aliasnet does not implement nodePools:%s.", verb))
		return
	}
	q.r.SetPathValue("pool", pool)
	a.setSize(q)
}

func (a *API) setSize(q *req) {
	var body container.SetNodePoolSizeRequest
	if _, ok := q.decode(&body); !ok {
		return
	}
	name, pool := q.r.PathValue("cluster"), q.r.PathValue("pool")
	q.do("SET_NODE_POOL_SIZE", model.ClusterKey(q.project, q.location, name)+"/nodePools/"+pool, body, func(tx *model.Txn) (uint64, any, error) {
		_, err := tx.SetNodePoolSize(q.project, q.location, name, pool, int(body.NodeCount))
		return 0, nil, err
	})
}

// serverConfig answers what gcloud asks about versions.
func (a *API) serverConfig(q *req) {
	q.reply(&container.ServerConfig{
		DefaultClusterVersion: Version,
		DefaultImageType:      "COS_CONTAINERD",
		ValidMasterVersions:   []string{Version},
		ValidNodeVersions:     []string{Version},
		ValidImageTypes:       []string{"COS_CONTAINERD", "UBUNTU_CONTAINERD"},
	})
}

// do runs a mutation and answers with its GKE operation.
func (q *req) do(opType, target string, body any, m control.Mutation) {
	o, err := q.a.svc.Do(q.r.Context(), control.Op{
		Project:     q.project,
		Scope:       "locations/" + q.location,
		Type:        opType,
		Target:      target,
		RequestHash: requestHash(q.r, body),
	}, m)
	if err != nil {
		q.fail(err)
		return
	}
	q.reply(q.renderOp(o))
}
