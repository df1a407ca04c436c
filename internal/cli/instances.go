package cli

import (
	"net/netip"
	"strings"

	"github.com/spf13/cobra"
	compute "google.golang.org/api/compute/v1"
)

func init() {
	clientCommands = append(clientCommands, newInstancesCmd, newTemplatesCmd)
}

// nicAliases renders a NIC's alias ranges in the --aliases syntax.
func nicAliases(ni *compute.NetworkInterface) string {
	parts := make([]string, 0, len(ni.AliasIpRanges))
	for _, a := range ni.AliasIpRanges {
		if a == nil {
			continue
		}
		if a.SubnetworkRangeName != "" {
			parts = append(parts, a.SubnetworkRangeName+":"+a.IpCidrRange)
		} else {
			parts = append(parts, a.IpCidrRange)
		}
	}
	return strings.Join(parts, ";")
}

// instanceTable: per-NIC values are joined with "," in NIC order; a NIC's
// aliases are joined with ";" as in --aliases.
var instanceTable = table[*compute.Instance]{
	header: []string{"NAME", "ZONE", "INTERNAL_IP", "ALIAS_IP_RANGES", "STATUS"},
	row: func(in *compute.Instance) []string {
		var ips, aliases []string
		anyAlias := false
		for _, ni := range in.NetworkInterfaces {
			ips = append(ips, ni.NetworkIP)
			a := nicAliases(ni)
			anyAlias = anyAlias || a != ""
			aliases = append(aliases, a)
		}
		al := ""
		if anyAlias {
			al = strings.Join(aliases, ",")
		}
		return []string{in.Name, lastSegment(in.Zone), strings.Join(ips, ","), al, in.Status}
	},
}

func newInstancesCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{Use: "instances", Short: "Instances and their network interfaces (zones/Z/instances)"}
	nics := &cobra.Command{Use: "network-interfaces", Short: "An instance's network interfaces"}
	nics.AddCommand(newNICUpdateCmd(g))
	cmd.AddCommand(newInstancesCreateCmd(g), newInstancesListCmd(g), newInstancesDescribeCmd(g),
		newInstancesDeleteCmd(g), nics)
	return cmd
}

// nicFlags are the flags that describe network interfaces, shared by
// instances create and instance-templates create.
type nicFlags struct {
	specs     []string
	network   string
	subnet    string
	privateIP string
	// address and noAddress are gcloud's external-IP shorthands for nic0.
	address   string
	noAddress bool
}

func (f *nicFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringArrayVar(&f.specs, "network-interface", nil,
		`one NIC (repeatable, nic0 first): "network=N,subnet=S,private-network-ip=IP,aliases=RANGE:CIDR;CIDR;/32,no-address"`)
	fl.StringVar(&f.network, "network", "", "network of nic0 (shorthand when there is no --network-interface)")
	fl.StringVar(&f.subnet, "subnet", "", "subnet of nic0 (shorthand when there is no --network-interface)")
	fl.StringVar(&f.privateIP, "private-network-ip", "", "primary IP of nic0 (shorthand when there is no --network-interface)")
	fl.StringVar(&f.address, "address", "", "external IP of nic0's access config; default: an ephemeral one (shorthand when there is no --network-interface)")
	fl.BoolVar(&f.noAddress, "no-address", false, "no external IP on nic0 (shorthand when there is no --network-interface)")
}

