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

// vethMACs are the MACs ADD gives the two ends of an attachment's veth:
// locally administered unicast addresses derived like the host veth's
// name. Choosing them spares reading the links back after creating them
// (ADD's latency); a MAC only has to be unique on its own veth.
func vethMACs(containerID, ifName string) (host, pod net.HardwareAddr) {
	h := sha256.Sum256([]byte("mac/" + containerID + "/" + ifName))
	host, pod = net.HardwareAddr(h[0:6]), net.HardwareAddr(h[6:12])
	host[0], pod[0] = host[0]&0xfc|0x02, pod[0]&0xfc|0x02
	return host, pod
}

var gateway = net.ParseIP(GatewayIP).To4()

func hostPrefix(a netip.Addr) *net.IPNet {
	return &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(32, 32)}
}

// nsHandle opens a netlink handle in the namespace at path. Route sockets
// only: a handle opens one socket per family, each with two setns(2).
func nsHandle(path string) (*netlink.Handle, netns.NsHandle, error) {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, -1, fmt.Errorf("open netns %s: %w", path, err)
	}
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		ns.Close()
		return nil, -1, fmt.Errorf("netlink in %s: %w", path, err)
	}
	return h, ns, nil
}

// nodeHandle is a netlink handle in the node's namespace (the package
// functions open a socket per call).
func nodeHandle() (*netlink.Handle, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	return h, nil
}

// ErrLocalRoute: the node treats a pod address as its own.
var ErrLocalRoute = errors.New("local route for the pod range")

// checkNotLocal refuses when the node treats the pod address as its own
// (a "local" route for the pod range, e.g. a guest agent's alias route):
// with policy routing the local table is looked up first and the pod's
// traffic is delivered to the node, and in any case the node answers for
// pod addresses that have no pod.
func checkNotLocal(h *netlink.Handle, a netip.Addr, rng netip.Prefix) error {
	rs, err := h.RouteGet(a.AsSlice())
	if err != nil {
		return nil // no route at all is fine: the /32 we add decides
	}
	for _, r := range rs {
		if r.Type == unix.RTN_LOCAL {
			return fmt.Errorf("aliasnet: the node has a %w %s (pod address %s): it would take its pods' traffic for itself instead of forwarding it. "+
				"Guest agents install such a route for every alias IP range; on a cluster node they must leave the pod range alone "+
				"(aliasnet agent does when the metadata server names it in the instance attribute %s, or with --pod-range %s; "+
				"Google's guest agent: ip_aliases = false in instance_configs.cfg). Remove it with: ip route del local %s table local",
				ErrLocalRoute, rng, a, PodRangeAttribute, rng, rng)
		}
	}
	return nil
}

// veth is an attachment's veth pair while ADD sets it up.
type veth struct {
	link            *netlink.Veth
	ph              *netlink.Handle // in the pod's namespace
	pns             netns.NsHandle
	netnsPath       string
	ifName          string
	podIndex        int
	hostMAC, podMAC net.HardwareAddr
}

