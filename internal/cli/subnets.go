package cli

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/spf13/cobra"
	compute "google.golang.org/api/compute/v1"
)

func init() { clientCommands = append(clientCommands, newSubnetsCmd) }

func secondaryString(sn *compute.Subnetwork) string {
	parts := make([]string, 0, len(sn.SecondaryIpRanges))
	for _, r := range sn.SecondaryIpRanges {
		if r != nil {
			parts = append(parts, r.RangeName+"="+r.IpCidrRange)
		}
	}
	return strings.Join(parts, ",")
}

var subnetTable = table[*compute.Subnetwork]{
	header: []string{"NAME", "REGION", "NETWORK", "RANGE", "SECONDARY_RANGES"},
	row: func(sn *compute.Subnetwork) []string {
		return []string{sn.Name, lastSegment(sn.Region), lastSegment(sn.Network), sn.IpCidrRange, secondaryString(sn)}
	},
}

func newSubnetsCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{Use: "subnets", Aliases: []string{"subnetworks"}, Short: "Subnets: a primary range and named secondary ranges (regions/R/subnetworks)"}
	cmd.AddCommand(newSubnetsCreateCmd(g), newSubnetsListCmd(g), newSubnetsDescribeCmd(g),
		newSubnetsUpdateCmd(g), newSubnetsExpandCmd(g), newSubnetsDeleteCmd(g))
	return cmd
}

func (c *client) printSubnetAfter(op *compute.Operation, region, name string, verb func(string)) error {
	verb(op.TargetLink)
	sn, err := fetch(c, c.svc.Subnetworks.Get(c.project, region, name).Context(c.ctx).Do)
	if err != nil {
		return err
	}
	return printOne(c, c.g.Format, subnetTable, sn)
}

func newSubnetsCreateCmd(g *Globals) *cobra.Command {
	var network, region, rng, desc string
	var secondary []string
	cmd := &cobra.Command{
		Use:   "create NAME --network N --region R --range CIDR [--secondary-range NAME=CIDR[,NAME=CIDR]]...",
		Short: "Create a subnet",
		Example: `  aliasnet subnets create subnet-a --network vpc --region us-central1 --range 10.128.0.0/16 \
      --secondary-range container-range=172.16.0.0/20`,
		Args: cobra.ExactArgs(1),
	}
	cmd.RunE = clientRunE(g, func(c *client, args []string) error {
		if err := requireFlag(cmd, "network", "region", "range"); err != nil {
			return err
		}
		sn := &compute.Subnetwork{Name: args[0], Description: desc, IpCidrRange: rng,
			Network: c.url("global/networks", network)}
		seen := map[string]bool{}
		for _, v := range secondary {
			rs, err := ParseSecondaryRanges("--secondary-range", v)
			if err != nil {
				return err
			}
			for _, r := range rs {
				if seen[r.Name] {
					return flagErr("--secondary-range", "range name %q given twice", r.Name)
				}
				seen[r.Name] = true
				sn.SecondaryIpRanges = append(sn.SecondaryIpRanges, &compute.SubnetworkSecondaryRange{RangeName: r.Name, IpCidrRange: r.Range.String()})
			}
		}
		op, err := c.wait(c.svc.Subnetworks.Insert(c.project, region, sn).Context(c.ctx).Do())
		if err != nil {
			return err
		}
		return c.printSubnetAfter(op, region, args[0], c.created)
	})
	f := cmd.Flags()
	f.StringVar(&network, "network", "", "network of the subnet")
	f.StringVar(&region, "region", "", "region of the subnet")
	f.StringVar(&rng, "range", "", "primary IPv4 range (CIDR)")
	f.StringArrayVar(&secondary, "secondary-range", nil, "secondary ranges NAME=CIDR[,NAME=CIDR] (repeatable)")
	f.StringVar(&desc, "description", "", "description")
	return cmd
}

