package cli

import (
	"fmt"

	"github.com/aliyun/alibaba-cloud-sdk-go/sdk/requests"
	"github.com/aliyun/alibaba-cloud-sdk-go/services/ecs"
	"github.com/aliyun/alibaba-cloud-sdk-go/services/vpc"
	"github.com/spf13/cobra"
)

func init() { clientCommands = append(clientCommands, newEIPsCmd, newECSInstancesCmd) }

var eipTable = aliTable[vpc.EipAddress]{
	header: []string{"ALLOCATION_ID", "ADDRESS", "STATUS", "INSTANCE_TYPE", "INSTANCE", "PRIVATE_IP", "MODE"},
	row: func(e vpc.EipAddress) []string {
		return []string{e.AllocationId, e.IpAddress, e.Status, orDash(e.InstanceType), orDash(e.InstanceId), orDash(e.PrivateIpAddress), orDash(e.Mode)}
	},
}

func newEIPsCmd(g *Globals) *cobra.Command {
	creds := &aliCreds{}
	return aliGroup("eips", "Alibaba elastic IP addresses from the server's EIP pools (VPC API)", creds,
		newEIPsAllocateCmd(g, creds), newEIPsDescribeCmd(g, creds), newEIPsAssociateCmd(g, creds),
		newEIPsUnassociateCmd(g, creds), newEIPsReleaseCmd(g, creds))
}

func (c *aliClient) describeEIPs(id string) ([]aliItem[vpc.EipAddress], error) {
	var out []aliItem[vpc.EipAddress]
	for page := 1; ; page++ {
		r := vpc.CreateDescribeEipAddressesRequest()
		c.req(r)
		r.AllocationId, r.PageNumber, r.PageSize = id, requests.NewInteger(page), requests.NewInteger(100)
		resp, err := c.vpc.DescribeEipAddresses(r)
		if err != nil {
			return nil, err
		}
		its, err := items(resp, resp.EipAddresses.EipAddress, "EipAddresses", "EipAddress")
		if err != nil {
			return nil, err
		}
		out = append(out, its...)
		if len(its) == 0 || len(out) >= resp.TotalCount {
			return out, nil
		}
	}
}

func (c *aliClient) showEIP(id, format string) error {
	its, err := c.describeEIPs(id)
	if err != nil {
		return err
	}
	if len(its) != 1 {
		return fmt.Errorf("InvalidAllocationId.NotFound: EIP %s not found", id)
	}
	return aliPrint(c, format, eipTable, its, true)
}

func newEIPsAllocateCmd(g *Globals, creds *aliCreds) *cobra.Command {
	var ip, name, desc, token string
	cmd := &cobra.Command{Use: "allocate [--ip IP] [--name N]", Short: "Allocate an EIP (AllocateEipAddress)", Args: cobra.NoArgs,
		Example: "  aliasnet eips allocate --ip 120.55.3.106"}
	cmd.RunE = aliRunE(g, creds, func(c *aliClient, _ []string) error {
		r := vpc.CreateAllocateEipAddressRequest()
		c.req(r)
		r.IpAddress, r.Name, r.Description, r.ClientToken = ip, name, desc, token
		resp, err := c.vpc.AllocateEipAddress(r)
		if err != nil {
			return err
		}
		fmt.Fprintf(c.errw(), "Allocated EIP [%s] %s.\n", resp.AllocationId, resp.EipAddress)
		return c.showEIP(resp.AllocationId, c.g.Format)
	})
	f := cmd.Flags()
	f.StringVar(&ip, "ip", "", "a specific address of the server's EIP pools (default: any free one)")
	f.StringVar(&name, "name", "", "EIP name")
	f.StringVar(&desc, "description", "", "description")
	f.StringVar(&token, "client-token", "", "idempotency token")
	return cmd
}

