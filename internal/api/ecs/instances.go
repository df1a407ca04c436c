package ecs

import (
	"net/netip"
	"slices"
	"strings"

	ecssdk "github.com/aliyun/alibaba-cloud-sdk-go/services/ecs"

	"github.com/aliasnet/aliasnet/internal/model"
)

// Instance statuses: the model's GCE-style names and Alibaba's.
var statusNames = map[string]string{
	model.InstanceRunning:      "Running",
	model.InstanceStopped:      "Stopped",
	model.InstanceStopping:     "Stopping",
	model.InstanceProvisioning: "Pending",
}

func aliStatus(s string) string {
	if n, ok := statusNames[s]; ok {
		return n
	}
	return s
}

// instanceByID finds an instance of the request's region.
func (q *req) instanceByID(st *model.State, id string) (*model.Instance, *Error) {
	in := st.InstanceNamed(q.project, id)
	if in == nil {
		return nil, errNotFound("InvalidInstanceId.NotFound", "instance", id)
	}
	if r, _ := model.ZoneRegion(in.Zone); r != q.region {
		return nil, errNotFound("InvalidInstanceId.NotFound", "instance", id)
	}
	return in, nil
}

// securityGroups collects SecurityGroupId and SecurityGroupIds.N.
func (q *req) securityGroups() ([]string, bool) {
	sgs, ok := q.list("SecurityGroupIds")
	if !ok {
		return nil, false
	}
	if one := q.str("SecurityGroupId"); one != "" && !slices.Contains(sgs, one) {
		sgs = append([]string{one}, sgs...)
	}
	return sgs, true
}

type runArgs struct {
	zone, vswitch, itype, name, desc, host, image string
	ip                                            netip.Addr
	sgs                                           []string
	amount                                        int
}

func (q *req) runArgs(maxAmount int) (runArgs, bool) {
	var a runArgs
	var ok bool
	if a.vswitch, ok = q.required("VSwitchId"); !ok {
		return a, false
	}
	if a.itype, ok = q.required("InstanceType"); !ok {
		return a, false
	}
	if a.zone, ok = q.zone("ZoneId", false); !ok {
		return a, false
	}
	if a.ip, ok = q.addr("PrivateIpAddress"); !ok {
		return a, false
	}
	if a.sgs, ok = q.securityGroups(); !ok {
		return a, false
	}
	if a.amount, ok = q.integer("Amount", 1, 1, maxAmount); !ok {
		return a, false
	}
	if a.amount > 1 && a.ip.IsValid() {
		q.fail(errInvalidParameter("PrivateIpAddress", "a private IP address can only be given with Amount=1."))
		return a, false
	}
	a.name, a.desc, a.host, a.image = q.str("InstanceName"), q.str("Description"), q.str("HostName"), q.str("ImageId")
	return a, true
}

// run creates instances with their primary ENIs in one transaction.
func (q *req) run(tx *model.Txn, a runArgs, status string) ([]string, error) {
	sn, err := q.vswitchByID(tx.State(), a.vswitch)
	if err != nil {
		return nil, err
	}
	zone := a.zone
	if zone == "" {
		zone = sn.Zone
	}
	var ids []string
	for range a.amount {
		id := newID(tx, "i")
		host := a.host
		if host == "" {
			host = "iZ" + strings.TrimPrefix(id, "i-") + "Z"
		}
		in, _, err := tx.RunInstance(model.RunInstanceReq{
			Instance: model.Instance{Project: q.project, Zone: zone, Name: id, Description: a.desc, MachineType: a.itype,
				Status: status, Hostname: host, Extra: meta{Name: a.name, ImageID: a.image, HostName: host}.extra()},
			Subnet: q.region + "/" + a.vswitch, ENI: newID(tx, "eni"), IP: a.ip, SecurityGroups: a.sgs, Random: tx.Random(),
		})
		if err != nil {
			return nil, err
		}
		ids = append(ids, in.Name)
	}
	return ids, nil
}

func (a *API) runInstances(q *req) {
	args, ok := q.runArgs(100)
	if !ok {
		return
	}
	q.mutate("", func(tx *model.Txn) (any, error) {
		ids, err := q.run(tx, args, model.InstanceRunning)
		if err != nil {
			return nil, err
		}
		return &ecssdk.RunInstancesResponse{InstanceIdSets: ecssdk.InstanceIdSets{InstanceIdSet: ids}}, nil
	})
}

func (a *API) createInstance(q *req) {
	args, ok := q.runArgs(1)
	if !ok {
		return
	}
	q.mutate("", func(tx *model.Txn) (any, error) {
		ids, err := q.run(tx, args, model.InstanceStopped)
		if err != nil {
			return nil, err
		}
		return &ecssdk.CreateInstanceResponse{InstanceId: ids[0]}, nil
	})
}

