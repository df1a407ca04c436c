package gce

import (
	"encoding/json"
	"strings"

	compute "google.golang.org/api/compute/v1"

	"github.com/aliasnet/aliasnet/internal/model"
)

func (q *req) renderNetwork(st *model.State, n *model.Network) json.RawMessage {
	out := &compute.Network{
		Kind:                                  "compute#network",
		Id:                                    n.ID,
		Name:                                  n.Name,
		Description:                           n.Description,
		CreationTimestamp:                     n.Created,
		AutoCreateSubnetworks:                 n.AutoMode,
		Mtu:                                   int64(n.MTU),
		RoutingConfig:                         &compute.NetworkRoutingConfig{RoutingMode: n.RoutingMode},
		SelfLink:                              q.link("global/networks/" + n.Name),
		NetworkFirewallPolicyEnforcementOrder: "AFTER_CLASSIC_FIREWALL",
		ForceSendFields:                       []string{"AutoCreateSubnetworks"},
	}
	if out.Mtu == 0 {
		out.Mtu = 1460
	}
	out.SelfLinkWithId = q.link("global/networks/") + itoa64(n.ID)
	for _, sn := range st.SubnetsOfNetwork(n.Project, n.Name) {
		out.Subnetworks = append(out.Subnetworks, q.link("regions/"+sn.Region+"/subnetworks/"+sn.Name))
	}
	for _, pe := range n.Peerings {
		pp, pn := model.ParseNetworkRef(pe.Peer, n.Project)
		out.Peerings = append(out.Peerings, &compute.NetworkPeering{
			Name: pe.Name, Network: q.base() + "projects/" + pp + "/global/networks/" + pn,
			State: pe.State, StateDetails: stateDetails(pe.State), ExchangeSubnetRoutes: true, AutoCreateRoutes: true,
			StackType: "IPV4_ONLY",
		})
	}
	return mergeExtra(out, n.Extra)
}

func stateDetails(s string) string {
	if s == "ACTIVE" {
		return "[2024-01-01T00:00:00.000-00:00]: Connected."
	}
	return "[2024-01-01T00:00:00.000-00:00]: Waiting for peer network to connect."
}

func (a *API) insertNetwork(q *req) {
	var in compute.Network
	raw, ok := q.decode(&in)
	if !ok {
		return
	}
	if in.IPv4Range != "" {
		q.badRequest("invalid", "Invalid value for field 'resource.IPv4Range': '%s'. Legacy networks are not supported; create an auto or custom mode network.", in.IPv4Range)
		return
	}
	mode := ""
	if in.RoutingConfig != nil {
		mode = in.RoutingConfig.RoutingMode
	}
	n := model.Network{Project: q.project, Name: in.Name, Description: in.Description, AutoMode: in.AutoCreateSubnetworks,
		MTU: int(in.Mtu), RoutingMode: mode,
		Extra: extraOf(raw, "name", "description", "autoCreateSubnetworks", "mtu", "routingConfig", "kind", "id", "selfLink", "selfLinkWithId", "creationTimestamp", "subnetworks", "peerings")}
	q.do("global", "insert", model.NetworkKey(q.project, in.Name), in, func(tx *model.Txn) (uint64, any, error) {
		nn, err := tx.CreateNetwork(n)
		if err != nil {
			return 0, nil, err
		}
		if err := tx.CreateDefaultRoute(q.project, nn.Name); err != nil {
			return 0, nil, err
		}
		return nn.ID, nil, nil
	})
}

func (a *API) getNetwork(q *req) {
	var out json.RawMessage
	a.svc.Read(func(st *model.State) {
		if n := st.Network(q.project, q.r.PathValue("network")); n != nil {
			out = q.renderNetwork(st, n)
		}
	})
	if out == nil {
		q.notFound("global/networks/" + q.r.PathValue("network"))
		return
	}
	q.reply(out)
}

func (q *req) notFound(path string) {
	writeError(q.w, 404, "notFound", "The resource 'projects/"+q.project+"/"+path+"' was not found")
}

type rawList struct {
	Kind          string            `json:"kind"`
	ID            string            `json:"id"`
	Items         []json.RawMessage `json:"items,omitempty"`
	SelfLink      string            `json:"selfLink"`
	NextPageToken string            `json:"nextPageToken,omitempty"`
}

func (a *API) listNetworks(q *req) {
	var items []json.RawMessage
	a.svc.Read(func(st *model.State) {
		for _, n := range st.Networks(q.project) {
			items = append(items, q.renderNetwork(st, n))
		}
	})
	lo, hi, next := q.listPage(len(items))
	q.reply(rawList{Kind: "compute#networkList", ID: "projects/" + q.project + "/global/networks", Items: items[lo:hi], SelfLink: q.link("global/networks"), NextPageToken: next})
}

func (a *API) deleteNetwork(q *req) {
	name := q.r.PathValue("network")
	q.do("global", "delete", model.NetworkKey(q.project, name), nil, func(tx *model.Txn) (uint64, any, error) {
		var id uint64
		if n := tx.State().Network(q.project, name); n != nil {
			id = n.ID
		}
		return id, nil, tx.DeleteNetwork(q.project, name)
	})
}

// peerRef turns a peer network reference into "PROJECT/NETWORK".
func peerRef(ref, project string) string {
	if p := refPart(ref, "projects"); p != "" {
		return p + "/" + lastSegment(ref)
	}
	return project + "/" + strings.TrimPrefix(lastSegment(ref), "/")
}

func (a *API) addPeering(q *req) {
	var in compute.NetworksAddPeeringRequest
	if _, ok := q.decode(&in); !ok {
		return
	}
	name, peer := in.Name, in.PeerNetwork
	if in.NetworkPeering != nil {
		if in.NetworkPeering.Name != "" {
			name = in.NetworkPeering.Name
		}
		if in.NetworkPeering.Network != "" {
			peer = in.NetworkPeering.Network
		}
	}
	if peer == "" {
		q.badRequest("required", "Required field 'networkPeering.network' not specified")
		return
	}
	network := q.r.PathValue("network")
	q.do("global", "addPeering", model.NetworkKey(q.project, network), in, func(tx *model.Txn) (uint64, any, error) {
		n, err := tx.AddPeering(q.project, network, model.Peering{Name: name, Peer: peerRef(peer, q.project)})
		if err != nil {
			return 0, nil, err
		}
		return n.ID, nil, nil
	})
}

func (a *API) removePeering(q *req) {
	var in compute.NetworksRemovePeeringRequest
	if _, ok := q.decode(&in); !ok {
		return
	}
	network := q.r.PathValue("network")
	q.do("global", "removePeering", model.NetworkKey(q.project, network), in, func(tx *model.Txn) (uint64, any, error) {
		n, err := tx.RemovePeering(q.project, network, in.Name)
		if err != nil {
			return 0, nil, err
		}
		return n.ID, nil, nil
	})
}
