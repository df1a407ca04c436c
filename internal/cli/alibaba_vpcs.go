package cli

import (
	"fmt"
	"strconv"

	"github.com/aliyun/alibaba-cloud-sdk-go/sdk/requests"
	"github.com/aliyun/alibaba-cloud-sdk-go/services/vpc"
	"github.com/spf13/cobra"
)

func init() { clientCommands = append(clientCommands, newVpcsCmd, newVSwitchesCmd) }

var vpcTable = aliTable[vpc.Vpc]{
	header: []string{"VPC_ID", "NAME", "CIDR_BLOCK", "SECONDARY_CIDR_BLOCKS", "IPV6_CIDR_BLOCK", "VSWITCHES"},
	row: func(v vpc.Vpc) []string {
		return []string{v.VpcId, v.VpcName, v.CidrBlock, joinOr(v.SecondaryCidrBlocks.SecondaryCidrBlock, "-"),
			orDash(v.Ipv6CidrBlock), joinOr(v.VSwitchIds.VSwitchId, "-")}
	},
}

var vswitchTable = aliTable[vpc.VSwitch]{
	header: []string{"VSWITCH_ID", "NAME", "VPC_ID", "ZONE", "CIDR_BLOCK", "IPV6_CIDR_BLOCK", "AVAILABLE_IPS"},
	row: func(v vpc.VSwitch) []string {
		return []string{v.VSwitchId, v.VSwitchName, v.VpcId, v.ZoneId, v.CidrBlock, orDash(v.Ipv6CidrBlock),
			strconv.FormatInt(v.AvailableIpAddressCount, 10)}
	},
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newVpcsCmd(g *Globals) *cobra.Command {
	creds := &aliCreds{}
	return aliGroup("vpcs", "Alibaba VPCs with secondary CIDR blocks (ECS/VPC API)", creds,
		newVpcsCreateCmd(g, creds), newVpcsDescribeCmd(g, creds), newVpcsDeleteCmd(g, creds),
		newVpcBlockCmd(g, creds, true), newVpcBlockCmd(g, creds, false))
}

func (c *aliClient) describeVpcs(id string) ([]aliItem[vpc.Vpc], error) {
	var out []aliItem[vpc.Vpc]
	for page := 1; ; page++ {
		r := vpc.CreateDescribeVpcsRequest()
		c.req(r)
		r.VpcId, r.PageNumber, r.PageSize = id, requests.NewInteger(page), requests.NewInteger(50)
		resp, err := c.vpc.DescribeVpcs(r)
		if err != nil {
			return nil, err
		}
		its, err := items(resp, resp.Vpcs.Vpc, "Vpcs", "Vpc")
		if err != nil {
			return nil, err
		}
		out = append(out, its...)
		if len(its) == 0 || len(out) >= resp.TotalCount {
			return out, nil
		}
	}
}

func (c *aliClient) showVpc(id string, format string) error {
	its, err := c.describeVpcs(id)
	if err != nil {
		return err
	}
	if len(its) != 1 {
		return fmt.Errorf("InvalidVpcId.NotFound: VPC %s not found", id)
	}
	return aliPrint(c, format, vpcTable, its, true)
}

func newVpcsCreateCmd(g *Globals, creds *aliCreds) *cobra.Command {
	var cidr, name, desc, token string
	var ipv6 bool
	cmd := &cobra.Command{
		Use:     "create --cidr-block CIDR [--name N] [--enable-ipv6]",
		Short:   "Create a VPC (CreateVpc)",
		Example: "  aliasnet vpcs create --cidr-block 10.0.0.0/8 --name prod",
		Args:    cobra.NoArgs,
	}
	cmd.RunE = aliRunE(g, creds, func(c *aliClient, _ []string) error {
		r := vpc.CreateCreateVpcRequest()
		c.req(r)
		r.CidrBlock, r.VpcName, r.Description, r.ClientToken = cidr, name, desc, token
		if ipv6 {
			r.EnableIpv6 = requests.NewBoolean(true)
		}
		resp, err := c.vpc.CreateVpc(r)
		if err != nil {
			return err
		}
		fmt.Fprintf(c.errw(), "Created VPC [%s].\n", resp.VpcId)
		return c.showVpc(resp.VpcId, c.g.Format)
	})
	f := cmd.Flags()
	f.StringVar(&cidr, "cidr-block", "", "primary IPv4 CIDR block, /8 to /28 (default 172.16.0.0/12)")
	f.StringVar(&name, "name", "", "VPC name")
	f.StringVar(&desc, "description", "", "description")
	f.BoolVar(&ipv6, "enable-ipv6", false, "give the VPC an IPv6 /56")
	f.StringVar(&token, "client-token", "", "idempotency token: a retry with the same token returns the first result")
	return cmd
}

func newVpcsDescribeCmd(g *Globals, creds *aliCreds) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "describe [VPC_ID]",
		Short: "List VPCs, or show one (DescribeVpcs)",
		Args:  cobra.MaximumNArgs(1),
	}
	cmd.RunE = aliRunE(g, creds, func(c *aliClient, args []string) error {
		if len(args) == 1 {
			return c.showVpc(args[0], c.describeFormat())
		}
		its, err := c.describeVpcs("")
		if err != nil {
			return err
		}
		return aliPrint(c, c.g.Format, vpcTable, its, false)
	})
	return cmd
}

