package gce

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	compute "google.golang.org/api/compute/v1"

	"github.com/aliasnet/aliasnet/internal/model"
	"github.com/aliasnet/aliasnet/internal/routing"
)

// RouterStatusSource reports the live BGP sessions of routers (package
// routing's Runtime). Without one (BGP off) every peer is reported down.
type RouterStatusSource interface {
	RouterStatus(project, region, name string) (routing.RouterStatus, bool)
}

// SetRouterStatus connects the BGP runtime to getRouterStatus.
func (a *API) SetRouterStatus(src RouterStatusSource) { a.routing = src }

func (a *API) routerRoutes(h func(string, func(*req))) {
	h("POST /regions/{region}/routers", a.insertRouter)
	h("GET /regions/{region}/routers", a.listRouters)
	h("GET /aggregated/routers", a.aggregatedRouters)
	h("GET /regions/{region}/routers/{router}", a.getRouter)
	h("PATCH /regions/{region}/routers/{router}", a.patchRouter)
	h("PUT /regions/{region}/routers/{router}", a.updateRouter)
	h("DELETE /regions/{region}/routers/{router}", a.deleteRouter)
	h("GET /regions/{region}/routers/{router}/getRouterStatus", a.getRouterStatus)
}

func wireAdvertisement(a model.Advertisement) (string, []string, []*compute.RouterAdvertisedIpRange) {
	var rs []*compute.RouterAdvertisedIpRange
	for _, r := range a.Ranges {
		rs = append(rs, &compute.RouterAdvertisedIpRange{Range: r.Range.String(), Description: r.Description})
	}
	mode := a.Mode
	if mode == "" {
		mode = model.AdvertiseDefault
	}
	return mode, a.Groups, rs
}

func (q *req) renderRouter(r *model.Router) json.RawMessage {
	out := &compute.Router{
		Kind:              "compute#router",
		Id:                r.ID,
		Name:              r.Name,
		Description:       r.Description,
		CreationTimestamp: r.Created,
		Region:            q.link("regions/" + r.Region),
		Network:           q.link("global/networks/" + r.Network),
		SelfLink:          q.link("regions/" + r.Region + "/routers/" + r.Name),
	}
	if r.BGP != nil {
		mode, groups, ranges := wireAdvertisement(r.BGP.Advertisement)
		ka := int64(r.BGP.KeepaliveInterval)
		if ka == 0 {
			ka = 20
		}
		out.Bgp = &compute.RouterBgp{Asn: int64(r.BGP.ASN), AdvertiseMode: mode, AdvertisedGroups: groups,
			AdvertisedIpRanges: ranges, KeepaliveInterval: ka}
	}
	for _, i := range r.Interfaces {
		wi := &compute.RouterInterface{Name: i.Name, LinkedVpnTunnel: i.LinkedVPNTunnel,
			LinkedInterconnectAttachment: i.LinkedInterconnectAttachment, ManagementType: "MANAGED_BY_USER"}
		if i.IPRange.IsValid() {
			wi.IpRange = i.IPRange.String()
		}
		out.Interfaces = append(out.Interfaces, wi)
	}
	for _, p := range r.Peers {
		mode, groups, ranges := wireAdvertisement(p.Advertisement)
		wp := &compute.RouterBgpPeer{Name: p.Name, InterfaceName: p.InterfaceName, PeerIpAddress: p.PeerIPAddress.String(),
			PeerAsn: int64(p.PeerASN), AdvertisedRoutePriority: int64(p.Priority), AdvertiseMode: mode,
			AdvertisedGroups: groups, AdvertisedIpRanges: ranges, Enable: "TRUE", ManagementType: "MANAGED_BY_USER",
			EnableIpv4: p.PeerIPAddress.Is4(), EnableIpv6: p.PeerIPAddress.Is6(),
			ForceSendFields: []string{"AdvertisedRoutePriority"}}
		if p.IPAddress.IsValid() {
			wp.IpAddress = p.IPAddress.String()
		}
		if p.Disabled {
			wp.Enable = "FALSE"
		}
		out.BgpPeers = append(out.BgpPeers, wp)
	}
	return mergeExtra(out, r.Extra)
}

