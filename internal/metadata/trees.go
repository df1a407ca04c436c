package metadata

import (
	"encoding/json"
	"hash/fnv"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/aliasnet/aliasnet/internal/model"
)

// view is one instance with what its metadata needs, read from one
// consistent state. Model resources are immutable, so a view can outlive
// the read lock.
type view struct {
	in   *model.Instance
	nics []nicView
	// node is the instance's Kubernetes node record (nil if it is not a
	// cluster node).
	node *model.ClusterNode
}

type nicView struct {
	ifc *model.Interface
	sn  *model.Subnet  // nil if the subnet vanished (never in a valid state)
	net *model.Network // nil likewise
}

func readView(st *model.State, r ref) *view {
	in := st.Instance(r.project, r.zone, r.name)
	if in == nil {
		return nil
	}
	v := &view{in: in}
	for _, ifc := range st.NICs(in) {
		region, sname, _ := strings.Cut(ifc.Subnet, "/")
		v.nics = append(v.nics, nicView{ifc: ifc, sn: st.Subnet(ifc.Project, region, sname), net: st.Network(ifc.Project, ifc.Network)})
	}
	if n := st.NodeOf(r.project, r.zone, r.name); n != nil && len(v.nics) > 0 && hasAlias(v.nics[0].ifc, n.PodRange) {
		v.node = n
	}
	return v
}

func hasAlias(ifc *model.Interface, p netip.Prefix) bool {
	for _, a := range ifc.Aliases {
		if a.Range == p {
			return true
		}
	}
	return false
}

// PodRangeAttribute is the instance attribute (instance/attributes/) that
// names a Kubernetes node's pod range: the alias IP range of nic0 the
// node forwards to its pods rather than answers for. Guest agents must
// not install a local route for it (aliasnet's agent does not); the CNI
// plugin takes pod addresses from it.
const PodRangeAttribute = "aliasnet-pod-range"

// instanceAttributes are the GCE instance attributes aliasnet serves: a
// cluster node gets GKE's cluster-name and cluster-location, and
// PodRangeAttribute.
func instanceAttributes(v *view) *node {
	d := newDir()
	d.verbatim = true
	if v.node != nil {
		d.set("cluster-name", str(v.node.Cluster)).
			set("cluster-location", str(v.node.Location)).
			set(PodRangeAttribute, str(v.node.PodRange.String()))
	}
	return d
}

// ProjectNumber is the numeric id aliasnet gives a project: the same value
// the Compute API returns as the project's "id" (FNV-64a of the name,
// shifted to fit a signed int64).
func ProjectNumber(project string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(project))
	return h.Sum64() >> 1
}

func mask4(bits int) string { return net.IP(net.CIDRMask(bits, 32)).String() }

// subnetMask is the dotted mask of the subnet's primary IPv4 range.
func (n nicView) subnetMask() string {
	if n.sn == nil || !n.sn.Range.Addr().Is4() {
		return ""
	}
	return mask4(n.sn.Range.Bits())
}

func (n nicView) gateway() string {
	if n.sn == nil {
		return ""
	}
	return n.sn.Gateway().String()
}

func (n nicView) mtu() uint64 {
	if n.net != nil && n.net.MTU > 0 {
		return uint64(n.net.MTU)
	}
	return 1460
}

func aliasStrings(as []model.Alias, keep func(netip.Prefix) bool) []string {
	out := []string{}
	for _, a := range as {
		if keep == nil || keep(a.Range) {
			out = append(out, a.Range.String())
		}
	}
	return out
}

