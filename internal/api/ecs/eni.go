package ecs

import (
	"net/netip"
	"slices"

	ecssdk "github.com/aliyun/alibaba-cloud-sdk-go/services/ecs"

	"github.com/aliasnet/aliasnet/internal/model"
)

// eniByID finds an interface of the request's region.
func (q *req) eniByID(st *model.State, id string) (*model.Interface, *Error) {
	ifc := st.Interface(q.project, id)
	if ifc == nil {
		return nil, errNotFound("InvalidEniId.NotFound", "network interface", id)
	}
	if r, _ := model.ZoneRegion(ifc.Zone); r != q.region {
		return nil, errNotFound("InvalidEniId.NotFound", "network interface", id)
	}
	return ifc, nil
}

func (q *req) renderENI(st *model.State, ifc *model.Interface) ecssdk.NetworkInterfaceSet {
	eips := st.EIPsOfInterface(q.project, ifc.ID)
	out := ecssdk.NetworkInterfaceSet{
		NetworkInterfaceId: ifc.ID, NetworkInterfaceName: ifc.Name, Description: ifc.Description, Status: ifc.ENIStatus(),
		Type: eniType(ifc), VpcId: ifc.Network, VSwitchId: subnetName(ifc), ZoneId: ifc.Zone, MacAddress: ifc.MAC,
		PrivateIpAddress: ifc.IP.String(), CreationTime: aliTime(ifc.Created, vpcTime), SourceDestCheck: false,
		NetworkInterfaceTrafficMode: "Standard", DeleteOnRelease: ifc.Primary,
	}
	out.SecurityGroupIds.SecurityGroupId = nz(ifc.SecurityGroups)
	out.PrivateIpSets.PrivateIpSet = privateIPs(ifc, eips)
	out.Ipv6Sets.Ipv6Set = ipv6Set(ifc)
	out.Ipv4PrefixSets.Ipv4PrefixSet = ipv4Prefixes(ifc)
	out.Ipv6PrefixSets.Ipv6PrefixSet = ipv6Prefixes(ifc)
	for _, e := range eips {
		if e.PrivateIP == ifc.IP {
			out.AssociatedPublicIp = ecssdk.AssociatedPublicIp{PublicIpAddress: e.Address.String(), AllocationId: e.ID}
		}
	}
	if in := st.InstanceOf(ifc); in != nil {
		out.InstanceId = in.Name
		out.Attachment = ecssdk.Attachment{InstanceId: in.Name, DeviceIndex: ifc.Device}
	}
	return out
}

// assignArgs reads the secondary IPv4 parameters shared by
// CreateNetworkInterface and AssignPrivateIpAddresses.
func (q *req) assignArgs() (model.AssignReq, bool) {
	var r model.AssignReq
	var ok bool
	if r.IPs, ok = q.addrs("PrivateIpAddress"); !ok {
		return r, false
	}
	if r.Count, ok = q.integer("SecondaryPrivateIpAddressCount", 0, 0, 1000); !ok {
		return r, false
	}
	if r.Prefixes, ok = q.cidrs("Ipv4Prefix"); !ok {
		return r, false
	}
	if r.PrefixCount, ok = q.integer("Ipv4PrefixCount", 0, 0, 1000); !ok {
		return r, false
	}
	return r, true
}

func (q *req) ipv6Args() (model.AssignReq, bool) {
	var r model.AssignReq
	var ok bool
	if r.IPs, ok = q.addrs("Ipv6Address"); !ok {
		return r, false
	}
	r.Count, ok = q.integer("Ipv6AddressCount", 0, 0, 1000)
	return r, ok
}