var routerKnown = []string{"name", "description", "network", "region", "bgp", "bgpPeers", "interfaces", "kind", "id",
	"selfLink", "creationTimestamp"}

func invalid(field, value, format string, args ...any) error {
	return &model.Error{Code: model.Invalid, Field: field, Value: value, Reason: fmt.Sprintf(format, args...)}
}

func parseAdvertisement(prefix, mode string, groups []string, ranges []*compute.RouterAdvertisedIpRange) (model.Advertisement, error) {
	a := model.Advertisement{Mode: strings.ToUpper(mode)}
	for _, g := range groups {
		a.Groups = append(a.Groups, strings.ToUpper(g))
	}
	for i, r := range ranges {
		if r == nil {
			continue
		}
		f := fmt.Sprintf("%s.advertisedIpRanges[%d].range", prefix, i)
		p, err := netip.ParsePrefix(strings.TrimSpace(r.Range))
		if err != nil {
			// GCE accepts a bare address for a host route.
			ip, aerr := netip.ParseAddr(strings.TrimSpace(r.Range))
			if aerr != nil {
				if r.Range == "" {
					return a, &model.Error{Code: model.Required, Field: f, Reason: "Required field 'resource." + f + "' not specified"}
				}
				return a, invalid(f, r.Range, "Invalid IP range: %s.", r.Range)
			}
			p = netip.PrefixFrom(ip, ip.BitLen())
		}
		a.Ranges = append(a.Ranges, model.AdvertisedRange{Range: p, Description: r.Description})
	}
	return a, nil
}

func parseAddr(field, s string) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, nil
	}
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil {
		return a, invalid(field, s, "Invalid IP address: %s.", s)
	}
	return a, nil
}

func parseASN(field string, v int64) (uint32, error) {
	if v < 0 || v > 1<<32-1 {
		return 0, invalid(field, strconv.FormatInt(v, 10), "An ASN is between 1 and 4294967295.")
	}
	return uint32(v), nil
}

