package server

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync"

	"github.com/aliasnet/aliasnet/internal/api/clouddns"
	"github.com/aliasnet/aliasnet/internal/api/gce"
	"github.com/aliasnet/aliasnet/internal/dnsrt"
	"github.com/aliasnet/aliasnet/internal/routing"
)

// RoutingDNSConfig is the Cloud Router (BGP) and internal DNS part of
// Config. Both are off unless their listen address is set.
type RoutingDNSConfig struct {
	// BGPListen ("ADDR:PORT") runs one BGP speaker per router, listening
	// there (see internal/routing). The port is also the peers' port
	// unless BGPPeerPort is set.
	BGPListen   string
	BGPPeerPort uint16
	// BGPMultihop is the eBGP multihop TTL of every session (0: off).
	BGPMultihop uint8
	// DNSListen serves internal DNS (UDP and TCP) on this address.
	DNSListen string
	// DNSAllNetworks are client prefixes that see every network's names
	// (nil: loopback).
	DNSAllNetworks []netip.Prefix
}

// routingDNS is the running state of both runtimes.
type routingDNS struct {
	routing *routing.Runtime
	dns     *dnsrt.Runtime
	dnsPC   net.PacketConn
	dnsLn   net.Listener
}

// initRoutingDNS builds the runtimes (New).
func (s *Server) initRoutingDNS() error {
	c := s.cfg.RoutingDNSConfig
	if c.BGPListen != "" {
		ap, err := netip.ParseAddrPort(c.BGPListen)
		if err != nil {
			return fmt.Errorf("--bgp-listen %q: want ADDR:PORT, e.g. 127.0.0.1:1179: %w", c.BGPListen, err)
		}
		rt, err := routing.New(s.Svc, routing.Config{Listen: ap, PeerPort: c.BGPPeerPort, Multihop: c.BGPMultihop, Logger: s.log})
		if err != nil {
			return err
		}
		s.rd.routing = rt
	}
	if c.DNSListen != "" {
		s.rd.dns = dnsrt.New(s.Svc, dnsrt.Config{Listen: c.DNSListen, AllNetworks: c.DNSAllNetworks, Logger: s.log})
	}
	return nil
}

// mountRoutingDNS adds the Cloud DNS dialect and connects getRouterStatus
// to the BGP runtime (Handler).
func (s *Server) mountRoutingDNS(mux *http.ServeMux, g *gce.API) {
	if s.rd.routing != nil {
		g.SetRouterStatus(s.rd.routing)
	}
	mux.Handle("/dns/v1/", clouddns.New(s.Svc, s.log))
}

// listenDNS binds the DNS sockets (Listen), so that a taken port fails
// start-up.
func (s *Server) listenDNS() error {
	if s.rd.dns == nil {
		return nil
	}
	pc, ln, err := s.rd.dns.Listen()
	if err != nil {
		return err
	}
	s.rd.dnsPC, s.rd.dnsLn = pc, ln
	return nil
}

// DNSAddr is the bound DNS address, "" when not serving DNS.
func (s *Server) DNSAddr() string {
	if s.rd.dnsPC == nil {
		return ""
	}
	return s.rd.dnsPC.LocalAddr().String()
}

// startRoutingDNS runs both runtimes until the returned stop is called;
// stop waits for them (BGP sessions closed, DNS sockets closed), so the
// store can be closed after it.
func (s *Server) startRoutingDNS() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	if s.rd.routing != nil {
		wg.Go(func() {
			if err := s.rd.routing.Run(ctx); err != nil {
				s.log.Error("bgp runtime stopped", "err", err)
			}
		})
	}
	if s.rd.dns != nil && s.rd.dnsPC != nil {
		wg.Go(func() {
			if err := s.rd.dns.Serve(ctx, s.rd.dnsPC, s.rd.dnsLn); err != nil {
				s.log.Error("internal DNS stopped", "err", err)
			}
		})
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			wg.Wait()
		})
	}
}