// createVeth creates the pair and does everything that does not need the
// pod's address (ADD allocates it meanwhile): the host end up with proxy
// ARP on and IPv6 off, IPv4 forwarding on, the pod end up in the pod's
// namespace with its gateway (169.254.1.1, a permanent neighbour entry for
// the host end's MAC) and default route. A leftover host end of the same
// attachment (a retried ADD) is replaced.
func createVeth(h *netlink.Handle, netnsPath, ifName, containerID, hostVeth string, mtu int) (*veth, error) {
	ph, pns, err := nsHandle(netnsPath)
	if err != nil {
		return nil, err
	}
	v := &veth{ph: ph, pns: pns, netnsPath: netnsPath, ifName: ifName}
	v.hostMAC, v.podMAC = vethMACs(containerID, ifName)
	la := netlink.NewLinkAttrs()
	la.Name = hostVeth
	la.HardwareAddr = v.hostMAC
	la.Flags = net.FlagUp
	if mtu > 0 {
		la.MTU = mtu
	}
	v.link = &netlink.Veth{LinkAttrs: la, PeerName: ifName, PeerNamespace: netlink.NsFd(int(pns)), PeerHardwareAddr: v.podMAC}
	if mtu > 0 {
		v.link.PeerMTU = uint32(mtu)
	}
	if err := h.LinkAdd(v.link); err != nil {
		if !errors.Is(err, unix.EEXIST) {
			v.close()
			return nil, fmt.Errorf("create veth %s/%s: %w", hostVeth, ifName, err)
		}
		if _, err := ph.LinkByName(ifName); err == nil {
			v.close()
			return nil, fmt.Errorf("interface %s already exists in %s", ifName, netnsPath)
		}
		if l, err := h.LinkByName(hostVeth); err == nil {
			_ = h.LinkDel(l)
		}
		v.link.Index = 0
		if err := h.LinkAdd(v.link); err != nil {
			v.close()
			return nil, fmt.Errorf("create veth %s/%s: %w", hostVeth, ifName, err)
		}
	}
	if err := v.prepare(); err != nil {
		v.remove(h)
		v.close()
		return nil, err
	}
	return v, nil
}

func (v *veth) prepare() error {
	hostVeth := v.link.Name
	if err := writeSysctl("net/ipv4/conf/"+hostVeth+"/proxy_arp", "1"); err != nil {
		return err
	}
	_ = writeSysctl("net/ipv6/conf/"+hostVeth+"/disable_ipv6", "1")
	if err := enableForwarding(); err != nil {
		return err
	}
	ph := v.ph
	pod, err := ph.LinkByName(v.ifName)
	if err != nil {
		return fmt.Errorf("pod interface %s in %s: %w", v.ifName, v.netnsPath, err)
	}
	v.podIndex, v.podMAC = pod.Attrs().Index, pod.Attrs().HardwareAddr
	if err := ph.LinkSetUp(pod); err != nil {
		return fmt.Errorf("set %s up: %w", v.ifName, err)
	}
	if err := ph.NeighSet(&netlink.Neigh{LinkIndex: v.podIndex, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT,
		IP: gateway, HardwareAddr: v.hostMAC}); err != nil {
		return fmt.Errorf("neighbour %s on %s: %w", GatewayIP, v.ifName, err)
	}
	if err := ph.RouteAdd(&netlink.Route{LinkIndex: v.podIndex, Dst: &net.IPNet{IP: gateway, Mask: net.CIDRMask(32, 32)}, Scope: netlink.SCOPE_LINK}); err != nil {
		return fmt.Errorf("route %s dev %s: %w", GatewayIP, v.ifName, err)
	}
	if err := ph.RouteAdd(&netlink.Route{LinkIndex: v.podIndex, Gw: gateway}); err != nil {
		return fmt.Errorf("default route via %s: %w", GatewayIP, err)
	}
	return nil
}

// configure gives the pod its address and routes it on the node.
func (v *veth) configure(h *netlink.Handle, a netip.Addr) error {
	if err := h.RouteReplace(&netlink.Route{LinkIndex: v.link.Index, Dst: hostPrefix(a), Scope: netlink.SCOPE_LINK}); err != nil {
		return fmt.Errorf("route %s dev %s: %w", a, v.link.Name, err)
	}
	if err := v.ph.AddrAdd(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: v.podIndex, Name: v.ifName}}, &netlink.Addr{IPNet: hostPrefix(a)}); err != nil {
		return fmt.Errorf("address %s on %s: %w", a, v.ifName, err)
	}
	return nil
}

// remove deletes the pair (a failed ADD).
func (v *veth) remove(h *netlink.Handle) { _ = h.LinkDel(v.link) }

func (v *veth) close() {
	v.ph.Close()
	v.pns.Close()
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
