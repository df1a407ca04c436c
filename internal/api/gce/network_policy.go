package gce

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	compute "google.golang.org/api/compute/v1"

	"github.com/aliasnet/aliasnet/internal/model"
)

// global/routes and global/firewalls. Routes lists also show the implicit
// subnet routes (system-generated, as GCE lists them), which cannot be
// deleted.

func (q *req) routeLink(name string) string { return q.link("global/routes/" + name) }

func (q *req) renderRoute(st *model.State, r *model.Route) json.RawMessage {
	out := &compute.Route{
		Kind:              "compute#route",
		Id:                r.ID,
		Name:              r.Name,
		Description:       r.Description,
		CreationTimestamp: r.Created,
		Network:           q.link("global/networks/" + r.Network),
		DestRange:         r.DestRange.String(),
		Priority:          int64(r.Priority),
		Tags:              r.Tags,
		SelfLink:          q.routeLink(r.Name),
		RouteType:         "STATIC",
		ForceSendFields:   []string{"Priority"},
	}
	switch {
	case r.NextHopGateway != "":
		out.NextHopGateway = q.link("global/gateways/" + r.NextHopGateway)
	case r.NextHopInstance != "":
		z, n, _ := strings.Cut(r.NextHopInstance, "/")
		out.NextHopInstance = q.link("zones/" + z + "/instances/" + n)
	case r.NextHopIP.IsValid():
		out.NextHopIp = r.NextHopIP.String()
	}
	_, _, ws := st.RouteNextHop(r)
	for _, w := range ws {
		out.Warnings = append(out.Warnings, &compute.RouteWarnings{Code: w.Code, Message: w.Message})
	}
	return mergeExtra(out, r.Extra)
}

// subnetRoutes renders the implicit routes of a project's subnets.
func (q *req) subnetRoutes(st *model.State) map[string]json.RawMessage {
	out := map[string]json.RawMessage{}
	for _, n := range st.Networks(q.project) {
		for _, ru := range st.Ranges(q.project, n.Name) {
			name := model.SubnetRouteName(q.project, n.Name, ru.Range)
			_, sname, _ := strings.Cut(ru.Subnet, "/")
			desc := fmt.Sprintf("Default local route to the subnetwork %s.", ru.Range)
			if ru.RangeName != "" {
				desc = fmt.Sprintf("Default local route to the secondary range '%s' (%s) of subnetwork %s.", ru.RangeName, ru.Range, sname)
			}
			r := &compute.Route{
				Kind: "compute#route", Id: routeID(name), Name: name, Description: desc,
				Network: q.link("global/networks/" + n.Name), DestRange: ru.Range.String(),
				NextHopNetwork: q.link("global/networks/" + n.Name), Priority: 0, RouteType: "SUBNET",
				SelfLink: q.routeLink(name), CreationTimestamp: n.Created, ForceSendFields: []string{"Priority"},
			}
			b, _ := json.Marshal(r)
			out[name] = b
		}
	}
	return out
}

func routeID(name string) uint64 {
	var v uint64
	fmt.Sscanf(strings.TrimPrefix(name, "default-route-"), "%x", &v)
	return v
}

var routeKnown = []string{"name", "description", "network", "destRange", "priority", "tags", "nextHopInstance", "nextHopIp",
	"nextHopGateway", "kind", "id", "selfLink", "creationTimestamp", "warnings", "routeType", "nextHopNetwork"}