func newEIPsDescribeCmd(g *Globals, creds *aliCreds) *cobra.Command {
	cmd := &cobra.Command{Use: "describe [ALLOCATION_ID]", Short: "List EIPs, or show one (DescribeEipAddresses)", Args: cobra.MaximumNArgs(1)}
	cmd.RunE = aliRunE(g, creds, func(c *aliClient, args []string) error {
		if len(args) == 1 {
			return c.showEIP(args[0], c.describeFormat())
		}
		its, err := c.describeEIPs("")
		if err != nil {
			return err
		}
		return aliPrint(c, c.g.Format, eipTable, its, false)
	})
	return cmd
}

func newEIPsAssociateCmd(g *Globals, creds *aliCreds) *cobra.Command {
	var inst, kind, priv, mode, token string
	cmd := &cobra.Command{
		Use:   "associate ALLOCATION_ID --instance ID [--instance-type EcsInstance|NetworkInterface] [--private-ip IP] [--mode NAT|BINDED]",
		Short: "Associate an EIP with an instance or an ENI's private IP (AssociateEipAddress)",
		Example: `  aliasnet eips associate eip-1a2b --instance i-1a2b
  aliasnet eips associate eip-1a2b --instance-type NetworkInterface --instance eni-1a2b --private-ip 120.55.3.106`,
		Args: cobra.ExactArgs(1),
	}
	cmd.RunE = aliRunE(g, creds, func(c *aliClient, args []string) error {
		if err := aliRequire(cmd, "instance"); err != nil {
			return err
		}
		r := vpc.CreateAssociateEipAddressRequest()
		c.req(r)
		r.AllocationId, r.InstanceId, r.InstanceType, r.PrivateIpAddress, r.Mode, r.ClientToken = args[0], inst, kind, priv, mode, token
		if _, err := c.vpc.AssociateEipAddress(r); err != nil {
			return err
		}
		fmt.Fprintf(c.errw(), "Associated EIP [%s] with [%s].\n", args[0], inst)
		return c.showEIP(args[0], c.g.Format)
	})
	f := cmd.Flags()
	f.StringVar(&inst, "instance", "", "instance or ENI ID")
	f.StringVar(&kind, "instance-type", "EcsInstance", "EcsInstance or NetworkInterface")
	f.StringVar(&priv, "private-ip", "", "private IP to NAT to (required for an ENI)")
	f.StringVar(&mode, "mode", "NAT", "NAT or BINDED")
	f.StringVar(&token, "client-token", "", "idempotency token")
	return cmd
}

func newEIPsUnassociateCmd(g *Globals, creds *aliCreds) *cobra.Command {
	var inst, kind string
	cmd := &cobra.Command{Use: "unassociate ALLOCATION_ID [--instance ID]", Short: "End an EIP's association (UnassociateEipAddress)", Args: cobra.ExactArgs(1)}
	cmd.RunE = aliRunE(g, creds, func(c *aliClient, args []string) error {
		r := vpc.CreateUnassociateEipAddressRequest()
		c.req(r)
		r.AllocationId, r.InstanceId, r.InstanceType = args[0], inst, kind
		if _, err := c.vpc.UnassociateEipAddress(r); err != nil {
			return err
		}
		fmt.Fprintf(c.errw(), "Unassociated EIP [%s].\n", args[0])
		return c.showEIP(args[0], c.g.Format)
	})
	cmd.Flags().StringVar(&inst, "instance", "", "the instance or ENI it must be associated with")
	cmd.Flags().StringVar(&kind, "instance-type", "", "EcsInstance or NetworkInterface")
	return cmd
}

func newEIPsReleaseCmd(g *Globals, creds *aliCreds) *cobra.Command {
	cmd := &cobra.Command{Use: "release ALLOCATION_ID", Short: "Release an Available EIP (ReleaseEipAddress)", Args: cobra.ExactArgs(1)}
	cmd.RunE = aliRunE(g, creds, func(c *aliClient, args []string) error {
		r := vpc.CreateReleaseEipAddressRequest()
		c.req(r)
		r.AllocationId = args[0]
		resp, err := c.vpc.ReleaseEipAddress(r)
		if err != nil {
			return err
		}
		fmt.Fprintf(c.errw(), "Released EIP [%s].\n", args[0])
		return c.printResult(resp)
	})
	return cmd
}

