package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	compute "google.golang.org/api/compute/v1"

	"github.com/aliasnet/aliasnet/internal/model"
	"github.com/aliasnet/aliasnet/internal/netpolicy"
)

// Network policy verbs: routes, firewall-rules (gcloud syntax, through the
// official compute client) and trace (aliasnet's own API).

func init() {
	clientCommands = append(clientCommands, newRoutesCmd, newFirewallRulesCmd, newTraceCmd)
}

// --- routes ---

func routeNextHop(r *compute.Route) string {
	switch {
	case r.NextHopInstance != "":
		return refPart(r.NextHopInstance, "zones") + "/" + lastSegment(r.NextHopInstance)
	case r.NextHopIp != "":
		return r.NextHopIp
	case r.NextHopGateway != "":
		return lastSegment(r.NextHopGateway)
	case r.NextHopNetwork != "":
		return lastSegment(r.NextHopNetwork)
	case r.NextHopPeering != "":
		return "peering/" + r.NextHopPeering
	}
	return ""
}

var routeTable = table[*compute.Route]{
	header: []string{"NAME", "NETWORK", "DEST_RANGE", "NEXT_HOP", "PRIORITY"},
	row: func(r *compute.Route) []string {
		return []string{r.Name, lastSegment(r.Network), r.DestRange, routeNextHop(r), itoa(r.Priority)}
	},
}

func newRoutesCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{Use: "routes", Short: "VPC routes (global/routes): static routes and the subnet routes"}
	cmd.AddCommand(newRoutesCreateCmd(g), newRoutesListCmd(g), newRoutesDescribeCmd(g), newRoutesDeleteCmd(g), newRoutesEffectiveCmd(g))
	return cmd
}

func newRoutesCreateCmd(g *Globals) *cobra.Command {
	var network, dest, desc, nhInstance, nhZone, nhAddress, nhGateway string
	var tags []string
	var priority int64
	cmd := &cobra.Command{
		Use:   "create NAME --destination-range CIDR (--next-hop-instance I --next-hop-instance-zone Z | --next-hop-address IP | --next-hop-gateway default-internet-gateway) [--network N] [--priority P] [--tags T,...]",
		Short: "Create a static route",
		Example: `  aliasnet routes create to-onprem --network vpc --destination-range 192.168.0.0/16 \
      --next-hop-instance vpn-gw --next-hop-instance-zone us-central1-a
  aliasnet routes create via-ip --network vpc --destination-range 10.50.0.0/16 --next-hop-address 10.128.0.2 --priority 100
  aliasnet routes create internet --network vpc --destination-range 0.0.0.0/0 --next-hop-gateway default-internet-gateway`,
		Args: cobra.ExactArgs(1),
	}
	cmd.RunE = clientRunE(g, func(c *client, args []string) error {
		if err := requireFlag(cmd, "destination-range"); err != nil {
			return err
		}
		r := &compute.Route{Name: args[0], Description: desc, Network: c.url("global/networks", network), DestRange: dest,
			Priority: priority, Tags: tags, ForceSendFields: []string{"Priority"}}
		n := 0
		if nhInstance != "" {
			n++
			if nhZone == "" && !strings.Contains(nhInstance, "/") {
				return flagErr("--next-hop-instance-zone", "required with --next-hop-instance")
			}
			if strings.Contains(nhInstance, "/") {
				r.NextHopInstance = c.url("", nhInstance)
			} else {
				r.NextHopInstance = c.url("zones/"+nhZone+"/instances", nhInstance)
			}
		}
		if nhAddress != "" {
			n++
			if _, err := netip.ParseAddr(nhAddress); err != nil {
				return flagErr("--next-hop-address", "%q is not an IP address", nhAddress)
			}
			r.NextHopIp = nhAddress
		}
		if nhGateway != "" {
			n++
			r.NextHopGateway = c.url("global/gateways", nhGateway)
		}
		if n != 1 {
			return flagErr("--next-hop-instance", "give exactly one of --next-hop-instance, --next-hop-address, --next-hop-gateway")
		}
		op, err := c.wait(c.svc.Routes.Insert(c.project, r).Context(c.ctx).Do())
		if err != nil {
			return err
		}
		c.created(op.TargetLink)
		got, err := fetch(c, c.svc.Routes.Get(c.project, args[0]).Context(c.ctx).Do)
		if err != nil {
			return err
		}
		for _, w := range got.v.Warnings {
			fmt.Fprintf(c.errw(), "WARNING: %s: %s\n", w.Code, w.Message)
		}
		return printOne(c, c.g.Format, routeTable, got)
	})
	f := cmd.Flags()
	f.StringVar(&network, "network", "default", "network of the route")
	f.StringVar(&dest, "destination-range", "", "destination CIDR (not equal to or inside a subnet range)")
	f.Int64Var(&priority, "priority", model.DefaultRoutePriority, "priority 0-65535, lower wins among equal prefixes")
	f.StringSliceVar(&tags, "tags", nil, "apply only to instances with one of these tags")
	f.StringVar(&nhInstance, "next-hop-instance", "", "next hop instance (name, or zones/Z/instances/N)")
	f.StringVar(&nhZone, "next-hop-instance-zone", "", "zone of --next-hop-instance")
	f.StringVar(&nhAddress, "next-hop-address", "", "next hop IP: an instance's primary IP (not an alias IP)")
	f.StringVar(&nhGateway, "next-hop-gateway", "", "default-internet-gateway")
	f.StringVar(&desc, "description", "", "description")
	return cmd
}