// routerFromWire converts a request body (already merged with the stored
// router for a patch) into the model's router.
func (q *req) routerFromWire(raw map[string]json.RawMessage, region, name string) (model.Router, error) {
	b, _ := json.Marshal(raw)
	var in compute.Router
	if err := json.Unmarshal(b, &in); err != nil {
		return model.Router{}, &model.Error{Code: model.Invalid, Reason: "Invalid JSON payload received. " + err.Error()}
	}
	if name == "" {
		name = in.Name
	}
	r := model.Router{Project: q.project, Region: region, Name: name, Description: in.Description,
		Network: lastSegment(in.Network), Extra: extraOf(raw, routerKnown...)}
	if in.Region != "" && lastSegment(in.Region) != region {
		return r, invalid("region", in.Region, "The router's region must be '%s', the region of the request.", region)
	}
	if p := refPart(in.Network, "projects"); p != "" && p != q.project {
		return r, invalid("network", in.Network, "The network must be in project '%s'.", q.project)
	}
	if in.Bgp != nil {
		asn, err := parseASN("bgp.asn", in.Bgp.Asn)
		if err != nil {
			return r, err
		}
		adv, err := parseAdvertisement("bgp", in.Bgp.AdvertiseMode, in.Bgp.AdvertisedGroups, in.Bgp.AdvertisedIpRanges)
		if err != nil {
			return r, err
		}
		r.BGP = &model.RouterBGP{ASN: asn, Advertisement: adv, KeepaliveInterval: int(in.Bgp.KeepaliveInterval)}
		if r.BGP.KeepaliveInterval == 20 {
			r.BGP.KeepaliveInterval = 0
		}
	}
	for i, wi := range in.Interfaces {
		if wi == nil {
			continue
		}
		ri := model.RouterInterface{Name: wi.Name, LinkedVPNTunnel: wi.LinkedVpnTunnel, LinkedInterconnectAttachment: wi.LinkedInterconnectAttachment}
		if wi.IpRange != "" {
			p, err := netip.ParsePrefix(strings.TrimSpace(wi.IpRange))
			if err != nil {
				return r, invalid(fmt.Sprintf("interfaces[%d].ipRange", i), wi.IpRange, "Invalid IP range: %s.", wi.IpRange)
			}
			ri.IPRange = p
		}
		r.Interfaces = append(r.Interfaces, ri)
	}
	// Which peers carry advertisedRoutePriority (0 is a valid priority).
	var rawPeers []map[string]json.RawMessage
	if v, ok := raw["bgpPeers"]; ok {
		_ = json.Unmarshal(v, &rawPeers)
	}
	for i, wp := range in.BgpPeers {
		if wp == nil {
			continue
		}
		f := fmt.Sprintf("bgpPeers[%d]", i)
		p := model.BGPPeer{Name: wp.Name, InterfaceName: wp.InterfaceName, Priority: model.DefaultAdvertisedRoutePriority}
		if i < len(rawPeers) {
			if _, ok := rawPeers[i]["advertisedRoutePriority"]; ok {
				p.Priority = int(wp.AdvertisedRoutePriority)
			}
		}
		var err error
		if p.IPAddress, err = parseAddr(f+".ipAddress", wp.IpAddress); err != nil {
			return r, err
		}
		if p.PeerIPAddress, err = parseAddr(f+".peerIpAddress", wp.PeerIpAddress); err != nil {
			return r, err
		}
		if p.PeerASN, err = parseASN(f+".peerAsn", wp.PeerAsn); err != nil {
			return r, err
		}
		if p.Advertisement, err = parseAdvertisement(f, wp.AdvertiseMode, wp.AdvertisedGroups, wp.AdvertisedIpRanges); err != nil {
			return r, err
		}
		switch strings.ToUpper(wp.Enable) {
		case "", "TRUE":
		case "FALSE":
			p.Disabled = true
		default:
			return r, invalid(f+".enable", wp.Enable, "enable must be TRUE or FALSE.")
		}
		r.Peers = append(r.Peers, p)
	}
	return r, nil
}

func (a *API) insertRouter(q *req) {
	raw, ok := q.decode(&map[string]any{})
	if !ok {
		return
	}
	region := q.r.PathValue("region")
	r, err := q.routerFromWire(raw, region, "")
	if err != nil {
		q.fail(err)
		return
	}
	q.do("regions/"+region, "insert", model.RouterKey(q.project, region, r.Name), raw, func(tx *model.Txn) (uint64, any, error) {
		nr, err := tx.CreateRouter(r)
		if err != nil {
			return 0, nil, err
		}
		return nr.ID, nil, nil
	})
}

func (a *API) getRouter(q *req) {
	var out json.RawMessage
	region, name := q.r.PathValue("region"), q.r.PathValue("router")
	a.svc.Read(func(st *model.State) {
		if r := st.Router(q.project, region, name); r != nil {
			out = q.renderRouter(r)
		}
	})
	if out == nil {
		q.notFound("regions/" + region + "/routers/" + name)
		return
	}
	q.reply(out)
}

func (a *API) listRouters(q *req) {
	var items []json.RawMessage
	region := q.r.PathValue("region")
	a.svc.Read(func(st *model.State) {
		for _, r := range st.Routers(q.project, region) {
			items = append(items, q.renderRouter(r))
		}
	})
	lo, hi, next := q.listPage(len(items))
	q.reply(rawList{Kind: "compute#routerList", ID: "projects/" + q.project + "/regions/" + region + "/routers",
		Items: items[lo:hi], SelfLink: q.link("regions/" + region + "/routers"), NextPageToken: next})
}

type routersScoped struct {
	Routers []json.RawMessage `json:"routers,omitempty"`
	Warning *scopedWarning    `json:"warning,omitempty"`
}

