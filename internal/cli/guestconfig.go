package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"github.com/spf13/cobra"
	compute "google.golang.org/api/compute/v1"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"

	"github.com/aliasnet/aliasnet/internal/guestconfig"
	"github.com/aliasnet/aliasnet/internal/metadata"
)

func init() { clientCommands = append(clientCommands, newGuestConfigCmd) }

func newGuestConfigCmd(g *Globals) *cobra.Command {
	var (
		zone, osName, formName, outDir string
		nic                            int
	)
	cmd := &cobra.Command{
		Use:   "guest-config INSTANCE --zone ZONE --os nmcli|rhel|netplan|debian|suse|windows",
		Short: "Render the guest OS network configuration for an instance's addresses and alias ranges",
		Long: `Reads the instance and its subnets through the Compute API and renders the
configuration that makes the guest accept its alias ranges and secondary
addresses, for people who configure by file instead of running 'aliasnet agent'.

Interfaces are named eth0, eth1, ... by NIC index; their MAC is the one the
server assigned (read from the server's /aliasnet/v1/.../nics endpoint, as the
Compute API has no MAC field; against a server without it, derived as GCE does:
42:01 + the primary IPv4 address). nic0 carries the default route via the
subnet gateway.

--form auto (default): single addresses (/32) become interface addresses and
larger ranges local routes; --form local-routes: every alias a local route.
Without --out everything is printed with a header per file; with --out DIR
each file is written at its real path under DIR.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if zone == "" {
				return errors.New("--zone: required")
			}
			if osName == "" {
				return errors.New("--os: required (nmcli, rhel, netplan, debian, suse or windows)")
			}
			osv, err := guestconfig.ParseOS(osName)
			if err != nil {
				return fmt.Errorf("--os: %w", err)
			}
			var form guestconfig.Form
			switch formName {
			case "auto", "":
				form = guestconfig.FormAuto
			case "local-routes", "routes":
				form = guestconfig.FormLocalRoutes
			default:
				return fmt.Errorf("--form: %q is not auto or local-routes", formName)
			}
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			svc, err := compute.NewService(ctx, option.WithEndpoint(strings.TrimRight(g.Server, "/")+"/compute/v1/"),
				option.WithoutAuthentication(), option.WithUserAgent("aliasnet-cli"))
			if err != nil {
				return fmt.Errorf("connecting to %s: %w", g.Server, err)
			}
			ifaces, err := guestInterfaces(ctx, svc, g.Project, zone, args[0], nic)
			if err != nil {
				return err
			}
			if err := guestMACs(ctx, g.Server, g.Project, zone, args[0], ifaces); err != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "WARNING: %v; MACs derived from the primary addresses (42:01 + IPv4)\n", err)
			}
			res, err := guestconfig.Render(osv, ifaces, form)
			if err != nil {
				return err
			}
			if outDir == "" {
				return guestconfig.Format(cmd.OutOrStdout(), res)
			}
			if err := guestconfig.WriteTree(outDir, res); err != nil {
				return err
			}
			w := cmd.ErrOrStderr()
			for _, f := range res.Files {
				fmt.Fprintf(w, "Wrote %s\n", strings.TrimRight(outDir, "/")+"/"+strings.TrimLeft(f.Path, "/"))
			}
			if len(res.Apply) > 0 {
				fmt.Fprintln(w, "Apply on the guest with:")
				for _, c := range res.Apply {
					fmt.Fprintln(w, "  "+c)
				}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&zone, "zone", "", "zone of the instance")
	f.StringVar(&osName, "os", "", "guest OS family: nmcli, rhel, netplan, debian, suse, windows (aliases: ubuntu, centos, alinux, sles, ...)")
	f.StringVar(&formName, "form", "auto", "auto (single addresses as addresses, ranges as local routes) or local-routes")
	f.StringVar(&outDir, "out", "", "write each file at its path under this directory instead of printing")
	f.IntVar(&nic, "nic", -1, "render only this NIC index (default all)")
	return cmd
}

// guestMAC is the MAC aliasnet gives a GCE-created interface: 42:01
// followed by the primary IPv4 address (GCE's own scheme). It is the
// fallback when the server cannot tell (Alibaba-created interfaces use
// 00:16 instead, which only the server knows).
func guestMAC(ip netip.Addr) net.HardwareAddr {
	if !ip.Is4() {
		return nil
	}
	b := ip.As4()
	return net.HardwareAddr{0x42, 0x01, b[0], b[1], b[2], b[3]}
}

// guestMACs replaces the derived MACs of ifaces (named ethN by NIC index)
// with the ones the server assigned.
func guestMACs(ctx context.Context, server, project, zone, name string, ifaces []guestconfig.Interface) error {
	u := strings.TrimRight(server, "/") + "/aliasnet/v1/projects/" + url.PathEscape(project) + "/zones/" +
		url.PathEscape(zone) + "/instances/" + url.PathEscape(name) + "/nics"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("reading MACs: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("reading MACs: GET %s: HTTP %d", u, resp.StatusCode)
	}
	var body struct {
		NICs []metadata.NICInfo `json:"nics"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return fmt.Errorf("reading MACs: %w", err)
	}
	for i := range ifaces {
		for _, n := range body.NICs {
			if fmt.Sprintf("eth%d", n.Index) != ifaces[i].Name || n.IP != ifaces[i].Primary.Addr().String() {
				continue
			}
			mac, err := net.ParseMAC(n.MAC)
			if err != nil {
				return fmt.Errorf("reading MACs: nic%d: %w", n.Index, err)
			}
			ifaces[i].MAC = mac
		}
	}
	return nil
}