func (a *API) insertRoute(q *req) {
	var in compute.Route
	raw, ok := q.decode(&in)
	if !ok {
		return
	}
	for _, f := range []string{"nextHopVpnTunnel", "nextHopIlb", "nextHopNetwork", "nextHopHub", "nextHopInterconnectAttachment"} {
		if _, set := raw[f]; set {
			q.fail(&model.Error{Code: model.Invalid, Field: f, Reason: fmt.Sprintf("aliasnet supports nextHopInstance, nextHopIp and nextHopGateway; '%s' is not supported.", f)})
			return
		}
	}
	r := model.Route{Project: q.project, Name: in.Name, Description: in.Description, Network: lastSegment(in.Network),
		Priority: model.DefaultRoutePriority, Tags: in.Tags, Extra: extraOf(raw, routeKnown...)}
	if _, set := raw["priority"]; set {
		r.Priority = int(in.Priority)
	}
	if in.DestRange != "" {
		p, err := netip.ParsePrefix(strings.TrimSpace(in.DestRange))
		if err != nil {
			q.fail(&model.Error{Code: model.Invalid, Field: "destRange", Value: in.DestRange, Reason: "Invalid IPCidrRange: " + in.DestRange + "."})
			return
		}
		r.DestRange = p
	}
	if in.NextHopIp != "" {
		a, err := netip.ParseAddr(in.NextHopIp)
		if err != nil {
			q.fail(&model.Error{Code: model.Invalid, Field: "nextHopIp", Value: in.NextHopIp, Reason: "Invalid IP address."})
			return
		}
		r.NextHopIP = a
	}
	if in.NextHopInstance != "" {
		if p := refPart(in.NextHopInstance, "projects"); p != "" && p != q.project {
			q.fail(&model.Error{Code: model.Invalid, Field: "nextHopInstance", Value: in.NextHopInstance, Reason: "The next hop instance must be in the route's project."})
			return
		}
		zone := refPart(in.NextHopInstance, "zones")
		r.NextHopInstance = lastSegment(in.NextHopInstance)
		if zone != "" {
			r.NextHopInstance = zone + "/" + r.NextHopInstance
		}
	}
	if in.NextHopGateway != "" {
		r.NextHopGateway = lastSegment(in.NextHopGateway)
	}
	q.do("global", "insert", model.RouteKey(q.project, in.Name), in, func(tx *model.Txn) (uint64, any, error) {
		nr, err := tx.CreateRoute(r)
		if err != nil {
			return 0, nil, err
		}
		return nr.ID, nil, nil
	})
}

func (a *API) getRoute(q *req) {
	name := q.r.PathValue("route")
	var out json.RawMessage
	a.svc.Read(func(st *model.State) {
		if r := st.Route(q.project, name); r != nil {
			out = q.renderRoute(st, r)
		} else if strings.HasPrefix(name, "default-route-") {
			out = q.subnetRoutes(st)[name]
		}
	})
	if out == nil {
		q.notFound("global/routes/" + name)
		return
	}
	q.reply(out)
}

func (a *API) listRoutes(q *req) {
	type named struct {
		name string
		raw  json.RawMessage
	}
	var all []named
	a.svc.Read(func(st *model.State) {
		for _, r := range st.Routes(q.project) {
			all = append(all, named{r.Name, q.renderRoute(st, r)})
		}
		for name, raw := range q.subnetRoutes(st) {
			all = append(all, named{name, raw})
		}
	})
	slices.SortFunc(all, func(a, b named) int { return strings.Compare(a.name, b.name) })
	items := make([]json.RawMessage, len(all))
	for i, n := range all {
		items[i] = n.raw
	}
	lo, hi, next := q.listPage(len(items))
	q.reply(rawList{Kind: "compute#routeList", ID: "projects/" + q.project + "/global/routes", Items: items[lo:hi],
		SelfLink: q.link("global/routes"), NextPageToken: next})
}

func (a *API) deleteRoute(q *req) {
	name := q.r.PathValue("route")
	q.do("global", "delete", model.RouteKey(q.project, name), nil, func(tx *model.Txn) (uint64, any, error) {
		r := tx.State().Route(q.project, name)
		if r == nil && strings.HasPrefix(name, "default-route-") {
			if _, ok := q.subnetRoutes(tx.State())[name]; ok {
				return 0, nil, &model.Error{Code: model.FailedPrecondition, Reason: fmt.Sprintf(
					"The route '%s' is a subnet route; it exists as long as its subnetwork range and cannot be deleted.", model.RouteKey(q.project, name))}
			}
		}
		var id uint64
		if r != nil {
			id = r.ID
		}
		return id, nil, tx.DeleteRoute(q.project, name)
	})
}