func newVpcsDeleteCmd(g *Globals, creds *aliCreds) *cobra.Command {
	cmd := &cobra.Command{Use: "delete VPC_ID", Short: "Delete a VPC without vSwitches (DeleteVpc)", Args: cobra.ExactArgs(1)}
	cmd.RunE = aliRunE(g, creds, func(c *aliClient, args []string) error {
		r := vpc.CreateDeleteVpcRequest()
		c.req(r)
		r.VpcId = args[0]
		resp, err := c.vpc.DeleteVpc(r)
		if err != nil {
			return err
		}
		fmt.Fprintf(c.errw(), "Deleted VPC [%s].\n", args[0])
		return c.printResult(resp)
	})
	return cmd
}

func newVpcBlockCmd(g *Globals, creds *aliCreds, add bool) *cobra.Command {
	use, short := "add-cidr-block VPC_ID CIDR", "Add a secondary IPv4 CIDR block, /16 to /28 (AssociateVpcCidrBlock)"
	if !add {
		use, short = "remove-cidr-block VPC_ID CIDR", "Remove an unused secondary CIDR block (UnassociateVpcCidrBlock)"
	}
	cmd := &cobra.Command{Use: use, Short: short, Args: cobra.ExactArgs(2),
		Example: "  aliasnet vpcs add-cidr-block vpc-1a2b3c 120.55.3.0/24"}
	cmd.RunE = aliRunE(g, creds, func(c *aliClient, args []string) error {
		if add {
			r := vpc.CreateAssociateVpcCidrBlockRequest()
			c.req(r)
			r.VpcId, r.SecondaryCidrBlock = args[0], args[1]
			if _, err := c.vpc.AssociateVpcCidrBlock(r); err != nil {
				return err
			}
			fmt.Fprintf(c.errw(), "Added CIDR block %s to VPC [%s].\n", args[1], args[0])
		} else {
			r := vpc.CreateUnassociateVpcCidrBlockRequest()
			c.req(r)
			r.VpcId, r.SecondaryCidrBlock = args[0], args[1]
			if _, err := c.vpc.UnassociateVpcCidrBlock(r); err != nil {
				return err
			}
			fmt.Fprintf(c.errw(), "Removed CIDR block %s from VPC [%s].\n", args[1], args[0])
		}
		return c.showVpc(args[0], c.g.Format)
	})
	return cmd
}

func newVSwitchesCmd(g *Globals) *cobra.Command {
	creds := &aliCreds{}
	return aliGroup("vswitches", "Alibaba vSwitches: zonal subnets of a VPC (ECS/VPC API)", creds,
		newVSwitchesCreateCmd(g, creds), newVSwitchesDescribeCmd(g, creds), newVSwitchesDeleteCmd(g, creds))
}

func (c *aliClient) describeVSwitches(id, vpcID, zone string) ([]aliItem[vpc.VSwitch], error) {
	var out []aliItem[vpc.VSwitch]
	for page := 1; ; page++ {
		r := vpc.CreateDescribeVSwitchesRequest()
		c.req(r)
		r.VSwitchId, r.VpcId, r.ZoneId, r.PageNumber, r.PageSize = id, vpcID, zone, requests.NewInteger(page), requests.NewInteger(50)
		resp, err := c.vpc.DescribeVSwitches(r)
		if err != nil {
			return nil, err
		}
		its, err := items(resp, resp.VSwitches.VSwitch, "VSwitches", "VSwitch")
		if err != nil {
			return nil, err
		}
		out = append(out, its...)
		if len(its) == 0 || len(out) >= resp.TotalCount {
			return out, nil
		}
	}
}