// privateIPs renders an interface's IPv4 addresses, primary first, each
// with the EIP NATed to it.
func privateIPs(ifc *model.Interface, eips []*model.EIP) []ecssdk.PrivateIpSet {
	pub := func(a netip.Addr) ecssdk.AssociatedPublicIp {
		for _, e := range eips {
			if e.PrivateIP == a {
				return ecssdk.AssociatedPublicIp{PublicIpAddress: e.Address.String(), AllocationId: e.ID}
			}
		}
		return ecssdk.AssociatedPublicIp{}
	}
	out := []ecssdk.PrivateIpSet{{PrivateIpAddress: ifc.IP.String(), Primary: true, AssociatedPublicIp: pub(ifc.IP)}}
	for _, al := range ifc.Aliases {
		if al.Range.Addr().Is4() && al.Range.IsSingleIP() {
			out = append(out, ecssdk.PrivateIpSet{PrivateIpAddress: al.Range.Addr().String(), AssociatedPublicIp: pub(al.Range.Addr())})
		}
	}
	return out
}

func ipv6Set(ifc *model.Interface) []ecssdk.Ipv6Set {
	out := []ecssdk.Ipv6Set{}
	for _, al := range ifc.Aliases {
		if !al.Range.Addr().Is4() && al.Range.IsSingleIP() {
			out = append(out, ecssdk.Ipv6Set{Ipv6Address: al.Range.Addr().String()})
		}
	}
	return out
}

func ipv4Prefixes(ifc *model.Interface) []ecssdk.Ipv4PrefixSet {
	out := []ecssdk.Ipv4PrefixSet{}
	for _, al := range ifc.Aliases {
		if al.Range.Addr().Is4() && !al.Range.IsSingleIP() {
			out = append(out, ecssdk.Ipv4PrefixSet{Ipv4Prefix: al.Range.String()})
		}
	}
	return out
}

func ipv6Prefixes(ifc *model.Interface) []ecssdk.Ipv6PrefixSet {
	out := []ecssdk.Ipv6PrefixSet{}
	for _, al := range ifc.Aliases {
		if !al.Range.Addr().Is4() && !al.Range.IsSingleIP() {
			out = append(out, ecssdk.Ipv6PrefixSet{Ipv6Prefix: al.Range.String()})
		}
	}
	return out
}

func eniType(ifc *model.Interface) string {
	if ifc.Primary {
		return "Primary"
	}
	return "Secondary"
}

func (q *req) renderInstance(st *model.State, in *model.Instance) ecssdk.Instance {
	m := metaOf(in.Extra)
	region, _ := model.ZoneRegion(in.Zone)
	out := ecssdk.Instance{
		InstanceId: in.Name, InstanceName: m.Name, Description: in.Description, RegionId: region, ZoneId: in.Zone,
		InstanceType: in.MachineType, Status: aliStatus(in.Status), HostName: in.Hostname, Hostname: in.Hostname,
		CreationTime: aliTime(in.Created, ecsTime), StartTime: aliTime(in.Created, ecsTime), ImageId: m.ImageID,
		InstanceNetworkType: "vpc", InstanceChargeType: "PostPaid", InternetChargeType: "PayByTraffic",
		OSType: "linux", OsType: "linux", IoOptimized: true, StoppedMode: "Not-applicable", ExpiredTime: "2099-12-31T15:59Z",
	}
	if i := strings.LastIndexByte(in.MachineType, '.'); i > 0 {
		out.InstanceTypeFamily = in.MachineType[:i]
	}
	out.SecurityGroupIds.SecurityGroupId = []string{}
	out.InnerIpAddress.IpAddress = []string{}
	out.PublicIpAddress.IpAddress = []string{}
	out.VpcAttributes.PrivateIpAddress.IpAddress = []string{}
	out.NetworkInterfaces.NetworkInterface = []ecssdk.NetworkInterface{}
	for _, ifc := range st.NICs(in) {
		eips := st.EIPsOfInterface(q.project, ifc.ID)
		n := ecssdk.NetworkInterface{
			NetworkInterfaceId: ifc.ID, NetworkInterfaceName: ifc.Name, MacAddress: ifc.MAC, PrimaryIpAddress: ifc.IP.String(),
			Type: eniType(ifc), VSwitchId: subnetName(ifc), Description: ifc.Description,
		}
		n.PrivateIpSets.PrivateIpSet = privateIPs(ifc, eips)
		n.Ipv6Sets.Ipv6Set = ipv6Set(ifc)
		n.Ipv4PrefixSets.Ipv4PrefixSet = ipv4Prefixes(ifc)
		n.Ipv6PrefixSets.Ipv6PrefixSet = ipv6Prefixes(ifc)
		n.SecurityGroupIds.SecurityGroupId = nz(ifc.SecurityGroups)
		out.NetworkInterfaces.NetworkInterface = append(out.NetworkInterfaces.NetworkInterface, n)
		if ifc.Primary {
			out.VpcAttributes = ecssdk.VpcAttributes{VpcId: ifc.Network, VSwitchId: subnetName(ifc)}
			out.VpcAttributes.PrivateIpAddress.IpAddress = []string{ifc.IP.String()}
			out.SecurityGroupIds.SecurityGroupId = nz(ifc.SecurityGroups)
			for _, e := range eips {
				if e.PrivateIP == ifc.IP {
					out.EipAddress = ecssdk.EipAddressInDescribeInstances{IpAddress: e.Address.String(), AllocationId: e.ID,
						InternetChargeType: "PayByTraffic", Bandwidth: 5, IsSupportUnassociate: true}
				}
			}
		}
	}
	return out
}