// --- ECS instances (minimal: enough to attach ENIs) ---

var ecsInstanceTable = aliTable[ecs.Instance]{
	header: []string{"INSTANCE_ID", "NAME", "ZONE", "INSTANCE_TYPE", "STATUS", "PRIMARY_IP", "ENIS", "EIP"},
	row: func(in ecs.Instance) []string {
		var enis []string
		for _, n := range in.NetworkInterfaces.NetworkInterface {
			enis = append(enis, n.NetworkInterfaceId)
		}
		return []string{in.InstanceId, in.InstanceName, in.ZoneId, in.InstanceType, in.Status,
			joinOr(in.VpcAttributes.PrivateIpAddress.IpAddress, "-"), joinOr(enis, "-"), orDash(in.EipAddress.IpAddress)}
	},
}

func newECSInstancesCmd(g *Globals) *cobra.Command {
	creds := &aliCreds{}
	return aliGroup("ecs-instances", "Alibaba ECS instances with a primary ENI (ECS API; minimal)", creds,
		newECSCreateCmd(g, creds), newECSDescribeCmd(g, creds), newECSPowerCmd(g, creds, "start"), newECSPowerCmd(g, creds, "stop"),
		newECSDeleteCmd(g, creds))
}

func (c *aliClient) describeInstances(id string) ([]aliItem[ecs.Instance], error) {
	var out []aliItem[ecs.Instance]
	token := ""
	for {
		r := ecs.CreateDescribeInstancesRequest()
		c.req(r)
		r.MaxResults, r.NextToken = requests.NewInteger(100), token
		if id != "" {
			r.InstanceIds = `["` + id + `"]`
		}
		resp, err := c.ecs.DescribeInstances(r)
		if err != nil {
			return nil, err
		}
		its, err := items(resp, resp.Instances.Instance, "Instances", "Instance")
		if err != nil {
			return nil, err
		}
		out = append(out, its...)
		if token = resp.NextToken; token == "" {
			return out, nil
		}
	}
}

func (c *aliClient) showInstance(id, format string) error {
	its, err := c.describeInstances(id)
	if err != nil {
		return err
	}
	if len(its) != 1 {
		return fmt.Errorf("InvalidInstanceId.NotFound: instance %s not found", id)
	}
	return aliPrint(c, format, ecsInstanceTable, its, true)
}