func (a *API) createNetworkInterface(q *req) {
	vsw, ok := q.required("VSwitchId")
	if !ok {
		return
	}
	sgs, ok := q.securityGroups()
	if !ok {
		return
	}
	if len(sgs) == 0 {
		q.fail(errMissing("SecurityGroupId"))
		return
	}
	ip, ok := q.addr("PrimaryIpAddress")
	if !ok {
		return
	}
	sec, ok := q.assignArgs()
	if !ok {
		return
	}
	v6, ok := q.ipv6Args()
	if !ok {
		return
	}
	name, desc := q.str("NetworkInterfaceName"), q.str("Description")
	q.mutate("", func(tx *model.Txn) (any, error) {
		if _, err := q.vswitchByID(tx.State(), vsw); err != nil {
			return nil, err
		}
		ifc, err := tx.CreateENI(model.CreateENIReq{Project: q.project, ID: newID(tx, "eni"), Name: name, Description: desc,
			Subnet: q.region + "/" + vsw, IP: ip, SecurityGroups: sgs, Secondary: sec, IPv6: v6, Random: tx.Random()})
		if err != nil {
			return nil, err
		}
		set := q.renderENI(tx.State(), ifc)
		out := &ecssdk.CreateNetworkInterfaceResponse{
			NetworkInterfaceId: set.NetworkInterfaceId, NetworkInterfaceName: set.NetworkInterfaceName, Description: set.Description,
			Status: set.Status, Type: set.Type, VpcId: set.VpcId, VSwitchId: set.VSwitchId, ZoneId: set.ZoneId,
			MacAddress: set.MacAddress, PrivateIpAddress: set.PrivateIpAddress,
		}
		out.SecurityGroupIds.SecurityGroupId = set.SecurityGroupIds.SecurityGroupId
		out.PrivateIpSets.PrivateIpSet = set.PrivateIpSets.PrivateIpSet
		out.Ipv6Sets.Ipv6Set = set.Ipv6Sets.Ipv6Set
		out.Ipv4PrefixSets.Ipv4PrefixSet = set.Ipv4PrefixSets.Ipv4PrefixSet
		out.Ipv6PrefixSets.Ipv6PrefixSet = set.Ipv6PrefixSets.Ipv6PrefixSet
		return out, nil
	})
}

func (a *API) describeNetworkInterfaces(q *req) {
	ids, ok := q.list("NetworkInterfaceId")
	if !ok {
		return
	}
	privs, ok := q.addrs("PrivateIpAddress")
	if !ok {
		return
	}
	f := struct{ vpc, vsw, inst, status, typ, name, primary string }{q.str("VpcId"), q.str("VSwitchId"), q.str("InstanceId"),
		q.str("Status"), q.str("Type"), q.str("NetworkInterfaceName"), q.str("PrimaryIpAddress")}
	tokenMode := q.str("NextToken") != "" || q.str("MaxResults") != ""
	maxResults, ok := q.integer("MaxResults", 10, 1, 500)
	if !ok {
		return
	}
	q.read(func(st *model.State) (any, error) {
		// Filter on the model, render only the page.
		var match []*model.Interface
		var keys []string
		for _, ifc := range st.Interfaces(q.project) {
			if r, _ := model.ZoneRegion(ifc.Zone); r != q.region {
				continue
			}
			if len(ids) > 0 && !slices.Contains(ids, ifc.ID) {
				continue
			}
			if len(privs) > 0 && !slices.ContainsFunc(privs, func(a netip.Addr) bool { return hasAddr(ifc, a) }) {
				continue
			}
			inst := ""
			if in := st.InstanceOf(ifc); in != nil {
				inst = in.Name
			}
			if (f.vpc != "" && ifc.Network != f.vpc) || (f.vsw != "" && subnetName(ifc) != f.vsw) || (f.inst != "" && inst != f.inst) ||
				(f.status != "" && ifc.ENIStatus() != f.status) || (f.typ != "" && eniType(ifc) != f.typ) ||
				(f.name != "" && ifc.Name != f.name) || (f.primary != "" && ifc.IP.String() != f.primary) {
				continue
			}
			match = append(match, ifc)
			keys = append(keys, ifc.ID)
		}
		resp := &ecssdk.DescribeNetworkInterfacesResponse{TotalCount: len(match)}
		var lo, hi int
		if tokenMode {
			lo, hi, resp.NextToken = tokenPage(keys, q.str("NextToken"), maxResults)
			resp.PageSize = maxResults
		} else {
			var ok bool
			if lo, hi, resp.PageNumber, resp.PageSize, ok = q.page(len(match), 10, 1000); !ok {
				return nil, errHandled
			}
		}
		resp.NetworkInterfaceSets.NetworkInterfaceSet = []ecssdk.NetworkInterfaceSet{}
		for _, ifc := range match[lo:hi] {
			resp.NetworkInterfaceSets.NetworkInterfaceSet = append(resp.NetworkInterfaceSets.NetworkInterfaceSet, q.renderENI(st, ifc))
		}
		return resp, nil
	})
}

func hasAddr(ifc *model.Interface, a netip.Addr) bool {
	if ifc.IP == a {
		return true
	}
	for _, al := range ifc.Aliases {
		if al.Range.Contains(a) {
			return true
		}
	}
	return false
}