func guestAPIError(what string, err error) error {
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		return fmt.Errorf("%s: %s (HTTP %d)", what, ge.Message, ge.Code)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// refSegment returns the segment after key in a resource URL
// (".../regions/us-central1/subnetworks/s", "regions" -> "us-central1").
func refSegment(ref, key string) string {
	parts := strings.Split(strings.TrimRight(ref, "/"), "/")
	for i := 0; i+1 < len(parts); i++ {
		if parts[i] == key {
			return parts[i+1]
		}
	}
	return ""
}

// guestInterfaces reads an instance and its subnets and builds the
// renderer's interfaces; nic < 0 means all.
func guestInterfaces(ctx context.Context, svc *compute.Service, project, zone, name string, nic int) ([]guestconfig.Interface, error) {
	in, err := svc.Instances.Get(project, zone, name).Context(ctx).Do()
	if err != nil {
		return nil, guestAPIError("instance "+name, err)
	}
	if nic >= len(in.NetworkInterfaces) {
		return nil, fmt.Errorf("--nic: instance %s has %d network interfaces", name, len(in.NetworkInterfaces))
	}
	subnets := map[string]*compute.Subnetwork{}
	var out []guestconfig.Interface
	for i, ni := range in.NetworkInterfaces {
		if nic >= 0 && i != nic {
			continue
		}
		ip, err := netip.ParseAddr(ni.NetworkIP)
		if err != nil {
			return nil, fmt.Errorf("nic%d: networkIP %q: %w", i, ni.NetworkIP, err)
		}
		region, sname := refSegment(ni.Subnetwork, "regions"), refSegment(ni.Subnetwork, "subnetworks")
		if region == "" || sname == "" {
			return nil, fmt.Errorf("nic%d: cannot read subnetwork %q", i, ni.Subnetwork)
		}
		sn := subnets[region+"/"+sname]
		if sn == nil {
			if sn, err = svc.Subnetworks.Get(project, region, sname).Context(ctx).Do(); err != nil {
				return nil, guestAPIError("subnetwork "+sname, err)
			}
			subnets[region+"/"+sname] = sn
		}
		rng, err := netip.ParsePrefix(sn.IpCidrRange)
		if err != nil {
			return nil, fmt.Errorf("subnetwork %s: ipCidrRange %q: %w", sname, sn.IpCidrRange, err)
		}
		gif := guestconfig.Interface{
			Name:         fmt.Sprintf("eth%d", i),
			MAC:          guestMAC(ip),
			Primary:      netip.PrefixFrom(ip, rng.Bits()),
			DefaultRoute: i == 0,
		}
		if gw, err := netip.ParseAddr(sn.GatewayAddress); err == nil {
			gif.Gateway = gw
		} else if i == 0 {
			return nil, fmt.Errorf("subnetwork %s: gatewayAddress %q: %w", sname, sn.GatewayAddress, err)
		}
		for _, ar := range ni.AliasIpRanges {
			p, err := netip.ParsePrefix(ar.IpCidrRange)
			if err != nil {
				a, aerr := netip.ParseAddr(ar.IpCidrRange)
				if aerr != nil {
					return nil, fmt.Errorf("nic%d: alias %q: %w", i, ar.IpCidrRange, err)
				}
				p = netip.PrefixFrom(a, a.BitLen())
			}
			gif.Aliases = append(gif.Aliases, p.Masked())
		}
		out = append(out, gif)
	}
	return out, nil
}