func newRoutesListCmd(g *Globals) *cobra.Command {
	var network string
	cmd := &cobra.Command{Use: "list [--network N]", Short: "List routes (static and subnet routes)", Args: cobra.NoArgs}
	cmd.RunE = clientRunE(g, func(c *client, _ []string) error {
		rs, err := pages[*compute.Route](c, "", func(f func(*compute.RouteList) error) error {
			return c.svc.Routes.List(c.project).Context(c.ctx).Pages(c.ctx, f)
		})
		if err != nil {
			return err
		}
		if network != "" {
			var keep []res[*compute.Route]
			for _, r := range rs {
				if lastSegment(r.v.Network) == network {
					keep = append(keep, r)
				}
			}
			rs = keep
		}
		return printList(c, routeTable, rs)
	})
	cmd.Flags().StringVar(&network, "network", "", "only routes of this network")
	return cmd
}

func newRoutesDescribeCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{Use: "describe NAME", Short: "Show a route (YAML unless --format)", Args: cobra.ExactArgs(1)}
	cmd.RunE = clientRunE(g, func(c *client, args []string) error {
		r, err := fetch(c, c.svc.Routes.Get(c.project, args[0]).Context(c.ctx).Do)
		if err != nil {
			return err
		}
		return printOne(c, c.describeFormat(), routeTable, r)
	})
	return cmd
}

func newRoutesDeleteCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{Use: "delete NAME...", Short: "Delete static routes", Args: cobra.MinimumNArgs(1)}
	cmd.RunE = clientRunE(g, func(c *client, args []string) error {
		for _, name := range args {
			op, err := c.wait(c.svc.Routes.Delete(c.project, name).Context(c.ctx).Do())
			if err != nil {
				return err
			}
			c.deleted(op.TargetLink)
		}
		return nil
	})
	return cmd
}

