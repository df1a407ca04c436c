package cli

import (
	"fmt"
	"strings"

	"github.com/aliyun/alibaba-cloud-sdk-go/sdk/requests"
	"github.com/aliyun/alibaba-cloud-sdk-go/services/ecs"
	"github.com/spf13/cobra"
)

func init() { clientCommands = append(clientCommands, newENIsCmd) }

func eniSecondaries(s ecs.NetworkInterfaceSet) []string {
	var out []string
	for _, p := range s.PrivateIpSets.PrivateIpSet {
		if !p.Primary {
			out = append(out, p.PrivateIpAddress)
		}
	}
	for _, p := range s.Ipv4PrefixSets.Ipv4PrefixSet {
		out = append(out, p.Ipv4Prefix)
	}
	for _, p := range s.Ipv6Sets.Ipv6Set {
		out = append(out, p.Ipv6Address)
	}
	return out
}

func eniEIPs(s ecs.NetworkInterfaceSet) []string {
	var out []string
	for _, p := range s.PrivateIpSets.PrivateIpSet {
		if p.AssociatedPublicIp.PublicIpAddress != "" {
			out = append(out, p.AssociatedPublicIp.PublicIpAddress+"->"+p.PrivateIpAddress)
		}
	}
	return out
}

var eniTable = aliTable[ecs.NetworkInterfaceSet]{
	header: []string{"ENI_ID", "STATUS", "TYPE", "INSTANCE", "VSWITCH", "ZONE", "PRIMARY_IP", "SECONDARY_IPS", "EIPS"},
	row: func(s ecs.NetworkInterfaceSet) []string {
		return []string{s.NetworkInterfaceId, s.Status, s.Type, orDash(s.InstanceId), s.VSwitchId, s.ZoneId, s.PrivateIpAddress,
			joinOr(eniSecondaries(s), "-"), joinOr(eniEIPs(s), "-")}
	},
}

func newENIsCmd(g *Globals) *cobra.Command {
	creds := &aliCreds{}
	return aliGroup("enis", "Alibaba elastic network interfaces and their secondary private IPs (ECS API)", creds,
		newENIsCreateCmd(g, creds), newENIsDescribeCmd(g, creds), newENIsAttachCmd(g, creds, true), newENIsAttachCmd(g, creds, false),
		newENIsDeleteCmd(g, creds), newENIsAssignCmd(g, creds), newENIsUnassignCmd(g, creds))
}

type eniFilter struct{ vpc, vswitch, instance, status string }

func (c *aliClient) describeENIs(ids []string, f eniFilter) ([]aliItem[ecs.NetworkInterfaceSet], error) {
	var out []aliItem[ecs.NetworkInterfaceSet]
	token := ""
	for {
		r := ecs.CreateDescribeNetworkInterfacesRequest()
		c.req(r)
		r.VpcId, r.VSwitchId, r.InstanceId, r.Status = f.vpc, f.vswitch, f.instance, f.status
		r.MaxResults, r.NextToken = requests.NewInteger(500), token
		if len(ids) > 0 {
			r.NetworkInterfaceId = &ids
		}
		resp, err := c.ecs.DescribeNetworkInterfaces(r)
		if err != nil {
			return nil, err
		}
		its, err := items(resp, resp.NetworkInterfaceSets.NetworkInterfaceSet, "NetworkInterfaceSets", "NetworkInterfaceSet")
		if err != nil {
			return nil, err
		}
		out = append(out, its...)
		if token = resp.NextToken; token == "" {
			return out, nil
		}
	}
}

func (c *aliClient) showENI(id, format string) error {
	its, err := c.describeENIs([]string{id}, eniFilter{})
	if err != nil {
		return err
	}
	if len(its) != 1 {
		return fmt.Errorf("InvalidEniId.NotFound: network interface %s not found", id)
	}
	return aliPrint(c, format, eniTable, its, true)
}

