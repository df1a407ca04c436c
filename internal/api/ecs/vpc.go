package ecs

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	vpcsdk "github.com/aliyun/alibaba-cloud-sdk-go/services/vpc"

	"github.com/aliasnet/aliasnet/internal/model"
)

// meta is what the dialect keeps in a resource's Extra, under "alibaba":
// names and attributes the model does not interpret.
type meta struct {
	RegionID     string `json:"regionId,omitempty"`
	Name         string `json:"name,omitempty"`
	IPv6         string `json:"ipv6CidrBlock,omitempty"`
	VRouterID    string `json:"vRouterId,omitempty"`
	RouteTableID string `json:"routeTableId,omitempty"`
	ImageID      string `json:"imageId,omitempty"`
	HostName     string `json:"hostName,omitempty"`
}

func metaOf(extra json.RawMessage) meta {
	var w struct {
		Alibaba meta `json:"alibaba"`
	}
	_ = json.Unmarshal(extra, &w)
	return w.Alibaba
}

func (m meta) extra() json.RawMessage {
	b, _ := json.Marshal(map[string]meta{"alibaba": m})
	return b
}

// vpcIPv6 derives a VPC's IPv6 /56 from a unique local /48 (fd00::/8 plus
// 40 random bits) and 8 more random bits.
func vpcIPv6(id uint64) netip.Prefix {
	var b [16]byte
	b[0] = 0xfd
	for i := 1; i <= 6; i++ {
		b[i] = byte(id >> (8 * (i - 1)))
	}
	return netip.PrefixFrom(netip.AddrFrom16(b), 56).Masked()
}

// visibleVPC: a VPC made in this region, or a GCE network (global) with a
// subnet in this region.
func (q *req) visibleVPC(st *model.State, n *model.Network) bool {
	m := metaOf(n.Extra)
	if m.RegionID != "" {
		return m.RegionID == q.region
	}
	for _, sn := range st.SubnetsOfNetwork(q.project, n.Name) {
		if sn.Region == q.region {
			return true
		}
	}
	return false
}

// vpcByID finds a VPC visible in the request's region.
func (q *req) vpcByID(st *model.State, id string) (*model.Network, *Error) {
	n := st.Network(q.project, id)
	if n == nil || !q.visibleVPC(st, n) {
		return nil, errNotFound("InvalidVpcId.NotFound", "VPC", id)
	}
	return n, nil
}

func (a *API) createVpc(q *req) {
	block := netip.MustParsePrefix("172.16.0.0/12") // Alibaba's default
	if q.str("CidrBlock") != "" {
		var ok bool
		if block, ok = q.cidr("CidrBlock"); !ok {
			return
		}
	}
	enable6, ok := q.boolean("EnableIpv6")
	if !ok {
		return
	}
	var v6 netip.Prefix
	if q.str("Ipv6CidrBlock") != "" {
		if v6, ok = q.cidr("Ipv6CidrBlock"); !ok {
			return
		}
		if v6.Addr().Is4() || v6.Bits() != 56 {
			q.fail(&Error{Status: http.StatusBadRequest, Code: "InvalidIpv6CidrBlock.Malformed", Message: fmt.Sprintf("The VPC IPv6 CIDR block must be an IPv6 /56, got %s.", v6)})
			return
		}
		enable6 = true
	}
	name, desc := q.str("VpcName"), q.str("Description")
	q.mutate("", func(tx *model.Txn) (any, error) {
		id := newID(tx, "vpc")
		m := meta{RegionID: q.region, Name: name, VRouterID: newID(tx, "vrt"), RouteTableID: newID(tx, "vtb")}
		if enable6 {
			if !v6.IsValid() {
				v6 = vpcIPv6(tx.NewID())
			}
			m.IPv6 = v6.String()
		}
		if _, err := tx.CreateVPC(model.Network{Project: q.project, Name: id, Description: desc,
			CIDRBlocks: []netip.Prefix{block}, Extra: m.extra()}); err != nil {
			return nil, err
		}
		return &vpcsdk.CreateVpcResponse{VpcId: id, VRouterId: m.VRouterID, RouteTableId: m.RouteTableID}, nil
	})
}

