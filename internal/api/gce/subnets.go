package gce

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"sort"

	compute "google.golang.org/api/compute/v1"

	"github.com/aliasnet/aliasnet/internal/model"
)

func (q *req) renderSubnet(sn *model.Subnet) json.RawMessage {
	out := &compute.Subnetwork{
		Kind:              "compute#subnetwork",
		Id:                sn.ID,
		Name:              sn.Name,
		Description:       sn.Description,
		CreationTimestamp: sn.Created,
		Network:           q.link("global/networks/" + sn.Network),
		IpCidrRange:       sn.Range.String(),
		GatewayAddress:    sn.Gateway().String(),
		Region:            q.link("regions/" + sn.Region),
		SelfLink:          q.link("regions/" + sn.Region + "/subnetworks/" + sn.Name),
		Fingerprint:       sn.Fingerprint,
		Purpose:           "PRIVATE",
		StackType:         "IPV4_ONLY",
	}
	if sn.Range6.IsValid() {
		out.Ipv6CidrRange = sn.Range6.String()
		out.StackType = "IPV4_IPV6"
	}
	for _, r := range sn.Secondary {
		out.SecondaryIpRanges = append(out.SecondaryIpRanges, &compute.SubnetworkSecondaryRange{RangeName: r.Name, IpCidrRange: r.Range.String()})
	}
	return mergeExtra(out, sn.Extra)
}

var subnetKnown = []string{"name", "description", "network", "ipCidrRange", "region", "secondaryIpRanges", "kind", "id",
	"selfLink", "creationTimestamp", "gatewayAddress", "fingerprint"}

// secondaryRanges converts the wire list, naming fields by index.
func secondaryRanges(in []*compute.SubnetworkSecondaryRange) ([]model.SecondaryRange, error) {
	out := make([]model.SecondaryRange, 0, len(in))
	for i, r := range in {
		if r == nil {
			continue
		}
		f := fmt.Sprintf("secondaryIpRanges[%d].ipCidrRange", i)
		if r.IpCidrRange == "" {
			return nil, &model.Error{Code: model.Required, Field: f, Reason: "Required field 'resource." + f + "' not specified"}
		}
		p, err := model.ParseRange(f, r.IpCidrRange)
		if err != nil {
			return nil, err
		}
		out = append(out, model.SecondaryRange{Name: r.RangeName, Range: p})
	}
	return out, nil
}

func (a *API) insertSubnet(q *req) {
	var in compute.Subnetwork
	raw, ok := q.decode(&in)
	if !ok {
		return
	}
	region := q.r.PathValue("region")
	if _, ok := model.RegionByName(region); !ok {
		q.fail(&model.Error{Code: model.Invalid, Field: "region", Value: region, Reason: fmt.Sprintf("Unknown region '%s'.", region)})
		return
	}
	if in.IpCidrRange == "" {
		q.fail(&model.Error{Code: model.Required, Field: "ipCidrRange", Reason: "Required field 'resource.ipCidrRange' not specified"})
		return
	}
	rng, err := model.ParseRange("ipCidrRange", in.IpCidrRange)
	if err != nil {
		q.fail(err)
		return
	}
	sec, err := secondaryRanges(in.SecondaryIpRanges)
	if err != nil {
		q.fail(err)
		return
	}
	sn := model.Subnet{Project: q.project, Region: region, Name: in.Name, Network: lastSegment(in.Network),
		Description: in.Description, Range: rng, Secondary: sec, Reserve: model.ReserveGCE,
		Extra: extraOf(raw, subnetKnown...)}
	q.do("regions/"+region, "insert", model.SubnetKey(q.project, region, in.Name), in, func(tx *model.Txn) (uint64, any, error) {
		s, err := tx.CreateSubnet(sn)
		if err != nil {
			return 0, nil, err
		}
		return s.ID, nil, nil
	})
}

func (a *API) getSubnet(q *req) {
	var out json.RawMessage
	a.svc.Read(func(st *model.State) {
		if sn := st.Subnet(q.project, q.r.PathValue("region"), q.r.PathValue("subnet")); sn != nil {
			out = q.renderSubnet(sn)
		}
	})
	if out == nil {
		q.notFound("regions/" + q.r.PathValue("region") + "/subnetworks/" + q.r.PathValue("subnet"))
		return
	}
	q.reply(out)
}

func (a *API) listSubnets(q *req) {
	var items []json.RawMessage
	region := q.r.PathValue("region")
	a.svc.Read(func(st *model.State) {
		for _, sn := range st.Subnets(q.project, region) {
			items = append(items, q.renderSubnet(sn))
		}
	})
	lo, hi, next := q.listPage(len(items))
	q.reply(rawList{Kind: "compute#subnetworkList", ID: "projects/" + q.project + "/regions/" + region + "/subnetworks",
		Items: items[lo:hi], SelfLink: q.link("regions/" + region + "/subnetworks"), NextPageToken: next})
}