func newENIsCreateCmd(g *Globals, creds *aliCreds) *cobra.Command {
	var vsw, primary, name, desc, token string
	var sgs, secondary []string
	var count int
	cmd := &cobra.Command{
		Use:   "create --vswitch VSW --security-group SG [--primary-ip IP] [--secondary-ip IP... | --secondary-count N]",
		Short: "Create an ENI (CreateNetworkInterface); it is Available until attached",
		Example: `  aliasnet enis create --vswitch vsw-1a2b --security-group sg-1 --primary-ip 192.168.1.201
  aliasnet enis create --vswitch vsw-1a2b --security-group sg-1 --secondary-ip 192.168.1.202,192.168.1.203`,
		Args: cobra.NoArgs,
	}
	cmd.RunE = aliRunE(g, creds, func(c *aliClient, _ []string) error {
		if err := aliRequire(cmd, "vswitch", "security-group"); err != nil {
			return err
		}
		r := ecs.CreateCreateNetworkInterfaceRequest()
		c.req(r)
		r.VSwitchId, r.PrimaryIpAddress, r.NetworkInterfaceName, r.Description, r.ClientToken = vsw, primary, name, desc, token
		sgs := aliSplit(sgs)
		r.SecurityGroupIds = &sgs
		if ips := aliSplit(secondary); len(ips) > 0 {
			r.PrivateIpAddress = &ips
		}
		if count > 0 {
			r.SecondaryPrivateIpAddressCount = requests.NewInteger(count)
		}
		resp, err := c.ecs.CreateNetworkInterface(r)
		if err != nil {
			return err
		}
		fmt.Fprintf(c.errw(), "Created ENI [%s].\n", resp.NetworkInterfaceId)
		return c.showENI(resp.NetworkInterfaceId, c.g.Format)
	})
	f := cmd.Flags()
	f.StringVar(&vsw, "vswitch", "", "vSwitch ID (sets the zone and VPC)")
	f.StringSliceVar(&sgs, "security-group", nil, "security group ID, 1 to 5 (repeatable or comma-separated)")
	f.StringVar(&primary, "primary-ip", "", "primary private IP (free in the vSwitch; default: picked at random)")
	f.StringSliceVar(&secondary, "secondary-ip", nil, "secondary private IP (repeatable or comma-separated)")
	f.IntVar(&count, "secondary-count", 0, "number of secondary private IPs to pick at random")
	f.StringVar(&name, "name", "", "ENI name")
	f.StringVar(&desc, "description", "", "description")
	f.StringVar(&token, "client-token", "", "idempotency token")
	return cmd
}

func newENIsDescribeCmd(g *Globals, creds *aliCreds) *cobra.Command {
	var f eniFilter
	cmd := &cobra.Command{
		Use:   "describe [ENI_ID...] [--vpc V] [--vswitch S] [--instance I] [--status Available|InUse]",
		Short: "List ENIs, or show one (DescribeNetworkInterfaces)",
	}
	cmd.RunE = aliRunE(g, creds, func(c *aliClient, args []string) error {
		if len(args) == 1 && f == (eniFilter{}) {
			return c.showENI(args[0], c.describeFormat())
		}
		its, err := c.describeENIs(args, f)
		if err != nil {
			return err
		}
		return aliPrint(c, c.g.Format, eniTable, its, false)
	})
	fl := cmd.Flags()
	fl.StringVar(&f.vpc, "vpc", "", "only ENIs of this VPC")
	fl.StringVar(&f.vswitch, "vswitch", "", "only ENIs of this vSwitch")
	fl.StringVar(&f.instance, "instance", "", "only ENIs attached to this instance")
	fl.StringVar(&f.status, "status", "", "Available or InUse")
	return cmd
}

