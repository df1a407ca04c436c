package ecs

import (
	"fmt"
	"net/http"

	vpcsdk "github.com/aliyun/alibaba-cloud-sdk-go/services/vpc"

	"github.com/aliasnet/aliasnet/internal/model"
)

// eipByID finds an EIP of the request's region.
func (q *req) eipByID(st *model.State, id string) (*model.EIP, *Error) {
	e := st.EIP(q.project, id)
	if e == nil || (e.Region != "" && e.Region != q.region) {
		return nil, errNotFound("InvalidAllocationId.NotFound", "EIP", id)
	}
	return e, nil
}

func (a *API) allocateEipAddress(q *req) {
	ip, ok := q.addr("IpAddress")
	if !ok {
		return
	}
	name, desc := q.str("Name"), q.str("Description")
	q.mutate("", func(tx *model.Txn) (any, error) {
		e, err := tx.AllocateEIP(model.EIP{Project: q.project, ID: newID(tx, "eip"), Name: name, Description: desc,
			Region: q.region, Address: ip})
		if err != nil {
			return nil, err
		}
		return &vpcsdk.AllocateEipAddressResponse{AllocationId: e.ID, EipAddress: e.Address.String()}, nil
	})
}

func (q *req) renderEIP(st *model.State, e *model.EIP) vpcsdk.EipAddress {
	out := vpcsdk.EipAddress{
		AllocationId: e.ID, IpAddress: e.Address.String(), Status: e.Status(), RegionId: e.Region, Name: e.Name,
		Description: e.Description, AllocationTime: aliTime(e.Created, vpcTime), Bandwidth: "5", EipBandwidth: "5",
		InternetChargeType: "PayByTraffic", ChargeType: "PostPaid", ISP: "BGP", Netmode: "public", BusinessStatus: "Normal",
		InstanceId: e.InstanceID, InstanceType: e.InstanceType, Mode: e.Mode, HDMonitorStatus: "OFF",
	}
	if e.PrivateIP.IsValid() {
		out.PrivateIpAddress = e.PrivateIP.String()
	}
	if ifc := st.Interface(e.Project, e.Interface); ifc != nil {
		out.VpcId = ifc.Network
		out.InstanceRegionId, _ = model.ZoneRegion(ifc.Zone)
	}
	return out
}

func (a *API) describeEipAddresses(q *req) {
	ids := map[string]bool{}
	for _, id := range splitIDs(q.str("AllocationId")) {
		ids[id] = true
	}
	addrs := map[string]bool{}
	for _, ad := range splitIDs(q.str("EipAddress")) {
		addrs[ad] = true
	}
	f := struct{ status, itype, inst string }{q.str("Status"), q.str("AssociatedInstanceType"), q.str("AssociatedInstanceId")}
	q.read(func(st *model.State) (any, error) {
		var all []vpcsdk.EipAddress
		for _, e := range st.EIPs(q.project) {
			if e.Region != "" && e.Region != q.region {
				continue
			}
			if (len(ids) > 0 && !ids[e.ID]) || (len(addrs) > 0 && !addrs[e.Address.String()]) || (f.status != "" && e.Status() != f.status) ||
				(f.itype != "" && e.InstanceType != f.itype) || (f.inst != "" && e.InstanceID != f.inst) {
				continue
			}
			all = append(all, q.renderEIP(st, e))
		}
		lo, hi, num, size, ok := q.page(len(all), 10, 100)
		if !ok {
			return nil, errHandled
		}
		return &vpcsdk.DescribeEipAddressesResponse{PageNumber: num, PageSize: size, TotalCount: len(all),
			EipAddresses: vpcsdk.EipAddresses{EipAddress: nz(all[lo:hi])}}, nil
	})
}

func (a *API) associateEipAddress(q *req) {
	id, ok := q.required("AllocationId")
	if !ok {
		return
	}
	inst, ok := q.required("InstanceId")
	if !ok {
		return
	}
	kind := q.str("InstanceType")
	switch kind {
	case "", model.EIPToInstance, model.EIPToENI:
	default:
		q.fail(&Error{Status: http.StatusBadRequest, Code: "InvalidParameter.InstanceType",
			Message: fmt.Sprintf("InstanceType %q is not supported here: use EcsInstance or NetworkInterface.", kind)})
		return
	}
	priv, ok := q.addr("PrivateIpAddress")
	if !ok {
		return
	}
	mode := q.str("Mode")
	q.mutate(model.EIPKey(q.project, id), func(tx *model.Txn) (any, error) {
		if _, err := q.eipByID(tx.State(), id); err != nil {
			return nil, err
		}
		switch kind {
		case model.EIPToENI:
			if _, err := q.eniByID(tx.State(), inst); err != nil {
				return nil, err
			}
		default:
			if _, err := q.instanceByID(tx.State(), inst); err != nil {
				return nil, err
			}
		}
		_, err := tx.AssociateEIP(model.AssociateEIPReq{Project: q.project, ID: id, InstanceType: kind, InstanceID: inst, PrivateIP: priv, Mode: mode})
		return nil, err
	})
}

func (a *API) unassociateEipAddress(q *req) {
	id, ok := q.required("AllocationId")
	if !ok {
		return
	}
	inst := q.str("InstanceId")
	q.mutate(model.EIPKey(q.project, id), func(tx *model.Txn) (any, error) {
		if _, err := q.eipByID(tx.State(), id); err != nil {
			return nil, err
		}
		_, err := tx.UnassociateEIP(q.project, id, inst)
		return nil, err
	})
}

func (a *API) releaseEipAddress(q *req) {
	id, ok := q.required("AllocationId")
	if !ok {
		return
	}
	q.mutate(model.EIPKey(q.project, id), func(tx *model.Txn) (any, error) {
		if _, err := q.eipByID(tx.State(), id); err != nil {
			return nil, err
		}
		return nil, tx.ReleaseEIP(q.project, id)
	})
}