type scopedList struct {
	Subnetworks []json.RawMessage `json:"subnetworks,omitempty"`
	Instances   []json.RawMessage `json:"instances,omitempty"`
	Warning     *scopedWarning    `json:"warning,omitempty"`
}

type scopedWarning struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

type aggregatedList struct {
	Kind     string                 `json:"kind"`
	ID       string                 `json:"id"`
	Items    map[string]*scopedList `json:"items"`
	SelfLink string                 `json:"selfLink"`
}

func (a *API) aggregatedSubnets(q *req) {
	items := map[string]*scopedList{}
	for _, rg := range model.Regions {
		items["regions/"+rg.Name] = &scopedList{Warning: &scopedWarning{Code: "NO_RESULTS_ON_PAGE", Message: "There are no results for scope 'regions/" + rg.Name + "' on this page."}}
	}
	a.svc.Read(func(st *model.State) {
		for _, sn := range st.Subnets(q.project, "") {
			sl := items["regions/"+sn.Region]
			if sl == nil {
				sl = &scopedList{}
				items["regions/"+sn.Region] = sl
			}
			sl.Warning = nil
			sl.Subnetworks = append(sl.Subnetworks, q.renderSubnet(sn))
		}
	})
	q.reply(aggregatedList{Kind: "compute#subnetworkAggregatedList", ID: "projects/" + q.project + "/aggregated/subnetworks", Items: items, SelfLink: q.link("aggregated/subnetworks")})
}

func (a *API) patchSubnet(q *req) {
	var in compute.Subnetwork
	raw, ok := q.decode(&in)
	if !ok {
		return
	}
	region, name := q.r.PathValue("region"), q.r.PathValue("subnet")
	_, hasSec := raw["secondaryIpRanges"]
	var sec []model.SecondaryRange
	if hasSec {
		var err error
		if sec, err = secondaryRanges(in.SecondaryIpRanges); err != nil {
			q.fail(err)
			return
		}
	}
	if in.IpCidrRange != "" {
		q.badRequest("invalid", "Invalid value for field 'resource.ipCidrRange': '%s'. Use expandIpCidrRange to change the primary range.", in.IpCidrRange)
		return
	}
	q.do("regions/"+region, "patch", model.SubnetKey(q.project, region, name), in, func(tx *model.Txn) (uint64, any, error) {
		sn := tx.State().Subnet(q.project, region, name)
		if sn == nil {
			return 0, nil, &model.Error{Code: model.NotFound, Reason: "The resource '" + model.SubnetKey(q.project, region, name) + "' was not found"}
		}
		fp := in.Fingerprint
		if !hasSec {
			// Nothing the model tracks changes; still demand the fingerprint
			// as GCE does for any PATCH.
			if fp == "" {
				return 0, nil, &model.Error{Code: model.Required, Field: "fingerprint", Reason: "Required field 'resource.fingerprint' not specified"}
			}
			if fp != sn.Fingerprint {
				return 0, nil, &model.Error{Code: model.ConditionNotMet, Field: "fingerprint", Reason: "Supplied fingerprint does not match current fingerprint of subnetwork '" + name + "'."}
			}
			return sn.ID, nil, nil
		}
		s, err := tx.SetSecondaryRanges(q.project, region, name, fp, sec)
		if err != nil {
			return 0, nil, err
		}
		return s.ID, nil, nil
	})
}

func (a *API) deleteSubnet(q *req) {
	region, name := q.r.PathValue("region"), q.r.PathValue("subnet")
	q.do("regions/"+region, "delete", model.SubnetKey(q.project, region, name), nil, func(tx *model.Txn) (uint64, any, error) {
		var id uint64
		if sn := tx.State().Subnet(q.project, region, name); sn != nil {
			id = sn.ID
		}
		return id, nil, tx.DeleteSubnet(q.project, region, name)
	})
}

func (a *API) expandSubnet(q *req) {
	var in compute.SubnetworksExpandIpCidrRangeRequest
	if _, ok := q.decode(&in); !ok {
		return
	}
	region, name := q.r.PathValue("region"), q.r.PathValue("subnet")
	rng, err := model.ParseRange("ipCidrRange", in.IpCidrRange)
	if err != nil {
		q.fail(err)
		return
	}
	q.do("regions/"+region, "expandIpCidrRange", model.SubnetKey(q.project, region, name), in, func(tx *model.Txn) (uint64, any, error) {
		s, err := tx.ExpandRange(q.project, region, name, rng)
		if err != nil {
			return 0, nil, err
		}
		return s.ID, nil, nil
	})
}

// sortedKeys is used by aggregated lists for stable output.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

var _ = netip.Prefix{}
