// Package cni is aliasnet's CNI plugin (CNI 1.0/1.1: ADD, DEL, CHECK, GC,
// STATUS, VERSION). It gives each pod an address from its node's pod range
// — the alias IP range the control plane gave the node's nic0 from the
// cluster's pods range — over a veth pair:
//
//	pod:  eth0 ADDR/32, 169.254.1.1 dev eth0 scope link, default via 169.254.1.1,
//	      permanent neighbour 169.254.1.1 -> the host veth's MAC
//	node: host veth (proxy_arp on), ADDR/32 dev <host veth> scope link,
//	      IPv4 forwarding on
//
// No overlay and no per-pod routes outside the node: the fabric routes the
// whole pod range to the node (it is an alias range of nic0), and the
// fabric's anti-spoofing accepts pod sources because they are inside it.
//
// The plugin is the aliasnet binary itself: it acts as the plugin when
// CNI_COMMAND is set or when it is invoked as "aliasnet-cni"; install it by
// copying or linking it into the CNI bin dir under the name of the
// network config's "type" ("aliasnet"); package early runs it before the
// rest of that binary is initialised. Everything this package imports is
// initialised at every pod's ADD, so it keeps its imports small (no
// net/http: see httpGet). State is kept per node in dataDir (see Store).
package cni

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/types"
)

// Defaults.
const (
	DefaultDataDir  = "/var/lib/aliasnet-cni"
	DefaultMetadata = "http://169.254.169.254"
	// GatewayIP is the link-local next hop every pod routes through; the
	// node answers for it (a permanent neighbour entry in the pod, proxy
	// ARP on the host veth).
	GatewayIP = "169.254.1.1"
)

// NetConf is the plugin's network configuration:
//
//	{"cniVersion":"1.0.0","name":"pods","type":"aliasnet",
//	 "range":"172.16.0.0/24","dataDir":"/var/lib/aliasnet-cni"}
//
// Without "range" the plugin asks the metadata server for the node's pod
// range: the instance attribute aliasnet-pod-range that aliasnet's metadata
// server sets on cluster nodes, else nic0's alias IP ranges
// (GET {metadata}/computeMetadata/v1/instance/network-interfaces/0/ip-aliases/),
// of which it uses the largest (or the one named by "rangeIndex"). The
// answer is cached in the data dir.
type NetConf struct {
	types.PluginConf
	Range      string `json:"range,omitempty"`
	DataDir    string `json:"dataDir,omitempty"`
	Metadata   string `json:"metadata,omitempty"`
	RangeIndex *int   `json:"rangeIndex,omitempty"`
	MTU        int    `json:"mtu,omitempty"`
}

// parseConf parses and defaults a network configuration.
func parseConf(b []byte) (*NetConf, error) {
	c := &NetConf{}
	if err := json.Unmarshal(b, c); err != nil {
		return nil, fmt.Errorf("aliasnet: parse network config: %w", err)
	}
	if c.Name == "" {
		return nil, fmt.Errorf("aliasnet: network config has no name")
	}
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	if c.Metadata == "" {
		c.Metadata = DefaultMetadata
	}
	return c, nil
}

// podRange returns the node's pod range: the config's, the cached
// metadata answer, or a fresh metadata answer.
func (c *NetConf) podRange() (netip.Prefix, error) {
	if c.Range != "" {
		p, err := netip.ParsePrefix(strings.TrimSpace(c.Range))
		if err != nil || !p.Addr().Is4() || p.Masked() != p {
			return netip.Prefix{}, fmt.Errorf("aliasnet: \"range\" %q is not an aligned IPv4 CIDR", c.Range)
		}
		return p, nil
	}
	cache := filepath.Join(c.DataDir, c.Name+".range")
	if b, err := os.ReadFile(cache); err == nil {
		if p, err := netip.ParsePrefix(strings.TrimSpace(string(b))); err == nil {
			return p, nil
		}
	}
	p, err := c.fromMetadata()
	if err != nil {
		return netip.Prefix{}, err
	}
	if err := os.MkdirAll(c.DataDir, 0o700); err == nil {
		tmp := cache + ".tmp"
		if os.WriteFile(tmp, []byte(p.String()+"\n"), 0o600) == nil {
			_ = os.Rename(tmp, cache)
		}
	}
	return p, nil
}

// PodRangeAttribute is the instance attribute in which aliasnet's metadata
// server names a cluster node's pod range.
const PodRangeAttribute = "aliasnet-pod-range"

// fromMetadata reads the node's pod range from the metadata server.
func (c *NetConf) fromMetadata() (netip.Prefix, error) {
	base := strings.TrimSuffix(strings.TrimRight(c.Metadata, "/"), "/computeMetadata/v1") + "/computeMetadata/v1/instance/"
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	get := func(path string) (int, []byte, error) {
		code, b, err := httpGet(ctx, base+path, map[string]string{"Metadata-Flavor": "Google"})
		if err != nil {
			return 0, nil, fmt.Errorf("aliasnet: no \"range\" in the network config and the metadata server did not answer: %w", err)
		}
		return code, b, nil
	}
	if c.RangeIndex == nil {
		code, b, err := get("attributes/" + PodRangeAttribute)
		if err != nil {
			return netip.Prefix{}, err
		}
		if code == 200 {
			p, err := netip.ParsePrefix(strings.TrimSpace(string(b)))
			if err != nil || !p.Addr().Is4() || p.Bits() > 30 {
				return netip.Prefix{}, fmt.Errorf("aliasnet: metadata %sattributes/%s = %q: not an IPv4 pod range", base, PodRangeAttribute, strings.TrimSpace(string(b)))
			}
			return p.Masked(), nil
		}
		if code != 404 {
			return netip.Prefix{}, fmt.Errorf("aliasnet: metadata %sattributes/%s: HTTP %d: %s", base, PodRangeAttribute, code, strings.TrimSpace(string(b)))
		}
	}
	u := base + "network-interfaces/0/ip-aliases/"
	code, b, err := get("network-interfaces/0/ip-aliases/")
	if err != nil {
		return netip.Prefix{}, err
	}
	if code != 200 {
		return netip.Prefix{}, fmt.Errorf("aliasnet: metadata %s: HTTP %d: %s", u, code, strings.TrimSpace(string(b)))
	}
	var ranges []netip.Prefix
	for _, l := range strings.Fields(string(b)) {
		if p, err := netip.ParsePrefix(l); err == nil && p.Addr().Is4() {
			ranges = append(ranges, p.Masked())
		} else if a, err := netip.ParseAddr(l); err == nil && a.Is4() {
			ranges = append(ranges, netip.PrefixFrom(a, 32))
		}
	}
	if c.RangeIndex != nil {
		if *c.RangeIndex < 0 || *c.RangeIndex >= len(ranges) {
			return netip.Prefix{}, fmt.Errorf("aliasnet: rangeIndex %d: nic0 has %d alias ranges", *c.RangeIndex, len(ranges))
		}
		return ranges[*c.RangeIndex], nil
	}
	var best netip.Prefix
	for _, p := range ranges {
		if !best.IsValid() || p.Bits() < best.Bits() {
			best = p
		}
	}
	if !best.IsValid() || best.Bits() > 30 {
		return netip.Prefix{}, fmt.Errorf("aliasnet: nic0 has no alias IP range to take pod addresses from (metadata: %q); is this node in a cluster?", strings.TrimSpace(string(b)))
	}
	return best, nil
}
