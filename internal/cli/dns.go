package cli

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	dnsv1 "google.golang.org/api/dns/v1"
	"google.golang.org/api/option"
)

func init() { clientCommands = append(clientCommands, newDNSCmd) }

// dnsClient is a verb's connection to the server's Cloud DNS v1 dialect
// through the official client (google.golang.org/api/dns/v1).
type dnsClient struct {
	*client
	dns *dnsv1.Service
}

func dnsRunE(g *Globals, f func(c *dnsClient, args []string) error) func(*cobra.Command, []string) error {
	return clientRunE(g, func(c *client, args []string) error {
		svc, err := dnsv1.NewService(c.ctx, option.WithEndpoint(strings.TrimRight(g.Server, "/")+"/"),
			option.WithoutAuthentication(), option.WithHTTPClient(&http.Client{Transport: c.rec}), option.WithUserAgent("aliasnet-cli"))
		if err != nil {
			return err
		}
		return f(&dnsClient{client: c, dns: svc}, args)
	})
}

func fqdn(s string) string {
	s = strings.TrimSpace(s)
	if s != "" && !strings.HasSuffix(s, ".") {
		s += "."
	}
	return s
}

var zoneTable = table[*dnsv1.ManagedZone]{
	header: []string{"NAME", "DNS_NAME", "VISIBILITY", "NETWORKS", "DESCRIPTION"},
	row: func(z *dnsv1.ManagedZone) []string {
		var nets []string
		if z.PrivateVisibilityConfig != nil {
			for _, n := range z.PrivateVisibilityConfig.Networks {
				nets = append(nets, lastSegment(n.NetworkUrl))
			}
		}
		return []string{z.Name, z.DnsName, z.Visibility, strings.Join(nets, ","), z.Description}
	},
}

var rrsetTable = table[*dnsv1.ResourceRecordSet]{
	header: []string{"NAME", "TYPE", "TTL", "DATA"},
	row: func(r *dnsv1.ResourceRecordSet) []string {
		return []string{r.Name, r.Type, strconv.FormatInt(r.Ttl, 10), strings.Join(r.Rrdatas, ",")}
	},
}

func newDNSCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{Use: "dns", Short: "Internal DNS: managed private zones and record sets (Cloud DNS v1 API)"}
	zones := &cobra.Command{Use: "managed-zones", Short: "Managed zones (names for alias IPs and anything else)"}
	zones.AddCommand(newZonesCreateCmd(g), newZonesListCmd(g), newZonesDescribeCmd(g), newZonesUpdateCmd(g), newZonesDeleteCmd(g))
	sets := &cobra.Command{Use: "record-sets", Short: "Record sets of a managed zone"}
	sets.AddCommand(newRRSetsCreateCmd(g), newRRSetsListCmd(g), newRRSetsDescribeCmd(g), newRRSetsUpdateCmd(g), newRRSetsDeleteCmd(g))
	cmd.AddCommand(zones, sets)
	return cmd
}

func (c *dnsClient) networkURLs(names []string) []*dnsv1.ManagedZonePrivateVisibilityConfigNetwork {
	out := []*dnsv1.ManagedZonePrivateVisibilityConfigNetwork{}
	for _, n := range names {
		if n = strings.TrimSpace(n); n != "" {
			out = append(out, &dnsv1.ManagedZonePrivateVisibilityConfigNetwork{NetworkUrl: c.url("global/networks", n)})
		}
	}
	return out
}