func newENIsAttachCmd(g *Globals, creds *aliCreds, attach bool) *cobra.Command {
	verb, short := "attach", "Attach an Available ENI to an instance in its zone (AttachNetworkInterface)"
	if !attach {
		verb, short = "detach", "Detach a secondary ENI; it keeps its addresses (DetachNetworkInterface)"
	}
	var inst string
	cmd := &cobra.Command{Use: verb + " ENI_ID --instance INSTANCE_ID", Short: short, Args: cobra.ExactArgs(1)}
	cmd.RunE = aliRunE(g, creds, func(c *aliClient, args []string) error {
		if err := aliRequire(cmd, "instance"); err != nil {
			return err
		}
		if attach {
			r := ecs.CreateAttachNetworkInterfaceRequest()
			c.req(r)
			r.NetworkInterfaceId, r.InstanceId = args[0], inst
			if _, err := c.ecs.AttachNetworkInterface(r); err != nil {
				return err
			}
			fmt.Fprintf(c.errw(), "Attached ENI [%s] to [%s].\n", args[0], inst)
		} else {
			r := ecs.CreateDetachNetworkInterfaceRequest()
			c.req(r)
			r.NetworkInterfaceId, r.InstanceId = args[0], inst
			if _, err := c.ecs.DetachNetworkInterface(r); err != nil {
				return err
			}
			fmt.Fprintf(c.errw(), "Detached ENI [%s] from [%s].\n", args[0], inst)
		}
		return c.showENI(args[0], c.g.Format)
	})
	cmd.Flags().StringVar(&inst, "instance", "", "instance ID")
	return cmd
}

func newENIsDeleteCmd(g *Globals, creds *aliCreds) *cobra.Command {
	cmd := &cobra.Command{Use: "delete ENI_ID", Short: "Delete an Available ENI (DeleteNetworkInterface)", Args: cobra.ExactArgs(1)}
	cmd.RunE = aliRunE(g, creds, func(c *aliClient, args []string) error {
		r := ecs.CreateDeleteNetworkInterfaceRequest()
		c.req(r)
		r.NetworkInterfaceId = args[0]
		resp, err := c.ecs.DeleteNetworkInterface(r)
		if err != nil {
			return err
		}
		fmt.Fprintf(c.errw(), "Deleted ENI [%s].\n", args[0])
		return c.printResult(resp)
	})
	return cmd
}

func newENIsAssignCmd(g *Globals, creds *aliCreds) *cobra.Command {
	var ips, prefixes []string
	var count, prefixCount int
	var ipv6 bool
	var token string
	cmd := &cobra.Command{
		Use:   "assign-ips ENI_ID (--count N | --ip IP...) [--ipv6] | (--prefix-count N | --prefix CIDR...)",
		Short: "Assign secondary private IPs, IPv6 addresses or IPv4 /28 prefixes to an ENI (AssignPrivateIpAddresses, AssignIpv6Addresses)",
		Example: `  aliasnet enis assign-ips eni-1a2b --ip 192.168.1.202 --ip 192.168.1.203
  aliasnet enis assign-ips eni-1a2b --count 3
  aliasnet enis assign-ips eni-1a2b --count 2 --ipv6`,
		Args: cobra.ExactArgs(1),
	}
	cmd.RunE = aliRunE(g, creds, func(c *aliClient, args []string) error {
		ips, prefixes := aliSplit(ips), aliSplit(prefixes)
		if len(ips) > 0 && count > 0 || len(prefixes) > 0 && prefixCount > 0 {
			return fmt.Errorf("--ip and --count (or --prefix and --prefix-count) exclude each other")
		}
		if len(ips) == 0 && count == 0 && len(prefixes) == 0 && prefixCount == 0 {
			return fmt.Errorf("give --count N, --ip IP, --prefix-count N or --prefix CIDR")
		}
		if ipv6 {
			if len(prefixes) > 0 || prefixCount > 0 {
				return fmt.Errorf("--ipv6 takes --count or --ip only")
			}
			r := ecs.CreateAssignIpv6AddressesRequest()
			c.req(r)
			r.NetworkInterfaceId, r.ClientToken = args[0], token
			if count > 0 {
				r.Ipv6AddressCount = requests.NewInteger(count)
			}
			if len(ips) > 0 {
				r.Ipv6Address = &ips
			}
			resp, err := c.ecs.AssignIpv6Addresses(r)
			if err != nil {
				return err
			}
			return c.printResult(resp, resp.Ipv6Sets.Ipv6Address...)
		}
		r := ecs.CreateAssignPrivateIpAddressesRequest()
		c.req(r)
		r.NetworkInterfaceId, r.ClientToken = args[0], token
		if count > 0 {
			r.SecondaryPrivateIpAddressCount = requests.NewInteger(count)
		}
		if len(ips) > 0 {
			r.PrivateIpAddress = &ips
		}
		if prefixCount > 0 {
			r.Ipv4PrefixCount = requests.NewInteger(prefixCount)
		}
		if len(prefixes) > 0 {
			r.Ipv4Prefix = &prefixes
		}
		resp, err := c.ecs.AssignPrivateIpAddresses(r)
		if err != nil {
			return err
		}
		set := resp.AssignedPrivateIpAddressesSet
		return c.printResult(resp, append(set.PrivateIpSet.PrivateIpAddress, set.Ipv4PrefixSet.Ipv4Prefixes...)...)
	})
	f := cmd.Flags()
	f.IntVar(&count, "count", 0, "number of addresses to pick at random from the vSwitch")
	f.StringSliceVar(&ips, "ip", nil, "address to assign (repeatable or comma-separated)")
	f.IntVar(&prefixCount, "prefix-count", 0, "number of IPv4 /28 prefixes to pick")
	f.StringSliceVar(&prefixes, "prefix", nil, "IPv4 /28 prefix to assign (repeatable)")
	f.BoolVar(&ipv6, "ipv6", false, "assign IPv6 addresses (the vSwitch needs an IPv6 block)")
	f.StringVar(&token, "client-token", "", "idempotency token: a retry returns the same addresses")
	return cmd
}