// gceTree builds the /computeMetadata/v1/ tree of an instance.
func gceTree(v *view) *node {
	in := v.in
	pnum := strconv.FormatUint(ProjectNumber(in.Project), 10)
	inst := newDir().
		set("attributes", instanceAttributes(v)).
		set("hostname", str(in.Hostname)).
		set("id", num(in.ID)).
		set("name", str(in.Name)).
		set("zone", str("projects/"+pnum+"/zones/"+in.Zone))
	if in.MachineType != "" {
		inst.set("machine-type", str("projects/"+pnum+"/machineTypes/"+in.MachineType))
	}
	tags := in.Tags
	if tags == nil {
		tags = []string{}
	}
	inst.set("tags", jsonLeaf(tags))
	nics := array()
	for _, n := range v.nics {
		ifc := n.ifc
		d := newDir().
			set("ip", str(ifc.IP.String())).
			set("mac", str(ifc.MAC)).
			set("network", str("projects/"+pnum+"/networks/"+ifc.Network)).
			set("subnetmask", str(n.subnetMask())).
			set("gateway", str(n.gateway())).
			set("mtu", num(n.mtu())).
			set("ip-aliases", strList(aliasStrings(ifc.Aliases, nil))).
			set("forwarded-ips", strList(nil)).
			set("target-instance-ips", strList(nil)).
			set("dns-servers", strList([]string{"169.254.169.254"}))
		acs := array()
		if ifc.ExternalIP.IsValid() {
			acs.elems = append(acs.elems, newDir().
				set("external-ip", str(ifc.ExternalIP.String())).
				set("type", str("ONE_TO_ONE_NAT")))
		}
		d.set("access-configs", acs)
		nics.elems = append(nics.elems, d)
	}
	inst.set("network-interfaces", nics)
	pattrs := newDir()
	pattrs.verbatim = true
	proj := newDir().
		set("attributes", pattrs).
		set("numeric-project-id", num(ProjectNumber(in.Project))).
		set("project-id", str(in.Project))
	return newDir().set("instance", inst).set("project", proj)
}

// bracketList renders a list the way Alibaba's ipv6s item does:
// "[a,b]" without quotes.
func bracketList(items []string) string { return "[" + strings.Join(items, ",") + "]" }

func jsonStrings(items []string) string {
	if items == nil {
		items = []string{}
	}
	b, _ := json.Marshal(items)
	return string(b)
}

// alibabaTree builds the /latest/meta-data/ tree of an instance. Secondary
// private IPs are the interface's single-address aliases (/32, /128);
// larger IPv4 aliases are listed as ipv4-prefixes (Alibaba's /28
// prefixes), larger IPv6 ones as ipv6-prefixes.
func alibabaTree(v *view) *node {
	in := v.in
	root := newDir().
		set("instance-id", str(in.Name)).
		set("hostname", str(in.Hostname)).
		set("zone-id", str(in.Zone)).
		set("network-type", str("vpc"))
	if region, ok := model.ZoneRegion(in.Zone); ok {
		root.set("region-id", str(region))
	}
	if in.MachineType != "" {
		root.set("instance", newDir().set("instance-type", str(in.MachineType)))
	}
	macs := newDir()
	macs.fold = true
	for i, n := range v.nics {
		ifc := n.ifc
		ipv4s := []string{ifc.IP.String()}
		var ipv6s, pfx4, pfx6 []string
		for _, a := range ifc.Aliases {
			r := a.Range
			switch {
			case r.Addr().Is4() && r.Bits() == 32:
				ipv4s = append(ipv4s, r.Addr().String())
			case r.Addr().Is4():
				pfx4 = append(pfx4, r.String())
			case r.Bits() == 128:
				ipv6s = append(ipv6s, r.Addr().String())
			default:
				pfx6 = append(pfx6, r.String())
			}
		}
		d := newDir().
			set("network-interface-id", str(ifc.ID)).
			set("primary-ip-address", str(ifc.IP.String())).
			set("private-ipv4s", str(jsonStrings(ipv4s))).
			set("ipv6s", str(bracketList(ipv6s))).
			set("ipv4-prefixes", str(bracketList(pfx4))).
			set("ipv6-prefixes", str(bracketList(pfx6))).
			set("netmask", str(n.subnetMask())).
			set("gateway", str(n.gateway())).
			set("vpc-id", str(ifc.Network))
		if n.sn != nil {
			d.set("vswitch-id", str(n.sn.Name)).
				set("vswitch-cidr-block", str(n.sn.Range.String()))
			if n.sn.Range6.IsValid() {
				d.set("vswitch-ipv6-cidr-block", str(n.sn.Range6.String()))
			}
		}
		if n.net != nil && len(n.net.CIDRBlocks) > 0 {
			d.set("vpc-cidr-block", str(n.net.CIDRBlocks[0].String()))
		}
		macs.set(ifc.MAC, d)
		if i == 0 {
			root.set("mac", str(ifc.MAC)).
				set("private-ipv4", str(ifc.IP.String())).
				set("vpc-id", str(ifc.Network))
			if n.sn != nil {
				root.set("vswitch-id", str(n.sn.Name))
			}
			if ifc.ExternalIP.IsValid() {
				root.set("eipv4", str(ifc.ExternalIP.String()))
			}
		}
	}
	root.set("network", newDir().set("interfaces", newDir().set("macs", macs)))
	return root
}