// --- firewalls ---

func (q *req) renderFirewall(f *model.Firewall) json.RawMessage {
	out := &compute.Firewall{
		Kind:              "compute#firewall",
		Id:                f.ID,
		Name:              f.Name,
		Description:       f.Description,
		CreationTimestamp: f.Created,
		Network:           q.link("global/networks/" + f.Network),
		Direction:         f.Direction,
		Priority:          int64(f.Priority),
		SourceRanges:      prefixStrings(f.SourceRanges),
		DestinationRanges: prefixStrings(f.DestinationRanges),
		SourceTags:        f.SourceTags,
		TargetTags:        f.TargetTags,
		Disabled:          f.Disabled,
		SelfLink:          q.link("global/firewalls/" + f.Name),
		LogConfig:         &compute.FirewallLogConfig{Enable: false, ForceSendFields: []string{"Enable"}},
		ForceSendFields:   []string{"Priority", "Disabled"},
	}
	for _, p := range f.Allowed {
		out.Allowed = append(out.Allowed, &compute.FirewallAllowed{IPProtocol: p.Protocol, Ports: p.Ports})
	}
	for _, p := range f.Denied {
		out.Denied = append(out.Denied, &compute.FirewallDenied{IPProtocol: p.Protocol, Ports: p.Ports})
	}
	return mergeExtra(out, f.Extra)
}

func prefixStrings(ps []netip.Prefix) []string {
	if len(ps) == 0 {
		return nil
	}
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}

var firewallKnown = []string{"name", "description", "network", "direction", "priority", "allowed", "denied", "sourceRanges",
	"destinationRanges", "sourceTags", "targetTags", "disabled", "kind", "id", "selfLink", "creationTimestamp", "logConfig"}

// firewallFields applies the fields present in a request body to f: all
// of them for insert and update, only the ones sent for patch (a field
// sent as null or [] clears it).
func firewallFields(f *model.Firewall, in *compute.Firewall, raw map[string]json.RawMessage, patch bool) error {
	has := func(k string) bool { _, ok := raw[k]; return ok || !patch }
	for _, k := range []string{"sourceServiceAccounts", "targetServiceAccounts"} {
		if v, ok := raw[k]; ok && string(v) != "null" && string(v) != "[]" {
			return &model.Error{Code: model.Invalid, Field: k, Reason: fmt.Sprintf("aliasnet has no service accounts; use sourceTags/targetTags or ranges instead of '%s'.", k)}
		}
	}
	if has("description") {
		f.Description = in.Description
	}
	if _, ok := raw["network"]; ok {
		f.Network = lastSegment(in.Network)
	}
	if _, ok := raw["direction"]; ok {
		f.Direction = in.Direction
	}
	if _, ok := raw["priority"]; ok {
		f.Priority = int(in.Priority)
	} else if !patch {
		f.Priority = model.DefaultFirewallPriority
	}
	if has("allowed") {
		f.Allowed = nil
		for _, p := range in.Allowed {
			if p != nil {
				f.Allowed = append(f.Allowed, model.FirewallProtocol{Protocol: p.IPProtocol, Ports: p.Ports})
			}
		}
	}
	if has("denied") {
		f.Denied = nil
		for _, p := range in.Denied {
			if p != nil {
				f.Denied = append(f.Denied, model.FirewallProtocol{Protocol: p.IPProtocol, Ports: p.Ports})
			}
		}
	}
	parse := func(field string, ss []string) ([]netip.Prefix, error) {
		var out []netip.Prefix
		for i, s := range ss {
			p, err := model.ParseFirewallRange(fmt.Sprintf("%s[%d]", field, i), s)
			if err != nil {
				return nil, err
			}
			out = append(out, p)
		}
		return out, nil
	}
	var err error
	if has("sourceRanges") {
		if f.SourceRanges, err = parse("sourceRanges", in.SourceRanges); err != nil {
			return err
		}
	}
	if has("destinationRanges") {
		if f.DestinationRanges, err = parse("destinationRanges", in.DestinationRanges); err != nil {
			return err
		}
	}
	if has("sourceTags") {
		f.SourceTags = in.SourceTags
	}
	if has("targetTags") {
		f.TargetTags = in.TargetTags
	}
	if has("disabled") {
		f.Disabled = in.Disabled
	}
	return nil
}