func newENIsUnassignCmd(g *Globals, creds *aliCreds) *cobra.Command {
	var ips, prefixes []string
	var ipv6 bool
	cmd := &cobra.Command{
		Use:   "unassign-ips ENI_ID --ip IP... [--prefix CIDR...] [--ipv6]",
		Short: "Unassign secondary private IPs, IPv4 prefixes or IPv6 addresses (UnassignPrivateIpAddresses, UnassignIpv6Addresses)",
		Args:  cobra.ExactArgs(1),
	}
	cmd.RunE = aliRunE(g, creds, func(c *aliClient, args []string) error {
		ips, prefixes := aliSplit(ips), aliSplit(prefixes)
		if len(ips) == 0 && len(prefixes) == 0 {
			return fmt.Errorf("give --ip IP or --prefix CIDR")
		}
		if ipv6 {
			r := ecs.CreateUnassignIpv6AddressesRequest()
			c.req(r)
			r.NetworkInterfaceId, r.Ipv6Address = args[0], &ips
			if _, err := c.ecs.UnassignIpv6Addresses(r); err != nil {
				return err
			}
		} else {
			r := ecs.CreateUnassignPrivateIpAddressesRequest()
			c.req(r)
			r.NetworkInterfaceId = args[0]
			if len(ips) > 0 {
				r.PrivateIpAddress = &ips
			}
			if len(prefixes) > 0 {
				r.Ipv4Prefix = &prefixes
			}
			if _, err := c.ecs.UnassignPrivateIpAddresses(r); err != nil {
				return err
			}
		}
		fmt.Fprintf(c.errw(), "Unassigned %s from ENI [%s].\n", strings.Join(append(ips, prefixes...), ", "), args[0])
		return c.showENI(args[0], c.g.Format)
	})
	f := cmd.Flags()
	f.StringSliceVar(&ips, "ip", nil, "address to unassign (repeatable or comma-separated)")
	f.StringSliceVar(&prefixes, "prefix", nil, "IPv4 prefix to unassign (repeatable)")
	f.BoolVar(&ipv6, "ipv6", false, "the addresses are IPv6")
	return cmd
}
