package cli

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	compute "google.golang.org/api/compute/v1"
)

func init() { clientCommands = append(clientCommands, newRoutersCmd) }

func advertisementString(b *compute.RouterBgp) string {
	if b == nil {
		return ""
	}
	if b.AdvertiseMode != "CUSTOM" {
		return "DEFAULT"
	}
	parts := slices.Clone(b.AdvertisedGroups)
	for _, r := range b.AdvertisedIpRanges {
		parts = append(parts, r.Range)
	}
	return "CUSTOM:" + strings.Join(parts, ",")
}

var routerTable = table[*compute.Router]{
	header: []string{"NAME", "REGION", "NETWORK", "ASN", "ADVERTISE", "PEERS"},
	row: func(r *compute.Router) []string {
		asn := ""
		if r.Bgp != nil {
			asn = itoa(r.Bgp.Asn)
		}
		var peers []string
		for _, p := range r.BgpPeers {
			peers = append(peers, p.Name+"="+p.PeerIpAddress)
		}
		return []string{r.Name, lastSegment(r.Region), lastSegment(r.Network), asn, advertisementString(r.Bgp), strings.Join(peers, ",")}
	},
}

// statusTable prints one row per BGP peer of a getRouterStatus answer.
var statusTable = table[*compute.RouterStatusResponse]{
	header: []string{"PEER", "PEER_IP", "STATE", "STATUS", "UPTIME", "ADVERTISED", "LEARNED"},
	row: func(s *compute.RouterStatusResponse) []string {
		if s.Result == nil || len(s.Result.BgpPeerStatus) == 0 {
			return []string{"(no peers)", "", "", "", "", "", ""}
		}
		var rows []string
		for _, p := range s.Result.BgpPeerStatus {
			var adv []string
			for _, r := range p.AdvertisedRoutes {
				adv = append(adv, r.DestRange)
			}
			rows = append(rows, strings.Join([]string{p.Name, p.PeerIpAddress, p.State, p.Status, p.Uptime,
				strings.Join(adv, ","), itoa(p.NumLearnedRoutes)}, "\t"))
		}
		// printTable joins cells with tabs; a multi-peer status is several lines.
		return []string{strings.Join(rows, "\n")}
	},
}

func newRoutersCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{Use: "routers", Short: "Cloud Routers: BGP advertisement of subnet (alias) ranges to on-prem peers (regions/R/routers)"}
	cmd.AddCommand(newRoutersCreateCmd(g), newRoutersListCmd(g), newRoutersDescribeCmd(g), newRoutersDeleteCmd(g),
		newRoutersUpdateCmd(g), newRoutersAddPeerCmd(g), newRoutersRemovePeerCmd(g), newRoutersAddInterfaceCmd(g),
		newRoutersStatusCmd(g))
	return cmd
}

// advFlags are gcloud's custom-advertisement flags.
type advFlags struct {
	mode                           string
	setGroups, addGroups, rmGroups []string
	setRanges, addRanges, rmRanges []string
}

func (a *advFlags) register(cmd *cobra.Command, incremental bool) {
	f := cmd.Flags()
	f.StringVar(&a.mode, "advertisement-mode", "", "DEFAULT (every subnet range the router covers, primary and secondary) or CUSTOM")
	f.StringSliceVar(&a.setGroups, "set-advertisement-groups", nil, "groups to advertise in CUSTOM mode: all_subnets")
	f.StringSliceVar(&a.setRanges, "set-advertisement-ranges", nil, "ranges to advertise in CUSTOM mode, CIDR[=DESCRIPTION],...")
	if incremental {
		f.StringSliceVar(&a.addGroups, "add-advertisement-groups", nil, "groups to add to the custom advertisement")
		f.StringSliceVar(&a.rmGroups, "remove-advertisement-groups", nil, "groups to remove from the custom advertisement")
		f.StringSliceVar(&a.addRanges, "add-advertisement-ranges", nil, "ranges to add, CIDR[=DESCRIPTION],...")
		f.StringSliceVar(&a.rmRanges, "remove-advertisement-ranges", nil, "ranges to remove, CIDR,...")
	}
}