func newECSCreateCmd(g *Globals, creds *aliCreds) *cobra.Command {
	var vsw, itype, zone, ip, name, token string
	var sgs []string
	var stopped bool
	cmd := &cobra.Command{
		Use:     "create --vswitch VSW --instance-type TYPE [--private-ip IP] [--name N] [--stopped]",
		Short:   "Create an instance with a primary ENI (RunInstances, or CreateInstance with --stopped)",
		Example: "  aliasnet ecs-instances create --vswitch vsw-1a2b --instance-type ecs.g7.large --private-ip 10.0.0.202",
		Args:    cobra.NoArgs,
	}
	cmd.RunE = aliRunE(g, creds, func(c *aliClient, _ []string) error {
		if err := aliRequire(cmd, "vswitch", "instance-type"); err != nil {
			return err
		}
		sgs := aliSplit(sgs)
		var id string
		if stopped {
			r := ecs.CreateCreateInstanceRequest()
			c.req(r)
			r.VSwitchId, r.InstanceType, r.ZoneId, r.PrivateIpAddress, r.InstanceName, r.ClientToken = vsw, itype, zone, ip, name, token
			if len(sgs) > 0 {
				r.SecurityGroupId = sgs[0]
			}
			resp, err := c.ecs.CreateInstance(r)
			if err != nil {
				return err
			}
			id = resp.InstanceId
		} else {
			r := ecs.CreateRunInstancesRequest()
			c.req(r)
			r.VSwitchId, r.InstanceType, r.ZoneId, r.PrivateIpAddress, r.InstanceName, r.ClientToken = vsw, itype, zone, ip, name, token
			if len(sgs) > 0 {
				r.SecurityGroupIds = &sgs
			}
			resp, err := c.ecs.RunInstances(r)
			if err != nil {
				return err
			}
			id = resp.InstanceIdSets.InstanceIdSet[0]
		}
		fmt.Fprintf(c.errw(), "Created instance [%s].\n", id)
		return c.showInstance(id, c.g.Format)
	})
	f := cmd.Flags()
	f.StringVar(&vsw, "vswitch", "", "vSwitch of the primary ENI")
	f.StringVar(&itype, "instance-type", "", "instance type (sets the ENI and per-ENI address quotas)")
	f.StringVar(&zone, "zone", "", "zone (default: the vSwitch's)")
	f.StringVar(&ip, "private-ip", "", "primary private IP")
	f.StringVar(&name, "name", "", "instance name")
	f.StringSliceVar(&sgs, "security-group", nil, "security group IDs")
	f.BoolVar(&stopped, "stopped", false, "create it Stopped (CreateInstance) instead of Running (RunInstances)")
	f.StringVar(&token, "client-token", "", "idempotency token")
	return cmd
}

func newECSDescribeCmd(g *Globals, creds *aliCreds) *cobra.Command {
	cmd := &cobra.Command{Use: "describe [INSTANCE_ID]", Short: "List instances, or show one (DescribeInstances)", Args: cobra.MaximumNArgs(1)}
	cmd.RunE = aliRunE(g, creds, func(c *aliClient, args []string) error {
		if len(args) == 1 {
			return c.showInstance(args[0], c.describeFormat())
		}
		its, err := c.describeInstances("")
		if err != nil {
			return err
		}
		return aliPrint(c, c.g.Format, ecsInstanceTable, its, false)
	})
	return cmd
}

func newECSPowerCmd(g *Globals, creds *aliCreds, verb string) *cobra.Command {
	cmd := &cobra.Command{Use: verb + " INSTANCE_ID", Short: verb + " an instance", Args: cobra.ExactArgs(1)}
	cmd.RunE = aliRunE(g, creds, func(c *aliClient, args []string) error {
		if verb == "start" {
			r := ecs.CreateStartInstanceRequest()
			c.req(r)
			r.InstanceId = args[0]
			if _, err := c.ecs.StartInstance(r); err != nil {
				return err
			}
		} else {
			r := ecs.CreateStopInstanceRequest()
			c.req(r)
			r.InstanceId = args[0]
			if _, err := c.ecs.StopInstance(r); err != nil {
				return err
			}
		}
		return c.showInstance(args[0], c.g.Format)
	})
	return cmd
}

func newECSDeleteCmd(g *Globals, creds *aliCreds) *cobra.Command {
	var force bool
	cmd := &cobra.Command{Use: "delete INSTANCE_ID [--force]", Short: "Delete an instance; its secondary ENIs become Available (DeleteInstance)",
		Args: cobra.ExactArgs(1)}
	cmd.RunE = aliRunE(g, creds, func(c *aliClient, args []string) error {
		r := ecs.CreateDeleteInstanceRequest()
		c.req(r)
		r.InstanceId = args[0]
		if force {
			r.Force = requests.NewBoolean(true)
		}
		resp, err := c.ecs.DeleteInstance(r)
		if err != nil {
			return err
		}
		fmt.Fprintf(c.errw(), "Deleted instance [%s].\n", args[0])
		return c.printResult(resp)
	})
	cmd.Flags().BoolVar(&force, "force", false, "delete a Running instance")
	return cmd
}
