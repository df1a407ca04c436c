package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	container "google.golang.org/api/container/v1"
	"google.golang.org/api/option"
)

func init() { clientCommands = append(clientCommands, newClustersCmd) }

// kclient talks to a server's Kubernetes Engine v1 dialect through the
// official Go client, and to aliasnet's own cluster calls over HTTP.
type kclient struct {
	*client
	csvc     *container.Service
	location string
}

func newKClient(g *Globals, cmd *cobra.Command, location string) (*kclient, error) {
	c, err := newClient(g, cmd)
	if err != nil {
		return nil, err
	}
	if location == "" {
		return nil, flagErr("--zone", "required (or --location, or env ALIASNET_ZONE)")
	}
	csvc, err := container.NewService(c.ctx, option.WithEndpoint(strings.TrimRight(g.Server, "/")+"/"),
		option.WithoutAuthentication(), option.WithHTTPClient(&http.Client{Transport: c.rec}), option.WithUserAgent("aliasnet-cli"))
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", g.Server, err)
	}
	return &kclient{client: c, csvc: csvc, location: location}, nil
}

func (k *kclient) parent() string { return "projects/" + k.project + "/locations/" + k.location }
func (k *kclient) name(cluster string) string {
	return k.parent() + "/clusters/" + cluster
}

// waitOp polls a GKE operation until DONE; a failed one is an error.
func (k *kclient) waitOp(op *container.Operation, err error) (*container.Operation, error) {
	if err != nil {
		return nil, apiError(err)
	}
	ctx, cancel := context.WithTimeout(k.ctx, 10*time.Minute)
	defer cancel()
	delay := 50 * time.Millisecond
	for op.Status != "DONE" {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for operation %s: %w", op.Name, ctx.Err())
		case <-time.After(delay):
		}
		delay = min(2*delay, 2*time.Second)
		if op, err = k.csvc.Projects.Locations.Operations.Get(k.parent() + "/operations/" + op.Name).Context(ctx).Do(); err != nil {
			return nil, apiError(err)
		}
	}
	if op.StatusMessage != "" {
		return op, errors.New(op.StatusMessage)
	}
	if op.Error != nil && op.Error.Message != "" {
		return op, errors.New(op.Error.Message)
	}
	return op, nil
}