func newZonesCreateCmd(g *Globals) *cobra.Command {
	var dnsName, desc, vis string
	var networks []string
	cmd := &cobra.Command{
		Use:   "create NAME --dns-name D [--visibility private --networks N[,N]] [--description TEXT]",
		Short: "Create a managed zone",
		Example: `  aliasnet dns managed-zones create containers --dns-name containers.internal. \
      --visibility private --networks vpc --description "names for alias IPs"`,
		Args: cobra.ExactArgs(1),
	}
	cmd.RunE = dnsRunE(g, func(c *dnsClient, args []string) error {
		if err := requireFlag(cmd, "dns-name"); err != nil {
			return err
		}
		v := strings.ToLower(vis)
		if v != "private" && v != "public" {
			return flagErr("--visibility", "%q is not private or public", vis)
		}
		z := &dnsv1.ManagedZone{Name: args[0], DnsName: fqdn(dnsName), Description: desc, Visibility: v}
		if v == "private" {
			z.PrivateVisibilityConfig = &dnsv1.ManagedZonePrivateVisibilityConfig{Networks: c.networkURLs(networks)}
		} else if len(networks) > 0 {
			return flagErr("--networks", "only a private zone lists networks")
		}
		out, err := fetch(c.client, c.dns.ManagedZones.Create(c.project, z).Context(c.ctx).Do)
		if err != nil {
			return err
		}
		c.created(c.g.Server + "/dns/v1/projects/" + c.project + "/managedZones/" + args[0])
		return printOne(c.client, c.g.Format, zoneTable, out)
	})
	f := cmd.Flags()
	f.StringVar(&dnsName, "dns-name", "", "DNS name of the zone, e.g. containers.internal.")
	f.StringVar(&desc, "description", "", "description")
	f.StringVar(&vis, "visibility", "private", "private (visible to --networks) or public (visible to every network of this server)")
	f.StringSliceVar(&networks, "networks", nil, "networks that see a private zone")
	return cmd
}

func newZonesListCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{Use: "list", Short: "List managed zones", Args: cobra.NoArgs}
	cmd.RunE = dnsRunE(g, func(c *dnsClient, _ []string) error {
		var out []res[*dnsv1.ManagedZone]
		err := c.dns.ManagedZones.List(c.project).Context(c.ctx).Pages(c.ctx, func(l *dnsv1.ManagedZonesListResponse) error {
			items, err := pageItemsKey[*dnsv1.ManagedZone](c.last(), "managedZones")
			out = append(out, items...)
			return err
		})
		if err != nil {
			return apiError(err)
		}
		return printList(c.client, zoneTable, out)
	})
	return cmd
}

func newZonesDescribeCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{Use: "describe NAME", Short: "Show a managed zone (YAML unless --format)", Args: cobra.ExactArgs(1)}
	cmd.RunE = dnsRunE(g, func(c *dnsClient, args []string) error {
		z, err := fetch(c.client, c.dns.ManagedZones.Get(c.project, args[0]).Context(c.ctx).Do)
		if err != nil {
			return err
		}
		return printOne(c.client, c.describeFormat(), zoneTable, z)
	})
	return cmd
}

func newZonesUpdateCmd(g *Globals) *cobra.Command {
	var desc string
	var networks []string
	cmd := &cobra.Command{Use: "update NAME [--description TEXT] [--networks N[,N]]", Short: "Change a zone's description or networks", Args: cobra.ExactArgs(1)}
	cmd.RunE = dnsRunE(g, func(c *dnsClient, args []string) error {
		patch := &dnsv1.ManagedZone{}
		switch {
		case cmd.Flags().Changed("description"):
			patch.Description = desc
			patch.ForceSendFields = append(patch.ForceSendFields, "Description")
			fallthrough
		case cmd.Flags().Changed("networks"):
			if cmd.Flags().Changed("networks") {
				patch.PrivateVisibilityConfig = &dnsv1.ManagedZonePrivateVisibilityConfig{Networks: c.networkURLs(networks),
					ForceSendFields: []string{"Networks"}}
			}
		default:
			return flagErr("--networks", "nothing to update: give --description or --networks")
		}
		if _, err := c.dns.ManagedZones.Patch(c.project, args[0], patch).Context(c.ctx).Do(); err != nil {
			return apiError(err)
		}
		z, err := fetch(c.client, c.dns.ManagedZones.Get(c.project, args[0]).Context(c.ctx).Do)
		if err != nil {
			return err
		}
		c.updated(c.g.Server + "/dns/v1/projects/" + c.project + "/managedZones/" + args[0])
		return printOne(c.client, c.g.Format, zoneTable, z)
	})
	cmd.Flags().StringVar(&desc, "description", "", "new description")
	cmd.Flags().StringSliceVar(&networks, "networks", nil, "networks that see the zone (replaces the list)")
	return cmd
}

func newZonesDeleteCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{Use: "delete NAME...", Short: "Delete empty managed zones", Args: cobra.MinimumNArgs(1)}
	cmd.RunE = dnsRunE(g, func(c *dnsClient, args []string) error {
		for _, n := range args {
			if err := c.dns.ManagedZones.Delete(c.project, n).Context(c.ctx).Do(); err != nil {
				return apiError(err)
			}
			c.deleted(c.g.Server + "/dns/v1/projects/" + c.project + "/managedZones/" + n)
		}
		return nil
	})
	return cmd
}

func newRRSetsCreateCmd(g *Globals) *cobra.Command {
	var zone, typ string
	var ttl int64
	var datas []string
	cmd := &cobra.Command{
		Use:     "create NAME --zone Z --type T --rrdatas DATA[,DATA] [--ttl SECONDS]",
		Short:   "Create a record set",
		Example: `  aliasnet dns record-sets create web.containers.internal. --zone containers --type A --ttl 300 --rrdatas 172.16.0.5`,
		Args:    cobra.ExactArgs(1),
	}
	cmd.RunE = dnsRunE(g, func(c *dnsClient, args []string) error {
		if err := requireFlag(cmd, "zone", "type", "rrdatas"); err != nil {
			return err
		}
		r := &dnsv1.ResourceRecordSet{Name: fqdn(args[0]), Type: strings.ToUpper(typ), Ttl: ttl, Rrdatas: datas, ForceSendFields: []string{"Ttl"}}
		out, err := fetch(c.client, c.dns.ResourceRecordSets.Create(c.project, zone, r).Context(c.ctx).Do)
		if err != nil {
			return err
		}
		c.created(c.g.Server + "/dns/v1/projects/" + c.project + "/managedZones/" + zone + "/rrsets/" + r.Name + "/" + r.Type)
		return printOne(c.client, c.g.Format, rrsetTable, out)
	})
	f := cmd.Flags()
	f.StringVar(&zone, "zone", "", "managed zone")
	f.StringVar(&typ, "type", "", "record type: A, AAAA, CNAME, TXT, PTR, SRV, MX")
	f.Int64Var(&ttl, "ttl", 300, "TTL in seconds")
	f.StringSliceVar(&datas, "rrdatas", nil, "record data, comma separated")
	return cmd
}

func newRRSetsListCmd(g *Globals) *cobra.Command {
	var zone, name, typ string
	cmd := &cobra.Command{Use: "list --zone Z [--name N] [--type T]", Short: "List the record sets of a zone", Args: cobra.NoArgs}
	cmd.RunE = dnsRunE(g, func(c *dnsClient, _ []string) error {
		if err := requireFlag(cmd, "zone"); err != nil {
			return err
		}
		call := c.dns.ResourceRecordSets.List(c.project, zone).Context(c.ctx)
		if name != "" {
			call = call.Name(fqdn(name))
		}
		if typ != "" {
			call = call.Type(strings.ToUpper(typ))
		}
		var out []res[*dnsv1.ResourceRecordSet]
		err := call.Pages(c.ctx, func(*dnsv1.ResourceRecordSetsListResponse) error {
			items, err := pageItemsKey[*dnsv1.ResourceRecordSet](c.last(), "rrsets")
			out = append(out, items...)
			return err
		})
		if err != nil {
			return apiError(err)
		}
		return printList(c.client, rrsetTable, out)
	})
	cmd.Flags().StringVar(&zone, "zone", "", "managed zone")
	cmd.Flags().StringVar(&name, "name", "", "only this name")
	cmd.Flags().StringVar(&typ, "type", "", "only this type")
	return cmd
}

