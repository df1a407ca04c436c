package cli

import (
	"net/netip"
	"strings"

	"github.com/spf13/cobra"

	"github.com/aliasnet/aliasnet/internal/server"
)

// routingDNSServeFlags are serve's Cloud Router (BGP) and internal DNS
// flags.
type routingDNSServeFlags struct {
	bgpListen   string
	bgpPeerPort uint16
	bgpMultihop uint8
	dnsListen   string
	dnsAll      []string
}

func (f *routingDNSServeFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.bgpListen, "bgp-listen", "", "run a BGP speaker for every router (Cloud Router), listening on ADDR:PORT, e.g. 127.0.0.1:1179 (default off)")
	fl.Uint16Var(&f.bgpPeerPort, "bgp-peer-port", 0, "TCP port of the BGP peers (default: the --bgp-listen port)")
	fl.Uint8Var(&f.bgpMultihop, "bgp-multihop", 0, "eBGP multihop TTL for every session (default 0: directly connected)")
	fl.StringVar(&f.dnsListen, "dns-listen", "", "serve internal DNS (INSTANCE.ZONE.c.PROJECT.internal, managed zones) on ADDR:PORT, UDP and TCP (default off)")
	fl.StringSliceVar(&f.dnsAll, "dns-all-networks-from", []string{"127.0.0.0/8", "::1/128"},
		"client CIDRs that see the names of every network (other clients see only their own network's)")
}

func (f *routingDNSServeFlags) apply(cfg *server.Config) error {
	cfg.BGPListen, cfg.BGPPeerPort, cfg.BGPMultihop, cfg.DNSListen = f.bgpListen, f.bgpPeerPort, f.bgpMultihop, f.dnsListen
	cfg.DNSAllNetworks = []netip.Prefix{}
	for _, v := range f.dnsAll {
		v = strings.TrimSpace(v)
		if v == "" {
			continue
		}
		p, err := netip.ParsePrefix(v)
		if err != nil {
			a, aerr := netip.ParseAddr(v)
			if aerr != nil {
				return flagErr("--dns-all-networks-from", "%q is not a CIDR or an address", v)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		cfg.DNSAllNetworks = append(cfg.DNSAllNetworks, p.Masked())
	}
	if f.bgpListen != "" {
		if _, err := netip.ParseAddrPort(f.bgpListen); err != nil {
			return flagErr("--bgp-listen", "%q: want ADDR:PORT, e.g. 127.0.0.1:1179 (%v)", f.bgpListen, err)
		}
	}
	return nil
}