func (a *API) insertFirewall(q *req) {
	var in compute.Firewall
	raw, ok := q.decode(&in)
	if !ok {
		return
	}
	f := model.Firewall{Project: q.project, Name: in.Name, Extra: extraOf(raw, firewallKnown...)}
	if err := firewallFields(&f, &in, raw, false); err != nil {
		q.fail(err)
		return
	}
	q.do("global", "insert", model.FirewallKey(q.project, in.Name), in, func(tx *model.Txn) (uint64, any, error) {
		nf, err := tx.CreateFirewall(f)
		if err != nil {
			return 0, nil, err
		}
		return nf.ID, nil, nil
	})
}

// patchFirewall (PATCH) changes the fields sent; updateFirewall (PUT)
// replaces the rule with the body.
func (a *API) patchFirewall(q *req)  { a.changeFirewall(q, true) }
func (a *API) updateFirewall(q *req) { a.changeFirewall(q, false) }

func (a *API) changeFirewall(q *req, patch bool) {
	var in compute.Firewall
	raw, ok := q.decode(&in)
	if !ok {
		return
	}
	name := q.r.PathValue("firewall")
	if in.Name != "" && in.Name != name {
		q.fail(&model.Error{Code: model.Invalid, Field: "name", Value: in.Name, Reason: "The name of a firewall rule cannot be changed."})
		return
	}
	opType := "patch"
	if !patch {
		opType = "update"
	}
	q.do("global", opType, model.FirewallKey(q.project, name), in, func(tx *model.Txn) (uint64, any, error) {
		old := tx.State().Firewall(q.project, name)
		if old == nil {
			return 0, nil, &model.Error{Code: model.NotFound, Reason: "The resource '" + model.FirewallKey(q.project, name) + "' was not found"}
		}
		f := *old
		if !patch {
			f = model.Firewall{Project: q.project, Name: name, Network: old.Network, Direction: old.Direction, Extra: extraOf(raw, firewallKnown...)}
		}
		if err := firewallFields(&f, &in, raw, patch); err != nil {
			return 0, nil, err
		}
		nf, err := tx.UpdateFirewall(f)
		if err != nil {
			return 0, nil, err
		}
		return nf.ID, nil, nil
	})
}

func (a *API) getFirewall(q *req) {
	name := q.r.PathValue("firewall")
	var out json.RawMessage
	a.svc.Read(func(st *model.State) {
		if f := st.Firewall(q.project, name); f != nil {
			out = q.renderFirewall(f)
		}
	})
	if out == nil {
		q.notFound("global/firewalls/" + name)
		return
	}
	q.reply(out)
}

func (a *API) listFirewalls(q *req) {
	var items []json.RawMessage
	a.svc.Read(func(st *model.State) {
		for _, f := range st.Firewalls(q.project) {
			items = append(items, q.renderFirewall(f))
		}
	})
	lo, hi, next := q.listPage(len(items))
	q.reply(rawList{Kind: "compute#firewallList", ID: "projects/" + q.project + "/global/firewalls", Items: items[lo:hi],
		SelfLink: q.link("global/firewalls"), NextPageToken: next})
}

func (a *API) deleteFirewall(q *req) {
	name := q.r.PathValue("firewall")
	q.do("global", "delete", model.FirewallKey(q.project, name), nil, func(tx *model.Txn) (uint64, any, error) {
		var id uint64
		if f := tx.State().Firewall(q.project, name); f != nil {
			id = f.ID
		}
		return id, nil, tx.DeleteFirewall(q.project, name)
	})
}
