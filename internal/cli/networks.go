package cli

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	compute "google.golang.org/api/compute/v1"
)

func init() { clientCommands = append(clientCommands, newNetworksCmd) }

func subnetMode(n *compute.Network) string {
	switch {
	case n.IPv4Range != "":
		return "LEGACY"
	case n.AutoCreateSubnetworks:
		return "AUTO"
	}
	return "CUSTOM"
}

var networkTable = table[*compute.Network]{
	header: []string{"NAME", "SUBNET_MODE", "BGP_ROUTING_MODE", "MTU"},
	row: func(n *compute.Network) []string {
		mode := ""
		if n.RoutingConfig != nil {
			mode = n.RoutingConfig.RoutingMode
		}
		mtu := ""
		if n.Mtu != 0 {
			mtu = itoa(n.Mtu)
		}
		return []string{n.Name, subnetMode(n), mode, mtu}
	},
}

// peeringRow is a peering with the network it belongs to.
type peeringRow struct {
	network string
	*compute.NetworkPeering
}

// peeringsOf splits a network into its peerings, each with its JSON as the
// API sent it.
func peeringsOf(n res[*compute.Network]) ([]res[peeringRow], error) {
	var raw struct {
		Peerings []json.RawMessage `json:"peerings"`
	}
	if err := json.Unmarshal(n.raw, &raw); err != nil || len(raw.Peerings) != len(n.v.Peerings) {
		return nil, fmt.Errorf("decoding the peerings of network '%s': %v", n.v.Name, err)
	}
	out := make([]res[peeringRow], len(raw.Peerings))
	for i, p := range n.v.Peerings {
		out[i] = res[peeringRow]{v: peeringRow{network: n.v.Name, NetworkPeering: p}, raw: raw.Peerings[i]}
	}
	return out, nil
}

var peeringTable = table[peeringRow]{
	header: []string{"NAME", "NETWORK", "PEER_PROJECT", "PEER_NETWORK", "STATE"},
	row: func(p peeringRow) []string {
		return []string{p.Name, p.network, refPart(p.Network, "projects"), lastSegment(p.Network), p.State}
	},
}

func newNetworksCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{Use: "networks", Short: "VPC networks (global/networks)"}
	cmd.AddCommand(newNetworksCreateCmd(g), newNetworksListCmd(g), newNetworksDescribeCmd(g),
		newNetworksDeleteCmd(g), newPeeringsCmd(g))
	return cmd
}

func newNetworksCreateCmd(g *Globals) *cobra.Command {
	var mode, desc, routing string
	var mtu int64
	cmd := &cobra.Command{
		Use:   "create NAME --subnet-mode=auto|custom [--description D] [--mtu N]",
		Short: "Create a network",
		Example: `  aliasnet networks create vpc --subnet-mode=custom
  aliasnet networks create auto-net --subnet-mode=auto --mtu 1500`,
		Args: cobra.ExactArgs(1),
	}
	cmd.RunE = clientRunE(g, func(c *client, args []string) error {
		n := &compute.Network{Name: args[0], Description: desc, Mtu: mtu,
			ForceSendFields: []string{"AutoCreateSubnetworks"}}
		switch strings.ToLower(mode) {
		case "auto":
			n.AutoCreateSubnetworks = true
		case "custom":
		case "legacy":
			return flagErr("--subnet-mode", "legacy networks are not supported (use auto or custom)")
		default:
			return flagErr("--subnet-mode", "%q is not auto or custom", mode)
		}
		switch strings.ToLower(routing) {
		case "regional", "global":
			n.RoutingConfig = &compute.NetworkRoutingConfig{RoutingMode: strings.ToUpper(routing)}
		default:
			return flagErr("--bgp-routing-mode", "%q is not regional or global", routing)
		}
		op, err := c.wait(c.svc.Networks.Insert(c.project, n).Context(c.ctx).Do())
		if err != nil {
			return err
		}
		c.created(op.TargetLink)
		got, err := fetch(c, c.svc.Networks.Get(c.project, args[0]).Context(c.ctx).Do)
		if err != nil {
			return err
		}
		return printOne(c, c.g.Format, networkTable, got)
	})
	f := cmd.Flags()
	f.StringVar(&mode, "subnet-mode", "auto", "auto: one subnet per region from 10.128.0.0/9; custom: subnets you create")
	f.StringVar(&desc, "description", "", "description")
	f.Int64Var(&mtu, "mtu", 0, "maximum transmission unit, 1300 to 8896 (default 1460)")
	f.StringVar(&routing, "bgp-routing-mode", "regional", "regional or global")
	return cmd
}

func (c *client) listNetworks() ([]res[*compute.Network], error) {
	return pages[*compute.Network](c, "", func(f func(*compute.NetworkList) error) error {
		return c.svc.Networks.List(c.project).Context(c.ctx).Pages(c.ctx, f)
	})
}

func newNetworksListCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{Use: "list", Short: "List networks", Args: cobra.NoArgs}
	cmd.RunE = clientRunE(g, func(c *client, _ []string) error {
		ns, err := c.listNetworks()
		if err != nil {
			return err
		}
		return printList(c, networkTable, ns)
	})
	return cmd
}

func newNetworksDescribeCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{Use: "describe NAME", Short: "Show a network (YAML unless --format)", Args: cobra.ExactArgs(1)}
	cmd.RunE = clientRunE(g, func(c *client, args []string) error {
		n, err := fetch(c, c.svc.Networks.Get(c.project, args[0]).Context(c.ctx).Do)
		if err != nil {
			return err
		}
		return printOne(c, c.describeFormat(), networkTable, n)
	})
	return cmd
}

func newNetworksDeleteCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{Use: "delete NAME...", Short: "Delete networks", Args: cobra.MinimumNArgs(1)}
	cmd.RunE = clientRunE(g, func(c *client, args []string) error {
		for _, name := range args {
			op, err := c.wait(c.svc.Networks.Delete(c.project, name).Context(c.ctx).Do())
			if err != nil {
				return err
			}
			c.deleted(op.TargetLink)
		}
		return nil
	})
	return cmd
}

func newPeeringsCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{Use: "peerings", Short: "VPC network peerings"}
	cmd.AddCommand(newPeeringsCreateCmd(g), newPeeringsDeleteCmd(g), newPeeringsListCmd(g))
	return cmd
}

func newPeeringsCreateCmd(g *Globals) *cobra.Command {
	var network, peer, peerProject string
	cmd := &cobra.Command{
		Use:     "create NAME --network N --peer-network P [--peer-project PP]",
		Short:   "Peer a network with another (the peer must peer back to become ACTIVE)",
		Example: `  aliasnet networks peerings create a-to-b --network a --peer-network b`,
		Args:    cobra.ExactArgs(1),
	}
	cmd.RunE = clientRunE(g, func(c *client, args []string) error {
		if err := requireFlag(cmd, "network", "peer-network"); err != nil {
			return err
		}
		pp := peerProject
		if pp == "" {
			pp = c.project
		}
		peerURL := peer
		if !strings.Contains(peer, "/") {
			peerURL = c.svc.BasePath + "projects/" + pp + "/global/networks/" + peer
		}
		req := &compute.NetworksAddPeeringRequest{NetworkPeering: &compute.NetworkPeering{
			Name: args[0], Network: peerURL, ExchangeSubnetRoutes: true}}
		op, err := c.wait(c.svc.Networks.AddPeering(c.project, network, req).Context(c.ctx).Do())
		if err != nil {
			return err
		}
		c.updated(op.TargetLink)
		n, err := fetch(c, c.svc.Networks.Get(c.project, network).Context(c.ctx).Do)
		if err != nil {
			return err
		}
		ps, err := peeringsOf(n)
		if err != nil {
			return err
		}
		for _, p := range ps {
			if p.v.Name == args[0] {
				return printOne(c, c.g.Format, peeringTable, p)
			}
		}
		return nil
	})
	f := cmd.Flags()
	f.StringVar(&network, "network", "", "the network to add the peering to")
	f.StringVar(&peer, "peer-network", "", "the network to peer with")
	f.StringVar(&peerProject, "peer-project", "", "project of the peer network (default: --project)")
	return cmd
}

func newPeeringsDeleteCmd(g *Globals) *cobra.Command {
	var network string
	cmd := &cobra.Command{Use: "delete NAME --network N", Short: "Remove a peering", Args: cobra.ExactArgs(1)}
	cmd.RunE = clientRunE(g, func(c *client, args []string) error {
		if err := requireFlag(cmd, "network"); err != nil {
			return err
		}
		req := &compute.NetworksRemovePeeringRequest{Name: args[0]}
		op, err := c.wait(c.svc.Networks.RemovePeering(c.project, network, req).Context(c.ctx).Do())
		if err != nil {
			return err
		}
		c.updated(op.TargetLink)
		return nil
	})
	cmd.Flags().StringVar(&network, "network", "", "the network the peering belongs to")
	return cmd
}

func newPeeringsListCmd(g *Globals) *cobra.Command {
	var network string
	cmd := &cobra.Command{Use: "list [--network N]", Short: "List peerings", Args: cobra.NoArgs}
	cmd.RunE = clientRunE(g, func(c *client, _ []string) error {
		var ns []res[*compute.Network]
		if network != "" {
			n, err := fetch(c, c.svc.Networks.Get(c.project, network).Context(c.ctx).Do)
			if err != nil {
				return err
			}
			ns = append(ns, n)
		} else {
			var err error
			if ns, err = c.listNetworks(); err != nil {
				return err
			}
		}
		var rows []res[peeringRow]
		for _, n := range ns {
			ps, err := peeringsOf(n)
			if err != nil {
				return err
			}
			rows = append(rows, ps...)
		}
		return printList(c, peeringTable, rows)
	})
	cmd.Flags().StringVar(&network, "network", "", "only this network's peerings")
	return cmd
}