func newSubnetsListCmd(g *Globals) *cobra.Command {
	var region, network string
	cmd := &cobra.Command{Use: "list [--region R] [--network N]", Short: "List subnets (all regions unless --region)", Args: cobra.NoArgs}
	cmd.RunE = clientRunE(g, func(c *client, _ []string) error {
		var all []res[*compute.Subnetwork]
		var err error
		if region != "" {
			all, err = pages[*compute.Subnetwork](c, "", func(f func(*compute.SubnetworkList) error) error {
				return c.svc.Subnetworks.List(c.project, region).Context(c.ctx).Pages(c.ctx, f)
			})
		} else {
			all, err = pages[*compute.Subnetwork](c, "subnetworks", func(f func(*compute.SubnetworkAggregatedList) error) error {
				return c.svc.Subnetworks.AggregatedList(c.project).Context(c.ctx).Pages(c.ctx, f)
			})
		}
		if err != nil {
			return err
		}
		var out []res[*compute.Subnetwork]
		for _, sn := range all {
			if network == "" || lastSegment(sn.v.Network) == lastSegment(network) {
				out = append(out, sn)
			}
		}
		return printList(c, subnetTable, out)
	})
	cmd.Flags().StringVar(&region, "region", "", "only this region")
	cmd.Flags().StringVar(&network, "network", "", "only this network's subnets")
	return cmd
}

func newSubnetsDescribeCmd(g *Globals) *cobra.Command {
	var region string
	cmd := &cobra.Command{Use: "describe NAME --region R", Short: "Show a subnet (YAML unless --format)", Args: cobra.ExactArgs(1)}
	cmd.RunE = clientRunE(g, func(c *client, args []string) error {
		if err := requireFlag(cmd, "region"); err != nil {
			return err
		}
		sn, err := fetch(c, c.svc.Subnetworks.Get(c.project, region, args[0]).Context(c.ctx).Do)
		if err != nil {
			return err
		}
		return printOne(c, c.describeFormat(), subnetTable, sn)
	})
	cmd.Flags().StringVar(&region, "region", "", "region of the subnet")
	return cmd
}

func newSubnetsUpdateCmd(g *Globals) *cobra.Command {
	var region string
	var add, remove []string
	cmd := &cobra.Command{
		Use:   "update NAME --region R [--add-secondary-ranges NAME=CIDR[,..]] [--remove-secondary-ranges NAME[,..]]",
		Short: "Add or remove secondary ranges (PATCH with the subnet's fingerprint)",
		Example: `  aliasnet subnets update subnet-a --region us-central1 --add-secondary-ranges svc-range=172.17.0.0/20
  aliasnet subnets update subnet-a --region us-central1 --remove-secondary-ranges svc-range`,
		Args: cobra.ExactArgs(1),
	}
	cmd.RunE = clientRunE(g, func(c *client, args []string) error {
		if err := requireFlag(cmd, "region"); err != nil {
			return err
		}
		if len(add) == 0 && len(remove) == 0 {
			return flagErr("--add-secondary-ranges", "one of --add-secondary-ranges or --remove-secondary-ranges is required")
		}
		var adds []SecondaryRange
		for _, v := range add {
			rs, err := ParseSecondaryRanges("--add-secondary-ranges", v)
			if err != nil {
				return err
			}
			adds = append(adds, rs...)
		}
		drop := map[string]bool{}
		for _, v := range remove {
			ns, err := ParseRangeNames("--remove-secondary-ranges", v)
			if err != nil {
				return err
			}
			for _, n := range ns {
				drop[n] = true
			}
		}
		sn, err := c.svc.Subnetworks.Get(c.project, region, args[0]).Context(c.ctx).Do()
		if err != nil {
			return apiError(err)
		}
		// As gcloud: the full new list, sent whole with the fingerprint.
		have := map[string]bool{}
		ranges := []*compute.SubnetworkSecondaryRange{}
		for _, r := range sn.SecondaryIpRanges {
			have[r.RangeName] = true
			if !drop[r.RangeName] {
				ranges = append(ranges, &compute.SubnetworkSecondaryRange{RangeName: r.RangeName, IpCidrRange: r.IpCidrRange})
			}
		}
		for n := range drop {
			if !have[n] {
				names := make([]string, 0, len(sn.SecondaryIpRanges))
				for _, r := range sn.SecondaryIpRanges {
					names = append(names, r.RangeName)
				}
				return flagErr("--remove-secondary-ranges", "subnetwork '%s' has no secondary range %q (has: %s)", sn.Name, n, strings.Join(names, ", "))
			}
		}
		for _, r := range adds {
			ranges = append(ranges, &compute.SubnetworkSecondaryRange{RangeName: r.Name, IpCidrRange: r.Range.String()})
		}
		patch := &compute.Subnetwork{SecondaryIpRanges: ranges, Fingerprint: sn.Fingerprint,
			ForceSendFields: []string{"SecondaryIpRanges"}}
		op, err := c.wait(c.svc.Subnetworks.Patch(c.project, region, args[0], patch).Context(c.ctx).Do())
		if err != nil {
			return err
		}
		return c.printSubnetAfter(op, region, args[0], c.updated)
	})
	f := cmd.Flags()
	f.StringVar(&region, "region", "", "region of the subnet")
	f.StringArrayVar(&add, "add-secondary-ranges", nil, "secondary ranges to add, NAME=CIDR[,NAME=CIDR]")
	f.StringArrayVar(&remove, "remove-secondary-ranges", nil, "names of secondary ranges to remove, NAME[,NAME]")
	return cmd
}