func (a *API) aggregatedRouters(q *req) {
	items := map[string]*routersScoped{}
	for _, rg := range model.Regions {
		items["regions/"+rg.Name] = &routersScoped{Warning: &scopedWarning{Code: "NO_RESULTS_ON_PAGE",
			Message: "There are no results for scope 'regions/" + rg.Name + "' on this page."}}
	}
	a.svc.Read(func(st *model.State) {
		for _, r := range st.Routers(q.project, "") {
			sl := items["regions/"+r.Region]
			sl.Warning = nil
			sl.Routers = append(sl.Routers, q.renderRouter(r))
		}
	})
	q.reply(struct {
		Kind     string                    `json:"kind"`
		ID       string                    `json:"id"`
		Items    map[string]*routersScoped `json:"items"`
		SelfLink string                    `json:"selfLink"`
	}{"compute#routerAggregatedList", "projects/" + q.project + "/aggregated/routers", items, q.link("aggregated/routers")})
}

// mergePatch overlays a PATCH body on the stored router's wire form: the
// top-level fields present replace the stored ones (lists whole, as GCE
// does), and bgp is merged field by field. Switching bgp.advertiseMode to
// DEFAULT without sending groups and ranges clears them.
func mergePatch(stored json.RawMessage, patch map[string]json.RawMessage) map[string]json.RawMessage {
	var out map[string]json.RawMessage
	_ = json.Unmarshal(stored, &out)
	for k, v := range patch {
		if k != "bgp" || out["bgp"] == nil || string(v) == "null" {
			out[k] = v
			continue
		}
		var ob, pb map[string]json.RawMessage
		if json.Unmarshal(out["bgp"], &ob) != nil || json.Unmarshal(v, &pb) != nil {
			out[k] = v
			continue
		}
		for bk, bv := range pb {
			ob[bk] = bv
		}
		var mode string
		_ = json.Unmarshal(pb["advertiseMode"], &mode)
		if strings.EqualFold(mode, model.AdvertiseDefault) {
			if _, ok := pb["advertisedGroups"]; !ok {
				delete(ob, "advertisedGroups")
			}
			if _, ok := pb["advertisedIpRanges"]; !ok {
				delete(ob, "advertisedIpRanges")
			}
		}
		out[k], _ = json.Marshal(ob)
	}
	return out
}

func (a *API) patchRouter(q *req) { a.changeRouter(q, "patch", true) }

func (a *API) updateRouter(q *req) { a.changeRouter(q, "update", false) }

func (a *API) changeRouter(q *req, opType string, merge bool) {
	raw, ok := q.decode(&map[string]any{})
	if !ok {
		return
	}
	region, name := q.r.PathValue("region"), q.r.PathValue("router")
	if n, ok := raw["name"]; ok {
		var s string
		if json.Unmarshal(n, &s) == nil && s != "" && s != name {
			q.fail(invalid("name", s, "The name of a router cannot be changed (it is '%s').", name))
			return
		}
	}
	q.do("regions/"+region, opType, model.RouterKey(q.project, region, name), raw, func(tx *model.Txn) (uint64, any, error) {
		old := tx.State().Router(q.project, region, name)
		if old == nil {
			return 0, nil, &model.Error{Code: model.NotFound, Reason: "The resource '" + model.RouterKey(q.project, region, name) + "' was not found"}
		}
		body := raw
		if merge {
			body = mergePatch(q.renderRouter(old), raw)
		} else if _, ok := body["network"]; !ok {
			body["network"], _ = json.Marshal(old.Network)
		}
		r, err := q.routerFromWire(body, region, name)
		if err != nil {
			return 0, nil, err
		}
		nr, err := tx.UpdateRouter(r)
		if err != nil {
			return 0, nil, err
		}
		return nr.ID, nil, nil
	})
}

func (a *API) deleteRouter(q *req) {
	region, name := q.r.PathValue("region"), q.r.PathValue("router")
	q.do("regions/"+region, "delete", model.RouterKey(q.project, region, name), nil, func(tx *model.Txn) (uint64, any, error) {
		var id uint64
		if r := tx.State().Router(q.project, region, name); r != nil {
			id = r.ID
		}
		return id, nil, tx.DeleteRouter(q.project, region, name)
	})
}