func newRoutesEffectiveCmd(g *Globals) *cobra.Command {
	var zone, nic string
	cmd := &cobra.Command{
		Use:     "list-effective INSTANCE --zone Z [--network-interface nic0]",
		Short:   "List the routes that apply to an instance's interface, and which one wins per destination",
		Example: `  aliasnet routes list-effective vm1 --zone us-central1-a`,
		Args:    cobra.ExactArgs(1),
	}
	cmd.RunE = clientRunE(g, func(c *client, args []string) error {
		if err := requireFlag(cmd, "zone"); err != nil {
			return err
		}
		var out struct {
			Routes []netpolicy.EffectiveRoute `json:"routes"`
		}
		path := fmt.Sprintf("projects/%s/zones/%s/instances/%s/effectiveRoutes?networkInterface=%s",
			url.PathEscape(c.project), url.PathEscape(zone), url.PathEscape(args[0]), url.QueryEscape(nic))
		raw, err := c.aliasnetGet(path, &out)
		if err != nil {
			return err
		}
		if c.g.Format != "table" {
			return npPrintRaw(c, raw)
		}
		tw := tabwriter.NewWriter(c.out(), 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tTYPE\tDEST_RANGE\tNEXT_HOP\tPRIORITY\tSTATUS")
		for _, r := range out.Routes {
			status := r.Status
			if r.OverriddenBy != "" {
				status += " (by " + r.OverriddenBy + ")"
			}
			if r.Reason != "" {
				status += " (" + r.Reason + ")"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", r.Name, r.Kind, r.Dst, hopString(r.NextHop), r.Priority, status)
		}
		return tw.Flush()
	})
	cmd.Flags().StringVar(&zone, "zone", "", "zone of the instance")
	cmd.Flags().StringVar(&nic, "network-interface", "nic0", "interface")
	return cmd
}

func hopString(h netpolicy.NextHop) string {
	switch h.Kind {
	case netpolicy.HopNetwork:
		return "network " + h.Network
	case netpolicy.HopPeering:
		return "peering " + h.Peering + " (" + h.Network + ")"
	case netpolicy.HopInstance:
		if h.Instance != "" {
			return "instance " + h.Instance
		}
		return "ip " + h.IP.String()
	case netpolicy.HopInternet:
		return "default-internet-gateway"
	case netpolicy.HopExternal:
		return "bgp " + h.IP.String()
	}
	return h.Kind
}

// --- firewall-rules ---

// ParseRules parses gcloud's --allow / --rules value: comma-separated
// PROTOCOL[:PORT[-PORT]] entries ("tcp:80,udp:53-60,icmp", "all"). Entries
// of one protocol are merged into one allowed[] item, in order of first
// appearance, as gcloud does. Every entry is checked with the model's
// rules; errors name the flag and the entry.
func ParseRules(flag, s string) ([]model.FirewallProtocol, error) {
	if strings.TrimSpace(s) == "" {
		return nil, flagErr(flag, "empty rule list")
	}
	var out []model.FirewallProtocol
	idx := map[string]int{}
	for _, e := range strings.Split(s, ",") {
		if e == "" {
			return nil, flagErr(flag, "empty entry in %q", s)
		}
		proto, port, hasPort := strings.Cut(e, ":")
		fp := model.FirewallProtocol{Protocol: strings.ToLower(proto)}
		if hasPort {
			fp.Ports = []string{port}
		}
		if _, err := model.CompileProtocol(fp, "rule"); err != nil {
			msg := err.Error()
			if me, ok := err.(*model.Error); ok {
				msg = me.Reason
			}
			return nil, flagErr(flag, "entry %q: %s", e, msg)
		}
		if i, ok := idx[fp.Protocol]; ok {
			if len(out[i].Ports) == 0 || !hasPort {
				out[i].Ports = nil // one entry without ports means every port
			} else {
				out[i].Ports = append(out[i].Ports, port)
			}
			continue
		}
		idx[fp.Protocol] = len(out)
		out = append(out, fp)
	}
	// An entry of a protocol without ports, seen after ones with ports,
	// has already widened it to every port; keep that.
	return out, nil
}

// FormatRules renders allowed[]/denied[] back in the flag syntax.
func FormatRules(ps []model.FirewallProtocol) string {
	var parts []string
	for _, p := range ps {
		if len(p.Ports) == 0 {
			parts = append(parts, p.Protocol)
			continue
		}
		for _, port := range p.Ports {
			parts = append(parts, p.Protocol+":"+port)
		}
	}
	return strings.Join(parts, ",")
}

func wireRules(f *compute.Firewall) (allow, deny string) {
	var a, d []model.FirewallProtocol
	for _, p := range f.Allowed {
		a = append(a, model.FirewallProtocol{Protocol: p.IPProtocol, Ports: p.Ports})
	}
	for _, p := range f.Denied {
		d = append(d, model.FirewallProtocol{Protocol: p.IPProtocol, Ports: p.Ports})
	}
	return FormatRules(a), FormatRules(d)
}

var firewallTable = table[*compute.Firewall]{
	header: []string{"NAME", "NETWORK", "DIRECTION", "PRIORITY", "ALLOW", "DENY", "DISABLED"},
	row: func(f *compute.Firewall) []string {
		a, d := wireRules(f)
		return []string{f.Name, lastSegment(f.Network), f.Direction, itoa(f.Priority), a, d, fmt.Sprint(f.Disabled)}
	},
}

func newFirewallRulesCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{Use: "firewall-rules", Short: "VPC firewall rules (global/firewalls)"}
	cmd.AddCommand(newFirewallCreateCmd(g), newFirewallListCmd(g), newFirewallDescribeCmd(g), newFirewallUpdateCmd(g), newFirewallDeleteCmd(g))
	return cmd
}

// firewallFlags are the flags create and update share.
type firewallFlags struct {
	network, direction, action, rules, allow, desc string
	priority                                       int64
	srcRanges, dstRanges, srcTags, targetTags      []string
	disabled                                       bool
}

func (ff *firewallFlags) add(cmd *cobra.Command, create bool) {
	f := cmd.Flags()
	if create {
		f.StringVar(&ff.network, "network", "default", "network of the rule")
		f.StringVar(&ff.direction, "direction", "INGRESS", "INGRESS (IN) or EGRESS (OUT)")
	}
	f.StringVar(&ff.allow, "allow", "", "allowed traffic: PROTOCOL[:PORT[-PORT]],... (tcp:80,udp:53-60,icmp,all)")
	f.StringVar(&ff.action, "action", "", "ALLOW or DENY, with --rules")
	f.StringVar(&ff.rules, "rules", "", "PROTOCOL[:PORT[-PORT]],... for --action")
	f.Int64Var(&ff.priority, "priority", model.DefaultFirewallPriority, "priority 0-65535, lower wins; deny wins at equal priority")
	f.StringSliceVar(&ff.srcRanges, "source-ranges", nil, "source CIDRs (match alias IPs too); INGRESS default 0.0.0.0/0 when no --source-tags")
	f.StringSliceVar(&ff.dstRanges, "destination-ranges", nil, "destination CIDRs")
	f.StringSliceVar(&ff.srcTags, "source-tags", nil, "source instance tags (match their primary IPs only, never alias IPs)")
	f.StringSliceVar(&ff.targetTags, "target-tags", nil, "instances the rule applies to (default: all)")
	f.BoolVar(&ff.disabled, "disabled", false, "create or set the rule disabled (--disabled=false enables)")
	f.StringVar(&ff.desc, "description", "", "description")
}

// protocols returns the action's entries from --allow or --action/--rules.
func (ff *firewallFlags) protocols(cmd *cobra.Command) (allowed, denied []*compute.FirewallAllowed, set bool, err error) {
	changed := func(n string) bool { return cmd.Flags().Changed(n) }
	switch {
	case changed("allow") && (changed("action") || changed("rules")):
		return nil, nil, false, flagErr("--allow", "cannot be combined with --action/--rules")
	case changed("allow"):
		ps, err := ParseRules("--allow", ff.allow)
		if err != nil {
			return nil, nil, false, err
		}
		return toWire(ps), nil, true, nil
	case changed("rules") || changed("action"):
		if !changed("rules") {
			return nil, nil, false, flagErr("--rules", "required with --action")
		}
		ps, err := ParseRules("--rules", ff.rules)
		if err != nil {
			return nil, nil, false, err
		}
		switch strings.ToUpper(ff.action) {
		case "ALLOW", "":
			return toWire(ps), nil, true, nil
		case "DENY":
			return nil, toWire(ps), true, nil
		}
		return nil, nil, false, flagErr("--action", "%q is not ALLOW or DENY", ff.action)
	}
	return nil, nil, false, nil
}

func toWire(ps []model.FirewallProtocol) []*compute.FirewallAllowed {
	out := make([]*compute.FirewallAllowed, len(ps))
	for i, p := range ps {
		out[i] = &compute.FirewallAllowed{IPProtocol: p.Protocol, Ports: p.Ports}
	}
	return out
}

func denied(ps []*compute.FirewallAllowed) []*compute.FirewallDenied {
	out := make([]*compute.FirewallDenied, len(ps))
	for i, p := range ps {
		out[i] = &compute.FirewallDenied{IPProtocol: p.IPProtocol, Ports: p.Ports}
	}
	return out
}

func direction(s string) (string, error) {
	switch strings.ToUpper(s) {
	case "INGRESS", "IN":
		return "INGRESS", nil
	case "EGRESS", "OUT":
		return "EGRESS", nil
	}
	return "", flagErr("--direction", "%q is not INGRESS or EGRESS", s)
}

func newFirewallCreateCmd(g *Globals) *cobra.Command {
	ff := &firewallFlags{}
	cmd := &cobra.Command{
		Use:   "create NAME (--allow RULES | --action ALLOW|DENY --rules RULES) [--network N] [--direction INGRESS|EGRESS] [--priority P] [--source-ranges ...] [--source-tags ...] [--destination-ranges ...] [--target-tags ...]",
		Short: "Create a firewall rule",
		Example: `  aliasnet firewall-rules create allow-web --network vpc --allow tcp:80,tcp:443 --source-ranges 0.0.0.0/0 --target-tags web
  aliasnet firewall-rules create deny-onprem-primary --network vpc --action DENY --rules all \
      --source-ranges 192.168.0.0/16 --destination-ranges 10.128.0.0/16
  aliasnet firewall-rules create from-frontend --network vpc --allow tcp:8080 --source-tags frontend --target-tags backend`,
		Args: cobra.ExactArgs(1),
	}
	ff.add(cmd, true)
	cmd.RunE = clientRunE(g, func(c *client, args []string) error {
		allowed, deny, set, err := ff.protocols(cmd)
		if err != nil {
			return err
		}
		if !set {
			return flagErr("--allow", "give --allow, or --action with --rules")
		}
		dir, err := direction(ff.direction)
		if err != nil {
			return err
		}
		fw := &compute.Firewall{Name: args[0], Description: ff.desc, Network: c.url("global/networks", ff.network), Direction: dir,
			Priority: ff.priority, Allowed: allowed, Denied: denied(deny), SourceRanges: ff.srcRanges, DestinationRanges: ff.dstRanges,
			SourceTags: ff.srcTags, TargetTags: ff.targetTags, Disabled: ff.disabled, ForceSendFields: []string{"Priority"}}
		op, err := c.wait(c.svc.Firewalls.Insert(c.project, fw).Context(c.ctx).Do())
		if err != nil {
			return err
		}
		c.created(op.TargetLink)
		got, err := fetch(c, c.svc.Firewalls.Get(c.project, args[0]).Context(c.ctx).Do)
		if err != nil {
			return err
		}
		return printOne(c, c.g.Format, firewallTable, got)
	})
	return cmd
}

func newFirewallUpdateCmd(g *Globals) *cobra.Command {
	ff := &firewallFlags{}
	cmd := &cobra.Command{
		Use:   "update NAME [--allow RULES | --rules RULES] [--priority P] [--source-ranges ...] [--source-tags ...] [--destination-ranges ...] [--target-tags ...] [--disabled[=false]]",
		Short: "Change a firewall rule (only the flags given; an empty list clears it)",
		Example: `  aliasnet firewall-rules update allow-web --priority 900 --source-ranges 10.0.0.0/8
  aliasnet firewall-rules update allow-web --target-tags ""   # apply to all instances
  aliasnet firewall-rules update allow-web --disabled`,
		Args: cobra.ExactArgs(1),
	}
	ff.add(cmd, false)
	cmd.RunE = clientRunE(g, func(c *client, args []string) error {
		fw := &compute.Firewall{}
		changed := func(n string) bool { return cmd.Flags().Changed(n) }
		any := false
		allowed, deny, set, err := ff.protocols(cmd)
		if err != nil {
			return err
		}
		if set {
			any = true
			if cmd.Flags().Changed("action") && strings.EqualFold(ff.action, "DENY") {
				fw.Denied = denied(deny)
			} else if cmd.Flags().Changed("action") || cmd.Flags().Changed("allow") {
				fw.Allowed = allowed
			} else {
				// --rules alone keeps the rule's action.
				cur, err := c.svc.Firewalls.Get(c.project, args[0]).Context(c.ctx).Do()
				if err != nil {
					return apiError(err)
				}
				if len(cur.Denied) > 0 {
					fw.Denied = denied(allowed)
				} else {
					fw.Allowed = allowed
				}
			}
		}
		list := func(flag, field string, v []string, dst *[]string) {
			if !changed(flag) {
				return
			}
			any = true
			var keep []string
			for _, s := range v {
				if s != "" {
					keep = append(keep, s)
				}
			}
			if len(keep) == 0 {
				fw.NullFields = append(fw.NullFields, field)
				return
			}
			*dst = keep
		}
		list("source-ranges", "SourceRanges", ff.srcRanges, &fw.SourceRanges)
		list("destination-ranges", "DestinationRanges", ff.dstRanges, &fw.DestinationRanges)
		list("source-tags", "SourceTags", ff.srcTags, &fw.SourceTags)
		list("target-tags", "TargetTags", ff.targetTags, &fw.TargetTags)
		if changed("priority") {
			any = true
			fw.Priority = ff.priority
			fw.ForceSendFields = append(fw.ForceSendFields, "Priority")
		}
		if changed("disabled") {
			any = true
			fw.Disabled = ff.disabled
			fw.ForceSendFields = append(fw.ForceSendFields, "Disabled")
		}
		if changed("description") {
			any = true
			fw.Description = ff.desc
			fw.ForceSendFields = append(fw.ForceSendFields, "Description")
		}
		if !any {
			return flagErr("--allow", "nothing to update: give at least one flag")
		}
		op, err := c.wait(c.svc.Firewalls.Patch(c.project, args[0], fw).Context(c.ctx).Do())
		if err != nil {
			return err
		}
		c.updated(op.TargetLink)
		got, err := fetch(c, c.svc.Firewalls.Get(c.project, args[0]).Context(c.ctx).Do)
		if err != nil {
			return err
		}
		return printOne(c, c.g.Format, firewallTable, got)
	})
	return cmd
}

func newFirewallListCmd(g *Globals) *cobra.Command {
	var network string
	cmd := &cobra.Command{Use: "list [--network N]", Short: "List firewall rules", Args: cobra.NoArgs}
	cmd.RunE = clientRunE(g, func(c *client, _ []string) error {
		fs, err := pages[*compute.Firewall](c, "", func(f func(*compute.FirewallList) error) error {
			return c.svc.Firewalls.List(c.project).Context(c.ctx).Pages(c.ctx, f)
		})
		if err != nil {
			return err
		}
		if network != "" {
			var keep []res[*compute.Firewall]
			for _, f := range fs {
				if lastSegment(f.v.Network) == network {
					keep = append(keep, f)
				}
			}
			fs = keep
		}
		return printList(c, firewallTable, fs)
	})
	cmd.Flags().StringVar(&network, "network", "", "only rules of this network")
	return cmd
}

func newFirewallDescribeCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{Use: "describe NAME", Short: "Show a firewall rule (YAML unless --format)", Args: cobra.ExactArgs(1)}
	cmd.RunE = clientRunE(g, func(c *client, args []string) error {
		f, err := fetch(c, c.svc.Firewalls.Get(c.project, args[0]).Context(c.ctx).Do)
		if err != nil {
			return err
		}
		return printOne(c, c.describeFormat(), firewallTable, f)
	})
	return cmd
}

func newFirewallDeleteCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{Use: "delete NAME...", Short: "Delete firewall rules", Args: cobra.MinimumNArgs(1)}
	cmd.RunE = clientRunE(g, func(c *client, args []string) error {
		for _, name := range args {
			op, err := c.wait(c.svc.Firewalls.Delete(c.project, name).Context(c.ctx).Do())
			if err != nil {
				return err
			}
			c.deleted(op.TargetLink)
		}
		return nil
	})
	return cmd
}

// --- trace ---

func newTraceCmd(g *Globals) *cobra.Command {
	var from, zone, src, to, toZone, proto string
	var port int
	cmd := &cobra.Command{
		Use:   "trace --from INSTANCE[:nic] --zone Z [--src IP] --to IP|INSTANCE[:nic] --protocol tcp|udp|icmp|N [--port N] [--format json]",
		Short: "Explain what the VPC does with one packet: anti-spoofing, firewall rules, route, delivery",
		Long: `trace follows the first packet of a connection through the control plane's
rules: the anti-spoof check on the sending interface, the egress firewall rule
that decides it, the route chosen (longest prefix, then priority), the ingress
firewall rule at the receiver, and the instance and interface that receive it.
The verdict is DELIVERED or DROPPED. --src defaults to the interface's primary
IP; set it to an alias IP, or (from an instance with canIpForward, such as a
VPN gateway) to an on-premises address.`,
		Example: `  aliasnet trace --from vm1 --zone us-central1-a --to vm2 --protocol tcp --port 22
  aliasnet trace --from vpn-gw --zone us-central1-a --src 192.168.1.10 --to 172.16.0.5 --protocol tcp --port 80
  aliasnet trace --from vm1:nic1 --zone us-central1-a --to 10.200.0.5 --protocol icmp --format json`,
		Args: cobra.NoArgs,
	}
	cmd.RunE = clientRunE(g, func(c *client, _ []string) error {
		if err := requireFlag(cmd, "from", "to", "protocol"); err != nil {
			return err
		}
		q := url.Values{"from": {from}, "to": {to}, "protocol": {proto}}
		if zone != "" {
			q.Set("zone", zone)
		}
		if src != "" {
			q.Set("src", src)
		}
		if toZone != "" {
			q.Set("toZone", toZone)
		}
		if cmd.Flags().Changed("port") {
			if port < 0 || port > 65535 {
				return flagErr("--port", "%d is not a port (0-65535)", port)
			}
			q.Set("port", fmt.Sprint(port))
		}
		var res netpolicy.Result
		raw, err := c.aliasnetGet("projects/"+url.PathEscape(c.project)+"/trace?"+q.Encode(), &res)
		if err != nil {
			return err
		}
		if c.g.Format != "table" {
			return npPrintRaw(c, raw)
		}
		return printTrace(c.out(), &res)
	})
	f := cmd.Flags()
	f.StringVar(&from, "from", "", "sending instance, optionally :nicN (default nic0)")
	f.StringVar(&zone, "zone", "", "zone of --from (default: found by name)")
	f.StringVar(&src, "src", "", "source address (default: the interface's primary IP)")
	f.StringVar(&to, "to", "", "destination IP, or INSTANCE[:nic] for its primary IP")
	f.StringVar(&toZone, "to-zone", "", "zone of --to INSTANCE (default: --zone, else found by name)")
	f.StringVar(&proto, "protocol", "", "tcp, udp, icmp, sctp, esp, ah, ipip or a protocol number")
	f.IntVar(&port, "port", 0, "destination port (tcp, udp, sctp)")
	return cmd
}