func (a *advFlags) changed(cmd *cobra.Command) bool {
	for _, n := range []string{"advertisement-mode", "set-advertisement-groups", "set-advertisement-ranges",
		"add-advertisement-groups", "remove-advertisement-groups", "add-advertisement-ranges", "remove-advertisement-ranges"} {
		if f := cmd.Flags().Lookup(n); f != nil && f.Changed {
			return true
		}
	}
	return false
}

// ParseAdvertisedRanges parses "CIDR[=DESCRIPTION]" items.
func ParseAdvertisedRanges(flag string, items []string) ([]*compute.RouterAdvertisedIpRange, error) {
	var out []*compute.RouterAdvertisedIpRange
	for _, it := range items {
		cidr, desc, _ := strings.Cut(strings.TrimSpace(it), "=")
		p, err := netip.ParsePrefix(cidr)
		if err != nil {
			a, aerr := netip.ParseAddr(cidr)
			if aerr != nil {
				return nil, flagErr(flag, "%q is not a CIDR range", cidr)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if p.Masked() != p {
			return nil, flagErr(flag, "%s has host bits set; did you mean %s?", p, p.Masked())
		}
		for _, o := range out {
			if o.Range == p.String() {
				return nil, flagErr(flag, "range %s given twice", p)
			}
		}
		out = append(out, &compute.RouterAdvertisedIpRange{Range: p.String(), Description: desc})
	}
	return out, nil
}

func parseGroups(flag string, items []string) ([]string, error) {
	var out []string
	for _, g := range items {
		g = strings.ToUpper(strings.TrimSpace(g))
		if g != "ALL_SUBNETS" {
			return nil, flagErr(flag, "unknown group %q (valid: all_subnets)", g)
		}
		if !slices.Contains(out, g) {
			out = append(out, g)
		}
	}
	return out, nil
}

// apply edits an advertisement (mode, groups, ranges) as gcloud does: the
// set flags replace, add/remove edit; CUSTOM-only flags need CUSTOM mode.
func (a *advFlags) apply(cmd *cobra.Command, mode *string, groups *[]string, ranges *[]*compute.RouterAdvertisedIpRange) error {
	if a.mode != "" {
		m := strings.ToUpper(a.mode)
		if m != "DEFAULT" && m != "CUSTOM" {
			return flagErr("--advertisement-mode", "%q is not DEFAULT or CUSTOM", a.mode)
		}
		*mode = m
	}
	set := func(name string) bool { f := cmd.Flags().Lookup(name); return f != nil && f.Changed }
	custom := set("set-advertisement-groups") || set("set-advertisement-ranges") || set("add-advertisement-groups") ||
		set("remove-advertisement-groups") || set("add-advertisement-ranges") || set("remove-advertisement-ranges")
	if custom && *mode != "CUSTOM" {
		return flagErr("--advertisement-mode", "custom advertisements (groups, ranges) need --advertisement-mode=CUSTOM")
	}
	if *mode == "DEFAULT" {
		*groups, *ranges = nil, nil
		return nil
	}
	if set("set-advertisement-groups") {
		gs, err := parseGroups("--set-advertisement-groups", a.setGroups)
		if err != nil {
			return err
		}
		*groups = gs
	}
	if set("set-advertisement-ranges") {
		rs, err := ParseAdvertisedRanges("--set-advertisement-ranges", a.setRanges)
		if err != nil {
			return err
		}
		*ranges = rs
	}
	if set("add-advertisement-groups") {
		gs, err := parseGroups("--add-advertisement-groups", a.addGroups)
		if err != nil {
			return err
		}
		for _, g := range gs {
			if slices.Contains(*groups, g) {
				return flagErr("--add-advertisement-groups", "group %s is already advertised", g)
			}
			*groups = append(*groups, g)
		}
	}
	if set("remove-advertisement-groups") {
		gs, err := parseGroups("--remove-advertisement-groups", a.rmGroups)
		if err != nil {
			return err
		}
		for _, g := range gs {
			i := slices.Index(*groups, g)
			if i < 0 {
				return flagErr("--remove-advertisement-groups", "group %s is not advertised", g)
			}
			*groups = slices.Delete(*groups, i, i+1)
		}
	}
	if set("add-advertisement-ranges") {
		rs, err := ParseAdvertisedRanges("--add-advertisement-ranges", a.addRanges)
		if err != nil {
			return err
		}
		for _, r := range rs {
			if slices.ContainsFunc(*ranges, func(o *compute.RouterAdvertisedIpRange) bool { return o.Range == r.Range }) {
				return flagErr("--add-advertisement-ranges", "range %s is already advertised", r.Range)
			}
			*ranges = append(*ranges, r)
		}
	}
	if set("remove-advertisement-ranges") {
		rs, err := ParseAdvertisedRanges("--remove-advertisement-ranges", a.rmRanges)
		if err != nil {
			return err
		}
		for _, r := range rs {
			i := slices.IndexFunc(*ranges, func(o *compute.RouterAdvertisedIpRange) bool { return o.Range == r.Range })
			if i < 0 {
				return flagErr("--remove-advertisement-ranges", "range %s is not advertised", r.Range)
			}
			*ranges = slices.Delete(*ranges, i, i+1)
		}
	}
	return nil
}

func (c *client) printRouterAfter(op *compute.Operation, region, name string, verb func(string)) error {
	verb(op.TargetLink)
	r, err := fetch(c, c.svc.Routers.Get(c.project, region, name).Context(c.ctx).Do)
	if err != nil {
		return err
	}
	return printOne(c, c.g.Format, routerTable, r)
}

func newRoutersCreateCmd(g *Globals) *cobra.Command {
	var network, region, desc string
	var asn int64
	var adv advFlags
	cmd := &cobra.Command{
		Use:   "create NAME --network N --region R [--asn ASN] [--advertisement-mode custom --set-advertisement-groups all_subnets --set-advertisement-ranges CIDR[=DESC],...]",
		Short: "Create a Cloud Router",
		Example: `  aliasnet routers create cr --network vpc --region us-central1 --asn 65000
  # only the container (secondary) range, not the VMs' primary range:
  aliasnet routers create cr --network vpc --region us-central1 --asn 65000 \
      --advertisement-mode custom --set-advertisement-ranges 172.16.0.0/20`,
		Args: cobra.ExactArgs(1),
	}
	cmd.RunE = clientRunE(g, func(c *client, args []string) error {
		if err := requireFlag(cmd, "network", "region"); err != nil {
			return err
		}
		r := &compute.Router{Name: args[0], Description: desc, Network: c.url("global/networks", network)}
		if cmd.Flags().Changed("asn") || adv.changed(cmd) {
			b := &compute.RouterBgp{Asn: asn, AdvertiseMode: "DEFAULT"}
			if err := adv.apply(cmd, &b.AdvertiseMode, &b.AdvertisedGroups, &b.AdvertisedIpRanges); err != nil {
				return err
			}
			r.Bgp = b
		}
		op, err := c.wait(c.svc.Routers.Insert(c.project, region, r).Context(c.ctx).Do())
		if err != nil {
			return err
		}
		return c.printRouterAfter(op, region, args[0], c.created)
	})
	f := cmd.Flags()
	f.StringVar(&network, "network", "", "network of the router")
	f.StringVar(&region, "region", "", "region of the router")
	f.Int64Var(&asn, "asn", 0, "the router's private ASN (64512-65534, 4200000000-4294967294)")
	f.StringVar(&desc, "description", "", "description")
	adv.register(cmd, false)
	return cmd
}

func newRoutersListCmd(g *Globals) *cobra.Command {
	var region string
	cmd := &cobra.Command{Use: "list [--region R]", Short: "List routers (all regions unless --region)", Args: cobra.NoArgs}
	cmd.RunE = clientRunE(g, func(c *client, _ []string) error {
		var all []res[*compute.Router]
		var err error
		if region != "" {
			all, err = pages[*compute.Router](c, "", func(f func(*compute.RouterList) error) error {
				return c.svc.Routers.List(c.project, region).Context(c.ctx).Pages(c.ctx, f)
			})
		} else {
			all, err = pages[*compute.Router](c, "routers", func(f func(*compute.RouterAggregatedList) error) error {
				return c.svc.Routers.AggregatedList(c.project).Context(c.ctx).Pages(c.ctx, f)
			})
		}
		if err != nil {
			return err
		}
		return printList(c, routerTable, all)
	})
	cmd.Flags().StringVar(&region, "region", "", "only this region")
	return cmd
}

func newRoutersDescribeCmd(g *Globals) *cobra.Command {
	var region string
	cmd := &cobra.Command{Use: "describe NAME --region R", Short: "Show a router (YAML unless --format)", Args: cobra.ExactArgs(1)}
	cmd.RunE = clientRunE(g, func(c *client, args []string) error {
		if err := requireFlag(cmd, "region"); err != nil {
			return err
		}
		r, err := fetch(c, c.svc.Routers.Get(c.project, region, args[0]).Context(c.ctx).Do)
		if err != nil {
			return err
		}
		return printOne(c, c.describeFormat(), routerTable, r)
	})
	cmd.Flags().StringVar(&region, "region", "", "region of the router")
	return cmd
}

func newRoutersDeleteCmd(g *Globals) *cobra.Command {
	var region string
	cmd := &cobra.Command{Use: "delete NAME... --region R", Short: "Delete routers (their BGP sessions close)", Args: cobra.MinimumNArgs(1)}
	cmd.RunE = clientRunE(g, func(c *client, args []string) error {
		if err := requireFlag(cmd, "region"); err != nil {
			return err
		}
		for _, name := range args {
			op, err := c.wait(c.svc.Routers.Delete(c.project, region, name).Context(c.ctx).Do())
			if err != nil {
				return err
			}
			c.deleted(op.TargetLink)
		}
		return nil
	})
	cmd.Flags().StringVar(&region, "region", "", "region of the routers")
	return cmd
}

func newRoutersStatusCmd(g *Globals) *cobra.Command {
	var region string
	cmd := &cobra.Command{
		Use:   "get-status NAME --region R",
		Short: "Show the BGP sessions, advertised and learned routes of a router (YAML unless --format)",
		Args:  cobra.ExactArgs(1),
	}
	cmd.RunE = clientRunE(g, func(c *client, args []string) error {
		if err := requireFlag(cmd, "region"); err != nil {
			return err
		}
		s, err := fetch(c, c.svc.Routers.GetRouterStatus(c.project, region, args[0]).Context(c.ctx).Do)
		if err != nil {
			return err
		}
		return printOne(c, c.describeFormat(), statusTable, s)
	})
	cmd.Flags().StringVar(&region, "region", "", "region of the router")
	return cmd
}

// patchRouter GETs a router, lets edit change it, and PATCHes the fields
// edit touched (bgp, bgpPeers, interfaces), as gcloud does.
func (c *client) patchRouter(region, name string, edit func(r *compute.Router) error) error {
	r, err := c.svc.Routers.Get(c.project, region, name).Context(c.ctx).Do()
	if err != nil {
		return apiError(err)
	}
	if err := edit(r); err != nil {
		return err
	}
	patch := &compute.Router{Bgp: r.Bgp, BgpPeers: r.BgpPeers, Interfaces: r.Interfaces,
		ForceSendFields: []string{"BgpPeers", "Interfaces"}}
	if patch.Bgp != nil {
		patch.Bgp.ForceSendFields = []string{"AdvertisedGroups", "AdvertisedIpRanges"}
		if patch.Bgp.AdvertisedGroups == nil {
			patch.Bgp.AdvertisedGroups = []string{}
		}
		if patch.Bgp.AdvertisedIpRanges == nil {
			patch.Bgp.AdvertisedIpRanges = []*compute.RouterAdvertisedIpRange{}
		}
	}
	if patch.BgpPeers == nil {
		patch.BgpPeers = []*compute.RouterBgpPeer{}
	}
	for _, p := range patch.BgpPeers {
		p.ForceSendFields = append(p.ForceSendFields, "AdvertisedRoutePriority")
	}
	if patch.Interfaces == nil {
		patch.Interfaces = []*compute.RouterInterface{}
	}
	op, err := c.wait(c.svc.Routers.Patch(c.project, region, name, patch).Context(c.ctx).Do())
	if err != nil {
		return err
	}
	return c.printRouterAfter(op, region, name, c.updated)
}

func newRoutersUpdateCmd(g *Globals) *cobra.Command {
	var region string
	var asn int64
	var adv advFlags
	cmd := &cobra.Command{
		Use:   "update NAME --region R [--asn ASN] [--advertisement-mode default|custom] [--set-|--add-|--remove-advertisement-groups ...] [--set-|--add-|--remove-advertisement-ranges ...]",
		Short: "Change a router's ASN or route advertisement (GET, edit, PATCH)",
		Example: `  # advertise only the secondary range (the VMs' primary range is withdrawn):
  aliasnet routers update cr --region us-central1 --advertisement-mode custom --set-advertisement-ranges 172.16.0.0/20
  aliasnet routers update cr --region us-central1 --add-advertisement-ranges 172.17.0.0/20
  aliasnet routers update cr --region us-central1 --advertisement-mode default`,
		Args: cobra.ExactArgs(1),
	}
	cmd.RunE = clientRunE(g, func(c *client, args []string) error {
		if err := requireFlag(cmd, "region"); err != nil {
			return err
		}
		if !cmd.Flags().Changed("asn") && !adv.changed(cmd) {
			return flagErr("--advertisement-mode", "nothing to update: give --asn or advertisement flags")
		}
		return c.patchRouter(region, args[0], func(r *compute.Router) error {
			if r.Bgp == nil {
				r.Bgp = &compute.RouterBgp{AdvertiseMode: "DEFAULT"}
			}
			if cmd.Flags().Changed("asn") {
				r.Bgp.Asn = asn
			}
			return adv.apply(cmd, &r.Bgp.AdvertiseMode, &r.Bgp.AdvertisedGroups, &r.Bgp.AdvertisedIpRanges)
		})
	})
	cmd.Flags().StringVar(&region, "region", "", "region of the router")
	cmd.Flags().Int64Var(&asn, "asn", 0, "the router's new ASN")
	adv.register(cmd, true)
	return cmd
}

func newRoutersAddPeerCmd(g *Globals) *cobra.Command {
	var region, peerName, iface, peerIP, ipAddr string
	var peerASN, priority int64
	var disabled bool
	var adv advFlags
	cmd := &cobra.Command{
		Use:   "add-bgp-peer NAME --region R --peer-name P --interface I --peer-ip-address IP --peer-asn ASN [--ip-address IP] [--advertised-route-priority N]",
		Short: "Add a BGP peer (session) to a router",
		Long: `Add a BGP peer to a router. As in gcloud the peer names one of the router's
interfaces; when the router has no interface of that name, aliasnet adds it
(with --ip-address, if given, as its address) in the same request.`,
		Example: `  aliasnet routers add-bgp-peer cr --region us-central1 --peer-name on-prem --interface if-onprem \
      --ip-address 127.0.0.1 --peer-ip-address 127.0.0.2 --peer-asn 65001 --advertised-route-priority 100`,
		Args: cobra.ExactArgs(1),
	}
	cmd.RunE = clientRunE(g, func(c *client, args []string) error {
		if err := requireFlag(cmd, "region", "peer-name", "interface", "peer-asn", "peer-ip-address"); err != nil {
			return err
		}
		if _, err := netip.ParseAddr(peerIP); err != nil {
			return flagErr("--peer-ip-address", "%q is not an IP address", peerIP)
		}
		if ipAddr != "" {
			if _, err := netip.ParseAddr(ipAddr); err != nil {
				return flagErr("--ip-address", "%q is not an IP address", ipAddr)
			}
		}
		return c.patchRouter(region, args[0], func(r *compute.Router) error {
			for _, p := range r.BgpPeers {
				if p.Name == peerName {
					return flagErr("--peer-name", "router '%s' already has a BGP peer named '%s'", r.Name, peerName)
				}
			}
			if !slices.ContainsFunc(r.Interfaces, func(i *compute.RouterInterface) bool { return i.Name == iface }) {
				fmt.Fprintf(c.errw(), "Adding interface [%s] to router [%s].\n", iface, r.Name)
				r.Interfaces = append(r.Interfaces, &compute.RouterInterface{Name: iface})
			}
			p := &compute.RouterBgpPeer{Name: peerName, InterfaceName: iface, PeerIpAddress: peerIP, IpAddress: ipAddr,
				PeerAsn: peerASN, AdvertisedRoutePriority: 100}
			if cmd.Flags().Changed("advertised-route-priority") {
				p.AdvertisedRoutePriority = priority
			}
			if disabled {
				p.Enable = "FALSE"
			}
			if adv.changed(cmd) {
				p.AdvertiseMode = "DEFAULT"
				if err := adv.apply(cmd, &p.AdvertiseMode, &p.AdvertisedGroups, &p.AdvertisedIpRanges); err != nil {
					return err
				}
			}
			r.BgpPeers = append(r.BgpPeers, p)
			return nil
		})
	})
	f := cmd.Flags()
	f.StringVar(&region, "region", "", "region of the router")
	f.StringVar(&peerName, "peer-name", "", "name of the new BGP peer")
	f.StringVar(&iface, "interface", "", "the router interface the session runs over")
	f.StringVar(&peerIP, "peer-ip-address", "", "the peer's address")
	f.StringVar(&ipAddr, "ip-address", "", "the router's address for this session (default: the interface's)")
	f.Int64Var(&peerASN, "peer-asn", 0, "the peer's ASN (different from the router's: eBGP)")
	f.Int64Var(&priority, "advertised-route-priority", 100, "MED of the routes sent to this peer (0-65535)")
	f.BoolVar(&disabled, "disabled", false, "add the peer with its session disabled (enable: FALSE)")
	adv.register(cmd, false)
	return cmd
}

func newRoutersRemovePeerCmd(g *Globals) *cobra.Command {
	var region string
	var names []string
	cmd := &cobra.Command{Use: "remove-bgp-peer NAME --region R --peer-name P[,P]", Short: "Remove BGP peers from a router", Args: cobra.ExactArgs(1)}
	cmd.RunE = clientRunE(g, func(c *client, args []string) error {
		if err := requireFlag(cmd, "region", "peer-name"); err != nil {
			return err
		}
		return c.patchRouter(region, args[0], func(r *compute.Router) error {
			for _, n := range names {
				i := slices.IndexFunc(r.BgpPeers, func(p *compute.RouterBgpPeer) bool { return p.Name == n })
				if i < 0 {
					return flagErr("--peer-name", "router '%s' has no BGP peer named '%s'", r.Name, n)
				}
				r.BgpPeers = slices.Delete(r.BgpPeers, i, i+1)
			}
			return nil
		})
	})
	cmd.Flags().StringVar(&region, "region", "", "region of the router")
	cmd.Flags().StringSliceVar(&names, "peer-name", nil, "names of the peers to remove")
	return cmd
}

func newRoutersAddInterfaceCmd(g *Globals) *cobra.Command {
	var region, name, ip, tunnel string
	var mask int
	cmd := &cobra.Command{
		Use:     "add-interface NAME --region R --interface-name I [--ip-address IP --mask-length N] [--vpn-tunnel T]",
		Short:   "Add an interface (a link a BGP session runs over) to a router",
		Example: `  aliasnet routers add-interface cr --region us-central1 --interface-name if-tunnel0 --ip-address 169.254.0.1 --mask-length 30`,
		Args:    cobra.ExactArgs(1),
	}
	cmd.RunE = clientRunE(g, func(c *client, args []string) error {
		if err := requireFlag(cmd, "region", "interface-name"); err != nil {
			return err
		}
		ifc := &compute.RouterInterface{Name: name, LinkedVpnTunnel: tunnel}
		if ip != "" {
			a, err := netip.ParseAddr(ip)
			if err != nil {
				return flagErr("--ip-address", "%q is not an IP address", ip)
			}
			if !cmd.Flags().Changed("mask-length") {
				return flagErr("--mask-length", "required with --ip-address")
			}
			if mask < 0 || mask >= a.BitLen() {
				return flagErr("--mask-length", "%d is not between 0 and %d", mask, a.BitLen()-1)
			}
			ifc.IpRange = a.String() + "/" + strconv.Itoa(mask)
		}
		return c.patchRouter(region, args[0], func(r *compute.Router) error {
			if slices.ContainsFunc(r.Interfaces, func(i *compute.RouterInterface) bool { return i.Name == name }) {
				return flagErr("--interface-name", "router '%s' already has an interface named '%s'", r.Name, name)
			}
			r.Interfaces = append(r.Interfaces, ifc)
			return nil
		})
	})
	f := cmd.Flags()
	f.StringVar(&region, "region", "", "region of the router")
	f.StringVar(&name, "interface-name", "", "name of the new interface")
	f.StringVar(&ip, "ip-address", "", "the router's address on the link")
	f.IntVar(&mask, "mask-length", 0, "prefix length of the link")
	f.StringVar(&tunnel, "vpn-tunnel", "", "VPN tunnel the interface is linked to (recorded only)")
	return cmd
}