func newRRSetsDescribeCmd(g *Globals) *cobra.Command {
	var zone, typ string
	cmd := &cobra.Command{Use: "describe NAME --zone Z --type T", Short: "Show a record set", Args: cobra.ExactArgs(1)}
	cmd.RunE = dnsRunE(g, func(c *dnsClient, args []string) error {
		if err := requireFlag(cmd, "zone", "type"); err != nil {
			return err
		}
		r, err := fetch(c.client, c.dns.ResourceRecordSets.Get(c.project, zone, fqdn(args[0]), strings.ToUpper(typ)).Context(c.ctx).Do)
		if err != nil {
			return err
		}
		return printOne(c.client, c.describeFormat(), rrsetTable, r)
	})
	cmd.Flags().StringVar(&zone, "zone", "", "managed zone")
	cmd.Flags().StringVar(&typ, "type", "", "record type")
	return cmd
}

func newRRSetsUpdateCmd(g *Globals) *cobra.Command {
	var zone, typ string
	var ttl int64
	var datas []string
	cmd := &cobra.Command{Use: "update NAME --zone Z --type T [--ttl N] [--rrdatas DATA[,DATA]]", Short: "Replace a record set's TTL or data", Args: cobra.ExactArgs(1)}
	cmd.RunE = dnsRunE(g, func(c *dnsClient, args []string) error {
		if err := requireFlag(cmd, "zone", "type"); err != nil {
			return err
		}
		r := &dnsv1.ResourceRecordSet{Name: fqdn(args[0]), Type: strings.ToUpper(typ)}
		if cmd.Flags().Changed("ttl") {
			r.Ttl = ttl
			r.ForceSendFields = []string{"Ttl"}
		}
		if cmd.Flags().Changed("rrdatas") {
			r.Rrdatas = datas
		}
		out, err := fetch(c.client, c.dns.ResourceRecordSets.Patch(c.project, zone, r.Name, r.Type, r).Context(c.ctx).Do)
		if err != nil {
			return err
		}
		c.updated(c.g.Server + "/dns/v1/projects/" + c.project + "/managedZones/" + zone + "/rrsets/" + r.Name + "/" + r.Type)
		return printOne(c.client, c.g.Format, rrsetTable, out)
	})
	cmd.Flags().StringVar(&zone, "zone", "", "managed zone")
	cmd.Flags().StringVar(&typ, "type", "", "record type")
	cmd.Flags().Int64Var(&ttl, "ttl", 300, "new TTL")
	cmd.Flags().StringSliceVar(&datas, "rrdatas", nil, "new record data")
	return cmd
}

func newRRSetsDeleteCmd(g *Globals) *cobra.Command {
	var zone, typ string
	cmd := &cobra.Command{Use: "delete NAME --zone Z --type T", Short: "Delete a record set", Args: cobra.ExactArgs(1)}
	cmd.RunE = dnsRunE(g, func(c *dnsClient, args []string) error {
		if err := requireFlag(cmd, "zone", "type"); err != nil {
			return err
		}
		name := fqdn(args[0])
		if _, err := c.dns.ResourceRecordSets.Delete(c.project, zone, name, strings.ToUpper(typ)).Context(c.ctx).Do(); err != nil {
			return apiError(err)
		}
		c.deleted(c.g.Server + "/dns/v1/projects/" + c.project + "/managedZones/" + zone + "/rrsets/" + name + "/" + strings.ToUpper(typ))
		return nil
	})
	cmd.Flags().StringVar(&zone, "zone", "", "managed zone")
	cmd.Flags().StringVar(&typ, "type", "", "record type")
	return cmd
}

// pageItemsKey decodes the items of a Cloud DNS list page, whose list
// field is named after the resource ("managedZones", "rrsets").
func pageItemsKey[T any](body []byte, key string) ([]res[T], error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, err
	}
	wrapped, _ := json.Marshal(map[string]json.RawMessage{"items": m[key]})
	return pageItems[T](wrapped, "")
}