// printTrace renders a trace as numbered steps and the verdict.
func printTrace(w io.Writer, r *netpolicy.Result) error {
	p := r.Packet
	port := ""
	if p.Port != 0 || p.Protocol == "tcp" || p.Protocol == "udp" || p.Protocol == "sctp" {
		port = fmt.Sprintf(" port %d", p.Port)
	}
	fmt.Fprintf(w, "Packet: %s %s -> %s%s from %s\n", p.Protocol, p.Src, p.Dst, port, p.From)
	for i, s := range r.Steps {
		name := ""
		switch {
		case s.Rule != "":
			name = " [" + s.Rule + "]"
		case s.Route != "":
			name = " [" + s.Route + "]"
		}
		fmt.Fprintln(w, strings.TrimRight(fmt.Sprintf("%2d. %-16s %-9s%s", i+1, s.Kind, s.Result, name), " "))
		fmt.Fprintf(w, "    %s\n", s.Detail)
	}
	fmt.Fprintf(w, "Verdict: %s\n", r.Verdict)
	return nil
}

// aliasnetGet calls aliasnet's own API (/aliasnet/v1/) and decodes the
// answer; errors come back with the server's message.
func (c *client) aliasnetGet(path string, v any) (json.RawMessage, error) {
	u := strings.TrimRight(c.g.Server, "/") + "/aliasnet/v1/" + path
	req, err := http.NewRequestWithContext(c.ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", c.g.Server, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if json.Unmarshal(b, &e) == nil && e.Error.Message != "" {
			return nil, fmt.Errorf("%s", e.Error.Message)
		}
		return nil, fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	if err := json.Unmarshal(b, v); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", path, err)
	}
	return b, nil
}

// npPrintRaw prints an aliasnet API answer as JSON or YAML.
func npPrintRaw(c *client, raw json.RawMessage) error {
	return printOne(c, c.g.Format, table[json.RawMessage]{}, res[json.RawMessage]{v: raw, raw: raw})
}