// call is one of aliasnet's own cluster calls (package gke, aliasnet.go).
func (k *kclient) call(method, cluster, what string, in, out any) error {
	u := strings.TrimRight(k.g.Server, "/") + "/aliasnet/v1/" + k.name(cluster) + "/" + what
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	rq, err := http.NewRequestWithContext(k.ctx, method, u, body)
	if err != nil {
		return err
	}
	rq.Header.Set("Content-Type", "application/json")
	resp, err := k.rec.RoundTrip(rq)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if json.Unmarshal(b, &e) == nil && e.Error.Message != "" {
			return errors.New(e.Error.Message)
		}
		return fmt.Errorf("%s %s: HTTP %d: %s", method, u, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// clusterUsage mirrors gke.Usage (the aliasnetUsage field of a cluster).
type clusterUsage struct {
	Pods struct {
		RangeName     string `json:"rangeName"`
		Range         string `json:"range"`
		PerNodeRange  string `json:"perNodeRange"`
		NodesUsed     int    `json:"nodesUsed"`
		NodesPossible uint64 `json:"nodesPossible"`
	} `json:"pods"`
	Services struct {
		RangeName   string `json:"rangeName"`
		Range       string `json:"range"`
		IPsUsed     int    `json:"ipsUsed"`
		IPsPossible uint64 `json:"ipsPossible"`
	} `json:"services"`
}

// clusterRow is a cluster with aliasnet's usage, as the table shows it.
type clusterRow struct {
	*container.Cluster
	Usage clusterUsage `json:"aliasnetUsage"`
}

var clusterTable = table[*clusterRow]{
	header: []string{"NAME", "LOCATION", "NUM_NODES", "PODS_RANGE", "NODES_USED/POSSIBLE", "SERVICES_RANGE", "SERVICE_IPS_USED/POSSIBLE", "STATUS"},
	row: func(c *clusterRow) []string {
		u := c.Usage
		return []string{c.Name, c.Location, itoa(c.CurrentNodeCount),
			u.Pods.RangeName + "=" + u.Pods.Range + " (" + u.Pods.PerNodeRange + " per node)",
			strconv.Itoa(u.Pods.NodesUsed) + "/" + strconv.FormatUint(u.Pods.NodesPossible, 10),
			u.Services.RangeName + "=" + u.Services.Range,
			strconv.Itoa(u.Services.IPsUsed) + "/" + strconv.FormatUint(u.Services.IPsPossible, 10),
			c.Status}
	},
}

func (k *kclient) getCluster(name string) (res[*clusterRow], error) {
	if _, err := k.csvc.Projects.Locations.Clusters.Get(k.name(name)).Context(k.ctx).Do(); err != nil {
		return res[*clusterRow]{}, apiError(err)
	}
	raw := k.last()
	var row clusterRow
	if err := json.Unmarshal(raw, &row); err != nil {
		return res[*clusterRow]{}, err
	}
	return res[*clusterRow]{v: &row, raw: raw}, nil
}

// utilisation is the one-paragraph summary describe prints (on stderr, so
// that YAML/JSON on stdout stays parseable).
func utilisation(u clusterUsage) string {
	return fmt.Sprintf("Pods range %s (%s, %s per node): %d of %d nodes.\nServices range %s (%s): %d of %d service IPs.\n",
		u.Pods.RangeName, u.Pods.Range, u.Pods.PerNodeRange, u.Pods.NodesUsed, u.Pods.NodesPossible,
		u.Services.RangeName, u.Services.Range, u.Services.IPsUsed, u.Services.IPsPossible)
}

// locationFlags adds --zone/--location/--region (one value).
func locationFlags(cmd *cobra.Command, loc *string) {
	// All three set one variable; --zone is registered last so that its
	// default (env ALIASNET_ZONE) is the one that sticks.
	cmd.Flags().StringVar(loc, "location", "", "same as --zone")
	cmd.Flags().StringVar(loc, "region", "", "region of a regional cluster")
	cmd.Flags().StringVar(loc, "zone", envOr("ALIASNET_ZONE", ""), "cluster location: a zone (or a region for regional clusters)")
}

func kRunE(g *Globals, loc *string, f func(k *kclient, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		k, err := newKClient(g, cmd, *loc)
		if err != nil {
			return err
		}
		return f(k, args)
	}
}

func newClustersCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{Use: "clusters", Short: "VPC-native Kubernetes clusters: pods and services secondary ranges, per-node pod ranges, service IPs"}
	cmd.AddCommand(newClustersCreateCmd(g), newClustersListCmd(g), newClustersDescribeCmd(g), newClustersDeleteCmd(g),
		newClustersResizeCmd(g), newNodePoolsCmd(g), newClusterNodesCmd(g), newClusterServicesCmd(g))
	return cmd
}

func newClustersCreateCmd(g *Globals) *cobra.Command {
	var loc, network, subnet, podsName, svcName, podsCIDR, svcCIDR, createSubnet, machine, pool string
	var ipAlias bool
	var nodes, maxPods int
	cmd := &cobra.Command{
		Use:   "create NAME --zone Z [--cluster-secondary-range-name R --services-secondary-range-name R | --cluster-ipv4-cidr CIDR|/N --services-ipv4-cidr CIDR|/N]",
		Short: "Create a VPC-native cluster and its nodes (as gcloud container clusters create)",
		Example: `  aliasnet clusters create my-cluster --zone us-central1-a --enable-ip-alias \
      --cluster-secondary-range-name=pods-range --services-secondary-range-name=services-range --num-nodes 2
  aliasnet clusters create c2 --zone us-central1-a --cluster-ipv4-cidr /16 --services-ipv4-cidr /22 --max-pods-per-node 32`,
		Args: cobra.ExactArgs(1),
	}
	cmd.RunE = kRunE(g, &loc, func(k *kclient, args []string) error {
		if !ipAlias {
			return flagErr("--enable-ip-alias", "aliasnet supports VPC-native (alias IP) clusters only")
		}
		cl := &container.Cluster{Name: args[0], Network: network, Subnetwork: subnet,
			IpAllocationPolicy: &container.IPAllocationPolicy{UseIpAliases: true,
				ClusterSecondaryRangeName: podsName, ServicesSecondaryRangeName: svcName,
				ClusterIpv4CidrBlock: podsCIDR, ServicesIpv4CidrBlock: svcCIDR},
			NodePools: []*container.NodePool{{Name: pool, InitialNodeCount: int64(nodes), Config: &container.NodeConfig{MachineType: machine}}},
		}
		if maxPods != 0 {
			cl.DefaultMaxPodsConstraint = &container.MaxPodsConstraint{MaxPodsPerNode: int64(maxPods)}
		}
		if createSubnet != "" {
			cl.IpAllocationPolicy.CreateSubnetwork = true
			for _, kv := range strings.Split(createSubnet, ",") {
				key, v, _ := strings.Cut(kv, "=")
				switch key {
				case "name":
					cl.IpAllocationPolicy.SubnetworkName = v
				case "range":
					cl.IpAllocationPolicy.NodeIpv4CidrBlock = v
				case "":
				default:
					return flagErr("--create-subnetwork", "unknown key %q (valid: name, range)", key)
				}
			}
		}
		if _, err := k.waitOp(k.csvc.Projects.Locations.Clusters.Create(k.parent(), &container.CreateClusterRequest{Cluster: cl}).Context(k.ctx).Do()); err != nil {
			return err
		}
		k.created(k.csvc.BasePath + "v1/" + k.name(args[0]))
		r, err := k.getCluster(args[0])
		if err != nil {
			return err
		}
		return printOne(k.client, k.g.Format, clusterTable, r)
	})
	locationFlags(cmd, &loc)
	f := cmd.Flags()
	f.BoolVar(&ipAlias, "enable-ip-alias", true, "VPC-native cluster (the only kind aliasnet makes)")
	f.StringVar(&network, "network", "", "network (default: default)")
	f.StringVar(&subnet, "subnetwork", "", "subnet of the nodes (default: the network's subnet in the region)")
	f.StringVar(&podsName, "cluster-secondary-range-name", "", "existing secondary range for pods")
	f.StringVar(&svcName, "services-secondary-range-name", "", "existing secondary range for services")
	f.StringVar(&podsCIDR, "cluster-ipv4-cidr", "", "pods range to create: CIDR or /N (default /14)")
	f.StringVar(&svcCIDR, "services-ipv4-cidr", "", "services range to create: CIDR or /N (default /20)")
	f.StringVar(&createSubnet, "create-subnetwork", "", "create the nodes' subnet: name=NAME,range=CIDR|/N")
	f.IntVar(&nodes, "num-nodes", 3, "nodes (per zone) of the default pool")
	f.IntVar(&maxPods, "max-pods-per-node", 0, "pods per node (default 110: a /24 per node)")
	f.StringVar(&machine, "machine-type", "e2-medium", "machine type of the nodes")
	f.StringVar(&pool, "node-pool", "default-pool", "name of the first node pool")
	return cmd
}

func newClustersListCmd(g *Globals) *cobra.Command {
	var loc string
	cmd := &cobra.Command{Use: "list [--zone Z]", Short: "List clusters with their range utilisation", Args: cobra.NoArgs}
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if loc == "" {
			loc = "-"
		}
		k, err := newKClient(g, cmd, loc)
		if err != nil {
			return err
		}
		if _, err := k.csvc.Projects.Locations.Clusters.List(k.parent()).Context(k.ctx).Do(); err != nil {
			return apiError(err)
		}
		var l struct {
			Clusters []json.RawMessage `json:"clusters"`
		}
		if err := json.Unmarshal(k.last(), &l); err != nil {
			return err
		}
		var rs []res[*clusterRow]
		for _, raw := range l.Clusters {
			var row clusterRow
			if err := json.Unmarshal(raw, &row); err != nil {
				return err
			}
			rs = append(rs, res[*clusterRow]{v: &row, raw: raw})
		}
		return printList(k.client, clusterTable, rs)
	}
	locationFlags(cmd, &loc)
	return cmd
}

