package cni

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// hostVethName is the node-side veth of an attachment: derived from the
// container id and interface name, so that DEL and GC find it without the
// pod's namespace.
func hostVethName(containerID, ifName string) string {
	h := sha256.Sum256([]byte(containerID + "/" + ifName))
	return "an" + hex.EncodeToString(h[:])[:12]
}

var gateway = net.ParseIP(GatewayIP).To4()

func hostPrefix(a netip.Addr) *net.IPNet {
	return &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(32, 32)}
}

// podLinks is what ADD made.
type podLinks struct {
	host, pod netlink.Link
}

// nsHandle opens a netlink handle in the namespace at path.
func nsHandle(path string) (*netlink.Handle, netns.NsHandle, error) {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, -1, fmt.Errorf("open netns %s: %w", path, err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		ns.Close()
		return nil, -1, fmt.Errorf("netlink in %s: %w", path, err)
	}
	return h, ns, nil
}

// checkNotLocal refuses when the node treats the pod address as its own
// (a "local" route for the pod range, e.g. the guest agent's alias route):
// packets for pods would then never be forwarded to them.
func checkNotLocal(a netip.Addr) error {
	rs, err := netlink.RouteGet(a.AsSlice())
	if err != nil {
		return nil // no route at all is fine: the /32 we add decides
	}
	for _, r := range rs {
		if r.Type == unix.RTN_LOCAL {
			return fmt.Errorf("the node has a local route covering %s (an alias route added by a guest agent?): "+
				"pod addresses must be forwarded, not delivered to the node; remove the local route for the pod range", a)
		}
	}
	return nil
}

// setupPod creates the veth pair, addresses the pod and routes it.
func setupPod(netnsPath, ifName, hostVeth string, a netip.Addr, mtu int) (*podLinks, error) {
	ph, pns, err := nsHandle(netnsPath)
	if err != nil {
		return nil, err
	}
	defer pns.Close()
	defer ph.Close()
	if _, err := ph.LinkByName(ifName); err == nil {
		return nil, fmt.Errorf("interface %s already exists in %s", ifName, netnsPath)
	}
	// A leftover host veth of this attachment (a retried ADD) goes first.
	if l, err := netlink.LinkByName(hostVeth); err == nil {
		_ = netlink.LinkDel(l)
	}
	la := netlink.NewLinkAttrs()
	la.Name = hostVeth
	if mtu > 0 {
		la.MTU = mtu
	}
	veth := &netlink.Veth{LinkAttrs: la, PeerName: ifName, PeerNamespace: netlink.NsFd(int(pns))}
	if mtu > 0 {
		veth.PeerMTU = uint32(mtu)
	}
	if err := netlink.LinkAdd(veth); err != nil {
		return nil, fmt.Errorf("create veth %s/%s: %w", hostVeth, ifName, err)
	}
	ok := false
	defer func() {
		if !ok {
			if l, err := netlink.LinkByName(hostVeth); err == nil {
				_ = netlink.LinkDel(l)
			}
		}
	}()
	host, err := netlink.LinkByName(hostVeth)
	if err != nil {
		return nil, err
	}
	// Node side: answer ARP for the pod's gateway, route the pod.
	if err := writeSysctl("net/ipv4/conf/"+hostVeth+"/proxy_arp", "1"); err != nil {
		return nil, err
	}
	_ = writeSysctl("net/ipv6/conf/"+hostVeth+"/disable_ipv6", "1")
	if err := netlink.LinkSetUp(host); err != nil {
		return nil, fmt.Errorf("set %s up: %w", hostVeth, err)
	}
	if err := netlink.RouteReplace(&netlink.Route{LinkIndex: host.Attrs().Index, Dst: hostPrefix(a), Scope: netlink.SCOPE_LINK}); err != nil {
		return nil, fmt.Errorf("route %s dev %s: %w", a, hostVeth, err)
	}
	if err := enableForwarding(); err != nil {
		return nil, err
	}
	// Pod side.
	pod, err := ph.LinkByName(ifName)
	if err != nil {
		return nil, err
	}
	if err := ph.AddrAdd(pod, &netlink.Addr{IPNet: hostPrefix(a)}); err != nil {
		return nil, fmt.Errorf("address %s on %s: %w", a, ifName, err)
	}
	if err := ph.LinkSetUp(pod); err != nil {
		return nil, fmt.Errorf("set %s up: %w", ifName, err)
	}
	idx := pod.Attrs().Index
	if err := ph.NeighSet(&netlink.Neigh{LinkIndex: idx, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT,
		IP: gateway, HardwareAddr: host.Attrs().HardwareAddr}); err != nil {
		return nil, fmt.Errorf("neighbour %s on %s: %w", GatewayIP, ifName, err)
	}
	if err := ph.RouteAdd(&netlink.Route{LinkIndex: idx, Dst: &net.IPNet{IP: gateway, Mask: net.CIDRMask(32, 32)}, Scope: netlink.SCOPE_LINK}); err != nil {
		return nil, fmt.Errorf("route %s dev %s: %w", GatewayIP, ifName, err)
	}
	if err := ph.RouteAdd(&netlink.Route{LinkIndex: idx, Gw: gateway}); err != nil {
		return nil, fmt.Errorf("default route via %s: %w", GatewayIP, err)
	}
	ok = true
	return &podLinks{host: host, pod: pod}, nil
}