func newSubnetsExpandCmd(g *Globals) *cobra.Command {
	var region string
	var bits int
	cmd := &cobra.Command{
		Use:     "expand-ip-range NAME --region R --prefix-length N",
		Short:   "Grow a subnet's primary range to a shorter prefix",
		Example: `  aliasnet subnets expand-ip-range subnet-a --region us-central1 --prefix-length 15`,
		Args:    cobra.ExactArgs(1),
	}
	cmd.RunE = clientRunE(g, func(c *client, args []string) error {
		if err := requireFlag(cmd, "region", "prefix-length"); err != nil {
			return err
		}
		sn, err := c.svc.Subnetworks.Get(c.project, region, args[0]).Context(c.ctx).Do()
		if err != nil {
			return apiError(err)
		}
		cur, err := netip.ParsePrefix(sn.IpCidrRange)
		if err != nil {
			return fmt.Errorf("subnetwork '%s' has an unreadable range %q", sn.Name, sn.IpCidrRange)
		}
		if bits < 0 || bits > cur.Addr().BitLen() {
			return flagErr("--prefix-length", "%d is not between 0 and %d", bits, cur.Addr().BitLen())
		}
		if bits >= cur.Bits() {
			return flagErr("--prefix-length", "must be shorter than the current /%d of %s to expand it", cur.Bits(), cur)
		}
		nr := netip.PrefixFrom(cur.Addr(), bits).Masked()
		req := &compute.SubnetworksExpandIpCidrRangeRequest{IpCidrRange: nr.String()}
		op, err := c.wait(c.svc.Subnetworks.ExpandIpCidrRange(c.project, region, args[0], req).Context(c.ctx).Do())
		if err != nil {
			return err
		}
		return c.printSubnetAfter(op, region, args[0], c.updated)
	})
	cmd.Flags().StringVar(&region, "region", "", "region of the subnet")
	cmd.Flags().IntVar(&bits, "prefix-length", 0, "the new, shorter prefix length of the primary range")
	return cmd
}

func newSubnetsDeleteCmd(g *Globals) *cobra.Command {
	var region string
	cmd := &cobra.Command{Use: "delete NAME... --region R", Short: "Delete subnets", Args: cobra.MinimumNArgs(1)}
	cmd.RunE = clientRunE(g, func(c *client, args []string) error {
		if err := requireFlag(cmd, "region"); err != nil {
			return err
		}
		for _, name := range args {
			op, err := c.wait(c.svc.Subnetworks.Delete(c.project, region, name).Context(c.ctx).Do())
			if err != nil {
				return err
			}
			c.deleted(op.TargetLink)
		}
		return nil
	})
	cmd.Flags().StringVar(&region, "region", "", "region of the subnets")
	return cmd
}