func (q *req) renderVpc(st *model.State, n *model.Network) vpcsdk.Vpc {
	m := metaOf(n.Extra)
	out := vpcsdk.Vpc{
		VpcId: n.Name, RegionId: q.region, Status: "Available", VpcName: m.Name, Description: n.Description,
		CreationTime: aliTime(n.Created, vpcTime), VRouterId: m.VRouterID, Ipv6CidrBlock: m.IPv6, EnabledIpv6: m.IPv6 != "",
		DhcpOptionsSetStatus: "Available", DnsHostnameStatus: "DISABLED", CenStatus: "Detached",
	}
	if len(n.CIDRBlocks) > 0 {
		out.CidrBlock = n.CIDRBlocks[0].String()
	}
	out.SecondaryCidrBlocks.SecondaryCidrBlock = []string{}
	for _, b := range n.CIDRBlocks[min(1, len(n.CIDRBlocks)):] {
		out.SecondaryCidrBlocks.SecondaryCidrBlock = append(out.SecondaryCidrBlocks.SecondaryCidrBlock, b.String())
	}
	out.VSwitchIds.VSwitchId = []string{}
	for _, sn := range st.SubnetsOfNetwork(q.project, n.Name) {
		if sn.Region == q.region {
			out.VSwitchIds.VSwitchId = append(out.VSwitchIds.VSwitchId, sn.Name)
		}
	}
	out.UserCidrs.UserCidr = []string{}
	if m.RouteTableID != "" {
		out.RouterTableIds.RouterTableIds = []string{m.RouteTableID}
	}
	if m.IPv6 != "" {
		out.Ipv6CidrBlocks.Ipv6CidrBlock = []vpcsdk.Ipv6CidrBlock{{Ipv6CidrBlock: m.IPv6, Ipv6Isp: "BGP"}}
	}
	return out
}

func (a *API) describeVpcs(q *req) {
	ids := map[string]bool{}
	for _, id := range splitIDs(q.str("VpcId")) {
		ids[id] = true
	}
	name := q.str("VpcName")
	q.read(func(st *model.State) (any, error) {
		var all []vpcsdk.Vpc
		for _, n := range st.Networks(q.project) {
			if !q.visibleVPC(st, n) || (len(ids) > 0 && !ids[n.Name]) || (name != "" && metaOf(n.Extra).Name != name) {
				continue
			}
			all = append(all, q.renderVpc(st, n))
		}
		lo, hi, num, size, ok := q.page(len(all), 10, 50)
		if !ok {
			return nil, errHandled
		}
		return &vpcsdk.DescribeVpcsResponse{PageNumber: num, PageSize: size, TotalCount: len(all),
			Vpcs: vpcsdk.Vpcs{Vpc: nz(all[lo:hi])}}, nil
	})
}

func (a *API) deleteVpc(q *req) {
	id, ok := q.required("VpcId")
	if !ok {
		return
	}
	q.mutate(model.NetworkKey(q.project, id), func(tx *model.Txn) (any, error) {
		if _, err := q.vpcByID(tx.State(), id); err != nil {
			return nil, err
		}
		if subs := tx.State().SubnetsOfNetwork(q.project, id); len(subs) > 0 {
			return nil, &Error{Status: http.StatusBadRequest, Code: "DependencyViolation.VSwitch",
				Message: fmt.Sprintf("VPC %s still has vSwitch %s; delete its vSwitches first.", id, subs[0].Name)}
		}
		return nil, tx.DeleteNetwork(q.project, id)
	})
}

func (q *req) vpcBlockArgs() (string, netip.Prefix, bool) {
	id, ok := q.required("VpcId")
	if !ok {
		return "", netip.Prefix{}, false
	}
	if q.str("IPv6CidrBlock") != "" || strings.EqualFold(q.str("IpVersion"), "IPV6") {
		q.fail(&Error{Status: http.StatusBadRequest, Code: "UnsupportedFeature.Ipv6CidrBlock",
			Message: "aliasnet supports secondary IPv4 CIDR blocks only; a VPC's IPv6 block is set when it is created (EnableIpv6)."})
		return "", netip.Prefix{}, false
	}
	if _, ok := q.required("SecondaryCidrBlock"); !ok {
		return "", netip.Prefix{}, false
	}
	block, ok := q.cidr("SecondaryCidrBlock")
	return id, block, ok
}

func (a *API) associateVpcCidrBlock(q *req) {
	id, block, ok := q.vpcBlockArgs()
	if !ok {
		return
	}
	q.mutate(model.NetworkKey(q.project, id), func(tx *model.Txn) (any, error) {
		if _, err := q.vpcByID(tx.State(), id); err != nil {
			return nil, err
		}
		_, err := tx.AddVPCBlock(q.project, id, block)
		return nil, err
	})
}

func (a *API) unassociateVpcCidrBlock(q *req) {
	id, block, ok := q.vpcBlockArgs()
	if !ok {
		return
	}
	q.mutate(model.NetworkKey(q.project, id), func(tx *model.Txn) (any, error) {
		if _, err := q.vpcByID(tx.State(), id); err != nil {
			return nil, err
		}
		_, err := tx.RemoveVPCBlock(q.project, id, block)
		return nil, err
	})
}