// teardown removes an attachment's host veth (and with it the pair and
// the /32 route). Missing pieces are not errors (DEL is idempotent).
func teardown(hostVeth string) error {
	l, err := netlink.LinkByName(hostVeth)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return err
	}
	return netlink.LinkDel(l)
}

// checkPod verifies what ADD made.
func checkPod(netnsPath, ifName, hostVeth string, a netip.Addr) error {
	host, err := netlink.LinkByName(hostVeth)
	if err != nil {
		return fmt.Errorf("host veth %s: %w", hostVeth, err)
	}
	if host.Attrs().OperState == netlink.OperDown {
		return fmt.Errorf("host veth %s is down", hostVeth)
	}
	rs, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Dst: hostPrefix(a), LinkIndex: host.Attrs().Index},
		netlink.RT_FILTER_DST|netlink.RT_FILTER_OIF)
	if err != nil || len(rs) == 0 {
		return fmt.Errorf("no route %s dev %s on the node", a, hostVeth)
	}
	ph, pns, err := nsHandle(netnsPath)
	if err != nil {
		return err
	}
	defer pns.Close()
	defer ph.Close()
	pod, err := ph.LinkByName(ifName)
	if err != nil {
		return fmt.Errorf("pod interface %s: %w", ifName, err)
	}
	addrs, err := ph.AddrList(pod, netlink.FAMILY_V4)
	if err != nil {
		return err
	}
	found := false
	for _, ad := range addrs {
		if ad.IP.Equal(a.AsSlice()) {
			found = true
		}
	}
	if !found {
		return fmt.Errorf("pod interface %s does not have %s", ifName, a)
	}
	routes, err := ph.RouteList(pod, netlink.FAMILY_V4)
	if err != nil {
		return err
	}
	for _, r := range routes {
		if (r.Dst == nil || r.Dst.IP.IsUnspecified()) && r.Gw.Equal(gateway) {
			return nil
		}
	}
	return fmt.Errorf("pod has no default route via %s on %s", GatewayIP, ifName)
}

func writeSysctl(key, v string) error {
	f, err := os.OpenFile("/proc/sys/"+key, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("sysctl %s: %w", key, err)
	}
	defer f.Close()
	if _, err := f.WriteString(v); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", key, v, err)
	}
	return nil
}

// enableForwarding turns IPv4 forwarding on in the node's namespace (the
// node routes between the fabric and its pods).
func enableForwarding() error {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	if err == nil && len(b) > 0 && b[0] == '1' {
		return nil
	}
	return writeSysctl("net/ipv4/ip_forward", "1")
}