func (f *nicFlags) parse() ([]NICSpec, error) {
	short := f.network != "" || f.subnet != "" || f.privateIP != "" || f.address != "" || f.noAddress
	if short && len(f.specs) > 0 {
		return nil, flagErr("--network-interface", "cannot be combined with --network, --subnet, --private-network-ip, --address or --no-address (use its no-address key)")
	}
	if f.address != "" {
		if f.noAddress {
			return nil, flagErr("--address", "cannot be combined with --no-address")
		}
		if a, err := netip.ParseAddr(f.address); err != nil || !a.Is4() {
			return nil, flagErr("--address", "%q is not an IPv4 address", f.address)
		}
	}
	if short {
		var parts []string
		if f.network != "" {
			parts = append(parts, "network="+f.network)
		}
		if f.subnet != "" {
			parts = append(parts, "subnet="+f.subnet)
		}
		if f.privateIP != "" {
			parts = append(parts, "private-network-ip="+f.privateIP)
		}
		if f.noAddress {
			parts = append(parts, "no-address")
		}
		s, err := ParseNetworkInterface(strings.Join(parts, ","))
		if err != nil {
			return nil, err
		}
		return []NICSpec{s}, nil
	}
	var out []NICSpec
	for _, v := range f.specs {
		s, err := ParseNetworkInterface(v)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// apiNICs builds the wire interfaces; --address goes to nic0's access
// config. region "" leaves bare subnet names (templates: resolved in the
// instance's region).
func (c *client) apiNICs(f *nicFlags, specs []NICSpec, region string) []*compute.NetworkInterface {
	var out []*compute.NetworkInterface
	for _, s := range specs {
		out = append(out, c.apiNIC(s, region))
	}
	if f.address != "" && len(out) > 0 && len(out[0].AccessConfigs) > 0 {
		out[0].AccessConfigs[0].NatIP = f.address
	}
	return out
}

// apiNIC builds one wire interface.
func (c *client) apiNIC(s NICSpec, region string) *compute.NetworkInterface {
	ni := &compute.NetworkInterface{}
	if s.Network != "" {
		ni.Network = c.url("global/networks", s.Network)
	}
	if s.Subnet != "" {
		switch {
		case strings.Contains(s.Subnet, "/"):
			ni.Subnetwork = c.url("", s.Subnet)
		case region != "":
			ni.Subnetwork = c.url("regions/"+region+"/subnetworks", s.Subnet)
		default:
			ni.Subnetwork = s.Subnet
		}
	}
	if s.PrivateIP.IsValid() {
		ni.NetworkIP = s.PrivateIP.String()
	}
	for _, a := range s.Aliases {
		ni.AliasIpRanges = append(ni.AliasIpRanges, &compute.AliasIpRange{IpCidrRange: a.CIDR(), SubnetworkRangeName: a.RangeName})
	}
	if !s.NoAddress {
		ni.AccessConfigs = []*compute.AccessConfig{{Name: "External NAT", Type: "ONE_TO_ONE_NAT"}}
	}
	return ni
}

func splitList(vs []string) []string {
	var out []string
	for _, v := range vs {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

func newInstancesCreateCmd(g *Globals) *cobra.Command {
	var nf nicFlags
	var zone, tmpl, machineType, desc string
	var tags []string
	var canIPForward bool
	cmd := &cobra.Command{
		Use:   "create NAME... --zone Z --network-interface SPEC... [--source-instance-template T]",
		Short: "Create instances",
		Example: `  aliasnet instances create vm1 --zone us-central1-a \
      --network-interface "subnet=subnet-a,aliases=container-range:172.16.0.0/24"
  aliasnet instances create vm3 --zone us-central1-a --network-interface "subnet=subnet-a,aliases=/27;/32;/32"`,
		Args: cobra.MinimumNArgs(1),
	}
	nf.register(cmd)
	cmd.RunE = clientRunE(g, func(c *client, args []string) error {
		if err := requireFlag(cmd, "zone"); err != nil {
			return err
		}
		specs, err := nf.parse()
		if err != nil {
			return err
		}
		if len(specs) == 0 && tmpl == "" {
			return flagErr("--network-interface", "required (or --subnet/--network, or --source-instance-template)")
		}
		region := zoneRegion(zone)
		for _, name := range args {
			in := &compute.Instance{Name: name, Description: desc, CanIpForward: canIPForward}
			if machineType != "" {
				in.MachineType = c.url("zones/"+zone+"/machineTypes", machineType)
			}
			if t := splitList(tags); len(t) > 0 {
				in.Tags = &compute.Tags{Items: t}
			}
			in.NetworkInterfaces = c.apiNICs(&nf, specs, region)
			call := c.svc.Instances.Insert(c.project, zone, in).Context(c.ctx)
			if tmpl != "" {
				call = call.SourceInstanceTemplate(c.url("global/instanceTemplates", tmpl))
			}
			op, err := c.wait(call.Do())
			if err != nil {
				return err
			}
			c.created(op.TargetLink)
		}
		var out []res[*compute.Instance]
		for _, name := range args {
			got, err := fetch(c, c.svc.Instances.Get(c.project, zone, name).Context(c.ctx).Do)
			if err != nil {
				return err
			}
			out = append(out, got)
		}
		if len(out) == 1 {
			return printOne(c, c.g.Format, instanceTable, out[0])
		}
		return printList(c, instanceTable, out)
	})
	f := cmd.Flags()
	f.StringVar(&zone, "zone", "", "zone of the instances")
	f.StringVar(&tmpl, "source-instance-template", "", "instance template to create from")
	f.StringVar(&machineType, "machine-type", "", "machine type")
	f.StringVar(&desc, "description", "", "description")
	f.StringSliceVar(&tags, "tags", nil, "network tags, a,b")
	f.BoolVar(&canIPForward, "can-ip-forward", false, "allow the instance to send and receive packets for other addresses")
	return cmd
}

func newInstancesListCmd(g *Globals) *cobra.Command {
	var zone string
	cmd := &cobra.Command{Use: "list [--zone Z]", Short: "List instances (all zones unless --zone)", Args: cobra.NoArgs}
	cmd.RunE = clientRunE(g, func(c *client, _ []string) error {
		var out []res[*compute.Instance]
		var err error
		if zone != "" {
			out, err = pages[*compute.Instance](c, "", func(f func(*compute.InstanceList) error) error {
				return c.svc.Instances.List(c.project, zone).Context(c.ctx).Pages(c.ctx, f)
			})
		} else {
			out, err = pages[*compute.Instance](c, "instances", func(f func(*compute.InstanceAggregatedList) error) error {
				return c.svc.Instances.AggregatedList(c.project).Context(c.ctx).Pages(c.ctx, f)
			})
		}
		if err != nil {
			return err
		}
		return printList(c, instanceTable, out)
	})
	cmd.Flags().StringVar(&zone, "zone", "", "only this zone")
	return cmd
}

func newInstancesDescribeCmd(g *Globals) *cobra.Command {
	var zone string
	cmd := &cobra.Command{Use: "describe NAME --zone Z", Short: "Show an instance (YAML unless --format)", Args: cobra.ExactArgs(1)}
	cmd.RunE = clientRunE(g, func(c *client, args []string) error {
		if err := requireFlag(cmd, "zone"); err != nil {
			return err
		}
		in, err := fetch(c, c.svc.Instances.Get(c.project, zone, args[0]).Context(c.ctx).Do)
		if err != nil {
			return err
		}
		return printOne(c, c.describeFormat(), instanceTable, in)
	})
	cmd.Flags().StringVar(&zone, "zone", "", "zone of the instance")
	return cmd
}

func newInstancesDeleteCmd(g *Globals) *cobra.Command {
	var zone string
	cmd := &cobra.Command{Use: "delete NAME... --zone Z", Short: "Delete instances (their addresses are released)", Args: cobra.MinimumNArgs(1)}
	cmd.RunE = clientRunE(g, func(c *client, args []string) error {
		if err := requireFlag(cmd, "zone"); err != nil {
			return err
		}
		for _, name := range args {
			op, err := c.wait(c.svc.Instances.Delete(c.project, zone, name).Context(c.ctx).Do())
			if err != nil {
				return err
			}
			c.deleted(op.TargetLink)
		}
		return nil
	})
	cmd.Flags().StringVar(&zone, "zone", "", "zone of the instances")
	return cmd
}

func newNICUpdateCmd(g *Globals) *cobra.Command {
	var zone, nic, aliases string
	cmd := &cobra.Command{
		Use:   "update NAME --zone Z [--network-interface nic0] --aliases RANGE:CIDR;CIDR",
		Short: "Replace a network interface's alias IP ranges (\"\" clears them)",
		Example: `  aliasnet instances network-interfaces update vm1 --zone us-central1-a \
      --aliases "container-range:172.16.0.0/24;10.128.0.40"
  aliasnet instances network-interfaces update vm3 --zone us-central1-a --aliases ""`,
		Args: cobra.ExactArgs(1),
	}
	cmd.RunE = clientRunE(g, func(c *client, args []string) error {
		if err := requireFlag(cmd, "zone"); err != nil {
			return err
		}
		if !cmd.Flags().Changed("aliases") {
			return flagErr("--aliases", "required (\"\" removes every alias range)")
		}
		as, err := ParseAliases(aliases)
		if err != nil {
			return err
		}
		in, err := c.svc.Instances.Get(c.project, zone, args[0]).Context(c.ctx).Do()
		if err != nil {
			return apiError(err)
		}
		var cur *compute.NetworkInterface
		var names []string
		for _, ni := range in.NetworkInterfaces {
			names = append(names, ni.Name)
			if ni.Name == nic {
				cur = ni
			}
		}
		if cur == nil {
			return flagErr("--network-interface", "instance '%s' has no network interface %q (has: %s)", in.Name, nic, strings.Join(names, ", "))
		}
		ranges := []*compute.AliasIpRange{}
		for _, a := range as {
			ranges = append(ranges, &compute.AliasIpRange{IpCidrRange: a.CIDR(), SubnetworkRangeName: a.RangeName})
		}
		patch := &compute.NetworkInterface{AliasIpRanges: ranges, Fingerprint: cur.Fingerprint,
			ForceSendFields: []string{"AliasIpRanges"}}
		op, err := c.wait(c.svc.Instances.UpdateNetworkInterface(c.project, zone, args[0], nic, patch).Context(c.ctx).Do())
		if err != nil {
			return err
		}
		c.updated(op.TargetLink)
		got, err := fetch(c, c.svc.Instances.Get(c.project, zone, args[0]).Context(c.ctx).Do)
		if err != nil {
			return err
		}
		return printOne(c, c.g.Format, instanceTable, got)
	})
	f := cmd.Flags()
	f.StringVar(&zone, "zone", "", "zone of the instance")
	f.StringVar(&nic, "network-interface", "nic0", "the interface to update")
	f.StringVar(&aliases, "aliases", "", `the new alias ranges, "RANGE:CIDR;CIDR;/N" ("" clears)`)
	return cmd
}

var templateTable = table[*compute.InstanceTemplate]{
	header: []string{"NAME", "MACHINE_TYPE", "CREATION_TIMESTAMP"},
	row: func(t *compute.InstanceTemplate) []string {
		mt := ""
		if t.Properties != nil {
			mt = lastSegment(t.Properties.MachineType)
		}
		return []string{t.Name, mt, t.CreationTimestamp}
	},
}

func newTemplatesCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{Use: "instance-templates", Short: "Instance templates (global/instanceTemplates)"}
	cmd.AddCommand(newTemplatesCreateCmd(g), newTemplatesListCmd(g), newTemplatesDescribeCmd(g), newTemplatesDeleteCmd(g))
	return cmd
}

func newTemplatesCreateCmd(g *Globals) *cobra.Command {
	var nf nicFlags
	var region, machineType, desc string
	var tags []string
	var canIPForward bool
	cmd := &cobra.Command{
		Use:   "create NAME --network-interface SPEC... [--machine-type MT] [--region R]",
		Short: "Create an instance template",
		Example: `  aliasnet instance-templates create containers \
      --network-interface "subnet=subnet-a,aliases=container-range:/24"`,
		Args: cobra.ExactArgs(1),
	}
	nf.register(cmd)
	cmd.RunE = clientRunE(g, func(c *client, args []string) error {
		specs, err := nf.parse()
		if err != nil {
			return err
		}
		props := &compute.InstanceProperties{MachineType: machineType, CanIpForward: canIPForward}
		if t := splitList(tags); len(t) > 0 {
			props.Tags = &compute.Tags{Items: t}
		}
		if len(specs) == 0 {
			specs = []NICSpec{{}}
		}
		props.NetworkInterfaces = c.apiNICs(&nf, specs, region)
		it := &compute.InstanceTemplate{Name: args[0], Description: desc, Properties: props}
		op, err := c.wait(c.svc.InstanceTemplates.Insert(c.project, it).Context(c.ctx).Do())
		if err != nil {
			return err
		}
		c.created(op.TargetLink)
		got, err := fetch(c, c.svc.InstanceTemplates.Get(c.project, args[0]).Context(c.ctx).Do)
		if err != nil {
			return err
		}
		return printOne(c, c.g.Format, templateTable, got)
	})
	f := cmd.Flags()
	f.StringVar(&region, "region", "", "region of the subnets named (default: the instance's region)")
	f.StringVar(&machineType, "machine-type", "", "machine type")
	f.StringVar(&desc, "description", "", "description")
	f.StringSliceVar(&tags, "tags", nil, "network tags, a,b")
	f.BoolVar(&canIPForward, "can-ip-forward", false, "allow forwarding")
	return cmd
}

func newTemplatesListCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{Use: "list", Short: "List instance templates", Args: cobra.NoArgs}
	cmd.RunE = clientRunE(g, func(c *client, _ []string) error {
		out, err := pages[*compute.InstanceTemplate](c, "", func(f func(*compute.InstanceTemplateList) error) error {
			return c.svc.InstanceTemplates.List(c.project).Context(c.ctx).Pages(c.ctx, f)
		})
		if err != nil {
			return err
		}
		return printList(c, templateTable, out)
	})
	return cmd
}

func newTemplatesDescribeCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{Use: "describe NAME", Short: "Show an instance template (YAML unless --format)", Args: cobra.ExactArgs(1)}
	cmd.RunE = clientRunE(g, func(c *client, args []string) error {
		t, err := fetch(c, c.svc.InstanceTemplates.Get(c.project, args[0]).Context(c.ctx).Do)
		if err != nil {
			return err
		}
		return printOne(c, c.describeFormat(), templateTable, t)
	})
	return cmd
}

func newTemplatesDeleteCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{Use: "delete NAME...", Short: "Delete instance templates", Args: cobra.MinimumNArgs(1)}
	cmd.RunE = clientRunE(g, func(c *client, args []string) error {
		for _, name := range args {
			op, err := c.wait(c.svc.InstanceTemplates.Delete(c.project, name).Context(c.ctx).Do())
			if err != nil {
				return err
			}
			c.deleted(op.TargetLink)
		}
		return nil
	})
	return cmd
}