func newClustersDescribeCmd(g *Globals) *cobra.Command {
	var loc string
	cmd := &cobra.Command{Use: "describe NAME --zone Z", Short: "Show a cluster, with pods/services range utilisation", Args: cobra.ExactArgs(1)}
	cmd.RunE = kRunE(g, &loc, func(k *kclient, args []string) error {
		r, err := k.getCluster(args[0])
		if err != nil {
			return err
		}
		if err := printOne(k.client, k.describeFormat(), clusterTable, r); err != nil {
			return err
		}
		fmt.Fprint(k.errw(), utilisation(r.v.Usage))
		return nil
	})
	locationFlags(cmd, &loc)
	return cmd
}

func newClustersDeleteCmd(g *Globals) *cobra.Command {
	var loc string
	cmd := &cobra.Command{Use: "delete NAME --zone Z", Short: "Delete a cluster: its nodes, service IPs and the ranges aliasnet created", Args: cobra.ExactArgs(1)}
	cmd.RunE = kRunE(g, &loc, func(k *kclient, args []string) error {
		if _, err := k.waitOp(k.csvc.Projects.Locations.Clusters.Delete(k.name(args[0])).Context(k.ctx).Do()); err != nil {
			return err
		}
		k.deleted(k.csvc.BasePath + "v1/" + k.name(args[0]))
		return nil
	})
	locationFlags(cmd, &loc)
	return cmd
}