func (a *API) createVSwitch(q *req) {
	vpcID, ok := q.required("VpcId")
	if !ok {
		return
	}
	zone, ok := q.zone("ZoneId", true)
	if !ok {
		return
	}
	if _, ok := q.required("CidrBlock"); !ok {
		return
	}
	block, ok := q.cidr("CidrBlock")
	if !ok {
		return
	}
	v6 := q.str("Ipv6CidrBlock")
	name, desc := q.str("VSwitchName"), q.str("Description")
	q.mutate("", func(tx *model.Txn) (any, error) {
		n, verr := q.vpcByID(tx.State(), vpcID)
		if verr != nil {
			return nil, verr
		}
		var r6 netip.Prefix
		if v6 != "" {
			var err error
			if r6, err = vswitchIPv6(metaOf(n.Extra).IPv6, v6); err != nil {
				return nil, err
			}
		}
		id := newID(tx, "vsw")
		m := meta{Name: name, RouteTableID: metaOf(n.Extra).RouteTableID}
		if _, err := tx.CreateVSwitch(model.Subnet{Project: q.project, Region: q.region, Zone: zone, Name: id, Network: vpcID,
			Description: desc, Range: block, Range6: r6, Extra: m.extra()}); err != nil {
			return nil, err
		}
		return &vpcsdk.CreateVSwitchResponse{VSwitchId: id}, nil
	})
}

// vswitchIPv6 turns CreateVSwitch's Ipv6CidrBlock (0-255: the /64 of the
// VPC's /56; or an explicit /64 inside it) into the vSwitch's IPv6 range.
func vswitchIPv6(vpc6, v string) (netip.Prefix, error) {
	if vpc6 == "" {
		return netip.Prefix{}, &Error{Status: http.StatusBadRequest, Code: "OperationFailed.VpcNotEnableIpv6",
			Message: "The VPC has no IPv6 CIDR block (create it with EnableIpv6=true)."}
	}
	base := netip.MustParsePrefix(vpc6)
	if k, err := strconv.Atoi(v); err == nil {
		if k < 0 || k > 255 {
			return netip.Prefix{}, errInvalidParameter("Ipv6CidrBlock", fmt.Sprintf("%d is not between 0 and 255.", k))
		}
		b := base.Addr().As16()
		b[7] = byte(k)
		return netip.PrefixFrom(netip.AddrFrom16(b), 64), nil
	}
	p, perr := parseCIDR("Ipv6CidrBlock", v)
	if perr != nil {
		return netip.Prefix{}, perr
	}
	if p.Bits() != 64 || !base.Contains(p.Addr()) {
		return netip.Prefix{}, errInvalidParameter("Ipv6CidrBlock", fmt.Sprintf("%s is not a /64 of the VPC's IPv6 block %s.", p, base))
	}
	return p, nil
}

func (q *req) renderVSwitch(st *model.State, sn *model.Subnet) vpcsdk.VSwitch {
	m := metaOf(sn.Extra)
	free, _ := st.FreeBlocks(q.project, sn.Region, sn.Name, "", 32)
	out := vpcsdk.VSwitch{
		VSwitchId: sn.Name, VpcId: sn.Network, Status: "Available", CidrBlock: sn.Range.String(), ZoneId: sn.Zone,
		AvailableIpAddressCount: int64(free), Description: sn.Description, VSwitchName: m.Name,
		CreationTime: aliTime(sn.Created, vpcTime), EnabledIpv6: sn.Range6.IsValid(),
	}
	if sn.Range6.IsValid() {
		out.Ipv6CidrBlock = sn.Range6.String()
	}
	if m.RouteTableID != "" {
		out.RouteTable = vpcsdk.RouteTable{RouteTableId: m.RouteTableID, RouteTableType: "System"}
	}
	return out
}

// vswitchByID finds a vSwitch of the request's region.
func (q *req) vswitchByID(st *model.State, id string) (*model.Subnet, *Error) {
	sn := st.Subnet(q.project, q.region, id)
	if sn == nil {
		return nil, errNotFound("InvalidVSwitchId.NotFound", "vSwitch", id)
	}
	return sn, nil
}

func (a *API) describeVSwitches(q *req) {
	vpcID, zone, name := q.str("VpcId"), q.str("ZoneId"), q.str("VSwitchName")
	ids := map[string]bool{}
	for _, id := range splitIDs(q.str("VSwitchId")) {
		ids[id] = true
	}
	q.read(func(st *model.State) (any, error) {
		var all []vpcsdk.VSwitch
		for _, sn := range st.Subnets(q.project, q.region) {
			if (vpcID != "" && sn.Network != vpcID) || (zone != "" && sn.Zone != zone) || (len(ids) > 0 && !ids[sn.Name]) ||
				(name != "" && metaOf(sn.Extra).Name != name) {
				continue
			}
			all = append(all, q.renderVSwitch(st, sn))
		}
		lo, hi, num, size, ok := q.page(len(all), 10, 50)
		if !ok {
			return nil, errHandled
		}
		return &vpcsdk.DescribeVSwitchesResponse{PageNumber: num, PageSize: size, TotalCount: len(all),
			VSwitches: vpcsdk.VSwitches{VSwitch: nz(all[lo:hi])}}, nil
	})
}

func (a *API) deleteVSwitch(q *req) {
	id, ok := q.required("VSwitchId")
	if !ok {
		return
	}
	q.mutate(model.SubnetKey(q.project, q.region, id), func(tx *model.Txn) (any, error) {
		if _, err := q.vswitchByID(tx.State(), id); err != nil {
			return nil, err
		}
		return nil, tx.DeleteSubnet(q.project, q.region, id)
	})
}