// uptimeString spells a duration as GCE's bgpPeerStatus.uptime does.
func uptimeString(d time.Duration) string {
	d = d.Truncate(time.Second)
	days := int(d / (24 * time.Hour))
	h, m, s := int(d/time.Hour)%24, int(d/time.Minute)%60, int(d/time.Second)%60
	var parts []string
	if days > 0 {
		parts = append(parts, fmt.Sprintf("%d days", days))
	}
	if days > 0 || h > 0 {
		parts = append(parts, fmt.Sprintf("%d hours", h))
	}
	if days > 0 || h > 0 || m > 0 {
		parts = append(parts, fmt.Sprintf("%d minutes", m))
	}
	parts = append(parts, fmt.Sprintf("%d seconds", s))
	return strings.Join(parts, ", ")
}

func (a *API) getRouterStatus(q *req) {
	region, name := q.r.PathValue("region"), q.r.PathValue("router")
	var r *model.Router
	var dyn *model.DynamicRoutes
	a.svc.Read(func(st *model.State) {
		if r = st.Router(q.project, region, name); r != nil {
			dyn = st.DynamicRoutesOf(q.project, r.Network)
		}
	})
	if r == nil {
		q.notFound("regions/" + region + "/routers/" + name)
		return
	}
	netLink := q.link("global/networks/" + r.Network)
	res := &compute.RouterStatus{Network: netLink}
	var live routing.RouterStatus
	if a.routing != nil {
		live, _ = a.routing.RouterStatus(q.project, region, name)
	}
	byIP := map[netip.Addr]routing.PeerStatus{}
	for _, p := range live.Peers {
		byIP[p.PeerIP] = p
	}
	ifaces := map[string]model.RouterInterface{}
	for _, i := range r.Interfaces {
		ifaces[i.Name] = i
	}
	for _, p := range r.Peers {
		ps := &compute.RouterStatusBgpPeerStatus{Name: p.Name, PeerIpAddress: p.PeerIPAddress.String(),
			LinkedVpnTunnel: ifaces[p.InterfaceName].LinkedVPNTunnel, State: "Idle", Status: "DOWN",
			EnableIpv4: p.PeerIPAddress.Is4(), EnableIpv6: p.PeerIPAddress.Is6(),
			ForceSendFields: []string{"NumLearnedRoutes"}}
		if p.IPAddress.IsValid() {
			ps.IpAddress = p.IPAddress.String()
		}
		if l, ok := byIP[p.PeerIPAddress]; ok && !p.Disabled {
			ps.State = l.State
			if l.Up {
				ps.Status = "UP"
				ps.Uptime = uptimeString(l.Uptime)
				ps.UptimeSeconds = strconv.FormatInt(int64(l.Uptime/time.Second), 10)
			}
			ps.NumLearnedRoutes = int64(len(l.Learned))
			for _, ad := range l.Advertised {
				ps.AdvertisedRoutes = append(ps.AdvertisedRoutes, &compute.Route{Kind: "compute#route",
					DestRange: ad.Prefix.String(), NextHopIp: ps.IpAddress, Priority: int64(ad.MED), RouteType: "BGP",
					ForceSendFields: []string{"Priority"}})
			}
		}
		res.BgpPeerStatus = append(res.BgpPeerStatus, ps)
	}
	for _, l := range live.Learned {
		res.BestRoutesForRouter = append(res.BestRoutesForRouter, &compute.Route{Kind: "compute#route", Network: netLink,
			DestRange: l.Prefix.String(), NextHopIp: l.NextHop.String(), Priority: int64(l.MED), RouteType: "BGP",
			ForceSendFields: []string{"Priority"}})
	}
	if dyn != nil {
		for _, d := range dyn.Routes {
			res.BestRoutes = append(res.BestRoutes, &compute.Route{Kind: "compute#route", Network: netLink,
				DestRange: d.Dest.String(), NextHopIp: d.NextHop.String(), Priority: int64(d.Priority), RouteType: "BGP",
				Description: "learned by " + d.Peer, ForceSendFields: []string{"Priority"}})
		}
	}
	q.reply(&compute.RouterStatusResponse{Kind: "compute#routerStatusResponse", Result: res})
}