func newVSwitchesCreateCmd(g *Globals, creds *aliCreds) *cobra.Command {
	var vpcID, zone, cidr, name, desc, ipv6, token string
	cmd := &cobra.Command{
		Use:     "create --vpc VPC_ID --zone ZONE --cidr-block CIDR [--name N] [--ipv6-cidr-block 0-255]",
		Short:   "Create a vSwitch (CreateVSwitch); the first and last three addresses are reserved",
		Example: "  aliasnet vswitches create --vpc vpc-1a2b3c --zone cn-hangzhou-h --cidr-block 10.0.0.0/24",
		Args:    cobra.NoArgs,
	}
	cmd.RunE = aliRunE(g, creds, func(c *aliClient, _ []string) error {
		if err := aliRequire(cmd, "vpc", "zone", "cidr-block"); err != nil {
			return err
		}
		r := vpc.CreateCreateVSwitchRequest()
		c.req(r)
		r.VpcId, r.ZoneId, r.CidrBlock, r.VSwitchName, r.Description, r.ClientToken = vpcID, zone, cidr, name, desc, token
		if ipv6 != "" {
			n, err := strconv.Atoi(ipv6)
			if err != nil {
				return fmt.Errorf("--ipv6-cidr-block %q: the index (0-255) of the vSwitch's /64 in the VPC's /56", ipv6)
			}
			r.Ipv6CidrBlock = requests.NewInteger(n)
		}
		resp, err := c.vpc.CreateVSwitch(r)
		if err != nil {
			return err
		}
		fmt.Fprintf(c.errw(), "Created vSwitch [%s].\n", resp.VSwitchId)
		its, err := c.describeVSwitches(resp.VSwitchId, "", "")
		if err != nil {
			return err
		}
		return aliPrint(c, c.g.Format, vswitchTable, its, true)
	})
	f := cmd.Flags()
	f.StringVar(&vpcID, "vpc", "", "VPC ID")
	f.StringVar(&zone, "zone", "", "zone, e.g. cn-hangzhou-h")
	f.StringVar(&cidr, "cidr-block", "", "IPv4 CIDR block inside a block of the VPC, /16 to /29")
	f.StringVar(&name, "name", "", "vSwitch name")
	f.StringVar(&desc, "description", "", "description")
	f.StringVar(&ipv6, "ipv6-cidr-block", "", "index (0-255) of the vSwitch's IPv6 /64 in the VPC's /56")
	f.StringVar(&token, "client-token", "", "idempotency token")
	return cmd
}

func newVSwitchesDescribeCmd(g *Globals, creds *aliCreds) *cobra.Command {
	var vpcID, zone string
	cmd := &cobra.Command{Use: "describe [VSWITCH_ID] [--vpc VPC_ID] [--zone ZONE]", Short: "List vSwitches, or show one (DescribeVSwitches)",
		Args: cobra.MaximumNArgs(1)}
	cmd.RunE = aliRunE(g, creds, func(c *aliClient, args []string) error {
		id := ""
		if len(args) == 1 {
			id = args[0]
		}
		its, err := c.describeVSwitches(id, vpcID, zone)
		if err != nil {
			return err
		}
		if id != "" {
			if len(its) != 1 {
				return fmt.Errorf("InvalidVSwitchId.NotFound: vSwitch %s not found", id)
			}
			return aliPrint(c, c.describeFormat(), vswitchTable, its, true)
		}
		return aliPrint(c, c.g.Format, vswitchTable, its, false)
	})
	cmd.Flags().StringVar(&vpcID, "vpc", "", "only vSwitches of this VPC")
	cmd.Flags().StringVar(&zone, "zone", "", "only vSwitches in this zone")
	return cmd
}

func newVSwitchesDeleteCmd(g *Globals, creds *aliCreds) *cobra.Command {
	cmd := &cobra.Command{Use: "delete VSWITCH_ID", Short: "Delete an unused vSwitch (DeleteVSwitch)", Args: cobra.ExactArgs(1)}
	cmd.RunE = aliRunE(g, creds, func(c *aliClient, args []string) error {
		r := vpc.CreateDeleteVSwitchRequest()
		c.req(r)
		r.VSwitchId = args[0]
		resp, err := c.vpc.DeleteVSwitch(r)
		if err != nil {
			return err
		}
		fmt.Fprintf(c.errw(), "Deleted vSwitch [%s].\n", args[0])
		return c.printResult(resp)
	})
	return cmd
}