func subnetName(ifc *model.Interface) string {
	_, n, _ := strings.Cut(ifc.Subnet, "/")
	return n
}

func (a *API) describeInstances(q *req) {
	ids := map[string]bool{}
	for _, id := range splitIDs(q.str("InstanceIds")) {
		ids[id] = true
	}
	f := struct{ vpc, vsw, zone, status, name, itype string }{q.str("VpcId"), q.str("VSwitchId"), q.str("ZoneId"),
		q.str("Status"), q.str("InstanceName"), q.str("InstanceType")}
	tokenMode := q.str("NextToken") != "" || q.str("MaxResults") != ""
	maxResults, ok := q.integer("MaxResults", 10, 1, 100)
	if !ok {
		return
	}
	q.read(func(st *model.State) (any, error) {
		var all []ecssdk.Instance
		var keys []string
		for _, in := range st.Instances(q.project, "") {
			if r, _ := model.ZoneRegion(in.Zone); r != q.region {
				continue
			}
			if len(ids) > 0 && !ids[in.Name] {
				continue
			}
			out := q.renderInstance(st, in)
			if (f.vpc != "" && out.VpcAttributes.VpcId != f.vpc) || (f.vsw != "" && out.VpcAttributes.VSwitchId != f.vsw) ||
				(f.zone != "" && in.Zone != f.zone) || (f.status != "" && out.Status != f.status) ||
				(f.name != "" && out.InstanceName != f.name) || (f.itype != "" && in.MachineType != f.itype) {
				continue
			}
			all = append(all, out)
			keys = append(keys, in.Name)
		}
		slices.SortFunc(all, func(a, b ecssdk.Instance) int { return strings.Compare(a.InstanceId, b.InstanceId) })
		slices.Sort(keys)
		resp := &ecssdk.DescribeInstancesResponse{TotalCount: len(all)}
		if tokenMode {
			lo, hi, next := tokenPage(keys, q.str("NextToken"), maxResults)
			resp.NextToken, resp.PageSize = next, maxResults
			resp.Instances.Instance = nz(all[lo:hi])
			return resp, nil
		}
		lo, hi, num, size, ok := q.page(len(all), 10, 100)
		if !ok {
			return nil, errHandled
		}
		resp.PageNumber, resp.PageSize = num, size
		resp.Instances.Instance = nz(all[lo:hi])
		return resp, nil
	})
}

func (q *req) instanceOp(f func(tx *model.Txn, in *model.Instance) error) {
	id, ok := q.required("InstanceId")
	if !ok {
		return
	}
	q.mutate("", func(tx *model.Txn) (any, error) {
		in, err := q.instanceByID(tx.State(), id)
		if err != nil {
			return nil, err
		}
		return nil, f(tx, in)
	})
}

func (a *API) startInstance(q *req) {
	q.instanceOp(func(tx *model.Txn, in *model.Instance) error {
		_, err := tx.SetECSStatus(q.project, in.Name, model.InstanceRunning)
		return err
	})
}

func (a *API) stopInstance(q *req) {
	q.instanceOp(func(tx *model.Txn, in *model.Instance) error {
		_, err := tx.SetECSStatus(q.project, in.Name, model.InstanceStopped)
		return err
	})
}

func (a *API) deleteInstance(q *req) {
	force, ok := q.boolean("Force")
	if !ok {
		return
	}
	q.instanceOp(func(tx *model.Txn, in *model.Instance) error {
		return tx.DeleteECSInstance(q.project, in.Name, force)
	})
}