// eniOp runs a mutation on one ENI named by NetworkInterfaceId.
func (q *req) eniOp(f func(tx *model.Txn, ifc *model.Interface) (any, error)) {
	id, ok := q.required("NetworkInterfaceId")
	if !ok {
		return
	}
	q.mutate(model.InterfaceKey(q.project, id), func(tx *model.Txn) (any, error) {
		ifc, err := q.eniByID(tx.State(), id)
		if err != nil {
			return nil, err
		}
		return f(tx, ifc)
	})
}

func (a *API) attachNetworkInterface(q *req) {
	inst, ok := q.required("InstanceId")
	if !ok {
		return
	}
	q.eniOp(func(tx *model.Txn, ifc *model.Interface) (any, error) {
		if _, err := q.instanceByID(tx.State(), inst); err != nil {
			return nil, err
		}
		_, err := tx.AttachENI(q.project, ifc.ID, inst)
		return nil, err
	})
}

func (a *API) detachNetworkInterface(q *req) {
	inst, ok := q.required("InstanceId")
	if !ok {
		return
	}
	q.eniOp(func(tx *model.Txn, ifc *model.Interface) (any, error) {
		if _, err := q.instanceByID(tx.State(), inst); err != nil {
			return nil, err
		}
		_, err := tx.DetachENI(q.project, ifc.ID, inst)
		return nil, err
	})
}

func (a *API) deleteNetworkInterface(q *req) {
	q.eniOp(func(tx *model.Txn, ifc *model.Interface) (any, error) {
		return nil, tx.DeleteENI(q.project, ifc.ID)
	})
}

func (a *API) assignPrivateIpAddresses(q *req) {
	r, ok := q.assignArgs()
	if !ok {
		return
	}
	q.eniOp(func(tx *model.Txn, ifc *model.Interface) (any, error) {
		r.Project, r.ENI, r.Random = q.project, ifc.ID, tx.Random()
		_, got, err := tx.AssignPrivateIPs(r)
		if err != nil {
			return nil, err
		}
		out := &ecssdk.AssignPrivateIpAddressesResponse{}
		set := &out.AssignedPrivateIpAddressesSet
		set.NetworkInterfaceId = ifc.ID
		set.PrivateIpSet.PrivateIpAddress = []string{}
		for _, a := range got.IPs {
			set.PrivateIpSet.PrivateIpAddress = append(set.PrivateIpSet.PrivateIpAddress, a.String())
		}
		set.Ipv4PrefixSet.Ipv4Prefixes = []string{}
		for _, p := range got.Prefixes {
			set.Ipv4PrefixSet.Ipv4Prefixes = append(set.Ipv4PrefixSet.Ipv4Prefixes, p.String())
		}
		return out, nil
	})
}

func (a *API) unassignPrivateIpAddresses(q *req) {
	ips, ok := q.addrs("PrivateIpAddress")
	if !ok {
		return
	}
	prefixes, ok := q.cidrs("Ipv4Prefix")
	if !ok {
		return
	}
	q.eniOp(func(tx *model.Txn, ifc *model.Interface) (any, error) {
		_, err := tx.UnassignPrivateIPs(q.project, ifc.ID, ips, prefixes)
		return nil, err
	})
}

func (a *API) assignIpv6Addresses(q *req) {
	r, ok := q.ipv6Args()
	if !ok {
		return
	}
	if q.str("Ipv6Prefix.1") != "" || q.str("Ipv6PrefixCount") != "" {
		q.fail(&Error{Status: 400, Code: "UnsupportedFeature.Ipv6Prefix", Message: "aliasnet does not assign IPv6 prefixes to ENIs."})
		return
	}
	q.eniOp(func(tx *model.Txn, ifc *model.Interface) (any, error) {
		r.Project, r.ENI, r.Random = q.project, ifc.ID, tx.Random()
		_, got, err := tx.AssignIPv6(r)
		if err != nil {
			return nil, err
		}
		out := &ecssdk.AssignIpv6AddressesResponse{NetworkInterfaceId: ifc.ID}
		out.Ipv6Sets.Ipv6Address = []string{}
		for _, a := range got.IPs {
			out.Ipv6Sets.Ipv6Address = append(out.Ipv6Sets.Ipv6Address, a.String())
		}
		return out, nil
	})
}

func (a *API) unassignIpv6Addresses(q *req) {
	ips, ok := q.addrs("Ipv6Address")
	if !ok {
		return
	}
	q.eniOp(func(tx *model.Txn, ifc *model.Interface) (any, error) {
		_, err := tx.UnassignIPv6(q.project, ifc.ID, ips)
		return nil, err
	})
}