func newClustersResizeCmd(g *Globals) *cobra.Command {
	var loc, pool string
	var n int
	cmd := &cobra.Command{Use: "resize NAME --zone Z --num-nodes N [--node-pool P]", Short: "Set a node pool's size (per zone): nodes join or leave", Args: cobra.ExactArgs(1)}
	cmd.RunE = kRunE(g, &loc, func(k *kclient, args []string) error {
		if err := requireFlag(cmd, "num-nodes"); err != nil {
			return err
		}
		name := k.name(args[0]) + "/nodePools/" + pool
		if _, err := k.waitOp(k.csvc.Projects.Locations.Clusters.NodePools.SetSize(name, &container.SetNodePoolSizeRequest{NodeCount: int64(n)}).Context(k.ctx).Do()); err != nil {
			return err
		}
		k.updated(k.csvc.BasePath + "v1/" + k.name(args[0]))
		r, err := k.getCluster(args[0])
		if err != nil {
			return err
		}
		fmt.Fprint(k.errw(), utilisation(r.v.Usage))
		return nil
	})
	locationFlags(cmd, &loc)
	cmd.Flags().StringVar(&pool, "node-pool", "default-pool", "node pool")
	cmd.Flags().IntVar(&n, "num-nodes", 0, "nodes per zone")
	return cmd
}

var nodePoolTable = table[*container.NodePool]{
	header: []string{"NAME", "MACHINE_TYPE", "NODES_PER_ZONE", "ZONES", "MAX_PODS_PER_NODE", "POD_RANGE_SIZE"},
	row: func(np *container.NodePool) []string {
		mt, mp := "", ""
		if np.Config != nil {
			mt = np.Config.MachineType
		}
		if np.MaxPodsConstraint != nil {
			mp = itoa(np.MaxPodsConstraint.MaxPodsPerNode)
		}
		return []string{np.Name, mt, itoa(np.InitialNodeCount), strings.Join(np.Locations, ","), mp, "/" + itoa(np.PodIpv4CidrSize)}
	},
}

func newNodePoolsCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{Use: "node-pools", Short: "Node pools of a cluster"}
	var loc, cluster, machine string
	var n, maxPods int
	create := &cobra.Command{Use: "create NAME --cluster C --zone Z [--num-nodes N] [--max-pods-per-node M]", Short: "Add a node pool", Args: cobra.ExactArgs(1)}
	create.RunE = kRunE(g, &loc, func(k *kclient, args []string) error {
		np := &container.NodePool{Name: args[0], InitialNodeCount: int64(n), Config: &container.NodeConfig{MachineType: machine}}
		if maxPods != 0 {
			np.MaxPodsConstraint = &container.MaxPodsConstraint{MaxPodsPerNode: int64(maxPods)}
		}
		if _, err := k.waitOp(k.csvc.Projects.Locations.Clusters.NodePools.Create(k.name(cluster), &container.CreateNodePoolRequest{NodePool: np}).Context(k.ctx).Do()); err != nil {
			return err
		}
		k.created(k.csvc.BasePath + "v1/" + k.name(cluster) + "/nodePools/" + args[0])
		return nil
	})
	locationFlags(create, &loc)
	create.Flags().StringVar(&cluster, "cluster", "", "cluster")
	create.Flags().IntVar(&n, "num-nodes", 3, "nodes per zone")
	create.Flags().IntVar(&maxPods, "max-pods-per-node", 0, "pods per node (default: the cluster's)")
	create.Flags().StringVar(&machine, "machine-type", "e2-medium", "machine type")

	var lloc, lcluster string
	list := &cobra.Command{Use: "list --cluster C --zone Z", Short: "List node pools", Args: cobra.NoArgs}
	list.RunE = kRunE(g, &lloc, func(k *kclient, args []string) error {
		var rs []res[*container.NodePool]
		if _, err := k.csvc.Projects.Locations.Clusters.NodePools.List(k.name(lcluster)).Context(k.ctx).Do(); err != nil {
			return apiError(err)
		}
		var l struct {
			NodePools []json.RawMessage `json:"nodePools"`
		}
		if err := json.Unmarshal(k.last(), &l); err != nil {
			return err
		}
		for _, raw := range l.NodePools {
			var np container.NodePool
			if err := json.Unmarshal(raw, &np); err != nil {
				return err
			}
			rs = append(rs, res[*container.NodePool]{v: &np, raw: raw})
		}
		return printList(k.client, nodePoolTable, rs)
	})
	locationFlags(list, &lloc)
	list.Flags().StringVar(&lcluster, "cluster", "", "cluster")

	var dloc, dcluster string
	del := &cobra.Command{Use: "delete NAME --cluster C --zone Z", Short: "Delete a node pool and its nodes", Args: cobra.ExactArgs(1)}
	del.RunE = kRunE(g, &dloc, func(k *kclient, args []string) error {
		if _, err := k.waitOp(k.csvc.Projects.Locations.Clusters.NodePools.Delete(k.name(dcluster) + "/nodePools/" + args[0]).Context(k.ctx).Do()); err != nil {
			return err
		}
		k.deleted(k.csvc.BasePath + "v1/" + k.name(dcluster) + "/nodePools/" + args[0])
		return nil
	})
	locationFlags(del, &dloc)
	del.Flags().StringVar(&dcluster, "cluster", "", "cluster")
	cmd.AddCommand(create, list, del)
	return cmd
}

// clusterNode mirrors gke.Node.
type clusterNode struct {
	Instance string `json:"instance"`
	Zone     string `json:"zone"`
	Pool     string `json:"pool"`
	PodRange string `json:"podRange"`
	Managed  bool   `json:"managed"`
}

var clusterNodeTable = table[clusterNode]{
	header: []string{"INSTANCE", "ZONE", "POOL", "POD_RANGE", "MANAGED"},
	row: func(n clusterNode) []string {
		return []string{n.Instance, n.Zone, n.Pool, n.PodRange, strconv.FormatBool(n.Managed)}
	},
}

func newClusterNodesCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{Use: "nodes", Short: "Nodes of a cluster: join an existing instance (it gets a pod range on nic0) or make one leave"}
	var loc string
	list := &cobra.Command{Use: "list CLUSTER --zone Z", Short: "List nodes and their pod ranges", Args: cobra.ExactArgs(1)}
	list.RunE = kRunE(g, &loc, func(k *kclient, args []string) error {
		var l struct {
			Nodes []json.RawMessage `json:"nodes"`
		}
		if err := k.call("GET", args[0], "nodes", nil, &l); err != nil {
			return err
		}
		var rs []res[clusterNode]
		for _, raw := range l.Nodes {
			var n clusterNode
			if err := json.Unmarshal(raw, &n); err != nil {
				return err
			}
			rs = append(rs, res[clusterNode]{v: n, raw: raw})
		}
		return printList(k.client, clusterNodeTable, rs)
	})
	locationFlags(list, &loc)

	mk := func(verb, short string) *cobra.Command {
		var loc, inst, instZone, pool string
		c := &cobra.Command{Use: verb + " CLUSTER --zone Z --instance I [--instance-zone IZ]", Short: short, Args: cobra.ExactArgs(1)}
		c.RunE = kRunE(g, &loc, func(k *kclient, args []string) error {
			if err := requireFlag(c, "instance"); err != nil {
				return err
			}
			if instZone == "" {
				instZone = k.location
			}
			var out json.RawMessage
			if err := k.call("POST", args[0], "nodes:"+verb, map[string]string{"instance": inst, "zone": instZone, "pool": pool}, &out); err != nil {
				return err
			}
			if verb == "leave" {
				fmt.Fprintf(k.errw(), "Instance %s left cluster %s; its pod range was released.\n", inst, args[0])
				return nil
			}
			var n clusterNode
			if err := json.Unmarshal(out, &n); err != nil {
				return err
			}
			return printOne(k.client, k.g.Format, clusterNodeTable, res[clusterNode]{v: n, raw: out})
		})
		locationFlags(c, &loc)
		c.Flags().StringVar(&inst, "instance", "", "instance name")
		c.Flags().StringVar(&instZone, "instance-zone", "", "zone of the instance (default: --zone)")
		if verb == "join" {
			c.Flags().StringVar(&pool, "node-pool", "", "node pool (default: the first)")
		}
		return c
	}
	cmd.AddCommand(list, mk("join", "Make an instance a node: nic0 gets a pod range from the pods range"), mk("leave", "Make a node leave: its pod range is released (pool-made instances are deleted)"))
	return cmd
}

type serviceIP struct {
	Name string `json:"name"`
	IP   string `json:"ip"`
}

var serviceIPTable = table[serviceIP]{
	header: []string{"NAME", "IP"},
	row:    func(s serviceIP) []string { return []string{s.Name, s.IP} },
}

func newClusterServicesCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{Use: "services", Short: "Service (cluster) IPs from a cluster's services range"}
	var loc string
	list := &cobra.Command{Use: "list CLUSTER --zone Z", Short: "List allocated service IPs", Args: cobra.ExactArgs(1)}
	list.RunE = kRunE(g, &loc, func(k *kclient, args []string) error {
		var l struct {
			Services []json.RawMessage `json:"services"`
		}
		if err := k.call("GET", args[0], "services", nil, &l); err != nil {
			return err
		}
		var rs []res[serviceIP]
		for _, raw := range l.Services {
			var s serviceIP
			if err := json.Unmarshal(raw, &s); err != nil {
				return err
			}
			rs = append(rs, res[serviceIP]{v: s, raw: raw})
		}
		return printList(k.client, serviceIPTable, rs)
	})
	locationFlags(list, &loc)
	mk := func(verb, short string) *cobra.Command {
		var loc, name, ip string
		c := &cobra.Command{Use: verb + " CLUSTER --zone Z --name NAMESPACE.SERVICE", Short: short, Args: cobra.ExactArgs(1)}
		c.RunE = kRunE(g, &loc, func(k *kclient, args []string) error {
			if err := requireFlag(c, "name"); err != nil {
				return err
			}
			var out json.RawMessage
			if err := k.call("POST", args[0], "services:"+verb, map[string]string{"name": name, "ip": ip}, &out); err != nil {
				return err
			}
			var s serviceIP
			if err := json.Unmarshal(out, &s); err != nil {
				return err
			}
			if verb == "release" {
				fmt.Fprintf(k.errw(), "Released %s (%s).\n", s.IP, s.Name)
				return nil
			}
			return printOne(k.client, k.g.Format, serviceIPTable, res[serviceIP]{v: s, raw: out})
		})
		locationFlags(c, &loc)
		c.Flags().StringVar(&name, "name", "", "service name, NAMESPACE.NAME")
		if verb == "allocate" {
			c.Flags().StringVar(&ip, "ip", "", "a specific address of the services range (default: the next free one)")
		}
		return c
	}
	cmd.AddCommand(list, mk("allocate", "Allocate a service IP"), mk("release", "Release a service IP"))
	return cmd
}
